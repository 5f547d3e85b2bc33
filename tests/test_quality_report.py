"""Unit: the offline quality report (EfficientNet-Lite0 features) and its files."""
import json
import os

import numpy as onp
import pytest

from gluon_dcgan.data.synthetic import make_sprites
from gluon_dcgan.quality import report as quality


@pytest.mark.unit
def test_the_report_compares_with_the_real_floor_and_writes_its_three_files(tmp_path):
    real, fake = make_sprites(48, seed=0), make_sprites(48, seed=1)
    noise = onp.random.RandomState(0).randint(0, 256, real.shape, dtype=onp.uint8)
    cache = str(tmp_path / 'cache')
    report, details = quality.score(fake, real, 0, cache)
    worse, _ = quality.score(noise, real, 0, cache)
    # Sprites drawn alike score near the floor; noise is far from it, on every measure.
    assert worse['fake_vs_real']['kid']['mean'] > 10 * report['fake_vs_real']['kid']['mean']
    assert worse['fake_vs_real']['coverage'] < report['fake_vs_real']['coverage']
    assert worse['fake_vs_real']['one_nn_accuracy'] > 0.9
    assert report['real_vs_real']['rows'] == {'fake': 24, 'real': 24}
    assert len(details['neighbours']) == 8 and len(details['fake_nearest']) == 48
    paths = quality.write(str(tmp_path), report, details, fake, real)
    assert [os.path.basename(p) for p in paths] == list(quality.FILES)
    assert json.load(open(paths[0]))['memorisation']['training_half'] == 24
    assert 'KID x1000' in open(paths[1]).read() and 'not FIDs' in open(paths[1]).read()
    assert open(paths[2], 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    line = quality.summary_line(report)
    assert line.startswith('KID (EfficientNet-Lite0) x1000 ') and '(48 generated, 48 real' in line


@pytest.mark.unit
def test_real_features_are_cached_and_a_damaged_cache_is_recomputed(tmp_path):
    real = make_sprites(8, seed=0)
    first = quality.real_features(real, str(tmp_path), None, None)
    (cached,) = tmp_path.glob('real-*.npz')
    stamp = cached.stat().st_mtime_ns
    assert onp.array_equal(quality.real_features(real, str(tmp_path), None, None), first)
    assert cached.stat().st_mtime_ns == stamp  # read, not written again
    cached.write_bytes(b'PK\x03\x04 not an archive')
    assert onp.array_equal(quality.real_features(real, str(tmp_path), None, None), first)


@pytest.mark.cli
def test_evaluate_writes_the_report_beside_the_export_and_keeps_a_users_file(
        tiny_run, tmp_path, main_in_process):
    import shutil
    run = tmp_path / 'run'
    shutil.copytree(tiny_run[0] / 'export', run / 'export')
    args = ['evaluate', '--export', str(run / 'export'), '--data', 'synthetic', '--limit', '64',
            '--num', '24', '--data-root', str(tmp_path / 'cache'), '--no-progress']
    proc = main_in_process(args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith('KID (EfficientNet-Lite0) x1000 ')
    assert '(24 generated, 24 real images)' in proc.stdout
    assert all((run / name).is_file() for name in quality.FILES)
    assert main_in_process(args).returncode == 0  # its own files: replaced
    (run / 'quality.md').write_text('my notes')
    proc = main_in_process(args)
    assert proc.returncode == 2 and 'was not written by evaluate' in proc.stderr
    assert (run / 'quality.md').read_text() == 'my notes'
