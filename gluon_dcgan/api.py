"""The package as Python calls, for notebooks and scripts: config, train, export, generate,
evaluate (notebooks/dcgan.ipynb uses each; docs/api.md lists them).

Each is a thin wrapper over what the commands run, so a call gives what its command
gives: ``config`` makes the checks the command line makes, ``train`` runs the chapter's
loop (train/loop.py) without a run folder, ``export`` writes what a run's export/ holds,
``generate`` and ``latent_walk`` draw the images ``run.py generate`` draws for the same
seed, and ``evaluate`` is ``run.py evaluate``. A bad value is a UserError of one line.
Nothing here runs at import.
"""
import contextlib
import io
import os
import sys

from .errors import UserError


def config(**fields):
    """A checked Config: the chapter's defaults with `fields` (Config's field names) changed.

    ``config(data='synthetic', limit=256, epochs=2)`` is ``run.py --data synthetic --limit
    256 --epochs 2``: the fields go through the command line's parser and checks, so a
    value it refuses is a UserError of its line (``api.config: error: argument
    --batch-size: ...``), and recipes apply as there. An unknown name is a TypeError.
    """
    from .config import Config, config_from_args, train_parser
    Config(**fields)  # a TypeError names an unknown field, as for any call
    parser = train_parser(prog='api.config')
    actions = {action.dest: action for action in parser._actions}
    argv = []
    for name, value in fields.items():
        action = actions[name]
        if action.nargs == 0:  # --resume, --no-progress, ...: given when not the default
            argv += [action.option_strings[0]] if value != action.default else []
        elif value is not None:  # --flag=VALUE: a value such as '-x' stays a value
            argv.append(f'{action.option_strings[0]}={value}')
    with contextlib.redirect_stderr(io.StringIO()) as said:
        try:
            args = parser.parse_args(argv)
        except SystemExit:  # OneLineParser said why in one line
            raise UserError(said.getvalue().strip().removesuffix(' (see --help)')) from None
    return config_from_args(args)


def final_line(state, ctxs):
    """The chapter's last line: 'loss_D 0.035, loss_G 6.190, 2583.0 examples/sec on gpu(0)',
    from the last epoch of `state`'s history, as training prints it."""
    from .train.fit import final_line as line
    return line(state, ctxs)


class Animator:
    """The chapter's d2l.Animator as a train() hook: after each epoch, the losses, 21 fresh
    samples and D's mean outputs (train/report.py:TrainingFigure, never saved to a file).

    In a notebook the figure redraws inline; elsewhere it draws nothing visible.
    """

    def __init__(self, gan):
        from .train.report import TrainingFigure
        self.gan = gan
        self.figure = TrainingFigure(gan.cfg.epochs, path=None)

    def epoch_end(self, epoch, state):
        from .train.epoch_end import fresh_samples  # training.png's samples, to the bit
        row = state['history'][-1]
        self.figure.add(epoch, row['loss_D'], row['loss_G'], fresh_samples(self.gan, epoch),
                        save=False, D=row)


def train(cfg, images=None, animate=True, hooks=(), log=print, out=None):
    """The chapter's train(): fresh nets on cfg's data for cfg.epochs; returns (gan, state).

    Builds the GAN as the chapter's train() does (train/loop.py:GAN: net_G, net_D,
    init.Normal(0.02), SigmoidBCELoss, two Adam Trainers with beta1 0.5) on cfg.ctx,
    runs train/loop.py:train (update_D, update_G per batch), then prints final_line
    on `out` (default: sys.stdout). `images` ((N, 64, 64, C) uint8) defaults to
    load_images(cfg). With `animate`, the Animator hook draws each epoch; `hooks` are
    more train() hooks (train/hooks.py), called after it. Everything stays in memory:
    no run folder, no checkpoint (``run.py`` writes those); one process only.
    `state['history']` holds one row per epoch (loss_D, loss_G, D_x, ..., examples_per_sec).
    """
    from .data import load_images
    from .memory import check_training_memory
    from .runtime import avoid_onednn_single_channel_bug, resolve_contexts, use_np
    from .train.loop import GAN, new_state
    from .train.loop import train as chapter_train
    # What writes into a run folder has none here: say so rather than ignore it.
    kept = [f'--{name.replace("_", "-")}' for name in ('tensorboard', 'eval_every', 'fid_every')
            if getattr(cfg, name)]
    if kept:
        raise UserError(f'api.train keeps no run folder, so {", ".join(kept)} would do nothing: '
                        'use run.py for those, or leave them unset')
    avoid_onednn_single_channel_bug(cfg.channels)  # as run.py does; before MXNet loads
    use_np()
    check_training_memory(cfg.n_G, cfg.n_D, cfg.latent_dim, cfg.channels, cfg.batch_size,
                          cfg.ctx)
    ctxs = resolve_contexts(cfg.ctx)
    images = load_images(cfg, log) if images is None else images
    gan = GAN(cfg, ctxs)
    # --ema's average is a hook, as in run.py; before the Animator, which draws from it.
    from .train.ema import EMA
    averaging = [EMA(gan.net_G, gan.net_G_ema, cfg.ema)] if cfg.ema else []
    hooks = averaging + ([Animator(gan)] if animate else []) + list(hooks)
    state = chapter_train(gan, images, cfg.epochs, new_state(), hooks)
    print(final_line(state, ctxs), file=out or sys.stdout, flush=True)
    return gan, state


