"""The offline quality report: generated images against real ones, in ImageNet features.

``score`` computes every measure of metrics.py between generated and real images in
EfficientNet-Lite0 features (features.py; the real ones cached), with the same numbers
for two halves of the real set (what "indistinguishable" looks like at this N) and a
memorisation check. ``write`` puts quality.json, quality.md and quality.png beside
an export, and ``summary_line`` is the one line a command prints.

These distances are not FID: FID uses the TF-Inception weights of the original code,
these an ImageNet EfficientNet-Lite0, so they compare runs of this tool with each
other, never with published FIDs. They are named "KID (EfficientNet-Lite0)" and
"FD (EfficientNet-Lite0)" everywhere.
"""
import hashlib
import json
import os

import numpy as onp

from ..files import Damaged, load_npz, remove_stale_temps, written_atomically
from . import metrics
from .features import FEATURES, extract_features

NAME = 'EfficientNet-Lite0'
PIPELINE_VERSION = 1  # part of the cache key: bump when resizing or normalising changes
FILES = ('quality.json', 'quality.md', 'quality.png')
NEIGHBOURS_SHOWN = 3  # training images beside each generated one in quality.png
CACHE_FOLDER = 'quality-features'  # under DATA_ROOT: real images' features, by their key


def _key(pixels):
    digest = hashlib.sha256(f'{NAME} v{PIPELINE_VERSION} {pixels.shape} '.encode())
    digest.update(onp.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:24]


def real_features(pixels, cache_dir, net, ctx, batch_size=32, progress=False, log=print):
    """(N, 1280) features of real uint8 images, cached in cache_dir/real-KEY.npz.

    A cache file that is damaged or does not fit is computed again and replaced.
    """
    path = os.path.join(cache_dir, f'real-{_key(pixels)}.npz')
    try:
        feats = load_npz(path, 4 * len(pixels) * FEATURES + (64 << 10))['features']
        if feats.dtype == onp.float32 and feats.shape == (len(pixels), FEATURES) and \
                onp.isfinite(feats).all():
            return feats
    except (OSError, Damaged, KeyError):
        pass
    feats = extract_features(pixels, batch_size, ctx, net, progress, desc='real images')
    try:
        os.makedirs(cache_dir, exist_ok=True)
        remove_stale_temps(cache_dir)
        with written_atomically(path, full_disk_error=False) as tmp, open(tmp, 'wb') as f:
            onp.savez(f, features=feats)
    except OSError as exc:  # a full disk costs the next evaluation a pass, nothing more
        log(f'note: cannot cache the real images\' features in {cache_dir} ({exc.strerror})')
    return feats


