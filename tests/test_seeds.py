"""Unit: every random draw comes from gluon_dcgan.seeds, one named stream per purpose."""
import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli
from gluon_dcgan import seeds
from gluon_dcgan.tools import latent
from gluon_dcgan.data import loader
from gluon_dcgan.seeds import Stream

SHAPE = (4, 10, 1, 1)


@pytest.mark.unit
def test_same_inputs_give_the_same_draws():
    a = seeds.noise(7, Stream.NOISE, 2, 5, 0, shape=SHAPE)
    assert a.shape == SHAPE and a.dtype == onp.float32
    assert (a == seeds.noise(7, Stream.NOISE, 2, 5, 0, shape=SHAPE)).all()
    assert (seeds.rng(7, Stream.SHUFFLE, 3).permutation(50)
            == seeds.rng(7, Stream.SHUFFLE, 3).permutation(50)).all()


@pytest.mark.unit
def test_streams_are_independent():
    draws = [seeds.noise(7, s, shape=SHAPE) for s in Stream]
    for i, a in enumerate(draws):
        for b in draws[i + 1:]:
            assert not onp.isclose(a, b).any()  # not one value in common
    # The same keys in two streams still draw different numbers.
    assert (seeds.noise(7, Stream.SAMPLES, 1, shape=SHAPE)
            != seeds.noise(7, Stream.FID, 1, shape=SHAPE)).all()


@pytest.mark.unit
@pytest.mark.parametrize('other', [
    (8, (2, 5, 0)),   # another seed
    (7, (3, 5, 0)),   # another epoch
    (7, (2, 6, 0)),   # another batch
    (7, (2, 5, 1)),   # another worker
    (7, (5, 2, 0)),   # epoch and batch swapped
])
def test_different_keys_draw_different_numbers(other):
    seed, keys = other
    a = seeds.noise(7, Stream.NOISE, 2, 5, 0, shape=SHAPE)
    assert not onp.isclose(a, seeds.noise(seed, Stream.NOISE, *keys, shape=SHAPE)).any()


@pytest.mark.unit
def test_keys_are_not_packed_so_they_cannot_collide():
    # The old packing epoch * 1_000_003 + batch made (0, 1_000_003) equal (1, 0); and as
    # SeedSequence entropy, [seed, stream] equals [seed, stream, 0]. Neither collides here.
    assert (seeds.noise(1, Stream.NOISE, 0, 1_000_003, 0, shape=SHAPE)
            != seeds.noise(1, Stream.NOISE, 1, 0, 0, shape=SHAPE)).all()
    assert (seeds.noise(1, Stream.FIXED, shape=SHAPE)
            != seeds.noise(1, Stream.FIXED, 0, shape=SHAPE)).all()


@pytest.mark.unit
def test_noise_is_standard_normal_float32():
    z = seeds.noise(0, Stream.GENERATE, shape=(200_000,))
    assert z.dtype == onp.float32
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01


@pytest.mark.unit
def test_latent_noise_is_the_generate_stream_and_longer_draws_extend_shorter_ones():
    z = latent.latent_noise(6, 10, 3)
    assert z.shape == (6, 10, 1, 1) and z.dtype == onp.float32
    assert (z == seeds.noise(3, Stream.GENERATE, shape=(6, 10, 1, 1))).all()
    assert (latent.latent_noise(2, 10, 3) == z[:2]).all()


@pytest.mark.unit
@pytest.mark.parametrize('bad', [-1, 2 ** 32, 1.5, '3', True, None])
def test_bad_seeds_and_keys_are_refused(bad):
    with pytest.raises(ValueError):
        seeds.rng(bad, Stream.SHUFFLE, 0)
    with pytest.raises(ValueError):
        seeds.rng(0, Stream.SHUFFLE, bad)


@pytest.mark.unit
def test_extreme_seeds_work_and_unknown_streams_are_refused():
    assert seeds.rng(0, Stream.FIXED) is not None
    assert seeds.rng(2 ** 32 - 1, Stream.FIXED) is not None
    assert seeds.rng(onp.uint32(5), Stream.FIXED).random() == seeds.rng(5, Stream.FIXED).random()
    with pytest.raises(ValueError):
        seeds.rng(0, 99)


@pytest.mark.unit
def test_an_epoch_order_is_a_permutation_from_the_shuffle_stream():
    order = loader.shard_order(100, seed=3, epoch=2)
    assert (order == seeds.rng(3, Stream.SHUFFLE, 2).permutation(100)).all()


@pytest.mark.cli
@pytest.mark.parametrize('args', [['--seed', '-1'],
                                  ['generate', '--export', 'x', '--output', 'g.png',
                                   '--seed', '4294967296']])
def test_the_cli_refuses_bad_seeds_in_one_line(args, tmp_path):
    proc = run_cli(args + (['--out-dir', str(tmp_path / 'run')] if args[0] == '--seed' else []),
                   cwd=tmp_path)
    assert_one_line_error(proc, contains='argument --seed')
    assert list(tmp_path.iterdir()) == []  # nothing written
