"""Load an export folder back and check it: the other half of export_generator.

Every loader checks the files against the SHA-256 in manifest.json, then runs one
latent through the generator, so a partial, edited or mismatched export is a
one-line UserError naming the fix. The MXNet path uses gluon.SymbolBlock.imports;
the ONNX path uses onnxruntime and numpy only and never imports mxnet.
"""
import json
import os

import numpy as onp

from ..errors import UserError, last_line
from ..files import file_digest
from .names import MANIFEST, ONNX, PARAMS, SYMBOL

REEXPORT = 're-export with: python run.py export --run RUN_DIR'


def _load_manifest(folder):
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
        manifest['latent_dim'] = int(manifest['latent_dim'])
        manifest['files'] = dict(manifest['files'])
        shape = [int(n) for n in manifest['output_shape'][1:]]
        if manifest['latent_dim'] < 1 or len(shape) != 3 or min(shape) < 1:
            raise ValueError('shapes')
    except FileNotFoundError:
        if os.path.isfile(os.path.join(folder, 'export', MANIFEST)):
            raise UserError(f'{folder} is a run folder: give --export '
                            f'{os.path.join(folder, "export")}')
        raise UserError(f'{folder} has no {MANIFEST}: it is not a complete export; {REEXPORT}')
    except OSError as exc:  # a folder in its place, no permission
        raise UserError(f'cannot read {path} ({exc.strerror}); {REEXPORT}')
    except (ValueError, KeyError, TypeError, IndexError, OverflowError):  # not our JSON
        raise UserError(f'{path} is damaged; {REEXPORT}')
    manifest['output_shape'] = ['N'] + shape
    return manifest


def read_manifest(folder, needed):
    """The export's manifest, after checking `needed` files exist and match their SHA-256."""
    if not os.path.isdir(folder):
        what = 'is not a folder' if os.path.exists(folder) else 'does not exist'
        raise UserError(f'export folder {folder!r} {what}: point --export at a run\'s '
                        f'export/ folder')
    manifest = _load_manifest(folder)
    for name in needed:
        file = os.path.join(folder, name)
        if not os.path.exists(file):
            raise UserError(f'{folder} lacks {name}: the export is partial; {REEXPORT}')
        try:
            digest = file_digest(file)
        except OSError as exc:
            raise UserError(f'cannot read {file} ({exc.strerror}); {REEXPORT}')
        if digest != manifest['files'].get(name):
            raise UserError(f'{file} does not match the SHA-256 in {MANIFEST} (changed or '
                            f'truncated); {REEXPORT}')
    return manifest


def _run(folder, forward, manifest, batch):
    """forward() on `batch` zero latents; a failure is a UserError naming the batch."""
    from ..runtime import native_stderr_silenced
    latent = manifest['latent_dim']
    try:
        with native_stderr_silenced():  # onnxruntime logs its errors to fd 2 as well
            return forward(onp.zeros((batch, latent, 1, 1), onp.float32))
    except Exception as exc:  # MXNetError, onnxruntime's errors: parts that do not fit
        if batch > 1:  # it ran on one latent: mostly a graph made for a fixed batch of 1
            raise UserError(f'the generator in {folder} runs on 1 latent but not on {batch} '
                            f'({last_line(exc)}): generate needs a graph that takes any batch '
                            f'size, and this one may have a fixed batch of 1; {REEXPORT}')
        raise UserError(f'the generator in {folder} does not run on a latent of size {latent} '
                        f'as {MANIFEST} says ({last_line(exc)}): its graph, weights and '
                        f'manifest disagree; {REEXPORT}')


def check_shapes(folder, forward, manifest):
    """Run 1, then 2 latents through the loaded generator: graph, weights and manifest must agree.

    Catches an edited latent_dim or output_shape, weights of another width swapped in
    (with the manifest re-hashed, the SHA-256 checks alone pass), a graph made for a
    fixed batch size, and images that are neither grey nor RGB (no picture to save).
    """
    expected = tuple(manifest['output_shape'][1:])
    if expected[0] not in (1, 3):
        raise UserError(f'the generator in {folder} makes images of {expected[0]} channels '
                        f'({MANIFEST}); only 1 (grey) or 3 (RGB) can be saved as pictures; '
                        f'{REEXPORT}')
    for batch in (1, 2):
        out = _run(folder, forward, manifest, batch)
        if tuple(out.shape[1:]) != expected:
            raise UserError(f'the generator in {folder} makes images of shape '
                            f'{tuple(out.shape[1:])}, but {MANIFEST} says {expected}: '
                            f'{REEXPORT}')
        if out.shape[0] != batch:
            raise UserError(f'the generator in {folder} makes {out.shape[0]} image(s) from '
                            f'{batch} latent(s): its graph has a fixed batch size, and '
                            f'generate needs any; {REEXPORT}')


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
        raise UserError(f'cannot load the generator in {folder} ({last_line(exc)}): the '
                        f'graph and weights do not match; {REEXPORT}')
    check_shapes(folder, mxnet_forward(net, ctx), manifest)
    return net, manifest


def mxnet_forward(net, ctx=None):
    """An MXNet generator as a function: host latents -> host (N, C, H, W) float32."""
    from mxnet import np
    return lambda Z: net(np.array(Z, ctx=ctx)).asnumpy()


def generate_mxnet(folder, Z, ctx=None):
    """(N, C, H, W) float32 in [-1, 1] from the MXNet export."""
    net, _ = load_mxnet_generator(folder, ctx)
    return mxnet_forward(net, ctx)(Z)


def load_onnx_generator(folder):
    """(a function Z -> images, manifest) from export/generator.onnx, without MXNet."""
    manifest = read_manifest(folder, (ONNX,))
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError('--onnx needs onnxruntime: pip install onnxruntime')
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: failures become the one line below
    try:
        session = ort.InferenceSession(os.path.join(folder, ONNX), options,
                                       providers=['CPUExecutionProvider'])
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph: not a usable model
        raise UserError(f'cannot load {os.path.join(folder, ONNX)} ({last_line(exc)}); '
                        f'{REEXPORT}')
    name = session.get_inputs()[0].name
    run = lambda Z: session.run(None, {name: Z})[0]
    check_shapes(folder, run, manifest)
    return run, manifest


def generate_onnx(folder, Z):
    """(N, C, H, W) float32 in [-1, 1] from export/generator.onnx, without MXNet."""
    run, manifest = load_onnx_generator(folder)
    return run(Z), manifest
