"""Run folders: one process each, --overwrite replaces only what a run wrote, and every
refusal (a folder of the user's, a wrong kind of entry, a lock, no room, no permission)
comes before anything changes.

Each test checks the exit code, the one line that explains, and that the files that must
survive are intact, byte for byte.
"""
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import (RUN_PY, SEEDED_RUN, SYNTHETIC, assert_one_line_error, run_cli, snapshot,
                      unprivileged)
from gluon_dcgan.errors import UserError
from gluon_dcgan.train import rundir
from live import LiveRun, checkpoint_names


def _bad_image_folder(tmp_path):
    from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
    root = write_image_folder(make_sprites(20), str(tmp_path / 'imgs'))
    (tmp_path / 'imgs' / 'sprites' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 9)
    return root


OVERWRITE_FAILURES = {
    'batch larger than the data': (lambda t: ['--batch-size', '4096'], 'larger than the dataset'),
    'unreadable images': (lambda t: ['--data', _bad_image_folder(t), '--data-root',
                                     str(t / 'cache')], 'broken.png'),
    'FID weights missing': (lambda t: ['--fid-every', '1', '--inception-params',
                                       str(t / 'missing.params')], 'inception-params'),
    # Read, not only found, before the folder changes (they were read after it had).
    'FID weights that do not load': (lambda t: ['--fid-every', '1', '--inception-params',
                                                _junk_file(t / 'junk.params')],
                                     'not a model zoo inception_v3'),
}


def _junk_file(path):
    path.write_bytes(b'junk')
    return str(path)


@pytest.mark.cli
@pytest.mark.parametrize('case', sorted(OVERWRITE_FAILURES))
def test_overwrite_keeps_the_old_run_when_a_later_check_fails(seeded_copy, tmp_path, case,
                                                              main_in_process):
    extra, text = OVERWRITE_FAILURES[case]
    before = snapshot(seeded_copy)
    proc = main_in_process(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(seeded_copy),
                                         '--overwrite'] + extra(tmp_path))
    assert_one_line_error(proc, contains=text)
    assert snapshot(seeded_copy) == before


@pytest.mark.cli
def test_overwrite_replaces_only_what_a_run_wrote(seeded_copy, main_in_process):
    (seeded_copy / 'notes.txt').write_text('mine')
    proc = main_in_process(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(seeded_copy),
                                         '--overwrite'])
    assert proc.returncode == 0, proc.stderr
    assert (seeded_copy / 'notes.txt').read_text() == 'mine'
    assert checkpoint_names(seeded_copy) == ['ckpt-E0001-B000000']
    assert len((seeded_copy / 'metrics.jsonl').read_text().splitlines()) == 1


@pytest.mark.cli
@pytest.mark.parametrize('extra', [[], ['--overwrite'], ['--resume']])
def test_files_named_like_a_runs_in_a_folder_without_a_run_are_kept(tmp_path, extra,
                                                                     main_in_process):
    mine = tmp_path / 'mine'
    (mine / 'samples').mkdir(parents=True)
    for name in ('metrics.jsonl', 'training.png', 'samples/epoch_001.png'):
        (mine / name).write_text(f'my {name}')
    before = snapshot(mine)
    proc = main_in_process(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(mine)] + extra)
    line = assert_one_line_error(proc, contains='holds no run, but files named as a run')
    assert 'metrics.jsonl, training.png, samples/epoch_001.png' in line
    assert snapshot(mine) == before
    assert sorted(os.listdir(mine)) == ['metrics.jsonl', 'samples', 'training.png']  # no .lock


@pytest.mark.cli
def test_overwrite_keeps_damaged_checkpoints_a_users_best_and_kept_exports(seeded_copy,
                                                                          main_in_process):
    damaged = seeded_copy / 'checkpoints' / 'damaged-ckpt-E0002-B000000'
    shutil.copytree(seeded_copy / 'checkpoints' / 'ckpt-E0002-B000000', damaged)
    (seeded_copy / 'checkpoints' / 'best').mkdir()  # not an FID run: this best/ is the user's
    (seeded_copy / 'checkpoints' / 'best' / 'precious.txt').write_text('mine')
    kept = seeded_copy / 'export' / 'v1_keep'
    # like `export --run RUN --out RUN/export/v1_keep`
    shutil.copytree(seeded_copy / 'export', kept)
    before = {p: snapshot(p) for p in (damaged, seeded_copy / 'checkpoints' / 'best', kept)}
    proc = main_in_process(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(seeded_copy),
                                         '--overwrite'])
    assert proc.returncode == 0, proc.stderr
    assert {p: snapshot(p) for p in before} == before
    assert checkpoint_names(seeded_copy) == ['ckpt-E0001-B000000']
    assert len((seeded_copy / 'metrics.jsonl').read_text().splitlines()) == 1


