"""The decoded-image cache in DATA_ROOT/decoded: decode a folder once, reuse it after.

An entry is two files named by a key over the images' paths, sizes and mtimes:
    images-KEY.npy    (N_good, size, size, channels) uint8, read with allow_pickle=False
    images-KEY.json   {"version", "key", "count", "shape", "bad": [[index, reason], ...]}
The JSON is written last and checked against the array, so an entry is used only
when both are whole and agree; anything else is decoded again and rewritten. Both are
read bounded (files.read_json, files.load_npy): a header declaring more images than the
JSON vouches for, or JSON nested too deep, is a damaged entry, not a crash.
"""
import hashlib
import json
import os
import threading

import numpy as onp

from ..files import load_npy, read_json, remove_stale_temps, written_atomically
from ..progress import progress_bar
from .decode import BadImage, decode_image, parallel_map, read_regular

CACHE_VERSION = 2


def cache_key(paths, stats, size, channels, crop=None):
    """A hex key that changes when any image is added, removed, renamed or modified."""
    # The crop joins the key only when set: the chapter's (stretched) entries keep theirs.
    digest = hashlib.sha1(f'v{CACHE_VERSION}:{size}:{channels}'.encode() +
                          (f':crop={crop}'.encode() if crop else b''))
    for path, st in zip(paths, stats):
        # fsencode: a file name need not be valid UTF-8.
        digest.update(os.fsencode(os.path.abspath(path)))
        digest.update(f':{st.st_size}:{st.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:20]


def _entry(cache_dir, key):
    base = os.path.join(cache_dir, f'images-{key}')
    return base + '.npy', base + '.json'


def load_entry(cache_dir, key, count, size, channels):
    """(images, [(index, reason)]) from a whole, consistent cache entry, else None."""
    array_path, meta_path = _entry(cache_dir, key)
    try:
        meta = read_json(meta_path)
        bad = [(int(i), str(r)) for i, r in meta['bad']]
        if (meta['version'], meta['key'], meta['count']) != (CACHE_VERSION, key, count) or \
                any(not 0 <= i < count for i, _ in bad) or len({i for i, _ in bad}) != len(bad):
            return None
        # At most the bytes of the images the JSON vouches for (allow_pickle stays False).
        images = load_npy(array_path, (count - len(bad)) * size * size * channels)
    except (OSError, ValueError, KeyError, TypeError, OverflowError):  # Damaged: a ValueError
        return None
    if images.dtype != onp.uint8 or images.shape != (count - len(bad), size, size, channels):
        return None
    return images, bad


def save_entry(cache_dir, key, images, bad):
    """Write the entry (array first, then the JSON that vouches for it); OSError on failure.

    Each file goes through its own temporary name (two runs may share a data root),
    and a full disk stays an OSError: the caller only logs it.
    """
    array_path, meta_path = _entry(cache_dir, key)
    with written_atomically(array_path, full_disk_error=False) as tmp, open(tmp, 'wb') as f:
        onp.save(f, images, allow_pickle=False)
    meta = {'version': CACHE_VERSION, 'key': key, 'count': len(images) + len(bad),
            'shape': list(images.shape), 'bad': [[i, r] for i, r in bad]}
    with written_atomically(meta_path, full_disk_error=False) as tmp, open(tmp, 'w') as f:
        json.dump(meta, f)


def decode_all(paths, size, channels, num_workers, progress=False, crop=None):
    """(images of the good files, [(index, reason)] of the bad ones), each file decoded once.

    progress: one bar over the images on stderr (if it is a terminal), fed by every thread.
    """
    from ..runtime import native_stderr_silenced
    out = onp.empty((len(paths), size, size, channels), onp.uint8)  # filled in place

    def one(i):
        try:
            out[i] = decode_image(read_regular(paths[i]), size, channels, crop)
            return None
        except BadImage as exc:
            return str(exc)

    lock = threading.Lock()  # tqdm's counter is not safe to bump from several threads

    def done():
        with lock:
            bar.update()

    with native_stderr_silenced():  # libpng prints its own line for each bad file
        # Made inside the block: sys.stderr is then the real stderr, not /dev/null's fd 2.
        with progress_bar(len(paths), 'decoding images', 'image', progress) as bar:
            reasons = parallel_map(one, range(len(paths)), num_workers, done)
    bad = [(i, r) for i, r in enumerate(reasons) if r]
    if bad:
        good = onp.ones(len(paths), bool)
        good[[i for i, _ in bad]] = False
        out = out[good]
    return out, bad


def decoded_images(paths, stats, size, channels, cache_dir, num_workers, log, progress=False,
                   crop=None):
    """(images, [(path, reason)] of the bad files): from the cache, or decoded and cached.

    progress: draw a bar over the decode (only on a terminal).
    """
    key = cache_key(paths, stats, size, channels, crop)
    hit = load_entry(cache_dir, key, len(paths), size, channels)
    if hit is None:
        try:
            os.makedirs(cache_dir, exist_ok=True)  # before the decode, not after minutes of it
            remove_stale_temps(cache_dir)  # a killed writer's half entry (of any key) is 20 MB
            writable = True
        except OSError as exc:
            writable = False
            log(f'note: cannot create the decode cache {cache_dir} ({exc.strerror}); '
                f'every start decodes the images again')
        hit = decode_all(paths, size, channels, num_workers, progress, crop)
        try:
            if writable:
                save_entry(cache_dir, key, *hit)
        except OSError as exc:  # a full disk costs the next start a decode, nothing more
            log(f'note: cannot write the decode cache in {cache_dir} ({exc.strerror}); '
                f'the next start decodes again')
    images, bad = hit
    return images, [(paths[i], r) for i, r in bad]