def score(fake_pixels, real_pixels, seed, cache_dir, ctx=None, batch_size=32, progress=False,
          log=print):
    """(report dict, memorisation details) of generated against real uint8 images.

    Memorisation: the real images are split into two halves (from `seed`); each
    generated image's distance to its nearest image of the first half is set beside
    that of each image of the second, held-out half. A generator that copies its
    training images sits nearer than held-out real images do.
    """
    from .efficientnet import load
    net = load(ctx)
    real = real_features(real_pixels, cache_dir, net, ctx, batch_size, progress, log)
    fake = extract_features(fake_pixels, batch_size, ctx, net, progress,
                            desc='generated images')
    rng = onp.random.default_rng(seed)
    report = metrics.report(fake, real, rng)
    order = rng.permutation(len(real))
    train, heldout = order[:len(real) // 2], order[len(real) // 2:]
    found = metrics.memorisation(fake, real[train], real[heldout], n_nearest=8)
    nearest_train = [train[i] for i in _nearest_rows(fake[:8], real[train])]
    report['memorisation'] = dict(found['summary'], training_half=len(train),
                                  heldout_half=len(heldout))
    report['features'] = f'{NAME} (ImageNet), {FEATURES}-d global pool, 224x224 bicubic'
    details = {'fake_nearest': found['fake_nearest'], 'heldout_nearest':
               found['heldout_nearest'], 'neighbours': nearest_train}
    return report, details


def _nearest_rows(fake, train, count=NEIGHBOURS_SHOWN):
    """For each row of `fake`, the indices into `train` of its `count` nearest rows."""
    distances = ((fake[:, None, :].astype(onp.float64) - train[None, :, :]) ** 2).sum(-1) \
        if len(train) * len(fake) <= 1 << 22 else None
    if distances is None:  # large sets: one row at a time keeps memory bounded
        return [onp.argsort(((train - row) ** 2).sum(1))[:count] for row in fake]
    return [onp.argsort(d)[:count] for d in distances]


def _cells(side):
    kid = side['kid']
    return {'KID x1000': f"{1000 * kid['mean']:.1f} ± {1000 * kid['std']:.1f}",
            'FD': f"{side['fd']:.2f}", 'precision': f"{side['precision']:.3f}",
            'recall': f"{side['recall']:.3f}", 'density': f"{side['density']:.3f}",
            'coverage': f"{side['coverage']:.3f}",
            '1-NN accuracy (0.5 ideal)': f"{side['one_nn_accuracy']:.3f}",
            'NDB different bins': f"{side['ndb']['different']}/{side['ndb']['bins']}"}


def summary_line(report):
    """'KID (EfficientNet-Lite0) x1000 12.3 ± 1.0 (real halves 0.4), coverage 0.81, ...'."""
    fake, floor = report['fake_vs_real'], report['real_vs_real']
    return (f"KID ({NAME}) x1000 {1000 * fake['kid']['mean']:.1f} ± "
            f"{1000 * fake['kid']['std']:.1f} (real halves {1000 * floor['kid']['mean']:.1f}), "
            f"FD ({NAME}) {fake['fd']:.1f}, precision {fake['precision']:.2f}, "
            f"recall {fake['recall']:.2f}, coverage {fake['coverage']:.2f}, "
            f"1-NN {fake['one_nn_accuracy']:.2f} ({fake['rows']['fake']} generated, "
            f"{fake['rows']['real']} real images)")


def markdown(report):
    """quality.md: the table of both comparisons, the memorisation check, and the caveat."""
    fake, floor = _cells(report['fake_vs_real']), _cells(report['real_vs_real'])
    rows = [f'| {name} | {fake[name]} | {floor[name]} |' for name in fake]
    m = report['memorisation']
    return '\n'.join([
        f'# Sample quality in {NAME} features', '',
        f"{report['fake_vs_real']['rows']['fake']} generated against "
        f"{report['fake_vs_real']['rows']['real']} real images; the last column compares two "
        f'halves of the real images: what "indistinguishable" looks like at this N.', '',
        '| measure | generated vs real | real vs real |', '|---|---|---|', *rows, '',
        '## Memorisation', '',
        f"Median distance to the nearest of {m['training_half']} training images: generated "
        f"{m['fake_median']:.2f}, held-out real {m['heldout_median']:.2f}. "
        f"{100 * m['fake_nearer_than_heldout_median']:.0f}% of the generated images are "
        f"nearer than the held-out median, {100 * m['flagged']:.1f}% nearer than the held-out "
        f"images' {100 * m['flag_quantile']:.0f}% quantile (a copy would be). quality.png "
        f'shows generated images beside their nearest training images.', '',
        f'These are not FIDs: the features are an ImageNet {NAME}, not the TF-Inception of '
        f'published FIDs, so the numbers compare runs of this tool only.', ''])


def figure(path, details, fake_pixels, real_pixels):
    """quality.png: generated images beside their nearest training images, and the
    distributions of nearest distances (generated and held-out real)."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    from ..images import grid
    rows = [onp.stack([fake_pixels[i]] + [real_pixels[j] for j in nearest])
            for i, nearest in enumerate(details['neighbours'])]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5), gridspec_kw={'width_ratios': [1, 1.3]})
    left.imshow(grid(onp.concatenate(rows), cols=1 + NEIGHBOURS_SHOWN).squeeze())
    left.set_title('generated | its nearest training images')
    left.axis('off')
    bins = onp.histogram_bin_edges(onp.concatenate([details['fake_nearest'],
                                                    details['heldout_nearest']]), 30)
    right.hist(details['heldout_nearest'], bins, alpha=0.6, density=True, label='held-out real')
    right.hist(details['fake_nearest'], bins, alpha=0.6, density=True, label='generated')
    right.set_xlabel(f'distance to the nearest training image ({NAME} features)')
    right.legend()
    fig.tight_layout()
    with written_atomically(path) as tmp:
        fig.savefig(tmp, format='png', dpi=80)
    plt.close(fig)


def write(folder, report, details, fake_pixels, real_pixels):
    """Write quality.json, quality.md and quality.png into `folder`; returns their paths."""
    paths = [os.path.join(folder, name) for name in FILES]
    with written_atomically(paths[0]) as tmp, open(tmp, 'w') as f:
        json.dump(report, f, indent=1)
    with written_atomically(paths[1]) as tmp, open(tmp, 'w') as f:
        f.write(markdown(report))
    figure(paths[2], details, fake_pixels, real_pixels)
    return paths
