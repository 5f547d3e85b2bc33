"""What happens after each epoch on the chief worker: checkpoint, pictures, metrics.

The training loop knows nothing of these: ``EpochEnd`` is one of its hooks (hooks.py),
and the run calls its ``save_checkpoint`` when a signal stops an epoch midway.
"""
import os

from ..images import grid, save_png, to_pixels
from ..seeds import Stream, noise
from . import checkpoint, report


class EpochEnd:
    """The chief's per-epoch callback: score (--eval-every, --fid-every), checkpoint, sample
    grid, training figure, metrics."""

    def __init__(self, cfg, paths, gan, fixed_noise, history, log, best=None):
        self.cfg, self.paths, self.gan, self.fixed_noise = cfg, paths, gan, fixed_noise
        self.log, self.best = log, best
        os.makedirs(paths.samples, exist_ok=True)
        metric = best.metric if best else None
        self.figure = report.TrainingFigure(cfg.epochs, paths.training,
                                            with_fid=metric == 'fid',
                                            with_quality=metric == 'kid')
        for row in history:  # a resumed run's figure covers the whole run, its scores too
            self.figure.add(row['epoch'], row['loss_D'], row['loss_G'], fid=row.get('fid'),
                            save=False, D=row)

    def save_checkpoint(self, state):
        """Checkpoint the nets, both Adam states and `state`; returns its path."""
        return checkpoint.save(self.paths.checkpoints, self.gan, self.fixed_noise, state)

    def epoch_end(self, epoch, state):
        row = state['history'][-1]
        values = self.best.score(epoch) if self.best and self.best.due(epoch) else None
        if values:
            row.update(values)  # recorded before the checkpoint is written: a resume keeps it
        path = self.save_checkpoint(state)
        if values:
            line = self.best.line(epoch, values, self.best.keep_if_best(epoch, values, path))
            if line:
                self.log(line)
        # Kept, with the fresh samples, for the hooks after this one (--tensorboard).
        self.grid = grid(to_pixels(self.gan.generate(self.fixed_noise)), cols=7)
        save_png(self.grid, os.path.join(self.paths.samples, f'epoch_{epoch:03d}.png'))
        self.fresh = fresh_samples(self.gan, epoch)
        self.figure.add(epoch, row['loss_D'], row['loss_G'], self.fresh, fid=row.get('fid'),
                        D=row)
        report.write_metrics(state['history'], self.paths.metrics)


def fresh_samples(gan, epoch):
    """The 21 samples of training.png after `epoch`: fresh latents of their own stream."""
    cfg = gan.cfg
    return gan.generate(noise(cfg.seed, Stream.SAMPLES, epoch, shape=(21, cfg.latent_dim, 1, 1)))
