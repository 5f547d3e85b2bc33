"""Command-line plumbing every command shares: the name the user typed, the one-line
parser (which takes --snake_case for every --kebab-case flag), and the argparse types
that validate values.

A bad value becomes argparse's ``argument --x: <reason>`` line, which OneLineParser
prints alone, with exit 2.
"""
import argparse
import sys

from .seeds import SEED_LIMIT


# What the user typed to start the command line (cli.main sets it): run.py, gluon-dcgan or
# python -m gluon_dcgan. Usage lines and hints name it, so that they can be typed again.
_program = ['run.py']


def set_program(name):
    """Name the command line after what the user typed (see program)."""
    _program[0] = name


def program(command=None):
    """'gluon-dcgan', or 'gluon-dcgan generate' for a command: the prog of its parser."""
    return f'{_program[0]} {command}' if command else _program[0]


def runnable(command=None):
    """program(command) as a shell runs it: run.py is no program on PATH, python runs it."""
    name = program(command)
    return f'python {name}' if name.split()[0] == 'run.py' else name


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag gives one line and exit 2 instead of usage + error.

    Abbreviations are off: '--epoch 3' is an error, not a silent '--epochs 3'. Every
    --kebab-case flag is also read as --snake_case (``--batch_size 8``), which --help
    does not list: argparse cannot hide one name of a flag, so the snake spelling is
    rewritten to the kebab one before parsing, for the flags this parser knows only.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('allow_abbrev', False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self._kebab_case(args), namespace)

    def _kebab_case(self, args):
        known = self._option_string_actions
        for i, arg in enumerate(args):
            if arg == '--':  # what follows is no flag of this parser
                break
            name, sep, value = arg.partition('=')
            kebab = name.replace('_', '-')
            if name.startswith('--') and name not in known and kebab in known:
                args[i] = kebab + sep + value
        return args

    def error(self, message):
        sys.stderr.write(f'{self.prog}: error: {message} (see --help)\n')
        sys.exit(2)


def flag(parser, name, **kwargs):
    """Add --kebab-name, written to the snake_name field (OneLineParser reads --snake_name too)."""
    parser.add_argument(f'--{name}', dest=name.replace('-', '_'), **kwargs)


def int_in(minimum, maximum=None):
    """An argparse type: a whole number in [minimum, maximum] (no upper bound if None)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be a whole number, got {text!r}')
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be >= {minimum}, got {value}')
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f'must be <= {maximum}, got {value}')
        return value
    return parse


positive_int, non_negative_int = int_in(1), int_in(0)
_seed = int_in(0, SEED_LIMIT - 1)


def seed_int(text):
    """argparse type of every --seed: a whole number in [0, 2**32)."""
    return _seed(text)


def non_empty_path(text):
    """An argparse type: any path but an empty one."""
    if not text.strip():
        raise argparse.ArgumentTypeError('must not be empty: give a path')
    return text


def mxnet_path(text):
    """An argparse type: a path MXNet can write to, i.e. a non-empty UTF-8 name."""
    # MXNet's C API takes file names as UTF-8; a name that is not cannot be saved to.
    try:
        non_empty_path(text).encode('utf-8')
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f'{text!r} is not valid UTF-8, which MXNet needs '
                                         f'for the files it writes: choose another name')
    return text


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'must be a number, got {text!r}')


def positive_float(text):
    """An argparse type: a finite number > 0."""
    value = _number(text)
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'must be a finite number > 0, got {text}')
    return value


def unit_float(text):
    """An argparse type: a number in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {text}')
    return value
