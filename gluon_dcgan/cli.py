"""The command line: `run.py [train] [flags]` trains; `run.py COMMAND ...` runs another command.

The same for `gluon-dcgan` and `python -m gluon_dcgan`: usage lines and hints name
whichever the user typed. Every user error ends here as one line on stderr and a
non-zero exit.
"""
import argparse
import os
import shlex
import signal
import sys

from . import signals
from .errors import UserError
from .flags import program, runnable, set_program
from .runtime import check_environment, configure_process

# Every command, as --help lists it. `train` is also what flags alone do (the chapter's
# `python run.py`); `launch` is gluon_dcgan.launch; the others live in gluon_dcgan/tools.
COMMANDS = {
    'train': "train the chapter's DCGAN: the flags above (the default)",
    'generate': 'images from an exported generator, with no model code',
    'export': "re-export a run's generator from its newest checkpoint",
    'evaluate': "score an export's images against real images",
    'ablate-activation': 'exercise 1: leaky ReLU against ReLU in the discriminator',
    'analyze-categories': 'exercise 2: which Fashion-MNIST categories come out well',
    'launch': 'start a dist_sync training: scheduler, servers and workers',
    'share': 'a static web page that runs an export in the browser',
}
# tools/export.py would read as the export/ package: the export command is tools/reexport.py.
TOOL_MODULES = {'export': 'reexport'}
# What gluon_dcgan.launch gives each worker besides DMLC_ROLE.
DMLC_LAUNCH_VARIABLES = ('DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER',
                         'DMLC_NUM_WORKER')


def _log(message):
    print(message, file=sys.stderr, flush=True)


_training = {'ran': False}  # fit() has returned: it reported what it saved itself


def _training_parser(command):
    """The flags of training; bare (no command) its --help also lists the commands."""
    from .config import train_parser
    if command:
        return train_parser(prog=program(command), usage='%(prog)s [flags]')
    width = max(map(len, COMMANDS))
    epilog = '\n'.join([f'commands ({program()} COMMAND --help for each):'] +
                       [f'  {name:<{width}}  {what}' for name, what in COMMANDS.items()])
    return train_parser(usage='%(prog)s [train] [flags]\n       %(prog)s COMMAND [flags]',
                        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)


def _wrote(out_dir):
    """The lines after a complete run: the files a user looks at, and what to try next."""
    from .train.rundir import RunPaths
    paths = RunPaths(out_dir)
    shown = [p for p in (paths.training, paths.samples, paths.gif, paths.checkpoints,
                         paths.export) if os.path.exists(p)]
    names = ', '.join(os.path.basename(p) + ('/' if os.path.isdir(p) else '') for p in shown)
    return (f'wrote {os.path.join(out_dir, "")}: {names}\n'
            f'next: {runnable("generate")} --export {shlex.quote(paths.export)} '
            f'--output samples.png')


def train_main(argv, command=None):
    """run.py [train] [flags]: train the chapter's DCGAN; then, on stderr, what it wrote."""
    from .config import config_from_args
    cfg = config_from_args(_training_parser(command).parse_args(argv))
    from .runtime import avoid_onednn_single_channel_bug, use_np
    avoid_onednn_single_channel_bug(cfg.channels)
    use_np()
    from .train.fit import fit
    try:
        # Only a complete run's chief calls back: not after an interrupt, when there was
        # nothing to do, or on the other workers of a dist_sync run.
        return fit(cfg, log=_log, on_complete=lambda: _log(_wrote(cfg.out_dir)))
    finally:
        _training['ran'] = True


def _is_training(argv):
    return not argv or argv[0].startswith('-') or argv[0] == 'train'


def _check_command(argv):
    """Refuse a first word that is neither a command nor a flag."""
    if not argv or argv[0].startswith('-') or argv[0] in COMMANDS:
        return
    import difflib
    close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    hint = f'did you mean {close[0]}? ' if close else ''
    raise UserError(f'unknown command {argv[0]!r}: {hint}the commands are '
                    f'{", ".join(COMMANDS)}, or flags only to train (see {program()} --help)')


