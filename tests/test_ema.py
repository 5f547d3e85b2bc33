"""Unit: the EMA generator averages the weights and copies the BatchNorm statistics."""
import mxnet as mx
import numpy as onp
from mxnet import init, np

from gluon_dcgan.model import net_G
from gluon_dcgan.train import ema


def _net(seed):
    mx.random.seed(seed)
    net = net_G(4)
    net.initialize(init.Normal(0.02))
    net(np.zeros((1, 8, 1, 1)))
    return net


def test_the_warm_up_then_the_decay():
    assert ema.decay_at(0.999, 1) == 2 / 11
    assert ema.decay_at(0.999, 100_000) == 0.999


def test_one_update_mixes_trainable_weights_and_copies_statistics():
    live, average = _net(0), _net(1)
    before = {k: p.data().asnumpy().copy()
              for k, p in average._collect_params_with_prefix().items()}
    hook = ema.EMA(live, average, decay=0.999, batches_per_epoch=4)
    hook.batch_end(epoch=1, batch=0, metric=None)  # step 1: d = 2/11
    d = 2 / 11
    for name, param in average._collect_params_with_prefix().items():
        new, old = param.data().asnumpy(), before[name]
        live_value = live._collect_params_with_prefix()[name].data().asnumpy()
        if param.grad_req == 'null':  # running mean and variance
            assert onp.array_equal(new, live_value), name
        else:
            assert onp.allclose(new, d * old + (1 - d) * live_value, atol=1e-7), name


def test_copy_into_makes_the_nets_equal():
    a, b = _net(0), _net(1)
    ema.copy_into(b, a)
    z = np.random.normal(size=(2, 8, 1, 1))
    assert onp.array_equal(a(z).asnumpy(), b(z).asnumpy())
