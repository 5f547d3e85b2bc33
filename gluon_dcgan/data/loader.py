"""Batches: a per-epoch deterministic shuffle of a uint8 image array, normalised on the device.

The order of epoch e depends only on (seed, e), so a resumed run sees exactly the
batches an uninterrupted one would. Slicing happens on a background thread so the
next batch is ready (and, on a GPU, already copying) while this one trains.
"""
import queue
import threading

from ..seeds import Stream, rng


def shard_order(num_images, seed, epoch, rank=0, num_workers=1):
    """The example indices this worker visits in `epoch`.

    Every worker draws the same permutation and takes an equal, disjoint share of
    it, so all workers do the same number of steps (dist_sync needs that).
    """
    order = rng(seed, Stream.SHUFFLE, epoch).permutation(num_images)
    if num_workers == 1:
        return order
    share = num_images // num_workers
    return order[rank * share:(rank + 1) * share]


def batch_slices(order, batch_size, min_size=1):
    """Index arrays of each batch; the last one may be short, as the chapter's keeps it.

    A last batch smaller than `min_size` (the number of devices, each of which
    needs at least one example) is dropped.
    """
    slices = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return slices if not slices or len(slices[-1]) >= min_size else slices[:-1]


def _prefetch(items, depth=2):
    """Iterate `items` (a generator) on a background thread, `depth` ahead."""
    q = queue.Queue(depth)
    done = object()

    def work():
        try:
            for item in items:
                q.put(item)
        finally:
            q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            return
        yield item


def normalize(X):
    """(B, H, W, C) uint8 device array -> the chapter's (B, C, H, W) float32 in [-1, 1].

    Same arithmetic as ToTensor() then Normalize(0.5, 0.5), done on the device.
    """
    X = X.transpose(0, 3, 1, 2).astype('float32') / 255
    return (X - 0.5) / 0.5


def iterate_batches(images, batch_size, seed, epoch, rank=0, num_workers=1, start_batch=0,
                    min_size=1):
    """Yield (batch_index, uint8 batch) for one epoch, prepared on a background thread."""
    slices = batch_slices(shard_order(len(images), seed, epoch, rank, num_workers), batch_size,
                          min_size)
    gen = ((i, images[idx]) for i, idx in enumerate(slices) if i >= start_batch)
    return _prefetch(gen)


def num_batches(num_images, batch_size, num_workers=1, min_size=1):
    """How many steps one epoch takes on each worker (see batch_slices for `min_size`)."""
    share = num_images if num_workers == 1 else num_images // num_workers
    full, rest = divmod(share, batch_size)
    return full + (rest >= min_size if rest else 0)
