"""The commands as a user types them: `train` (also flags alone), `launch`, the name typed
(run.py, python -m gluon_dcgan, gluon-dcgan) in usage lines and hints, each flag once in
--help with snake_case still read, and what the end of a training says to do next; and the
surface: --version, --help's groups, an unknown command and a near miss."""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys

import pytest

from conftest import FINAL_LINE, ROOT, assert_one_line_error, run_cli
from live import LiveRun
from gluon_dcgan import __version__
from gluon_dcgan.cli import COMMANDS

TRAIN = ['--data', 'synthetic', '--limit', '32', '--batch-size', '16', '--n-G', '8',
         '--n-D', '8', '--epochs', '1', '--ctx', 'cpu', '--no-progress']
SCRIPT = os.path.join(os.path.dirname(sys.executable), 'gluon-dcgan')
# Each way in, and the name its usage lines and hints must give.
ENTRY_POINTS = {
    'run.py': [sys.executable, os.path.join(ROOT, 'run.py')],
    'python -m gluon_dcgan': [sys.executable, '-m', 'gluon_dcgan'],
    'gluon-dcgan': [SCRIPT],
}


def _run(argv, cwd=ROOT, timeout=600):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _checkpoint_files(out):
    """{checkpoint/file: bytes} of what training computed (state.json and the manifest
    also hold timings)."""
    return {f'{c.name}/{f.name}': f.read_bytes()
            for c in sorted((out / 'checkpoints').iterdir()) for f in sorted(c.iterdir())
            if f.name not in ('state.json', 'manifest.json')}


@pytest.mark.cli
def test_train_is_the_same_training_as_flags_alone(tmp_path):
    runs = {}
    for name, words in (('flags', []), ('train', ['train'])):
        runs[name] = proc = run_cli(words + TRAIN + ['--out-dir', str(tmp_path / name)])
        assert proc.returncode == 0, proc.stderr
        assert FINAL_LINE.match(proc.stdout.strip()), proc.stdout  # stdout: that line only
    flags, train = (_checkpoint_files(tmp_path / n) for n in ('flags', 'train'))
    assert sorted(flags) == sorted(train) and 'ckpt-E0001-B000000/net_G.params' in flags
    assert flags == train
    losses = [runs[n].stdout.split(', ')[:2] for n in ('flags', 'train')]
    assert losses[0] == losses[1]


