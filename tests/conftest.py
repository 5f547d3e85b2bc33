"""Shared test set-up: CPU, numpy semantics, the test layers, and helpers to run the real CLI.

Layers (pyproject.toml registers them; `make test` runs all, `make test-fast` the first):
  unit  in process, seconds at most, never starts a process (checked below); a test in a
        file whose tests are all unit may leave the mark out, conftest adds it
  cli   the real command line in a subprocess, end to end
  slow  long work: clusters, signals in long runs, Inception, classifiers, repeated training
A file with any cli or slow test marks every one of its tests, so that no test in it falls
into `make test-fast` by default.
"""
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from gluon_dcgan.runtime import configure_process, use_np

# The checkout: run.py lives here. gluon_dcgan itself is imported from the editable
# install that `make setup` makes (or from the current folder under `python -m pytest`).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PY = os.path.join(ROOT, 'run.py')

# One OpenMP thread for the tests' tiny nets, here and in every CLI they start (unless the
# caller chose): with two, each small op waits at a barrier for the second thread, and on
# a busy machine a 256-batch epoch of 4 images took 62 s instead of 5.
os.environ.setdefault('OMP_NUM_THREADS', '1')
configure_process()
use_np()

FINAL_LINE = re.compile(r'^loss_D \d+\.\d{3}, loss_G \d+\.\d{3}, \d+\.\d examples/sec on '
                        r'(cpu\(0\)|\[cpu\(\d\)(, cpu\(\d\))+\])$')
# n_G/n_D 16: a 64-wide net_G has 3.6 M weights, whose export takes about 1 s of CPU
# (0.15 s at 16); tests of a run's files do not depend on the width.
TINY = ['--data', 'synthetic', '--limit', '64', '--batch-size', '32', '--epochs', '2',
        '--n-G', '16', '--n-D', '16', '--ctx', 'cpu', '--no-progress']


LAYERS = ('unit', 'cli', 'slow')


def _layers(item):
    return {mark.name for mark in item.iter_markers() if mark.name in LAYERS}


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: the default mark must be there
def pytest_collection_modifyitems(config, items):
    """Give every test exactly one layer: refuse two, refuse none in a cli/slow file."""
    layered_files = {item.path for item in items if _layers(item) - {'unit'}}
    problems = []
    for item in items:
        layers = _layers(item)
        if len(layers) > 1:
            problems.append(f'{item.nodeid} is marked {sorted(layers)}: give it one layer')
        elif not layers and item.path in layered_files:
            problems.append(f'{item.nodeid} has no layer, in a file with cli or slow tests: '
                            f'mark it unit, cli or slow')
        elif not layers:
            item.add_marker(pytest.mark.unit)
    if problems:
        raise pytest.UsageError('\n'.join(problems))


# The unit test now running (set for the whole test: set-up, call, tear-down), if any;
# the fixtures being set up; and the fixtures whose set-up started a process.
_running_unit = []
_fixtures_in_setup = []
_process_fixtures = set()
_popen_init = subprocess.Popen.__init__


def _checked_popen_init(self, *args, **kwargs):
    """subprocess.Popen, refused while a unit test runs: a test that starts one is cli or slow."""
    if _running_unit:
        pytest.fail(f'{_running_unit[0]} is a unit test but starts a process '
                    f'({(args or [kwargs.get("args")])[0]!r}): mark it cli or slow',
                    pytrace=False)
    _process_fixtures.update(_fixtures_in_setup)
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _checked_popen_init


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _fixtures_in_setup.append(fixturedef.argname)
    try:
        yield
    finally:
        _fixtures_in_setup.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Mark a unit test as running, from set-up to tear-down (a fixture may start the CLI)."""
    unit = 'unit' in _layers(item)
    if unit:
        _running_unit.append(item.nodeid)
    try:
        yield
    finally:
        if unit:
            _running_unit.pop()


def pytest_runtest_setup(item):
    """A unit test may not use a fixture that an earlier test set up by starting a process."""
    used = sorted(_process_fixtures & set(item.fixturenames))
    if 'unit' in _layers(item) and used:
        pytest.fail(f'{item.nodeid} is a unit test but uses {", ".join(used)}, which starts '
                    f'a process: mark it cli or slow', pytrace=False)


def run_cli(args, cwd=None, env=None, timeout=600, **kwargs):
    """Run `python run.py ARGS` as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, RUN_PY] + list(args),
                          cwd=cwd or ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def _quiesce_mxnet():
    """Wait for the ops a command left running (a run that ended in an error need not have
    waited): the environment is edited next, and MXNet's threads read it while they work."""
    if 'mxnet' in sys.modules:
        try:
            sys.modules['mxnet'].nd.waitall()
        except Exception:  # an op's failure: the command's own outcome has been judged
            pass


