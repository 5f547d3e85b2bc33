"""The command line: `run.py [train flags]` trains; `run.py COMMAND ...` runs a tool.

Every user error ends here as one line on stderr and a non-zero exit.
"""
import os
import signal
import sys

from .config import OneLineParser, parse_train_args
from .errors import UserError
from .runtime import configure_process

COMMANDS = ('generate', 'export', 'evaluate', 'ablate-activation', 'analyze-categories')


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _positive(text):
    from .config import _positive_int
    return _positive_int(text)


def generate_main(argv):
    """run.py generate: an image grid from an export, via MXNet or (--onnx) onnxruntime."""
    p = OneLineParser(prog='run.py generate',
                      description='Write a grid of generated images from an exported generator.')
    p.add_argument('--export', required=True, metavar='DIR', help="a run's export/ folder")
    p.add_argument('--num', type=_positive, default=21, help='images (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0, help='noise seed (default: %(default)s)')
    p.add_argument('--output', required=True, metavar='FILE.png', help='where to write the grid')
    p.add_argument('--onnx', action='store_true',
                   help='run export/generator.onnx with onnxruntime; MXNet is not imported')
    p.add_argument('--ctx', default='cpu', help='MXNet device (default: %(default)s)')
    args = p.parse_args(argv)
    if not args.output.lower().endswith('.png'):
        raise UserError(f'--output {args.output!r} must end in .png')
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f'folder {out_dir!r} for --output does not exist: create it first')
    from . import generate
    if args.onnx:
        run, manifest = generate.load_onnx_generator(args.export)  # checks the files once
        images = run(generate.latent_noise(args.num, manifest['latent_dim'], args.seed))
    else:
        from .runtime import resolve_contexts, use_np
        use_np()
        ctx = resolve_contexts(args.ctx)[0]
        net, manifest = generate.load_mxnet_generator(args.export, ctx)
        Z = generate.latent_noise(args.num, manifest['latent_dim'], args.seed)
        from mxnet import np
        images = net(np.array(Z, ctx=ctx)).asnumpy()
    try:
        generate.save_grid(images, args.output)
    except OSError as exc:
        raise UserError(f'cannot write {args.output} ({exc.strerror})')
    _log(f'wrote {args.num} images to {args.output}')
    return 0


def train_main(argv):
    """run.py [flags]: train the chapter's DCGAN."""
    cfg = parse_train_args(argv)
    from .runtime import avoid_onednn_single_channel_bug, use_np
    avoid_onednn_single_channel_bug(cfg.channels)
    use_np()
    from .train.fit import fit
    return fit(cfg, log=_log)


def _dispatch(argv):
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


def main(argv=None):
    """Entry point of run.py; returns the exit code."""
    os.environ.setdefault('MPLBACKEND', 'Agg')  # figures go to files; the library leaves it be
    configure_process()  # before anything imports mxnet
    signal.signal(signal.SIGTERM, _terminated)  # training installs its own, checkpointing one
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _dispatch(argv)
    except UserError as exc:
        _log(f'error: {exc}')
        return exc.exit_code
    except KeyboardInterrupt:
        _log('interrupted before training started: nothing was saved')
        return 130
