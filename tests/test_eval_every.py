"""--eval-every: KID and coverage in EfficientNet-Lite0 features while training, the best
checkpoint by KID, the fourth panel of training.png, and training left as it is."""
import json
import re
import types

import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli
from gluon_dcgan.config import Config
from gluon_dcgan.train import best as best_module
from gluon_dcgan.train.rundir import RunPaths

RUN = ['--data', 'synthetic', '--limit', '64', '--batch-size', '16', '--epochs', '2',
       '--n-G', '8', '--n-D', '8', '--ctx', 'cpu', '--no-progress', '--seed', '3',
       '--ema', '0.9']
EVAL = ['--eval-every', '1', '--eval-num', '16']
SCORE_LINE = re.compile(r'^epoch (\d+): KID×1000 \(EfficientNet-Lite0\) (-?\d+\.\d) ± '
                        r'(\d+\.\d), coverage (\d\.\d\d)( \(best\))?$')


class StubScorer:
    """A scorer whose KIDs are given: what the keeper does with them is under test."""
    metric, features, num = 'kid', 'EfficientNet-Lite0', 16

    def __init__(self, kids):
        self.kids = kids

    def due(self, epoch):
        return True

    def score(self, epoch):
        return {'kid': self.kids[epoch], 'kid_std': 0.0, 'coverage': 0.5}


def _keeper(tmp_path, monkeypatch, kids, log=lambda m: None):
    exported = []
    monkeypatch.setattr(best_module, 'export_run',
                        lambda net, cfg, folder, ctx, epoch: exported.append((folder, epoch)))
    paths = RunPaths(str(tmp_path))
    keeper = best_module.BestCheckpoint(Config(), paths, types.SimpleNamespace(sampler=None),
                                        None, StubScorer(kids), log)
    return keeper, exported


def _checkpoint(tmp_path, epoch):
    folder = tmp_path / 'checkpoints' / f'ckpt-E{epoch:04d}-B000000'
    folder.mkdir(parents=True)
    (folder / 'net_G.params').write_text(f'epoch {epoch}')
    return str(folder)


@pytest.mark.unit
def test_the_best_checkpoint_is_the_lowest_kid_and_survives_a_resume(tmp_path, monkeypatch):
    kids = {1: 0.30, 2: 0.10, 3: 0.20, 4: 0.15, 5: 0.05}
    keeper, exported = _keeper(tmp_path, monkeypatch, kids)
    kept = [keeper.keep_if_best(e, keeper.score(e), _checkpoint(tmp_path, e)) for e in (1, 2, 3)]
    assert kept == [True, True, False]
    best = tmp_path / 'checkpoints' / 'best'
    assert (best / 'net_G.params').read_text() == 'epoch 2'
    score = json.loads((best / 'score.json').read_text())
    assert score == {'metric': 'kid', 'value': 0.10, 'epoch': 2, 'num': 16,
                     'features': 'EfficientNet-Lite0', 'kid': 0.10, 'kid_std': 0.0,
                     'coverage': 0.5}
    assert [e for _, e in exported] == [1, 2]
    assert exported[-1][0] == str(tmp_path / 'export' / 'best')
    # A resumed run reads the best so far: a worse KID is not kept, a better one is.
    keeper, exported = _keeper(tmp_path, monkeypatch, kids)
    assert keeper.best == 0.10
    assert not keeper.keep_if_best(4, keeper.score(4), _checkpoint(tmp_path, 4))
    assert keeper.keep_if_best(5, keeper.score(5), _checkpoint(tmp_path, 5))
    assert (best / 'net_G.params').read_text() == 'epoch 5' and [e for _, e in exported] == [5]
    assert not [p for p in (tmp_path / 'checkpoints').iterdir() if p.name.startswith('.tmp')]


@pytest.mark.unit
def test_a_score_json_of_fid_is_read_as_fid_and_replaced_by_kid(tmp_path, monkeypatch):
    best = tmp_path / 'checkpoints' / 'best'
    best.mkdir(parents=True)
    # As --fid-every wrote it before score.json named its metric:
    (best / 'score.json').write_text('{"fid": 7.5, "epoch": 2, "fid_num": 1000}')
    assert best_module.saved_score(str(best), 'fid') == (7.5, 'fid')
    (best / 'score.json').write_text('{"metric": "fid", "value": 6.5, "fid": 6.5}')
    assert best_module.saved_score(str(best), 'fid') == (6.5, 'fid')
    lines = []
    keeper, _ = _keeper(tmp_path, monkeypatch, {1: 0.9}, lines.append)
    assert keeper.best is None  # a FID is no KID: the first KID replaces it
    assert lines == ['note: checkpoints/best was chosen by fid; the first kid score of this '
                     'run replaces it']
    assert keeper.keep_if_best(1, keeper.score(1), _checkpoint(tmp_path, 1))
    assert best_module.saved_score(str(best), 'kid') == (0.9, 'kid')


