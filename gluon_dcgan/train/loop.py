"""One epoch of training: the GAN's two update steps over every batch, and the epoch's sums.

``run_epoch`` only calls ``GAN.step`` (update_D, then update_G); checkpoints,
sample grids, figures and metrics hang off the run in ``epoch_end.EpochEnd``.
"""
import math
import signal
import time

from ..data import loader
from ..progress import progress_bar
from ..seeds import Stream, noise
from . import steps

SYNC_EVERY = 5          # batches between reads of the loss sums (the only host syncs)
# Mean sigmoid output of net_D on real images, on fakes before the D step, on fakes after it.
D_KEYS = ('D_x', 'D_G_z', 'D_G_z2')


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: within an epoch, training stopped after a complete batch.

    A BaseException, like KeyboardInterrupt: raised from a signal handler, it can surface
    inside any code, and a library's `except Exception` must not swallow it.
    """

    def __init__(self, signum, sums=None, next_batch=0):
        super().__init__(signum)
        self.exit_code = 128 + signum
        self.sums, self.next_batch = sums, next_batch


class Diverged(Exception):
    """A loss became NaN or Inf; the message names the epoch and batch."""


class StopFlag:
    """Turn SIGINT/SIGTERM into a flag the loop checks between batches.

    With `raising`, the handler also raises Interrupted at once (outside the loop, where
    there is no batch to finish). The flag is kept either way, because a raise can be
    lost: in a finalizer (__del__ runs wherever the collector does) Python only prints
    it. check() at each stage boundary raises it again.
    """

    def __init__(self, raising=False):
        self.raising, self.signum = raising, None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        if self.raising:
            raise Interrupted(signum)

    def check(self):
        """Raise Interrupted if a signal has arrived."""
        if self.signum:
            raise Interrupted(self.signum)

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)


class GAN:
    """The two nets, their two gluon Trainers and the loss, on the run's devices.

    The loop's whole state: ``gan.net_G``, ``gan.trainer_G``, ``gan.step(X, Z)``.
    """

    def __init__(self, cfg, ctxs, kvstore=None, rank=0, num_workers=1):
        import mxnet as mx
        from ..model import net_D, net_G
        self.cfg, self.ctxs, self.rank, self.num_workers = cfg, ctxs, rank, num_workers
        mx.random.seed(cfg.seed)  # the same seed gives the same initial weights
        self.net_G = net_G(cfg.n_G, cfg.channels)
        self.net_D = net_D(cfg.n_D, cfg.alpha, cfg.d_activation)
        steps.initialize(self.net_G, self.net_D, ctxs)
        # Shapes must be known before trainer states can be loaded.
        from mxnet import np
        self.net_D(self.net_G(np.zeros((1, cfg.latent_dim, 1, 1), ctx=ctxs[0])))
        # The nets stay the chapter's fp32 graphs (samples, checkpoints, export); with
        # bf16, twins built on the same parameters compute the training steps.
        self.net_G_train, self.net_D_train = self.net_G, self.net_D
        if cfg.dtype != 'float32':
            from ..model_bf16 import twin_D, twin_G
            self.net_G_train = twin_G(self.net_G, cfg.dtype)
            self.net_D_train = twin_D(self.net_D, cfg.dtype)
        steps.hybridize(self.net_G, self.net_D, self.net_G_train, self.net_D_train)
        self.trainer_G, self.trainer_D = steps.make_trainers(
            self.net_G, self.net_D, cfg.lr, cfg.beta1, kvstore)
        self.loss = steps.make_loss()

    def step(self, batch_uint8, Z):
        """One D step and one G step on a batch.

        Returns per-device device arrays, all lazy: (loss_D sums, loss_G sums, D_out),
        D_out holding the sums of D(x), D(G(z)) and D(G(z)) after the D step, as D_KEYS."""
        from mxnet import np
        from mxnet.gluon.utils import split_and_load
        Xs = split_and_load(np.array(batch_uint8, dtype='uint8'), self.ctxs, even_split=False)
        Xs = [loader.normalize(X) for X in Xs]  # uint8 crosses to the device, 4x less than float
        Zs = split_and_load(np.array(Z), self.ctxs, even_split=False)
        size = len(batch_uint8) * self.num_workers  # gradients are summed over workers
        D_out = []
        loss_D, fake_Xs = steps.update_D(Xs, Zs, self.net_D_train, self.net_G_train, self.loss,
                                         self.trainer_D, size, D_out)
        loss_G = steps.update_G(fake_Xs, self.net_D_train, self.loss, self.trainer_G, size, D_out)
        return loss_D, loss_G, D_out

    def average_running_stats(self):
        """Give every device the mean of the devices' BatchNorm running statistics.

        Each device normalises its own slice of the batch, so their running
        statistics drift apart; a checkpoint or export holds their mean
        (Parameter._reduce). Averaging after every epoch makes the live nets on
        every device, the checkpoint and the export agree.

        The mean is written into each device's array, not through
        Parameter.set_data: with several devices the Trainers update on their
        kvstore, and set_data resets it, which drops Adam's moments (a local
        store: the checkpoint then held none) or raises (dist_sync).
        """
        if len(self.ctxs) == 1:
            return
        for net in (self.net_G, self.net_D):
            for param in net.collect_params().values():
                if param.grad_req == 'null':
                    copies = param.list_data()
                    mean = sum(c.as_in_ctx(self.ctxs[0]) for c in copies) / len(copies)
                    for copy in copies:
                        copy[:] = mean

    def generate(self, Z):
        """net_G at inference on host noise Z -> host array (N, C, 64, 64) in [-1, 1]."""
        from mxnet import np
        return self.net_G(np.array(Z, ctx=self.ctxs[0])).asnumpy()


class EpochSums:
    """Loss and D-output sums of an epoch: device values are read every SYNC_EVERY batches only.

    `D_examples` counts the examples behind the D sums: a partial epoch saved by an
    older version has loss sums but no D sums, so its means cover the rest of the epoch.
    """

    def __init__(self, epoch, partial=None):
        self.epoch = epoch
        p = partial or {}
        self.loss_D, self.loss_G = p.get('sum_D', 0.0), p.get('sum_G', 0.0)
        self.examples, self.seconds = p.get('examples', 0), p.get('seconds', 0.0)
        self.D = {k: p.get('sum_' + k, 0.0) for k in D_KEYS}
        self.D_examples = p.get('D_examples', 0)
        self.pending = []

    def add(self, batch, loss_D, loss_G, size, D_out=None):
        """Queue one batch's device sums (D_out as GAN.step returns it) until sync()."""
        self.pending.append((batch, loss_D, loss_G, size, D_out))

    def sync(self):
        """Read pending sums (one host sync); stop on the first NaN/Inf with its batch."""
        for batch, loss_D, loss_G, size, D_out in self.pending:
            d = sum(float(x) for x in loss_D)
            g = sum(float(x) for x in loss_G)
            if not (math.isfinite(d) and math.isfinite(g)):
                raise Diverged(f'training diverged: loss_D {d:.3f}, loss_G {g:.3f} at epoch '
                               f'{self.epoch}, batch {batch + 1}')
            self.loss_D, self.loss_G, self.examples = self.loss_D + d, self.loss_G + g, \
                self.examples + size
            if D_out is not None:
                for k, per_device in zip(D_KEYS, D_out):
                    self.D[k] += sum(float(x) for x in per_device)
                self.D_examples += size
        self.pending = []

    def means(self):
        """{'loss_D', 'loss_G', 'D_x', 'D_G_z', 'D_G_z2'}: per-example means so far."""
        means = {'loss_D': self.loss_D / self.examples, 'loss_G': self.loss_G / self.examples}
        if self.D_examples:
            means.update({k: self.D[k] / self.D_examples for k in D_KEYS})
        return means

    def partial(self, batch):
        """The sums so far, as JSON for a mid-epoch checkpoint (read back by __init__)."""
        return {'batch': batch, 'sum_D': self.loss_D, 'sum_G': self.loss_G,
                'examples': self.examples, 'seconds': self.seconds,
                'D_examples': self.D_examples, **{'sum_' + k: self.D[k] for k in D_KEYS}}


