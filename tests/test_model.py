"""Unit: the chapter's shapes, parameter counts, hybridization, one update step."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np

from gluon_dcgan.model import D_block, G_block, count_parameters, widths
from gluon_dcgan.model import net_D as net_D_of, net_G as net_G_of
from gluon_dcgan.train import steps


def _init(block):
    block.initialize(init.Normal(0.02))
    return block


@pytest.mark.parametrize('block, x_shape, y_shape', [
    (lambda: G_block(20), (2, 3, 16, 16), (2, 20, 32, 32)),
    (lambda: G_block(20, strides=1, padding=0), (2, 3, 1, 1), (2, 20, 4, 4)),
    (lambda: net_G_of(), (1, 100, 1, 1), (1, 3, 64, 64)),
    (lambda: D_block(20), (2, 3, 16, 16), (2, 20, 8, 8)),
    (lambda: net_D_of(), (1, 3, 64, 64), (1, 1, 1, 1)),
    (lambda: net_G_of(channels=1), (1, 100, 1, 1), (1, 1, 64, 64)),
])
def test_chapter_shapes(block, x_shape, y_shape):
    net = _init(block())
    assert net(np.zeros(x_shape)).shape == y_shape


def test_parameter_counts_match_the_chapter():
    net_G, net_D = _init(net_G_of()), _init(net_D_of())
    net_G(np.zeros((1, 100, 1, 1)))
    net_D(np.zeros((1, 3, 64, 64)))
    assert count_parameters(net_G) == 3_576_704
    assert count_parameters(net_D) == 2_765_696


def test_hybridized_equals_imperative():
    mx.random.seed(0)
    net_G, net_D = _init(net_G_of(n_G=16)), _init(net_D_of(n_D=16))
    z = np.random.normal(size=(4, 100, 1, 1))
    eager = net_D(net_G(z)).asnumpy()
    net_G.hybridize(static_alloc=True, static_shape=True)
    net_D.hybridize(static_alloc=True, static_shape=True)
    hybrid = net_D(net_G(z)).asnumpy()
    assert onp.abs(eager - hybrid).max() < 1e-5


def test_generator_output_is_in_tanh_range():
    net_G = _init(net_G_of(n_G=8))
    y = net_G(np.random.normal(0, 10, size=(8, 100, 1, 1))).asnumpy()
    assert y.min() >= -1 and y.max() <= 1


def test_relu_discriminator_variant():
    net = net_D_of(activation='relu')
    assert all(type(b.activation).__name__ == 'Activation' for b in net[:4])
    leaky = net_D_of(alpha=0.3)
    assert leaky[0].activation._alpha == 0.3


def test_one_update_step_changes_parameters_and_gives_finite_losses():
    mx.random.seed(0)
    ctx = [mx.cpu()]
    net_G, net_D = net_G_of(n_G=8), net_D_of(n_D=8)
    steps.initialize(net_G, net_D, ctx)
    steps.hybridize(net_G, net_D)
    trainer_G, trainer_D = steps.make_trainers(net_G, net_D, 0.005, 0.5)
    X = np.random.uniform(-1, 1, size=(8, 3, 64, 64))
    Z = np.random.normal(size=(8, 100, 1, 1))
    net_D(net_G(Z))
    before_G = {k: v.data().asnumpy().copy() for k, v in net_G.collect_params().items()}
    before_D = {k: v.data().asnumpy().copy() for k, v in net_D.collect_params().items()}
    loss = steps.make_loss()
    loss_D, fake = steps.update_D([X], [Z], net_D, net_G, loss, trainer_D, 8)
    loss_G = steps.update_G(fake, net_D, loss, trainer_G, 8)
    assert onp.isfinite(float(loss_D[0])) and float(loss_D[0]) > 0
    assert onp.isfinite(float(loss_G[0])) and float(loss_G[0]) > 0
    for before, net in ((before_G, net_G), (before_D, net_D)):
        weights = [k for k in before if k.endswith('weight')]
        assert weights
        for k in weights:
            assert onp.abs(net.collect_params()[k].data().asnumpy() - before[k]).max() > 0, k


def test_widths_are_read_from_the_nets():
    assert widths(net_G_of(16, channels=1)) == (128, 64, 32, 16, 1)
    assert widths(net_D_of(16)) == (16, 32, 64, 128, 1)


def test_the_chapter_module_imports_no_optimisation():
    """model.py is the chapter: its bf16 twin (model_bf16) builds on it, never the reverse."""
    import ast
    import gluon_dcgan.model as model
    tree = ast.parse(open(model.__file__).read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or '' for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names}
    assert imported == {'mxnet.gluon', 'nn'}, imported


def test_the_memory_estimate_leaves_the_run_nets_names_alone():
    """The export's files are keyed by Gluon's process-wide block numbers (batchnorm0, ...)."""
    from gluon_dcgan import memory
    with mx.name.NameManager():
        names = list(net_G_of(8).collect_params())
    with mx.name.NameManager():
        memory.check_training_memory(8, 8, 100, 3, 16, 'cpu')
        assert list(net_G_of(8).collect_params()) == names


def _d_scores(net, x, scale):
    """net_D's logits in training mode for x and for x with its contrast scaled towards grey."""
    from mxnet import autograd
    with autograd.record(train_mode=True):  # BatchNorm on the batch's own statistics
        return net(x).asnumpy().ravel(), net(scale * x).asnumpy().ravel()


def test_the_chapter_discriminator_cannot_see_contrast_and_the_papers_input_layer_can():
    """Why --d-input-norm none exists: docs/quality.md (the demo's grey samples).

    The chapter's net_D normalises a batch by its own statistics after a convolution
    without bias, so a batch scaled by 0.27 towards mid-grey (the demo's samples had a
    quarter of the sprites' contrast) gets the same scores, up to BatchNorm's epsilon.
    With the first block a biased convolution and no BatchNorm, the scores move by about
    their own spread.
    """
    from gluon_dcgan.data.synthetic import make_sprites
    mx.random.seed(0)
    x = np.array(make_sprites(32).transpose(0, 3, 1, 2).astype('float32') / 127.5 - 1)
    chapter, paper = _init(net_D_of(n_D=16)), _init(net_D_of(n_D=16, input_norm=False))
    paper(x)
    bias = paper[0].conv2d.bias  # zero at init; as after a few steps, it is not
    bias.set_data(np.array(onp.random.default_rng(0).normal(0, 0.02, bias.shape)))
    a, b = _d_scores(chapter, x, 0.27)
    assert onp.abs(a - b).max() < 0.1 * a.std()
    a, b = _d_scores(paper, x, 0.27)
    assert onp.abs(a - b).max() > 0.5 * a.std()


def test_the_papers_input_layer_is_a_biased_convolution_without_batchnorm():
    chapter, paper = _init(net_D_of()), _init(net_D_of(input_norm=False))
    for net in (chapter, paper):
        net(np.zeros((1, 3, 64, 64)))
    assert paper[0].batch_norm is None and paper[0].conv2d.bias.shape == (64,)
    assert all(block.batch_norm is not None for block in paper[1:4])
    # The first block's BatchNorm gamma and beta (2 x 64) become the conv's bias (64).
    assert count_parameters(paper) == count_parameters(chapter) - 64
    assert widths(paper) == widths(chapter)
