"""gluon_dcgan: d2l's Deep Convolutional GAN chapter as an MXNet Gluon tool.

The pipeline reads from ``ls``: data -> model -> train -> export -> tools.
Imports flow downward only, layer by layer (a module never reaches up):
    cli, launch*        the commands' dispatch and the one-line error policy
    tools/              export, generate, evaluate, ablate-activation, analyze-categories
    train/ -> export/   the training run, which ends by writing an export
    model, model_bf16, data/, images, latent, fid, classifier
    config, flags, runtime, memory, seeds, files, errors, progress
Importing the package runs nothing; ``run.py`` and ``gluon_dcgan.cli`` do.
"""
__version__ = '0.1.0'
