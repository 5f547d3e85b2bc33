"""The chapter's DCGAN networks: G_block, net_G, D_block, net_D (d2l, "Deep Convolutional GAN").

This is the chapter's MXNet code with four deliberate changes:
- every block is a HybridBlock (and the nets HybridSequential), see below;
- the widths n_G, n_D and the image channels are arguments, not globals;
- D_block takes `activation`, for the chapter's exercise 1 (ReLU instead of leaky ReLU);
- D_block takes `batch_norm`, so that net_D's first block can be the DCGAN paper's
  input layer (a convolution with a bias, no BatchNorm): off by default, see net_D.
Shapes are NCHW. With the defaults (kernel 4, stride 2, padding 1) a G_block doubles
height and width and a D_block halves them. The bf16 graph that trains faster on
CPUs with avx512_bf16 is a twin built from these nets (model_bf16.py).
"""
from mxnet.gluon import nn

# HybridBlock, not the chapter's Block: training hybridizes the nets into static
# graphs, which run faster, and HybridBlock.export (export/) writes the generator's
# graph as a symbol file, which only a static graph has. So `forward` is written as
# `hybrid_forward(self, F, X)`, whose F is mxnet.ndarray or mxnet.symbol.


class G_block(nn.HybridBlock):
    """Conv2DTranspose -> BatchNorm -> ReLU, the generator's basic block."""

    def __init__(self, channels, kernel_size=4, strides=2, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.conv2d_trans = nn.Conv2DTranspose(
            channels, kernel_size, strides, padding, use_bias=False)
        self.batch_norm = nn.BatchNorm()
        self.activation = nn.Activation('relu')

    def hybrid_forward(self, F, X):
        return self.activation(self.batch_norm(self.conv2d_trans(X)))


def net_G(n_G=64, channels=3):
    """The generator: (B, latent_dim, 1, 1) noise -> (B, channels, 64, 64) images in [-1, 1].

    The latent size (the chapter's 100) is inferred from the first input.
    """
    net_G = nn.HybridSequential()
    net_G.add(G_block(n_G*8, strides=1, padding=0),  # Output: (64 * 8, 4, 4)
              G_block(n_G*4),  # Output: (64 * 4, 8, 8)
              G_block(n_G*2),  # Output: (64 * 2, 16, 16)
              G_block(n_G),    # Output: (64, 32, 32)
              nn.Conv2DTranspose(
                  channels, kernel_size=4, strides=2, padding=1, use_bias=False,
                  activation='tanh'))  # Output: (3, 64, 64)
    return net_G


class D_block(nn.HybridBlock):
    """Conv2D -> BatchNorm -> LeakyReLU(alpha), the discriminator's basic block.

    ``activation='relu'`` swaps in a standard ReLU (the chapter's exercise 1).
    ``batch_norm=False`` gives Conv2D (with a bias) -> LeakyReLU.
    """

    def __init__(self, channels, kernel_size=4, strides=2, padding=1, alpha=0.2,
                 activation='leaky', batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        # A BatchNorm would cancel a bias (it subtracts the mean), so only a block
        # without one has a bias.
        self.conv2d = nn.Conv2D(
            channels, kernel_size, strides, padding, use_bias=not batch_norm)
        self.batch_norm = nn.BatchNorm() if batch_norm else None
        self.activation = (nn.LeakyReLU(alpha) if activation == 'leaky'
                           else nn.Activation('relu'))

    def hybrid_forward(self, F, X):
        X = self.conv2d(X)
        return self.activation(self.batch_norm(X) if self.batch_norm else X)


def net_D(n_D=64, alpha=0.2, activation='leaky', input_norm=True):
    """The discriminator: (B, channels, 64, 64) images -> (B, 1, 1, 1) logits.

    ``input_norm=False`` makes the first block the DCGAN paper's input layer, without
    BatchNorm and with a bias. Why: in training mode the chapter's net_D normalises
    each batch by its own statistics, and its convolutions have no bias and leaky
    ReLU is positively homogeneous, so it scores a batch of images and the same batch
    with all contrast scaled towards grey alike. It cannot tell the generator that
    its images are too grey; with the bias it can (docs/quality.md measures both).
    """
    net_D = nn.HybridSequential()
    net_D.add(D_block(n_D, alpha=alpha, activation=activation,
                      batch_norm=input_norm),                       # Output: (64, 32, 32)
              D_block(n_D*2, alpha=alpha, activation=activation),  # Output: (64 * 2, 16, 16)
              D_block(n_D*4, alpha=alpha, activation=activation),  # Output: (64 * 4, 8, 8)
              D_block(n_D*8, alpha=alpha, activation=activation),  # Output: (64 * 8, 4, 4)
              nn.Conv2D(1, kernel_size=4, use_bias=False))  # Output: (1, 1, 1)
    return net_D


def convolutions(net):
    """The (transposed) convolution of each of a chapter net's five layers."""
    return [getattr(layer, 'conv2d_trans', None) or getattr(layer, 'conv2d', layer)
            for layer in net]


def widths(net):
    """The output channels of each of a net's five layers, e.g. (512, 256, 128, 64, 3)."""
    return tuple(conv._channels for conv in convolutions(net))


def count_parameters(net):
    """Number of trainable scalars (BatchNorm running statistics excluded)."""
    total = 0
    for param in net.collect_params().values():
        if param.grad_req != 'null':
            total += param.data().size
    return total

