"""The run's pictures and metrics file: the chapter's figures, saved instead of shown.

d2l's plotting helpers draw into notebooks; here each figure is saved to a PNG
in the run folder and nothing is printed to the terminal. The backend is left
alone (the CLI defaults it to Agg), so a notebook that imports this keeps its
inline plots.
"""
import contextlib
import io
import json
import os
import warnings

import numpy as onp

from ..files import written_atomically
from ..images import grid, save_gif, to_pixels

# The third panel of training.png: metric -> (line style, legend).
D_LINES = {'D_x': ('-', 'D(x) on real images'), 'D_G_z': ('m--', 'D(G(z)) before the D step'),
           'D_G_z2': ('g-.', 'D(G(z)) after the D step')}


# The fourth panel (--eval-every): metric -> legend; lower KID and higher coverage are better.
QUALITY_LEGEND = {'kid': 'KID×1000 (EfficientNet-Lite0)', 'coverage': 'coverage (right axis)'}


def _d2l():
    from d2l import mxnet as d2l
    return d2l


def _savefig(fig, path):
    with written_atomically(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100, bbox_inches='tight')


def save_real_samples(images_uint8, path):
    """The chapter's first figure: 20 training images in a 4x5 grid (d2l.show_images)."""
    d2l = _d2l()
    d2l.set_figsize((4, 4))
    imgs = images_uint8[:20].astype(onp.float32) / 255  # == X/2 + 0.5 of the normalised batch
    if imgs.shape[-1] == 1:
        imgs = imgs.squeeze(-1)
    axes = d2l.show_images(imgs, num_rows=4, num_cols=5)
    _savefig(axes[0].figure, path)
    d2l.plt.close(axes[0].figure)


def save_leaky_relu(path):
    """The chapter's leaky ReLU plot for alpha in [0, .2, .4, .6, .8, 1]."""
    from mxnet.gluon import nn
    d2l = _d2l()
    alphas = [0, .2, .4, .6, .8, 1]
    x = d2l.arange(-2, 1, 0.1)
    Y = [d2l.numpy(nn.LeakyReLU(alpha)(x)) for alpha in alphas]
    # d2l.plot has 4 line styles by default, which would drop alpha .8 and 1.
    d2l.plot(d2l.numpy(x), Y, 'x', 'y', alphas,
             fmts=('-', 'm--', 'g-.', 'r:', 'c-', 'k--'))
    fig = d2l.plt.gcf()
    _savefig(fig, path)
    d2l.plt.close(fig)


