"""Write the trained generator with HybridBlock.export and load it back with SymbolBlock.

export/ holds:
    generator-symbol.json   the graph (HybridBlock.export)
    generator-0000.params   its weights, BatchNorm statistics included
    manifest.json           latent size, output shape and range, pixel recipe,
                            files with SHA-256, versions
The folder is written under a temporary name and renamed when complete, so an
export/ that exists is whole. An existing folder is replaced only if it is an
export (every file in it is listed in its manifest): a user's files are never
deleted.
"""
import hashlib
import json
import os
import shutil

from ..errors import UserError
from ..files import file_digest, remove_leftovers, temporary_folder
from ..images import PIXEL_RECIPE
from .names import EPOCH, MANIFEST, PREFIX


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
    with open(os.path.join(folder, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _export_files(folder):
    """The names of the files an export in `folder` wrote, or None if it is not an export."""
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            files = json.load(f)['files']
        return set(files) | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_target(folder, advice='choose an empty folder, or an existing export to replace'):
    """Refuse an export target that is a file, a link, a run folder, or holds other things.

    An existing export may hold exports of its own (export/best/); anything else in
    it, file or folder, is the user's, and replacing the export would delete it.
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
    listed = _export_files(folder) or set()
    others = sorted(n for n in names if n not in listed and not _is_export(os.path.join(folder, n)))
    if others:
        raise UserError(f'{folder} holds files that are not part of an export '
                        f'({", ".join(others[:3])}{" ..." if len(others) > 3 else ""}): {advice}')


def _is_export(path):
    """A real folder (not a link) holding an export and nothing else, at any depth."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    try:
        check_target(path)
    except UserError:
        return False
    return _export_files(path) is not None


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
    and manifest entries before the folder is put in place. A failure or an
    interrupt leaves `folder` as it was and no temporary files.
    """
    check_target(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    prefix = _partial_prefix(os.path.basename(os.path.abspath(folder)))
    os.makedirs(parent, exist_ok=True)
    remove_leftovers(parent, prefix)  # left by an export that was killed
    with temporary_folder(parent, prefix) as tmp:
        _traced(net_G, latent_dim, ctx).export(os.path.join(tmp, PREFIX), epoch=EPOCH)
        extra = {}
        for writer in extra_writers:
            extra.update(writer(tmp) or {})
        manifest = write_manifest(tmp, latent_dim, channels, image_size, extra)
        _swap_in(tmp, folder)
    return manifest


def _partial_prefix(name):
    """'.NAME.partial-': unique to the target; a long NAME is cut and hashed to fit in 255."""
    if len(name) > 80:
        name = name[:60] + '-' + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    return '.' + name + '.partial-'


def _swap_in(tmp, folder):
    """Replace `folder` by the finished `tmp`, keeping sub-folders such as export/best/.

    Signals wait until the swap is done, so an interrupt cannot lose export/best/.
    """
    import signal
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        if os.path.exists(folder):
            for name in os.listdir(folder):
                if os.path.isdir(os.path.join(folder, name)):
                    os.replace(os.path.join(folder, name), os.path.join(tmp, name))
            shutil.rmtree(folder)  # check_target found only files this tool wrote
        os.replace(tmp, folder)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
