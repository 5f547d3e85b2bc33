"""The small-data recipes (DiffAugment, EMA, TTUR, D's input layer): off by default, exact
on resume."""
import numpy as onp
import pytest

from gluon_dcgan.config import Config, parse_train_args
from live import killed_and_resumed

RUN = ['--data', 'synthetic', '--limit', '96', '--batch-size', '16', '--epochs', '3',
       '--n-G', '16', '--n-D', '16', '--ctx', 'cpu', '--no-progress', '--seed', '11',
       '--recipe', 'small-data', '--d-input-norm', 'none']


def _gan(**fields):
    import mxnet as mx

    from gluon_dcgan.train.loop import GAN
    return GAN(Config(data='synthetic', batch_size=8, n_G=8, n_D=8, **fields), [mx.cpu()])


@pytest.mark.unit
def test_the_chapter_recipe_has_none_of_them():
    gan = _gan()
    assert gan.net_G_ema is None and gan.sampler is gan.net_G
    assert gan.discriminator(1, 0) is gan.net_D_train
    assert gan.trainer_G.learning_rate == gan.trainer_D.learning_rate == 0.005
    assert gan.net_D[0].batch_norm is not None and gan.net_D[0].conv2d.bias is None
    assert _gan(d_input_norm='none').net_D[0].batch_norm is None


@pytest.mark.unit
def test_flags_win_over_the_preset():
    cfg = parse_train_args(['--data', 'synthetic', '--recipe', 'small-data', '--ema', '0.99',
                            '--lr-D', '0.001'])
    assert (cfg.diffaugment, cfg.ema, cfg.lr_G, cfg.lr_D) == \
        ('color,translation,cutout', 0.99, 2e-4, 1e-3)
    cfg = parse_train_args(['--data', 'synthetic'])
    assert (cfg.recipe, cfg.diffaugment, cfg.ema, cfg.lr_G, cfg.lr_D) == \
        ('chapter', None, 0.0, None, None)


@pytest.mark.unit
def test_ttur_gives_each_net_its_rate_and_diffaugment_changes_what_D_sees():
    from mxnet import np
    gan = _gan(lr_G=1e-4, lr_D=4e-4, diffaugment='translation,cutout')
    assert (gan.trainer_G.learning_rate, gan.trainer_D.learning_rate) == (1e-4, 4e-4)
    X = np.array(onp.random.RandomState(0).uniform(-1, 1, (8, 3, 64, 64)).astype('float32'))
    seen = gan.discriminator(1, 0)
    assert not onp.allclose(seen(X).asnumpy(), gan.net_D_train(X).asnumpy())


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run_with_every_recipe(tmp_path):
    ref, out = killed_and_resumed(RUN, tmp_path)
    from mxnet import nd
    for name in ('export/generator-0000.params',
                 'checkpoints/ckpt-E0003-B000000/ema_G.params',
                 'checkpoints/ckpt-E0003-B000000/net_D.params'):
        a, b = nd.load(str(ref / name)), nd.load(str(out / name))
        assert a.keys() == b.keys()
        assert all(onp.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a), name
    # The export holds the average's arrays (under the graph's names), not the live net's.
    def digests(name):
        import hashlib
        return sorted(hashlib.sha1(v.asnumpy().tobytes()).hexdigest()
                      for v in nd.load(str(ref / name)).values())
    last = 'checkpoints/ckpt-E0003-B000000/'
    assert digests('export/generator-0000.params') == digests(last + 'ema_G.params')
    assert digests(last + 'ema_G.params') != digests(last + 'net_G.params')
