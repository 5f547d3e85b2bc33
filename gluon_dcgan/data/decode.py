"""Decode image files with the chapter's decoder (MXNet's OpenCV), on daemon threads.

Decoding is also the check: a file is good exactly when training's decoder reads it,
so WebP or GIF files named .png are caught, and each file is read and decoded once.
"""
import itertools
import os
import stat
import threading
import zlib

from ..errors import last_line

JPEG_SOI, JPEG_EOI, JPEG_SOS = b'\xff\xd8', b'\xff\xd9', 0xDA
# Start-of-frame markers, which hold the size: C0-CF but C4 (DHT), C8 (JPG) and CC (DAC).
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadImage(Exception):
    """A file the decoder rejects; the message is a short reason."""


def jpeg_truncated(data):
    """True if a JPEG stops before its end-of-image marker.

    OpenCV decodes such a file without complaint, filling the missing rows with grey.
    The header segments are walked to the first scan (an EXIF thumbnail inside them
    has markers of its own); within scan data a 0xFF byte is always followed by 0x00
    or a restart marker, so the first FF D9 after it is the real end.
    """
    if not data.startswith(JPEG_SOI):
        return False
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], 'big')
        pos += 2 + length
        if marker == JPEG_SOS:
            return data.find(JPEG_EOI, pos) < 0
    return False  # not walkable: the decoder's verdict stands


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# OpenCV's own limit (CV_IO_MAX_IMAGE_PIXELS): it refuses to decode larger images, but
# MXNet allocates the output from the header's size first, so check it before MXNet does.
MAX_PIXELS = 1 << 30


def _size_problem(width, height):
    if width == 0 or height == 0:
        return 'its header declares an empty image'
    if width * height > MAX_PIXELS:
        return f'its header declares {width}x{height} pixels, more than OpenCV decodes (2^30)'
    return None


def png_problem(data):
    """Why a PNG (any data starting with its magic) is unfit to hand to MXNet, or None.

    MXNet takes a PNG's size from bytes 16-23 without checking the data is that long, and
    decodes a damaged body into the uninitialised image it allocated, without an error.
    So the chunks are walked first: IHDR, then intact CRCs up to IEND.
    """
    if not data.startswith(PNG_SIGNATURE[:4]):
        return None
    pos, chunks = len(PNG_SIGNATURE), []
    if not data.startswith(PNG_SIGNATURE):
        return 'damaged PNG signature'
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], 'big')
        kind, end = data[pos + 4:pos + 8], pos + 12 + length
        if end > len(data):
            break
        if zlib.crc32(data[pos + 4:end - 4]) != int.from_bytes(data[end - 4:end], 'big'):
            return f'damaged PNG (the {kind.decode("latin-1")!r} chunk fails its CRC check)'
        if not chunks and (kind != b'IHDR' or length != 13):
            return 'damaged PNG (no IHDR header first)'
        chunks.append(kind)
        if kind == b'IEND':
            return None if b'IDAT' in chunks else 'damaged PNG (no image data)'
        if kind == b'IHDR':
            size = _size_problem(int.from_bytes(data[pos + 8:pos + 12], 'big'),
                                 int.from_bytes(data[pos + 12:pos + 16], 'big'))
            if size:
                return size
        pos = end
    return 'truncated PNG (no end chunk)'


def jpeg_size_problem(data):
    """Why a JPEG's declared size (its first start-of-frame segment) is unfit, or None."""
    pos = 2 if data.startswith(JPEG_SOI) else len(data)
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker in JPEG_SOF:
            if pos + 9 > len(data):
                return 'truncated JPEG (its frame header is cut off)'
            return _size_problem(int.from_bytes(data[pos + 7:pos + 9], 'big'),
                                 int.from_bytes(data[pos + 5:pos + 7], 'big'))
        pos += 2 + length
    return None


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
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadImage('not a regular file')
        with os.fdopen(fd, 'rb', closefd=False) as f:
            return f.read()
    except OSError as exc:
        raise BadImage(exc.strerror)
    finally:
        os.close(fd)


def decode_image(data, size, channels):
    """(size, size, channels) uint8 from encoded bytes, as mx.image.imread + Resize(size)."""
    from mxnet import image
    from mxnet.gluon.data.vision import transforms
    if jpeg_truncated(data):
        raise BadImage('truncated JPEG (no end-of-image marker)')
    problem = png_problem(data) or jpeg_size_problem(data)
    if problem:
        raise BadImage(problem)
    try:
        img = image.imdecode(data, flag=1 if channels == 3 else 0)  # HWC uint8, RGB
        # Wait on the decoded array itself: a failed decode then raises here, once. Had
        # Resize's op inherited the failure, MXNet would also keep it for the next
        # waitall, failing the training run long after this image was set aside.
        img.wait_to_read()
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
