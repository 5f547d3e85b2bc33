"""gluon-dcgan share: a static web page that runs an export's generator in the browser.

`share --export DIR --out SITE` writes SITE/ whole: index.html and share.js (the page,
from tools/site/), the export's generator.onnx (the bytes checked against its manifest
and run once here), site.json (shapes and counts), latents.bin, and the WebAssembly
backend of onnxruntime-web (two files of web/node_modules, which `make web` installs
from web/package-lock.json). The page draws the grid of a seed, moves one sample along a
few latent directions, and plays a slerp walk through the grid's tiles, all in the
browser. A browser loads no model from a file:// page: share prints the one command
that serves SITE on 127.0.0.1.

numpy's Gaussian draws (PCG64 seeded through SeedSequence, then a float32 ziggurat)
are not redone in JavaScript: latents.bin carries the latents Python drew, those of
`generate --onnx --seed S --num N` for each seed the page offers, then the sliders'
directions. So a seed's grid is generate's latent for latent, and its pixels differ
only where onnxruntime-web's sums differ from onnxruntime's (tests/test_share.py).
"""
import hashlib
import json
import os
import shlex
from importlib import resources

import numpy as onp

from ..errors import UserError
from ..export.load import onnx_runner, read_onnx
from ..export.names import ONNX
from ..files import Damaged, FolderSwap, read_bounded, read_json
from ..flags import OneLineParser, flag, int_in, non_empty_path, program
from ..images import PIXEL_RECIPE
from ..seeds import Stream, noise
from .latent import latent_noise
from .outputs import folder_to_write, put_in_place

# web/package.json's pin: the onnxruntime version the export was checked with (the
# manifest's onnx_versions), whose CPU kernels the WebAssembly backend compiles.
ORT_WEB_VERSION = '1.26.0'
# The ES module of the WebAssembly backend alone (no WebGL, WebGPU), with its loader bundled
# in, and the SIMD build it fetches from its own folder.
ORT_FILES = ('ort.wasm.bundle.min.mjs', 'ort-wasm-simd-threaded.wasm')
MAX_RUNTIME_BYTES = 64 << 20  # each of them: the .wasm is 13 MB
# The checkout's copy, as `make web` installs it (share runs from an editable install).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_RUNTIME = os.path.join(CHECKOUT, 'web', 'node_modules', 'onnxruntime-web')
PAGE_FILES = ('index.html', 'share.js')  # tools/site/
SITE_JSON, LATENTS = 'site.json', 'latents.bin'
RECORD = '.gluon_dcgan-site.json'  # what share wrote in SITE: the SHA-256 of each file
_RECORD_BYTES = 1 << 16
# How outputs.folder_to_write knows a SITE share wrote whole.
_OWNED = (RECORD, _RECORD_BYTES, 'share', '--out')
# SITE is written whole beside it (.SITE.writing-...) and renamed into place; every entry
# of a SITE is share's (check_owned_folder, under the lock, makes sure), so the old one goes
# whole, and a killed swap brings it back.
SITE = FolderSwap('.writing-', '.replaced-', 'share')
DIRECTIONS, DIRECTIONS_SEED = 4, 0
# A unit direction's share of N(0, 1) noise is itself N(0, 1): +-3 stays where training was.
SLIDER_RANGE = 3
WALK_STEPS = 12  # latents per walk leg, both ends included (generate --steps)
MAX_SEEDS, MAX_NUM = 1000, 64
MAX_LATENT_BYTES = 16 << 20  # latents.bin, which the page downloads before it draws


def _parser():
    p = OneLineParser(prog=program('share'), description=(
        "Write a static web page that runs an export's generator in the browser "
        '(onnxruntime-web, WebAssembly): the grid of a seed, exactly as generate --onnx '
        'draws it; one sample moved along latent directions; a latent walk.'))
    flag(p, 'export', required=True, metavar='DIR', help="a run's export/ folder")
    flag(p, 'out', required=True, type=non_empty_path, metavar='SITE',
         help='the folder to write the site into, made whole beside it and renamed into '
              'place. A SITE share wrote before is replaced; one holding anything else is '
              'refused')
    flag(p, 'seeds', type=int_in(1, MAX_SEEDS), default=16,
         help='the page offers the grids of seeds 0 to N-1 (default: %(default)s)')
    flag(p, 'num', type=int_in(2, MAX_NUM), default=16,
         help=f'images in a grid, 2 to {MAX_NUM} (default: %(default)s)')
    flag(p, 'onnxruntime-web', metavar='DIR', default=DEFAULT_RUNTIME,
         help=f'the onnxruntime-web {ORT_WEB_VERSION} package folder (default: '
              f'web/node_modules/onnxruntime-web, which make web installs)')
    return p


