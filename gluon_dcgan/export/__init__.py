"""Export: the hybridized generator as files usable without the training code."""
