"""FID: the math, the image pipeline with local weights, the real-feature cache, evaluate's
errors, and best-checkpoint selection."""
import json
import re

import mxnet as mx
import numpy as onp
import pytest

from conftest import SYNTHETIC, TINY, assert_one_line_error, run_cli
from gluon_dcgan.quality import fid


@pytest.mark.unit
def test_identical_features_give_zero():
    f = onp.random.RandomState(0).normal(size=(500, 8))
    mu, sigma = fid.statistics(f)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6


@pytest.mark.unit
def test_two_gaussians_match_the_closed_form():
    mu1, mu2 = onp.array([0.0, 1.0, 2.0]), onp.array([1.0, 1.0, 0.0])
    s1, s2 = onp.array([1.0, 4.0, 9.0]), onp.array([4.0, 1.0, 1.0])
    # Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(s1) - sqrt(s2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((onp.sqrt(s1) - onp.sqrt(s2)) ** 2).sum()
    assert abs(fid.frechet_distance(mu1, onp.diag(s1), mu2, onp.diag(s2)) - expected) < 1e-9
    assert expected == pytest.approx(5 + 1 + 1 + 4)


@pytest.mark.unit
def test_sample_statistics_converge_to_the_closed_form():
    rng = onp.random.RandomState(1)
    a = rng.normal(0, 1, size=(20000, 2))
    b = rng.normal(0, 2, size=(20000, 2)) + [3, 0]
    got = fid.frechet_distance(*fid.statistics(a), *fid.statistics(b))
    assert got == pytest.approx(9 + 2 * (2 - 1) ** 2, rel=0.05)


@pytest.fixture(scope='module')
def inception_params(tmp_path_factory):
    """A randomly initialised model zoo inception_v3, saved as a user would."""
    from mxnet.gluon.model_zoo import vision
    path = str(tmp_path_factory.mktemp('inception') / 'inception_v3.params')
    with mx.util.np_array(False), mx.util.np_shape(False):
        mx.random.seed(0)
        net = vision.inception_v3()
        net.initialize(mx.init.Xavier())
        net(mx.nd.zeros((1, 3, 299, 299)))
        net.save_parameters(path)
    return path


@pytest.mark.slow  # builds and saves an Inception v3 (module fixture), then runs it
def test_features_are_2048_per_image(inception_params):
    from gluon_dcgan.data.synthetic import make_sprites
    net = fid.load_inception(inception_params)
    feats = fid.inception_features(net, make_sprites(3))
    assert feats.shape == (3, 2048) and feats.std() > 0


EVALUATE_LINE = re.compile(r'^FID (\S+), KID (\S+) ± (\S+) \((\d+) generated, (\d+) real images\)$')


def evaluate_args(out, inception_params, data_root, *extra):
    return ['evaluate', '--export', str(out / 'export'), '--data', 'synthetic', '--num', '8',
            '--inception-params', inception_params, '--data-root', str(data_root)] + list(extra)


def count_feature_passes(monkeypatch):
    """Record (desc, image count) of every fid.inception_features call in this process."""
    calls = []
    real_pass = fid.inception_features

    def counted(net, images, *args, **kwargs):
        calls.append((kwargs.get('desc'), len(images)))
        return real_pass(net, images, *args, **kwargs)
    monkeypatch.setattr(fid, 'inception_features', counted)
    return calls


