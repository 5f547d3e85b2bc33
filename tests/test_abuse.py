"""Hostile use found by review after issue #10's list: links, foreign files, stale exports.

Each test checks the exit code and one line, and that the user's files are intact.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import assert_one_line_error, finished_run, run_cli

from gluon_dcgan.errors import UserError
from gluon_dcgan.export.mxnet_export import check_target
from gluon_dcgan.train import rundir
from gluon_dcgan.train.fit import _check_same_images

pytestmark = pytest.mark.cli  # the real command and runs of it, end to end

RUN = ['--data', 'synthetic', '--limit', '32', '--batch-size', '16', '--n-G', '8', '--n-D', '8',
       '--ctx', 'cpu', '--no-progress', '--epochs', '1']


def _tree(folder):
    """{relative path: bytes} of every file under `folder` (the lock aside)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name != '.lock':
                path = os.path.join(root, name)
                out[os.path.relpath(path, folder)] = open(path, 'rb').read()
    return out


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    return finished_run(tmp_path_factory, RUN)


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / 'run')
    return tmp_path / 'run'


# ---- export targets: links and folders of other things are never replaced -----------

def test_an_export_target_that_is_a_link_or_holds_other_folders_is_refused(finished, tmp_path):
    mine = tmp_path / 'mine'
    (mine / 'sub').mkdir(parents=True)
    (mine / 'sub' / 'precious.txt').write_text('keep')
    os.symlink(mine, tmp_path / 'link')
    with pytest.raises(UserError, match='symbolic link'):
        check_target(str(tmp_path / 'link'))
    with pytest.raises(UserError, match=r'not part of an export \(sub\)'):
        check_target(str(mine))
    both = tmp_path / 'both'  # an export with a sub-export (export/best/) may be replaced
    shutil.copytree(finished / 'export', both)
    shutil.copytree(finished / 'export', both / 'best')
    check_target(str(both))
    os.symlink(mine / 'sub', both / 'linked')  # but not with a link to a user's folder
    with pytest.raises(UserError, match=r'\(linked\)'):
        check_target(str(both))


def test_export_into_a_symlinked_folder_deletes_nothing(finished, tmp_path):
    mine = tmp_path / 'u'
    (mine / 'sub').mkdir(parents=True)
    (mine / 'sub' / 'precious.txt').write_text('keep')
    os.symlink(mine, tmp_path / 'link')
    assert_one_line_error(run_cli(['export', '--run', str(finished), '--out',
                                   str(tmp_path / 'link')]), contains='symbolic link')
    assert (mine / 'sub' / 'precious.txt').read_text() == 'keep'


def test_a_long_export_name_fits(finished, tmp_path):
    out = tmp_path / ('e' * 240)
    proc = run_cli(['export', '--run', str(finished), '--out', str(out)])
    assert proc.returncode == 0, proc.stderr
    assert (out / 'manifest.json').exists()
    assert sorted(os.listdir(tmp_path)) == [out.name]  # no temporary folder left


