"""The fast update steps give the same parameters as d2l's update_D/update_G."""
import mxnet as mx
import numpy as onp
from d2l import mxnet as d2l
from mxnet import np

from gluon_dcgan import model
from gluon_dcgan.train import steps


def _setup(hybrid):
    mx.random.seed(7)  # same initial weights for both paths
    net_G, net_D = model.net_G(n_G=16), model.net_D(n_D=16)
    steps.initialize(net_G, net_D, [mx.cpu()])
    net_D(net_G(np.zeros((1, 100, 1, 1))))  # draw the deferred weights now, under this seed
    if hybrid:
        steps.hybridize(net_G, net_D)
    return (net_G, net_D) + steps.make_trainers(net_G, net_D, 0.005, 0.5)


def test_fast_steps_equal_the_chapters_steps():
    rng = onp.random.RandomState(0)
    batches = [(np.array(rng.uniform(-1, 1, (16, 3, 64, 64)).astype('float32')),
                np.array(rng.normal(size=(16, 100, 1, 1)).astype('float32'))) for _ in range(3)]
    loss = steps.make_loss()
    G1, D1, tG1, tD1 = _setup(hybrid=False)   # the chapter: eager, d2l's own steps
    G2, D2, tG2, tD2 = _setup(hybrid=True)    # ours: hybridized, reuse, input-only grads
    for X, Z in batches:
        chapter = (d2l.update_D(X, Z, D1, G1, loss, tD1), d2l.update_G(Z, D1, G1, loss, tG1))
        loss_D, fake = steps.update_D([X], [Z], D2, G2, loss, tD2, 16)
        loss_G = steps.update_G(fake, D2, loss, tG2, 16)
        assert abs(chapter[0] - float(loss_D[0])) < 1e-4 * max(1, abs(chapter[0]))
        assert abs(chapter[1] - float(loss_G[0])) < 1e-4 * max(1, abs(chapter[1]))
    for a, b in ((G1, G2), (D1, D2)):
        pa, pb = list(a.collect_params().values()), list(b.collect_params().values())
        assert len(pa) == len(pb) > 0
        for x, y in zip(pa, pb):  # BatchNorm running statistics included
            diff = onp.abs(x.data().asnumpy() - y.data().asnumpy()).max()
            assert diff < 1e-5, (x.name, diff)
