"""--tensorboard DIR: the events that TensorBoard's own reader (EventAccumulator) and the
tensorboard program load back hold metrics.jsonl's values and the sample grids; a resume
continues them; the flag is refused in one line without tensorboardX, and for a DIR that
cannot hold them."""
import io
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request

import numpy as onp
import pytest

from conftest import RUN_PY, SYNTHETIC, assert_one_line_error, run_cli
from gluon_dcgan import config
from gluon_dcgan.errors import UserError
from gluon_dcgan.train.tensorboard import FINAL_TAG, FIXED_TAG, scalar_tag
from live import wait_until

RUN = ['--data', 'synthetic', '--limit', '64', '--batch-size', '16', '--n-G', '8', '--n-D', '8',
       '--ctx', 'cpu', '--no-progress', '--seed', '3']
# 21 samples of 64x64 in rows of 7, 2 white pixels around each (images.grid).
GRID_SHAPE = (3 * 66 + 2, 7 * 66 + 2, 3)


def read_events(folder, purge=True):
    """({tag: [(step, value)]}, {tag: [(step, RGB pixels)]}) as TensorBoard's reader loads
    every event file of `folder`; with purge=False it keeps what restart markers hide."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    reader = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0},
                              purge_orphaned_data=purge)
    reader.Reload()
    tags = reader.Tags()
    scalars = {t: [(e.step, e.value) for e in reader.Scalars(t)] for t in tags['scalars']}
    images = {t: [(e.step, onp.asarray(Image.open(io.BytesIO(e.encoded_image_string))))
                  for e in reader.Images(t)] for t in tags['images']}
    return scalars, images


def metrics(out):
    return [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]


def expected_scalars(rows):
    """metrics.jsonl as TensorBoard holds it: a tag per field, its value as a float32
    (a scalar event's simple_value is a 32-bit float)."""
    out = {}
    for row in rows:
        for field, value in row.items():
            if field != 'epoch':
                out.setdefault(scalar_tag(field), []).append(
                    (row['epoch'], float(onp.float32(value))))
    return out


def png_pixels(path):
    from PIL import Image
    with Image.open(path) as image:
        return onp.asarray(image.convert('RGB'))


def event_files(folder):
    return sorted(p.name for p in folder.iterdir() if '.tfevents.' in p.name)


@pytest.fixture(scope='module')
def scored(tmp_path_factory):
    """A finished 2-epoch run with --eval-every 1 and --tensorboard (the real command):
    (run folder, events folder)."""
    tmp = tmp_path_factory.mktemp('scored')
    out, logs = tmp / 'run', tmp / 'logs'
    proc = run_cli(RUN + ['--epochs', '2', '--eval-every', '1', '--eval-num', '16',
                          '--out-dir', str(out), '--data-root', str(tmp / 'cache'),
                          '--tensorboard', str(logs)])
    assert proc.returncode == 0, proc.stderr
    return out, logs


@pytest.mark.cli
def test_the_events_hold_the_metrics_the_scores_and_the_sample_grids(scored):
    out, logs = scored
    rows = metrics(out)
    scalars, images = read_events(logs)
    assert scalars == expected_scalars(rows)
    for tag in ('loss/loss_D', 'loss/loss_G', 'D/D_x', 'D/D_G_z', 'D/D_G_z2',
                'speed/examples_per_sec', 'quality/kid', 'quality/coverage'):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    assert set(images) == {FIXED_TAG, FINAL_TAG}
    assert [step for step, _ in images[FIXED_TAG]] == [1, 2]
    for step, pixels in images[FIXED_TAG]:  # the very grid of samples/epoch_NNN.png
        assert pixels.shape == GRID_SHAPE
        assert onp.array_equal(pixels, png_pixels(out / 'samples' / f'epoch_{step:03d}.png'))
    (step, final), = images[FINAL_TAG]
    assert step == 2 and final.shape == GRID_SHAPE
    assert not onp.array_equal(final, images[FIXED_TAG][-1][1])  # latents of their own
    assert len(event_files(logs)) == 1


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.cli
def test_the_tensorboard_program_serves_them(scored):
    # The viewer the extra installs, with its Rust data server (--load_fast true), as a
    # user starts it: it must start (tensorboard 2.20 needs setuptools' pkg_resources),
    # and serve the run's values and pictures.
    out, logs = scored
    rows = metrics(out)
    program = os.path.join(os.path.dirname(sys.executable), 'tensorboard')
    proc = subprocess.Popen([program, '--logdir', str(logs), '--host', '127.0.0.1', '--port',
                             '0', '--load_fast', 'true'], stderr=subprocess.PIPE, text=True)
    said = []
    threading.Thread(target=lambda: said.extend(iter(proc.stderr.readline, '')),
                     daemon=True).start()
    try:
        found = []

        def listening():
            found[:] = re.findall(r'TensorBoard \S+ at (http://\S+/) ', ''.join(said))
            return bool(found)
        wait_until(listening, 'TensorBoard to say where it listens', timeout=120, proc=proc)
        url = found[0] + 'data/plugin/'
        served = []

        def loaded():  # the data server reads the folder in the background
            served[:] = json.loads(_get(url + 'scalars/scalars?run=.&tag=quality/kid'))
            return len(served) == 2
        wait_until(loaded, 'the events to be served', timeout=120, proc=proc)
        for field in ('loss_D', 'D_G_z2', 'kid', 'coverage'):
            points = json.loads(_get(url + f'scalars/scalars?run=.&tag={scalar_tag(field)}'))
            assert [(step, value) for _, step, value in points] == \
                expected_scalars(rows)[scalar_tag(field)], field
        shown = json.loads(_get(url + f'images/images?run=.&tag={FIXED_TAG}&sample=0'))
        assert [entry['step'] for entry in shown] == [1, 2]
        from PIL import Image
        png = _get(url + 'images/individualImage?' + shown[-1]['query'])
        assert onp.array_equal(onp.asarray(Image.open(io.BytesIO(png))),
                               png_pixels(out / 'samples' / 'epoch_002.png'))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.cli
def test_a_resume_continues_the_events_and_a_redone_epoch_replaces_its_own(tmp_path,
                                                                           main_in_process):
    out, logs = tmp_path / 'run', tmp_path / 'logs'
    args = RUN + ['--out-dir', out, '--tensorboard', logs]
    assert main_in_process(args + ['--epochs', '1']).returncode == 0
    first = metrics(out)
    proc = main_in_process(args + ['--epochs', '3', '--resume'])
    assert proc.returncode == 0, proc.stderr
    rows = metrics(out)
    assert rows[0] == first[0]
    # Epoch 1 is not written again: the files hold each epoch once, marker or not.
    for purge in (True, False):
        scalars, images = read_events(logs, purge)
        assert scalars == expected_scalars(rows)
        assert [step for step, _ in images[FIXED_TAG]] == [1, 2, 3]
        assert [step for step, _ in images[FINAL_TAG]] == [1, 3]  # each run's last epoch
    assert len(event_files(logs)) == 2

    # Epoch 3's checkpoint is damaged: the resume goes back to epoch 2's and trains epoch 3
    # again. TensorBoard shows the new epoch 3, which the files now hold twice.
    newest = max((out / 'checkpoints').glob('ckpt-E0003-*'))
    data = (newest / 'net_G.params').read_bytes()
    (newest / 'net_G.params').write_bytes(data[:len(data) // 2])
    proc = main_in_process(args + ['--epochs', '3', '--resume'])
    assert proc.returncode == 0, proc.stderr
    redone = metrics(out)
    assert redone[:2] == rows[:2] and redone[2]['seconds'] != rows[2]['seconds']
    scalars, images = read_events(logs)
    assert scalars == expected_scalars(redone)
    assert [step for step, _ in images[FIXED_TAG]] == [1, 2, 3]
    unpurged, _ = read_events(logs, purge=False)
    assert [step for step, _ in unpurged['speed/seconds']] == [1, 2, 3, 3]

    # A fresh run in the same DIR hides every event of the old one.
    proc = main_in_process(args + ['--epochs', '1', '--overwrite'])
    assert proc.returncode == 0, proc.stderr
    scalars, images = read_events(logs)
    assert scalars == expected_scalars(metrics(out))
    assert [step for step, _ in images[FIXED_TAG]] == [1]
    assert [step for step, _ in images[FINAL_TAG]] == [1]


# Imports of tensorboardX fail as they do where it is not installed.
WITHOUT_TENSORBOARDX = '''
import runpy, sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == 'tensorboardX':
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.mark.cli
def test_without_tensorboardX_the_flag_is_refused_in_one_line_and_training_works(tmp_path):
    out, logs = tmp_path / 'run', tmp_path / 'logs'

    def train(*extra):
        return subprocess.run([sys.executable, '-c', WITHOUT_TENSORBOARDX, RUN_PY, *SYNTHETIC,
                               '--out-dir', str(out), *extra], capture_output=True, text=True,
                              timeout=600)
    proc = train('--tensorboard', str(logs))
    line = assert_one_line_error(proc, contains="pip install 'gluon-dcgan[tensorboard]'")
    assert line == f'error: {config.TENSORBOARD_MISSING}'
    assert not out.exists() and not logs.exists()  # refused before anything was written
    proc = train()  # the extra is optional: training does not import it
    assert proc.returncode == 0, proc.stderr
    assert (out / 'export' / 'manifest.json').exists()


def _file(tmp_path):
    (tmp_path / 'afile').write_text('mine')
    return str(tmp_path / 'afile')


BAD_DIRS = {
    'a file': (_file, "is not a folder: give a folder for the TensorBoard event files"),
    'inside a file': (lambda tmp: _file(tmp) + '/logs', 'which is not a folder'),
    'in export/': (lambda tmp: str(tmp / 'out' / 'export' / 'logs'),
                   "is inside the run's export/ folder, which a run empties or replaces"),
    'samples/': (lambda tmp: str(tmp / 'out' / 'samples'), "inside the run's samples/ folder"),
}


@pytest.mark.unit
@pytest.mark.parametrize('name', sorted(BAD_DIRS))
def test_a_dir_that_cannot_hold_the_events_is_refused_in_one_line(name, tmp_path,
                                                                   main_in_process):
    where, expected = BAD_DIRS[name]
    proc = main_in_process(SYNTHETIC + ['--out-dir', tmp_path / 'out',
                                        '--tensorboard', where(tmp_path)])
    assert_one_line_error(proc, contains=expected)
    assert not (tmp_path / 'out').exists()
    if (tmp_path / 'afile').exists():
        assert (tmp_path / 'afile').read_text() == 'mine'


@pytest.mark.unit
def test_a_read_only_dir_is_refused(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod does not stop writes: ask os.access instead.
    monkeypatch.setattr(config.os, 'access', lambda path, mode: False)
    with pytest.raises(UserError, match=r"^--tensorboard '.*' cannot be written \("):
        config.parse_train_args(SYNTHETIC + ['--tensorboard', str(tmp_path / 'logs')])


@pytest.mark.unit
def test_the_flag_is_a_config_field_saved_with_the_run(tmp_path):
    cfg = config.parse_train_args(SYNTHETIC + ['--tensorboard', str(tmp_path / 'logs')])
    assert cfg.tensorboard == str(tmp_path / 'logs')
    assert json.loads(cfg.to_json())['tensorboard'] == str(tmp_path / 'logs')
    assert config.parse_train_args(SYNTHETIC).tensorboard is None


@pytest.mark.unit
def test_the_run_folders_config_guards_are_the_run_folders_a_run_writes():
    from gluon_dcgan.train import rundir
    assert config.RUN_FOLDERS == rundir.RUN_FOLDERS


@pytest.mark.unit
def test_ablate_activation_logs_each_variant_in_a_folder_of_its_own(tmp_path, monkeypatch):
    from gluon_dcgan.tools import ablate_activation
    from gluon_dcgan.train import fit
    trained = []

    def record(cfg, log):  # stands for training: the second variant stops the command
        trained.append((cfg.d_activation, cfg.tensorboard))
        return 1 if len(trained) == 2 else 0
    monkeypatch.setattr(fit, 'fit', record)
    logs = tmp_path / 'logs'
    code = ablate_activation.main(SYNTHETIC + ['--out-dir', str(tmp_path / 'out'),
                                               '--tensorboard', str(logs)])
    assert code == 1
    assert trained == [('leaky', str(logs / 'leaky')), ('relu', str(logs / 'relu'))]
