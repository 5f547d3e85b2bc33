"""What --fid-every and --eval-every score a generator by; best.py keeps the best epoch.

A scorer says when an epoch is due (`due`), scores the run's sampler (the EMA generator
with --ema) on latents of its own stream (`score`: a dict of values for the epoch's
metrics row, `metric` the one lower-is-better value that picks the best), and gives
the line the run logs for a score (`line`, or None). The real images' side of a score
is computed once, when the scorer is made.

- FID: FID on the Gluon model zoo's InceptionV3 (--fid-every, needs its weights);
- KID: KID and coverage in ImageNet EfficientNet-Lite0 features (--eval-every), the
  measures of `run.py evaluate` (quality/), which install with the package: offline.
"""
import os

import numpy as onp

from ..images import to_pixels
from ..seeds import Stream, rng

KID_SUBSETS = 100  # random halves of each side; their spread is the ± of KID


def generated(cfg, gan, stream, epoch, num):
    """(num, H, W, C) uint8 images of the run's sampler from one draw of `stream` for `epoch`,
    made 256 latents at a time (the same latents as in one piece)."""
    chunks, draw = [], rng(cfg.seed, stream, epoch)
    for i in range(0, num, 256):
        n = min(256, num - i)
        Z = draw.standard_normal((n, cfg.latent_dim, 1, 1), dtype=onp.float32)
        chunks.append(to_pixels(gan.generate(Z)))
    return onp.concatenate(chunks)


class FIDScorer:
    """--fid-every K: FID of fid_num images on InceptionV3, every K-th epoch."""
    metric, features = 'fid', 'InceptionV3'

    def __init__(self, cfg, gan, real_images, ctx, net):
        """`net`: FID's InceptionV3 (fid.load_inception), loaded by the run's checks."""
        from ..quality import fid
        self.cfg, self.gan, self.ctx, self.net = cfg, gan, ctx, net
        self.num = cfg.fid_num
        self.real_stats = fid.statistics(fid.inception_features(net, real_images[:self.num],
                                                                ctx))

    def due(self, epoch):
        return epoch % self.cfg.fid_every == 0

    def score(self, epoch):
        from ..quality import fid
        fake = generated(self.cfg, self.gan, Stream.FID, epoch, self.num)
        return {'fid': fid.fid_of_images(self.net, fake, self.real_stats, self.ctx)}

    def line(self, epoch, values, kept):
        """Only a new best is said (as --fid-every always has)."""
        return (f"epoch {epoch}: FID {values['fid']:.2f}, the best so far: kept in "
                f"checkpoints/best and export/best") if kept else None


class KIDScorer:
    """--eval-every K: KID and coverage of eval_num images in EfficientNet-Lite0 features,
    every K-th epoch and the last."""
    metric, features = 'kid', 'EfficientNet-Lite0'

    def __init__(self, cfg, gan, real_images, ctx, net, log):
        """`net`: EfficientNet-Lite0 (quality.efficientnet.load), loaded by the run's checks.

        The real features are the ones `evaluate --num` caches for the same first images
        under DATA_ROOT, so a resumed run, and a later evaluate, skip that pass."""
        from ..quality.report import CACHE_FOLDER, real_features
        self.cfg, self.gan, self.ctx, self.net = cfg, gan, ctx, net
        self.num = cfg.eval_num
        self.real = real_features(real_images[:self.num],
                                  os.path.join(cfg.data_root, CACHE_FOLDER), net, ctx,
                                  progress=cfg.progress, log=log)

    def due(self, epoch):
        return epoch % self.cfg.eval_every == 0 or epoch == self.cfg.epochs

    def score(self, epoch):
        from ..quality.features import extract_features
        fake = extract_features(generated(self.cfg, self.gan, Stream.EVAL, epoch, self.num),
                                ctx=self.ctx, net=self.net, progress=self.cfg.progress,
                                desc=f'scoring epoch {epoch}')
        return kid_and_coverage(fake, self.real, self.cfg.seed)

    def line(self, epoch, values, kept):
        """Every score is said: 'epoch 4: KID×1000 (EfficientNet-Lite0) 312.4 ± 20.1,
        coverage 0.08 (best)'."""
        return (f"epoch {epoch}: KID×1000 ({self.features}) {1000 * values['kid']:.1f} ± "
                f"{1000 * values['kid_std']:.1f}, coverage {values['coverage']:.2f}"
                + (' (best)' if kept else ''))


def kid_and_coverage(fake, real, seed):
    """{'kid', 'kid_std', 'coverage'} of fake against real features.

    KID over random halves: with whole sets of equal size (at most 1000) every subset
    would be the same and the spread 0; halves say how much the score moves with the
    images drawn. The same subsets are drawn every epoch (from `seed`), so epochs are
    compared on the same real images."""
    from ..quality import metrics
    half = max(2, min(len(fake), len(real)) // 2)
    kid = metrics.kid(fake, real, seed, KID_SUBSETS, half)
    coverage = metrics.precision_recall_density_coverage(fake, real)['coverage']
    return {'kid': kid['mean'], 'kid_std': kid['std'], 'coverage': coverage}
