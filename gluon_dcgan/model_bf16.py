"""bf16 twins of the chapter's nets, for CPUs with avx512_bf16 (oneDNN): twin_G, twin_D.

A twin is built *from* a chapter net (model.py), on its Parameters, BatchNorms and
activations; only the convolutions are replaced by the bf16 layers below.

The trainable weights stay the chapter's fp32 parameters, in the chapter's
layout; each layer rearranges and casts them inside the graph, so checkpoints,
exports and the Adam state do not change. MXNet 1.9.1 cannot train the chapter's
Conv2DTranspose (Deconvolution) in bf16: its weight gradient crashes (segmentation
fault; bench/bf16_layers.py), so the generator's layers are re-expressed with
Convolution and FullyConnected, which run in bf16:

- k4/s2/p1 Conv2DTranspose: output pixel (2m + ry, 2n + rx) only sees input
  rows {m - 1 + ry, m + ry} and columns {n - 1 + rx, n + rx}, through kernel
  taps ky = 3 - ry - 2dy, kx = 3 - rx - 2dx (dy, dx in {0, 1}): four 2x2
  convolutions, one per output parity, with the transposed convolution's
  FLOPs. They run as one 2x2 convolution with padding 1 and 4x the filters,
  over an (H+1) x (W+1) grid ((1 + 1/H)^2 the FLOPs: +56% at H=4, +6% at
  H=32), followed by depth_to_space and a one-pixel crop (``subpixel_weight``).
- 1x1 -> kxk Conv2DTranspose (stride 1, padding 0): out[o, y, x] =
  sum_i z[i] W[i, o, y, x], a matrix product (FullyConnected) and a reshape.
- Conv2D runs in bf16 as it is: only its input and weight are cast. The
  discriminator's first one (3 input channels) stays fp32 and casts its output
  (``Float32Conv2D``).

MXNet's generic (non-oneDNN) operators are very slow on bf16, so the
generator's layout work (transposes, crop) runs in fp32; BatchNorm and the
activations (oneDNN) take bf16 activations in oneDNN's blocked layout in both
nets. BatchNorm statistics, gamma and beta are fp32 throughout, and both nets'
outputs are fp32, so losses are fp32.
"""
from mxnet.contrib.amp.amp import bfloat16
from mxnet.gluon import nn

DTYPES = ('float32', 'bfloat16')


def cast(F, x, dtype):
    """amp_cast to 'float32' or 'bfloat16' on a numpy-semantics array or symbol.

    amp_cast is a legacy operator, and it needs the dtype object for bf16 (MXNet
    1.9.1 does not understand the string 'bfloat16').
    """
    dtype = bfloat16 if dtype == 'bfloat16' else dtype
    return F.amp_cast(x.as_nd_ndarray(), dtype=dtype).as_np_ndarray()


def _tap_order(F):
    """(16, 16) 0/1 matrix: row (sy, sx, dy, dx) picks kernel tap (ky, kx) =
    (2(1 - dy) + sy, 2(1 - dx) + sx) of a flattened 4x4 kernel (built from eye(16))."""
    rows = F.np.flip(F.np.eye(16).reshape(2, 2, 2, 2, 16), axis=(0, 2))  # (1-dy, sy, 1-dx, sx)
    return F.np.transpose(rows, (1, 3, 0, 2, 4)).reshape(16, 16)


def _transpose(F, x, axes):
    """Legacy transpose: oneDNN runs it for fp32 arrays of up to 4 dimensions."""
    return F.transpose(x.as_nd_ndarray(), axes=axes).as_np_ndarray()


def subpixel_weight(F, weight, channels):
    """(in, out, 4, 4) Conv2DTranspose weight -> (4 * out, in, 2, 2) Convolution weight, fp32.

    Filter block s = (sy, sx) holds the kernel of output parity (ry, rx) =
    (1 - sy, 1 - sx); its tap (dy, dx) is W[3 - ry - 2dy, 3 - rx - 2dx] =
    W[2(1 - dy) + sy, 2(1 - dx) + sx]. The 2x2 convolution with padding 1
    computes output pixel j from input rows {j - 1, j}, which is parity ry's
    window at m = j - ry. depth_to_space puts block s of pixel j at row
    2j + sy = 2(m + ry) + 1 - ry = (2m + ry) + 1: every parity lands one pixel
    below (and right of) where it belongs, hence the crop in ``interleave``.
    The taps are reordered by a (16 x 16) matrix product and in/out swapped by
    one 4-d transpose: both run in oneDNN (MXNet's generic roll and 6-d
    transpose were 10x slower than the convolution's own cost here).
    """
    taps = F.npx.fully_connected(F.npx.reshape(weight, (-5, -5)), _tap_order(F),
                                 num_hidden=16, no_bias=True)     # (in*out, [sy sx dy dx])
    blocks = _transpose(F, F.npx.reshape(taps, (-6, -1, channels, 4, 4)), (2, 1, 0, 3))
    return F.npx.reshape(blocks, (-5, -2, -6, 2, 2))              # (4*out, in, 2, 2)


