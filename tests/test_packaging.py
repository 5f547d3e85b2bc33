"""The package and the set-up: pyproject, the hashed locks, the installed commands, make."""
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

import gluon_dcgan
from conftest import ROOT, assert_one_line_error

REQ = os.path.join(ROOT, 'requirements')
LOCKS = ('cpu.txt', 'gpu.txt', 'd2l.txt')


def pyproject():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)


def pins(lock):
    """{name: version} of a lock file, after checking that every entry has hashes."""
    text = open(os.path.join(REQ, lock)).read()
    entries = re.split(r'\n(?=[A-Za-z0-9])', text.split('\n', 2)[2].strip())
    found = {}
    for entry in entries:
        match = re.match(r'^([A-Za-z0-9._-]+)==(\S+) \\\n', entry)
        assert match, f'{lock}: not an exact pin: {entry[:80]!r}'
        assert '--hash=sha256:' in entry, f'{lock}: {match.group(1)} has no hash'
        found[match.group(1).lower().replace('_', '-')] = match.group(2)
    return found


def installed():
    """The gluon-dcgan distribution (as `make setup` installs it), or skip."""
    # pip writes direct_url.json; the build's gluon_dcgan.egg-info in the checkout has none.
    for dist in md.distributions(name='gluon-dcgan'):
        if dist.read_text('direct_url.json'):
            return dist
    pytest.skip('gluon-dcgan is not installed in this venv (run make setup)')


@pytest.mark.unit
def test_pyproject_metadata():
    project = pyproject()['project']
    assert project['name'] == 'gluon-dcgan'
    assert project['requires-python'] == '~=3.11'
    assert project['dynamic'] == ['version']
    assert pyproject()['tool']['setuptools']['dynamic']['version'] == {
        'attr': 'gluon_dcgan.__version__'}
    assert project['scripts'] == {'gluon-dcgan': 'gluon_dcgan.cli:run'}
    assert project['optional-dependencies']['test'] == [
        'pytest', 'pytest-xdist', 'mxnet==1.9.1', 'scikit-image<0.25', 'tensorboardX>=2.6',
        'tensorboard', 'setuptools<81']
    assert project['optional-dependencies']['tensorboard'] == [
        'tensorboardX>=2.6', 'tensorboard', 'setuptools<81']
    assert not any(r.startswith('pytest') for r in project['dependencies'])


@pytest.mark.unit
def test_every_lock_entry_is_pinned_with_hashes():
    cpu, gpu, d2l = (pins(lock) for lock in LOCKS)
    assert cpu['mxnet'] == gpu['mxnet-cu112'] == '1.9.1'
    assert 'mxnet-cu112' not in cpu and 'mxnet' not in gpu
    assert gpu['nvidia-cudnn-cu11'].startswith('8.9.')
    assert d2l == {'d2l': '1.0.3'} and 'd2l' not in cpu and 'd2l' not in gpu
    for lock in ('cpu.txt', 'gpu.txt', 'd2l.txt'):  # each lock has its input beside it
        assert os.path.exists(os.path.join(REQ, lock.replace('.txt', '.in')))


@pytest.mark.unit
def test_the_locks_hold_d2ls_pins_and_the_project_dependencies():
    d2l_pins = {'numpy': '1.23.5', 'matplotlib': '3.7.2', 'matplotlib-inline': '0.1.6',
                'pandas': '2.0.3', 'requests': '2.31.0', 'scipy': '1.10.1', 'jupyter': '1.0.0'}
    project = pyproject()['project']
    names = [re.match(r'[A-Za-z0-9._-]+', r).group(0).lower() for r in project['dependencies']]
    for lock in ('cpu.txt', 'gpu.txt'):
        locked = pins(lock)
        assert {n: locked.get(n) for n in d2l_pins} == d2l_pins, lock
        assert locked['pytest'], lock
        assert [n for n in names if n not in locked and n != 'd2l'] == [], lock


@pytest.mark.unit
def test_the_tensorboard_lock_goes_on_top_of_cpu_txt():
    # Installed after cpu.txt (make setup): a package in both locks has the same pin in
    # each, or the second install would move what the first one locked.
    cpu, tensorboard = pins('cpu.txt'), pins('tensorboard.txt')
    assert {'tensorboardx', 'tensorboard'} <= set(tensorboard)
    assert tensorboard['numpy'] == '1.23.5'
    assert {n: v for n, v in tensorboard.items() if cpu.get(n, v) != v} == {}
    assert os.path.exists(os.path.join(REQ, 'tensorboard.in'))


@pytest.mark.unit
def test_the_installed_version_is_the_packages():
    assert installed().version == gluon_dcgan.__version__


@pytest.mark.cli
def test_pip_check_is_clean():
    installed()
    proc = subprocess.run([sys.executable, '-m', 'pip', 'check'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.cli
@pytest.mark.parametrize('command', [['gluon-dcgan'], ['-m', 'gluon_dcgan']])
def test_the_commands_work_from_another_folder(tmp_path, command):
    installed()
    if command == ['gluon-dcgan']:
        argv = [os.path.join(os.path.dirname(sys.executable), 'gluon-dcgan')]
    else:
        argv = [sys.executable] + command
    proc = subprocess.run(argv + ['--help'], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and 'usage:' in proc.stdout, proc.stderr
    # main's exit code reaches the shell
    proc = subprocess.run(argv + ['evaluate', '--export', str(tmp_path / 'none')],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, contains='does not exist')


@pytest.mark.cli
def test_the_launcher_imports_from_another_folder(tmp_path):
    installed()
    proc = subprocess.run([sys.executable, '-m', 'gluon_dcgan.launch', '--help'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert 'No module named' not in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr
    assert 'usage' in (proc.stdout + proc.stderr).lower() or 'launch' in proc.stderr


def make(*args):
    if not shutil.which('make'):
        pytest.skip('make is not installed')
    return subprocess.run(['make', '-n', '-C', ROOT] + list(args), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.cli
def test_make_stops_in_one_line_on_another_python(tmp_path):
    fake = tmp_path / 'python3.12'
    fake.write_text('#!/bin/sh\necho 3.12\n')
    fake.chmod(0o755)
    proc = make(f'PYTHON={fake}', 'test')
    line = assert_one_line_error(proc, code=2, contains='needs Python 3.11')
    assert 'Python 3.12' in line and 'PYTHON=python3.11' in line
    line = assert_one_line_error(make(f'PYTHON={tmp_path}/none', 'setup'), code=2)
    assert 'not found' in line


@pytest.mark.cli
def test_make_accepts_python_3_11():
    proc = make(f'PYTHON={sys.executable}', 'setup')
    assert proc.returncode == 0 and 'Stop' not in proc.stderr, proc.stderr
