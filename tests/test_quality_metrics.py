"""quality/metrics.py on point clouds whose answers are known by hand: the same set,
two far-apart clouds, a generator stuck on one mode of five, and copies of training rows."""
import json

import numpy as onp
import pytest

from gluon_dcgan.quality import metrics

pytestmark = pytest.mark.unit


def cloud(rng, n, d=8, centre=0.0):
    return (rng.standard_normal((n, d)) + centre).astype(onp.float32)


def mixture(rng, n, modes, d=8, spread=20.0):
    """n rows spread evenly over the given modes of 5, mode i centred at spread * e_i."""
    labels = onp.arange(n) % len(modes)
    centres = onp.zeros((5, d))
    centres[onp.arange(5), onp.arange(5)] = spread
    return (rng.standard_normal((n, d)) + centres[onp.asarray(modes)[labels]]).astype(onp.float32)


def plain(value):
    """True when value holds only what json writes back unchanged: no numpy types."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return type(value) in (str, int, float, bool)


def test_distance_blocks_match_the_direct_distances_when_both_sides_are_split():
    rng = onp.random.default_rng(0)
    a, b = cloud(rng, 37, 5), cloud(rng, 23, 5)
    direct = onp.sqrt(((a[:, None].astype(float) - b[None].astype(float)) ** 2).sum(-1))
    # 200 bytes: 1 row of a (23 float64) and 5 rows of b (5 * 5 float64) per block
    blocks = list(metrics._distance_blocks(a, b, block_bytes=200))
    assert len(blocks) == 37
    assert onp.allclose(onp.concatenate([d for _, d in blocks]), direct, atol=1e-9)
    distances, index = metrics.nearest(a, b)
    assert (index == direct.argmin(axis=1)).all()
    assert onp.allclose(distances, direct.min(axis=1))


def test_identical_sets():
    rng = onp.random.default_rng(1)
    x = cloud(rng, 400)
    scores = metrics.precision_recall_density_coverage(x, x)
    assert (scores['precision'], scores['recall'], scores['coverage']) == (1.0, 1.0, 1.0)
    # Each sample's nearest other sample is its twin in the other set, so the
    # leave-one-out 1-NN classifier is always wrong: the mark of copies, not 0.5.
    assert metrics.one_nn_accuracy(x, x) == 0.0
    # Whole sets: one subset, and the unbiased MMD^2 of a set with itself is
    # -2/(m-1) (mean k(x_i, x_i) - mean k(x_i, x_j)), which vanishes as m grows.
    kid = metrics.kid(x, x, seed=0, subsets=50, subset_size=400)
    k = (x.astype(float) @ x.T.astype(float) / x.shape[1] + 1) ** 3
    assert kid['std'] == 0
    assert kid['mean'] == pytest.approx(-2 / 399 * (onp.diag(k).mean() - k.mean()))
    assert metrics.frechet_distance(x, x) == pytest.approx(0, abs=1e-6)


def test_two_samples_of_one_distribution():
    rng = onp.random.default_rng(2)
    fake, real = cloud(rng, 2000), cloud(rng, 2000)
    scores = metrics.precision_recall_density_coverage(fake, real)
    assert scores['density'] == pytest.approx(1.0, abs=0.08)
    assert min(scores['precision'], scores['recall'], scores['coverage']) > 0.8
    assert metrics.one_nn_accuracy(fake, real) == pytest.approx(0.5, abs=0.05)
    assert metrics.ndb(fake, real, rng, bins=10)['different'] <= 3
    kid = metrics.kid(fake, real, seed=0, subsets=50, subset_size=500)
    assert abs(kid['mean']) <= 3 * kid['std']


def test_two_far_apart_clouds():
    rng = onp.random.default_rng(3)
    fake, real = cloud(rng, 500, centre=50.0), cloud(rng, 500)
    scores = metrics.precision_recall_density_coverage(fake, real)
    assert scores == {'precision': 0.0, 'recall': 0.0, 'density': 0.0, 'coverage': 0.0}
    assert metrics.one_nn_accuracy(fake, real) == 1.0
    ndb = metrics.ndb(fake, real, rng, bins=10)
    assert ndb['different'] == ndb['bins'] == 10 and ndb['different_fraction'] == 1.0
    assert ndb['different_bins'] == list(range(10))
    kid = metrics.kid(fake, real, seed=0, subsets=10, subset_size=200)
    assert kid['mean'] > 100 * kid['std']


def test_a_generator_stuck_on_one_mode_of_five():
    rng = onp.random.default_rng(4)
    real, fake = mixture(rng, 1000, range(5)), mixture(rng, 1000, [0])
    scores = metrics.precision_recall_density_coverage(fake, real)
    assert scores['precision'] > 0.85
    assert scores['recall'] < 0.25 and scores['coverage'] < 0.25
    ndb = metrics.ndb(fake, real, rng, bins=10)
    p_real, p_fake = onp.array(ndb['real_proportions']), onp.array(ndb['fake_proportions'])
    missing = onp.flatnonzero((p_fake == 0) & (p_real > 0))
    assert p_real[missing].sum() == pytest.approx(0.8, abs=0.02)  # the four missing modes
    assert set(missing) <= set(ndb['different_bins'])
    assert ndb['js_divergence'] > 0.3


def test_kmeans_finds_separated_modes_and_repeats_with_the_seed():
    rng = onp.random.default_rng(5)
    x = mixture(rng, 500, range(5))
    centroids = metrics.kmeans(x, 5, onp.random.default_rng(7))
    assert (onp.sort(centroids.argmax(axis=1)) == onp.arange(5)).all()
    assert onp.abs(onp.sort(centroids.max(axis=1)) - 20).max() < 0.5
    assert (metrics.kmeans(x, 5, onp.random.default_rng(7)) == centroids).all()


def test_copies_of_training_rows_are_found_and_flagged():
    rng = onp.random.default_rng(6)
    train, heldout = cloud(rng, 300), cloud(rng, 200)
    picked = rng.permutation(300)[:50]
    found = metrics.memorisation(train[picked], train, heldout, n_nearest=10)
    assert (found['fake_nearest'] == 0).all()
    assert found['nearest_indices'] == [int(i) for i in picked[:10]]
    assert found['nearest_distances'] == [0.0] * 10
    assert (found['heldout_nearest'] > 0).all()
    summary = found['summary']
    assert summary['flagged'] == 1.0 and summary['fake_nearer_than_heldout_median'] == 1.0
    assert summary['fake_median'] == 0.0 < summary['threshold'] < summary['heldout_median']
    fresh = metrics.memorisation(cloud(rng, 200), train, heldout)['summary']
    assert fresh['flagged'] < 0.1
    assert fresh['fake_nearer_than_heldout_median'] == pytest.approx(0.5, abs=0.15)


def test_split_halves_are_disjoint_and_seeded():
    real = onp.arange(22, dtype=onp.float32).reshape(11, 2)
    first, second = metrics.split_halves(real, onp.random.default_rng(0))
    assert len(first) == len(second) == 5
    assert not set(first[:, 0]) & set(second[:, 0])
    again = metrics.split_halves(real, onp.random.default_rng(0))
    assert (again[0] == first).all() and (again[1] == second).all()


def test_report_is_plain_json_and_repeats_with_the_seed():
    rng = onp.random.default_rng(8)
    fake, real, train = cloud(rng, 120), cloud(rng, 120), cloud(rng, 150)
    out = metrics.report(fake, real, 3, train=train, kid_subsets=5, kid_subset_size=50)
    assert plain(out)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert set(out) == {'k', 'fake_vs_real', 'real_vs_real', 'memorisation'}
    for side, rows in (('fake_vs_real', 120), ('real_vs_real', 60)):
        assert set(out[side]) == {'rows', 'fd', 'kid', 'precision', 'recall', 'density',
                                  'coverage', 'one_nn_accuracy', 'ndb'}
        assert out[side]['rows'] == {'fake': rows, 'real': rows}
    assert out['real_vs_real']['ndb']['bins'] == 6  # 60 real rows: about 10 a bin
    assert len(out['memorisation']['nearest_indices']) == 16
    assert metrics.report(fake, real, 3, train=train, kid_subsets=5, kid_subset_size=50) == out
    again = metrics.report(fake, real, onp.random.default_rng(3), kid_subsets=5,
                           kid_subset_size=50)
    assert 'memorisation' not in again
    assert metrics.report(fake, real, 4, kid_subsets=5, kid_subset_size=50) != again


@pytest.mark.parametrize('fake, real, message', [
    (onp.zeros(10), onp.zeros((10, 3)), 'generated features must be a 2-d float array'),
    (onp.zeros((10, 3), onp.int64), onp.zeros((10, 3)), 'dtype int64'),
    (onp.zeros((10, 3)), onp.zeros((10, 4)),
     'generated features have 3 values per row and real ones 4'),
    (onp.zeros((5, 3)), onp.zeros((10, 3)),
     'generated features have 5 rows of 3 values: give at least 6'),
    (onp.zeros((10, 0)), onp.zeros((10, 0)), 'give at least 6 rows of at least 1'),
    (onp.zeros((10, 3)), onp.full((10, 3), onp.nan), 'real features hold NaN or infinite values'),
    (onp.zeros((10, 3)), onp.full((10, 3), onp.inf), 'real features hold NaN or infinite values'),
])
def test_bad_features_are_refused_in_one_line(fake, real, message):
    with pytest.raises(ValueError, match=message) as caught:
        metrics.precision_recall_density_coverage(fake, real)
    assert '\n' not in str(caught.value)


def test_bad_seeds_bins_and_sizes_are_refused():
    rng = onp.random.default_rng(9)
    x = cloud(rng, 40)
    for seed in (True, -1, 2 ** 32, 1.5, 'a', None):
        with pytest.raises(ValueError, match='give a numpy Generator or a seed in'):
            metrics.report(x, x, seed, kid_subsets=2, kid_subset_size=10)
    for bins in (1, 41, 2.5, True):
        with pytest.raises(ValueError, match='NDB needs from 2 to 40'):
            metrics.ndb(x, x, rng, bins=bins)
    with pytest.raises(ValueError, match='real features have 11 rows of 8 values: '
                                         'give at least 12'):
        metrics.report(x, x[:11], 0)  # each half needs k + 1 = 6 rows
    with pytest.raises(ValueError, match='generated, training and held-out features have '
                                         '8, 8 and 3 values per row'):
        metrics.memorisation(x, x, onp.zeros((5, 3)))
