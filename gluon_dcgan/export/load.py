"""Load an export folder back and check it: the other half of export_generator.

Every loader checks the files against the SHA-256 in manifest.json, then runs one
latent through the generator, so a partial, edited or mismatched export is a
one-line UserError naming the fix. The MXNet path uses gluon.SymbolBlock.imports;
the ONNX path uses onnxruntime and numpy only and never imports mxnet.
"""
import hashlib
import os

import numpy as onp

from ..errors import UserError, last_line
from ..files import Damaged, file_digest, read_bounded, read_json
from ..flags import runnable
from . import swap
from .graph import check_graph
from .names import MANIFEST, ONNX, PARAMS, SYMBOL


def reexport():
    """The fix for a bad export, in the program name the user typed."""
    return f're-export with: {runnable("export")} --run RUN_DIR'


MANIFEST_BYTES = swap.MANIFEST_BYTES
# ONNX's protobuf holds at most 2 GiB, so no export's weights are larger.
MAX_FILE_BYTES = 2 << 30
# Bounds on what a manifest may declare, far beyond the chapter's 100 and 3x64x64:
# past them one image, or the latents of one grid, would not fit in memory.
MAX_LATENT_DIM, MAX_SIDE = 4096, 1024


def _load_manifest(folder):
    path = os.path.join(folder, MANIFEST)
    try:
        manifest = read_json(path, MANIFEST_BYTES)
        manifest['latent_dim'] = int(manifest['latent_dim'])
        manifest['files'] = dict(manifest['files'])
        shape = [int(n) for n in manifest['output_shape'][1:]]
        if not 1 <= manifest['latent_dim'] <= MAX_LATENT_DIM or len(shape) != 3 or \
                min(shape) < 1:
            raise ValueError('shapes')
    except FileNotFoundError:
        if os.path.isfile(os.path.join(folder, 'export', MANIFEST)):
            raise UserError(f'{folder} is a run folder: give --export '
                            f'{os.path.join(folder, "export")}')
        raise UserError(f'{folder} has no {MANIFEST}: it is not a complete export; {reexport()}')
    except OSError as exc:  # a folder in its place, no permission
        raise UserError(f'cannot read {path} ({exc.strerror}); {reexport()}')
    except (ValueError, KeyError, TypeError, IndexError, OverflowError):  # not our JSON
        raise UserError(f'{path} is damaged; {reexport()}')  # files.Damaged too
    if max(shape[1:]) > MAX_SIDE:
        raise UserError(f'{path} says the generator makes {shape[1]}x{shape[2]} images, '
                        f'larger than the {MAX_SIDE}x{MAX_SIDE} generate and evaluate can '
                        f'hold: it is not an export of this tool; {reexport()}')
    manifest['output_shape'] = ['N'] + shape
    return manifest


def _checked_file(folder, manifest, name):
    """`name` in the export, refused unless a regular file of bounded size matching its SHA-256."""
    file = os.path.join(folder, name)
    try:
        info = os.stat(file)
        if not os.path.isfile(file) or info.st_size > MAX_FILE_BYTES:  # a FIFO, /dev/zero
            raise UserError(f'{file} is not an export\'s file (not a regular file, or over '
                            f'{MAX_FILE_BYTES >> 30} GiB); {reexport()}')
        digest = file_digest(file)
    except FileNotFoundError:
        raise UserError(f'{folder} lacks {name}: the export is partial; {reexport()}')
    except OSError as exc:
        raise UserError(f'cannot read {file} ({exc.strerror}); {reexport()}')
    _check_digest(file, digest, manifest, name)
    return file


def _check_digest(file, digest, manifest, name):
    if digest != manifest['files'].get(name):
        raise UserError(f'{file} does not match the SHA-256 in {MANIFEST} (changed or '
                        f'truncated); {reexport()}')


def read_manifest(folder, needed):
    """The export's manifest, after checking `needed` files exist and match their SHA-256.

    First puts back an export that a killed swap left half way (swap.heal).
    """
    swap.heal(folder)
    if not os.path.isdir(folder):
        what = 'is not a folder' if os.path.exists(folder) else 'does not exist'
        raise UserError(f'export folder {folder!r} {what}: point --export at a run\'s '
                        f'export/ folder')
    manifest = _load_manifest(folder)
    for name in needed:
        _checked_file(folder, manifest, name)
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
                            f'size, and this one may have a fixed batch of 1; {reexport()}')
        raise UserError(f'the generator in {folder} does not run on a latent of size {latent} '
                        f'as {MANIFEST} says ({last_line(exc)}): its graph, weights and '
                        f'manifest disagree; {reexport()}')


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
                        f'{reexport()}')
    for batch in (1, 2):
        out = _run(folder, forward, manifest, batch)
        if tuple(out.shape[1:]) != expected:
            raise UserError(f'the generator in {folder} makes images of shape '
                            f'{tuple(out.shape[1:])}, but {MANIFEST} says {expected}: '
                            f'{reexport()}')
        if out.shape[0] != batch:
            raise UserError(f'the generator in {folder} makes {out.shape[0]} image(s) from '
                            f'{batch} latent(s): its graph has a fixed batch size, and '
                            f'generate needs any; {reexport()}')


