"""Fashion-MNIST through gluon.data.vision.FashionMNIST (its real files, checked by it).

The idx files live in DATA_ROOT/fashion-mnist. Gluon downloads any that are
missing or whose SHA-1 differs from the official one, but with no timeout and no
size bound (a server that hangs hangs it; one that streams without end fills the
disk). So they are fetched here first, through hub.fetch_verified, from the same
URLs (MXNET_GLUON_REPO) against the same SHA-1s; gluon then finds them in place
and checks them again.
"""
import contextlib
import io
import os

import numpy as onp

from ..errors import UserError
from ..files import folder_lock
from .hub import (READ_TIMEOUT, DownloadFailed, download_failure, fetch_verified,
                  progress_note, sha1_if_exists)

CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
           'Sneaker', 'Bag', 'Ankle boot')


# The idx files gluon's FashionMNIST reads for each split (train=True / False), with the
# official SHA-1s it checks them against (mxnet 1.9.1, datasets.FashionMNIST.__init__).
SPLIT_FILES = {True: (('train-images-idx3-ubyte.gz', '0cf37b0d40ed5169c6b3aba31069a9770ac9043d'),
                      ('train-labels-idx1-ubyte.gz', '236021d52f1e40852b06a4c3008d8de8aef1e40b')),
               False: (('t10k-images-idx3-ubyte.gz', '626ed6a7c06dd17c0eec72fa3be1740f146a2863'),
                       ('t10k-labels-idx1-ubyte.gz', '17f9ab60e7257a1620f4ad76bbbaf857c3920701'))}
NAMESPACE = 'gluon/dataset/fashion-mnist'
# The largest official file, train-images-idx3-ubyte.gz, is 26 MB: a longer stream is not it.
MAX_FILE_BYTES = 64 << 20


def fashion_root(data_root):
    """Where the four idx .gz files are kept."""
    return os.path.join(data_root, 'fashion-mnist')


def resize_batch(images, size, chunk=4096):
    """(N, 28, 28, 1) uint8 -> (N, size, size, 1) uint8, bilinear like transforms.Resize."""
    import mxnet as mx
    out = []
    for i in range(0, len(images), chunk):
        x = mx.nd.array(images[i:i + chunk], dtype='uint8')
        out.append(mx.nd.image.resize(x, size=(size, size)).asnumpy())
    return onp.concatenate(out).reshape(len(images), size, size, images.shape[-1])


def _fetch(data_root, train, log, timeout):
    """Download the split's files that are missing or not the official ones, under a lock."""
    from mxnet.gluon.utils import _get_repo_file_url  # MXNET_GLUON_REPO, as gluon
    root = fashion_root(data_root)
    wanted = [(n, sha1) for n, sha1 in SPLIT_FILES[train]
              if sha1_if_exists(os.path.join(root, n)) != sha1]
    if not wanted:
        return
    log = log or progress_note()
    url = _get_repo_file_url(NAMESPACE, '')
    log(f'downloading {", ".join(n for n, _ in wanted)} from {url} into {root} ...')
    os.makedirs(root, exist_ok=True)
    with folder_lock(os.path.join(data_root, '.fashion-mnist.lock'), data_root):
        for name, sha1 in wanted:
            path = os.path.join(root, name)
            if sha1_if_exists(path) != sha1:  # else fetched by another process meanwhile
                fetch_verified(url + name, path, sha1, MAX_FILE_BYTES, timeout,
                               getattr(log, 'enabled', True))


def _failure(root, train, reason):
    if all(os.path.isfile(os.path.join(root, n)) for n, _ in SPLIT_FILES[train]):
        # Gluon downloads again only files whose SHA-1 is not the official one's.
        return UserError(f'the Fashion-MNIST files in {root} are damaged (not the official '
                         f'files), and downloading them again failed ({reason}): replace '
                         f'them with the official idx .gz files, or delete them while online')
    return UserError(f'cannot get Fashion-MNIST into {root} ({reason}); offline, put the '
                     f'four official idx .gz files there, or use --data synthetic')


def load_fashion_mnist(data_root, train=True, size=64, log=None, timeout=READ_TIMEOUT):
    """(images (N, size, size, 1) uint8, labels (N,) int) of the train or test split.

    `log` (default: progress_note()) gets a line before a download starts; a
    progress_note's `enabled` also decides the bar. `timeout`: seconds a download
    waits for each next piece of data.
    """
    from mxnet.gluon.data.vision import FashionMNIST
    root = fashion_root(data_root)
    try:
        _fetch(data_root, train, log, timeout)
    except DownloadFailed as exc:
        raise _failure(root, train, exc) from None
    try:
        # gluon prints every retry to stdout; the one-line error below says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            ds = FashionMNIST(root=root, train=train)
    except Exception as exc:  # files changed since they were checked; OSError
        raise _failure(root, train, download_failure(exc)) from None
    images = onp.asarray(ds._data.asnumpy(), dtype=onp.uint8)
    labels = onp.asarray(ds._label).astype(onp.int64)
    return (resize_batch(images, size) if size != images.shape[1] else images), labels
