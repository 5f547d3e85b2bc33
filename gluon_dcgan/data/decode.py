"""Decode image files with the chapter's decoder (MXNet's OpenCV), on daemon threads.

Decoding is also the check: a file is good exactly when training's decoder reads it,
so WebP or GIF files named .png are caught, and each file is read and decoded once.
"""
import itertools
import os
import stat
import threading

from ..errors import last_line
from .headers import JPEG_SOI, jpeg_size_problem, jpeg_truncated, png_problem


# No image training can read is this large: a PNG of 8192 x 8192 RGBA pixels stored
# without compression is about 270 MB (headers.py refuses larger sizes). Bigger files are
# not read into memory at all.
MAX_FILE_BYTES = 512 << 20


class BadImage(Exception):
    """A file the decoder rejects; the message is a short reason."""


def _reason(exc):
    last = last_line(exc, 160)
    if 'Decoding failed' in last or 'Check failed' in last:
        return 'OpenCV cannot decode it: not a JPEG or PNG, or damaged'
    return last


def read_regular(path):
    """The bytes of `path`; BadImage if it is not a regular file or cannot be read.

    O_NONBLOCK: a named pipe put in place after the listing must not block the open.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise BadImage(exc.strerror)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadImage('not a regular file')
        if info.st_size > MAX_FILE_BYTES:
            raise BadImage(f'{info.st_size / (1 << 30):.1f} GiB: larger than any image of at '
                           f'most 8192 x 8192 pixels')
        with os.fdopen(fd, 'rb', closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise BadImage(exc.strerror)
    finally:
        os.close(fd)


def decode_image(data, size, channels, crop=None):
    """(size, size, channels) uint8 from encoded bytes, as mx.image.imread + Resize(size).

    crop='center' first cuts a non-square image to its central square, so that
    Resize does not stretch it (the chapter's Resize(64) does: its sprites are square).
    """
    from mxnet import image
    from mxnet.gluon.data.vision import transforms
    if jpeg_truncated(data):
        raise BadImage('truncated JPEG (no end-of-image marker)')
    problem = png_problem(data) or jpeg_size_problem(data)
    if problem:
        raise BadImage(problem)
    if data.startswith(JPEG_SOI):
        # An empty comment segment after SOI: MXNet then cannot pre-size the image from
        # a JFIF header (headers.py), so OpenCV sizes it and a failure is reported.
        data = JPEG_SOI + b'\xff\xfe\x00\x02' + data[2:]
    try:
        img = image.imdecode(data, flag=1 if channels == 3 else 0)  # HWC uint8, RGB
        # Wait on the decoded array itself: a failed decode then raises here, once. Had
        # Resize's op inherited the failure, MXNet would also keep it for the next
        # waitall, failing the training run long after this image was set aside.
        img.wait_to_read()
        height, width = img.shape[:2]
        if crop == 'center' and height != width:
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            img = img[top:top + side, left:left + side]
        if img.shape[:2] != (size, size):
            img = transforms.Resize(size)(img)
        return img.asnumpy().reshape(size, size, channels)
    except Exception as exc:  # MXNetError, and ValueError for empty input
        raise BadImage(_reason(exc))


def parallel_map(fn, items, workers, done=None):
    """[fn(x) for x in items] on up to `workers` daemon threads; done() after each item.

    If the caller is interrupted (Ctrl-C, SIGTERM's SystemExit), the threads stop after
    their current item instead of finishing the list, and, being daemons, they never
    hold the process open.
    """
    results = [None] * len(items)
    counter, stop, errors = itertools.count(), threading.Event(), []

    def work(finished):
        try:
            while not stop.is_set():
                i = next(counter)  # atomic under the GIL
                if i >= len(items):
                    return
                results[i] = fn(items[i])
                if done is not None:
                    done()
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)
            stop.set()
        finally:
            finished.set()

    finished = [threading.Event() for _ in range(max(1, min(workers, len(items))))]
    try:
        for event in finished:
            threading.Thread(target=work, args=(event,), daemon=True).start()
        for event in finished:
            # Short waits on an Event: a signal the kernel hands to a worker (or to one of
            # MXNet's threads) is acted on only when the main thread runs again; and an
            # interrupted Thread.join marks a running thread as stopped (CPython 3.11).
            while not event.wait(0.1):
                pass
    finally:
        stop.set()
        for event in finished:
            event.wait(timeout=5)  # each finishes the one image it holds
    if errors:
        raise errors[0]
    return results