@pytest.mark.cli
def test_the_end_of_training_says_what_it_wrote_and_what_to_run_next(tmp_path):
    out = tmp_path / 'my run'
    proc = run_cli(['train'] + TRAIN + ['--out-dir', str(out)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    *_, wrote, then = proc.stderr.strip().splitlines()
    assert wrote == f'wrote {out}/: training.png, samples/, progress.gif, checkpoints/, export/'
    assert then == f"next: python run.py generate --export '{out}/export' --output samples.png"
    # ... which runs as printed (with this venv's python and the checkout's run.py).
    python, script, *rest = shlex.split(then[len('next: '):])
    assert (python, script) == ('python', 'run.py')
    generated = _run([sys.executable, os.path.join(ROOT, 'run.py')] + rest, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / 'samples.png').stat().st_size > 0
    # A run with nothing left to do wrote nothing, and says so only.
    again = run_cli(TRAIN + ['--out-dir', str(out), '--resume'])
    assert again.returncode == 0 and 'wrote' not in again.stderr, again.stderr
    assert 'nothing to do' in again.stderr


@pytest.mark.cli
def test_an_interrupted_training_says_nothing_of_what_to_run_next(tmp_path):
    out = tmp_path / 'o'
    run = LiveRun(['train', '--data', 'synthetic', '--limit', '1024', '--batch-size', '16',
                   '--n-G', '8', '--n-D', '8', '--epochs', '50', '--ctx', 'cpu',
                   '--no-progress', '--out-dir', out])
    run.wait_for_line('training epochs')
    run.send(signal.SIGINT)
    code, stdout, stderr = run.finish()
    assert code == 130, stderr
    assert 'interrupted' in stderr and 'wrote' not in stderr and 'next:' not in stderr
    assert stdout == ''


@pytest.mark.cli
@pytest.mark.parametrize('prog', sorted(ENTRY_POINTS))
def test_usage_lines_and_hints_name_what_the_user_typed(prog, tmp_path):
    if prog == 'gluon-dcgan' and not os.path.isfile(SCRIPT):
        pytest.skip('the gluon-dcgan script is not installed in this venv (run make setup)')
    argv = ENTRY_POINTS[prog]
    top = _run(argv + ['--help'], cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith(f'usage: {prog} [train] [flags]\n       {prog} COMMAND [flags]')
    commands = top.stdout.split(f'commands ({prog} COMMAND --help for each):\n')[1]
    assert re.findall(r'^  (\S+) ', commands, re.M) == list(COMMANDS)
    for command in COMMANDS:
        proc = _run(argv + [command, '--help'], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f'usage: {prog} {command} '), proc.stdout[:200]
        assert 'run.py' not in proc.stdout or prog == 'run.py', proc.stdout
    line = assert_one_line_error(_run(argv + ['trian'], cwd=tmp_path), contains='did you mean')
    assert line.endswith(f'(see {prog} --help)'), line
    proc = _run(argv + ['generate', '--num', '0', '--export', 'x'], cwd=tmp_path)
    assert assert_one_line_error(proc).startswith(f'{prog} generate: error: argument --num')
    line = assert_one_line_error(_run(argv + ['launch', '--workers', '1'], cwd=tmp_path),
                                 contains='after --')
    worker = {'run.py': 'python run.py'}.get(prog, prog)
    assert f'-- {worker} train --kvstore dist_sync' in line, line


@pytest.mark.cli
def test_the_launcher_module_keeps_its_name():
    proc = _run([sys.executable, '-m', 'gluon_dcgan.launch', '--help'])
    assert proc.returncode == 0 and proc.stdout.startswith(
        'usage: python -m gluon_dcgan.launch --workers N [flags] -- COMMAND'), proc.stdout
    line = assert_one_line_error(_run([sys.executable, '-m', 'gluon_dcgan.launch',
                                       '--workers', 'two', '--', 'x']))
    assert line.endswith('(see python -m gluon_dcgan.launch --help)'), line


@pytest.mark.cli
@pytest.mark.parametrize('argv', [['launch', '--help'],
                                  ['-m', 'gluon_dcgan.launch', '--help']])
def test_launch_help_is_short_and_points_to_the_docs(argv):
    if argv[0] == 'launch':
        proc = run_cli(argv)
    else:
        proc = _run([sys.executable] + argv)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) <= 25 and max(map(len, lines)) <= 80, proc.stdout
    assert 'docs/distributed.md' in proc.stdout.replace('\n', ' ')
    for flag in ('--workers', '--servers', '--hostfile', '--port', '--ssh-config'):
        assert f'\n  {flag} ' in proc.stdout, flag


@pytest.mark.cli
def test_help_lists_the_commands_and_fits_80_columns():
    proc = run_cli(['--help'])
    assert proc.returncode == 0
    assert max(map(len, proc.stdout.splitlines())) <= 80
    assert proc.stdout.count('--batch-size') == 1 and '--batch_size' not in proc.stdout


@pytest.mark.cli
@pytest.mark.parametrize('args, says', [
    (['--batch_size', '0'], 'argument --batch-size: must be >= 1'),
    (['train', '--n_G=0'], 'argument --n-G: must be >= 1'),
    (['--lr_D', '-1'], 'argument --lr-D: must be a finite number > 0'),
    (['evaluate', '--export', 'x', '--batch_size', '0'], 'argument --batch-size: must be >= 1'),
    (['generate', '--export', 'missing', '--out_dir', 'd', '--no_progress'], None),
    (['generate', '--export', 'x', '--out_dir', '', '--output', 'a.png'],
     'argument --out-dir: must not be empty'),
    (['launch', '--workers', '1', '--ssh_config', 'MISSING', '--', 'x'], "--ssh-config 'MISSING'"),
])
def test_snake_case_is_read_as_the_flag_help_lists(args, says, tmp_path):
    proc = run_cli(args, cwd=tmp_path)
    if says is None:  # accepted: refused later, for the export, not for the flag
        assert_one_line_error(proc, contains='does not exist')
    else:
        assert_one_line_error(proc, contains=says)
    assert not list(tmp_path.iterdir())


@pytest.mark.cli
def test_an_unknown_snake_case_flag_is_still_refused():
    assert_one_line_error(run_cli(['--batch_sizes', '8']), contains='unrecognized arguments')
    # after --, words are the launched command's, left as they are
    proc = run_cli(['launch', '--workers', '1', '--port', '70000', '--', 'x', '--n_G'])
    assert_one_line_error(proc, contains='--port')


def _launch(tmp_path, worker):
    """A 2-worker dist_sync run started by `gluon-dcgan launch`, `worker` its command."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = tmp_path / 'D'
    argv = [SCRIPT, 'launch', '--workers', '2', '--port', str(port), '--'] + worker + \
        ['train', '--kvstore', 'dist_sync'] + TRAIN[:2] + ['--limit', '64'] + TRAIN[4:] + \
        ['--out-dir', str(out)]
    proc = _run(argv, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = [l for l in proc.stdout.splitlines() if 'examples/sec on' in l]
    assert len(finals) == 2 and len(proc.stdout.splitlines()) == 2, proc.stdout
    return out, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('worker', [['gluon-dcgan'], ['python', 'run.py']])
def test_train_runs_as_a_launched_worker_and_only_the_chief_says_what_it_wrote(tmp_path,
                                                                               worker):
    if not os.path.isfile(SCRIPT):
        pytest.skip('the gluon-dcgan script is not installed in this venv (run make setup)')
    out, stderr = _launch(tmp_path, worker)
    assert stderr.count('32 of 64 images per epoch') == 2, stderr[-3000:]
    assert (out / 'export' / 'generator.onnx').exists()
    wrote = [l for l in stderr.splitlines() if '] wrote ' in l or '] next: ' in l]
    prog = 'python run.py' if worker[-1] == 'run.py' else 'gluon-dcgan'
    assert wrote == [
        f'[worker 0] wrote {out}/: training.png, samples/, progress.gif, checkpoints/, export/',
        f'[worker 0] next: {prog} generate --export {out}/export --output samples.png'], stderr


@pytest.mark.cli
def test_version_prints_the_package_version():
    proc = run_cli(['--version'])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'gluon_dcgan {__version__}' == 'gluon_dcgan 0.1.0'


@pytest.mark.cli
def test_training_help_groups_the_flags():
    proc = run_cli(['--help'])
    assert proc.returncode == 0
    headings = re.findall(r'^(\w+):$', proc.stdout, re.M)
    assert headings == ['options', 'data', 'model', 'training', 'output', 'distributed',
                        'quality']
    section = proc.stdout.split('\ndistributed:\n')[1].split('\n\n')[0]
    assert '--ctx' in section and '--kvstore' in section


@pytest.mark.cli
@pytest.mark.parametrize('word', ['genrate', 'trian', 'outputs'])
def test_an_unknown_command_lists_the_commands(word, tmp_path):
    proc = run_cli([word, '--epochs', '1', '--out-dir', str(tmp_path / 'out')])
    line = assert_one_line_error(proc, contains=f'unknown command {word!r}')
    assert all(command in line for command in COMMANDS)
    assert not list(tmp_path.iterdir())  # nothing was trained or written


@pytest.mark.cli
def test_a_near_miss_gets_a_suggestion():
    line = assert_one_line_error(run_cli(['genrate']), contains='did you mean generate?')
    assert 'generate' in line


def _long_flags(help_text):
    """The option strings of --help's option lines (not flags named in help texts)."""
    invocations = re.findall(r'^  (-.*?)(?:  |$)', help_text, re.M)
    return {f for line in invocations for f in re.findall(r'--[A-Za-z][\w-]*', line)}


@pytest.mark.cli
@pytest.mark.parametrize('command', [
    None, 'train', 'generate', 'export', 'evaluate',
    'ablate-activation', 'analyze-categories', 'launch'])
def test_help_lists_each_flag_once_in_kebab_case(command):
    proc = run_cli(([command] if command else []) + ['--help'])
    assert proc.returncode == 0, proc.stderr
    flags = _long_flags(proc.stdout)
    assert '--help' in flags and len(flags) > 2, proc.stdout
    assert not [f for f in flags if '_' in f], proc.stdout  # the snake twins are not listed
    invocations = re.findall(r'^  (--[\w-]+)', proc.stdout, re.M)
    assert len(invocations) == len(set(invocations)), invocations


@pytest.mark.cli
def test_snake_case_flags_parse_like_kebab_case(tmp_path):
    proc = run_cli(['generate', '--export', str(tmp_path), '--output', str(tmp_path / 'g.png'),
                    '--interpolate', '2', '--steps', '1'])
    assert_one_line_error(proc, contains='must be >= 2')
    proc = run_cli(['analyze-categories', '--run', str(tmp_path), '--classifier_epochs', '0'])
    assert_one_line_error(proc, contains='must be >= 1')
