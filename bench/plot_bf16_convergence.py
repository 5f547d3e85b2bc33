#!/usr/bin/env python
"""Plot fp32 and bf16 training runs' losses per epoch, and check bf16 against the fp32 band.

Reads RUNS/float32-s*/metrics.jsonl and RUNS/bfloat16-s*/metrics.jsonl (run.py
--out-dir folders), draws the fp32 min-max band across seeds and each bf16 run
for loss_D and loss_G, and prints, per epoch, the band and every bf16 value
that falls outside it. Usage: plot_bf16_convergence.py RUNS OUT.png
"""
import glob
import json
import os
import sys


def load(runs, dtype):
    """{seed: [rows by epoch]} for the finished epochs of each run."""
    out = {}
    for folder in sorted(glob.glob(os.path.join(runs, f'{dtype}-s*'))):
        path = os.path.join(folder, 'metrics.jsonl')
        if os.path.exists(path):
            with open(path) as f:
                rows = [json.loads(line) for line in f]
            if rows:
                out[folder.rsplit('-s', 1)[1]] = rows
    return out


def band(runs, key, epochs):
    """(min, max) across runs at each epoch, over the runs that reached it."""
    lo, hi = [], []
    for e in epochs:
        values = [rows[e - 1][key] for rows in runs.values() if len(rows) >= e]
        lo.append(min(values))
        hi.append(max(values))
    return lo, hi


def main(runs, out_png):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fp32, bf16 = load(runs, 'float32'), load(runs, 'bfloat16')
    if not fp32 or not bf16:
        sys.exit(f'plot_bf16_convergence: {runs} needs finished float32-sN and bfloat16-sN '
                 f'runs (run.py --out-dir folders with a metrics.jsonl); found '
                 f'{len(fp32)} and {len(bf16)}')
    epochs = list(range(1, max(len(r) for r in fp32.values()) + 1))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    outside = 0
    for ax, key in zip(axes, ('loss_D', 'loss_G')):
        lo, hi = band(fp32, key, epochs)
        ax.fill_between(epochs, lo, hi, color='tab:blue', alpha=0.25,
                        label=f'fp32, min-max of {len(fp32)} seeds')
        for seed, rows in sorted(bf16.items()):
            ax.plot([r['epoch'] for r in rows], [r[key] for r in rows], marker='o', ms=3,
                    label=f'bf16, seed {seed}')
            for r in rows:
                e = r['epoch']
                if e <= len(lo) and not lo[e - 1] <= r[key] <= hi[e - 1]:
                    outside += 1
                    print(f'outside: {key} bf16 seed {seed} epoch {e}: {r[key]:.3f} '
                          f'(fp32 band {lo[e - 1]:.3f}..{hi[e - 1]:.3f})')
        ax.set_xlabel('epoch')
        ax.set_ylabel(key)
        ax.set_yscale('log')
        ax.legend(fontsize=8)
    fig.suptitle('DCGAN on the embedded sprites (1024 images, batch 64): fp32 vs bf16')
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    for key in ('loss_D', 'loss_G'):
        lo, hi = band(fp32, key, epochs)
        last = {s: rows[-1][key] for s, rows in bf16.items()}
        print(f'{key} epoch {epochs[-1]}: fp32 {lo[-1]:.3f}..{hi[-1]:.3f}, bf16 ' +
              ', '.join(f'seed {s} {v:.3f} (epoch {bf16[s][-1]["epoch"]})'
                        for s, v in sorted(last.items())))
    points = sum(len(r) for r in bf16.values()) * 2
    print(f'bf16 points outside the fp32 band: {outside} of {points}')
    print('against 2-seed fp32 bands (leave one fp32 seed out), points outside: '
          f'held-out fp32 seed {_outside_pairs(fp32, fp32)}, bf16 {_outside_pairs(fp32, bf16)}')


def _outside_pairs(fp32, runs):
    """Share of `runs`' points outside the band of each pair of other fp32 seeds.

    A GAN's per-epoch losses swing widely from seed to seed, so this baseline
    says how often a plain fp32 run leaves such a band too.
    """
    import itertools
    out = total = 0
    for pair in itertools.combinations(sorted(fp32), 2):
        ref = {s: fp32[s] for s in pair}
        n = min(len(r) for r in ref.values())
        for seed, rows in runs.items():
            if seed in pair and runs is fp32:
                continue
            for key in ('loss_D', 'loss_G'):
                lo, hi = band(ref, key, range(1, n + 1))
                for r in rows[:n]:
                    total += 1
                    out += not lo[r['epoch'] - 1] <= r[key] <= hi[r['epoch'] - 1]
    return f'{out} of {total} ({100 * out / max(total, 1):.0f}%)'


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1], sys.argv[2])
