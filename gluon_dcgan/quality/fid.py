"""Fréchet and kernel Inception distances (FID, KID) between generated and real images.

Features are the 2048-d pool features of the Gluon model zoo's InceptionV3 on
images resized to 299x299 and normalised as the model zoo expects. The model
zoo's Inception uses legacy operators, so it runs with MXNet's numpy semantics
switched off (and its weights are saved and loaded that way). These are not the
TF-Inception weights of published FIDs: scores compare runs of this tool only.

The real images' features and statistics are cached as .npz, keyed by the
images and the weights, so a second evaluation against the same data skips them.
"""
import glob
import hashlib
import os

import numpy as onp
from scipy import linalg

from .. import seeds
from ..errors import UserError, first_line
from ..files import file_digest, load_npz, remove_stale_temps, written_atomically
from ..progress import progress_bar

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FEATURES = 2048
# Part of the cache key: bump it when the feature pipeline (resize, normalisation) changes.
PIPELINE_VERSION = 1


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians."""
    mu1, mu2 = onp.atleast_1d(mu1), onp.atleast_1d(mu2)
    sigma1, sigma2 = onp.atleast_2d(sigma1), onp.atleast_2d(sigma2)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not onp.isfinite(covmean).all():
        # Singular product (e.g. fewer images than dimensions): nudge the diagonals.
        offset = onp.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if onp.iscomplexobj(covmean):
        # Round-off makes tiny imaginary parts; large ones mean something is wrong.
        if not onp.allclose(onp.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f'sqrtm has an imaginary part of '
                             f'{onp.abs(covmean.imag).max():.3g}')
        covmean = covmean.real
    return float(diff.dot(diff) + onp.trace(sigma1) + onp.trace(sigma2)
                 - 2 * onp.trace(covmean))


def _polynomial_kernel(a, b):
    """k(a, b) = (a.b / d + 1)^3, KID's kernel, for every row pair: (len(a), len(b))."""
    k = onp.dot(a, b.T).astype(onp.float64) / a.shape[1] + 1
    return k * k * k


def mmd2_unbiased(x, y):
    """Unbiased estimate of the squared MMD between samples x (m, d) and y (n, d):
    the means of k over pairs i != j within x and within y, minus twice the mean across."""
    m, n = len(x), len(y)
    k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
    return float((k_xx.sum() - onp.trace(k_xx)) / (m * (m - 1))
                 + (k_yy.sum() - onp.trace(k_yy)) / (n * (n - 1))
                 - 2 * _polynomial_kernel(x, y).mean())


def kernel_inception_distance(real, fake, subsets=100, subset_size=1000, seed=0):
    """KID (Binkowski et al. 2018): (mean, standard deviation) of mmd2_unbiased over
    `subsets` random draws of min(subset_size, len(real), len(fake)) rows from each side.

    Unlike FID it has an unbiased estimator, so small sets do not inflate it.
    """
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError('KID needs at least 2 feature rows on each side')
    if size == len(real) == len(fake):
        subsets = 1  # every subset would be both whole sets: one score, no spread
    rng = seeds.rng(seed, seeds.Stream.KID)
    scores = [mmd2_unbiased(real[rng.choice(len(real), size, replace=False)],
                            fake[rng.choice(len(fake), size, replace=False)])
              for _ in range(subsets)]
    return float(onp.mean(scores)), float(onp.std(scores))


def statistics(features):
    """(mean, covariance) of (N, D) features."""
    features = onp.asarray(features, dtype=onp.float64)
    return features.mean(axis=0), onp.cov(features, rowvar=False)


def _pretrained_file(root):
    return sorted(glob.glob(os.path.join(root, 'inception_v3-*.params')))


def weights_file(params_file, root):
    """The weights file load_inception(params_file, root) reads (after a download, if any)."""
    if params_file:
        return params_file
    found = _pretrained_file(root)
    return found[-1] if found else None


