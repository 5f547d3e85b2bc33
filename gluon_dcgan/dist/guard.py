"""Run one command of a launched cluster so that it cannot outlive its launcher.

    python gluon_dcgan/dist/guard.py GRACE_SECONDS -- COMMAND ...

``gluon_dcgan.launch`` starts every scheduler, server and worker through this
guard, locally or at the far end of an ssh connection, with the guard's stdin a
pipe from the launcher. The guard stops the command's whole process group

* gracefully (SIGTERM, then SIGKILL after GRACE_SECONDS) when the launcher writes
  the line ``stop``, when stdin reaches end-of-file (the launcher or its ssh
  connection died, and the kernel or sshd closed the pipe), or when the guard gets
  SIGTERM, SIGINT or SIGHUP;
* at once (SIGKILL) when the launcher writes ``kill``: it does so when a process has
  failed, since the others of a dist_sync run then wait forever.

The command runs in its own session, so the guard can signal the group without
signalling itself, and with PR_SET_PDEATHSIG, so even a SIGKILLed guard takes
the command with it. The guard exits with the command's code (128 + N for a
signal N), which ssh passes back to the launcher.

Run by its path, with the standard library and gluon_dcgan/signals.py (itself standard
library only), found from this file's own place: no package needs to be installed.
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading

# The folder that holds this package (a checkout, or site-packages), for its signals module.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from gluon_dcgan import signals  # noqa: E402

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_guard(libc):
    def preexec():
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return preexec


class Guard:
    """One child process group, stopped at most once."""

    def __init__(self, command, grace):
        libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith('linux') else None
        self.grace, self._stopping = grace, threading.Lock()
        self.child = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_guard(libc) if libc else None)

    def _signal_group(self, sig):
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass  # the group is already empty

    def stop(self):
        """SIGTERM the group; SIGKILL it if the child has not exited after the grace period."""
        if not self._stopping.acquire(blocking=False):
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.child.wait(self.grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)

    def watch_stdin(self):
        """Obey the launcher's ``stop`` and ``kill`` lines; stop gracefully at end-of-file."""
        # Lines of at most 64 characters: the launcher writes only 'stop' and 'kill'.
        for line in iter(lambda: sys.stdin.readline(64), ''):
            if line.strip() == 'kill':
                self._signal_group(signal.SIGKILL)
            else:
                threading.Thread(target=self.stop, daemon=True).start()
        self.stop()


def main(argv):
    """Run the command after ``--`` under the guard; return its exit code."""
    if len(argv) < 3 or argv[1] != '--':
        print('usage: guard.py GRACE_SECONDS -- COMMAND ...', file=sys.stderr)
        return 2
    try:
        guard = Guard(argv[2:], float(argv[0]))
    except OSError as exc:  # a mistyped command: say so in one line, with the shell's code
        print(f'error: cannot start {argv[2]!r} ({exc.strerror}): check the command after --',
              file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    signals.install(lambda *_: threading.Thread(target=guard.stop, daemon=True).start(),
                    signals.STOP + (signal.SIGHUP,))
    threading.Thread(target=guard.watch_stdin, daemon=True).start()
    code = guard.child.wait()
    guard._signal_group(signal.SIGKILL)  # anything the command left behind in its group
    return code if code >= 0 else 128 - code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
