"""generate: images from an exported generator, with no model code.

The MXNet path loads export/ with gluon.SymbolBlock.imports. The --onnx path
uses onnxruntime and numpy only and never imports mxnet.
"""
import json
import os

import numpy as onp

from ..errors import UserError
from ..files import file_digest
from ..images import CHUNK, grid, images_in_chunks, save_gif, save_png, square_grid, to_pixels

SYMBOL, PARAMS, MANIFEST, ONNX = ('generator-symbol.json', 'generator-0000.params',
                                  'manifest.json', 'generator.onnx')
MAX_GRID = 10_000  # images in one grid: 100x100 tiles of 64 px, 6602 px square, 131 MB
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


def _first_line(exc):
    lines = [l for l in str(exc).strip().splitlines() if l.strip()]
    # MXNetError's text starts with 'Traceback'; its last line is the reason.
    return (lines[-1] if lines else type(exc).__name__)[:200]


def check_shapes(folder, forward, manifest):
    """Run one latent through the loaded generator: graph, weights and manifest must agree.

    Catches an edited latent_dim or output_shape, and weights of another width swapped
    in (with the manifest re-hashed, the SHA-256 checks alone pass).
    """
    from ..runtime import native_stderr_silenced
    latent, expected = manifest['latent_dim'], tuple(manifest['output_shape'][1:])
    try:
        with native_stderr_silenced():  # onnxruntime logs its errors to fd 2 as well
            out = forward(onp.zeros((1, latent, 1, 1), onp.float32))
    except Exception as exc:  # MXNetError, onnxruntime's errors: parts that do not fit
        raise UserError(f'the generator in {folder} does not run on a latent of size {latent} '
                        f'as {MANIFEST} says ({_first_line(exc)}): its graph, weights and '
                        f'manifest disagree; {REEXPORT}')
    if tuple(out.shape[1:]) != expected:
        raise UserError(f'the generator in {folder} makes images of shape {tuple(out.shape[1:])}'
                        f', but {MANIFEST} says {expected}: {REEXPORT}')


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
        raise UserError(f'cannot load the generator in {folder} ({_first_line(exc)}): the '
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
        raise UserError(f'cannot load {os.path.join(folder, ONNX)} ({_first_line(exc)}); '
                        f'{REEXPORT}')
    name = session.get_inputs()[0].name
    run = lambda Z: session.run(None, {name: Z})[0]
    check_shapes(folder, run, manifest)
    return run, manifest


def generate_onnx(folder, Z):
    """(N, C, H, W) float32 in [-1, 1] from export/generator.onnx, without MXNet."""
    run, manifest = load_onnx_generator(folder)
    return run(Z), manifest


def pixels_in_chunks(net_G, Z, chunk=CHUNK):
    """(N, H, W, C) uint8 images from an MXNet generator, `chunk` latents at a time."""
    return images_in_chunks(mxnet_forward(net_G), Z, chunk)


def save_pixel_grid(pixels, path):
    """Write (N, H, W, C) uint8 images as one near-square PNG grid."""
    save_png(square_grid(pixels), path)


def save_grid(images, path):
    """Write generated (N, C, H, W) images in [-1, 1] as one near-square PNG grid."""
    save_pixel_grid(to_pixels(images), path)


def slerp(z0, z1, t):
    """Spherical interpolation from latent z0 to z1 at fractions t: (len(t),) + z0.shape.

    The direction turns along the great circle between the two directions in equal
    angle steps, and the norm goes linearly from |z0| to |z1|: unlike a straight line,
    whose midpoints are shorter than Gaussian noise ever is, the walk stays where the
    generator was trained (the DCGAN paper's walks; White, 2016). t=0 and t=1 give z0
    and z1 exactly. Parallel or zero ends have no great circle: a straight line then.
    """
    a, b = (onp.asarray(z, onp.float64).ravel() for z in (z0, z1))
    t = onp.asarray(t, onp.float64).reshape(-1, 1)
    na, nb = onp.linalg.norm(a), onp.linalg.norm(b)
    omega = onp.arccos(onp.clip(a @ b / (na * nb), -1, 1)) if na * nb > 0 else 0.0
    if onp.sin(omega) < 1e-6:
        c0, c1 = 1 - t, t
    else:  # coefficients first, so t=0 and t=1 multiply the ends by exactly 1 and 0
        norm = (1 - t) * na + t * nb
        c0 = onp.sin((1 - t) * omega) / onp.sin(omega) * (norm / na)
        c1 = onp.sin(t * omega) / onp.sin(omega) * (norm / nb)
    out = c0 * a + c1 * b
    return out.reshape((len(t),) + onp.shape(z0)).astype(onp.asarray(z0).dtype)


def latent_walk(pairs, steps, latent_dim, seed):
    """(pairs*steps, latent_dim, 1, 1) float32: `pairs` slerp walks of `steps` latents.

    Latents 2k and 2k+1 of latent_noise(2*pairs, ..., seed) are walk k's ends; the
    rows come walk by walk, each from its first end to its second.
    """
    ends = latent_noise(2 * pairs, latent_dim, seed)
    t = onp.linspace(0, 1, steps)
    return onp.concatenate([slerp(ends[2 * k], ends[2 * k + 1], t) for k in range(pairs)])


def save_latent_walk(pixels, steps, png_path, gif_path, ms_per_frame=200):
    """Write walk pixels (pairs*steps, H, W, C) uint8 as a PNG and a GIF.

    The PNG has one row per walk and one column per step. The GIF has one frame
    per step; each frame shows every walk at that step, in a near-square grid.
    """
    save_png(grid(pixels, cols=steps), png_path)
    save_gif([square_grid(pixels[j::steps]) for j in range(steps)], gif_path, ms_per_frame)
