"""Write the trained generator with HybridBlock.export and load it back with SymbolBlock.

export/ holds:
    generator-symbol.json   the graph (HybridBlock.export)
    generator-0000.params   its weights, BatchNorm statistics included
    manifest.json           latent size, output shape and range, pixel recipe,
                            files with SHA-256, versions
The folder is written under a temporary name and renamed when complete, so an
export/ that exists is whole.
"""
import json
import os
import shutil

from ..files import file_digest

PREFIX = 'generator'
SYMBOL = f'{PREFIX}-symbol.json'
PARAMS = f'{PREFIX}-0000.params'
MANIFEST = 'manifest.json'
PIXEL_RECIPE = 'pixels = round((x + 1) * 127.5), clipped to [0, 255], as uint8; NCHW -> NHWC'


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


def export_generator(net_G, folder, latent_dim, channels, image_size=64, ctx=None,
                     extra_writers=()):
    """Export a hybridized net_G to `folder` (replacing it whole); return the manifest.

    `extra_writers` are callables f(tmp_folder) -> dict that add files (e.g. ONNX)
    and manifest entries before the folder is put in place.
    """
    from mxnet import np
    parent = os.path.dirname(os.path.abspath(folder))
    tmp = os.path.join(parent, '.' + os.path.basename(folder) + '.partial')
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    net_G.hybridize()
    net_G(np.zeros((1, latent_dim, 1, 1), ctx=ctx))  # export needs a traced graph
    net_G.export(os.path.join(tmp, PREFIX), epoch=0)
    extra = {}
    for writer in extra_writers:
        extra.update(writer(tmp) or {})
    manifest = write_manifest(tmp, latent_dim, channels, image_size, extra)
    if os.path.exists(folder):
        for name in os.listdir(folder):  # sub-exports such as export/best/ stay
            if os.path.isdir(os.path.join(folder, name)):
                os.replace(os.path.join(folder, name), os.path.join(tmp, name))
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return manifest
