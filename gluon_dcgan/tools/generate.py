"""run.py generate: images from an exported generator, with no model code.

The MXNet path loads export/ with gluon.SymbolBlock.imports. The --onnx path
uses onnxruntime and numpy only and never imports mxnet.
"""
import argparse
import os
import sys

from ..errors import UserError
from ..export.load import (check_memory, load_mxnet_generator, load_onnx_generator,
                           mxnet_forward, pixels_of)
from ..flags import OneLineParser, flag, int_in, positive_int, seed_int
from ..images import grid, save_gif, save_png, square_grid
from ..latent import latent_noise, latent_walk

MAX_GRID = 10_000  # images in one grid: 100x100 tiles of 64 px, 6602 px square, 131 MB


def _grid_size(text):
    value = positive_int(text)
    if value > MAX_GRID:
        raise argparse.ArgumentTypeError(f'must be <= {MAX_GRID} (the images of one PNG '
                                         f'grid), got {value}: for more, run again with '
                                         f'other --seed values')
    return value


_walk_steps = int_in(2, MAX_GRID)


def _parser():
    p = OneLineParser(prog='run.py generate',
                      description='Write a grid of generated images from an exported generator, '
                                  'or (--interpolate) latent walks as a PNG grid and a GIF.')
    flag(p, 'export', required=True, metavar='DIR', help="a run's export/ folder")
    flag(p, 'num', type=_grid_size, default=None,
         help=f'images in the grid, at most {MAX_GRID} (default: 21)')
    flag(p, 'seed', type=seed_int, default=0,
         help='noise seed in [0, 2**32) (default: %(default)s)')
    flag(p, 'output', required=True, metavar='FILE.png', help='where to write the grid')
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
    return p


def _check_args(args):
    if args.onnx and args.ctx is not None:
        raise UserError('--ctx picks an MXNet device, and --onnx runs onnxruntime on the CPU '
                        'without MXNet: drop one of them')
    args.ctx = args.ctx or 'cpu'
    if args.interpolate is None:
        if args.steps is not None:
            raise UserError('--steps is the length of a latent walk: add --interpolate K')
        args.num = 21 if args.num is None else args.num
    else:
        if args.num is not None:
            raise UserError('--num and --interpolate each choose what to draw: pick one')
        args.steps = 8 if args.steps is None else args.steps
        if args.interpolate * args.steps > MAX_GRID:
            raise UserError(f'--interpolate {args.interpolate} x --steps {args.steps} is more '
                            f'than the {MAX_GRID} images of one grid: lower either')
    if not args.output.lower().endswith('.png'):
        raise UserError(f'--output {args.output!r} must end in .png')
    out_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(out_dir):
        raise UserError(f'folder {out_dir!r} for --output does not exist: create it first')
    for path in [args.output] + ([args.output[:-4] + '.gif'] if args.interpolate else []):
        if os.path.isdir(path):  # checked now: the write would fail on its temporary name
            raise UserError(f'{path!r} is a folder: give --output the name of a file')


def _loaded_generator(args):
    """(a function Z -> images, manifest), after the export's files are checked once."""
    if args.onnx:
        return load_onnx_generator(args.export)
    from ..runtime import resolve_contexts, use_np
    use_np()
    ctx = resolve_contexts(args.ctx)[0]
    net, manifest = load_mxnet_generator(args.export, ctx)
    return mxnet_forward(net, ctx), manifest


def save_latent_walk(pixels, steps, png_path, gif_path, ms_per_frame=200):
    """Write walk pixels (pairs*steps, H, W, C) uint8 as a PNG and a GIF.

    The PNG has one row per walk and one column per step. The GIF has one frame
    per step; each frame shows every walk at that step, in a near-square grid.
    """
    save_png(grid(pixels, cols=steps), png_path)
    save_gif([square_grid(pixels[j::steps]) for j in range(steps)], gif_path, ms_per_frame)


def main(argv):
    """An image grid or latent walks from an export, via MXNet or onnxruntime; returns 0."""
    args = _parser().parse_args(argv)
    _check_args(args)
    run, manifest = _loaded_generator(args)
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
