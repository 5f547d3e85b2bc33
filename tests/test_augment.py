"""Unit: DiffAugment's operations, their gradients, and their draws."""
import numpy as onp
import pytest
from mxnet import autograd, np

from gluon_dcgan.seeds import Stream, rng
from gluon_dcgan.train import augment


def _images(n=4, size=16, seed=0):
    return np.array(onp.random.RandomState(seed).uniform(-1, 1, (n, 3, size, size))
                    .astype(onp.float32))


def test_translation_shifts_each_image_and_fills_zeros():
    X = _images()
    drawn = augment.draw(rng(0, Stream.AUGMENT, 1, 2, 0, 0), ('translation',), 4, 16)
    out = augment.apply(X, drawn).asnumpy()
    x = X.asnumpy()
    for i in range(4):  # find the shift the matrices encode and check every pixel
        dy = int(onp.argmax(drawn['rows'][i, 0], axis=1)[8]) - 8
        dx = int(onp.argmax(drawn['cols'][i, 0], axis=0)[8]) - 8
        dy, dx = -dy, -dx
        assert abs(dy) <= 2 and abs(dx) <= 2  # 16 / 8
        expected = onp.zeros_like(x[i])
        ys, xs = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0))
        yt, xt = slice(max(-dy, 0), 16 + min(-dy, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))
        expected[:, ys, xs] = x[i][:, yt, xt]
        assert onp.array_equal(out[i], expected), (i, dy, dx)


def test_cutout_zeroes_one_square_of_half_the_side_at_most():
    X = np.ones((64, 3, 16, 16))
    drawn = augment.draw(rng(0, Stream.AUGMENT, 1, 0, 0, 0), ('cutout',), 64, 16)
    out = augment.apply(X, drawn).asnumpy()
    zeros = (out[:, 0] == 0)
    assert onp.array_equal(out[:, 0], out[:, 2])  # the same square on every channel
    for mask in zeros:
        ys, xs = onp.nonzero(mask)
        assert 0 < len(ys) <= 64  # 8 x 8 at most
        assert len(ys) == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a rectangle
    assert (zeros.sum(axis=(1, 2)) == 64).any()  # whole squares inside the image too


def test_color_keeps_identity_at_neutral_factors_and_moves_otherwise():
    X = _images()
    neutral = {'brightness': onp.zeros((4, 1, 1, 1), 'float32'),
               'saturation': onp.ones((4, 1, 1, 1), 'float32'),
               'contrast': onp.ones((4, 1, 1, 1), 'float32')}
    assert onp.allclose(augment.apply(X, neutral).asnumpy(), X.asnumpy(), atol=1e-6)
    drawn = augment.draw(rng(0, Stream.AUGMENT, 0, 0, 0, 0), ('color',), 4, 16)
    assert onp.abs(augment.apply(X, drawn).asnumpy() - X.asnumpy()).mean() > 0.05


def test_gradients_pass_through_every_policy():
    X = _images()
    X.attach_grad()
    drawn = augment.draw(rng(0, Stream.AUGMENT, 0, 0, 0, 0), augment.POLICIES, 4, 16)
    with autograd.record():
        loss = (augment.apply(X, drawn) ** 2).sum()
    loss.backward()
    grad = X.grad.asnumpy()
    assert onp.isfinite(grad).all() and onp.abs(grad).sum() > 0


def test_the_kth_call_of_a_batch_always_gets_the_same_draw():
    seen = []
    aug = augment.AugmentedD(lambda X: seen.append(X.asnumpy()) or X, augment.POLICIES,
                             seed=3, epoch=2, batch=5)
    X = _images()
    aug(X), aug(X)
    again = augment.AugmentedD(lambda X: seen.append(X.asnumpy()) or X, augment.POLICIES,
                               seed=3, epoch=2, batch=5)
    again(X)
    assert onp.array_equal(seen[0], seen[2]) and not onp.array_equal(seen[0], seen[1])


@pytest.mark.parametrize('text, expected', [
    ('color,translation,cutout', augment.POLICIES),
    ('cutout, color', ('color', 'cutout')),
])
def test_policies_parse(text, expected):
    assert augment.parse_policies(text) == expected


@pytest.mark.parametrize('text', ['', 'colour', 'color,color'])
def test_bad_policies_are_refused(text):
    with pytest.raises(ValueError, match='--diffaugment'):
        augment.parse_policies(text)