def pixels_of(folder, forward, manifest, Z):
    """(N, H, W, C) uint8 pixels of forward(Z), in passes of bounded size (images_in_chunks),
    each checked to be one image of the manifest's shape per latent."""
    from ..images import images_in_chunks
    expected = tuple(manifest['output_shape'][1:])

    def checked(batch):
        out = forward(batch)
        if tuple(out.shape) != (len(batch),) + expected:
            raise UserError(f'the generator in {folder} makes images of shape '
                            f'{tuple(out.shape)} from {len(batch)} latents, but {MANIFEST} '
                            f'says {expected} each: {reexport()}')
        return out
    return images_in_chunks(checked, Z, image_shape=expected)


def check_memory(manifest, num, most, what):
    """Refuse `num` images whose latents and pixels take more memory than `most` images of
    the chapter's (64x64 RGB from 100 latents); `what` names the flag to lower."""
    latent, (c, h, w) = manifest['latent_dim'], manifest['output_shape'][1:]
    each, limit = 4 * latent + c * h * w, most * (4 * 100 + 3 * 64 * 64)
    if num * each > limit:
        raise UserError(f'{num} images of {c}x{h}x{w} pixels from {latent} latents need '
                        f'{num * each / 1e6:.0f} MB, more than the {limit / 1e6:.0f} MB of '
                        f'{most} 64x64 images: lower {what} (at most {limit // each} images)')


def load_mxnet_generator(folder, ctx=None):
    """(SymbolBlock, manifest) from an export folder."""
    import warnings
    from mxnet import gluon
    manifest = read_manifest(folder, (SYMBOL, PARAMS))
    _check_symbol(os.path.join(folder, SYMBOL), manifest)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net = gluon.SymbolBlock.imports(os.path.join(folder, SYMBOL), ['data'],
                                            os.path.join(folder, PARAMS), ctx=ctx)
    except Exception as exc:  # MXNetError, AssertionError: files that do not fit together
        raise UserError(f'cannot load the generator in {folder} ({last_line(exc)}): the '
                        f'graph and weights do not match; {reexport()}')
    check_shapes(folder, mxnet_forward(net, ctx), manifest)
    return net, manifest


def _check_symbol(path, manifest):
    """Refuse a graph MXNet's JSON reader could not parse safely (it recurses without limit)."""
    try:
        text = read_bounded(path, MAX_FILE_BYTES)
        _check_digest(path, hashlib.sha256(text).hexdigest(), manifest, SYMBOL)
        check_graph(text, path)
    except Damaged as exc:
        raise UserError(f'{exc}: the export is damaged; {reexport()}')
    except OSError as exc:
        raise UserError(f'cannot read {path} ({exc.strerror}); {reexport()}')


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
    model, manifest = read_onnx(folder)
    return onnx_runner(folder, model, manifest), manifest


def read_onnx(folder):
    """(the bytes of generator.onnx, manifest), the bytes checked against their SHA-256:
    what share copies is what was checked, and what onnx_runner then runs."""
    manifest = read_manifest(folder, ())
    return _onnx_bytes(folder, manifest), manifest


def onnx_runner(folder, model, manifest):
    """The ONNX `model` (bytes of the export in `folder`) as a function Z -> images, after
    check_shapes ran it on 1 and 2 latents."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError('--onnx needs onnxruntime: pip install onnxruntime')
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: failures become the one line below
    try:
        session = ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph: not a usable model
        raise UserError(f'cannot load {os.path.join(folder, ONNX)} ({last_line(exc)}); '
                        f'{reexport()}')
    name = session.get_inputs()[0].name
    run = lambda Z: session.run(None, {name: Z})[0]
    check_shapes(folder, run, manifest)
    return run


def _onnx_bytes(folder, manifest):
    """generator.onnx read once, bounded, and checked against its SHA-256: the bytes loaded."""
    path = os.path.join(folder, ONNX)
    try:
        model = read_bounded(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise UserError(f'{folder} lacks {ONNX}: the export is partial; {reexport()}')
    except Damaged as exc:
        raise UserError(f'{exc}: it is not an export\'s file; {reexport()}')
    except OSError as exc:
        raise UserError(f'cannot read {path} ({exc.strerror}); {reexport()}')
    _check_digest(path, hashlib.sha256(model).hexdigest(), manifest, ONNX)
    return model


def generate_onnx(folder, Z):
    """(N, C, H, W) float32 in [-1, 1] from export/generator.onnx, without MXNet."""
    run, manifest = load_onnx_generator(folder)
    return run(Z), manifest