def test_export_into_a_run_folder_in_use_is_refused(finished, tmp_path):
    other = tmp_path / 'other'
    shutil.copytree(finished, other)
    holder = subprocess.Popen(  # holds other/ as a training run would, until stdin closes
        [sys.executable, '-c', 'import sys; from gluon_dcgan.train import rundir; '
         f'rundir.lock({str(other)!r}); print("held", flush=True); sys.stdin.read()'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        before = _tree(other)
        assert_one_line_error(run_cli(['export', '--run', str(finished), '--out',
                                       str(other / 'export')]),
                              contains=f'in use by another gluon_dcgan process (PID {holder.pid})')
        assert _tree(other) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


# ---- run folders: only what a run wrote is removed; wrong kinds refused first --------

def test_overwrite_keeps_the_users_files_inside_the_run_folders(run_copy):
    (run_copy / 'samples' / 'photo.png').write_bytes(b'mine')
    (run_copy / 'checkpoints' / 'ckpt-keep').mkdir()
    (run_copy / 'export' / 'notes.txt').write_text('mine')
    before = _tree(run_copy)
    line = assert_one_line_error(run_cli(RUN + ['--out-dir', str(run_copy), '--overwrite']),
                                 contains='not part of an export (notes.txt)')
    assert 'move them out of the run folder' in line
    assert _tree(run_copy) == before
    (run_copy / 'export' / 'notes.txt').unlink()
    proc = run_cli(RUN + ['--out-dir', str(run_copy), '--overwrite'])
    assert proc.returncode == 0, proc.stderr
    assert (run_copy / 'samples' / 'photo.png').read_bytes() == b'mine'
    assert (run_copy / 'checkpoints' / 'ckpt-keep').is_dir()
    assert (run_copy / 'samples' / 'epoch_001.png').exists()


def test_a_config_json_of_someone_else_is_never_replaced(tmp_path):
    proj = tmp_path / 'proj'
    proj.mkdir()
    (proj / 'config.json').write_text('{"project": "my app"}')
    for extra in ([], ['--overwrite'], ['--resume']):
        assert_one_line_error(run_cli(RUN + ['--out-dir', str(proj)] + extra),
                              contains='is not the config of a gluon_dcgan run')
        assert (proj / 'config.json').read_text() == '{"project": "my app"}'
        assert sorted(os.listdir(proj)) == ['config.json']  # not even the lock stays


@pytest.mark.parametrize('name, make', [
    ('metrics.jsonl', lambda p: p.mkdir()),
    ('samples', lambda p: p.write_text('a file')),
    ('export', lambda p: os.symlink(p.parent.parent, p)),
])
def test_a_wrong_kind_of_entry_is_refused_before_anything_changes(run_copy, name, make):
    target = run_copy / name
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    make(target)
    before = _tree(run_copy) if name != 'export' else None
    config = (run_copy / 'config.json').read_bytes()
    assert_one_line_error(run_cli(RUN + ['--epochs', '2', '--resume', '--out-dir',
                                         str(run_copy)]), contains=str(target))
    assert (run_copy / 'config.json').read_bytes() == config
    if before is not None:
        assert _tree(run_copy) == before


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path):
    (tmp_path / 'important.txt').write_text('mine')
    (tmp_path / 'run').mkdir()
    os.symlink(tmp_path / 'important.txt', tmp_path / 'run' / '.lock')
    with pytest.raises(UserError, match='symbolic link'):
        rundir.lock(str(tmp_path / 'run'))
    assert (tmp_path / 'important.txt').read_text() == 'mine'


def test_a_start_refused_after_the_lock_leaves_no_new_folder(tmp_path):
    out = tmp_path / 'new' / 'run'
    assert_one_line_error(run_cli(RUN + ['--batch-size', '64', '--out-dir', str(out)]),
                          contains='--batch-size')
    assert not out.exists()


def test_an_out_dir_inside_the_data_folder_is_refused(tmp_path):
    from PIL import Image
    cls = tmp_path / 'sprites' / 'all'
    cls.mkdir(parents=True)
    for i in range(4):
        Image.new('RGB', (8, 8), (i, i, i)).save(cls / f'{i}.png')
    assert_one_line_error(run_cli(RUN + ['--data', str(tmp_path / 'sprites'), '--out-dir',
                                         str(tmp_path / 'sprites' / 'run')]),
                          contains='inside the --data folder')
    assert sorted(os.listdir(tmp_path / 'sprites')) == ['all']


def test_a_mid_epoch_resume_on_changed_data_is_refused():
    notes = []
    with pytest.raises(UserError, match='32 -> 40 images'):
        _check_same_images({'epoch': 1, 'batch': 3, 'images': 32}, 40, notes.append)
    _check_same_images({'epoch': 1, 'batch': 0, 'images': 32}, 40, notes.append)
    _check_same_images({'epoch': 1, 'batch': 3}, 40, notes.append)  # a checkpoint from before
    assert notes == ['note: the data changed since the checkpoint (32 -> 40 images)']


# ---- a stale export is not taken for a finished one ----------------------------------

def test_resume_replaces_an_export_older_than_the_last_checkpoint(run_copy):
    proc = run_cli(RUN + ['--resume', '--out-dir', str(run_copy)])
    assert proc.returncode == 0 and 'nothing to do' in proc.stderr, proc.stderr
    manifest = run_copy / 'export' / 'manifest.json'
    assert json.loads(manifest.read_text())['epochs_trained'] == 1
    stale = json.loads(manifest.read_text())
    del stale['epochs_trained']  # as an export left by an interrupted longer run
    manifest.write_text(json.dumps(stale))
    proc = run_cli(RUN + ['--resume', '--out-dir', str(run_copy)])
    assert proc.returncode == 0, proc.stderr
    assert 'nothing to do' not in proc.stderr
    assert json.loads(manifest.read_text())['epochs_trained'] == 1


# ---- environment variables MXNet would abort or hang on ---------------------------

@pytest.mark.parametrize('name, value', [('OMP_NUM_THREADS', 'abc'),
                                         ('MXNET_ENGINE_TYPE', 'Bogus'),
                                         ('MXNET_CPU_WORKER_NTHREADS', '-1')])
def test_a_bad_mxnet_environment_is_one_line(tmp_path, name, value):
    proc = run_cli(RUN + ['--out-dir', str(tmp_path / 'run')], env={name: value}, timeout=120)
    assert_one_line_error(proc, contains=f'{name}={value!r}')
    assert not (tmp_path / 'run').exists()


def test_generate_into_a_folder_named_like_a_png_is_one_line(finished, tmp_path):
    (tmp_path / 'grid.png').mkdir()
    line = assert_one_line_error(run_cli(['generate', '--export', str(finished / 'export'),
                                          '--num', '4', '--output', str(tmp_path / 'grid.png')]),
                                 contains='is a folder')
    assert '.tmp' not in line and os.listdir(tmp_path / 'grid.png') == []


def test_inception_params_that_is_a_folder_is_named_so(tmp_path):
    assert_one_line_error(run_cli(RUN + ['--fid-every', '1', '--inception-params', str(tmp_path),
                                         '--out-dir', str(tmp_path / 'run')]),
                          contains='is a folder')
    assert not (tmp_path / 'run').exists()
