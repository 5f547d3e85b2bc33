"""Fréchet Inception Distance between generated and real images.

Features are the 2048-d pool features of the Gluon model zoo's InceptionV3 on
images resized to 299x299 and normalised as the model zoo expects. The model
zoo's Inception uses legacy operators, so it runs with MXNet's numpy semantics
switched off (and its weights are saved and loaded that way).
"""
import glob
import os

import numpy as onp
from scipy import linalg

from .errors import UserError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def statistics(features):
    """(mean, covariance) of (N, D) features."""
    features = onp.asarray(features, dtype=onp.float64)
    return features.mean(axis=0), onp.cov(features, rowvar=False)


def _pretrained_file(root):
    return sorted(glob.glob(os.path.join(root, 'inception_v3-*.params')))


def load_inception(params_file=None, root=None, ctx=None):
    """InceptionV3 with weights: `params_file` (save_parameters), or pretrained, cached in root.

    Raises a one-line UserError when no weights can be had.
    """
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision
    with mx.util.np_array(False), mx.util.np_shape(False):
        if params_file:
            if not os.path.isfile(params_file):
                raise UserError(f'--inception-params {params_file!r} does not exist')
            net = vision.inception_v3(pretrained=False)
            try:
                net.load_parameters(params_file, ctx=ctx)
            except Exception as exc:  # wrong file: names or shapes do not fit
                first = str(exc).strip().splitlines()[0][:160]
                raise UserError(f'--inception-params {params_file!r} is not a model zoo '
                                f'inception_v3 save_parameters file ({first})')
            return net
        try:
            return vision.inception_v3(pretrained=True, root=root, ctx=ctx)
        except Exception as exc:  # offline: requests errors
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else \
                type(exc).__name__
            raise UserError(f'cannot get pretrained InceptionV3 weights into {root} ({first}); '
                            f'offline, pass --inception-params FILE (saved by '
                            f'save_parameters of the model zoo inception_v3)')


def check_weights_available(params_file, root):
    """Fail before training if FID scoring could not get weights (downloads them if needed)."""
    if params_file and not os.path.isfile(params_file):
        raise UserError(f'--inception-params {params_file!r} does not exist')
    if not params_file and not _pretrained_file(root):
        load_inception(None, root)


def inception_features(net, images, ctx=None, batch_size=32):
    """(N, 2048) pool features of (N, H, W, C) uint8 images (C = 1 or 3)."""
    import mxnet as mx
    feats = []
    with mx.util.np_array(False), mx.util.np_shape(False):
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
    return onp.concatenate(feats)


def fid_of_images(net, fake_uint8, real_stats, ctx=None):
    """FID of generated uint8 images against precomputed real (mean, cov)."""
    mu, sigma = statistics(inception_features(net, fake_uint8, ctx))
    return frechet_distance(mu, sigma, *real_stats)
