"""--eval-every / --fid-every: score the generator every K epochs and keep the best one.

What scores an epoch is a scorer (scorers.py: KID in EfficientNet-Lite0 features, or
FID on InceptionV3; lower is better for both). The best epoch's checkpoint is copied
to checkpoints/best, with score.json, and its generator exported to export/best/,
next to the last one.

score.json: {'metric': 'kid', 'value': ..., 'epoch': ..., 'num': ..., 'features': ...}
and the scorer's values ('kid', 'kid_std', 'coverage'; or 'fid'). Files written before
'metric' existed hold {'fid': ..., 'epoch': ..., 'fid_num': ...}: read as FID.
"""
import json
import os
import shutil

import numpy as onp

from ..export.run_export import export_run
from ..files import read_json, temporary_folder
from . import checkpoint

SCORE_BYTES = 1 << 16


def saved_score(folder, metric):
    """(value, metric it was chosen by) from folder/score.json; value None when there is no
    best yet or a damaged file (the next score replaces it), or when it was chosen by
    another metric (its value is not comparable)."""
    # files.Damaged (too large, too deep) is a ValueError; a list or a number has no .get.
    try:
        saved = read_json(os.path.join(folder, 'score.json'), SCORE_BYTES)
        by = saved.get('metric', 'fid')  # files before 'metric' held {'fid': X}
        value = saved['value'] if 'metric' in saved else saved['fid']
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and onp.isfinite(value)) or not isinstance(by, str):
        return None, None
    return (value if by == metric else None), by


class BestCheckpoint:
    """Scores due epochs with `scorer` and keeps checkpoints/best and export/best."""

    def __init__(self, cfg, paths, gan, ctx, scorer, log):
        self.cfg, self.paths, self.gan, self.ctx, self.scorer = cfg, paths, gan, ctx, scorer
        self.metric = scorer.metric
        self.folder = os.path.join(paths.checkpoints, 'best')
        self.best, by = saved_score(self.folder, self.metric)
        if by is not None and by != self.metric:
            log(f'note: checkpoints/best was chosen by {by}; the first {self.metric} score '
                f'of this run replaces it')

    def due(self, epoch):
        return self.scorer.due(epoch)

    def score(self, epoch):
        """The scorer's values for this epoch's generator (they go into its metrics row)."""
        return self.scorer.score(epoch)

    def keep_if_best(self, epoch, values, checkpoint_path):
        """Copy the epoch's checkpoint to checkpoints/best and export it, if it is the best."""
        score = values[self.metric]
        if self.best is not None and score >= self.best:
            return False
        # Built under a checkpoint temp name: a run killed meanwhile leaves only what the
        # next save (and --overwrite) knows to remove, and never a half-copied best.
        with temporary_folder(self.paths.checkpoints, checkpoint.TMP_PREFIX) as tmp:
            shutil.copytree(checkpoint_path, tmp, dirs_exist_ok=True)
            with open(os.path.join(tmp, 'score.json'), 'w') as f:
                json.dump({'metric': self.metric, 'value': score, 'epoch': epoch,
                           'num': self.scorer.num, 'features': self.scorer.features,
                           **values}, f)
            shutil.rmtree(self.folder, ignore_errors=True)
            os.replace(tmp, self.folder)
        export_run(self.gan.sampler, self.cfg, os.path.join(self.paths.export, 'best'), self.ctx,
                   epoch)
        self.best = score
        return True

    def line(self, epoch, values, kept):
        """The line to log for this score, or None."""
        return self.scorer.line(epoch, values, kept)


def keeper(cfg, paths, gan, real_images, ctx, net, log):
    """The run's BestCheckpoint: by KID with --eval-every, by FID with --fid-every.

    `net` is the scorer's feature network, loaded during the run's checks."""
    from .scorers import FIDScorer, KIDScorer
    scorer = (KIDScorer(cfg, gan, real_images, ctx, net, log) if cfg.eval_every else
              FIDScorer(cfg, gan, real_images, ctx, net))
    return BestCheckpoint(cfg, paths, gan, ctx, scorer, log)
