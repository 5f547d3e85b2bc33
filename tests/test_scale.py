"""Scale-out on CPU: two contexts in one process (dist_sync clusters: test_launch.py; the CLI
on two contexts: test_hardening.py)."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from gluon_dcgan.model import build_net_D, build_net_G
from gluon_dcgan.train import steps


def _nets(ctxs, seed=3):
    mx.random.seed(seed)
    net_G, net_D = build_net_G(n_G=8), build_net_D(n_D=8)
    steps.initialize(net_G, net_D, ctxs)
    net_D(net_G(np.zeros((1, 100, 1, 1), ctx=ctxs[0])))
    return net_G, net_D


@pytest.mark.unit
def test_two_contexts_keep_identical_parameters():
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net_G, net_D = _nets(ctxs)
    steps.hybridize(net_G, net_D)
    trainer_G, trainer_D = steps.make_trainers(net_G, net_D, 0.005, 0.5, kvstore='local')
    loss = steps.make_loss()
    rng = onp.random.RandomState(0)
    for _ in range(3):
        X = np.array(rng.uniform(-1, 1, (16, 3, 64, 64)).astype('float32'))
        Z = np.array(rng.normal(size=(16, 100, 1, 1)).astype('float32'))
        Xs = gluon.utils.split_and_load(X, ctxs)
        Zs = gluon.utils.split_and_load(Z, ctxs)
        _, fake = steps.update_D(Xs, Zs, net_D, net_G, loss, trainer_D, 16)
        steps.update_G(fake, net_D, loss, trainer_G, 16)
    for net in (net_G, net_D):
        for p in net.collect_params().values():
            if p.grad_req == 'null':
                continue  # BatchNorm statistics stay per device, as in Gluon
            a, b = (d.asnumpy() for d in p.list_data())
            assert onp.array_equal(a, b), p.name


@pytest.mark.unit
def test_summed_gradients_match_one_context():
    """Per-example gradient terms add up across devices.

    BatchNorm is in inference mode, so each example's forward pass is independent,
    and the weight checked is the last Conv2D's: its gradient involves no BatchNorm
    backward (oneDNN's BatchNorm backward uses batch statistics even then).
    """
    rng = onp.random.RandomState(1)
    X = rng.uniform(-1, 1, (8, 3, 64, 64)).astype('float32')
    loss = steps.make_loss()
    grads = []
    for ctxs in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        _, net_D = _nets(ctxs)
        Xs = gluon.utils.split_and_load(np.array(X), ctxs)
        with autograd.record(train_mode=False):
            losses = [loss(net_D(x), np.ones((x.shape[0],), ctx=x.ctx)) for x in Xs]
        autograd.backward(losses)
        weight = net_D[-1].weight
        grads.append(sum(g.asnumpy() for g in weight.list_grad()))
    assert onp.abs(grads[0]).max() > 0
    assert onp.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
