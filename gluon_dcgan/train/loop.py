"""The chapter's training loop: ``train``, the ``GAN`` it trains, and an epoch's sums.

``train`` is d2l's ``train(net_D, net_G, data_iter, num_epochs, lr, latent_dim,
device)``: for each epoch, for each batch, draw Z, update_D, update_G and
accumulate the losses. Everything else a run does (progress, the epoch's line,
figures, checkpoints, signals) attaches through hooks (hooks.py), which the loop
calls at the end of each batch and epoch and knows nothing about.
"""
import math
import time

from .. import signals
from ..data import loader
from ..seeds import Stream, noise
from . import steps
from .steps import update_D, update_G

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
        self._previous = signals.install(self._handle)
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
        signals.restore(self._previous)


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
        self.net_D = net_D(cfg.n_D, cfg.alpha, cfg.d_activation,
                           input_norm=cfg.d_input_batch_norm)
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
            self.net_G, self.net_D, cfg.lr, cfg.beta1, kvstore, cfg.lr_G, cfg.lr_D)
        # --ema: samples, checkpoints' ema_G.params and exports come from an average of
        # net_G's weights (ema.py), kept on the first device; training does not see it.
        self.net_G_ema = None
        if cfg.ema:
            from .ema import copy_into
            self.net_G_ema = net_G(cfg.n_G, cfg.channels)
            self.net_G_ema.initialize(ctx=ctxs[0])
            self.net_G_ema(np.zeros((1, cfg.latent_dim, 1, 1), ctx=ctxs[0]))
            copy_into(self.net_G_ema, self.net_G)
            steps.hybridize(self.net_G_ema)
        self.policies = tuple(cfg.diffaugment.split(',')) if cfg.diffaugment else ()
        self.loss = steps.make_loss()

    def batches(self, images, epoch, start_batch=0):
        """(batch index, uint8 images) of this worker's share of `epoch`, from `start_batch`."""
        cfg = self.cfg
        return loader.iterate_batches(images, cfg.batch_size, cfg.seed, epoch, self.rank,
                                      self.num_workers, start_batch, len(self.ctxs))

    def num_batches(self, images):
        """Batches per epoch for this worker."""
        return loader.num_batches(len(images), self.cfg.batch_size, self.num_workers,
                                  len(self.ctxs))

    def noise(self, epoch, batch, size):
        """The batch's latent Z, fixed by (seed, epoch, batch), so a resumed run repeats it;
        the rank gives each worker noise of its own, as it has a share of the data of its own."""
        return noise(self.cfg.seed, Stream.NOISE, epoch, batch, self.rank,
                     shape=(size, self.cfg.latent_dim, 1, 1))

    @property
    def sampler(self):
        """The generator samples and exports come from: the EMA one with --ema."""
        return self.net_G if self.net_G_ema is None else self.net_G_ema

    def discriminator(self, epoch, batch):
        """net_D as the steps of batch `batch` see it: through DiffAugment with --diffaugment."""
        if not self.policies:
            return self.net_D_train
        from .augment import AugmentedD
        return AugmentedD(self.net_D_train, self.policies, self.cfg.seed, epoch, batch,
                          self.rank)

    def to_devices(self, batch_uint8, Z):
        """(Xs, Zs): the batch in [-1, 1] and its noise, one slice per device."""
        from mxnet import np
        from mxnet.gluon.utils import split_and_load
        Xs = split_and_load(np.array(batch_uint8, dtype='uint8'), self.ctxs, even_split=False)
        Xs = [loader.normalize(X) for X in Xs]  # uint8 crosses to the device, 4x less than float
        Zs = split_and_load(np.array(Z), self.ctxs, even_split=False)
        return Xs, Zs

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
        return self.sampler(np.array(Z, ctx=self.ctxs[0])).asnumpy()


