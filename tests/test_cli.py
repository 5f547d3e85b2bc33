"""End to end: the real CLI on tiny synthetic data, asserting files and numbers; and the
one-line error policy of cli.main (whatever fails, one line and no traceback)."""
import json
import os
import shlex
import subprocess
import sys

import numpy as onp
import pytest
from PIL import Image

from conftest import FINAL_LINE, ROOT, SEEDED_RUN, TINY, assert_one_line_error, run_cli


@pytest.mark.cli
def test_run_writes_every_output(tiny_run):
    out, proc = tiny_run
    for name in ('config.json', 'metrics.jsonl', 'real_samples.png', 'leaky_relu.png',
                 'training.png', 'progress.gif', 'samples/epoch_001.png', 'samples/epoch_002.png',
                 'export/generator-symbol.json', 'export/generator-0000.params',
                 'export/manifest.json'):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert FINAL_LINE.match(proc.stdout.strip().splitlines()[-1]), proc.stdout
    rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
    assert [r['epoch'] for r in rows] == [1, 2]
    for r in rows:
        assert set(r) >= {'epoch', 'loss_D', 'loss_G', 'examples_per_sec', 'seconds'}
        assert onp.isfinite([r['loss_D'], r['loss_G']]).all() and r['examples_per_sec'] > 0
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"loss_D {rows[-1]['loss_D']:.3f}, loss_G {rows[-1]['loss_G']:.3f}")
    config = json.loads((out / 'config.json').read_text())
    assert config['epochs'] == 2 and config['data'] == 'synthetic'
    assert Image.open(out / 'progress.gif').n_frames == 2
    assert Image.open(out / 'real_samples.png').size[0] > 100


@pytest.mark.cli
def test_generate_round_trip_is_repeatable_and_matches_the_trained_net(tiny_run, tmp_path,
                                                                       main_in_process):
    out, _ = tiny_run
    a, b = tmp_path / 'a.png', tmp_path / 'b.png'
    for path, run in ((a, run_cli), (b, main_in_process)):  # the real command, then cli.main
        proc = run(['generate', '--export', str(out / 'export'), '--num', '21',
                    '--seed', '3', '--output', str(path)])
        assert proc.returncode == 0, proc.stderr
    assert a.read_bytes() == b.read_bytes()
    assert Image.open(a).size == (5 * 66 + 2, 5 * 66 + 2)  # 21 images in a 5x5 grid
    # The export equals the in-process generator rebuilt from the last checkpoint.
    import mxnet as mx
    from mxnet import np
    from gluon_dcgan.tools import latent
    from gluon_dcgan.export import load
    from gluon_dcgan import model
    ckpt = sorted((out / 'checkpoints').iterdir())[-1]
    net_G = model.net_G(json.loads((out / 'config.json').read_text())['n_G'])
    net_G.load_parameters(str(ckpt / 'net_G.params'), ctx=mx.cpu())
    Z = latent.latent_noise(5, 100, seed=3)
    ours = net_G(np.array(Z)).asnumpy()
    exported = load.generate_mxnet(str(out / 'export'), Z)
    assert onp.abs(ours - exported).max() < 1e-5


@pytest.mark.cli
def test_same_seed_same_losses(tiny_run, tmp_path):
    # A second run with the session's run's seed (the default, 0): its one epoch is the
    # session's run's first epoch, to the last bit.
    outs = [[json.loads(l) for l in (tiny_run[0] / 'metrics.jsonl').read_text().splitlines()]]
    proc = run_cli(TINY + ['--epochs', '1', '--seed', '0', '--out-dir', str(tmp_path / 'b')])
    assert proc.returncode == 0, proc.stderr
    outs.append([json.loads(l) for l in (tmp_path / 'b' / 'metrics.jsonl').read_text()
                 .splitlines()])
    assert outs[0][0]['loss_D'] == outs[1][0]['loss_D']
    assert outs[0][0]['loss_G'] == outs[1][0]['loss_G']


@pytest.mark.cli
def test_gpu_without_a_usable_gpu_is_one_clear_line(tmp_path):
    proc = run_cli(['--ctx', 'gpu', '--data', 'synthetic', '--out-dir', str(tmp_path / 'o')])
    line = assert_one_line_error(proc, contains='--ctx gpu')
    assert 'cpu' in line
    assert not (tmp_path / 'o').exists()