@pytest.mark.cli
def test_overwrite_keeps_the_users_files_inside_the_run_folders(one_epoch_copy):
    (one_epoch_copy / 'samples' / 'photo.png').write_bytes(b'mine')
    (one_epoch_copy / 'checkpoints' / 'ckpt-keep').mkdir()
    (one_epoch_copy / 'export' / 'notes.txt').write_text('mine')
    before = snapshot(one_epoch_copy)
    line = assert_one_line_error(run_cli(SYNTHETIC + ['--out-dir', str(one_epoch_copy),
                                                      '--overwrite']),
                                 contains='not part of an export (notes.txt)')
    assert 'move them out of the run folder' in line
    assert snapshot(one_epoch_copy) == before
    (one_epoch_copy / 'export' / 'notes.txt').unlink()
    proc = run_cli(SYNTHETIC + ['--out-dir', str(one_epoch_copy), '--overwrite'])
    assert proc.returncode == 0, proc.stderr
    assert (one_epoch_copy / 'samples' / 'photo.png').read_bytes() == b'mine'
    assert (one_epoch_copy / 'checkpoints' / 'ckpt-keep').is_dir()
    assert (one_epoch_copy / 'samples' / 'epoch_001.png').exists()


@pytest.mark.cli
def test_a_config_json_of_someone_else_is_never_replaced(tmp_path):
    proj = tmp_path / 'proj'
    proj.mkdir()
    (proj / 'config.json').write_text('{"project": "my app"}')
    for extra in ([], ['--overwrite'], ['--resume']):
        assert_one_line_error(run_cli(SYNTHETIC + ['--out-dir', str(proj)] + extra),
                              contains='is not the config of a gluon_dcgan run')
        assert (proj / 'config.json').read_text() == '{"project": "my app"}'
        assert sorted(os.listdir(proj)) == ['config.json']  # not even the lock stays


@pytest.mark.cli
@pytest.mark.parametrize('name, make', [
    ('metrics.jsonl', lambda p: p.mkdir()),
    ('samples', lambda p: p.write_text('a file')),
    ('export', lambda p: os.symlink(p.parent.parent, p)),
])
def test_a_wrong_kind_of_entry_is_refused_before_anything_changes(one_epoch_copy, name, make):
    target = one_epoch_copy / name
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    make(target)
    before = snapshot(one_epoch_copy) if name != 'export' else None
    config = (one_epoch_copy / 'config.json').read_bytes()
    assert_one_line_error(run_cli(SYNTHETIC + ['--epochs', '2', '--resume', '--out-dir',
                                               str(one_epoch_copy)]), contains=str(target))
    assert (one_epoch_copy / 'config.json').read_bytes() == config
    if before is not None:
        assert snapshot(one_epoch_copy) == before


@pytest.mark.cli
@pytest.mark.parametrize('extra', [['--overwrite'], ['--resume']])
def test_a_folder_that_cannot_be_written_is_refused_before_anything_changes(seeded_copy, extra):
    locked = seeded_copy / 'checkpoints' / 'ckpt-E0001-B000000'
    locked.chmod(0o555)
    try:
        before = snapshot(seeded_copy)
        proc = subprocess.run(unprivileged() + [sys.executable, RUN_PY] + SEEDED_RUN + [
            '--epochs', '3', '--out-dir', str(seeded_copy)] + extra, capture_output=True, text=True)
        # --overwrite would empty that folder, --resume prunes it as the third epoch ends.
        line = assert_one_line_error(proc, contains='cannot be written (permission denied)')
        assert line.startswith(f'error: {locked} '), line
        assert snapshot(seeded_copy) == before
    finally:
        locked.chmod(0o755)


@pytest.mark.unit
def test_an_out_dir_too_long_for_its_files_is_refused_before_it_is_made(tmp_path, main_in_process):
    deep = tmp_path / 'a'
    while len(str(deep)) < 4096 - 100:
        deep = deep / ('d' * 200)
    line = assert_one_line_error(main_in_process(SEEDED_RUN + ['--out-dir', str(deep)]),
                                 contains='characters long as an absolute path')
    assert 'choose a shorter path' in line
    assert os.listdir(tmp_path) == []


