"""gluon_dcgan: d2l's Deep Convolutional GAN chapter as an MXNet Gluon tool.

The pipeline reads from ``ls``: data -> model -> train -> export, then tools.
Imports flow downward only, layer by layer (a module never reaches up):
    cli, api            the commands' dispatch and the one-line error policy; the Python
                        API the notebook uses (notebooks/dcgan.ipynb, docs/api.md)
    tools/              the commands: generate, export (reexport.py), evaluate, share and the
                        two exercises, with what only they use (latent, outputs,
                        classifier; share's page in tools/site/)
    train/              the chapter's train() and the run around it, attached as hooks
    export/ quality/ dist/   the export files; the quality measures (EfficientNet-Lite0,
                        FID); several processes and hosts (launcher, servers, KVStore)
    model, model_bf16, data/, images
    config, flags, runtime, memory, seeds, files, errors, progress, signals
(launch.py only keeps ``python -m gluon_dcgan.launch`` working: it is dist/launch.py.)
Importing the package runs nothing; ``run.py`` and ``gluon_dcgan.cli`` do.
"""
__version__ = '0.1.0'
