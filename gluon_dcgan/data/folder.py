"""Image folders: list, check and decode them once into a uint8 array, cached on disk.

Decoding uses the chapter's readers (mx.image.imread, transforms.Resize) so the
pixels equal the chapter's; the cache means each image is decoded once, not
once per epoch as the chapter's DataLoader does.
"""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as onp

from ..errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png')  # what ImageFolderDataset accepts
CACHE_VERSION = 1


def _is_image(name):
    return name.lower().endswith(EXTENSIONS)


def list_images(root):
    """[(path, label)] in ImageFolderDataset's order, and a note for the user or None.

    Class subfolders are the ImageFolder layout. A folder that has images only at
    its top level is accepted as a single class (and the note says so).
    """
    from mxnet.gluon.data.vision.datasets import ImageFolderDataset
    if not os.path.isdir(root):
        raise UserError(f'data folder {root!r} does not exist: check the path')
    top = sorted(f for f in os.listdir(root)
                 if _is_image(f) and os.path.isfile(os.path.join(root, f)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # it warns about every non-image file
        items = list(ImageFolderDataset(root).items)
    if items:
        note = (f'note: {len(top)} image(s) at the top of {root} are ignored; only class '
                f'subfolders are read') if top else None
        return items, note
    if top:
        return ([(os.path.join(root, f), 0) for f in top],
                f'note: {root} has no class subfolders; its {len(top)} top-level images are '
                f'read as one class')
    raise UserError(f'no images (.jpg, .jpeg, .png) in {root!r} or its subfolders: point '
                    f'--data at a folder of images, or use --data synthetic')


def _check(path):
    """None if PIL can fully decode `path`, else a short reason."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()  # raises on truncated files that OpenCV would half-decode
        return None
    except Exception as exc:  # PIL raises many types for bad files
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def find_bad_images(paths, num_workers):
    """[(path, reason)] for every file that cannot be decoded."""
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        reasons = list(pool.map(_check, paths))
    return [(p, r) for p, r in zip(paths, reasons) if r]


def _decode(path, size, channels):
    from mxnet import image
    from mxnet.gluon.data.vision import transforms
    img = image.imread(path, flag=1 if channels == 3 else 0)  # HWC uint8, RGB
    return transforms.Resize(size)(img).asnumpy().reshape(size, size, channels)


def _cache_key(paths, size, channels):
    digest = hashlib.sha1(f'v{CACHE_VERSION}:{size}:{channels}'.encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f'{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}\n'.encode())
    return digest.hexdigest()[:20]


def decode_folder(paths, size, channels, cache_dir, num_workers, progress=None):
    """(N, size, size, channels) uint8 of the images, decoded once and cached in cache_dir."""
    os.makedirs(cache_dir, exist_ok=True)
    cache = os.path.join(cache_dir, f'images-{_cache_key(paths, size, channels)}.npy')
    if os.path.exists(cache):
        try:
            return onp.load(cache)
        except (ValueError, OSError):
            os.remove(cache)  # a damaged cache is rebuilt, never trusted
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        images = onp.stack(list(pool.map(lambda p: _decode(p, size, channels), paths)))
    tmp = cache + '.tmp.npy'
    onp.save(tmp, images)
    os.replace(tmp, cache)
    return images
