"""Reliability: SIGKILL and resume, SIGINT, corrupted checkpoints, refusals; and what a
resume may change (Adam's settings; the batch size or seed at an epoch boundary only),
what it checks without config.json, and the stale export it replaces."""
import json
import shutil
import signal

import numpy as onp
import pytest

from conftest import (FINAL_LINE, SEEDED_RUN, SYNTHETIC, TINY, assert_one_line_error,
                      rehash_checkpoint, run_cli, snapshot)
from gluon_dcgan.errors import UserError
from gluon_dcgan.train.fit import INTERRUPTED, _check_same_images
from live import LiveRun, killed_and_resumed

RUN = ['--data', 'synthetic', '--limit', '96', '--batch-size', '16', '--epochs', '3',
       '--n-G', '16', '--n-D', '16', '--ctx', 'cpu', '--no-progress', '--seed', '11']


def _params(out):
    from mxnet import nd
    loaded = nd.load(str(out / 'export' / 'generator-0000.params'))
    return {k: v.asnumpy() for k, v in loaded.items()}


# Many short batches, so that the epoch a signal must land in lasts seconds on any machine;
# its bar, on a terminal, shows when the first batch is done.
LONG_EPOCH = ['--data', 'synthetic', '--limit', '2048', '--batch-size', '4', '--epochs', '1',
              '--n-G', '8', '--n-D', '8', '--ctx', 'cpu', '--seed', '5']


