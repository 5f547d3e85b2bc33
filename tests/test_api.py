"""gluon_dcgan.api: what the notebook calls, in process (the notebook itself: test_notebook.py)."""
import io

import numpy as onp
import pytest

from gluon_dcgan import api
from gluon_dcgan.data.synthetic import make_sprites
from gluon_dcgan.errors import UserError

TINY = dict(data='synthetic', batch_size=16, epochs=2, n_G=8, n_D=8, ctx='cpu')


def _trainable(net):
    """The convolution weights of a generator, in layer order (names differ between nets)."""
    return [p.data().asnumpy() for name, p in net.collect_params().items()
            if name.endswith('weight') and p.grad_req != 'null' and p.data().ndim == 4]


@pytest.mark.unit
@pytest.mark.parametrize('field, value, flag', [('eval_every', 1, '--eval-every'),
                                                ('fid_every', 1, '--fid-every')])
def test_train_refuses_what_needs_a_run_folder_in_one_line(field, value, flag):
    cfg = api.config(**TINY, **{field: value})
    with pytest.raises(UserError) as raised:
        api.train(cfg, images=make_sprites(32, seed=0), animate=False, out=io.StringIO())
    message = str(raised.value)
    assert flag in message and 'run.py' in message and '\n' not in message


@pytest.mark.unit
def test_train_with_ema_updates_the_average_that_samples_come_from():
    cfg = api.config(**TINY, ema=0.9)
    out = io.StringIO()
    gan, state = api.train(cfg, images=make_sprites(32, seed=0), animate=False, out=out)
    assert len(state['history']) == 2 and out.getvalue().startswith('loss_D ')
    assert gan.sampler is gan.net_G_ema
    from gluon_dcgan.train.loop import GAN
    initial = GAN(cfg, gan.ctxs).net_G  # the same seed draws the same initial weights
    live, average, start = (_trainable(net) for net in (gan.net_G, gan.net_G_ema, initial))
    # After 4 steps with the warm-up's d = min(0.9, (1+t)/(10+t)), the average has left
    # the initial weights and lags behind the live ones.
    assert len(live) == len(average) == len(start) == 5  # 4 G_blocks and the last layer
    for l, a, s in zip(live, average, start):
        assert not onp.allclose(a, s) and not onp.allclose(a, l)
