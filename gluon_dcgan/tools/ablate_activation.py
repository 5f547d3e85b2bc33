"""run.py ablate-activation: the chapter's exercise 1, leaky ReLU against ReLU in net_D.

Trains both variants with the same data and seed into DIR/leaky and DIR/relu
(ordinary run folders), then measures each on fixed batches and writes
DIR/ablation.md (a table), DIR/ablation.json (its numbers) and DIR/ablation.png
(loss curves and samples). Those three replace only files it wrote before
(outputs.py keeps their digests); a user's file under one of the names is
refused before training starts, unless --overwrite.
"""
import dataclasses
import json
import os
import sys

import numpy as onp

from ..config import config_from_args, train_parser
from ..flags import program
from ..errors import UserError
from ..files import written_atomically
from .outputs import check_replaceable, record_written

VARIANTS = ('leaky', 'relu')
PROBE = 64  # real and fake images in the fixed measuring batches
COLUMNS = ('variant', 'final loss_D', 'final loss_G', 'mean D(real)', 'mean D(fake)',
           'dead D units', 'diversity')
REPORTS = ('ablation.md', 'ablation.json', 'ablation.png')
COMMAND = 'ablate-activation'


def dead_unit_share(pre_activations):
    """Share of units never positive: a unit is one channel of one D_block.

    `pre_activations` is a list of (N, C, H, W) arrays (each block's BatchNorm
    output, i.e. the activation's input); a channel is dead if no image and no
    position gives it a value > 0, so neither ReLU nor leaky ReLU passes it on.
    """
    dead = total = 0
    for a in pre_activations:
        alive = (onp.asarray(a) > 0).any(axis=(0, 2, 3))
        dead += int((~alive).sum())
        total += alive.size
    return dead / total


def mean_pairwise_distance(images):
    """Mean L2 distance over all pairs of (N, ...) images."""
    x = onp.asarray(images, dtype=onp.float64).reshape(len(images), -1)
    sq = (x ** 2).sum(1)
    d2 = onp.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    iu = onp.triu_indices(len(x), 1)
    return float(onp.sqrt(d2[iu]).mean())


def _probe_run(run_dir, real):
    """Measures of one finished run on the fixed real batch."""
    import mxnet as mx
    from mxnet import np
    from ..data.loader import normalize
    from .. import model
    from ..train import checkpoint
    from ..seeds import Stream, noise
    from ..train.restore import load_run_generator
    ctx = mx.cpu()
    net_G, cfg, path = load_run_generator(run_dir, ctx)
    net_D = model.net_D(cfg.n_D, cfg.alpha, cfg.d_activation,
                        input_norm=cfg.d_input_batch_norm)
    net_D.load_parameters(os.path.join(path, 'net_D.params'), ctx=ctx)
    fake = net_G(np.array(noise(cfg.seed, Stream.ABLATION, shape=(PROBE, cfg.latent_dim, 1, 1))))
    X = normalize(np.array(real, dtype='uint8'))
    pre, x = [], np.concatenate([X, fake], axis=0)
    for block in net_D[:-1]:
        x = block.batch_norm(block.conv2d(x))
        pre.append(x.asnumpy())
        x = block.activation(x)
    probs = 1 / (1 + onp.exp(-net_D[-1](x).asnumpy().reshape(-1)))
    history = checkpoint.load_state(path)['history']
    return {'variant': cfg.d_activation, 'final loss_D': history[-1]['loss_D'],
            'final loss_G': history[-1]['loss_G'], 'mean D(real)': float(probs[:PROBE].mean()),
            'mean D(fake)': float(probs[PROBE:].mean()), 'dead D units': dead_unit_share(pre),
            'diversity': mean_pairwise_distance(fake.asnumpy()) / mean_pairwise_distance(
                X.asnumpy()), 'history': history, 'fake': fake.asnumpy()[:21]}


