"""The command line: `run.py [train flags]` trains; `run.py COMMAND ...` runs a tool.

Every user error ends here as one line on stderr and a non-zero exit.
"""
import argparse
import os
import signal
import sys

from .config import OneLineParser, _flag, _int_in, _positive_int, parse_train_args, seed_int
from .errors import UserError
from .tools.generate import MAX_GRID
from .runtime import configure_process

COMMANDS = ('generate', 'export', 'evaluate', 'ablate-activation', 'analyze-categories')
# What gluon_dcgan.launch gives each worker besides DMLC_ROLE.
DMLC_LAUNCH_VARIABLES = ('DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT', 'DMLC_NUM_SERVER',
                         'DMLC_NUM_WORKER')


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _grid_size(text):
    value = _positive_int(text)
    if value > MAX_GRID:
        raise argparse.ArgumentTypeError(f'must be <= {MAX_GRID} (the images of one PNG '
                                         f'grid), got {value}: for more, run again with '
                                         f'other --seed values')
    return value


_walk_steps = _int_in(2, MAX_GRID)


def _generate_parser():
    p = OneLineParser(prog='run.py generate',
                      description='Write a grid of generated images from an exported generator, '
                                  'or (--interpolate) latent walks as a PNG grid and a GIF.')
    _flag(p, 'export', required=True, metavar='DIR', help="a run's export/ folder")
    _flag(p, 'num', type=_grid_size, default=None,
          help=f'images in the grid, at most {MAX_GRID} (default: 21)')
    _flag(p, 'seed', type=seed_int, default=0,
          help='noise seed in [0, 2**32) (default: %(default)s)')
    _flag(p, 'output', required=True, metavar='FILE.png', help='where to write the grid')
    _flag(p, 'interpolate', type=_positive_int, metavar='K',
          help='instead of --num images: K latent walks, each between two noise '
               'vectors drawn from --seed, by spherical interpolation (slerp); '
               'writes a grid of K rows by --steps columns to --output, and a GIF '
               'beside it (same name, .gif) with one frame per step showing all K '
               'walks at that step')
    _flag(p, 'steps', type=_walk_steps, metavar='N',
          help='latents per walk, both ends included, at least 2 (default: 8)')
    _flag(p, 'onnx', action='store_true',
          help='run export/generator.onnx with onnxruntime; MXNet is not imported')
    _flag(p, 'ctx', default='cpu', help='MXNet device (default: %(default)s)')
    return p


def _check_generate_args(args):
    if args.interpolate is None:
        if args.steps is not None:
            raise UserError('--steps is the length of a latent walk: add --interpolate K')
        args.num = 21 if args.num is None else args.num
    else:
        if args.num is not None:
            raise UserError('--num and --interpolate each choose what to draw: pick one')
        args.steps = 8 if args.steps is None else args.steps
        if args.interpolate * args.steps > MAX_GRID:
            raise UserError(f'--interpolate {args.interpolate} x --steps {args.steps} is more '
                            f'than the {MAX_GRID} images of one grid: lower either')
    if not args.output.lower().endswith('.png'):
        raise UserError(f'--output {args.output!r} must end in .png')
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f'folder {out_dir!r} for --output does not exist: create it first')


def generate_main(argv):
    """run.py generate: an image grid or latent walks from an export, via MXNet or onnxruntime."""
    args = _generate_parser().parse_args(argv)
    _check_generate_args(args)
    from .tools import generate
    if args.onnx:
        run, manifest = generate.load_onnx_generator(args.export)  # checks the files once
    else:
        from .runtime import resolve_contexts, use_np
        use_np()
        ctx = resolve_contexts(args.ctx)[0]
        net, manifest = generate.load_mxnet_generator(args.export, ctx)
        run = generate.mxnet_forward(net, ctx)
    if args.interpolate:
        Z = generate.latent_walk(args.interpolate, args.steps, manifest['latent_dim'], args.seed)
    else:
        Z = generate.latent_noise(args.num, manifest['latent_dim'], args.seed)
    pixels = generate.images_in_chunks(run, Z)  # bounded memory: only uint8 pixels pile up
    gif = args.output[:-4] + '.gif'
    try:
        if args.interpolate:
            generate.save_latent_walk(pixels, args.steps, args.output, gif)
        else:
            generate.save_pixel_grid(pixels, args.output)
    except OSError as exc:
        raise UserError(f'cannot write {exc.filename or args.output} ({exc.strerror})')
    _log(f'wrote {args.interpolate} latent walks of {args.steps} steps to {args.output} and '
         f'{gif}' if args.interpolate else f'wrote {args.num} images to {args.output}')
    return 0


