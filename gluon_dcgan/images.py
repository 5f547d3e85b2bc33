"""Generated images as files: the generator's output -> uint8 pixels -> grids -> PNG and GIF.

One conversion serves training's sample grids, `generate`, the exercises and the
export's manifest (PIXEL_RECIPE says it in words for code that has no numpy).
Every file is written through a temporary name (files.written_atomically).
"""
import io

import numpy as onp

from .files import written_atomically

PIXEL_RECIPE = 'pixels = round((x + 1) * 127.5), clipped to [0, 255], as uint8; NCHW -> NHWC'
CHUNK = 256  # latents per forward pass in images_in_chunks: memory stays flat whatever N is
CHUNK_BYTES = CHUNK * 3 * 64 * 64 * 4  # 12.6 MB: the float output of one pass of 64x64 RGB


def to_pixels(images):
    """(N, C, H, W) floats in [-1, 1] (tanh range) -> (N, H, W, C) uint8, as PIXEL_RECIPE says."""
    x = onp.asarray(images, dtype=onp.float32)
    return ((x.transpose(0, 2, 3, 1) + 1) * 127.5).round().clip(0, 255).astype(onp.uint8)


def chunk_size(image_shape=None, chunk=CHUNK):
    """Latents per forward pass: `chunk`, fewer if a pass's float output of (C, H, W)
    `image_shape` images would pass CHUNK_BYTES (one image, if one is larger)."""
    if image_shape is None:
        return chunk
    return max(1, min(chunk, CHUNK_BYTES // (4 * int(onp.prod(image_shape)))))


def images_in_chunks(forward, Z, chunk=CHUNK, image_shape=None):
    """(N, H, W, C) uint8 pixels of forward(Z), computed `chunk` latents at a time.

    `forward` maps host latents to host (n, C, H, W) floats in [-1, 1]; only the
    uint8 result grows with N. Given the (C, H, W) `image_shape`, a pass holds at
    most CHUNK_BYTES of output (chunk_size).
    """
    chunk = chunk_size(image_shape, chunk)
    out = None
    for i in range(0, len(Z), chunk):
        pixels = to_pixels(forward(Z[i:i + chunk]))
        if out is None:
            out = onp.empty((len(Z),) + pixels.shape[1:], onp.uint8)
        out[i:i + len(pixels)] = pixels
    return out


def grid(pixels, cols, pad=2):
    """Tile (N, H, W, C) uint8 images into one (rows*H, cols*W, C) image on white.

    `pad` white pixels separate the tiles and frame the grid; pad=0 butts them together.
    """
    n, h, w, c = pixels.shape
    rows = -(-n // cols)
    canvas = onp.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, onp.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
               pad + k * (w + pad):pad + k * (w + pad) + w] = pixels[i]
    return canvas


def square_grid(pixels):
    """grid() with a near-square layout: ceil(sqrt(N)) columns."""
    return grid(pixels, cols=int(onp.ceil(onp.sqrt(len(pixels)))))


def _pil(image):
    from PIL import Image
    return Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)


def save_png(image, path):
    """Write an (H, W, C) uint8 array as PNG via a temporary file (no half-written PNGs)."""
    with written_atomically(path) as tmp:
        _pil(image).save(tmp, format='PNG')


def png_bytes(image):
    """An (H, W, C) uint8 array as the bytes save_png writes, for a caller that writes
    many files inside a temporary folder of its own (no temporary name per file)."""
    buffer = io.BytesIO()
    _pil(image).save(buffer, format='PNG')
    return buffer.getvalue()


def save_gif(frames, path, ms_per_frame=400):
    """Write (H, W, C) uint8 frames as a looping RGB GIF, `ms_per_frame` each; none: no file."""
    if not len(frames):
        return
    frames = [_pil(f).convert('RGB') for f in frames]
    with written_atomically(path) as tmp:
        frames[0].save(tmp, format='GIF', save_all=True, append_images=frames[1:],
                       duration=ms_per_frame, loop=0)