def _checkpoints(out):
    folder = out / 'checkpoints'
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('ckpt')) \
        if folder.exists() else []


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    # Killed as soon as training starts (epoch 1), then as soon as epoch 1's and
    # epoch 2's checkpoints exist (during the epoch-end work or the next epoch).
    ref, out = killed_and_resumed(RUN, tmp_path)
    ref_params, params = _params(ref), _params(out)
    assert ref_params.keys() == params.keys()
    for k in ref_params:
        assert onp.abs(ref_params[k] - params[k]).max() <= 1e-6, k
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]
    ref_rows = [json.loads(l) for l in (ref / 'metrics.jsonl').read_text().splitlines()]
    assert [r['loss_G'] for r in rows] == [r['loss_G'] for r in ref_rows]


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_saves_a_checkpoint_and_resume_finishes(tmp_path, signum):
    out = tmp_path / 'run'
    run = LiveRun(LONG_EPOCH + ['--out-dir', out], terminal=True)
    run.wait_for_line('training epochs 1-1 on 2048 images, 512 batches per epoch')
    run.wait_for_batches(1)  # inside the loop: the line comes before its signal handling
    run.send(signum)
    code, _, err = run.finish()
    assert code == 128 + signum, err
    assert 'Traceback' not in err
    assert err.strip().splitlines()[-1].startswith('interrupted: saved ') and '--resume' in err
    (ckpt,) = _checkpoints(out)
    assert ckpt.startswith('ckpt-E0000-B') and not ckpt.endswith('B000000')  # mid-epoch
    assert not (out / 'export').exists()  # nothing that looks finished
    if signum == signal.SIGTERM:
        return  # finishing the epoch is the same for both signals: checked once, for SIGINT
    proc = run_cli(LONG_EPOCH + ['--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert f'from batch {int(ckpt[-6:]) + 1}' in proc.stderr
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1]
    assert (out / 'export' / 'generator.onnx').exists()


@pytest.mark.slow
def test_a_signal_during_the_export_is_reported_truthfully_and_resume_finishes(tmp_path):
    out = tmp_path / 'run'
    # 128 wide: 14 M weights, whose export (ONNX conversion and check) lasts about 3.7 s
    # on the 2-core development machine: the window the signal must land in.
    run = LiveRun(RUN + ['--epochs', '1', '--n-G', '128', '--out-dir', out])
    run.wait_for(lambda: out.exists() and any(p.name.startswith('.export.partial-')
                                              for p in out.iterdir()), 'the export to start')
    run.send(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130 and 'Traceback' not in err, err
    assert err.strip().splitlines()[-1] == INTERRUPTED['finish']
    assert not any(p.name.startswith('.export') for p in out.iterdir())  # cleaned up
    assert not (out / 'export').exists()
    proc = run_cli(RUN + ['--epochs', '1', '--n-G', '128', '--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert FINAL_LINE.match(proc.stdout.strip().splitlines()[-1])
    assert (out / 'export' / 'generator.onnx').exists()


@pytest.mark.cli
def test_corrupted_checkpoint_falls_back_to_the_previous_one(tmp_path, main_in_process):
    out = tmp_path / 'run'
    run = RUN[:RUN.index('--epochs')] + ['--epochs', '2'] + RUN[RUN.index('--epochs') + 2:]
    assert main_in_process(run + ['--out-dir', str(out)]).returncode == 0
    newest = out / 'checkpoints' / _checkpoints(out)[-1]
    data = (newest / 'net_G.params').read_bytes()
    (newest / 'net_G.params').write_bytes(data[:len(data) // 2])  # truncated
    proc = main_in_process(run[:-2] + ['--seed', '11', '--epochs', '3', '--out-dir', str(out),
                                       '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert str(newest) in proc.stderr and 'damaged' in proc.stderr
    assert 'ckpt-E0001-B000000' in proc.stderr  # resumed from the previous one
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]


@pytest.mark.cli
def test_refusals(tmp_path, tiny_run, main_in_process):
    out, _ = tiny_run  # in this process (conftest.main_in_process): nothing trains
    proc = main_in_process(['--data', 'synthetic', '--limit', '64', '--out-dir', str(out)])
    assert_one_line_error(proc, contains='already holds a run')
    proc = main_in_process(['--data', 'synthetic', '--limit', '64', '--latent-dim', '50',
                            '--n-G', '32', '--out-dir', str(out), '--resume'])
    line = assert_one_line_error(proc, contains='different model')
    assert 'latent_dim' in line and 'n_G' in line
    proc = main_in_process(TINY + ['--d-input-norm', 'none', '--out-dir', str(out), '--resume'])
    line = assert_one_line_error(proc, contains='different model')
    assert "d_input_norm 'batchnorm' -> 'none'" in line
    proc = main_in_process(TINY + ['--out-dir', str(out), '--resume'])  # its own settings
    assert proc.returncode == 0 and 'already finished' in proc.stderr


@pytest.mark.unit
def test_nan_loss_stops_with_epoch_and_batch():
    from mxnet import np

    from gluon_dcgan.train.loop import Diverged, EpochSums
    sums = EpochSums(epoch=4)
    with pytest.raises(Diverged) as err:  # read one batch behind: when batch 3 is added
        sums.add(0, [np.array(1.5)], [np.array(2.0)], 8)
        sums.add(1, [np.array(float('nan'))], [np.array(10.98902416)], 8)
        sums.add(2, [np.array(1.0)], [np.array(float('inf'))], 8)
    # rounded like the epoch lines, not float32's 10.98902416229248
    assert 'loss_D nan, loss_G 10.989 at epoch 4, batch 2' in str(err.value)
    assert sums.loss_D == 1.5 and sums.examples == 8  # only the good batch was counted


def _last_line_error(proc, code, contains):
    """A run that fails while training: progress lines, then one error line, no traceback."""
    assert proc.returncode == code and 'Traceback' not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and contains in last, last
    assert sum(l.startswith('error: ') for l in proc.stderr.splitlines()) == 1
    return last


@pytest.mark.cli
def test_diverging_run_exits_3_with_one_line_and_no_export(tmp_path, main_in_process):
    out = tmp_path / 'run'
    proc = main_in_process(RUN[:RUN.index('--epochs')] + ['--epochs', '3', '--lr', '1e38'] +
                           RUN[RUN.index('--epochs') + 2:] + ['--out-dir', str(out)])
    line = _last_line_error(proc, code=3, contains='training diverged')
    assert 'epoch 1, batch' in line
    assert not _checkpoints(out) and 'no checkpoint was saved yet' in line  # not "kept"
    assert not (out / 'export').exists()


@pytest.mark.cli
def test_diverging_after_a_checkpoint_names_the_checkpoint_kept(tmp_path, main_in_process):
    out = tmp_path / 'run'
    assert main_in_process(RUN + ['--epochs', '1', '--out-dir', str(out)]).returncode == 0
    proc = main_in_process(RUN + ['--epochs', '2', '--lr', '1e38', '--out-dir', str(out),
                                  '--resume'])
    line = _last_line_error(proc, code=3, contains='training diverged')
    assert 'epoch 2, batch' in line and 'ckpt-E0001-B000000 is kept' in line
    assert _checkpoints(out) == ['ckpt-E0001-B000000']



# Two devices: the Trainers update on a local kvstore, where Adam's moments live.
TWO = ['--data', 'synthetic', '--limit', '64', '--batch-size', '16', '--n-G', '16', '--n-D', '16',
       '--no-progress', '--seed', '11']


def _resumed_from_epoch_1(proc):
    assert proc.returncode == 0, proc.stderr
    assert 'damaged' not in proc.stderr and 'training epochs 2-2' in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_two_device_run_resumes_exactly(tmp_path):
    """Fresh processes: in one pytest process, a two-device run that follows another can
    end with other BatchNorm running statistics in net_D (its weights and Adam agree)."""
    from mxnet import nd, util
    ref, out = tmp_path / 'ref', tmp_path / 'two'
    two = TWO + ['--ctx', 'cpu:0,1']
    assert run_cli(two + ['--epochs', '2', '--out-dir', str(ref)]).returncode == 0
    assert run_cli(two + ['--epochs', '1', '--out-dir', str(out)]).returncode == 0
    _resumed_from_epoch_1(run_cli(two + ['--epochs', '2', '--out-dir', str(out), '--resume']))
    # Weights and Adam's moments of epoch 2's checkpoint, by their names in the nets.
    for name in ('net_G', 'net_D', 'adam_G', 'adam_D'):
        with util.np_shape(True):
            want, got = (nd.load(str(run / 'checkpoints' / 'ckpt-E0002-B000000' / f'{name}.params'))
                         for run in (ref, out))
        assert want.keys() == got.keys() and len(want) > 1, name
        for k in want:
            assert onp.array_equal(want[k].asnumpy(), got[k].asnumpy()), (name, k)
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    ref_rows = [json.loads(l) for l in (ref / 'metrics.jsonl').read_text().splitlines()]
    assert [r['loss_G'] for r in rows] == [r['loss_G'] for r in ref_rows]


@pytest.mark.cli
def test_two_device_checkpoints_resume_on_one_device_and_back(tmp_path, main_in_process):
    """The moments each way round are checked in test_scale.py."""
    for first, then in (('cpu:0,1', 'cpu'), ('cpu', 'cpu:0,1')):
        out = tmp_path / first
        assert main_in_process(TWO + ['--ctx', first, '--epochs', '1', '--out-dir', out]
                               ).returncode == 0
        _resumed_from_epoch_1(main_in_process(TWO + ['--ctx', then, '--epochs', '2',
                                                     '--out-dir', out, '--resume']))


@pytest.mark.cli
def test_resume_on_an_empty_folder_says_it_starts_a_new_run(tmp_path, main_in_process):
    proc = main_in_process(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(tmp_path / 'new'),
                                         '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert 'holds no run yet; --resume starts a new one' in proc.stderr


@pytest.mark.cli
def test_resume_with_a_new_lr_uses_it_and_says_so(seeded_copy, main_in_process):
    proc = main_in_process(SEEDED_RUN + ['--epochs', '3', '--lr', '0.001', '--beta1', '0.6',
                                         '--out-dir', str(seeded_copy), '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert ('resuming with new Adam settings from here on: --lr 0.005 -> 0.001, '
            '--beta1 0.5 -> 0.6') in proc.stderr
    adam = json.loads((seeded_copy / 'checkpoints' / 'ckpt-E0003-B000000' / 'adam_G.json')
                      .read_text())
    assert adam['learning_rate'] == 0.001 and adam['beta1'] == 0.6


@pytest.mark.cli
def test_a_new_batch_size_is_allowed_at_an_epoch_boundary(seeded_copy, main_in_process):
    proc = main_in_process(SEEDED_RUN + ['--epochs', '3', '--batch-size', '8', '--out-dir',
                                         str(seeded_copy), '--resume'])
    assert proc.returncode == 0, proc.stderr
    assert 'training epochs 3-3 on 64 images, 8 batches per epoch' in proc.stderr


def _mid_epoch_copy(out):
    """Turn the newest checkpoint into one taken after 2 batches of epoch 3."""
    src = out / 'checkpoints' / 'ckpt-E0002-B000000'
    dst = out / 'checkpoints' / 'ckpt-E0002-B000002'
    shutil.copytree(src, dst)
    state = json.loads((dst / 'state.json').read_text())
    state.update(batch=2, partial={'batch': 2, 'sum_D': 40.0, 'sum_G': 70.0, 'examples': 32,
                                   'seconds': 1.0})
    (dst / 'state.json').write_text(json.dumps(state))
    rehash_checkpoint(dst)


@pytest.mark.cli
@pytest.mark.parametrize('flag, value, text', [('--batch-size', '8', '--batch-size 16 -> 8'),
                                               ('--seed', '12', '--seed 11 -> 12')])
def test_mid_epoch_resume_refuses_a_new_batch_size_or_seed(seeded_copy, flag, value, text,
                                                          main_in_process):
    _mid_epoch_copy(seeded_copy)
    before = snapshot(seeded_copy)
    args = SEEDED_RUN + ['--epochs', '3', '--out-dir', str(seeded_copy), '--resume', flag, value]
    line = assert_one_line_error(main_in_process(args), contains='in the middle of epoch 3')
    assert text in line
    assert snapshot(seeded_copy) == before


@pytest.mark.cli
def test_a_mid_epoch_resume_on_changed_data_is_refused():
    notes = []
    with pytest.raises(UserError, match='32 -> 40 images'):
        _check_same_images({'epoch': 1, 'batch': 3, 'images': 32}, 40, notes.append)
    _check_same_images({'epoch': 1, 'batch': 0, 'images': 32}, 40, notes.append)
    _check_same_images({'epoch': 1, 'batch': 3}, 40, notes.append)  # a checkpoint from before
    assert notes == ['note: the data changed since the checkpoint (32 -> 40 images)']


@pytest.mark.cli
def test_resume_without_config_json_checks_the_checkpoint_config(seeded_copy, main_in_process):
    (seeded_copy / 'config.json').unlink()
    args = SEEDED_RUN + ['--epochs', '3', '--out-dir', str(seeded_copy), '--resume']
    line = assert_one_line_error(main_in_process(args + ['--n-G', '32']),
                                 contains='different model')
    assert 'n_G 16 -> 32' in line
    proc = run_cli(args)
    assert proc.returncode == 0, proc.stderr
    assert (seeded_copy / 'config.json').exists() and \
        'ckpt-E0003-B000000' in _checkpoints(seeded_copy)


@pytest.mark.cli
def test_resume_replaces_an_export_older_than_the_last_checkpoint(one_epoch_copy):
    proc = run_cli(SYNTHETIC + ['--resume', '--out-dir', str(one_epoch_copy)])
    assert proc.returncode == 0 and 'nothing to do' in proc.stderr, proc.stderr
    manifest = one_epoch_copy / 'export' / 'manifest.json'
    assert json.loads(manifest.read_text())['epochs_trained'] == 1
    stale = json.loads(manifest.read_text())
    del stale['epochs_trained']  # as an export left by an interrupted longer run
    manifest.write_text(json.dumps(stale))
    proc = run_cli(SYNTHETIC + ['--resume', '--out-dir', str(one_epoch_copy)])
    assert proc.returncode == 0, proc.stderr
    assert 'nothing to do' not in proc.stderr
    assert json.loads(manifest.read_text())['epochs_trained'] == 1