class TrainingFigure:
    """The chapter's d2l.Animator: losses, 21 fresh samples, and below them D's outputs;
    with --eval-every a fourth panel: KID x1000 and coverage of the epochs scored."""

    def __init__(self, num_epochs, path, with_fid=False, with_quality=False):
        d2l = _d2l()
        self.path, self.with_fid, self.num_epochs = path, with_fid, num_epochs
        legend = ['discriminator', 'generator'] + (['FID / 100'] if with_fid else [])
        rows = 4 if with_quality else 3
        self.animator = d2l.Animator(xlabel='epoch', ylabel='loss', xlim=[1, num_epochs],
                                     nrows=rows, figsize=(5, 2.5 * rows), legend=legend)
        self.animator.fig.subplots_adjust(hspace=0.5 if with_quality else 0.45)
        self.D = {k: ([], []) for k in D_LINES}
        # Coverage lies in [0, 1] and KID x1000 in the hundreds early on: an axis each.
        self.quality = ([], [], []) if with_quality else None
        self.coverage_axis = self.animator.axes[3].twinx() if with_quality else None

    def add(self, epoch, loss_D, loss_G, fake_x=None, fid=None, save=True, D=None):
        """Add an epoch's losses, FID if scored, 21 samples (NCHW in [-1, 1]) and the
        mean D outputs in `D` (a metrics row: D_x, D_G_z, D_G_z2, and kid and coverage
        if scored); re-save."""
        from matplotlib.ticker import MaxNLocator
        if fake_x is not None:
            self._show_samples(epoch, fake_x)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # xlim [1, 1] of a 1-epoch run; d2l's display()
            fid_point = (None if fid is None else fid / 100,) if self.with_fid else ()
            self.animator.add(epoch, (loss_D, loss_G) + fid_point)  # None: not scored
            self._plot_D(epoch, D or {})
            if self.quality is not None:
                self._plot_quality(epoch, D or {})
            for i, ax in enumerate(self.animator.axes):
                if i != 1:  # the samples have no axes
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        if save:
            _savefig(self.animator.fig, self.path)

    def _show_samples(self, epoch, fake_x):
        # The chapter's 3x7 layout: rows of 7 images side by side, no gaps.
        imgs = grid(to_pixels(fake_x), cols=7, pad=0)
        ax = self.animator.axes[1]
        ax.cla()
        ax.imshow(imgs.squeeze(-1) if imgs.shape[-1] == 1 else imgs, cmap='gray')
        ax.set_title(f'21 fresh samples after epoch {epoch}', fontsize='small')
        ax.axis('off')

    def _plot_D(self, epoch, row):
        for k, (xs, ys) in self.D.items():
            if row.get(k) is not None:  # rows written before these metrics existed lack them
                xs.append(epoch)
                ys.append(row[k])
        ax = self.animator.axes[2]
        ax.cla()
        ax.axhline(0.5, color='0.6', linewidth=0.8)  # where neither net has the upper hand
        for k, (xs, ys) in self.D.items():
            ax.plot(xs, ys, D_LINES[k][0], label=D_LINES[k][1])
        ax.set_xlim(1, self.num_epochs)
        ax.set_ylim(0, 1)
        ax.set_xlabel('epoch')
        ax.set_ylabel('mean D output')
        # Above the panel, in the gap below the samples: no line is ever hidden.
        ax.legend(loc='lower center', bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize='small',
                  frameon=False)
        ax.grid()


    def _plot_quality(self, epoch, row):
        epochs, kids, coverages = self.quality
        if row.get('kid') is not None:  # only the epochs --eval-every scored
            epochs.append(epoch)
            kids.append(1000 * row['kid'])
            coverages.append(row['coverage'])
        ax, right = self.animator.axes[3], self.coverage_axis
        ax.cla()
        right.cla()
        # Markers: with --eval-every K the points are K epochs apart, and one alone is no line.
        kid_line, = ax.plot(epochs, kids, 'b-o', markersize=3,
                            label=QUALITY_LEGEND['kid'])
        coverage_line, = right.plot(epochs, coverages, 'r--s', markersize=3,
                                    label=QUALITY_LEGEND['coverage'])
        ax.set_xlim(1, self.num_epochs)
        ax.set_xlabel('epoch')
        ax.set_ylabel('KID×1000')
        right.yaxis.tick_right()  # cla() puts a twin's axis back on the left
        right.yaxis.set_label_position('right')
        right.set_ylim(0, 1)
        right.set_ylabel('coverage')
        ax.legend(handles=[kid_line, coverage_line], loc='lower center',
                  bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize='small', frameon=False)
        ax.grid()


def write_metrics(history, path):
    """Rewrite metrics.jsonl from the whole history: each epoch exactly once."""
    with written_atomically(path) as tmp, open(tmp, 'w') as f:
        for row in history:
            f.write(json.dumps(row) + '\n')


def write_gif(sample_dir, path, ms_per_frame=400):
    """progress.gif from samples/epoch_NNN.png, in epoch order."""
    from PIL import Image
    names = sorted(n for n in os.listdir(sample_dir) if n.startswith('epoch_') and
                   n.endswith('.png'))
    frames = []
    for name in names:
        with Image.open(os.path.join(sample_dir, name)) as image:
            frames.append(onp.asarray(image.convert('RGB')))
    save_gif(frames, path, ms_per_frame)
