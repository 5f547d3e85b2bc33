"""`python -m gluon_dcgan.launch`: the launcher under the name it had before dist/ (dist/launch.py)."""
import sys

from .dist.launch import main

if __name__ == '__main__':
    sys.exit(main())