@pytest.mark.unit
def test_kid_and_coverage_tell_the_same_features_from_shifted_ones():
    from gluon_dcgan.train.scorers import kid_and_coverage
    rng = onp.random.default_rng(0)
    real = rng.normal(size=(64, 16)).astype(onp.float32)
    same = kid_and_coverage(rng.normal(size=(64, 16)).astype(onp.float32), real, 0)
    shifted = kid_and_coverage(real + 3, real, 0)
    assert abs(same['kid']) < 0.2 * shifted['kid'] and same['kid_std'] > 0
    assert same['coverage'] > 0.5 and shifted['coverage'] == 0.0
    assert kid_and_coverage(real + 3, real, 0) == shifted  # the same subsets every time


@pytest.mark.unit
def test_the_scored_images_come_from_the_ema_generator():
    import mxnet as mx
    from mxnet import np
    from gluon_dcgan.images import to_pixels
    from gluon_dcgan.seeds import Stream, noise
    from gluon_dcgan.train.loop import GAN
    from gluon_dcgan.train.scorers import generated
    cfg = Config(n_G=4, n_D=4, latent_dim=8, ema=0.9, seed=5)
    gan = GAN(cfg, [mx.cpu()])
    weight = next(p for p in gan.net_G.collect_params().values() if p.grad_req != 'null')
    weight.set_data(weight.data() * 3)  # the live net now differs from its average
    images = generated(cfg, gan, Stream.EVAL, 2, 300)  # two passes: 256 and 44
    Z = np.array(noise(cfg.seed, Stream.EVAL, 2, shape=(300, 8, 1, 1)))
    assert onp.array_equal(images, to_pixels(gan.net_G_ema(Z).asnumpy()))
    assert not onp.array_equal(images, to_pixels(gan.net_G(Z).asnumpy()))


@pytest.mark.unit
def test_the_fourth_panel_plots_kid_x1000_and_coverage(tmp_path):
    from PIL import Image
    from gluon_dcgan.train.report import TrainingFigure
    path, plain = tmp_path / 'training.png', tmp_path / 'plain.png'
    figure = TrainingFigure(4, str(path), with_quality=True)
    figure.add(1, 1.0, 2.0, save=False, D={'D_x': 0.5})  # not scored
    figure.add(2, 0.9, 1.8, save=False, D={'kid': 0.312, 'kid_std': 0.02, 'coverage': 0.08})
    figure.add(4, 0.8, 1.6, D={'kid': 0.25, 'kid_std': 0.01, 'coverage': 0.2})
    assert len(figure.animator.axes) == 4
    (kid,) = figure.animator.axes[3].get_lines()
    (coverage,) = figure.coverage_axis.get_lines()
    assert list(kid.get_xdata()) == [2, 4] and list(kid.get_ydata()) == [312.0, 250.0]
    assert list(coverage.get_ydata()) == [0.08, 0.2]
    assert figure.coverage_axis.get_ylim() == (0, 1)
    TrainingFigure(4, str(plain)).add(1, 1.0, 2.0)
    with Image.open(path) as tall, Image.open(plain) as short:
        assert tall.height > short.height * 1.2  # the extra panel is in the file


@pytest.mark.unit
@pytest.mark.parametrize('flags, contains', [
    (['--eval-every', '1', '--fid-every', '1'], '--eval-every and --fid-every are exclusive'),
    (['--eval-every', '1', '--eval-num', '9'], 'argument --eval-num: must be >= 10'),
    (['--eval-every', '1', '--eval-num', '10001'], 'argument --eval-num: must be <= 10000'),
])
def test_refused_flags_say_so_in_one_line(tmp_path, main_in_process, flags, contains):
    proc = main_in_process(RUN + flags + ['--out-dir', tmp_path / 'run'])
    assert_one_line_error(proc, contains=contains)
    assert not (tmp_path / 'run').exists()


