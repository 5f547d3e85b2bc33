"""`python -m gluon_dcgan.launch`: the launcher by its old name (it is dist/launch.py)."""
import sys

from .dist.launch import main

if __name__ == '__main__':
    sys.exit(main())
