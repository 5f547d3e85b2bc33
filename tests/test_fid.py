"""FID: the math, the image pipeline with local weights, and best-checkpoint selection."""
import json
import re

import mxnet as mx
import numpy as onp
import pytest

from conftest import TINY, assert_one_line_error, run_cli
from gluon_dcgan import fid


def test_identical_features_give_zero():
    f = onp.random.RandomState(0).normal(size=(500, 8))
    mu, sigma = fid.statistics(f)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_two_gaussians_match_the_closed_form():
    mu1, mu2 = onp.array([0.0, 1.0, 2.0]), onp.array([1.0, 1.0, 0.0])
    s1, s2 = onp.array([1.0, 4.0, 9.0]), onp.array([4.0, 1.0, 1.0])
    # Diagonal covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(s1) - sqrt(s2))^2
    expected = ((mu1 - mu2) ** 2).sum() + ((onp.sqrt(s1) - onp.sqrt(s2)) ** 2).sum()
    assert abs(fid.frechet_distance(mu1, onp.diag(s1), mu2, onp.diag(s2)) - expected) < 1e-9
    assert expected == pytest.approx(5 + 1 + 1 + 4)


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


def test_features_are_2048_per_image(inception_params):
    from gluon_dcgan.data.synthetic import make_sprites
    net = fid.load_inception(inception_params)
    feats = fid.inception_features(net, make_sprites(3))
    assert feats.shape == (3, 2048) and feats.std() > 0


def test_evaluate_prints_a_finite_score(tiny_run, inception_params):
    out, _ = tiny_run
    proc = run_cli(['evaluate', '--export', str(out / 'export'), '--data', 'synthetic',
                    '--num', '24', '--inception-params', inception_params])
    assert proc.returncode == 0, proc.stderr
    match = re.match(r'^FID (\S+) \((\d+) generated, (\d+) real images\)$',
                     proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout
    assert onp.isfinite(float(match.group(1))) and float(match.group(1)) > 0
    assert match.group(2) == '24' and match.group(3) == '24'


def test_fid_every_keeps_the_best(tmp_path, inception_params):
    out = tmp_path / 'run'
    proc = run_cli(TINY + ['--fid-every', '1', '--fid-num', '16', '--inception-params',
                           inception_params, '--out-dir', str(out)])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert all(onp.isfinite(r['fid']) for r in rows) and len(rows) == 2
    best = json.loads((out / 'checkpoints' / 'best' / 'score.json').read_text())
    assert best['fid'] == min(r['fid'] for r in rows)
    assert (out / 'export' / 'best' / 'generator.onnx').exists()
    assert (out / 'export' / 'generator.onnx').exists()


def test_fid_every_without_weights_is_refused_up_front(tmp_path):
    proc = run_cli(TINY + ['--fid-every', '1', '--data-root', str(tmp_path / 'empty'),
                           '--out-dir', str(tmp_path / 'o')])
    assert_one_line_error(proc, contains='--inception-params')
    assert not (tmp_path / 'o' / 'metrics.jsonl').exists()