def train_main(argv):
    """run.py [flags]: train the chapter's DCGAN."""
    cfg = parse_train_args(argv)
    from .runtime import avoid_onednn_single_channel_bug, use_np
    avoid_onednn_single_channel_bug(cfg.channels)
    use_np()
    from .train.fit import fit
    return fit(cfg, log=_log)


def _check_command(argv):
    """Refuse a first word that is neither a command nor a flag (training takes flags only)."""
    if not argv or argv[0].startswith('-') or argv[0] in COMMANDS:
        return
    import difflib
    close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    hint = f'did you mean {close[0]}? ' if close else ''
    raise UserError(f'unknown command {argv[0]!r}: {hint}the commands are '
                    f'{", ".join(COMMANDS)}, or flags only to train (see run.py --help)')


def _dispatch(argv):
    _check_command(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    rest = argv[1:] if command else argv
    if command == 'generate':
        return generate_main(rest)
    if command is None:
        return train_main(rest)
    import importlib
    module = importlib.import_module('.tools.' + command.replace('-', '_'), __package__)
    return module.main(rest)


def _terminated(signum, frame):
    _log('terminated before training started: nothing was saved')
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
    training = not argv or argv[0] not in COMMANDS
    dist_sync = any(a == '--kvstore=dist_sync' or (a == '--kvstore' and b == 'dist_sync')
                    for a, b in zip(argv, argv[1:] + ['']))
    if not (training and dist_sync and role == 'worker'):
        raise UserError(f'DMLC_ROLE={role} is set, but this is not a dist_sync training '
                        f'worker: unset DMLC_ROLE, or train with --kvstore dist_sync under '
                        f'python -m gluon_dcgan.launch')
    missing = [v for v in DMLC_LAUNCH_VARIABLES if not os.environ.get(v)]
    if missing:  # without them the worker waits for a scheduler that does not exist
        raise UserError(f'DMLC_ROLE=worker is set without {", ".join(missing)}: start '
                        f'dist_sync training with python -m gluon_dcgan.launch')


def _quiet_mxnet_shutdown(unraisable, default=sys.unraisablehook):
    """MXNet's atexit hook (MXNotifyShutdown) can fail while the process ends, rarely
    ('Failed to allocate CPU Memory'), after all work is done and every file is written:
    that would add a traceback under the one line that ended the command. Other
    unraisable exceptions are reported as usual."""
    if getattr(unraisable.object, '__name__', '') == '_notify_shutdown':
        return
    default(unraisable)


def main(argv=None):
    """Entry point of run.py; returns the exit code."""
    os.environ.setdefault('MPLBACKEND', 'Agg')  # figures go to files; the library leaves it be
    sys.unraisablehook = _quiet_mxnet_shutdown
    configure_process()  # before anything imports mxnet
    signal.signal(signal.SIGTERM, _terminated)  # training installs its own, checkpointing one
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _check_dmlc_role(argv)
        return _dispatch(argv)
    except UserError as exc:
        _log(f'error: {exc}')
        return exc.exit_code
    except KeyboardInterrupt:
        _log('interrupted before training started: nothing was saved')
        return 130


def run():
    """Entry point of the `gluon-dcgan` script and `python -m gluon_dcgan`: exit with main's code."""
    sys.exit(main())