@pytest.mark.cli
def test_help_documents_every_flag():
    proc = run_cli(['--help'])
    assert proc.returncode == 0
    from gluon_dcgan.config import Config
    import dataclasses
    for field in dataclasses.fields(Config):
        flag = '--no-progress' if field.name == 'progress' else \
            '--' + field.name.replace('_', '-')
        if field.name == 'image_size':
            continue  # fixed by the architecture, not a flag
        assert flag in proc.stdout, flag


# The refusals tested in process (conftest.main_in_process) against the real command:
# a flag argparse refuses, refusals after MXNet is imported (training and a tool), and
# one before it (a command's own checks).
SAME_IN_PROCESS = [
    ['--data', 'synthetic', '--epochs', '0'],
    ['--data', 'synthetic', '--limit', '32', '--batch-size', '64', '--ctx', 'cpu'],
    ['generate', '--export', 'no-such-folder', '--output', 'g.png'],
    ['generate', '--export', '.', '--output', 'g.png', '--steps', '4'],
]


@pytest.mark.cli
@pytest.mark.parametrize('args', SAME_IN_PROCESS)
def test_main_in_process_answers_as_the_real_command(args, tmp_path, monkeypatch,
                                                     main_in_process):
    args = args + (['--out-dir', str(tmp_path / 'out')] if args[0] != 'generate' else [])
    real = run_cli(args, cwd=str(tmp_path))
    assert_one_line_error(real)
    monkeypatch.chdir(tmp_path)
    ours = main_in_process(args)
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (real.returncode, real.stdout, real.stderr)


@pytest.mark.cli
def test_a_stdout_closed_early_is_no_disk_problem(tmp_path):
    out = tmp_path / 'run'
    # `| true`: the reader is gone before the final line is printed.
    script = (f'{shlex.quote(sys.executable)} {shlex.quote(os.path.join(ROOT, "run.py"))} '
              f'{shlex.join(TINY)} --out-dir {shlex.quote(str(out))} | true; '
              f'echo "rc=${{PIPESTATUS[0]}}" >&2')
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=300)
    assert 'rc=141' in proc.stderr and 'error' not in proc.stderr.lower(), proc.stderr
    assert (out / 'export' / 'generator.onnx').exists()


@pytest.mark.cli
def test_an_ascii_locale_takes_a_utf8_folder_name(tmp_path):
    out = tmp_path / 'sortie-é'
    env = dict(os.environ, LC_ALL='POSIX', PYTHONUTF8='0')
    proc = run_cli(TINY + ['--out-dir', str(out)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / 'export' / 'generator.onnx').exists()


@pytest.mark.cli
def test_a_deleted_current_folder_is_one_line(tmp_path):
    gone = tmp_path / 'gone'
    gone.mkdir()
    script = (f'cd {shlex.quote(str(gone))} && rmdir {shlex.quote(str(gone))} && exec '
              f'{shlex.quote(sys.executable)} {shlex.quote(os.path.join(ROOT, "run.py"))} '
              f'{shlex.join(TINY)}')
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, contains='the current folder was deleted')


@pytest.mark.unit
def test_an_unforeseen_file_system_error_is_one_line(monkeypatch, main_in_process):
    from gluon_dcgan import cli

    def refused(argv):
        raise PermissionError(13, 'Permission denied', '/some/where/x.png')
    monkeypatch.setattr(cli, '_dispatch', refused)
    proc = main_in_process(['generate'])
    line = assert_one_line_error(proc, code=1, contains='Permission denied (/some/where/x.png)')
    assert 'can be written' in line


@pytest.mark.unit
def test_a_line_break_in_a_path_stays_in_one_error_line(tmp_path, main_in_process):
    odd = tmp_path / 'a\nb'
    odd.write_text('a file, not a folder')
    line = assert_one_line_error(main_in_process(SEEDED_RUN + ['--out-dir', str(odd)]),
                                 contains='is a file')
    assert 'a\\nb' in line


@pytest.mark.cli
def test_an_mxnet_shutdown_failure_adds_no_traceback_to_the_one_line(tmp_path):
    script = tmp_path / 'exit.py'
    script.write_text(
        'import atexit, sys\n'
        'from gluon_dcgan import cli\n'
        'sys.unraisablehook = cli._quiet_mxnet_shutdown\n'
        'def _notify_shutdown():\n'
        '    raise RuntimeError("Failed to allocate CPU Memory")\n'
        'def other():\n'
        '    raise RuntimeError("another failure is still reported")\n'
        'atexit.register(_notify_shutdown)\n'
        'atexit.register(other)\n')
    import sys
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert 'another failure is still reported' in proc.stderr
    assert 'Failed to allocate' not in proc.stderr
