"""Shared test set-up: CPU, numpy semantics, and helpers to run the real CLI."""
import os
import re
import subprocess
import sys

import pytest

from gluon_dcgan.runtime import configure_process, use_np

# The checkout: run.py lives here. gluon_dcgan itself is imported from the editable
# install that `make setup` makes (or from the current folder under `python -m pytest`).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

configure_process()
use_np()

FINAL_LINE = re.compile(r'^loss_D \d+\.\d{3}, loss_G \d+\.\d{3}, \d+\.\d examples/sec on '
                        r'(cpu\(0\)|\[cpu\(\d\)(, cpu\(\d\))+\])$')
TINY = ['--data', 'synthetic', '--limit', '64', '--batch-size', '32', '--epochs', '2',
        '--ctx', 'cpu', '--no-progress']


def run_cli(args, cwd=None, env=None, timeout=600, **kwargs):
    """Run `python run.py ARGS` as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, 'run.py')] + list(args),
                          cwd=cwd or ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


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