@pytest.mark.cli
def test_a_run_inside_another_runs_folders_is_refused(seeded_copy, main_in_process):
    shutil.rmtree(seeded_copy / 'export')
    for inner in (seeded_copy / 'export', seeded_copy / 'checkpoints' / 'x' / 'y'):
        line = assert_one_line_error(main_in_process(SEEDED_RUN + ['--epochs', '1',
                                                                   '--out-dir', str(inner)]),
                                     contains=f'of the run in {seeded_copy}')
        assert not inner.exists(), line
    assert not (seeded_copy / 'export').exists()


@pytest.mark.cli
def test_an_out_dir_inside_the_data_folder_is_refused(tmp_path):
    from PIL import Image
    cls = tmp_path / 'sprites' / 'all'
    cls.mkdir(parents=True)
    for i in range(4):
        Image.new('RGB', (8, 8), (i, i, i)).save(cls / f'{i}.png')
    assert_one_line_error(run_cli(SYNTHETIC + ['--data', str(tmp_path / 'sprites'),
                                               '--out-dir', str(tmp_path / 'sprites' / 'run')]),
                          contains='inside the --data folder')
    assert sorted(os.listdir(tmp_path / 'sprites')) == ['all']


@pytest.mark.cli
def test_a_start_refused_after_the_lock_leaves_no_new_folder(tmp_path):
    out = tmp_path / 'new' / 'run'
    assert_one_line_error(run_cli(SYNTHETIC + ['--batch-size', '64', '--out-dir', str(out)]),
                          contains='--batch-size')
    assert not out.exists()


@pytest.mark.cli
def test_a_lock_that_is_a_symlink_is_refused_and_its_target_kept(tmp_path):
    (tmp_path / 'important.txt').write_text('mine')
    (tmp_path / 'run').mkdir()
    os.symlink(tmp_path / 'important.txt', tmp_path / 'run' / '.lock')
    with pytest.raises(UserError, match='symbolic link'):
        rundir.lock(str(tmp_path / 'run'))
    assert (tmp_path / 'important.txt').read_text() == 'mine'


@pytest.mark.unit
@pytest.mark.parametrize('existed', [False, True])
def test_a_lock_that_cannot_be_written_leaves_nothing(tmp_path, monkeypatch, existed):
    import errno
    from gluon_dcgan.errors import UserError
    from gluon_dcgan.train import rundir
    out = tmp_path / 'run'
    if existed:
        out.mkdir()

    def full(fd, data):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(rundir.os, 'write', full)
    with pytest.raises(UserError, match=r'cannot be written \(No space left on device\)'):
        rundir.lock(str(out))
    assert os.listdir(tmp_path) == (['run'] if existed else [])
    assert not existed or os.listdir(out) == []


def _mounted_tmpfs(path, size):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip('needs root to mount a small tmpfs that fills up')
    done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f'cannot mount a tmpfs here: {done.stderr.strip()}')


@pytest.mark.cli
def test_a_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path):
    disk = tmp_path / 'small'
    _mounted_tmpfs(disk, '2m')
    try:
        (disk / 'mine.txt').write_text('keep')
        out = disk / 'run'
        proc = run_cli(SEEDED_RUN + ['--epochs', '1', '--out-dir', str(out)])
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith('error: no space left to write in ') and str(out) in last, last
        leftovers = [f for _, dirs, files in os.walk(disk) for f in dirs + files if 'tmp' in f]
        assert leftovers == []
        assert (disk / 'mine.txt').read_text() == 'keep'
    finally:
        subprocess.run(['umount', '-l', str(disk)])


@pytest.mark.cli
def test_one_process_per_run_folder(tmp_path, main_in_process):
    out = tmp_path / 'run'
    # 50 epochs: it still holds the folder while the three refusals below run, on any
    # machine; it is stopped at the end.
    first = LiveRun(['--data', 'synthetic', '--limit', '1024', '--batch-size', '4', '--epochs',
                     '50', '--n-G', '8', '--n-D', '8', '--ctx', 'cpu', '--no-progress',
                     '--out-dir', out])
    try:
        first.wait_for_line('training epochs 1-50')
        for args in (SEEDED_RUN + ['--epochs', '1', '--out-dir', str(out)],
                     SEEDED_RUN + ['--epochs', '1', '--out-dir', str(out), '--resume'],
                     ['export', '--run', str(out)]):
            # This process is the second one: cli.main here is refused like a new one.
            line = assert_one_line_error(main_in_process(args), contains='in use by another')
            assert f'(PID {first.pid})' in line
    finally:
        first.send(signal.SIGTERM)
        code, _, err = first.finish()
    assert code == 143, err
