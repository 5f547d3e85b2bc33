"""EfficientNet-Lite0 features of images: the 1280-d pool that quality measures compare.

Images come as uint8 (N, H, W, C) pixels, as data sets and saved samples hold them, or
as floats (N, C, H, W) in [-1, 1], as the generator makes them; those become the same
pixels a saved image has (images.to_pixels). C is 1 or 3: grey is repeated to RGB.
Each image is resized to 224x224 with PIL's bicubic filter, as in the port's check
against the PyTorch original (tests/test_quality_features.py).
"""
import numpy as onp

from ..images import to_pixels
from ..progress import progress_bar
from .efficientnet import INPUT_SIZE, load, normalise

FEATURES = 1280


def as_pixels(images):
    """(N, H, W, C) uint8 pixels of uint8 NHWC or float [-1, 1] NCHW images (C = 1 or 3)."""
    x = onp.asarray(images)
    if x.ndim == 4 and x.dtype == onp.uint8 and x.shape[3] in (1, 3):
        return x
    if x.ndim == 4 and onp.issubdtype(x.dtype, onp.floating) and x.shape[1] in (1, 3):
        return to_pixels(x)
    raise ValueError(f'images of shape {x.shape} and dtype {x.dtype}: give uint8 (N, H, W, C) '
                     f'pixels or float (N, C, H, W) values in [-1, 1], with C = 1 or 3')


def resized(pixels, size=INPUT_SIZE):
    """(n, size, size, 3) uint8: each of the (n, H, W, C) pixels resized bicubically, in RGB."""
    from PIL import Image
    out = onp.empty((len(pixels), size, size, 3), onp.uint8)
    for i, image in enumerate(pixels):
        image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        out[i] = onp.asarray(image.convert('RGB').resize((size, size), Image.BICUBIC))
    return out


def extract_features(images, batch_size=32, ctx=None, net=None, progress=False,
                     desc='features'):
    """(N, 1280) float32 EfficientNet-Lite0 features of `images` (see the module docstring).

    `net` is a loaded network (efficientnet.load); by default one is loaded on `ctx`.
    With `progress`, a tqdm bar on stderr counts the images (when stderr is a terminal).
    """
    from mxnet import np
    pixels = as_pixels(images)
    net = net or load(ctx)
    feats = onp.empty((len(pixels), FEATURES), onp.float32)
    with progress_bar(len(pixels), desc, 'image', progress) as bar:
        for i in range(0, len(pixels), batch_size):
            batch = resized(pixels[i:i + batch_size]).transpose(0, 3, 1, 2)  # (b, 3, 224, 224)
            x = np.array(batch, dtype='float32', ctx=ctx)
            feats[i:i + len(batch)] = net.features(normalise(x)).asnumpy()
            bar.update(len(batch))
    return feats
