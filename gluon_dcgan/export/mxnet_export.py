"""Write the trained generator with HybridBlock.export and load it back with SymbolBlock.

export/ holds:
    generator-symbol.json   the graph (HybridBlock.export)
    generator-0000.params   its weights, BatchNorm statistics included
    manifest.json           latent size, output shape and range, pixel recipe,
                            files with SHA-256, versions
The folder is written whole under a temporary name, then swapped in (swap.py: a
kill at any step loses neither export/ nor the exports kept inside it, such as
export/best/). An existing folder is replaced only if it is an export (every file
in it is listed in its manifest): a user's files are never deleted.
"""
import json
import os

from ..errors import UserError
from ..files import file_digest, written_atomically
from ..images import PIXEL_RECIPE
from . import swap
from .names import EPOCH, MANIFEST, PREFIX

MAX_NESTING = 8  # exports inside exports: export/best/ is 1; deeper is not ours


def sha256_of(path):
    """Hex SHA-256 of a file."""
    return file_digest(path, 'sha256')


def _versions():
    import mxnet
    import numpy
    return {'mxnet': mxnet.__version__, 'numpy': numpy.__version__}


def write_manifest(folder, latent_dim, channels, image_size, extra=None):
    """manifest.json describing every file in `folder` (written last)."""
    files = sorted(n for n in os.listdir(folder) if n != MANIFEST and
                   os.path.isfile(os.path.join(folder, n)))
    manifest = {
        'latent_dim': latent_dim,
        'input_shape': ['N', latent_dim, 1, 1],
        'input_name': 'data',
        'output_shape': ['N', channels, image_size, image_size],
        'output_range': [-1.0, 1.0],
        'output_activation': 'tanh',
        'to_pixels': PIXEL_RECIPE,
        'noise': 'z ~ N(0, 1), float32',
        'files': {n: sha256_of(os.path.join(folder, n)) for n in files},
        'versions': _versions(),
    }
    manifest.update(extra or {})
    # Atomically: a folder with a manifest.json is a finished export (swap.recover).
    with written_atomically(os.path.join(folder, MANIFEST)) as tmp, open(tmp, 'w') as f:
        json.dump(manifest, f, indent=2)
    return manifest


def check_target(folder, advice='choose an empty folder, or an existing export to replace',
                 depth=0):
    """Refuse an export target that is a file, a link, a run folder, or holds other things.

    An existing export may hold exports of its own (export/best/), up to MAX_NESTING
    deep, and what their swaps leave beside them (swap.is_ours); anything else in it,
    file or folder, is the user's, and replacing the export would delete it.
    """
    if not os.path.lexists(folder):
        return
    if os.path.islink(folder):
        raise UserError(f'{folder} is a symbolic link: give the export a real folder path')
    if not os.path.isdir(folder):
        raise UserError(f'{folder} is a file, not a folder: give the export a folder path')
    names = os.listdir(folder)
    if 'config.json' in names or 'checkpoints' in names:
        raise UserError(f'{folder} is a run folder: export into a new folder, or into '
                        f'{os.path.join(folder, "export")} (the default)')
    listed = swap.export_files(folder) or set()
    others = sorted(n for n in names if n not in listed and not swap.is_ours(n) and
                    not _is_export(os.path.join(folder, n), depth + 1))
    if others:
        raise UserError(f'{folder} holds files that are not part of an export '
                        f'({", ".join(others[:3])}{" ..." if len(others) > 3 else ""}): {advice}')


def _is_export(path, depth):
    """A real folder (not a link) holding an export and nothing else, at most MAX_NESTING deep."""
    if depth > MAX_NESTING or os.path.islink(path) or not os.path.isdir(path):
        return False
    try:
        check_target(path, depth=depth)
    except UserError:
        return False
    return swap.export_files(path) is not None


def _traced(net_G, latent_dim, ctx):
    """A hybridized, traced net_G; keeps the static_alloc/static_shape flags training set."""
    from mxnet import np
    if not net_G._active:  # hybridize() would reset training's static graph flags
        net_G.hybridize()
    if not net_G._cached_graph:
        net_G(np.zeros((1, latent_dim, 1, 1), ctx=ctx))  # export needs a traced graph
    return net_G


def export_generator(net_G, folder, latent_dim, channels, image_size=64, ctx=None,
                     extra_writers=()):
    """Export a hybridized net_G to `folder` (replacing an export there); return the manifest.

    `extra_writers` are callables f(tmp_folder) -> dict that add files (e.g. ONNX)
    and manifest entries before the folder is put in place. A failure, an interrupt
    or a kill leaves `folder` (or, after a kill, what swap.recover puts back) as it
    was and its sub-exports whole; two exporters of one folder take turns.
    """
    folder = swap.target_path(folder)
    check_target(folder)
    if swap.recover(os.path.dirname(folder)):  # export/ was mid-swap (for export/best/)
        check_target(folder)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with swap.lock(folder):
        if swap.recover(folder, locked=True):  # a killed export of this folder
            check_target(folder)
        swap.recover_sub_exports(folder)
        with swap.partial_folder(folder) as tmp:
            _traced(net_G, latent_dim, ctx).export(os.path.join(tmp, PREFIX), epoch=EPOCH)
            extra = {}
            for writer in extra_writers:
                extra.update(writer(tmp) or {})
            manifest = write_manifest(tmp, latent_dim, channels, image_size, extra)
            swap.swap_in(tmp, folder)
    return manifest