def _restore_environ(saved):
    """Put back the variables a command changed, and only those. Clearing and refilling
    the whole environment unset and set every variable while an MXNet thread could be
    inside getenv: a test process died of a segmentation fault that way."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@contextlib.contextmanager
def _process_state_restored():
    """Undo what cli.main leaves in its process: environment, signal handlers, unraisable
    hook, figures, and what lives as long as a command's process: the run-folder locks it
    took (the kernel drops them) and the checkpoints it knows intact (a test may damage
    them next, as a user may between two commands)."""
    from gluon_dcgan.train import checkpoint, rundir
    environ, hook, locks = dict(os.environ), sys.unraisablehook, set(rundir._held)
    intact = set(checkpoint._intact)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _quiesce_mxnet()
        _restore_environ(environ)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        if 'matplotlib.pyplot' in sys.modules:  # the run's figures (d2l.Animator keeps one open)
            sys.modules['matplotlib.pyplot'].close('all')
        for path in set(rundir._held) - locks:
            os.close(rundir._held.pop(path))
        checkpoint._intact.intersection_update(intact)


@pytest.fixture
def main_in_process(capfd):
    """cli.main(ARGS) in this process: returns what run_cli returns (code, stdout, stderr).

    The same code path as `python run.py ARGS` without a new interpreter importing MXNet
    and d2l (1.5 to 2.5 s of CPU each): for the many refusals, and for runs whose point is
    the library's behaviour (resume, fallback, divergence). test_cli.py checks that the
    real command prints the same and exits the same; the cli tests run it for real.
    """
    from gluon_dcgan import cli

    def call(args, env=None):
        args = [str(a) for a in args]
        capfd.readouterr()  # what the test printed before is not the command's
        with _process_state_restored():
            os.environ.update(env or {})
            try:
                code = cli.main(args)
            except SystemExit as exc:  # argparse: --help, or a flag it refuses
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            out, err = capfd.readouterr()
        return subprocess.CompletedProcess(['run.py'] + args, code, out, err)
    return call


def finished_run(tmp_path_factory, args):
    """A run finished by the real command with `args` (and an --out-dir it is given)."""
    out = tmp_path_factory.mktemp('base') / 'run'
    proc = run_cli(list(args) + ['--out-dir', str(out)])
    assert proc.returncode == 0, proc.stderr
    return out


def assert_one_line_error(proc, code=2, contains=None):
    """A user error: the exit code, one line on stderr, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    if contains:
        assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
    """One finished 2-epoch synthetic run, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp('run') / 'out'
    proc = run_cli(TINY + ['--out-dir', str(out), '--data-root', str(out.parent / 'cache')])
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture
def export_copy(tiny_run, tmp_path):
    dst = tmp_path / 'export'
    shutil.copytree(tiny_run[0] / 'export', dst)
    return dst


def _copy_of(run):
    """A fixture: a copy of the finished run that the fixture named `run` made, in tmp_path."""
    @pytest.fixture
    def copy(request, tmp_path):
        shutil.copytree(request.getfixturevalue(run), tmp_path / 'run')
        return tmp_path / 'run'
    return copy


# The tiny run whose checkpoints the damage tests break (test_damaged_files, test_checkpoint).
DAMAGE_RUN = ['--data', 'synthetic', '--limit', '32', '--batch-size', '16', '--n-G', '8',
              '--n-D', '8', '--no-progress', '--ctx', 'cpu']


@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run (checkpoints E0001 and E0002); tests work on copies."""
    return finished_run(tmp_path_factory, DAMAGE_RUN + ['--epochs', '2'])


run_copy = _copy_of('two_epochs')


# The run that the refusals of run folders, resume, export and checkpoints work on: their
# lines name its width (16), its batch size (16 of 64 images) and its seed (11).
SEEDED_RUN = ['--data', 'synthetic', '--limit', '64', '--batch-size', '16', '--n-G', '16',
              '--n-D', '16', '--ctx', 'cpu', '--no-progress', '--seed', '11']
# One epoch of 32 images, 8 wide: without --data (for a folder of images), and synthetic.
ONE_EPOCH = ['--limit', '32', '--batch-size', '16', '--epochs', '1', '--n-G', '8', '--n-D', '8',
             '--no-progress', '--ctx', 'cpu']
SYNTHETIC = ['--data', 'synthetic'] + ONE_EPOCH


# Session-wide, the two runs below: tests in several files read them (test_rundir,
# test_resume, test_export, ...), and a module fixture would train them again in each.
@pytest.fixture(scope='session')
def seeded_run(tmp_path_factory):
    """SEEDED_RUN finished after 2 epochs (checkpoints E0001 and E0002); tests work on copies."""
    return finished_run(tmp_path_factory, SEEDED_RUN + ['--epochs', '2'])


seeded_copy = _copy_of('seeded_run')


@pytest.fixture(scope='session')
def one_epoch_run(tmp_path_factory):
    """SYNTHETIC finished (one epoch, one checkpoint); tests that change it work on copies."""
    return finished_run(tmp_path_factory, SYNTHETIC)


one_epoch_copy = _copy_of('one_epoch_run')


def snapshot(folder):
    """{relative path: SHA-256} of every file under `folder` (the lock file aside)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if name != '.lock':
                out[os.path.relpath(path, folder)] = hashlib.sha256(
                    open(path, 'rb').read()).hexdigest()
    return out


def rehash_checkpoint(ckpt, extra=()):
    """Rewrite a checkpoint's manifest so that edited files pass the checksum test."""
    names = json.loads((ckpt / 'manifest.json').read_text())
    for name in list(names) + list(extra):
        names[name] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    (ckpt / 'manifest.json').write_text(json.dumps(names))


def unprivileged():
    """A command prefix under which file permissions hold: root's override dropped."""
    if os.geteuid() != 0:
        return []
    if not shutil.which('setpriv'):
        pytest.skip('running as root without setpriv: permissions cannot be made to hold')
    caps = '-dac_override,-dac_read_search'
    return ['setpriv', f'--bounding-set={caps}', f'--inh-caps={caps}']


def fake_mxnet_without_driver(tmp_path):
    """The environment of a GPU build of MXNet on a machine without the NVIDIA driver."""
    fake = tmp_path / 'fake' / 'mxnet'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text(
        "raise OSError('libcuda.so.1: cannot open shared object file: No such file or "
        "directory')\n")
    return {'PYTHONPATH': str(tmp_path / 'fake')}


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws into it."""

    def isatty(self):
        return True
