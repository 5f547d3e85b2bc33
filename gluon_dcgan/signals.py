"""The one place that sets what SIGINT and SIGTERM do: handled, ignored, or deferred.

Each command decides what a stop means (training finishes its batch and checkpoints,
the launcher stops its processes, a guard stops its command, the folder swaps finish
their renames first); how that is wired to the process's signals is here:

- ``install(handler)``, and ``restore(previous)`` what it replaced;
- ``ignore()``: a second Ctrl-C must not cut a shutdown short;
- ``deferred()``: a signal that arrives inside the block is delivered when it ends.

Standard library only: dist/guard.py, run by its path on every host, imports it too.
"""
import contextlib
import signal

# The signals that ask a command to stop: Ctrl-C, and kill's default.
STOP = (signal.SIGINT, signal.SIGTERM)


def install(handler, signums=STOP):
    """Make `handler(signum, frame)` (or signal.SIG_IGN/SIG_DFL) handle each of `signums`.

    Returns {signum: the handler it replaces}, for restore()."""
    return {signum: signal.signal(signum, handler) for signum in signums}


def restore(previous):
    """Put back the handlers install() returned."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def ignore(signums=STOP):
    """Ignore `signums` from now on (a shutdown under way must finish)."""
    return install(signal.SIG_IGN, signums)


@contextlib.contextmanager
def deferred(signums=STOP):
    """Hold `signums` back during the block (renames that must not be cut in two); one that
    arrived is delivered, to the handler of the moment, as the block ends."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, set(signums))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
