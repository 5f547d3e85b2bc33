"""DiffAugment (Zhao et al. 2020): the same differentiable augmentation on every image D sees.

With few images, D memorises the real set and its loss goes to 0 while G's climbs.
Augmenting only the real images would teach G to make augmented images; DiffAugment
augments real and fake images alike, in D's step and in G's, with operations that
gradients pass through, so G learns from D through the augmentation.

The policies, each drawn per image:
- color: brightness + U(-0.5, 0.5); saturation (x - mean over channels) * U(0, 2);
  contrast (x - mean of the image) * U(0.5, 1.5), in that order;
- translation: a shift of up to 1/8 of the side in each direction, zeros shifted in;
- cutout: a square of half the side, set to 0, centred anywhere in the image.
The random numbers come from the named stream seeds.Stream.AUGMENT, keyed by the
batch and by the call (D on real, D on fake, D in G's step, per device), so a
resumed run draws exactly what an uninterrupted one did. Translation and cutout
run as matrix products and masks: no gather, cheap next to the convolutions.
"""
import numpy as onp

from ..config import POLICIES, parse_policies  # noqa: F401  (the flag's names)
from ..seeds import Stream, rng

def _shift_matrices(shifts, size):
    """(n, size, size) 0/1 matrices S with (S @ v)[y] = v[y - shift], 0 outside."""
    rows = onp.arange(size)[:, None] - shifts[:, None, None]   # source row of each output row
    return (rows == onp.arange(size)[None, None, :]).astype(onp.float32)


def draw(generator, policies, n, size):
    """The host arrays of one augmentation of `n` images of side `size`."""
    out = {}
    if 'color' in policies:
        out['brightness'] = generator.uniform(-0.5, 0.5, (n, 1, 1, 1)).astype(onp.float32)
        out['saturation'] = generator.uniform(0.0, 2.0, (n, 1, 1, 1)).astype(onp.float32)
        out['contrast'] = generator.uniform(0.5, 1.5, (n, 1, 1, 1)).astype(onp.float32)
    if 'translation' in policies:
        shift = int(size / 8 + 0.5)
        dy, dx = (generator.integers(-shift, shift + 1, n) for _ in range(2))
        out['rows'] = _shift_matrices(dy, size)[:, None]                     # (n, 1, s, s)
        out['cols'] = onp.swapaxes(_shift_matrices(dx, size), 1, 2)[:, None]  # transposed
    if 'cutout' in policies:
        half = int(size / 2 + 0.5)
        # Rows [c - half // 2, c - half // 2 + half), cut at the border: the centre c may
        # be anywhere in the image, so a square at an edge is partly outside it.
        low_y, low_x = (generator.integers(0, size + 1 - half % 2, n) - half // 2
                        for _ in range(2))
        grid = onp.arange(size)[None, :]
        inside_y = (grid >= low_y[:, None]) & (grid < low_y[:, None] + half)
        inside_x = (grid >= low_x[:, None]) & (grid < low_x[:, None] + half)
        out['keep'] = 1 - (inside_y[:, :, None] & inside_x[:, None, :]).astype(onp.float32)
        out['keep'] = out['keep'][:, None]                                   # (n, 1, s, s)
    return out


def apply(X, drawn):
    """Augment device images X (n, C, s, s) in [-1, 1] with `drawn` (draw's arrays)."""
    from mxnet import np
    def on(name):
        return np.array(drawn[name], ctx=X.ctx)
    if 'brightness' in drawn:
        X = X + on('brightness')
        mean = X.mean(axis=1, keepdims=True)
        X = (X - mean) * on('saturation') + mean
        mean = X.mean(axis=(1, 2, 3), keepdims=True)
        X = (X - mean) * on('contrast') + mean
    if 'rows' in drawn:
        X = np.matmul(np.matmul(on('rows'), X), on('cols'))
    if 'keep' in drawn:
        X = X * on('keep')
    return X


class AugmentedD:
    """net_D seen through DiffAugment: each call augments its input with a fresh draw.

    Calls are counted, so the k-th call of a batch always gets the k-th draw.
    """

    def __init__(self, net_D, policies, seed, epoch, batch, rank=0):
        self.net_D, self.policies = net_D, policies
        self.keys, self.calls = (seed, epoch, batch, rank), 0

    def __call__(self, X):
        seed, epoch, batch, rank = self.keys
        generator = rng(seed, Stream.AUGMENT, epoch, batch, rank, self.calls)
        self.calls += 1
        return self.net_D(apply(X, draw(generator, self.policies, X.shape[0], X.shape[-1])))
