"""Fashion-MNIST through gluon.data.vision.FashionMNIST (its real files and download).

The idx files live in DATA_ROOT/fashion-mnist. Gluon downloads any that are
missing or whose SHA-1 differs from the official one.
"""
import contextlib
import io
import os

import numpy as onp

from ..errors import UserError
from .hub import download_failure, progress_note

CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
           'Sneaker', 'Bag', 'Ankle boot')


# The idx files gluon's FashionMNIST reads for each split (train=True / False).
SPLIT_FILES = {True: ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
               False: ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')}


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


def _say_if_downloading(root, train, log):
    # Gluon downloads a file that is missing (or whose SHA-1 differs, which is rare).
    names = SPLIT_FILES[train]
    missing = [n for n in names if not os.path.isfile(os.path.join(root, n))]
    if missing:
        from mxnet.gluon.utils import _get_repo_file_url  # MXNET_GLUON_REPO, as gluon
        url = _get_repo_file_url('gluon/dataset/fashion-mnist', '')
        (log or progress_note())(f'downloading {", ".join(missing)} from {url} into {root} ...')


def load_fashion_mnist(data_root, train=True, size=64, log=None):
    """(images (N, size, size, 1) uint8, labels (N,) int) of the train or test split.

    `log` (default: progress_note()) gets a line before a download starts.
    """
    from mxnet.gluon.data.vision import FashionMNIST
    root = fashion_root(data_root)
    _say_if_downloading(root, train, log)
    try:
        # gluon prints every retry to stdout; the one-line error below says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            ds = FashionMNIST(root=root, train=train)
    except Exception as exc:  # requests errors offline; OSError; bad hashes
        if all(os.path.isfile(os.path.join(root, n)) for n in SPLIT_FILES[train]):
            # Gluon downloads again only files whose SHA-1 is not the official one's.
            raise UserError(f'the Fashion-MNIST files in {root} are damaged (not the official '
                            f'files), and downloading them again failed '
                            f'({download_failure(exc)}): replace them with the official idx '
                            f'.gz files, or delete them while online')
        raise UserError(f'cannot get Fashion-MNIST into {root} ({download_failure(exc)}); '
                        f'offline, put the '
                        f'four official idx .gz files there, or use --data synthetic')
    images = onp.asarray(ds._data.asnumpy(), dtype=onp.uint8)
    labels = onp.asarray(ds._label).astype(onp.int64)
    return (resize_batch(images, size) if size != images.shape[1] else images), labels
