"""Data: choose the images (--data), check them, decode them once, and batch them.

Every source ends as an (N, 64, 64, C) uint8 array in memory; ``loader`` turns
slices of it into the chapter's normalised (B, C, 64, 64) batches on the device.
"""
import os

from ..errors import UserError
from . import cache, folder, synthetic


def _names(pairs, root, shown=3):
    names = ', '.join(f'{os.path.relpath(p, root)}' + (f' ({why})' if why else '')
                      for p, why in pairs[:shown])
    return names + (f' and {len(pairs) - shown} more' if len(pairs) > shown else '')


def _check_fits_in_memory(count, cfg):
    """All decoded images live in memory at once: refuse a folder that cannot fit."""
    from ..memory import available_memory_bytes
    need, available = count * cfg.image_size ** 2 * cfg.channels, available_memory_bytes()
    if available is not None and need > available:
        fit = available // (cfg.image_size ** 2 * cfg.channels)
        raise UserError(f'{count} images take {need / 2**30:.1f} GiB decoded, but only '
                        f'{available / 2**30:.1f} GiB of memory is free: use --limit {fit} '
                        f'or fewer')


def _from_folder(root, cfg, log):
    items, note = folder.list_images(root)
    if note:
        log(note)
    others = folder.other_images(root)
    if others:
        log(f'note: {len(others)} file(s) with other image extensions are not read: '
            f'{", ".join(others[:3])}{" ..." if len(others) > 3 else ""}; convert them to '
            f'.png or .jpg to train on them')
    if cfg.limit:
        items = items[:cfg.limit]
    paths, stats, skipped = folder.regular_files([p for p, _ in items])
    if skipped:
        log(f'note: skipping {len(skipped)} entries that are not readable regular files: '
            f'{_names(skipped, root)}')
    if not paths:
        raise UserError(f'no regular image files in {root}: nothing to train on')
    _check_fits_in_memory(len(paths), cfg)
    crop = None if cfg.crop == 'none' else cfg.crop
    not_square = folder.count_not_square(paths)
    if not_square:
        log(f'note: {not_square} of {len(paths)} images are not square: ' +
            ('their central squares are used (--crop center)' if crop else
             "they are stretched to square, as the chapter's Resize(64) does; "
             '--crop center uses their central squares'))
    images, bad = cache.decoded_images(paths, stats, cfg.image_size, cfg.channels,
                                       os.path.join(cfg.data_root, 'decoded'),
                                       cfg.num_workers, log, cfg.progress, crop)
    if bad and not cfg.skip_bad_images:
        raise UserError(f'{len(bad)} unreadable image(s) in {root}: {_names(bad, root)}; '
                        f'fix or remove them, or add --skip-bad-images')  # each with its reason
    if bad:
        log(f'skipping {len(bad)} unreadable image(s): '
            f'{_names([(p, None) for p, _ in bad], root)}')
        if not len(images):
            raise UserError(f'every image in {root} is unreadable: nothing to train on')
    return images


def _to_channels(images, channels):
    if images.shape[-1] == channels:
        return images
    # RGB -> grey with ITU-R 601 weights, as OpenCV's greyscale decode does.
    grey = images[..., :3].astype('float32') @ [0.299, 0.587, 0.114]
    return grey.round().clip(0, 255).astype('uint8')[..., None]


def load_images(cfg, log=print):
    """The training images of `cfg` as an (N, 64, 64, C) uint8 array."""
    if cfg.data == 'synthetic':
        from ..config import check_synthetic_limit
        check_synthetic_limit(cfg)
        images = synthetic.make_sprites(cfg.limit or synthetic.DEFAULT_COUNT, seed=cfg.seed)
    elif cfg.data == 'pokemon':
        from .hub import pokemon_folder, progress_note
        root = pokemon_folder(cfg.data_root, progress_note(cfg.progress))
        images = _from_folder(root, cfg, log)
    elif cfg.data == 'fashion-mnist':
        from .fashion_mnist import load_fashion_mnist
        from .hub import progress_note
        images = load_fashion_mnist(cfg.data_root, train=True, size=cfg.image_size,
                                    log=progress_note(cfg.progress))[0]
        images = images[:cfg.limit] if cfg.limit else images
    else:
        images = _from_folder(cfg.data, cfg, log)
    images = _to_channels(images, cfg.channels)
    if cfg.batch_size > len(images):
        raise UserError(f'--batch-size {cfg.batch_size} is larger than the dataset '
                        f'({len(images)} images): lower it or use more images')
    return images
