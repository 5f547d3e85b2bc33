"""The chapter's DCGAN networks as Gluon HybridBlocks: G_block, D_block, net_G, net_D.

Shapes follow d2l's DCGAN section (NCHW). With the defaults (kernel 4, stride 2,
padding 1) a G_block doubles height and width and a D_block halves them.

``dtype='bfloat16'`` builds the same networks with their convolutions in bf16
(model_bf16.py): same parameters (names, shapes, layout, fp32), another graph.
The default, float32, is the chapter's graph exactly. ``share`` makes a net use
the parameters of an existing one of the same shape, e.g. a bf16 generator that
trains the weights of the fp32 one, which checkpoints and exports keep using.
"""
from mxnet.gluon import nn

from . import model_bf16

# Every block is a HybridBlock, not a plain Block: training hybridizes the nets into
# static graphs, which run faster, and HybridBlock.export (export/) writes the
# generator's graph as a symbol file, which only a static graph has.

# Channel multipliers of the four G_blocks; the discriminator mirrors them.
MULTIPLIERS = (8, 4, 2, 1)


def _params_of(share, name):
    """The Parameters of block `name` in `share` (for Block(params=...)), or None."""
    return None if share is None else getattr(share, name).params


def _conv_transpose(channels, kernel_size, strides, padding, dtype, params, activation=None):
    if dtype == 'float32':
        return nn.Conv2DTranspose(channels, kernel_size, strides, padding, use_bias=False,
                                  activation=activation, params=params)
    # Before a BatchNorm (no activation here) the output stays bf16, in oneDNN's blocked
    # layout, where its BatchNorm is fast; the last layer's tanh output is fp32.
    if (kernel_size, strides, padding) == (4, 2, 1):
        return model_bf16.SubPixelConv2DTranspose(channels, dtype, activation is not None,
                                                  activation=activation, params=params)
    if (strides, padding) == (1, 0) and activation is None:
        return model_bf16.MatmulConv2DTranspose(channels, kernel_size, dtype,
                                                float32_output=False, params=params)
    raise ValueError(f'no bfloat16 form for Conv2DTranspose(k{kernel_size}, s{strides}, '
                     f'p{padding}); the chapter uses (4, 2, 1) and, on 1x1 inputs, (4, 1, 0)')


class G_block(nn.HybridBlock):
    """Conv2DTranspose -> BatchNorm -> ReLU, the generator's basic block."""

    def __init__(self, channels, kernel_size=4, strides=2, padding=1, dtype='float32',
                 share=None, **kwargs):
        super().__init__(**kwargs)
        self.conv2d_trans = _conv_transpose(channels, kernel_size, strides, padding, dtype,
                                            _params_of(share, 'conv2d_trans'))
        self.batch_norm = nn.BatchNorm(params=_params_of(share, 'batch_norm'))
        self.activation = nn.Activation('relu')

    def hybrid_forward(self, F, X):
        return self.activation(self.batch_norm(self.conv2d_trans(X)))


class D_block(nn.HybridBlock):
    """Conv2D -> BatchNorm -> LeakyReLU(alpha), the discriminator's basic block.

    ``activation='relu'`` swaps in a standard ReLU (the chapter's exercise 1).
    With ``dtype='bfloat16'``, ``float32_conv`` keeps the convolution fp32.
    """

    def __init__(self, channels, kernel_size=4, strides=2, padding=1,
                 alpha=0.2, activation='leaky', dtype='float32', float32_conv=False, **kwargs):
        super().__init__(**kwargs)
        if dtype == 'float32':
            self.conv2d = nn.Conv2D(channels, kernel_size, strides, padding, use_bias=False)
        elif float32_conv:
            self.conv2d = model_bf16.Float32Conv2D(channels, kernel_size, strides, padding, dtype)
        else:
            self.conv2d = model_bf16.BF16Conv2D(channels, kernel_size, strides, padding, dtype)
        self.batch_norm = nn.BatchNorm()
        self.activation = (nn.LeakyReLU(alpha) if activation == 'leaky'
                           else nn.Activation('relu'))

    def hybrid_forward(self, F, X):
        return self.activation(self.batch_norm(self.conv2d(X)))


def build_net_G(n_G=64, channels=3, dtype='float32', share=None):
    """The generator: (B, latent_dim, 1, 1) -> (B, channels, 64, 64) in [-1, 1], fp32.

    The latent size is inferred from the first input, as in the chapter.
    `share`: a net_G built by this function whose parameters this one uses.
    """
    net_G = nn.HybridSequential()
    for i, mult in enumerate(MULTIPLIERS):  # from (B, latent_dim, 1, 1); n = n_G
        # i=0: (B, 8n, 4, 4)    stride 1, no padding: 1x1 -> 4x4
        # i=1: (B, 4n, 8, 8)
        # i=2: (B, 2n, 16, 16)
        # i=3: (B, n, 32, 32)
        block = None if share is None else share[i]
        net_G.add(G_block(n_G * mult, strides=1, padding=0, dtype=dtype, share=block) if i == 0
                  else G_block(n_G * mult, dtype=dtype, share=block))
    last = None if share is None else share[len(MULTIPLIERS)].params
    net_G.add(_conv_transpose(channels, 4, 2, 1, dtype, last, activation='tanh'))  # (B, C, 64, 64)
    return net_G


def build_net_D(n_D=64, alpha=0.2, activation='leaky', dtype='float32'):
    """The discriminator: (B, C, 64, 64) -> (B, 1, 1, 1) logits, fp32."""
    net_D = nn.HybridSequential()
    for i, mult in enumerate(reversed(MULTIPLIERS)):  # from (B, C, 64, 64); n = n_D
        # i=0: (B, n, 32, 32)
        # i=1: (B, 2n, 16, 16)
        # i=2: (B, 4n, 8, 8)
        # i=3: (B, 8n, 4, 4)
        # With bf16 the first convolution stays fp32: with 3 input channels it is 2% of
        # the FLOPs, and oneDNN's bf16 one there (a gemm convolution) was slower than
        # fp32. Its BatchNorm and LeakyReLU run in bf16 (model_bf16.Float32Conv2D).
        net_D.add(D_block(n_D * mult, alpha=alpha, activation=activation, dtype=dtype,
                          float32_conv=i == 0))
    if dtype == 'float32':
        net_D.add(nn.Conv2D(1, kernel_size=4, use_bias=False))  # (B, 1, 1, 1)
    else:
        net_D.add(model_bf16.BF16Conv2D(1, 4, dtype=dtype, float32_output=True))  # (B, 1, 1, 1)
    return net_D


def count_parameters(net):
    """Number of trainable scalars (BatchNorm running statistics excluded)."""
    total = 0
    for param in net.collect_params().values():
        if param.grad_req != 'null':
            total += param.data().size
    return total