@pytest.mark.slow
def test_evaluate_prints_fid_and_kid_then_reuses_the_cached_real_features(
        tiny_run, inception_params, tmp_path, monkeypatch, capsys):
    out, _ = tiny_run
    proc = run_cli(evaluate_args(out, inception_params, tmp_path))
    assert proc.returncode == 0, proc.stderr
    match = EVALUATE_LINE.match(proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout
    score, kid, kid_std = (float(match.group(i)) for i in (1, 2, 3))
    assert onp.isfinite(score) and score > 0
    assert onp.isfinite(kid) and onp.isfinite(kid_std) and kid_std >= 0
    assert match.group(4) == '8' and match.group(5) == '8'
    # stderr is a pipe here: no progress bar is drawn, even without --no-progress.
    assert '\r' not in proc.stderr and 'image/s' not in proc.stderr
    assert 'saved to' in proc.stderr
    [cache] = (tmp_path / 'fid-stats').glob('real-*.npz')
    with onp.load(cache) as saved:  # the 8 real images' features
        assert saved['features'].shape == (8, 2048) and saved['sigma'].shape == (2048, 2048)
    # A second evaluation, in this process to count the Inception passes.
    from gluon_dcgan.tools import evaluate
    calls = count_feature_passes(monkeypatch)
    argv = evaluate_args(out, inception_params, tmp_path, '--ctx', 'cpu:0')[1:]
    assert evaluate.main(argv) == 0
    second = capsys.readouterr()
    assert calls == [('generated images', 8)]  # the real images were not run again
    assert 'cached in' in second.err
    assert second.out == proc.stdout  # the same scores from the cached statistics


@pytest.mark.unit
@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'wrong shape', 'pickled',
                                    'member of 2**40 floats'])
