"""Benchmark: the small-data recipes against the chapter's, at equal compute, in ImageNet
EfficientNet-Lite0 features (not FID: see docs/quality.md).

Every variant is trained through the real CLI with the same epochs, batch size and
widths, for each seed (seeds interleaved across variants, so a partial result stays
balanced); each run's export then draws --num images (the noise of `generate --seed 0`)
that are scored against the real images by quality/report.score, the same code as
`run.py evaluate` (real features cached once). Prints a markdown table, writes every
number to OUT/quality.json after each run, and one row of samples per variant to
--grid.

    .venv/bin/python bench/quality.py --data ../shared/data/pokemon-art --out /tmp/qbench

The images are never part of the project: the folder is an argument.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as onp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = {
    'chapter': [],
    'diffaugment': ['--diffaugment', 'color,translation,cutout'],
    'ema': ['--ema', '0.999'],
    'ttur': ['--lr-G', '1e-4', '--lr-D', '4e-4'],
    'small-data': ['--recipe', 'small-data'],
    'd-input': ['--d-input-norm', 'none'],
    # make demo's D with G's learning rate 4x and D's 2x its lr 5e-4 (docs/quality.md)
    'd-input-lr': ['--d-input-norm', 'none', '--lr-G', '2e-3', '--lr-D', '1e-3'],
    'ema-d-input': ['--ema', '0.999', '--d-input-norm', 'none'],
}


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', required=True, help='a folder of images, or synthetic')
    p.add_argument('--out', required=True, help='folder for the runs and quality.json')
    p.add_argument('--variants', default=','.join(VARIANTS))
    p.add_argument('--seeds', default='1,2,3')
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--width', type=int, default=32, help='--n-G and --n-D')
    p.add_argument('--num', type=int, default=500, help='generated images per evaluation')
    p.add_argument('--extra', default='', help='more run.py flags for every run')
    p.add_argument('--eval-every', type=int, default=0, metavar='K',
                   help="also score every K epochs along the way (training's --eval-every, on "
                        "--num images against the data's first --num), and print those too")
    p.add_argument('--grid', default=None, help='PNG: one row of 8 samples per variant')
    p.add_argument('--table-only', action='store_true', help='print the table of OUT/quality.json')
    return p.parse_args(argv)


def train(args, variant, seed):
    """Train one run through the CLI; returns (run folder, wall seconds)."""
    folder = os.path.join(args.out, f'{variant}-s{seed}')
    cmd = [sys.executable, os.path.join(ROOT, 'run.py'), '--data', args.data,
           '--out-dir', folder, '--epochs', str(args.epochs), '--batch-size',
           str(args.batch_size), '--n-G', str(args.width), '--n-D', str(args.width),
           '--seed', str(seed), '--no-progress', '--overwrite'] + VARIANTS[variant] + \
        args.extra.split()
    if args.eval_every:
        cmd += ['--eval-every', str(args.eval_every), '--eval-num', str(args.num)]
    start = time.time()
    with open(folder + '.log', 'w') as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return folder, time.time() - start


def along_the_way(folder):
    """{epoch: KID} of the run's --eval-every scores (its metrics.jsonl)."""
    with open(os.path.join(folder, 'metrics.jsonl')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {row['epoch']: row['kid'] for row in rows if 'kid' in row}


def real_images(args, seed):
    from gluon_dcgan.config import Config
    from gluon_dcgan.data import load_images
    cfg = Config(data=args.data, batch_size=1, seed=seed, channels=3)
    return load_images(cfg, log=lambda m: None)


def evaluate(args, folder, real):
    """The quality report of the run's export against `real` uint8 images."""
    from gluon_dcgan.export.load import load_mxnet_generator, mxnet_forward, pixels_of
    from gluon_dcgan.quality import report as quality
    from gluon_dcgan.tools.latent import latent_noise
    export = os.path.join(folder, 'export')
    net, manifest = load_mxnet_generator(export)
    fake = pixels_of(export, mxnet_forward(net), manifest,
                     latent_noise(args.num, manifest['latent_dim'], 0))
    found, _ = quality.score(fake, real, 0, os.path.join(args.out, 'features'),
                             log=lambda m: None)
    return found, fake[:8]


def _row(found):
    fr = found['fake_vs_real']
    mem = found['memorisation']
    return {'kid': fr['kid']['mean'], 'kid_subset_std': fr['kid']['std'], 'fd': fr['fd'],
            'coverage': fr['coverage'], 'precision': fr['precision'], 'recall': fr['recall'],
            'one_nn': fr['one_nn_accuracy'], 'fake_median': mem['fake_median'],
            'heldout_median': mem['heldout_median'], 'flagged': mem['flagged'],
            'floor_kid': found['real_vs_real']['kid']['mean'],
            'floor_coverage': found['real_vs_real']['coverage'],
            'floor_one_nn': found['real_vs_real']['one_nn_accuracy']}


def _spread(values, scale=1.0, digits=0):
    v = onp.array(values) * scale
    if len(v) == 1:
        return f'{v[0]:.{digits}f}'
    return f'{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}'


def table(results, variants):
    """The markdown table: mean ± std over seeds (and the mean within-run subset std)."""
    lines = ['| variant | seeds | KID×1000 (EfficientNet-Lite0) | per seed | subset spread | '
             'coverage | 1-NN acc. | fake/held-out nearest (median) | s/run |',
             '|---|---|---|---|---|---|---|---|---|']
    floor = None
    for variant in variants:
        runs = [r for r in results if r['variant'] == variant]
        if not runs:
            continue
        floor = floor or runs[0]
        per = ', '.join(f"{r['kid'] * 1000:.0f}" for r in sorted(runs, key=lambda r: r['seed']))
        lines.append(
            f"| {variant} | {len(runs)} | {_spread([r['kid'] for r in runs], 1000)} | {per} | "
            f"{onp.mean([r['kid_subset_std'] for r in runs]) * 1000:.0f} | "
            f"{_spread([r['coverage'] for r in runs], 1, 3)} | "
            f"{_spread([r['one_nn'] for r in runs], 1, 3)} | "
            f"{onp.mean([r['fake_median'] / r['heldout_median'] for r in runs]):.2f} | "
            f"{onp.mean([r['train_seconds'] for r in runs]):.0f} |")
    if floor:
        lines.append(f"| real vs real (two halves) | | {floor['floor_kid'] * 1000:.0f} | | | "
                     f"{floor['floor_coverage']:.3f} | {floor['floor_one_nn']:.3f} | | |")
    return '\n'.join(lines)


def curve_table(results, variants):
    """KID×1000 at each --eval-every epoch, mean ± std over seeds; '' if none were scored."""
    epochs = sorted({int(e) for r in results for e in r.get('curve', {})})
    if not epochs:
        return ''
    lines = ['| variant | ' + ' | '.join(f'epoch {e}' for e in epochs) + ' |',
             '|---|' + '---|' * len(epochs)]
    for variant in variants:
        runs = [r for r in results if r['variant'] == variant and r.get('curve')]
        if runs:
            cells = [_spread([r['curve'][str(e)] for r in runs if str(e) in r['curve']], 1000)
                     if any(str(e) in r['curve'] for r in runs) else '' for e in epochs]
            lines.append(f'| {variant} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def save_grid(path, samples, variants):
    from PIL import Image

    from gluon_dcgan.images import grid
    rows = [grid(samples[v], cols=8) for v in variants if v in samples]
    Image.fromarray(onp.concatenate(rows, axis=0)).save(path, optimize=True)


def main(argv=None):
    args = _args(argv)
    variants, seeds = args.variants.split(','), [int(s) for s in args.seeds.split(',')]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'quality.json')
    if args.table_only:
        runs = json.load(open(path))['runs']
        print(table(runs, variants))
        print(curve_table(runs, variants))
        return
    from gluon_dcgan.runtime import use_np
    use_np()
    real_by_seed, results, samples = {}, [], {}
    protocol = {k: getattr(args, k) for k in ('data', 'epochs', 'batch_size', 'width', 'num',
                                              'extra', 'eval_every')}
    for seed in seeds:
        for variant in variants:
            folder, seconds = train(args, variant, seed)
            # Embedded sprites depend on the seed: score against the run's own images.
            key = seed if args.data == 'synthetic' else None
            if key not in real_by_seed:
                real_by_seed[key] = real_images(args, seed)
            found, eight = evaluate(args, folder, real_by_seed[key])
            samples.setdefault(variant, eight)
            # JSON keys are strings: the curve's epochs are kept as such throughout.
            curve = {str(e): k for e, k in along_the_way(folder).items()}
            results.append(dict(_row(found), variant=variant, seed=seed,
                                train_seconds=seconds, curve=curve, full=found))
            print(f"{variant} seed {seed}: KID×1000 {results[-1]['kid'] * 1000:.0f}, "
                  f"coverage {results[-1]['coverage']:.3f}, {seconds:.0f} s", flush=True)
            with open(path + '.tmp', 'w') as f:
                json.dump({'protocol': protocol, 'variants': VARIANTS, 'runs': results}, f,
                          indent=1, default=float)
            os.replace(path + '.tmp', path)
            if args.grid:
                save_grid(args.grid, samples, variants)
    print(table(results, variants))
    print(curve_table(results, variants))


if __name__ == '__main__':
    main()