def interleave(F, y, channels):
    """(B, 4C, H+1, W+1) fp32 parity blocks -> (B, C, 2H+2, 2W+2): depth_to_space.

    Two 4-d transposes that oneDNN runs (MXNet's depth_to_space is a generic
    per-element kernel, and any generic kernel on bf16 data is far slower still).
    The chapter layer's output is this without its border pixels (see ``crop``).
    """
    v = F.npx.reshape(F.npx.reshape(y, (-2, -6, 2, -1, -2, -2)), (-5, -6, 2, -1, -2, -2))
    v = _transpose(F, F.npx.reshape(v, (-2, -2, -5, -2)), (0, 2, 3, 1))  # (2B, C*H, W, 2)
    v = _transpose(F, F.npx.reshape(v, (-6, -1, 2, -2, -5)), (0, 2, 1, 3))  # (B, C*H, 2, 2W)
    return F.npx.reshape(F.npx.reshape(v, (-2, -6, channels, -1, -2, -2)), (-2, -2, -5, -2))


def crop(F, y):
    """Drop the one-pixel border."""
    return F.npx.slice(y, begin=(None, None, 1, 1), end=(None, None, -1, -1))


def to_blocked(F, x, channels, dtype):
    """(B, C, H, W) in a plain layout -> the same values in `dtype` and oneDNN's blocked layout.

    oneDNN's BatchNorm on a plain layout is a slow generic kernel (5x its blocked
    one for fp32 at (256, 64, 32, 32), measured), and oneDNN keeps the layout it
    is given. A depthwise 1x1 convolution with weight 1 copies its input into the
    blocked layout oneDNN's convolutions choose. The weight is a constant, so no
    weight gradient is computed. (A 3x3 one-hot kernel would crop too, but MXNet
    fails to create its bf16 backward primitive.)
    """
    ones = F.np.ones((channels, 1, 1, 1))
    if dtype != 'float32':
        x, ones = cast(F, x, dtype), cast(F, ones, dtype)
    return F.npx.convolution(x, ones, kernel=(1, 1), num_filter=channels,
                             num_group=channels, no_bias=True)


class _ReExpressed:
    """Mixin: compute dtype `dtype` ('bfloat16'; 'float32' for tests), optional fp32 output."""

    def _setup(self, dtype, float32_output):
        if dtype not in DTYPES:
            raise ValueError(f'dtype must be one of {DTYPES}, got {dtype!r}')
        self._compute, self._float32_output = dtype, float32_output

    def _in(self, F, x):
        return x if self._compute == 'float32' else cast(F, x, self._compute)

    def infer_shape(self, x, *args):
        """The weight's in_channels from the input (the graph alone cannot tell it)."""
        shape = list(self.weight.shape)
        shape[self._in_axis] = x.shape[1]
        self.weight.shape = tuple(shape)

    def _out(self, F, y):
        return cast(F, y, 'float32') if self._float32_output and self._compute != 'float32' \
            else y


