"""Sample-quality measures between generated and real image features, in numpy.

Every measure takes (N, D) float features (EfficientNet-Lite0's 1280-d pool, see
features.py), generated `fake` first and `real` second:

- KID and FD, from quality/fid.py (the same estimators on other features): name them
  "KID (EfficientNet-Lite0)" and "FD (EfficientNet-Lite0)", never FID;
- precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et
  al. 2020), from balls reaching each sample's k-th nearest neighbour;
- the leave-one-out 1-NN two-sample accuracy (Lopez-Paz & Oquab 2017): 0.5 is ideal,
  1.0 separable, and well under 0.5 means generated samples sit on real ones (copies);
- NDB (Richardson & Weiss 2018): k-means bins of the real features, and how many hold
  a proportion of generated samples that a two-proportion z-test calls different;
- memorisation: how near each generated sample is to its nearest training image,
  against how near held-out real images are.

`report` gathers them, with the same numbers for two halves of the real set, as a
plain dict for JSON. Distances are Euclidean, computed as ||a||^2 + ||b||^2 - 2 a.b in
float64 blocks of at most BLOCK_BYTES, so memory stays bounded whatever the N.
"""
import math

import numpy as onp

from .. import seeds
from . import fid

K = 5  # nearest neighbours behind the balls of precision, recall, density and coverage
NDB_ALPHA = 0.05  # a bin is different when its two-sided p-value is below this
KMEANS_ITERATIONS = 50
# One float64 distance block. A pass holds one, a partitioned copy and a few boolean
# masks of its shape, and the float64 copies of both sides' slices: well under 256 MB.
BLOCK_BYTES = 32 << 20


def check_features(x, name, min_rows=2):
    """`x` as a 2-d float array of at least `min_rows` finite rows; else a ValueError."""
    x = onp.asarray(x)
    if x.ndim != 2 or not onp.issubdtype(x.dtype, onp.floating):
        raise ValueError(f'{name} features must be a 2-d float array (N, D), '
                         f'got shape {x.shape} and dtype {x.dtype}')
    if len(x) < min_rows or x.shape[1] < 1:
        raise ValueError(f'{name} features have {len(x)} rows of {x.shape[1]} values: '
                         f'give at least {min_rows} rows of at least 1')
    if not onp.isfinite(x).all():
        raise ValueError(f'{name} features hold NaN or infinite values')
    return x


def _check_pair(fake, real, min_rows):
    fake, real = check_features(fake, 'generated', min_rows), check_features(real, 'real', min_rows)
    if fake.shape[1] != real.shape[1]:
        raise ValueError(f'generated features have {fake.shape[1]} values per row and real '
                         f'ones {real.shape[1]}: both must come from the same feature extractor')
    return fake, real


def _float64_parts(x, rows):
    for start in range(0, len(x), rows):
        yield start, x[start:start + rows].astype(onp.float64)


