"""Files that crashed instead of being refused (issue #20, items 7, 8, 9, 15 and 17).

Each damaged file the tool reads back ends in one line, or marks its checkpoint damaged
so that the older one is used, or (a cache) is recomputed: a .npy header declaring 2**40
floats, JSON nested 200,000 deep. Temporary files of killed writers are removed at the
next start, a live writer's stay; and a --data folder inside the run folder is refused.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as onp
import pytest

from conftest import DAMAGE_RUN, assert_one_line_error, run_cli
from gluon_dcgan.files import HOST

RUN = DAMAGE_RUN
E1, E2 = 'ckpt-E0001-B000000', 'ckpt-E0002-B000000'
DEEP = 200_000  # past Python's recursion limit, far past files.MAX_JSON_DEPTH


def write_deep_json(path):
    """A JSON list nested DEEP levels: json.load raised RecursionError on it."""
    with open(path, 'w') as f:
        f.write('[' * DEEP + ']' * DEEP)


def write_npy_declaring(path, shape, descr='<f4'):
    """A .npy whose header declares `shape` (2**40 floats: 4 TiB) over 64 bytes of data."""
    from numpy.lib import format as npy
    with open(path, 'wb') as f:
        npy.write_array_header_1_0(f, {'descr': descr, 'fortran_order': False,
                                       'shape': shape})
        f.write(b'\0' * 64)


HUGE = (1 << 20, 1 << 20)


def _rehash(ckpt):
    names = json.loads((ckpt / 'manifest.json').read_text())
    (ckpt / 'manifest.json').write_text(json.dumps(
        {n: hashlib.sha256((ckpt / n).read_bytes()).hexdigest() for n in names}))


def _huge_noise(ckpt):
    write_npy_declaring(ckpt / 'fixed_noise.npy', HUGE)
    _rehash(ckpt)


def _deep_manifest(ckpt):
    write_deep_json(ckpt / 'manifest.json')


CHECKPOINT_DAMAGE = {'noise of 2**40 floats': (_huge_noise, 'fixed_noise.npy'),
                     'manifest 200000 deep': (_deep_manifest, 'manifest.json')}


def _damaged_warning(proc, ckpt, why):
    lines = [l for l in proc.stderr.splitlines() if ' is damaged (' in l]
    assert len(lines) == 1 and lines[0].startswith(f'warning: checkpoint {ckpt} is damaged ('), \
        proc.stderr
    assert why in lines[0] and len(lines[0]) < 300, lines[0]


@pytest.mark.cli
@pytest.mark.parametrize('case', sorted(CHECKPOINT_DAMAGE))
def test_resume_sets_the_damaged_checkpoint_aside_and_uses_the_older_one(run_copy, case,
                                                                           main_in_process):
    # Before: MemoryError (noise) and RecursionError (manifest) tracebacks, nothing set aside.
    damage, why = CHECKPOINT_DAMAGE[case]
    ckpts = run_copy / 'checkpoints'
    damage(ckpts / E2)
    damaged = {n: (ckpts / E2 / n).read_bytes() for n in os.listdir(ckpts / E2)}
    proc = main_in_process(RUN + ['--epochs', '3', '--out-dir', run_copy, '--resume'])
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr, proc.stderr
    _damaged_warning(proc, ckpts / E2, why)
    assert f'resuming from {ckpts / E1}\n' in proc.stderr
    kept = ckpts / ('damaged-' + E2)
    assert {n: (kept / n).read_bytes() for n in os.listdir(kept)} == damaged
    rows = [json.loads(l) for l in (run_copy / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2, 3]


@pytest.mark.cli
@pytest.mark.parametrize('case', sorted(CHECKPOINT_DAMAGE))
def test_export_run_uses_the_older_checkpoint(run_copy, tmp_path, case, main_in_process):
    damage, why = CHECKPOINT_DAMAGE[case]
    damage(run_copy / 'checkpoints' / E2)
    proc = main_in_process(['export', '--run', run_copy, '--out', tmp_path / 'exp'])
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr, proc.stderr
    _damaged_warning(proc, run_copy / 'checkpoints' / E2, why)
    assert f'exported {run_copy / "checkpoints" / E1} to' in proc.stderr
    assert json.loads((tmp_path / 'exp' / 'manifest.json').read_text())['epochs_trained'] == 1


@pytest.mark.cli
def test_a_deep_config_json_is_one_line_for_train_and_export(run_copy, tmp_path,
                                                             main_in_process):
    # Before: RecursionError tracebacks from both commands.
    write_deep_json(run_copy / 'config.json')
    assert_one_line_error(main_in_process(RUN + ['--out-dir', run_copy]),
                          contains='already holds a run')
    assert_one_line_error(main_in_process(['export', '--run', run_copy, '--out', tmp_path / 'x']),
                          contains='config.json is damaged')
    assert not (tmp_path / 'x').exists()


@pytest.mark.unit
def test_a_deep_config_json_alone_is_a_folder_of_the_users(tmp_path, main_in_process):
    write_deep_json(tmp_path / 'config.json')
    before = (tmp_path / 'config.json').read_bytes()
    proc = main_in_process(RUN + ['--epochs', '1', '--out-dir', tmp_path])
    assert_one_line_error(proc, contains='is not the config of a gluon_dcgan run')
    assert sorted(os.listdir(tmp_path)) == ['config.json']
    assert (tmp_path / 'config.json').read_bytes() == before


def _image_folder(root, count=32):
    from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
    return write_image_folder(make_sprites(count, seed=3), str(root))


def _decode_cache(data_root):
    [meta] = (data_root / 'decoded').glob('images-*.json')
    return meta, meta.with_suffix('.npy')


@pytest.mark.cli  # trains twice, in this process
@pytest.mark.parametrize('damage', ['json 200000 deep', 'array of 2**40 images'])
def test_train_rebuilds_a_damaged_decode_cache(tmp_path, damage, main_in_process):
    # The entry point `train --data FOLDER`: before, RecursionError and MemoryError tracebacks.
    data, cache = _image_folder(tmp_path / 'images'), tmp_path / 'cache'
    args = ['--data', data, '--data-root', cache, '--batch-size', '16', '--n-G', '8',
            '--n-D', '8', '--epochs', '1', '--no-progress', '--ctx', 'cpu']
    assert main_in_process(args + ['--out-dir', tmp_path / 'a']).returncode == 0
    meta, array = _decode_cache(cache)
    good = meta.read_bytes(), array.read_bytes()
    if damage.startswith('json'):
        write_deep_json(meta)
    else:
        write_npy_declaring(array, (1 << 40, 64, 64, 3), '|u1')
    proc = main_in_process(args + ['--out-dir', tmp_path / 'b'])
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr, proc.stderr
    assert (meta.read_bytes(), array.read_bytes()) == good  # decoded again, and rewritten


@pytest.mark.cli
def test_evaluate_rebuilds_a_deep_decode_cache_json(two_epochs, tmp_path, main_in_process):
    # evaluate decodes the real images before it loads Inception: weights that are no
    # weights end it after the decode cache is read and written, with their own one line.
    data, cache = _image_folder(tmp_path / 'images', 4), tmp_path / 'cache'
    (tmp_path / 'no.params').write_bytes(b'not weights')
    args = ['evaluate', '--export', two_epochs / 'export', '--num', '4', '--data', data,
            '--data-root', cache, '--inception-params', tmp_path / 'no.params', '--no-progress']
    first = assert_one_line_error(main_in_process(args), contains='--inception-params')
    meta, _ = _decode_cache(cache)
    good = meta.read_bytes()
    write_deep_json(meta)
    assert assert_one_line_error(main_in_process(args)) == first  # not a RecursionError
    assert meta.read_bytes() == good


def _dead_pid():
    """A PID whose process has gone: started, waited for."""
    proc = subprocess.Popen([sys.executable, '-c', ''])
    proc.wait()
    return proc.pid


@pytest.mark.cli
@pytest.mark.parametrize('start', ['--overwrite', '--resume'])
def test_a_killed_writers_temporary_files_go_at_the_next_start(run_copy, start):
    # Before: a sample the new run does not write again (epoch 9 of a longer run, killed
    # while writing it) left samples/epoch_009.png.tmp-... for good, even with --overwrite.
    dead, live = _dead_pid(), os.getpid()  # the CLI below runs in a child: this one is live
    samples = run_copy / 'samples'
    planted = {'dead': [samples / f'epoch_009.png.tmp-{HOST}-{dead}-abcdef12',
                        run_copy / f'training.png.tmp-{HOST}-{dead}-abcdef12'],
               'kept': [samples / f'epoch_009.png.tmp-{HOST}-{live}-abcdef12',
                        run_copy / f'progress.gif.tmp-{HOST}-{live}-abcdef12',
                        # another host's (its PIDs are not ours to judge), and a user's file
                        samples / f'epoch_009.png.tmp-{"f" * 8}-{dead}-abcdef12',
                        samples / 'notes.tmp-mine']}
    for path in planted['dead'] + planted['kept']:
        path.write_bytes(b'partial')
    proc = run_cli(RUN + ['--epochs', '3', '--out-dir', str(run_copy), start])
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in planted['dead'] if p.exists()] == []
    assert all(p.read_bytes() == b'partial' for p in planted['kept'])


@pytest.mark.unit
@pytest.mark.parametrize('inside', ['samples', 'samples/sub', 'link to samples'])
def test_a_data_folder_inside_the_run_folder_is_refused(tmp_path, inside, main_in_process):
    # Before: accepted; the run wrote samples/epoch_001.png among the images, and a resume
    # trained on it too (70 -> 71 images).
    from PIL import Image
    run = tmp_path / 'run'
    data = run / inside.replace('link to samples', 'samples')
    data.mkdir(parents=True)
    for i in range(2):
        Image.new('RGB', (64, 64)).save(data / f'photo_{i}.png')
    if inside.startswith('link'):
        (tmp_path / 'link').symlink_to(data)
        data = tmp_path / 'link'
    proc = main_in_process(['--data', data, '--batch-size', '2', '--epochs', '1',
                            '--n-G', '8', '--n-D', '8', '--ctx', 'cpu', '--no-progress',
                            '--data-root', tmp_path / 'cache', '--out-dir', run])
    assert_one_line_error(proc, contains='is inside the --out-dir')
    assert sorted(os.listdir(run)) == ['samples'] and not (tmp_path / 'cache').exists()


def _gone_pid():
    """A PID no process has now (probed downwards from the kernel's pid_max)."""
    with open('/proc/sys/kernel/pid_max') as f:
        top = int(f.read())
    for pid in range(top - 1, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:  # another user's process
            continue
    pytest.skip('no free PID found')


def _plant_temps(folder, name):
    """{'dead': [...], 'kept': [...]} temporaries of `name` in `folder`: a gone process's,
    and a live one's (this process's parent) and another host's, which must stay."""
    folder.mkdir(parents=True, exist_ok=True)
    gone = _gone_pid()
    planted = {'dead': [folder / f'{name}.tmp-{HOST}-{gone}-abcdef12'],
               'kept': [folder / f'{name}.tmp-{HOST}-{os.getppid()}-abcdef12',
                        folder / f'{name}.tmp-{"f" * 8}-{gone}-abcdef12']}
    for path in planted['dead'] + planted['kept']:
        path.write_bytes(b'partial')
    return planted


@pytest.mark.unit
def test_the_decode_cache_folder_loses_a_killed_writers_half_entry(tmp_path):
    # Before: images-KEY.npy.tmp-... of another key (the images changed since) stayed for
    # good, 20 MB each on Pokemon.
    from gluon_dcgan.config import Config
    from gluon_dcgan.data import load_images
    planted = _plant_temps(tmp_path / 'cache' / 'decoded', 'images-0123456789abcdef0123.npy')
    cfg = Config(data=_image_folder(tmp_path / 'images', 4), data_root=str(tmp_path / 'cache'),
                 batch_size=2)
    assert load_images(cfg, log=lambda m: None).shape == (4, 64, 64, 3)
    assert [p.name for p in planted['dead'] if p.exists()] == []
    assert all(p.read_bytes() == b'partial' for p in planted['kept'])


@pytest.mark.unit
def test_the_fid_cache_folder_loses_a_killed_writers_half_file(tmp_path, monkeypatch):
    from gluon_dcgan.quality import fid
    planted = _plant_temps(tmp_path / 'fid-stats', 'real-0123456789abcdef01234567.npz')
    features = onp.random.default_rng(0).normal(size=(3, fid.FEATURES)).astype(onp.float32)
    monkeypatch.setattr(fid, 'inception_features', lambda net, x, *a, **k: features)
    (tmp_path / 'weights').write_bytes(b'weights')
    fid.real_statistics(None, onp.zeros((3, 4, 4, 3), onp.uint8), str(tmp_path / 'weights'),
                        str(tmp_path / 'fid-stats'), log=lambda m: None)
    assert [p.name for p in planted['dead'] if p.exists()] == []
    assert all(p.read_bytes() == b'partial' for p in planted['kept'])


@pytest.mark.unit
@pytest.mark.parametrize('content', ['[' * DEEP + ']' * DEEP, '[1]', '{"fid": NaN}'])
def test_a_best_score_json_that_is_no_score_is_none(tmp_path, content):
    # --fid-every with a resume: score.json 200000 deep was a RecursionError traceback, and
    # a NaN best made every later score the best.
    from gluon_dcgan.train.best import saved_score
    (tmp_path / 'score.json').write_text(content)
    assert saved_score(str(tmp_path), 'fid') == (None, None)
    (tmp_path / 'score.json').write_text('{"fid": 7.5, "epoch": 2}')
    assert saved_score(str(tmp_path), 'fid') == (7.5, 'fid')
