"""A small Gluon CNN that labels Fashion-MNIST images, cached by a checksum of its data.

It reads the same 64x64 greyscale images the GAN trains on, so generated and
real images are judged alike.
"""
import hashlib
import os

import numpy as onp
from mxnet import autograd, gluon, init, np
from mxnet.gluon import nn

from .. import seeds
from ..errors import UserError, last_line
from ..files import written_atomically
from ..progress import progress_bar

# The classifier's weights take about 0.4 MB: a larger file under its name is not one.
MAX_CACHED_BYTES = 16 << 20


def build_classifier(num_classes=10):
    """(B, 1, 64, 64) in [-1, 1] -> (B, num_classes) logits."""
    net = nn.HybridSequential()
    net.add(nn.AvgPool2D(2))                      # (B, 1, 32, 32): enough detail, 4x cheaper
    for channels in (32, 64, 128):                # (B, 32, 16, 16), (B, 64, 8, 8), (B, 128, 4, 4)
        net.add(nn.Conv2D(channels, 3, padding=1, use_bias=False), nn.BatchNorm(),
                nn.Activation('relu'), nn.MaxPool2D(2))
    net.add(nn.GlobalAvgPool2D(), nn.Dense(num_classes))
    return net


def data_checksum(images, labels, epochs):
    """Key of a trained classifier: its training data and schedule."""
    digest = hashlib.sha1(onp.ascontiguousarray(images).tobytes())
    digest.update(onp.ascontiguousarray(labels).tobytes())
    digest.update(f'epochs={epochs}'.encode())
    return digest.hexdigest()[:16]


def _batches(images, labels, batch_size, rng=None):
    order = rng.permutation(len(images)) if rng is not None else onp.arange(len(images))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        X = np.array(images[idx], dtype='uint8').transpose(0, 3, 1, 2).astype('float32')
        yield (X / 255 - 0.5) / 0.5, labels[idx]


def train_classifier(images, labels, epochs, seed=0, log=print, batch_size=128, progress=False):
    """Train on (N, 64, 64, 1) uint8 images; returns the net.

    With `progress`, a tqdm bar on stderr counts each epoch's batches (on a terminal).
    """
    import mxnet as mx
    mx.random.seed(seed)
    net = build_classifier()
    net.initialize(init.Xavier())
    net.hybridize(static_alloc=True)
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 2e-3})
    rng = seeds.rng(seed, seeds.Stream.CLASSIFIER)
    batches = -(-len(images) // batch_size)
    for epoch in range(1, epochs + 1):
        total = 0.0
        with progress_bar(batches, f'classifier epoch {epoch}/{epochs}', 'batch', progress) as bar:
            for X, y in _batches(images, labels, batch_size, rng):
                with autograd.record():
                    l = loss(net(X), np.array(y))
                l.backward()
                trainer.step(len(y))
                total += float(l.sum())
                bar.update(1)
        log(f'classifier epoch {epoch}/{epochs}: loss {total / len(images):.3f}')
    return net


def predict(net, images, batch_size=256):
    """(probabilities (N, 10), predicted labels (N,)) for (N, 64, 64, 1) uint8 images."""
    probs = []
    for X, _ in _batches(images, onp.zeros(len(images), int), batch_size):
        probs.append(np.exp(net(X)).asnumpy())
    p = onp.concatenate(probs)
    p /= p.sum(axis=1, keepdims=True)
    return p, p.argmax(axis=1)


def _load_cached(net, path):
    """Load the cached weights at `path` into `net`, or refuse the file in one line."""
    import stat
    from mxnet.base import MXNetError
    problem = None
    try:
        info = os.stat(path)
    except OSError as exc:
        problem = exc.strerror
    else:
        if not stat.S_ISREG(info.st_mode):
            problem = 'not a regular file'
        elif info.st_size > MAX_CACHED_BYTES:
            problem = f'{info.st_size} bytes, more than its weights take'
    if problem is None:
        try:
            net.load_parameters(path)
        except (MXNetError, AssertionError, ValueError, OSError) as exc:
            problem = last_line(exc)  # MXNet's message is a C++ traceback: its last line
    if problem:
        raise UserError(f'{path} is not a classifier gluon_dcgan saved ({problem}): it is '
                        f'left as it is; move it away or delete it, then run again')


def cached_classifier(folder, images, labels, epochs, log=print, progress=False):
    """(net, checksum, trained_now): load the classifier for this data, or train and save it.

    A cached file that does not load is refused, never replaced: the tool writes only
    a name that is free.
    """
    key = data_checksum(images, labels, epochs)
    path = os.path.join(folder, f'fashion-classifier-{key}.params')
    net = build_classifier()
    if os.path.lexists(path):
        _load_cached(net, path)
        net.hybridize(static_alloc=True)
        return net, key, False
    if os.path.lexists(folder) and not os.path.isdir(folder):  # refused before training
        raise UserError(f'{folder} is not a folder, where trained classifiers are cached: '
                        f'move it away, then run again')
    net = train_classifier(images, labels, epochs, log=log, progress=progress)
    os.makedirs(folder, exist_ok=True)
    if not os.path.lexists(path):  # another process may have saved one meanwhile: keep it
        with written_atomically(path) as tmp:
            net.save_parameters(tmp)
    return net, key, True
