"""Run the CLI in the background and wait for what it prints or writes: events, never time.

A test that sends a signal "after a while" breaks on a faster or slower machine;
these helpers wait for a line on stderr or a file instead, with a generous timeout.
"""
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from conftest import ROOT, run_cli

# The batches done on the training bar (train/hooks.py's BAR_FORMAT):
# 'epoch 1/1  42%|#####       | 5/12, D 0.693 G 5.123 ...'
BAR_DONE = re.compile(r'epoch \d+/\d+ +\d+%\|[^|]*\| (\d+)/\d+')


def wait_until(predicate, what, timeout=180, proc=None):
    """Poll `predicate` until it is true; fail naming `what` on timeout or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None and not predicate():
            raise AssertionError(f'the process exited with {proc.returncode} before {what}')
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.01)  # event-wait: a bounded poll inside a wait for an event


class LiveRun:
    """`python run.py ARGS` in the background, its output collected as it comes.

    With `terminal`, stderr is a pseudo-terminal of 80 columns, so the program draws its
    progress bars there as it does for a user: the one evidence, outside the run folder,
    that training has finished a batch (wait_for_batches).
    """

    def __init__(self, args, cwd=None, terminal=False):
        err, pty_fd = subprocess.PIPE, None
        if terminal:
            pty_fd, err = os.openpty()
            attrs = termios.tcgetattr(err)
            attrs[1] &= ~termios.OPOST  # '\n' stays '\n' (no '\r\n'), as in a pipe
            termios.tcsetattr(err, termios.TCSANOW, attrs)
            fcntl.ioctl(err, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 80, 0, 0))
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'run.py')] +
                                     [str(a) for a in args], cwd=cwd or ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=err)
        self.out, self.err = [], []
        if terminal:
            os.close(err)  # the child holds the terminal now; its exit ends the reads
            stderr_reader = threading.Thread(target=self._read_terminal,
                                             args=(pty_fd, self.err), daemon=True)
        else:
            stderr_reader = threading.Thread(target=self._read, args=(self.proc.stderr,
                                                                      self.err), daemon=True)
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                          daemon=True), stderr_reader]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, lines):
        for line in iter(stream.readline, ''):
            lines.append(line)
        stream.close()

    @staticmethod
    def _read_terminal(fd, chunks):
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    break
                if not data:
                    break
                chunks.append(data.decode('utf-8', 'replace'))
        finally:
            os.close(fd)

    def stderr(self):
        """All of stderr so far (with a terminal, a bar's redraws are split by '\r')."""
        return ''.join(list(self.err))

    @property
    def pid(self):
        return self.proc.pid

    def wait_for_line(self, text, timeout=180):
        """Wait until stderr holds `text` (on one line)."""
        wait_until(lambda: any(text in line for line in self.stderr().splitlines()),
                   f'a line with {text!r} (stderr so far: {self.stderr()[-2000:]})',
                   timeout, self.proc)

    def wait_for_batches(self, done=1, timeout=180):
        """Wait until the training bar shows `done` batches finished (needs `terminal`).

        The bar advances when a batch has finished on the devices (train/hooks.py's
        Progress), so a signal sent after this lands after that batch, inside the loop."""
        def shown():
            return any(int(n) >= done for n in BAR_DONE.findall(self.stderr()))
        wait_until(shown, f'the bar to show {done} batch(es) done (stderr so far: '
                          f'{self.stderr()[-2000:]!r})', timeout, self.proc)

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