def _load_failure(exc):
    """The reason in one short line: MXNet's messages start with a C++ 'Traceback' and
    file/line lines, and Gluon's name-mismatch message runs on with a list of names."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith(('Traceback', 'File ', '[bt]'))]
    if not lines:
        return type(exc).__name__
    reason = lines[-1] if lines[-1].startswith('MXNetError') else lines[0]
    reason = reason.removeprefix('MXNetError: ')
    if reason.startswith('Check failed:'):  # 'Check failed: <C++ expression>: <reason>'
        reason = reason.rsplit(': ', 1)[-1]
    return reason.split(', which contains')[0][:160]


def load_inception(params_file=None, root=None, ctx=None):
    """InceptionV3 with weights: `params_file` (save_parameters), or pretrained, cached in root.

    Raises a one-line UserError when no weights can be had.
    """
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision
    with mx.util.np_array(False), mx.util.np_shape(False):
        if params_file:
            if not os.path.isfile(params_file):
                what = 'is a folder' if os.path.isdir(params_file) else 'does not exist'
                raise UserError(f'--inception-params {params_file!r} {what}: give the path of '
                                f'an InceptionV3 .params file')
            net = vision.inception_v3(pretrained=False)
            try:
                net.load_parameters(params_file, ctx=ctx)
            except Exception as exc:  # wrong file: not NDArrays, or names/shapes do not fit
                raise UserError(f'--inception-params {params_file!r} is not a model zoo '
                                f'inception_v3 save_parameters file ({_load_failure(exc)})')
            return net
        try:
            return vision.inception_v3(pretrained=True, root=root, ctx=ctx)
        except Exception as exc:  # offline: requests errors
            raise UserError(f'cannot get pretrained InceptionV3 weights into {root} '
                            f'({first_line(exc, 120)}); offline, pass --inception-params FILE '
                            f'(saved by save_parameters of the model zoo inception_v3)')


def inception_features(net, images, ctx=None, batch_size=32, progress=False, desc='features'):
    """(N, 2048) float32 pool features of (N, H, W, C) uint8 images (C = 1 or 3).

    With `progress`, a tqdm bar on stderr counts the images (when stderr is a terminal).
    """
    import mxnet as mx
    feats = []
    with mx.util.np_array(False), mx.util.np_shape(False), \
            progress_bar(len(images), desc, 'image', progress) as bar:
        mean = mx.nd.array(MEAN, ctx=ctx).reshape((1, 3, 1, 1))
        std = mx.nd.array(STD, ctx=ctx).reshape((1, 3, 1, 1))
        for i in range(0, len(images), batch_size):
            x = mx.nd.array(images[i:i + batch_size], ctx=ctx, dtype='float32')
            x = x.transpose((0, 3, 1, 2)) / 255
            if x.shape[1] == 1:
                x = mx.nd.repeat(x, repeats=3, axis=1)
            x = mx.nd.contrib.BilinearResize2D(x, height=299, width=299)
            x = (x - mean) / std
            feats.append(net.features(x).reshape((x.shape[0], -1)).asnumpy())
            bar.update(x.shape[0])
    return onp.concatenate(feats).astype(onp.float32)


def fid_of_images(net, fake_uint8, real_stats, ctx=None):
    """FID of generated uint8 images against precomputed real (mean, cov)."""
    mu, sigma = statistics(inception_features(net, fake_uint8, ctx))
    return frechet_distance(mu, sigma, *real_stats)


def real_stats_key(images, weights_path):
    """Cache key of real images' statistics: their uint8 bytes and shape, the weights file's
    SHA-256 and the feature pipeline's version."""
    images = onp.ascontiguousarray(images)
    digest = hashlib.sha256(f'{images.shape} {images.dtype} v{PIPELINE_VERSION} '.encode())
    digest.update(file_digest(weights_path).encode())
    digest.update(images.tobytes())
    return digest.hexdigest()[:24]


def _stats_bytes(count):
    """The most a cache file of `count` images' features holds: its three arrays, and room
    for the archive's and the arrays' headers."""
    return 4 * count * FEATURES + 8 * FEATURES + 8 * FEATURES * FEATURES + (64 << 10)


def _read_stats(path, count):
    """(features, (mu, sigma)) from a cache file; None when it is missing or damaged.

    The file and each member are bounded by what `count` images' statistics take, so a
    member whose header declares 2**40 floats is damaged, not a MemoryError.
    """
    try:
        saved = load_npz(path, _stats_bytes(count))  # arrays only: nothing is unpickled
        feats, mu, sigma = saved['features'], saved['mu'], saved['sigma']
    except (OSError, ValueError, KeyError):  # files.Damaged is a ValueError
        return None
    fits = (feats.dtype == onp.float32 and feats.shape == (count, FEATURES)
            and mu.dtype == sigma.dtype == onp.float64 and mu.shape == (FEATURES,)
            and sigma.shape == (FEATURES, FEATURES))
    if not fits or not all(onp.isfinite(a).all() for a in (feats, mu, sigma)):
        return None
    return feats, (mu, sigma)


def _write_stats(path, feats, stats):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_stale_temps(os.path.dirname(path))  # killed writers' files of any key
    # A full disk stays an OSError: real_statistics logs it and scores uncached.
    with written_atomically(path, full_disk_error=False) as tmp, open(tmp, 'wb') as f:
        onp.savez(f, features=feats, mu=stats[0], sigma=stats[1])


def real_statistics(net, images, weights_path, cache_dir, ctx=None, batch_size=32,
                    progress=False, log=print):
    """(features, (mu, sigma)) of real uint8 images, cached in cache_dir/real-<key>.npz.

    A cache file that cannot be read or does not fit is recomputed and replaced.
    """
    path = os.path.join(cache_dir, f'real-{real_stats_key(images, weights_path)}.npz')
    cached = _read_stats(path, len(images))
    if cached is not None:
        log(f'real-image features: cached in {path}')
        return cached
    if os.path.exists(path):
        log(f'real-image features: {path} is damaged, recomputing it')
    feats = inception_features(net, images, ctx, batch_size, progress, desc='real images')
    stats = statistics(feats)
    try:
        _write_stats(path, feats, stats)
        log(f'real-image features: saved to {path}')
    except OSError as exc:  # a read-only data root costs only the cache
        log(f'real-image features: not cached ({exc.strerror}: {path})')
    return feats, stats