def _progress_bar(cfg, epoch, total, start):
    return progress_bar(total, f'epoch {epoch}/{cfg.epochs}', 'batch', cfg.progress, start)


def run_epoch(gan, images, epoch, stop, start_batch=0, partial=None):
    """Train one epoch (from `start_batch`); returns its EpochSums, or raises Interrupted."""
    cfg = gan.cfg
    sums = EpochSums(epoch, partial)
    total = loader.num_batches(len(images), cfg.batch_size, gan.num_workers,
                               len(gan.ctxs))
    bar = _progress_bar(cfg, epoch, total, start_batch)
    started = time.time()
    try:
        for batch, X in loader.iterate_batches(images, cfg.batch_size, cfg.seed, epoch,
                                               gan.rank, gan.num_workers, start_batch,
                                               len(gan.ctxs)):
            # Fixed by (seed, epoch, batch), so a resumed run repeats it; the rank gives
            # each worker noise of its own, as it has a share of the data of its own.
            Z = noise(cfg.seed, Stream.NOISE, epoch, batch, gan.rank,
                      shape=(len(X), cfg.latent_dim, 1, 1))
            loss_D, loss_G, D_out = gan.step(X, Z)
            sums.add(batch, loss_D, loss_G, len(X), D_out)
            bar.update(1)
            if len(sums.pending) >= SYNC_EVERY or batch + 1 == total or stop.signum:
                sums.sync()
                seconds = sums.seconds + time.time() - started
                bar.set_postfix({k: f'{v:.3f}' for k, v in sums.means().items()},
                                ex_s=f'{sums.examples * gan.num_workers / seconds:.1f}')
            if stop.signum and batch + 1 < total:
                sums.seconds += time.time() - started
                raise Interrupted(stop.signum, sums, batch + 1)
    finally:
        bar.close()
    sums.sync()
    sums.seconds += time.time() - started
    gan.average_running_stats()
    return sums
