"""gluon_dcgan: d2l's Deep Convolutional GAN chapter as an MXNet Gluon tool.

Pipeline, one module per stage: config -> runtime (contexts) -> data -> model
-> train (steps, loop, checkpoint, report) -> export -> generate / evaluate.
Importing the package runs nothing; ``run.py`` and ``gluon_dcgan.cli`` do.
"""
__version__ = '0.1.0'
