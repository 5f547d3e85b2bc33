"""The chapter's DCGAN networks as Gluon HybridBlocks: G_block, D_block, net_G, net_D.

Shapes follow d2l's DCGAN section (NCHW). With the defaults (kernel 4, stride 2,
padding 1) a G_block doubles height and width and a D_block halves them.
"""
from mxnet.gluon import nn

# Channel multipliers of the four G_blocks; the discriminator mirrors them.
MULTIPLIERS = (8, 4, 2, 1)


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


class D_block(nn.HybridBlock):
    """Conv2D -> BatchNorm -> LeakyReLU(alpha), the discriminator's basic block.

    ``activation='relu'`` swaps in a standard ReLU (the chapter's exercise 1).
    """

    def __init__(self, channels, kernel_size=4, strides=2, padding=1,
                 alpha=0.2, activation='leaky', **kwargs):
        super().__init__(**kwargs)
        self.conv2d = nn.Conv2D(
            channels, kernel_size, strides, padding, use_bias=False)
        self.batch_norm = nn.BatchNorm()
        self.activation = (nn.LeakyReLU(alpha) if activation == 'leaky'
                           else nn.Activation('relu'))

    def hybrid_forward(self, F, X):
        return self.activation(self.batch_norm(self.conv2d(X)))


def build_net_G(n_G=64, channels=3):
    """The generator: (B, latent_dim, 1, 1) -> (B, channels, 64, 64) in [-1, 1].

    The latent size is inferred from the first input, as in the chapter.
    """
    net_G = nn.HybridSequential()
    for i, mult in enumerate(MULTIPLIERS):
        # i=0: (B, 8n, 4, 4) from 1x1; then (B, 4n, 8, 8), (B, 2n, 16, 16), (B, n, 32, 32)
        net_G.add(G_block(n_G * mult, strides=1, padding=0) if i == 0
                  else G_block(n_G * mult))
    net_G.add(nn.Conv2DTranspose(channels, kernel_size=4, strides=2, padding=1,
                                 use_bias=False, activation='tanh'))  # (B, C, 64, 64)
    return net_G


def build_net_D(n_D=64, alpha=0.2, activation='leaky'):
    """The discriminator: (B, C, 64, 64) -> (B, 1, 1, 1) logits."""
    net_D = nn.HybridSequential()
    for mult in reversed(MULTIPLIERS):
        # (B, n, 32, 32), (B, 2n, 16, 16), (B, 4n, 8, 8), (B, 8n, 4, 4)
        net_D.add(D_block(n_D * mult, alpha=alpha, activation=activation))
    net_D.add(nn.Conv2D(1, kernel_size=4, use_bias=False))  # (B, 1, 1, 1)
    return net_D


def count_parameters(net):
    """Number of trainable scalars (BatchNorm running statistics excluded)."""
    total = 0
    for param in net.collect_params().values():
        if param.grad_req != 'null':
            total += param.data().size
    return total
