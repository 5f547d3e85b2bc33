"""`python -m gluon_dcgan ...`: the same command line as run.py and gluon-dcgan."""
from .cli import run

if __name__ == '__main__':
    run(prog='python -m gluon_dcgan')