@pytest.mark.unit
def test_too_few_images_for_coverage_are_refused_before_anything_is_written(
        tmp_path, main_in_process):
    args = RUN[:RUN.index('--limit')] + ['--limit', '4', '--batch-size', '4'] + RUN[6:]
    proc = main_in_process(args + EVAL + ['--out-dir', tmp_path / 'run',
                                          '--data-root', tmp_path / 'cache'])
    assert_one_line_error(proc, contains='needs at least 6 real images, and the data has 4')
    assert not (tmp_path / 'run').exists()


def _rows(out):
    return [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]


def _params(checkpoint):
    from mxnet import nd
    return {name: {k: v.asnumpy() for k, v in nd.load(str(checkpoint / name)).items()}
            for name in ('net_G.params', 'ema_G.params', 'net_D.params')}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The same 2-epoch run without and with --eval-every 1 (the real command)."""
    root = tmp_path_factory.mktemp('eval')
    plain, scored = root / 'plain', root / 'scored'
    proc = run_cli(RUN + ['--out-dir', str(plain)])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(RUN + EVAL + ['--out-dir', str(scored), '--data-root', str(root / 'cache')])
    assert proc.returncode == 0, proc.stderr
    return plain, scored, proc, root / 'cache'


@pytest.mark.cli
def test_scoring_leaves_training_bit_for_bit_as_it_was(runs):
    plain, scored, _, _ = runs
    ckpt = 'checkpoints/ckpt-E0002-B000000'
    a, b = _params(plain / ckpt), _params(scored / ckpt)
    for name in a:
        assert a[name].keys() == b[name].keys()
        for k in a[name]:
            assert onp.array_equal(a[name][k], b[name][k]), (name, k)
    assert [r['loss_G'] for r in _rows(plain)] == [r['loss_G'] for r in _rows(scored)]
    assert not (plain / 'checkpoints' / 'best').exists()


@pytest.mark.cli
def test_eval_every_keeps_the_best_by_kid_and_a_resume_keeps_the_scores(runs):
    _, out, proc, cache = runs
    rows = _rows(out)
    assert all(onp.isfinite(r['kid']) and 0 <= r['coverage'] <= 1 for r in rows)
    lines = [SCORE_LINE.match(l) for l in proc.stderr.splitlines() if l.startswith('epoch ')
             and 'KID' in l]
    assert [int(m[1]) for m in lines] == [1, 2]
    assert [float(m[2]) for m in lines] == [round(1000 * r['kid'], 1) for r in rows]
    score = json.loads((out / 'checkpoints' / 'best' / 'score.json').read_text())
    assert score['metric'] == 'kid' and score['value'] == min(r['kid'] for r in rows)
    assert bool(lines[1][5]) == (rows[1]['kid'] < rows[0]['kid'])
    assert (out / 'export' / 'best' / 'generator.onnx').exists()
    assert list(cache.glob('quality-features/real-*.npz'))  # the real side, computed once
    # --epochs 3, resumed: the scores of epochs 1-2 stay in the history; the best is
    # the lowest of all three (with --eval-every 2, epoch 3 is scored as the last).
    proc = run_cli(RUN[:RUN.index('--epochs')] + ['--epochs', '3'] + RUN[8:] +
                   ['--eval-every', '2', '--eval-num', '16', '--out-dir', str(out),
                    '--data-root', str(cache), '--resume'])
    assert proc.returncode == 0, proc.stderr
    resumed = _rows(out)
    assert resumed[:2] == rows and [r['epoch'] for r in resumed] == [1, 2, 3]
    assert 'kid' in resumed[2]
    score = json.loads((out / 'checkpoints' / 'best' / 'score.json').read_text())
    assert score['value'] == min(r['kid'] for r in resumed)
    assert score['epoch'] == min(resumed, key=lambda r: r['kid'])['epoch']


@pytest.mark.unit
@pytest.mark.parametrize('eval_every, removed', [(1, True), (0, False)])
def test_overwrite_removes_the_best_of_a_run_that_scored_and_only_then(tmp_path, eval_every,
                                                                        removed):
    from gluon_dcgan.train import rundir
    paths = RunPaths(str(tmp_path))
    rundir.write_config(Config(eval_every=eval_every), paths)
    for folder in (paths.checkpoints, paths.export):
        (tmp_path / folder / 'best').mkdir(parents=True)
    entries = rundir.old_run_entries(paths)
    best = [e for e in entries if e.endswith('best')]
    assert best == ([paths.checkpoints + '/best', paths.export + '/best'] if removed else [])
