"""Latent vectors for a trained generator: the noise `generate --seed` draws, and
slerp walks between two such vectors.

`evaluate` and `analyze-categories` draw the same noise for the same seed, so
their scores describe the images `generate` shows.
"""
import numpy as onp

from ..seeds import Stream, noise


def latent_noise(num, latent_dim, seed):
    """The (num, latent_dim, 1, 1) float32 noise of ``generate --num num --seed seed``.

    It is the GENERATE stream of seeds.py; a longer draw starts with a shorter one's latents.
    """
    return noise(seed, Stream.GENERATE, shape=(num, latent_dim, 1, 1))


def slerp(z0, z1, t):
    """Spherical interpolation from latent z0 to z1 at fractions t: (len(t),) + z0.shape.

    The direction turns along the great circle between the two directions in equal
    angle steps, and the norm goes linearly from |z0| to |z1|: unlike a straight line,
    whose midpoints are shorter than Gaussian noise ever is, the walk stays where the
    generator was trained (the DCGAN paper's walks; White, 2016). t=0 and t=1 give z0
    and z1 exactly. Parallel or zero ends have no great circle: a straight line then.
    """
    a, b = (onp.asarray(z, onp.float64).ravel() for z in (z0, z1))
    t = onp.asarray(t, onp.float64).reshape(-1, 1)
    na, nb = onp.linalg.norm(a), onp.linalg.norm(b)
    omega = onp.arccos(onp.clip(a @ b / (na * nb), -1, 1)) if na * nb > 0 else 0.0
    if onp.sin(omega) < 1e-6:
        c0, c1 = 1 - t, t
    else:  # coefficients first, so t=0 and t=1 multiply the ends by exactly 1 and 0
        norm = (1 - t) * na + t * nb
        c0 = onp.sin((1 - t) * omega) / onp.sin(omega) * (norm / na)
        c1 = onp.sin(t * omega) / onp.sin(omega) * (norm / nb)
    out = c0 * a + c1 * b
    return out.reshape((len(t),) + onp.shape(z0)).astype(onp.asarray(z0).dtype)


def latent_walk(pairs, steps, latent_dim, seed):
    """(pairs*steps, latent_dim, 1, 1) float32: `pairs` slerp walks of `steps` latents.

    Latents 2k and 2k+1 of latent_noise(2*pairs, ..., seed) are walk k's ends; the
    rows come walk by walk, each from its first end to its second.
    """
    ends = latent_noise(2 * pairs, latent_dim, seed)
    t = onp.linspace(0, 1, steps)
    return onp.concatenate([slerp(ends[2 * k], ends[2 * k + 1], t) for k in range(pairs)])