def export(gan, state, folder):
    """Export the trained, hybridized generator into `folder`; returns its manifest.

    The files a run's export/ holds (export/run_export.py): generator-symbol.json and
    generator-0000.params (HybridBlock.export), generator.onnx, manifest.json. An
    existing export there is replaced; a folder holding anything else is refused.
    """
    from .export.run_export import export_run
    return export_run(gan.sampler, gan.cfg, folder, gan.ctxs[0], state['epoch'])


def _loaded(folder, onnx, ctx):
    """(a function host latents -> images, manifest) of the export in `folder`, checked."""
    from .export.load import load_mxnet_generator, load_onnx_generator, mxnet_forward
    if onnx:
        return load_onnx_generator(folder)
    from .runtime import resolve_contexts, use_np
    use_np()
    device = resolve_contexts(ctx)[0]
    net, manifest = load_mxnet_generator(folder, device)
    return mxnet_forward(net, device), manifest


def _pixels(folder, onnx, ctx, num, what, draw):
    """(num, H, W, C) uint8 images of the export for the latents draw(latent_dim)."""
    from .export.load import check_memory, pixels_of
    from .tools.generate import MAX_GRID
    forward, manifest = _loaded(folder, onnx, ctx)
    check_memory(manifest, num, MAX_GRID, what)
    return pixels_of(folder, forward, manifest, draw(manifest['latent_dim']))


def generate(folder, num=21, seed=0, onnx=False, ctx='cpu'):
    """(num, H, W, C) uint8 images from the export in `folder`: the tiles of
    ``run.py generate --export FOLDER --num NUM --seed SEED`` (``onnx``: --onnx, onnxruntime
    only). images.grid or images.square_grid tile them; images.save_png writes one."""
    from .tools.latent import latent_noise
    return _pixels(folder, onnx, ctx, num, 'num',
                   lambda latent_dim: latent_noise(num, latent_dim, seed))


def latent_walk(folder, pairs=4, steps=8, seed=0, onnx=False, ctx='cpu'):
    """(pairs * steps, H, W, C) uint8: `pairs` slerp walks of `steps` images, walk by walk,
    those of ``run.py generate --interpolate PAIRS --steps STEPS --seed SEED``;
    images.grid(pixels, cols=steps) gives its PNG's rows."""
    from .tools.latent import latent_walk as walk
    return _pixels(folder, onnx, ctx, pairs * steps, 'pairs or steps',
                   lambda latent_dim: walk(pairs, steps, latent_dim, seed))


def evaluate(folder, data='pokemon', num=5000, seed=0, data_root=None, limit=None,
             overwrite=False, ctx='cpu'):
    """``run.py evaluate``: the offline quality report of the export in `folder` against
    `data`'s real images (EfficientNet-Lite0 features); returns the report (quality.json).

    Prints the command's summary line and writes quality.json, quality.md and quality.png
    beside the export (in its parent folder), replacing only files evaluate wrote itself
    unless `overwrite`. `data`, `data_root` and `limit` are the training flags of the same
    names; `num` images per side. A value evaluate's flags refuse ends as the command
    does: its one line on stderr, then SystemExit(2).
    """
    from .files import read_json
    from .quality.report import FILES
    from .tools import evaluate as command
    flags = {'export': folder, 'num': num, 'seed': seed, 'data': data, 'ctx': ctx,
             'data-root': data_root, 'limit': limit}  # None: the command's default
    argv = [f'--{name}={value}' for name, value in flags.items() if value is not None]
    command.main(argv + ['--no-progress'] + (['--overwrite'] if overwrite else []))
    return read_json(os.path.join(os.path.dirname(os.path.abspath(folder)), FILES[0]))