def _distance_blocks(a, b, block_bytes=BLOCK_BYTES):
    """(start, block): block[i, j] = ||a[start + i] - b[j]||, float64, for row blocks of a."""
    rows = max(1, block_bytes // (8 * len(b)))
    cols = max(1, block_bytes // (8 * b.shape[1]))  # b's float64 slices stay as small
    b_sq = onp.concatenate([onp.einsum('ij,ij->i', y, y) for _, y in _float64_parts(b, cols)])
    whole = b.astype(onp.float64) if len(b) <= cols else None  # one slice: cast it once
    for start, x in _float64_parts(a, rows):
        block = onp.empty((len(x), len(b)))
        if whole is not None:
            onp.dot(x, whole.T, out=block)
        for c, y in _float64_parts(b, cols) if whole is None else ():
            block[:, c:c + len(y)] = x @ y.T
        block *= -2
        block += onp.einsum('ij,ij->i', x, x)[:, None]
        block += b_sq
        onp.maximum(block, 0, out=block)  # round-off makes near-zero squares negative
        yield start, onp.sqrt(block, out=block)


def nearest(a, b):
    """(distances, indices): for each row of a, its nearest row of b and the distance,
    recomputed directly from the two rows, so that a copy is exactly 0."""
    index = onp.empty(len(a), onp.int64)
    for start, d in _distance_blocks(a, b):
        index[start:start + len(d)] = d.argmin(axis=1)
    diff = a.astype(onp.float64) - b[index]
    return onp.sqrt(onp.einsum('ij,ij->i', diff, diff)), index


def _neighbours(x, k):
    """(distance to the nearest other row, to the k-th nearest other row) of each row."""
    first, kth = onp.empty(len(x)), onp.empty(len(x))
    for start, d in _distance_blocks(x, x):
        rows = onp.arange(len(d))
        d[rows, start + rows] = onp.inf  # a sample is not its own neighbour
        part = onp.partition(d, (0, k - 1), axis=1)
        first[start:start + len(d)], kth[start:start + len(d)] = part[:, 0], part[:, k - 1]
    return first, kth


def _cross(fake, real, fake_radii, real_radii):
    """One pass over the fake x real distances: each side's nearest other-side distance,
    how many real balls hold each fake sample, whether a fake ball holds each real one."""
    fake_nearest, in_real_balls = onp.empty(len(fake)), onp.empty(len(fake), onp.int64)
    real_nearest, in_a_fake_ball = onp.full(len(real), onp.inf), onp.zeros(len(real), bool)
    for start, d in _distance_blocks(fake, real):
        stop = start + len(d)
        fake_nearest[start:stop] = d.min(axis=1)
        in_real_balls[start:stop] = (d <= real_radii).sum(axis=1)
        onp.minimum(real_nearest, d.min(axis=0), out=real_nearest)
        in_a_fake_ball |= (d <= fake_radii[start:stop, None]).any(axis=0)
    return fake_nearest, in_real_balls, real_nearest, in_a_fake_ball


def _neighbour_measures(fake, real, k):
    fake_first, fake_radii = _neighbours(fake, k)
    real_first, real_radii = _neighbours(real, k)
    fake_cross, in_real_balls, real_cross, in_a_fake_ball = _cross(
        fake, real, fake_radii, real_radii)
    # Leave-one-out 1-NN: a sample is classified right when its nearest other sample is
    # of its own set; a tie is a coin flip.
    same = onp.concatenate([fake_first, real_first])
    other = onp.concatenate([fake_cross, real_cross])
    right = (same < other) + 0.5 * (same == other)
    return {'precision': float((in_real_balls > 0).mean()),
            'recall': float(in_a_fake_ball.mean()),
            'density': float(in_real_balls.sum() / (k * len(fake))),
            'coverage': float((real_cross <= real_radii).mean()),
            'one_nn_accuracy': float(right.mean())}


def precision_recall_density_coverage(fake, real, k=K):
    """{'precision', 'recall', 'density', 'coverage'} with k-nearest-neighbour balls.

    Precision: the share of fake samples inside some real sample's ball (its radius is
    the distance to its k-th nearest real neighbour); recall: the share of real samples
    inside some fake ball. Density: fake samples' mean count of real balls holding them,
    over k (about 1 for the same distribution). Coverage: the share of real balls that
    hold some fake sample.
    """
    fake, real = _check_pair(fake, real, k + 1)
    scores = _neighbour_measures(fake, real, k)
    return {name: scores[name] for name in ('precision', 'recall', 'density', 'coverage')}


def one_nn_accuracy(fake, real):
    """Leave-one-out accuracy of the 1-nearest-neighbour classifier telling fake from real:
    0.5 when they look alike, 1.0 when separable, toward 0 when fakes copy real rows."""
    fake, real = _check_pair(fake, real, 2)
    return _neighbour_measures(fake, real, 1)['one_nn_accuracy']


def kmeans(x, bins, rng, iterations=KMEANS_ITERATIONS):
    """(bins, D) float64 centroids of Lloyd's k-means on the rows of x, from a k-means++
    start drawn from the numpy Generator `rng`; at most `iterations` rounds."""
    x = check_features(x, 'k-means', bins)
    points = x.astype(onp.float64)
    centroids = onp.empty((bins, x.shape[1]))
    centroids[0] = points[rng.integers(len(x))]
    d2 = onp.sum((points - centroids[0]) ** 2, axis=1)
    for i in range(1, bins):  # k-means++: the next centroid drawn in proportion to d^2
        total = d2.sum()
        pick = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centroids[i] = points[pick]
        onp.minimum(d2, onp.sum((points - centroids[i]) ** 2, axis=1), out=d2)
    labels = None
    for _ in range(iterations):
        new = nearest(x, centroids)[1]
        if labels is not None and (new == labels).all():
            break
        labels = new
        for i in onp.unique(labels):  # an emptied bin keeps its centroid
            centroids[i] = points[labels == i].mean(axis=0)
    return centroids


def ndb_bins(real_rows):
    """The default number of NDB bins: about 10 real samples per bin, from 2 to 50."""
    return min(50, max(2, real_rows // 10))


def ndb(fake, real, rng, bins=None, alpha=NDB_ALPHA):
    """NDB: bins by k-means on the real features; a bin is different when a two-sided
    two-proportion z-test gives p < alpha for its shares of fake and of real samples.

    Returns {'bins', 'different', 'different_fraction', 'js_divergence' (natural log,
    0 to ln 2, of the two bin histograms), 'real_proportions', 'fake_proportions',
    'different_bins' (their indices)}.

    The real shares are those of the rows the bins were fitted on, as in the paper. On
    structured features that is fine (two samples of one distribution: about alpha * bins
    different), but on isotropic noise of hundreds of dimensions each row pulls its own
    centroid and most bins differ: real_floor shows which case the features are.
    """
    fake, real = _check_pair(fake, real, 2)
    bins = ndb_bins(len(real)) if bins is None else bins
    if isinstance(bins, bool) or not isinstance(bins, (int, onp.integer)) \
            or not 2 <= bins <= len(real):
        raise ValueError(f'NDB needs from 2 to {len(real)} (the real rows) bins, got {bins}')
    centroids = kmeans(real, bins, rng)
    p_real = onp.bincount(nearest(real, centroids)[1], minlength=bins) / len(real)
    p_fake = onp.bincount(nearest(fake, centroids)[1], minlength=bins) / len(fake)
    pooled = (p_real * len(real) + p_fake * len(fake)) / (len(real) + len(fake))
    se = onp.sqrt(pooled * (1 - pooled) * (1 / len(real) + 1 / len(fake)))
    z = onp.divide(onp.abs(p_fake - p_real), se, out=onp.zeros(bins), where=se > 0)
    different = [i for i in range(bins) if math.erfc(z[i] / math.sqrt(2)) < alpha]
    return {'bins': bins, 'different': len(different),
            'different_fraction': len(different) / bins,
            'js_divergence': _js_divergence(p_real, p_fake),
            'real_proportions': [float(p) for p in p_real],
            'fake_proportions': [float(p) for p in p_fake], 'different_bins': different}


def _js_divergence(p, q):
    m = (p + q) / 2
    return sum(float(onp.sum(a[a > 0] * onp.log(a[a > 0] / m[a > 0]))) for a in (p, q)) / 2


def kid(fake, real, seed, subsets=100, subset_size=1000):
    """{'mean', 'std'} of KID over `subsets` random subsets of `subset_size` rows a side
    (fid.kernel_inception_distance, which takes fewer when a side is smaller and one
    subset when both sides are whole). Shown as KID x 1000."""
    fake, real = _check_pair(fake, real, 2)
    mean, std = fid.kernel_inception_distance(real, fake, subsets, subset_size, seed)
    return {'mean': mean, 'std': std}


def frechet_distance(fake, real):
    """The Frechet distance of Gaussians fitted to the two sets (fid.frechet_distance)."""
    fake, real = _check_pair(fake, real, 2)
    return fid.frechet_distance(*fid.statistics(fake), *fid.statistics(real))


def compare(fake, real, rng, k=K, bins=None, kid_subsets=100, kid_subset_size=1000):
    """Every measure between fake and real features, drawing from the Generator `rng`:
    {'fd', 'kid', 'precision', 'recall', 'density', 'coverage', 'one_nn_accuracy', 'ndb'}."""
    fake, real = _check_pair(fake, real, k + 1)
    scores = {'rows': {'fake': len(fake), 'real': len(real)},
              'fd': frechet_distance(fake, real),
              'kid': kid(fake, real, int(rng.integers(seeds.SEED_LIMIT)),
                         kid_subsets, kid_subset_size)}
    scores.update(_neighbour_measures(fake, real, k))
    scores['ndb'] = ndb(fake, real, rng, bins)
    return scores


def split_halves(real, rng):
    """Two disjoint random halves of the rows of real (the odd row out is left over)."""
    order = rng.permutation(len(real))
    half = len(real) // 2
    return real[order[:half]], real[order[half:2 * half]]


def real_floor(real, rng, k=K, bins=None, kid_subsets=100, kid_subset_size=1000):
    """compare() between two random halves of the real set: the scores of two samples of
    one distribution, at half the N (so a little worse than the floor at N itself)."""
    real = check_features(real, 'real', 2 * (k + 1))
    first, second = split_halves(real, rng)
    return compare(first, second, rng, k, bins, kid_subsets, kid_subset_size)


def memorisation(fake, train, heldout, n_nearest=16, flag_quantile=0.01):
    """How near generated samples are to the training set, against held-out real ones.

    Returns {'fake_nearest', 'heldout_nearest'} (arrays: each row's distance to its
    nearest training row), 'nearest_indices' and 'nearest_distances' of the first
    n_nearest fake rows (for a grid of look-alikes), and 'summary': medians, the
    share of fake rows nearer than the held-out median, and the share 'flagged',
    nearer than the held-out rows' `flag_quantile` quantile (the 'threshold').
    """
    fake = check_features(fake, 'generated', 1)
    train, heldout = check_features(train, 'training', 1), check_features(heldout, 'held-out', 1)
    if not fake.shape[1] == train.shape[1] == heldout.shape[1]:
        raise ValueError(f'generated, training and held-out features have {fake.shape[1]}, '
                         f'{train.shape[1]} and {heldout.shape[1]} values per row: they must '
                         f'come from the same feature extractor')
    fake_d, fake_i = nearest(fake, train)
    held_d = nearest(heldout, train)[0]
    threshold = float(onp.quantile(held_d, flag_quantile))
    summary = {'fake_median': float(onp.median(fake_d)),
               'heldout_median': float(onp.median(held_d)),
               'fake_nearer_than_heldout_median': float((fake_d < onp.median(held_d)).mean()),
               'threshold': threshold, 'flag_quantile': float(flag_quantile),
               'flagged': float((fake_d < threshold).mean())}
    return {'fake_nearest': fake_d, 'heldout_nearest': held_d, 'summary': summary,
            'nearest_indices': [int(i) for i in fake_i[:n_nearest]],
            'nearest_distances': [float(d) for d in fake_d[:n_nearest]]}


def _generator(rng_or_seed):
    if isinstance(rng_or_seed, onp.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, bool) or not isinstance(rng_or_seed, (int, onp.integer)) \
            or not 0 <= rng_or_seed < seeds.SEED_LIMIT:
        raise ValueError(f'give a numpy Generator or a seed in [0, 2**32), got {rng_or_seed!r}')
    return onp.random.default_rng(int(rng_or_seed))


def report(fake, real, rng_or_seed, train=None, k=K, bins=None, kid_subsets=100,
           kid_subset_size=1000, n_nearest=16):
    """Every measure as a JSON-ready dict: {'fake_vs_real': compare(fake, real),
    'real_vs_real': real_floor(real)} and, given `train` features, 'memorisation' with
    `real` as the held-out set (it must hold no training images): its summary, the
    distances' quartiles and the nearest training rows of the first n_nearest fakes."""
    fake, real = _check_pair(fake, real, k + 1)
    check_features(real, 'real', 2 * (k + 1))
    rng = _generator(rng_or_seed)
    out = {'k': k,
           'fake_vs_real': compare(fake, real, rng, k, bins, kid_subsets, kid_subset_size),
           'real_vs_real': real_floor(real, rng, k, bins, kid_subsets, kid_subset_size)}
    if train is not None:
        found = memorisation(fake, train, real, n_nearest)
        quartiles = lambda d: [float(q) for q in onp.quantile(d, (0.25, 0.5, 0.75))]
        out['memorisation'] = dict(
            found['summary'], fake_quartiles=quartiles(found['fake_nearest']),
            heldout_quartiles=quartiles(found['heldout_nearest']),
            nearest_indices=found['nearest_indices'],
            nearest_distances=found['nearest_distances'])
    return out
