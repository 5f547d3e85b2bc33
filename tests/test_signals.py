"""SIGINT/SIGTERM outside the training loop: never swallowed, never left waiting, and what
the line printed on the way out says.

Event-driven: each test makes the signal arrive at the awkward place (inside a library's
`except Exception`, inside a finalizer, on a worker thread, at an epoch's end, while
images decode) and checks that the run still stops. All but the decode run in process.
"""
import os
import signal
import subprocess
import sys
import threading
import time
import types

import numpy as onp
import pytest

from conftest import ONE_EPOCH, ROOT
from gluon_dcgan.data.decode import parallel_map
from gluon_dcgan.train.loop import Interrupted, StopFlag


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.unit
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


@pytest.mark.unit
def test_a_signal_after_training_does_not_say_nothing_was_saved(monkeypatch):
    from gluon_dcgan import cli
    monkeypatch.setitem(cli._training, 'ran', False)
    assert cli._stopped(['--epochs', '1'], 'terminated') == \
        'terminated before training started: nothing was saved'
    monkeypatch.setitem(cli._training, 'ran', True)
    line = cli._stopped(['--epochs', '1'], 'terminated')
    assert 'nothing was saved' not in line and 'what training reported above stands' in line


@pytest.mark.unit
def test_a_signal_at_the_end_of_an_epoch_names_resume(monkeypatch):
    from gluon_dcgan.config import Config
    from gluon_dcgan.train import fit

    def one_epoch(gan, images, num_epochs, state, hooks):  # the loop, without training
        state.update(epoch=1, history=[{'epoch': 1, 'loss_D': 1.0, 'loss_G': 2.0,
                                        'examples_per_sec': 4.0, 'seconds': 1.0}])
        for hook in hooks:
            if hasattr(hook, 'epoch_end'):
                hook.epoch_end(1, state)
    monkeypatch.setattr(fit, 'train', one_epoch)
    messages = []
    run = types.SimpleNamespace(
        cfg=Config(epochs=3, batch_size=4), images=onp.zeros((8, 64, 64, 3), 'uint8'),
        state={'epoch': 0, 'batch': 0, 'history': [], 'partial': None}, chief=True,
        num_workers=1, gan=None, log=messages.append, ctxs=[None],
        signals=types.SimpleNamespace(check=lambda: None),  # no signal before train()
        # The signal lands while the epoch's checkpoint and pictures are being written.
        epoch_end=types.SimpleNamespace(
            epoch_end=lambda epoch, state: os.kill(os.getpid(), signal.SIGINT)))
    assert fit.run_training(run) == 130
    assert messages[-1] == ('interrupted at the end of epoch 1; its checkpoint is saved: '
                            'continue with --resume')


def _wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)  # event-wait


@pytest.mark.cli
def test_sigterm_while_decoding_stops_at_once(tmp_path):
    from PIL import Image
    cls = tmp_path / 'imgs' / 'big'
    cls.mkdir(parents=True)
    noise = onp.random.RandomState(0).randint(0, 256, (1500, 1500, 3), dtype=onp.uint8)
    Image.fromarray(noise).save(cls / 'source.png', compress_level=1)
    for i in range(2000):  # ~2000 slow decodes on one thread: minutes of work
        os.symlink(cls / 'source.png', cls / f'{i:04d}.png')
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'run.py'), '--data', str(tmp_path / 'imgs'),
         '--data-root', str(tmp_path / 'cache'), '--out-dir', str(tmp_path / 'out'),
         '--num-workers', '1'] + ONE_EPOCH[2:], stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(tmp_path / 'cache' / 'decoded', proc)  # made just before decoding starts
        # One signal must do: it once went missing here, raised inside tqdm's start of
        # its monitor thread and swallowed by tqdm's `except Exception` (see test_signals).
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]  # the decode alone takes far longer
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert 'nothing was saved' in rest and 'Traceback' not in rest
    assert not list((tmp_path / 'cache').rglob('*.npy'))