def _runtime(folder):
    """{name: bytes} of the onnxruntime-web files the page loads, from its package `folder`."""
    how = ('run make web (npm ci in web/), or give --onnxruntime-web DIR, the folder of '
           f'onnxruntime-web {ORT_WEB_VERSION}')
    try:
        version = read_json(os.path.join(folder, 'package.json'), 1 << 20).get('version')
        files = {name: read_bounded(os.path.join(folder, 'dist', name), MAX_RUNTIME_BYTES)
                 for name in ORT_FILES}
    except (OSError, Damaged, AttributeError):
        raise UserError(f'the onnxruntime-web files the page needs are not in {folder}: {how}')
    if version != ORT_WEB_VERSION:
        raise UserError(f'{folder} holds onnxruntime-web {version}, not the {ORT_WEB_VERSION} '
                        f'the page is made for: {how}')
    return files


def _page():
    """{name: bytes} of the page's own files, shipped in the package (tools/site/)."""
    try:
        site = resources.files(__package__) / 'site'
        return {name: (site / name).read_bytes() for name in PAGE_FILES}
    except OSError:
        raise UserError('the page\'s files (gluon_dcgan/tools/site/) are missing from this '
                        'installation: reinstall gluon-dcgan')


def directions(latent_dim, count=DIRECTIONS):
    """(min(count, latent_dim), latent_dim) float32 orthonormal directions of the sliders:
    Gaussian draws of the SHARE stream, orthonormalised (QR, signs fixed by R's diagonal)."""
    draws = noise(DIRECTIONS_SEED, Stream.SHARE, shape=(min(count, latent_dim), latent_dim))
    q, r = onp.linalg.qr(draws.astype(onp.float64).T)
    return (q * onp.sign(onp.diag(r))).T.astype(onp.float32)


def site_latents(latent_dim, seeds, num):
    """latents.bin's numbers: latent_noise(num, latent_dim, s) for s in 0..seeds-1, then the
    directions, as one float32 array."""
    grids = [latent_noise(num, latent_dim, seed).reshape(-1) for seed in range(seeds)]
    return onp.concatenate(grids + [directions(latent_dim).reshape(-1)])


def _check_size(seeds, num, latent_dim):
    size = 4 * seeds * num * latent_dim
    if size > MAX_LATENT_BYTES:
        raise UserError(f'--seeds {seeds} x --num {num} latents of {latent_dim} numbers take '
                        f'{size / 1e6:.0f} MB, more than the {MAX_LATENT_BYTES >> 20} MiB a '
                        f'page should download first: lower --seeds or --num')


def _site_json(manifest, model, seeds, num, count):
    return json.dumps({
        'latent_dim': manifest['latent_dim'], 'image': manifest['output_shape'][1:],
        'seeds': seeds, 'num': num, 'directions': count, 'slider_range': SLIDER_RANGE,
        'walk_steps': WALK_STEPS, 'model': ONNX, 'latents': LATENTS,
        'latents_layout': 'float32 little-endian: seeds x num x latent_dim (the latents of '
                          'generate --seed S --num N, seed by seed), then directions x '
                          'latent_dim (orthonormal)',
        'pixels': PIXEL_RECIPE, 'model_sha256': hashlib.sha256(model).hexdigest(),
        'onnxruntime_web': ORT_WEB_VERSION,
        'epochs_trained': manifest.get('epochs_trained')}, indent=1).encode()


def _write_site(folder, files, export):
    """Write `files` ({name: bytes}) and their record into a new folder beside `folder`,
    then put it in `folder`'s place."""
    with SITE.new_folder(folder) as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), 'xb') as f:
                f.write(data)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        put_in_place(SITE, tmp, folder, _OWNED, digests, export=export)


def main(argv):
    """Write the site of an export: checks every input, then the folder whole; returns 0."""
    args = _parser().parse_args(argv)
    folder = folder_to_write(args.out, args.export, *_OWNED)
    files = dict(_page(), **_runtime(args.onnxruntime_web))
    model, manifest = read_onnx(args.export)
    onnx_runner(args.export, model, manifest)  # refuses a model onnxruntime cannot run
    latent_dim = manifest['latent_dim']
    _check_size(args.seeds, args.num, latent_dim)
    latents = site_latents(latent_dim, args.seeds, args.num)
    count = min(DIRECTIONS, latent_dim)
    files.update({ONNX: model, LATENTS: latents.astype('<f4').tobytes(),
                  SITE_JSON: _site_json(manifest, model, args.seeds, args.num, count)})
    _write_site(folder, files, os.path.abspath(args.export))
    size = sum(map(len, files.values())) / 1e6
    print(f'wrote {folder}: {", ".join(files)} ({size:.1f} MB)\n'
          f'serve it with: python -m http.server --bind 127.0.0.1 -d {shlex.quote(folder)} '
          f'8000, then open http://127.0.0.1:8000/', flush=True)
    return 0
