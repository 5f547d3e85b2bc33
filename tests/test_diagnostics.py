"""D(x) and D(G(z)): recorded per epoch, shown while training, exact across a resume;
and the library leaves matplotlib's backend to its caller."""
import fcntl
import json
import re
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading

import pytest

from conftest import FINAL_LINE, ROOT, run_cli
from live import LiveRun

D_KEYS = ('D_x', 'D_G_z', 'D_G_z2')
# Small nets learn fast enough that D tells real from fake within 2 epochs; over seeds
# 0-5 every epoch had D_x above D_G_z by 0.07 or more, and D_G_z2 below D_G_z.
SHORT = ['--data', 'synthetic', '--limit', '256', '--batch-size', '32', '--epochs', '2',
         '--n-G', '16', '--n-D', '16', '--ctx', 'cpu', '--seed', '3']


def _rows(out):
    return [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]


def _run_on_a_terminal(args):
    """Run the CLI with stderr on a pseudo-terminal, so the progress bar is drawn.

    Returns (exit code, stdout, everything written to the terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 250, 0, 0))  # 250 columns
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'run.py')] + args, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            chunks.append(data)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout = proc.communicate(timeout=600)[0]
    reader.join(30)
    os.close(master)
    return proc.returncode, stdout, b''.join(chunks).decode(errors='replace')


@pytest.mark.cli
def test_D_outputs_are_recorded_shown_and_react(tmp_path):
    out = tmp_path / 'run'
    code, stdout, terminal = _run_on_a_terminal(SHORT + ['--out-dir', str(out)])
    assert code == 0, terminal
    assert FINAL_LINE.match(stdout.strip().splitlines()[-1]), stdout  # still the chapter's
    rows = _rows(out)
    assert [r['epoch'] for r in rows] == [1, 2]
    for r in rows:
        assert all(0 <= r[k] <= 1 for k in D_KEYS), r
        # The epoch line carries the row's values.
        assert (f"loss_G {r['loss_G']:.3f} D(x) {r['D_x']:.2f} D(G) {r['D_G_z']:.2f}>"
                f"{r['D_G_z2']:.2f}") in terminal, terminal
    # The progress bar shows the losses so far and the time left for the run, and
    # every line and bar fits 80 columns (but the closing lines, which name the run's
    # folder: a path is as long as the user made it).
    assert re.search(r'epoch 1/2 +\d+%\|.{12}\| \d/\d+, D \d+\.\d{3} G \d+\.\d{3} '
                     r'\d+\.\d ex/s eta \d+:\d\d', terminal), terminal
    lines = re.split(r'[\r\n]', terminal)
    assert max(len(line.rstrip()) for line in lines
               if not line.startswith(('wrote ', 'next: '))) <= 80, terminal
    assert any(line.startswith('next: ') for line in lines), terminal

    def mean(k):
        return sum(r[k] for r in rows) / len(rows)
    assert mean('D_x') > mean('D_G_z'), rows      # D tells real from fake
    assert mean('D_G_z2') < mean('D_G_z'), rows   # and its step pushes the fakes down


def _checkpoints(out):
    folder = out / 'checkpoints'
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_records_the_same_metrics(tmp_path):
    # 256 short batches: the epoch the signal must land in lasts seconds on any machine;
    # its bar, on a terminal, shows when the first batch is done.
    args = ['--data', 'synthetic', '--limit', '1024', '--batch-size', '4', '--epochs', '1',
            '--n-G', '8', '--n-D', '8', '--ctx', 'cpu', '--seed', '5']
    ref = tmp_path / 'ref'
    assert run_cli(args + ['--out-dir', str(ref)]).returncode == 0
    out = tmp_path / 'run'
    run = LiveRun(args + ['--out-dir', out], terminal=True)
    run.wait_for_line('training epochs 1-1 on 1024 images, 256 batches per epoch')
    run.wait_for_batches(1)  # inside the loop: the line comes before its signal handling
    run.send(signal.SIGINT)
    code, _, err = run.finish()
    assert code == 130, err
    (ckpt,) = _checkpoints(out)
    assert not ckpt.endswith('B000000'), ckpt  # a mid-epoch checkpoint, with partial sums
    partial = json.loads((out / 'checkpoints' / ckpt / 'state.json').read_text())['partial']
    assert partial['D_examples'] == partial['examples'] > 0
    assert all(0 < partial['sum_' + k] < partial['examples'] for k in D_KEYS), partial
    proc = run_cli(args + ['--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    keys = ('epoch', 'loss_D', 'loss_G') + D_KEYS
    assert [{k: r[k] for k in keys} for r in _rows(out)] == \
        [{k: r[k] for k in keys} for r in _rows(ref)]


def _sums_of(batches):
    from gluon_dcgan.train.loop import EpochSums
    sums = EpochSums(1)
    for b, (d, g, outs) in enumerate(batches):
        sums.add(b, *_device(d, g, outs))
    sums.sync()
    return sums


def _device(d, g, outs):
    from mxnet import np
    return [np.array(d)], [np.array(g)], 4, [[np.array(o)] for o in outs]


@pytest.mark.unit
def test_partial_sums_round_trip_through_json():
    from gluon_dcgan.train.loop import EpochSums
    batches = [(2.0, 3.0, (3.0, 1.0, 0.5)), (1.0, 2.5, (2.5, 1.5, 1.0)),
               (1.5, 2.0, (3.5, 0.5, 0.25))]
    whole = _sums_of(batches)
    first = _sums_of(batches[:2])
    resumed = EpochSums(1, json.loads(json.dumps(first.partial(2))))
    resumed.add(2, *_device(*batches[2]))
    resumed.sync()
    assert resumed.means() == whole.means()
    assert whole.means()['D_x'] == pytest.approx(9.0 / 12)
    # A partial epoch saved before D was measured: the means cover the batches measured.
    old = {k: v for k, v in first.partial(2).items() if k == 'batch' or not
           (k.startswith('sum_D_') or k == 'D_examples')}
    later = EpochSums(1, old)
    later.add(2, *_device(*batches[2]))
    later.sync()
    assert later.means()['loss_D'] == whole.means()['loss_D']
    assert later.means()['D_x'] == pytest.approx(3.5 / 4)


@pytest.mark.unit
def test_the_third_panel_plots_D_in_0_1_and_skips_old_rows(tmp_path):
    from gluon_dcgan.train.report import TrainingFigure
    path = tmp_path / 'training.png'
    figure = TrainingFigure(3, str(path))
    figure.add(1, 1.0, 2.0, save=False)  # a row from before D was recorded
    figure.add(2, 0.9, 1.8, D={'D_x': 0.7, 'D_G_z': 0.4, 'D_G_z2': 0.2}, save=False)
    figure.add(3, 0.8, 1.6, D={'D_x': 0.6, 'D_G_z': 0.45, 'D_G_z2': 0.3})
    ax = figure.animator.axes[2]
    assert ax.get_ylim() == (0, 1)
    lines = {l.get_label(): list(l.get_ydata()) for l in ax.get_lines()
             if not l.get_label().startswith('_')}
    assert list(lines.values()) == [[0.7, 0.6], [0.4, 0.45], [0.2, 0.3]]
    assert path.read_bytes().startswith(b'\x89PNG')


_KEEPS_BACKEND = """
import sys
import matplotlib
import numpy
matplotlib.use('svg')  # the caller's choice, as a notebook's inline backend would be
from gluon_dcgan.train import report
report.save_real_samples(numpy.zeros((20, 64, 64, 3), 'uint8'), sys.argv[1] + '/real.png')
report.TrainingFigure(2, sys.argv[1] + '/training.png').add(1, 1.0, 2.0, D={'D_x': 0.5})
print(matplotlib.get_backend())
"""


def _env_without_backend():
    env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'DISPLAY')}
    env['PYTHONPATH'] = ROOT
    return env


@pytest.mark.cli
def test_the_library_leaves_matplotlibs_backend_alone(tmp_path):
    proc = subprocess.run([sys.executable, '-c', _KEEPS_BACKEND, str(tmp_path)],
                          env=_env_without_backend(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'svg'
    assert (tmp_path / 'training.png').read_bytes().startswith(b'\x89PNG')


_CLI_BACKEND = """
import os
from gluon_dcgan import cli
try:
    cli.main(['generate', '--help'])
except SystemExit:
    pass
print(os.environ.get('MPLBACKEND'))
"""


@pytest.mark.cli
@pytest.mark.parametrize('preset, expected', [(None, 'Agg'), ('svg', 'svg')])
def test_the_cli_defaults_the_backend_to_Agg(preset, expected):
    env = _env_without_backend()
    if preset:
        env['MPLBACKEND'] = preset
    proc = subprocess.run([sys.executable, '-c', _CLI_BACKEND], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected
