"""Reliability: SIGKILL and resume, SIGINT, corrupted checkpoints, refusals."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as onp

from conftest import ROOT, assert_one_line_error, run_cli

RUN = ['--data', 'synthetic', '--limit', '96', '--batch-size', '16', '--epochs', '3',
       '--n-G', '16', '--n-D', '16', '--ctx', 'cpu', '--no-progress', '--seed', '11']


def _params(out):
    from mxnet import nd
    loaded = nd.load(str(out / 'export' / 'generator-0000.params'))
    return {k: v.asnumpy() for k, v in loaded.items()}


def _start(out):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'run.py')] + RUN +
                            ['--out-dir', str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc, timeout=120):
    start = time.time()
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout
        time.sleep(0.05)


def _checkpoints(out):
    folder = out / 'checkpoints'
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('ckpt')) \
        if folder.exists() else []


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    ref = tmp_path / 'ref'
    assert run_cli(RUN + ['--out-dir', str(ref)]).returncode == 0
    out = tmp_path / 'killed'
    # Kill mid-way through epoch 1, then during epoch 2, then during epoch 3.
    for killed_after in (0, 1, 2):
        proc = _start(out) if killed_after == 0 else subprocess.Popen(
            [sys.executable, os.path.join(ROOT, 'run.py')] + RUN +
            ['--out-dir', str(out), '--resume'], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: len(_checkpoints(out)) >= min(killed_after, 2) and
                  (out / 'config.json').exists() and
                  (killed_after == 0 or f'ckpt-E{killed_after:04d}-B000000' in _checkpoints(out)),
                  proc)
        time.sleep(0.7)  # somewhere inside the next epoch
        proc.kill()
        proc.wait()
    proc = run_cli(RUN + ['--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    ref_params, params = _params(ref), _params(out)
    assert ref_params.keys() == params.keys()
    for k in ref_params:
        assert onp.abs(ref_params[k] - params[k]).max() <= 1e-6, k
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]
    ref_rows = [json.loads(l) for l in (ref / 'metrics.jsonl').read_text().splitlines()]
    assert [r['loss_G'] for r in rows] == [r['loss_G'] for r in ref_rows]


def test_sigint_saves_a_checkpoint_and_exits_130_then_resume_finishes(tmp_path):
    out = tmp_path / 'run'
    proc = _start(out)
    _wait_for(lambda: 'ckpt-E0001-B000000' in _checkpoints(out), proc)
    time.sleep(0.5)  # inside epoch 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'Traceback' not in err and '--resume' in err
    assert any(not c.endswith('B000000') for c in _checkpoints(out))  # a mid-epoch one
    assert not (out / 'export').exists()  # nothing that looks finished
    proc = run_cli(RUN + ['--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]


def test_sigterm_exits_143(tmp_path):
    out = tmp_path / 'run'
    proc = _start(out)
    _wait_for(lambda: 'ckpt-E0001-B000000' in _checkpoints(out), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert any(not c.endswith('B000000') for c in _checkpoints(out))


def test_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path):
    out = tmp_path / 'run'
    run = RUN[:RUN.index('--epochs')] + ['--epochs', '2'] + RUN[RUN.index('--epochs') + 2:]
    assert run_cli(run + ['--out-dir', str(out)]).returncode == 0
    newest = out / 'checkpoints' / _checkpoints(out)[-1]
    data = (newest / 'net_G.params').read_bytes()
    (newest / 'net_G.params').write_bytes(data[:len(data) // 2])  # truncated
    proc = run_cli(run[:-2] + ['--seed', '11', '--epochs', '3', '--out-dir', str(out),
                               '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert str(newest) in proc.stderr and 'damaged' in proc.stderr
    assert 'ckpt-E0001-B000000' in proc.stderr  # resumed from the previous one
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]


def test_refusals(tmp_path, tiny_run):
    out, _ = tiny_run
    proc = run_cli(['--data', 'synthetic', '--limit', '64', '--out-dir', str(out)])
    assert_one_line_error(proc, contains='already holds a run')
    proc = run_cli(['--data', 'synthetic', '--limit', '64', '--latent-dim', '50',
                    '--n-G', '32', '--out-dir', str(out), '--resume'])
    line = assert_one_line_error(proc, contains='different model')
    assert 'latent_dim' in line and 'n_G' in line
    proc = run_cli(['--data', 'synthetic', '--limit', '64', '--batch-size', '32', '--epochs',
                    '2', '--out-dir', str(out), '--resume'])
    assert proc.returncode == 0 and 'already finished' in proc.stderr


def test_nan_loss_stops_with_epoch_and_batch():
    import pytest
    from mxnet import np
    from gluon_dcgan.errors import UserError
    from gluon_dcgan.train.loop import EpochSums
    sums = EpochSums(epoch=4)
    sums.add(0, [np.array(1.5)], [np.array(2.0)], 8)
    sums.add(1, [np.array(float('nan'))], [np.array(2.0)], 8)
    sums.add(2, [np.array(1.0)], [np.array(float('inf'))], 8)
    with pytest.raises(UserError) as err:
        sums.sync()
    assert 'epoch 4, batch 2' in str(err.value) and err.value.exit_code == 3
    assert sums.loss_D == 1.5 and sums.examples == 8  # only the good batch was counted


def test_diverging_run_exits_3_with_one_line_and_no_export(tmp_path):
    out = tmp_path / 'run'
    proc = run_cli(RUN[:RUN.index('--epochs')] + ['--epochs', '3', '--lr', '1e38'] +
                   RUN[RUN.index('--epochs') + 2:] + ['--out-dir', str(out)])
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    line = assert_one_line_error(proc, code=3, contains='diverged')
    assert 'epoch' in line and 'batch' in line
    assert not (out / 'export').exists()
