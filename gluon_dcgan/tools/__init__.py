"""Commands beside training: export, evaluate, ablate-activation, analyze-categories."""