def _dispatch(argv):
    _check_command(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    rest = argv[1:] if command else argv
    if command in (None, 'train'):
        return train_main(rest, command)
    import importlib
    module = importlib.import_module('.tools.' + TOOL_MODULES.get(command, command.replace(
        '-', '_')), __package__)
    return module.main(rest)


def _stopped(argv, how):
    """What a signal outside training's own handlers leaves: nothing, said per command."""
    if _training['ran']:  # after training's own handlers: its lines above said what it saved
        return f'{how} while the process was ending; what training reported above stands'
    if _is_training(argv):
        return f'{how} before training started: nothing was saved'
    return f'{argv[0]} {how}: nothing was saved'


def _terminated(signum, frame):
    _log(_stopped(sys.argv[1:], 'terminated'))
    if _training['ran']:  # sys.exit could land in a finalizer, which prints it as a traceback
        os._exit(128 + signum)
    sys.exit(128 + signum)


def _check_dmlc_role(argv):
    """Refuse a DMLC_ROLE the command does not use, before MXNet is imported.

    ``import mxnet`` with DMLC_ROLE=server or scheduler runs a ps-lite server loop and
    never returns; only a dist_sync training worker (started by gluon_dcgan.launch)
    should see the variable.
    """
    role = os.environ.get('DMLC_ROLE')
    if role is None:
        return
    training = _is_training(argv)
    dist_sync = any(a == '--kvstore=dist_sync' or (a == '--kvstore' and b == 'dist_sync')
                    for a, b in zip(argv, argv[1:] + ['']))
    if not (training and dist_sync and role == 'worker'):
        raise UserError(f'DMLC_ROLE={role} is set, but this is not a dist_sync training '
                        f'worker: unset DMLC_ROLE, or train with --kvstore dist_sync under '
                        f'{runnable("launch")}')
    missing = [v for v in DMLC_LAUNCH_VARIABLES if not os.environ.get(v)]
    if missing:  # without them the worker waits for a scheduler that does not exist
        raise UserError(f'DMLC_ROLE=worker is set without {", ".join(missing)}: start '
                        f'dist_sync training with {runnable("launch")}')


def _quiet_mxnet_shutdown(unraisable, default=sys.unraisablehook):
    """MXNet's atexit hook (MXNotifyShutdown) can fail while the process ends, rarely
    ('Failed to allocate CPU Memory'), after all work is done and every file is written:
    that would add a traceback under the one line that ended the command. Other
    unraisable exceptions are reported as usual."""
    if getattr(unraisable.object, '__name__', '') == '_notify_shutdown':
        return
    default(unraisable)


def _one_line(message):
    """A path with a line break in it must not split the error over two lines."""
    return message.replace('\r', '\\r').replace('\n', '\\n')


def _os_problem(exc):
    """One line for an OSError no check foresaw: what failed, where, and what to do."""
    where = f' ({exc.filename})' if exc.filename else ''
    what = exc.strerror or str(exc) or type(exc).__name__
    return (f'{what}{where}: check that the folder exists, can be written and has space, '
            f'then run again (a run continues with --resume)')


def _utf8_mode():
    """Run again in Python's UTF-8 mode where the locale is not UTF-8 (LC_ALL=POSIX).

    There Python decodes a UTF-8 file name such as 'é' into surrogates that MXNet's C
    API cannot take; UTF-8 mode reads the same bytes as the name they are.
    """
    if sys.flags.utf8_mode or sys.getfilesystemencoding().lower().replace('-', '') == 'utf8':
        return
    if getattr(sys, 'orig_argv', None) and sys.argv[0] and os.path.exists(sys.executable):
        os.execv(sys.executable, [sys.executable, '-X', 'utf8'] + sys.orig_argv[1:])


def main(argv=None, prog='run.py'):
    """The command line started as `prog` (what the user typed); returns the exit code."""
    if argv is None:
        _utf8_mode()
    argv = sys.argv[1:] if argv is None else list(argv)
    set_program(prog)
    # The launcher skips the set-up below: what it set in its environment (OMP_NUM_THREADS
    # from this machine's cores) would reach every worker, remote ones too.
    if argv[:1] == ['launch']:
        from .dist import launch
        return launch.main(argv[1:], cli=prog)
    os.environ.setdefault('MPLBACKEND', 'Agg')  # figures go to files; the library leaves it be
    sys.unraisablehook = _quiet_mxnet_shutdown
    configure_process()  # before anything imports mxnet
    signals.install(_terminated, (signal.SIGTERM,))  # training installs its own, checkpointing one
    _training['ran'] = False  # (tests call main several times in one process)
    try:
        try:
            os.getcwd()
        except FileNotFoundError:
            raise UserError('the current folder was deleted: cd to an existing folder, then '
                            'run again') from None
        check_environment()
        _check_dmlc_role(argv)
        return _dispatch(argv)
    except UserError as exc:
        _log(_one_line(f'error: {exc}'))
        return exc.exit_code
    except BrokenPipeError:  # stdout closed early (`| head`): the run's files are complete
        sys.stdout = open(os.devnull, 'w')  # Python would complain again at exit
        return 128 + signal.SIGPIPE
    except ModuleNotFoundError as exc:  # a module imported before runtime.import_mxnet
        if exc.name != 'mxnet':
            raise
        from .runtime import NO_MXNET
        _log(f'error: {NO_MXNET}')
        return 2
    except OSError as exc:  # the file system refused (permissions, a name too long, ...)
        _log(_one_line(f'error: {_os_problem(exc)}'))
        return 1
    except KeyboardInterrupt:
        _log(_stopped(argv, 'interrupted'))
        return 130


def run(prog=None):
    """Entry point of the `gluon-dcgan` script (prog: the script's name) and of
    `python -m gluon_dcgan`: exit with main's code."""
    sys.exit(main(prog=prog or os.path.basename(sys.argv[0])))