class SubPixelConv2DTranspose(_ReExpressed, nn.Conv2DTranspose):
    """The chapter's Conv2DTranspose(k4, s2, p1, no bias) as one 2x2 Convolution.

    Same parameter (name, shape, layout) as nn.Conv2DTranspose. Input fp32 or
    bf16; the convolution runs in `dtype`. Output fp32 in a plain layout, or
    (`float32_output=False`, for a BatchNorm) `dtype` in oneDNN's blocked layout.
    """

    def __init__(self, channels, dtype='bfloat16', float32_output=True, **kwargs):
        super().__init__(channels, kernel_size=4, strides=2, padding=1, use_bias=False, **kwargs)
        self._setup(dtype, float32_output)
        self._in_axis = 0  # weight (in, out, 4, 4)
        # oneDNN's bf16 convolution kernels want a multiple of 16 filters; with fewer
        # (the last layer: 4 x 3 = 12) it falls back to a gemm convolution that ran
        # 2x slower than the fp32 Conv2DTranspose. Zero filters pad C to a multiple
        # of 4; their outputs are dropped before the layout work (_drop_padding).
        self._padded = -(-channels // 4) * 4

    def _pad_filters(self, F, weight):
        extra = self._padded - self._channels
        if not extra:
            return weight
        # One zero column, repeated: a slice of `extra` columns would be cut short by a
        # weight with fewer output channels than that (1 channel: 3 zero filters).
        zero = F.npx.slice(F.np.zeros_like(weight), begin=(None, 0, None, None),
                           end=(None, 1, None, None))            # (in, 1, 4, 4)
        return F.np.concatenate([weight] + [zero] * extra, axis=1)

    def _drop_padding(self, F, y):
        """(B, 4 * padded, H+1, W+1) -> (B, 4 * C, H+1, W+1): the zero filters' outputs go
        before the layout work, which would otherwise move padded / C times the data."""
        if self._padded == self._channels:
            return y
        blocks = F.npx.reshape(y, (-2, -6, 4, -1, -2, -2))            # (B, 4, padded, ...)
        kept = F.npx.slice(F.npx.reshape(blocks, (-5, -2, -2, -2)), begin=(None, 0, None, None),
                           end=(None, self._channels, None, None))   # (4B, C, H+1, W+1)
        return F.npx.reshape(F.npx.reshape(kept, (-6, -1, 4, -2, -2, -2)), (-2, -5, -2, -2))

    def hybrid_forward(self, F, x, weight):
        c = self._padded
        w = self._in(F, subpixel_weight(F, self._pad_filters(F, weight), c))
        y = F.npx.convolution(self._in(F, x), w, kernel=(2, 2), pad=(1, 1),
                              num_filter=4 * c, no_bias=True)  # (B, 4c, H+1, W+1)
        # The layout work runs in oneDNN on fp32 only, and its reshapes need a plain
        # layout (reshaping oneDNN's blocked conv output fails to create a reorder):
        # amp_cast gives one, and in fp32 (tests) a generic elementwise op does.
        y = y + 0 if self._compute == 'float32' else cast(F, y, 'float32')
        y = crop(F, interleave(F, self._drop_padding(F, y), self._channels))  # (B, C, 2H, 2W)
        if not self._float32_output:
            # fp32 (tests): a generic op first, whose gradient has a plain layout (the
            # reshapes' backward cannot take the blocked one); bf16: amp_cast's has.
            y = to_blocked(F, y + 0 if self._compute == 'float32' else y, self._channels,
                           self._compute)
        return self.act(y) if self.act is not None else y


class MatmulConv2DTranspose(_ReExpressed, nn.Conv2DTranspose):
    """The chapter's first Conv2DTranspose (1x1 -> kxk, stride 1, padding 0) as FullyConnected.

    Output fp32 in a plain layout, or `dtype` in oneDNN's blocked layout (for a BatchNorm).
    """

    def __init__(self, channels, kernel_size=4, dtype='bfloat16', float32_output=False, **kwargs):
        super().__init__(channels, kernel_size, strides=1, padding=0, use_bias=False, **kwargs)
        self._setup(dtype, float32_output)
        self._in_axis, self._size = 0, kernel_size

    def hybrid_forward(self, F, x, weight):
        k = self._size
        w = _transpose(F, F.npx.reshape(weight, (-2, -1)), (1, 0))  # (out*k*k, in)
        y = F.npx.fully_connected(self._in(F, x), self._in(F, w),
                                  num_hidden=self._channels * k * k, no_bias=True)
        y = F.npx.reshape(y, (-2, self._channels, k, k))                  # (B, out, k, k)
        return self._out(F, y) if self._float32_output else \
            to_blocked(F, y, self._channels, self._compute)


class BF16Conv2D(_ReExpressed, nn.Conv2D):
    """nn.Conv2D (no bias) with input and weight cast to `dtype`; output that or fp32."""

    def __init__(self, channels, kernel_size, strides=1, padding=0, dtype='bfloat16',
                 float32_output=False, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, use_bias=False, **kwargs)
        self._setup(dtype, float32_output)
        self._in_axis = 1  # weight (out, in, k, k)

    def hybrid_forward(self, F, x, weight):
        y = F.npx.convolution(self._in(F, x), self._in(F, weight), name='fwd', **self._kwargs)
        return self._out(F, y)


class Float32Conv2D(_ReExpressed, nn.Conv2D):
    """nn.Conv2D computed in fp32, its output in `dtype` and oneDNN's blocked layout.

    For the discriminator's first layer: with 3 input channels oneDNN's bf16
    convolution is a gemm one, slower than fp32, so it stays fp32. The cast comes
    right after it, so the block's BatchNorm and LeakyReLU run in bf16 on the
    blocked layout. With the cast after LeakyReLU instead, the cast's gradient (plain
    layout) met LeakyReLU's saved blocked fp32 input: its backward reordered both in
    MXNet's temporary space, 128 MB at batch 256, and each of MXNet's
    MXNET_CPU_TEMP_COPY (4) temporary buffers grew to that (measured: peak RSS
    2.38 GB against 1.93 GB with this layer; fp32 training 2.05 GB).
    """

    def __init__(self, channels, kernel_size, strides=1, padding=0, dtype='bfloat16',
                 use_bias=False, **kwargs):
        super().__init__(channels, kernel_size, strides, padding, use_bias=use_bias, **kwargs)
        self._setup(dtype, False)
        self._in_axis = 1  # weight (out, in, k, k)

    def hybrid_forward(self, F, x, weight, bias=None):
        # With a bias (net_D's first block without BatchNorm, model.net_D) Gluon's
        # own kwargs say no_bias=False and the bias goes in as the third input.
        y = F.npx.convolution(x, weight, bias, name='fwd', **self._kwargs)
        return to_blocked(F, y, self._channels, self._compute)


class _TwinBlock(nn.HybridBlock):
    """A chapter G_block or D_block with its convolution replaced by `conv`.

    The BatchNorm and activation are the chapter block's own children, shared, so
    the twin normalises with the same parameters and running statistics.
    """

    def __init__(self, conv, batch_norm, activation, **kwargs):
        super().__init__(**kwargs)
        self.conv, self.batch_norm, self.activation = conv, batch_norm, activation

    def hybrid_forward(self, F, X):
        X = self.conv(X)
        return self.activation(self.batch_norm(X) if self.batch_norm else X)


def _conv_transpose(layer, dtype, float32_output):
    """A chapter Conv2DTranspose re-expressed in bf16, on the layer's own parameters."""
    kernel, stride, pad = layer._kwargs['kernel'], layer._kwargs['stride'], layer._kwargs['pad']
    activation = layer.act._act_type if layer.act is not None else None
    if (kernel, stride, pad) == ((4, 4), (2, 2), (1, 1)):
        return SubPixelConv2DTranspose(layer._channels, dtype, float32_output,
                                       activation=activation, params=layer.params)
    if (stride, pad) == ((1, 1), (0, 0)) and activation is None and not float32_output:
        return MatmulConv2DTranspose(layer._channels, kernel[0], dtype, params=layer.params)
    raise ValueError(f'no bfloat16 form for Conv2DTranspose(k{kernel}, s{stride}, p{pad}); '
                     f'the chapter uses (4, 2, 1) and, on 1x1 inputs, (4, 1, 0)')


def twin_G(net_G, dtype='bfloat16'):
    """A generator computing with bf16 convolutions on the chapter net_G's parameters.

    net_G itself stays the chapter's fp32 graph (samples, checkpoints, exports);
    the twin computes the training steps. Its output is fp32.
    """
    twin = nn.HybridSequential()
    *blocks, last = net_G
    for block in blocks:  # before a BatchNorm, the output stays bf16 and blocked
        twin.add(_TwinBlock(_conv_transpose(block.conv2d_trans, dtype, False),
                            block.batch_norm, block.activation))
    twin.add(_conv_transpose(last, dtype, True))  # tanh, fp32
    return twin


def _conv(layer, dtype, **kwargs):
    k, s, p = layer._kwargs['kernel'], layer._kwargs['stride'], layer._kwargs['pad']
    return dict(channels=layer._channels, kernel_size=k, strides=s, padding=p, dtype=dtype,
                params=layer.params, **kwargs)


def twin_D(net_D, dtype='bfloat16'):
    """A discriminator computing with bf16 convolutions on the chapter net_D's parameters.

    The first convolution stays fp32: with 3 input channels it is 2% of the FLOPs,
    and oneDNN's bf16 one there (a gemm convolution) was slower than fp32. Its
    BatchNorm and LeakyReLU run in bf16 (Float32Conv2D). The logits are fp32.
    """
    twin = nn.HybridSequential()
    *blocks, last = net_D
    for i, block in enumerate(blocks):
        if i == 0:  # the only one that may have a bias (model.net_D's input_norm)
            conv = Float32Conv2D(**_conv(block.conv2d, dtype,
                                         use_bias=block.batch_norm is None))
        else:
            conv = BF16Conv2D(**_conv(block.conv2d, dtype))
        twin.add(_TwinBlock(conv, block.batch_norm, block.activation))
    twin.add(BF16Conv2D(**_conv(last, dtype, float32_output=True)))
    return twin
