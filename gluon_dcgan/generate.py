"""generate: images from an exported generator, with no model code.

The MXNet path loads export/ with gluon.SymbolBlock.imports. The --onnx path
uses onnxruntime and numpy only and never imports mxnet.
"""
import json
import os

import numpy as onp

from .errors import UserError
from .files import file_digest

SYMBOL, PARAMS, MANIFEST, ONNX = ('generator-symbol.json', 'generator-0000.params',
                                  'manifest.json', 'generator.onnx')


def read_manifest(folder, needed):
    """The export's manifest, after checking `needed` files exist and match their SHA-256."""
    if not os.path.isdir(folder):
        raise UserError(f'export folder {folder!r} does not exist: point --export at a run\'s '
                        f'export/ folder')
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
        latent = int(manifest['latent_dim'])
        files = manifest['files']
    except FileNotFoundError:
        raise UserError(f'{folder} has no {MANIFEST}: it is not a complete export; '
                        f're-export with: python run.py export --run RUN_DIR')
    except (ValueError, KeyError, TypeError):
        raise UserError(f'{path} is damaged; re-export with: python run.py export --run RUN_DIR')
    for name in needed:
        file = os.path.join(folder, name)
        if not os.path.exists(file):
            raise UserError(f'{folder} lacks {name}: the export is partial; re-export with: '
                            f'python run.py export --run RUN_DIR')
        if file_digest(file) != files.get(name):
            raise UserError(f'{file} does not match the SHA-256 in {MANIFEST} (changed or '
                            f'truncated); re-export with: python run.py export --run RUN_DIR')
    manifest['latent_dim'] = latent
    return manifest


def latent_noise(num, latent_dim, seed):
    """The noise behind generated images: N(0, 1) float32 from numpy's RandomState(seed)."""
    return onp.random.RandomState(seed).normal(0, 1, size=(num, latent_dim, 1, 1)) \
        .astype(onp.float32)


def load_mxnet_generator(folder, ctx=None):
    """(SymbolBlock, manifest) from an export folder."""
    import warnings
    from mxnet import gluon
    manifest = read_manifest(folder, (SYMBOL, PARAMS))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net = gluon.SymbolBlock.imports(os.path.join(folder, SYMBOL), ['data'],
                                            os.path.join(folder, PARAMS), ctx=ctx)
    except Exception as exc:  # MXNetError, AssertionError: files that do not fit together
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f'cannot load the generator in {folder} ({first}): the graph and '
                        f'weights do not match; re-export with: python run.py export --run RUN_DIR')
    return net, manifest


def generate_mxnet(folder, Z, ctx=None):
    """(N, C, H, W) float32 in [-1, 1] from the MXNet export."""
    from mxnet import np
    net, _ = load_mxnet_generator(folder, ctx)
    return net(np.array(Z, ctx=ctx)).asnumpy()


def load_onnx_generator(folder):
    """(a function Z -> images, manifest) from export/generator.onnx, without MXNet."""
    manifest = read_manifest(folder, (ONNX,))
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError('--onnx needs onnxruntime: pip install onnxruntime')
    session = ort.InferenceSession(os.path.join(folder, ONNX),
                                   providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return (lambda Z: session.run(None, {name: Z})[0]), manifest


def generate_onnx(folder, Z):
    """(N, C, H, W) float32 in [-1, 1] from export/generator.onnx, without MXNet."""
    run, manifest = load_onnx_generator(folder)
    return run(Z), manifest


def pixels_in_chunks(net_G, Z, chunk=256):
    """(N, H, W, C) uint8 images from an MXNet generator, `chunk` latents at a time."""
    from mxnet import np
    from .train.report import to_pixels
    return onp.concatenate([to_pixels(net_G(np.array(Z[i:i + chunk])).asnumpy())
                            for i in range(0, len(Z), chunk)])


def save_grid(images, path):
    """Write generated (N, C, H, W) images in [-1, 1] as one near-square PNG grid."""
    from .train.report import grid, save_png, to_pixels
    save_png(grid(to_pixels(images), cols=int(onp.ceil(onp.sqrt(len(images))))), path)
