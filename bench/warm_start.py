#!/usr/bin/env python
"""Seconds from `python run.py --data FOLDER` to its first training step, cold and warm.

Writes --images small 64x64 PNGs (default 40,000, in class folders of 4,000) into a
temporary folder, then starts the real CLI twice on them with a fresh --data-root:
  cold: nothing cached; every image is decoded (which is also its check) and cached;
  warm: the same command again; the cache is read, no image is decoded.
Each start is its own process, stopped right after its first training step (a hook
in this script wraps GAN.step; the package has none). The time counts everything
before that step: interpreter and MXNet start-up, listing, the cache, and what fit()
does first (run folder, sample figure, nets); and, separately, until that step ends
(graph building, oneDNN set-up, one batch). Target (issue 11): a warm start reaches
its first step in under 10 s.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PER_FOLDER = 4000

# Runs run.py's main() with GAN.step wrapped to report the first step and stop.
CHILD = r'''
import os, sys, time
sys.path.insert(0, sys.argv[1])
from gluon_dcgan.runtime import configure_process
configure_process()
from gluon_dcgan import cli
from gluon_dcgan.train import loop
step = loop.GAN.step
def first_step(self, X, Z):
    print('STEP_START', time.time(), flush=True)
    step(self, X, Z)
    from mxnet import npx
    npx.waitall()
    print('STEP_END', time.time(), flush=True)
    os._exit(0)
loop.GAN.step = first_step
from gluon_dcgan.train import fit
load_images = fit.load_images
def timed_load_images(*args):
    began = time.time()
    images = load_images(*args)
    print('LOAD', time.time() - began, flush=True)
    return images
fit.load_images = timed_load_images
sys.exit(cli.main(sys.argv[2:]))
'''


def _write_folder(args):
    """Write sprites start..stop-1 as PNGs into folder (one process's share)."""
    folder, start, stop = args
    from PIL import Image
    from gluon_dcgan.data.synthetic import make_sprites
    os.makedirs(folder, exist_ok=True)
    for first in range(start, stop, 500):
        count = min(500, stop - first)
        for i, img in enumerate(make_sprites(count, seed=first)):
            Image.fromarray(img).save(os.path.join(folder, f'{first + i:06d}.png'))
    return stop - start


def write_images(root, count, workers):
    """count PNGs in class folders of PER_FOLDER; returns the seconds it took."""
    started = time.time()
    jobs = []
    for start in range(0, count, PER_FOLDER):
        folder = os.path.join(root, f'class{start // PER_FOLDER:02d}')
        stop = min(count, start + PER_FOLDER)
        half = (start + stop) // 2  # two jobs a folder keep both cores busy to the end
        jobs += [(folder, start, half), (folder, half, stop)]
    with ProcessPoolExecutor(workers) as pool:
        assert sum(pool.map(_write_folder, jobs)) == count
    return time.time() - started


def time_to_first_step(argv):
    """Seconds from process start to the start and the end of the first training step, and
    the seconds load_images took."""
    started = time.time()
    proc = subprocess.run([sys.executable, '-c', CHILD, ROOT] + argv, capture_output=True,
                          text=True)
    marks = dict(line.split() for line in proc.stdout.splitlines()
                 if line.startswith(('STEP_START', 'STEP_END', 'LOAD')))
    if len(marks) != 3:
        sys.exit(f'warm_start: the run stopped before its first step (exit '
                 f'{proc.returncode}):\n{proc.stderr}')
    return (float(marks['STEP_START']) - started, float(marks['STEP_END']) - started,
            float(marks['LOAD']))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--images', type=int, default=40000, help='PNGs to write (default: 40000)')
    p.add_argument('--batch-size', type=int, default=256, help='run.py --batch-size')
    p.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                   help='processes writing the PNGs (default: the core count)')
    args = p.parse_args()
    if args.images < 1 or args.batch_size < 1 or args.workers < 1:
        sys.exit('warm_start: --images, --batch-size and --workers must be at least 1')
    if args.images < args.batch_size:
        sys.exit(f'warm_start: --images {args.images} is fewer than one batch '
                 f'(--batch-size {args.batch_size}): the run would refuse it')
    tmp = tempfile.mkdtemp(prefix='warm_start-')
    try:
        data = os.path.join(tmp, 'images')
        seconds = write_images(data, args.images, args.workers)
        print(f'# {args.images} PNGs of 64x64 written in {seconds:.1f} s '
              f'({args.workers} processes)', flush=True)
        common = ['--data', data, '--data-root', os.path.join(tmp, 'cache'), '--epochs', '1',
                  '--batch-size', str(args.batch_size), '--ctx', 'cpu', '--no-progress']
        print(f'# load average before the runs: {os.getloadavg()[0]:.1f} '
              f'({os.cpu_count()} cores)')
        print('start                                  load_images   first step begins   '
              'first step done')
        for label, name in (('cold (every image decoded and cached)', 'cold'),
                            ('warm (cache hit, nothing decoded)', 'warm')):
            begins, done, load = time_to_first_step(
                common + ['--out-dir', os.path.join(tmp, name)])
            print(f'{label:38s} {load:9.1f} s {begins:17.1f} s {done:15.1f} s', flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