def test_a_damaged_cache_file_is_recomputed(tmp_path, monkeypatch, damage):
    # fid.real_statistics alone, with stand-in features: the cache logic without Inception.
    images = onp.arange(5 * 4 * 4 * 3, dtype=onp.uint8).reshape(5, 4, 4, 3)
    weights = tmp_path / 'weights.params'
    weights.write_bytes(b'weights')
    stand_in = onp.random.default_rng(0).normal(size=(5, 2048)).astype(onp.float32)
    monkeypatch.setattr(fid, 'inception_features', lambda net, x, *a, **k: stand_in[:len(x)])
    calls = count_feature_passes(monkeypatch)
    logged = []
    feats, (mu, sigma) = fid.real_statistics(None, images, str(weights), str(tmp_path / 'c'),
                                             log=logged.append)
    [cache] = (tmp_path / 'c').glob('real-*.npz')
    good = cache.read_bytes()
    if damage == 'garbage':
        cache.write_bytes(b'not an npz file')
    elif damage == 'truncated':
        cache.write_bytes(good[:len(good) // 2])
    elif damage == 'wrong shape':
        onp.savez(cache, features=onp.zeros((3, 2048), onp.float32),
                  mu=onp.zeros(2048), sigma=onp.zeros((2048, 2048)))
    elif damage == 'pickled':  # an object array is stored with pickle; loading it must not run it
        onp.savez(cache, features=onp.array([{'a': 1}], dtype=object),
                  mu=onp.zeros(2048), sigma=onp.zeros((2048, 2048)))
    else:  # the header alone declares 4 TiB: it was a MemoryError traceback
        _npz_with_a_huge_member(cache, mu, sigma)
    again, (mu2, sigma2) = fid.real_statistics(None, images, str(weights), str(tmp_path / 'c'),
                                               log=logged.append)
    assert len(calls) == 2 and 'damaged' in logged[-2], logged
    assert (again == feats).all() and (mu2 == mu).all() and (sigma2 == sigma).all()
    assert cache.read_bytes() == good  # replaced by the recomputed statistics
    fid.real_statistics(None, images, str(weights), str(tmp_path / 'c'), log=logged.append)
    assert len(calls) == 2 and 'cached in' in logged[-1]


def _npz_with_a_huge_member(path, mu, sigma):
    """An .npz whose features.npy header declares 2**40 float32 over 64 bytes of data."""
    import io
    import zipfile
    from numpy.lib import format as npy
    header = io.BytesIO()
    npy.write_array_header_1_0(header, {'descr': '<f4', 'fortran_order': False,
                                        'shape': (1 << 40,)})
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('features.npy', header.getvalue() + bytes(64))
        for name, array in (('mu', mu), ('sigma', sigma)):
            member = io.BytesIO()
            onp.save(member, array)
            zf.writestr(f'{name}.npy', member.getvalue())


@pytest.mark.unit
def test_the_cache_key_follows_the_images_and_the_weights(tmp_path):
    images = onp.zeros((4, 8, 8, 3), onp.uint8)
    w1, w2 = tmp_path / 'w1', tmp_path / 'w2'
    w1.write_bytes(b'one')
    w2.write_bytes(b'two')
    key = fid.real_stats_key(images, str(w1))
    assert fid.real_stats_key(images.copy(), str(w1)) == key
    assert fid.real_stats_key(images, str(w2)) != key
    changed = images.copy()
    changed[0, 0, 0, 0] = 1
    assert fid.real_stats_key(changed, str(w1)) != key
    assert fid.real_stats_key(images[:3], str(w1)) != key


# The refusals run cli.main in this process (conftest.main_in_process); they read the
# session's trained run (conftest.tiny_run), so they are cli tests.
@pytest.mark.cli
@pytest.mark.parametrize('content', [b'\x00garbage' * 100, b''])
def test_evaluate_with_a_wrong_weights_file_is_one_line(tiny_run, tmp_path, content,
                                                        main_in_process):
    out, _ = tiny_run
    bad = tmp_path / 'bad.params'
    bad.write_bytes(content)
    proc = main_in_process(evaluate_args(out, str(bad), tmp_path))
    line = assert_one_line_error(proc, contains='is not a model zoo inception_v3')
    assert 'Invalid NDArray file format' in line
    assert 'File "' not in line and 'Check failed' not in line


@pytest.mark.cli
def test_evaluate_with_another_nets_weights_is_one_line(tiny_run, tmp_path, main_in_process):
    out, _ = tiny_run
    other = tmp_path / 'dense.params'
    with mx.util.np_array(False), mx.util.np_shape(False):
        dense = mx.gluon.nn.Dense(3)
        dense.initialize()
        dense(mx.nd.zeros((1, 2)))
        dense.save_parameters(str(other))
    proc = main_in_process(evaluate_args(out, str(other), tmp_path))
    line = assert_one_line_error(proc, contains='is missing in file')
    assert 'which contains' not in line and 'https://' not in line


@pytest.mark.cli
def test_evaluate_refuses_a_bad_ctx(tiny_run, inception_params, tmp_path, main_in_process):
    out, _ = tiny_run
    proc = main_in_process(evaluate_args(out, inception_params, tmp_path, '--ctx', 'tpu'))
    assert_one_line_error(proc, contains='--ctx')
    assert not (tmp_path / 'fid-stats').exists()


@pytest.mark.slow
def test_fid_every_keeps_the_best(tmp_path, inception_params):
    out = tmp_path / 'run'
    proc = run_cli(TINY + ['--fid-every', '1', '--fid-num', '8', '--inception-params',
                           inception_params, '--out-dir', str(out)])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert all(onp.isfinite(r['fid']) for r in rows) and len(rows) == 2
    best = json.loads((out / 'checkpoints' / 'best' / 'score.json').read_text())
    assert best['fid'] == min(r['fid'] for r in rows)
    assert (out / 'export' / 'best' / 'generator.onnx').exists()
    assert (out / 'export' / 'generator.onnx').exists()


@pytest.mark.unit
def test_fid_every_without_weights_is_refused_up_front(tmp_path, main_in_process):
    proc = main_in_process(TINY + ['--fid-every', '1', '--data-root', str(tmp_path / 'empty'),
                           '--out-dir', str(tmp_path / 'o')])
    assert_one_line_error(proc, contains='--inception-params')
    assert not (tmp_path / 'o' / 'metrics.jsonl').exists()


@pytest.mark.cli
def test_inception_params_that_is_a_folder_is_named_so(tmp_path):
    assert_one_line_error(run_cli(SYNTHETIC + ['--fid-every', '1', '--inception-params',
                                               str(tmp_path), '--out-dir', str(tmp_path / 'run')]),
                          contains='is a folder')
    assert not (tmp_path / 'run').exists()
