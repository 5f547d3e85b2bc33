"""--fid-every: score the generator every K epochs and keep the best one.

The best checkpoint is copied to checkpoints/best (with score.json) and its
generator exported to export/best/, next to the last one.
"""
import json
import os
import shutil

import numpy as onp

from .. import fid
from ..export.run_export import export_run
from ..files import read_json, temporary_folder
from ..images import to_pixels
from ..seeds import Stream, rng
from . import checkpoint


class BestByFID:
    """Scores epochs and keeps checkpoints/best; `enabled` is False without --fid-every."""

    def __init__(self, cfg, paths, gan, real_images, ctx, net):
        """`net`: FID's InceptionV3 (fid.load_inception), loaded by the run's checks."""
        self.cfg, self.paths, self.gan, self.ctx, self.net = cfg, paths, gan, ctx, net
        self.folder = os.path.join(paths.checkpoints, 'best')
        real = real_images[:cfg.fid_num]
        self.real_stats = fid.statistics(fid.inception_features(self.net, real, ctx))
        self.best = self._saved_score()

    def _saved_score(self):
        """The FID in checkpoints/best/score.json, or None (no best yet, or a damaged file:
        the next score replaces it)."""
        try:
            score = read_json(os.path.join(self.folder, 'score.json'), 1 << 16)['fid']
        except (OSError, ValueError, KeyError, TypeError):  # files.Damaged is a ValueError
            return None
        number = isinstance(score, (int, float)) and not isinstance(score, bool)
        return score if number and onp.isfinite(score) else None

    def due(self, epoch):
        return epoch % self.cfg.fid_every == 0

    def score(self, epoch):
        """FID of fid_num images from this epoch's generator."""
        # One draw per epoch, taken 256 latents at a time: the same latents as in one piece.
        chunks, draw = [], rng(self.cfg.seed, Stream.FID, epoch)
        for i in range(0, self.cfg.fid_num, 256):
            n = min(256, self.cfg.fid_num - i)
            Z = draw.standard_normal((n, self.cfg.latent_dim, 1, 1), dtype=onp.float32)
            chunks.append(to_pixels(self.gan.generate(Z)))
        return fid.fid_of_images(self.net, onp.concatenate(chunks), self.real_stats, self.ctx)

    def keep_if_best(self, epoch, score, checkpoint_path):
        """Copy the epoch's checkpoint to checkpoints/best and export it, if it is the best."""
        if self.best is not None and score >= self.best:
            return False
        # Built under a checkpoint temp name: a run killed meanwhile leaves only what the
        # next save (and --overwrite) knows to remove, and never a half-copied best.
        with temporary_folder(self.paths.checkpoints, checkpoint.TMP_PREFIX) as tmp:
            shutil.copytree(checkpoint_path, tmp, dirs_exist_ok=True)
            with open(os.path.join(tmp, 'score.json'), 'w') as f:
                json.dump({'fid': score, 'epoch': epoch, 'fid_num': self.cfg.fid_num}, f)
            shutil.rmtree(self.folder, ignore_errors=True)
            os.replace(tmp, self.folder)
        export_run(self.gan.sampler, self.cfg, os.path.join(self.paths.export, 'best'), self.ctx,
                   epoch)
        self.best = score
        return True
