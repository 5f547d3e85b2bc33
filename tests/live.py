"""Run the CLI in the background and wait for what it prints or writes: events, never time.

A test that sends a signal "after a while" breaks on a faster or slower machine;
these helpers wait for a line on stderr or a file instead, with a generous timeout.
"""
import os
import signal
import subprocess
import sys
import threading
import time

from conftest import ROOT, run_cli


def wait_until(predicate, what, timeout=180, proc=None):
    """Poll `predicate` until it is true; fail naming `what` on timeout or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None and not predicate():
            raise AssertionError(f'the process exited with {proc.returncode} before {what}')
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.01)  # event-wait: a bounded poll inside a wait for an event


class LiveRun:
    """`python run.py ARGS` in the background, its output collected line by line."""

    def __init__(self, args, cwd=None):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'run.py')] +
                                     [str(a) for a in args], cwd=cwd or ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out, self.err = [], []
        self._readers = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out),
                                          (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in iter(stream.readline, ''):
            lines.append(line)
        stream.close()

    @property
    def pid(self):
        return self.proc.pid

    def wait_for_line(self, text, timeout=180):
        """Wait until a stderr line contains `text`."""
        wait_until(lambda: any(text in line for line in list(self.err)),
                   f'a line with {text!r} (stderr so far: {"".join(self.err)[-2000:]})',
                   timeout, self.proc)

    def wait_for(self, predicate, what, timeout=180):
        """Wait until `predicate()` holds (e.g. a file exists) while the process runs."""
        wait_until(predicate, what, timeout, self.proc)

    def send(self, signum):
        self.proc.send_signal(signum)

    def finish(self, timeout=300):
        """Wait for the exit; returns (exit code, stdout, stderr)."""
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(30)
        return code, ''.join(self.out), ''.join(self.err)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.finish()


def checkpoint_names(out):
    """The checkpoint folders of the run in `out`, sorted (none before the run makes them)."""
    folder = out / 'checkpoints'
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('ckpt')) \
        if folder.exists() else []


def kill_at_each_epoch(args, out, epochs=2):
    """Run `args` into `out` and SIGKILL it as soon as training starts, then (resumed each
    time) as soon as each of the first `epochs` epochs' checkpoints exists."""
    def checkpointed(epoch):
        return lambda: f'ckpt-E{epoch:04d}-B000000' in checkpoint_names(out)
    events = [lambda: True] + [checkpointed(e) for e in range(1, epochs + 1)]
    for i, event in enumerate(events):
        run = LiveRun(args + ['--out-dir', out] + (['--resume'] if i else []))
        run.wait_for_line('training epochs')
        run.wait_for(event, f'event {i}')
        run.kill()


def killed_and_resumed(args, tmp_path):
    """(ref, out): `args` run uninterrupted into ref, and into out SIGKILLed at each epoch
    (kill_at_each_epoch) and then resumed to the end."""
    ref, out = tmp_path / 'ref', tmp_path / 'killed'
    assert run_cli(args + ['--out-dir', str(ref)]).returncode == 0
    kill_at_each_epoch(args, out)
    proc = run_cli(args + ['--out-dir', str(out), '--resume'])
    assert proc.returncode == 0, proc.stderr
    return ref, out
