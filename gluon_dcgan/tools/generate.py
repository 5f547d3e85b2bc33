"""run.py generate: images from an exported generator, with no model code.

The images go into one PNG grid (--output), latent walks (--interpolate), or one
PNG file each (--out-dir), the folder FID tools such as pytorch-fid, clean-fid and
torch-fidelity read. The MXNet path loads export/ with gluon.SymbolBlock.imports.
The --onnx path uses onnxruntime and numpy only and never imports mxnet.
"""
import hashlib
import os
import sys

from ..errors import UserError
from ..export.load import (check_memory, load_mxnet_generator, load_onnx_generator,
                           mxnet_forward, pixels_of)
from ..flags import (OneLineParser, flag, int_in, non_empty_path, positive_int, program,
                     seed_int)
from ..files import FolderSwap
from ..images import chunk_size, grid, png_bytes, save_gif, save_png, square_grid
from .latent import latent_noise, latent_walk
from .outputs import folder_to_write, put_in_place
from ..progress import progress_bar

MAX_GRID = 10_000  # images in one grid: 100x100 tiles of 64 px, 6602 px square, 131 MB
NUM_GRID, NUM_FILES = 21, 1000  # --num's default for a grid and for --out-dir
# Images of one --out-dir. Their latents are one latent_noise draw, so they are the
# grid's whatever chunks would do to the stream: 40 MB at the chapter's 100 numbers
# each; wider latents are bounded by MAX_LATENT_BYTES.
MAX_FILES, MAX_LATENT_BYTES = 100_000, 400 << 20
# The --out-dir's record of what generate wrote there (the SHA-256 of each image), and
# the names beside it of a folder being written and of one being replaced.
FOLDER_RECORD = '.gluon_dcgan-images.json'
_RECORD_BYTES = 200 * MAX_FILES  # about 85 bytes an image
# How outputs.folder_to_write knows an --out-dir generate wrote whole.
_OWNED = (FOLDER_RECORD, _RECORD_BYTES, 'generate', '--out-dir')
WRITING, REPLACED = '.writing-', '.replaced-'
# The --out-dir's swap: every entry of the folder is generate's (check_owned_folder, under the
# lock, makes sure), so the old folder goes whole, and a killed swap brings it back.
IMAGES = FolderSwap(WRITING, REPLACED, 'generate')

_walk_steps = int_in(2, MAX_GRID)


def _parser():
    p = OneLineParser(prog=program('generate'),
                      description='Write a grid of generated images from an exported generator, '
                                  'or (--interpolate) latent walks as a PNG grid and a GIF, '
                                  'or (--out-dir) one PNG file per image for FID tools.')
    flag(p, 'export', required=True, metavar='DIR', help="a run's export/ folder")
    flag(p, 'num', type=int_in(1, MAX_FILES), default=None,
         help=f'images: at most {MAX_GRID:,} in a grid (default: {NUM_GRID}), at most '
              f'{MAX_FILES:,} as files with --out-dir (default: {NUM_FILES})')
    flag(p, 'seed', type=seed_int, default=0,
         help='noise seed in [0, 2**32) (default: %(default)s)')
    flag(p, 'output', type=non_empty_path, metavar='FILE.png',
         help='where to write the grid (or, with --interpolate, the walks)')
    flag(p, 'out-dir', type=non_empty_path, metavar='DIR',
         help='instead of --output: write each image as its own PNG, 00000.png, 00001.png, '
              '... (tile i of the grid of the same --num and --seed), into DIR, made whole '
              'beside it and renamed into place at the end. A DIR of an earlier --out-dir '
              'is replaced; a DIR holding anything else is refused')
    flag(p, 'interpolate', type=positive_int, metavar='K',
         help='instead of --num images: K latent walks, each between two noise '
              'vectors drawn from --seed, by spherical interpolation (slerp); '
              'writes a grid of K rows by --steps columns to --output, and a GIF '
              'beside it (same name, .gif) with one frame per step showing all K '
              'walks at that step')
    flag(p, 'steps', type=_walk_steps, metavar='N',
         help='latents per walk, both ends included, at least 2 (default: 8)')
    flag(p, 'onnx', action='store_true',
         help='run export/generator.onnx with onnxruntime; MXNet is not imported')
    flag(p, 'ctx', help='MXNet device (default: cpu; not with --onnx)')
    p.add_argument('--no-progress', dest='progress', action='store_false',
                   help='no progress bar for --out-dir (none is drawn when stderr is not a '
                        'terminal)')
    return p


def _check_args(args):
    if args.onnx and args.ctx is not None:
        raise UserError('--ctx picks an MXNet device, and --onnx runs onnxruntime on the CPU '
                        'without MXNet: drop one of them')
    args.ctx = args.ctx or 'cpu'
    if (args.output is None) == (args.out_dir is None):
        raise UserError('give exactly one of --output FILE.png (one grid) and --out-dir DIR (one '
                        'PNG file per image)')
    if args.interpolate is None:
        if args.steps is not None:
            raise UserError('--steps is the length of a latent walk: add --interpolate K')
        _check_num(args)
    else:
        if args.out_dir is not None:
            raise UserError('--interpolate writes a grid and a GIF: give it --output FILE.png, '
                            'not --out-dir')
        if args.num is not None:
            raise UserError('--num and --interpolate each choose what to draw: pick one')
        args.steps = 8 if args.steps is None else args.steps
        if args.interpolate * args.steps > MAX_GRID:
            raise UserError(f'--interpolate {args.interpolate} x --steps {args.steps} is more '
                            f'than the {MAX_GRID} images of one grid: lower either')
    if args.out_dir is not None:
        args.out_dir = folder_to_write(args.out_dir, args.export, *_OWNED)
    else:
        _check_output(args)


