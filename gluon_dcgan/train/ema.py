"""An exponential moving average (EMA) of the generator's weights, for samples and exports.

A GAN's generator oscillates from step to step; the average of its recent weights
makes smoother, more stable samples (Yazıcı et al. 2019; as in ProGAN and StyleGAN)
at no training cost: G itself trains as before, and only samples, exports and
evaluation use the average.

After step t (counted from the start of the run) every trainable weight becomes
    ema = d * ema + (1 - d) * weight,   d = min(decay, (1 + t) / (10 + t)),
the warm-up keeping the first few hundred steps from averaging in the random
initial weights. BatchNorm's running statistics are copied from the live net at
every update, not averaged: they must describe the activations of the averaged
weights, and the live net's are the nearest estimate the run has (the averaged
weights drift slowly, so they agree closely; recomputing them would cost a pass
over the data per sample).

The step count is derived from the training position (epoch, batch), so a resumed
run continues with the same d without saving anything but the averaged weights.
"""


def decay_at(decay, step):
    """The averaging factor after training step `step` (1 for the first)."""
    return min(decay, (1 + step) / (10 + step))


def copy_into(target, source):
    """Set every parameter of `target` (one device) to `source`'s (device 0's copy)."""
    theirs = source._collect_params_with_prefix()
    for name, param in target._collect_params_with_prefix().items():
        param.set_data(theirs[name].data(theirs[name].list_ctx()[0]))


class EMA:
    """Hook (loop.train): update `ema_net` from `net` after every batch."""

    def __init__(self, net, ema_net, decay, batches_per_epoch=None):
        self.net, self.ema_net, self.decay = net, ema_net, decay
        self.per_epoch = batches_per_epoch
        live = net._collect_params_with_prefix()
        self.pairs = [(param, live[name], live[name].grad_req != 'null')
                      for name, param in ema_net._collect_params_with_prefix().items()]

    def epoch_start(self, epoch, total, first_batch):
        self.per_epoch = total

    def batch_end(self, epoch, batch, metric):
        d = decay_at(self.decay, (epoch - 1) * self.per_epoch + batch + 1)
        for average, live, trainable in self.pairs:
            ctx = average.list_ctx()[0]
            value = live.data(live.list_ctx()[0]).as_in_ctx(ctx)
            if trainable:
                average.data(ctx)[:] = d * average.data(ctx) + (1 - d) * value
            else:
                average.data(ctx)[:] = value
