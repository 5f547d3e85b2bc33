"""SIGINT/SIGTERM outside the training loop: never swallowed, never left waiting.

In-process and event-driven: each test makes the signal arrive at the awkward place
(inside a library's `except Exception`, inside a finalizer, on a worker thread) and
checks that the run still stops.
"""
import os
import signal
import sys
import threading
import time

import pytest

from gluon_dcgan.data.decode import parallel_map
from gluon_dcgan.train.loop import Interrupted, StopFlag


def test_a_library_except_exception_does_not_swallow_it():
    with StopFlag(raising=True), pytest.raises(Interrupted) as caught:
        try:  # as tqdm, requests and others guard optional work
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # bytecode: the handler runs here at the latest
        except Exception:
            pass
    assert caught.value.exit_code == 128 + signal.SIGTERM


class _Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        sum(range(1000))  # the handler raises here, inside __del__: Python only reports it


def test_a_raise_lost_in_a_finalizer_is_raised_at_the_next_check(monkeypatch):
    lost = []
    monkeypatch.setattr(sys, 'unraisablehook', lambda u: lost.append(u.exc_type))
    with StopFlag(raising=True) as signals:
        obj = _Finalized()
        del obj  # no exception reaches this frame
        assert lost == [Interrupted]
        with pytest.raises(Interrupted):
            signals.check()


def _waiting_in_parallel_map(thread_id):
    """True once `thread_id` is blocked in a threading wait called from parallel_map."""
    frame = sys._current_frames().get(thread_id)
    names = []
    while frame is not None:
        names.append((frame.f_code.co_name, os.path.basename(frame.f_code.co_filename)))
        frame = frame.f_back
    return bool(names) and names[0][1] == 'threading.py' and ('parallel_map', 'decode.py') in names


def test_a_signal_taken_by_a_worker_thread_stops_the_wait_at_once():
    # The kernel may hand a process signal to any thread; Python acts on it only when
    # the main thread runs. Once the main thread waits for the workers, the worker takes
    # SIGTERM itself, then waits to be released by the main thread's handler: it is
    # released only if the main thread woke up while the worker was still busy.
    released = threading.Event()
    outcome = []
    main = threading.get_ident()

    def handler(signum, frame):
        released.set()
        raise Interrupted(signum)

    def work(i):
        while not _waiting_in_parallel_map(main):
            time.sleep(0.01)  # event-wait
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        outcome.append(released.wait(120))  # True: woken by the handler, not the timeout

    old = signal.signal(signal.SIGTERM, handler)
    try:
        with pytest.raises(Interrupted):
            parallel_map(work, [0], workers=1)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert outcome == [True]  # and the main thread waited for the worker's item