def _check_num(args):
    if args.num is None:
        args.num = NUM_GRID if args.out_dir is None else NUM_FILES
    elif args.out_dir is None and args.num > MAX_GRID:
        raise UserError(f'--num {args.num} is more than the {MAX_GRID} images of one PNG '
                        f'grid: lower it, or write the images as files with --out-dir DIR')


def _check_output(args):
    if not args.output.lower().endswith('.png'):
        raise UserError(f'--output {args.output!r} must end in .png')
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f'folder {out_dir!r} for --output does not exist: create it first')
    for path in [args.output] + ([args.output[:-4] + '.gif'] if args.interpolate else []):
        if os.path.isdir(path):  # checked now: the write would fail on its temporary name
            raise UserError(f'{path!r} is a folder: give --output the name of a file')


def image_names(num):
    """00000.png, 00001.png, ...: zero-padded to the width of num - 1, at least 5 digits."""
    width = max(5, len(str(num - 1)))
    return [f'{i:0{width}d}.png' for i in range(num)]


def _check_latents(manifest, num):
    each = 4 * manifest['latent_dim']
    if num * each > MAX_LATENT_BYTES:
        raise UserError(f'the {num} latents of --num, {manifest["latent_dim"]} numbers each, '
                        f'take {num * each / 1e6:.0f} MB, more than {MAX_LATENT_BYTES >> 20} '
                        f'MiB: lower --num (at most {MAX_LATENT_BYTES // each}), and write '
                        f'more folders with other --seed values')


def _write_folder(folder, pixels_of_latents, Z, manifest, source, progress):
    """Write one PNG per latent of Z into a new folder beside `folder`, then put it in
    `folder`'s place. The passes are those of the grid (images_in_chunks), so image i is
    the grid's tile i to the bit; only one pass's pixels are held at a time."""
    step = chunk_size(tuple(manifest['output_shape'][1:]))
    names, digests = image_names(len(Z)), {}
    with IMAGES.new_folder(folder) as tmp:
        with progress_bar(len(Z), 'images', 'image', progress) as bar:
            for start in range(0, len(Z), step):
                pixels = pixels_of_latents(Z[start:start + step])
                for name, image in zip(names[start:], pixels):
                    data = png_bytes(image)
                    with open(os.path.join(tmp, name), 'xb') as f:
                        f.write(data)
                    digests[name] = hashlib.sha256(data).hexdigest()
                bar.update(len(pixels))
        put_in_place(IMAGES, tmp, folder, _OWNED, digests, **source)


def _loaded_generator(args):
    """(a function Z -> images, manifest), after the export's files are checked once."""
    if args.onnx:
        return load_onnx_generator(args.export)
    from ..runtime import resolve_contexts, use_np
    use_np()
    ctx = resolve_contexts(args.ctx)[0]
    net, manifest = load_mxnet_generator(args.export, ctx)
    return mxnet_forward(net, ctx), manifest


def _source(args):
    """What the record of an --out-dir says the images are, for whoever reads it later."""
    return {'export': os.path.abspath(args.export), 'num': args.num, 'seed': args.seed,
            'onnx': args.onnx}


def save_latent_walk(pixels, steps, png_path, gif_path, ms_per_frame=200):
    """Write walk pixels (pairs*steps, H, W, C) uint8 as a PNG and a GIF.

    The PNG has one row per walk and one column per step. The GIF has one frame
    per step; each frame shows every walk at that step, in a near-square grid.
    """
    save_png(grid(pixels, cols=steps), png_path)
    save_gif([square_grid(pixels[j::steps]) for j in range(steps)], gif_path, ms_per_frame)


def main(argv):
    """An image grid, latent walks or image files from an export, via MXNet or onnxruntime;
    returns 0."""
    args = _parser().parse_args(argv)
    _check_args(args)
    run, manifest = _loaded_generator(args)
    if args.out_dir is not None:
        _check_latents(manifest, args.num)
        Z = latent_noise(args.num, manifest['latent_dim'], args.seed)
        _write_folder(args.out_dir, lambda z: pixels_of(args.export, run, manifest, z), Z,
                      manifest, _source(args), args.progress)
        print(f'wrote {args.num} images to {args.out_dir}', flush=True)
        return 0
    if args.interpolate:
        check_memory(manifest, args.interpolate * args.steps, MAX_GRID, '--interpolate or --steps')
        Z = latent_walk(args.interpolate, args.steps, manifest['latent_dim'], args.seed)
    else:
        check_memory(manifest, args.num, MAX_GRID, '--num')
        Z = latent_noise(args.num, manifest['latent_dim'], args.seed)
    pixels = pixels_of(args.export, run, manifest, Z)  # bounded passes: only uint8 piles up
    gif = args.output[:-4] + '.gif'
    try:
        if args.interpolate:
            save_latent_walk(pixels, args.steps, args.output, gif)
        else:
            save_png(square_grid(pixels), args.output)
    except OSError as exc:
        raise UserError(f'cannot write {exc.filename or args.output} ({exc.strerror})')
    print(f'wrote {args.interpolate} latent walks of {args.steps} steps to {args.output} and '
          f'{gif}' if args.interpolate else f'wrote {args.num} images to {args.output}',
          file=sys.stderr, flush=True)
    return 0