def write_markdown(rows, path, cfg):
    """ablation.md: one row per variant, and how to read it."""
    lines = ['# Exercise 1: leaky ReLU vs ReLU in the discriminator', '',
             f'Data `{cfg.data}` ({cfg.limit or "all"} images), {cfg.epochs} epochs, batch '
             f'{cfg.batch_size}, seed {cfg.seed}, alpha {cfg.alpha} for the leaky variant.', '',
             '| ' + ' | '.join(COLUMNS) + ' |', '|' + '---|' * len(COLUMNS)]
    for r in rows:
        lines.append('| ' + ' | '.join([r['variant']] + [f'{r[c]:.3f}' for c in COLUMNS[1:]])
                     + ' |')
    lines += ['', '* mean D(real), D(fake): mean sigmoid of net_D on 64 real images and 64 '
              'images from fixed noise (inference mode).',
              '* dead D units: share of D_block channels whose BatchNorm output is never > 0 '
              'on those 128 images; ReLU passes no gradient through them.',
              '* diversity: mean pairwise L2 distance of the 64 generated images divided by '
              'that of the 64 real ones (1 = as varied as the data; near 0 = mode collapse).']
    with written_atomically(path) as tmp, open(tmp, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_figure(rows, path):
    """ablation.png: each variant's loss curves above its sample grid."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    from ..images import grid, to_pixels
    fig, axes = plt.subplots(2, len(rows), figsize=(5 * len(rows), 8))
    for k, r in enumerate(rows):
        epochs = [h['epoch'] for h in r['history']]
        axes[0, k].plot(epochs, [h['loss_D'] for h in r['history']], label='discriminator')
        axes[0, k].plot(epochs, [h['loss_G'] for h in r['history']], '--', label='generator')
        axes[0, k].set(title=f"net_D with {r['variant']}", xlabel='epoch', ylabel='loss')
        axes[0, k].legend()
        axes[1, k].imshow(grid(to_pixels(r['fake']), cols=7).squeeze(), cmap='gray')
        axes[1, k].axis('off')
    fig.tight_layout()
    with written_atomically(path) as tmp:
        fig.savefig(tmp, format='png', dpi=90)
    plt.close(fig)


def main(argv):
    """Train both variants, then measure and report; returns the exit code."""
    parser = train_parser(prog=program('ablate-activation'), description=(
        'Exercise 1: train net_D with leaky ReLU and with ReLU on the same data and seed, '
        'then compare them in OUT_DIR/ablation.md, .json and .png. A file of yours under '
        'one of those names is refused; --overwrite restarts both runs and replaces it.'))
    cfg = config_from_args(parser.parse_args(argv))
    if any(a.split('=')[0] in ('--d-activation', '--d_activation') for a in argv):
        raise UserError('ablate-activation trains both --d-activation variants (leaky and '
                        'relu) itself: drop --d-activation')
    check_replaceable(cfg.out_dir, REPORTS, COMMAND, cfg.overwrite)  # before hours of training
    from ..runtime import avoid_onednn_single_channel_bug, use_np
    avoid_onednn_single_channel_bug(cfg.channels)
    use_np()
    from ..data import load_images
    from ..train.fit import fit
    for variant in VARIANTS:
        # With --tensorboard DIR, each variant logs into DIR/VARIANT: TensorBoard shows
        # them as two runs side by side (in DIR itself the second would hide the first).
        run = dataclasses.replace(cfg, d_activation=variant,
                                  out_dir=os.path.join(cfg.out_dir, variant),
                                  tensorboard=cfg.tensorboard and
                                  os.path.join(cfg.tensorboard, variant))
        print(f'== training the {variant} variant into {run.out_dir}', file=sys.stderr)
        code = fit(run, log=lambda m: print(m, file=sys.stderr))
        if code:
            return code
    real = load_images(dataclasses.replace(cfg, batch_size=1), log=lambda m: None)[:PROBE]
    rows = [_probe_run(os.path.join(cfg.out_dir, v), real) for v in VARIANTS]
    _write_reports(rows, cfg)
    print(open(os.path.join(cfg.out_dir, 'ablation.md')).read())
    return 0


def _write_reports(rows, cfg):
    # Checked again: a file may have been put there during the training.
    check_replaceable(cfg.out_dir, REPORTS, COMMAND, cfg.overwrite)
    write_markdown(rows, os.path.join(cfg.out_dir, 'ablation.md'), cfg)
    with written_atomically(os.path.join(cfg.out_dir, 'ablation.json')) as tmp, \
            open(tmp, 'w') as f:
        json.dump([{c: r[c] for c in COLUMNS} for r in rows], f, indent=1)
    write_figure(rows, os.path.join(cfg.out_dir, 'ablation.png'))
    record_written(cfg.out_dir, REPORTS)
