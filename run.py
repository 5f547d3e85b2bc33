#!/usr/bin/env python
"""Train d2l's DCGAN with MXNet Gluon, or run one of its commands. See `python run.py --help`."""
import sys

from gluon_dcgan.cli import main

if __name__ == '__main__':
    sys.exit(main(prog='run.py'))
