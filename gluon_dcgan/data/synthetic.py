"""The embedded offline dataset: procedural, sprite-like 64x64 RGB images.

Each sprite is a left-right symmetric creature (a union of ellipses with a dark
outline and two eyes) in a saturated colour on a light background. The same seed
always gives the same images, so demos and tests need no network.
"""
import numpy as onp

from .. import seeds

DEFAULT_COUNT = 1024


def _sprite(rng, size):
    yy, xx = onp.mgrid[0:size, 0:size].astype(onp.float32)
    xx = onp.abs(xx - (size - 1) / 2)          # distance from the mirror axis
    body = onp.zeros((size, size), bool)
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0.3, 0.7) * size, rng.uniform(0.0, 0.25) * size
        ry, rx = rng.uniform(0.1, 0.25) * size, rng.uniform(0.08, 0.22) * size
        body |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    # A one-pixel outline: body pixels with a non-body 4-neighbour.
    inner = body.copy()
    inner[1:, :] &= body[:-1, :]
    inner[:-1, :] &= body[1:, :]
    inner[:, 1:] &= body[:, :-1]
    inner[:, :-1] &= body[:, 1:]
    outline = body & ~inner
    background = rng.uniform(225, 255, size=3)
    colour = onp.zeros(3)
    colour[rng.permutation(3)[:2]] = rng.uniform([150, 0], [255, 110])  # saturated hue
    img = onp.empty((size, size, 3), onp.float32)
    img[:] = background
    shade = 0.75 + 0.25 * (1 - yy / size)[..., None]  # lighter on top, like sprite shading
    img[inner] = (colour * shade)[inner]
    img[outline] = colour * 0.3
    eye_y, eye_x = rng.uniform(0.35, 0.5) * size, rng.uniform(0.06, 0.15) * size
    eyes = ((yy - eye_y) ** 2 + (xx - eye_x) ** 2 <= (size / 32) ** 2 + 1) & inner
    img[eyes] = 20
    return img.clip(0, 255).astype(onp.uint8)


def make_sprites(count=DEFAULT_COUNT, seed=0, size=64):
    """(count, size, size, 3) uint8 RGB sprites, deterministic from `seed`."""
    rng = seeds.rng(seed, seeds.Stream.SPRITES)
    return onp.stack([_sprite(rng, size) for _ in range(count)])


def write_image_folder(images, root, class_name='sprites'):
    """Save HWC uint8 images as PNGs in root/class_name/, an ImageFolder the chapter can read."""
    import os
    from PIL import Image
    folder = os.path.join(root, class_name)
    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img.squeeze()).save(os.path.join(folder, f'{i:05d}.png'))
    return root