class EpochSums:
    """Loss and D-output sums of an epoch, read from the devices one batch behind.

    Reading a batch's sums waits for that batch, so the loop reads the one before
    the newest: the devices always have a batch queued while the host prepares the
    next, and `done` counts the batches that have really finished. `D_examples`
    counts the examples behind the D sums: a partial epoch saved by an older
    version has loss sums but no D sums, so its means cover the rest of the epoch.
    """

    def __init__(self, epoch, partial=None):
        self.epoch = epoch
        p = partial or {}
        self.loss_D, self.loss_G = p.get('sum_D', 0.0), p.get('sum_G', 0.0)
        self.examples, self.seconds = p.get('examples', 0), p.get('seconds', 0.0)
        self.D = {k: p.get('sum_' + k, 0.0) for k in D_KEYS}
        self.D_examples = p.get('D_examples', 0)
        self.done = p.get('batch', 0)  # batches of the epoch finished and read
        self.pending = []
        self._clock = time.time()

    def add(self, batch, loss_D, loss_G, size, D_out=None):
        """Queue one batch's device sums (update_D's and update_G's), read the ones before."""
        self.pending.append((batch, loss_D, loss_G, size, D_out))
        self.sync(keep=1)

    def sync(self, keep=0):
        """Read the pending sums but the newest `keep`; stop on the first NaN/Inf with its batch."""
        ready, self.pending = self.pending[:len(self.pending) - keep], \
            self.pending[len(self.pending) - keep:]
        for batch, loss_D, loss_G, size, D_out in ready:
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
            self.done = batch + 1

    def elapsed(self):
        """Seconds of training in this epoch so far (those of a resumed part included)."""
        return self.seconds + (time.time() - self._clock if self._clock else 0.0)

    def stop_clock(self):
        """Read every pending sum and add the time since the epoch (re)started to `seconds`."""
        self.sync()
        if self._clock:
            self.seconds, self._clock = self.elapsed(), None

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


def _row(epoch, sums, num_workers):
    return {'epoch': epoch, **sums.means(),
            'examples_per_sec': sums.examples * num_workers / sums.seconds,
            'seconds': sums.seconds}


def new_state(epoch=0):
    """Where a run starts: before batch 0 of epoch `epoch` + 1, with no history."""
    return {'epoch': epoch, 'batch': 0, 'history': [], 'partial': None}


def train(gan, images, num_epochs, state, hooks=()):
    """The chapter's training loop over `images`, from where `state` says, up to `num_epochs`.

    `gan` holds the nets, Trainers and loss, built and initialised as the chapter's
    train() does. `state` ({'epoch', 'batch', 'partial', 'history'}) is updated after
    each epoch, so a hook saving it resumes exactly. Each hook may define
    epoch_start(epoch, total, first_batch), batch_end(epoch, batch, metric) and
    epoch_end(epoch, state); a hook stops training by raising Interrupted.
    """
    net_G, loss = gan.net_G_train, gan.loss
    for epoch in range(state['epoch'] + 1, num_epochs + 1):
        # Sums of loss_D, loss_G and examples: the chapter's d2l.Accumulator(3).
        metric = EpochSums(epoch, state['partial'])
        _call(hooks, 'epoch_start', epoch, gan.num_batches(images), state['batch'])
        for batch, X in gan.batches(images, epoch, state['batch']):
            Z = gan.noise(epoch, batch, len(X))
            Xs, Zs = gan.to_devices(X, Z)
            net_D = gan.discriminator(epoch, batch)
            size = len(X) * gan.num_workers  # gradients are summed over workers
            D_out = []
            loss_D, fake_Xs = update_D(Xs, Zs, net_D, net_G, loss, gan.trainer_D, size, D_out)
            loss_G = update_G(fake_Xs, net_D, loss, gan.trainer_G, size, D_out)
            metric.add(batch, loss_D, loss_G, len(X), D_out)
            _call(hooks, 'batch_end', epoch, batch, metric)
        metric.stop_clock()
        gan.average_running_stats()  # several devices: one set of BatchNorm statistics
        state.update(epoch=epoch, batch=0, partial=None,
                     history=state['history'] + [_row(epoch, metric, gan.num_workers)])
        _call(hooks, 'epoch_end', epoch, state)
    return state


def _call(hooks, event, *args):
    for hook in hooks:
        method = getattr(hook, event, None)
        if method is not None:
            method(*args)
