#!/usr/bin/env python
"""Training speed: the chapter's MXNet code (A) against gluon_dcgan's loop (B), side by side.

Each run is its own process so neither warms the other's caches or thread pools.
After one warm-up run of each, A and B alternate (--runs times each). A run times
`--steps` training steps end to end, data pipeline included, after one untimed
step that builds the graphs:
  A: the chapter as written: nn.Block nets in nn.Sequential, d2l.update_D/update_G,
     DataLoader over ImageFolderDataset with the chapter's transforms and
     d2l.get_dataloader_workers() workers, decoding PNGs every epoch; default env.
  B: gluon_dcgan: decoded-once uint8 cache, hybridized nets, fast steps, its
     thread set-up (OMP_NUM_THREADS = usable cores).
It also measures oneDNN's fp32 convolution rate with B's threads, and prints
B's achieved GFLOP/s counting 2.71 GFLOP per example per step (d2l semantics).
Last line: `speedup B/A: X.XX` (median of the pairwise ratios).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

GFLOP_PER_EXAMPLE = 2.71  # REFERENCE.md: 4 G passes + 9 D passes of ~0.21 GFLOP each


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _chapter_nets():
    """The chapter's MXNet code, as written (nn.Block, imperative)."""
    from mxnet.gluon import nn

    class G_block(nn.Block):
        def __init__(self, channels, kernel_size=4, strides=2, padding=1, **kwargs):
            super(G_block, self).__init__(**kwargs)
            self.conv2d_trans = nn.Conv2DTranspose(
                channels, kernel_size, strides, padding, use_bias=False)
            self.batch_norm = nn.BatchNorm()
            self.activation = nn.Activation('relu')

        def forward(self, X):
            return self.activation(self.batch_norm(self.conv2d_trans(X)))

    class D_block(nn.Block):
        def __init__(self, channels, kernel_size=4, strides=2, padding=1, alpha=0.2, **kwargs):
            super(D_block, self).__init__(**kwargs)
            self.conv2d = nn.Conv2D(channels, kernel_size, strides, padding, use_bias=False)
            self.batch_norm = nn.BatchNorm()
            self.activation = nn.LeakyReLU(alpha)

        def forward(self, X):
            return self.activation(self.batch_norm(self.conv2d(X)))

    n_G = 64
    net_G = nn.Sequential()
    net_G.add(G_block(n_G * 8, strides=1, padding=0), G_block(n_G * 4), G_block(n_G * 2),
              G_block(n_G), nn.Conv2DTranspose(3, kernel_size=4, strides=2, padding=1,
                                               use_bias=False, activation='tanh'))
    n_D = 64
    net_D = nn.Sequential()
    net_D.add(D_block(n_D), D_block(n_D * 2), D_block(n_D * 4), D_block(n_D * 8),
              nn.Conv2D(1, kernel_size=4, use_bias=False))
    return net_G, net_D


def run_A(folder, steps, batch_size, ctx_spec):
    """The chapter's path; returns examples/sec over `steps` timed steps."""
    from mxnet import gluon, init, np, npx
    from d2l import mxnet as d2l
    from gluon_dcgan.runtime import resolve_contexts
    npx.set_np()
    device = resolve_contexts(ctx_spec)[0]
    pokemon = gluon.data.vision.datasets.ImageFolderDataset(folder)
    transformer = gluon.data.vision.transforms.Compose([
        gluon.data.vision.transforms.Resize(64),
        gluon.data.vision.transforms.ToTensor(),
        gluon.data.vision.transforms.Normalize(0.5, 0.5)])
    data_iter = gluon.data.DataLoader(
        pokemon.transform_first(transformer), batch_size=batch_size,
        shuffle=True, num_workers=d2l.get_dataloader_workers())
    net_G, net_D = _chapter_nets()
    loss = gluon.loss.SigmoidBCELoss()
    net_D.initialize(init=init.Normal(0.02), force_reinit=True, ctx=device)
    net_G.initialize(init=init.Normal(0.02), force_reinit=True, ctx=device)
    trainer_hp = {'learning_rate': 0.005, 'beta1': 0.5}
    trainer_D = gluon.Trainer(net_D.collect_params(), 'adam', trainer_hp)
    trainer_G = gluon.Trainer(net_G.collect_params(), 'adam', trainer_hp)
    done, examples, start = -1, 0, None
    while done < steps:
        for X, _ in data_iter:
            if done == 0:
                start = time.time()  # after the untimed warm-up step
            bs = X.shape[0]
            Z = np.random.normal(0, 1, size=(bs, 100, 1, 1))
            X, Z = X.as_in_ctx(device), Z.as_in_ctx(device)
            d2l.update_D(X, Z, net_D, net_G, loss, trainer_D)
            d2l.update_G(Z, net_D, net_G, loss, trainer_G)
            examples += bs if done >= 0 else 0
            done += 1
            if done == steps:
                break
    npx.waitall()
    return examples / (time.time() - start)


def run_B(folder, steps, batch_size, ctx_spec, data_root):
    """gluon_dcgan's loop on the same images; returns examples/sec over `steps` steps."""
    from gluon_dcgan.runtime import resolve_contexts, use_np
    use_np()
    from mxnet import npx
    from gluon_dcgan.config import Config
    from gluon_dcgan.data import load_images
    from gluon_dcgan.train.loop import StopFlag, Trainer, batch_noise, run_epoch
    cfg = Config(data=folder, data_root=data_root, batch_size=batch_size, ctx=ctx_spec,
                 progress=False, epochs=1)
    trainer = Trainer(cfg, resolve_contexts(ctx_spec))
    import numpy as onp
    warm = onp.zeros((batch_size, 64, 64, 3), onp.uint8)
    trainer.step(warm, batch_noise(0, 0, 0, (batch_size, 100, 1, 1)))  # builds the graphs
    npx.waitall()
    start = time.time()
    images = load_images(cfg, log=lambda m: None)[:steps * batch_size]
    with StopFlag() as stop:
        sums = run_epoch(trainer, images, 1, stop)
    npx.waitall()
    return sums.examples / (time.time() - start)


def conv_rate(ctx_spec, batch_size):
    """oneDNN fp32 convolution GFLOP/s on the discriminator's three middle layers."""
    from mxnet import np, npx
    from mxnet.gluon import nn
    from gluon_dcgan.runtime import resolve_contexts
    npx.set_np()
    ctx = resolve_contexts(ctx_spec)[0]
    layers = [(64, 128, 32), (128, 256, 16), (256, 512, 8)]  # in, out, input size
    total_flops, total_time = 0, 0.0
    for cin, cout, size in layers:
        conv = nn.Conv2D(cout, 4, 2, 1, use_bias=False, in_channels=cin)
        conv.initialize(ctx=ctx)
        conv.hybridize(static_alloc=True, static_shape=True)
        x = np.random.normal(size=(batch_size, cin, size, size), ctx=ctx)
        conv(x).wait_to_read()
        reps = 5
        t = time.time()
        for _ in range(reps):
            y = conv(x)
        y.wait_to_read()
        total_time += time.time() - t
        out = size // 2
        total_flops += reps * 2 * batch_size * cout * out * out * cin * 16
    return total_flops / total_time / 1e9


def child(args):
    """Run one measurement in this process and print it as JSON."""
    if args.child == 'B' or args.child == 'conv':
        from gluon_dcgan.runtime import configure_process
        configure_process()  # B is gluon_dcgan, with its thread set-up
    if args.child == 'A':
        value = run_A(args.folder, args.steps, args.batch_size, args.ctx)
    elif args.child == 'B':
        value = run_B(args.folder, args.steps, args.batch_size, args.ctx, args.data_root)
    else:
        value = conv_rate(args.ctx, args.batch_size)
    print(json.dumps({'value': value, 'peak_rss_gb': _peak_rss_gb()}))


def _spawn(which, args, folder, data_root, steps):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', which, '--folder', folder,
           '--data-root', data_root, '--steps', str(steps), '--batch-size',
           str(args.batch_size), '--ctx', args.ctx]
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        sys.exit(f'bench: run {which} failed: {last}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _prepare_folder(args, work):
    """An ImageFolder both paths read: the synthetic sprites as PNGs, or --data itself."""
    if args.data != 'synthetic':
        if not os.path.isdir(args.data):
            sys.exit(f'bench: --data {args.data!r} is not a folder (give synthetic or a folder)')
        return args.data
    from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
    count = (args.steps + 1) * args.batch_size  # + the warm-up step
    return write_image_folder(make_sprites(count, seed=0), os.path.join(work, 'sprites'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default='synthetic', help='synthetic or an image folder')
    p.add_argument('--steps', type=int, default=10, help='timed steps per run')
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--ctx', default='cpu', help='cpu or gpu (where MXNet has a usable GPU)')
    p.add_argument('--runs', type=int, default=3, help='runs of each, alternating')
    p.add_argument('--child', choices=('A', 'B', 'conv'), help=argparse.SUPPRESS)
    p.add_argument('--folder', help=argparse.SUPPRESS)
    p.add_argument('--data-root', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.runs <= 0:
        sys.exit('bench: --steps, --batch-size and --runs must be > 0')
    if args.child:
        return child(args)
    from gluon_dcgan.runtime import usable_cores
    with tempfile.TemporaryDirectory() as work:
        folder = _prepare_folder(args, work)
        cache = os.path.join(work, 'cache')
        print(f'# {usable_cores()} cores, batch {args.batch_size}, {args.steps} timed steps, '
              f'ctx {args.ctx}, data {args.data}', flush=True)
        for which in ('A', 'B'):
            _spawn(which, args, folder, cache, 1)  # warm-up: disk cache, imports, decode cache
        rows = []
        for run in range(1, args.runs + 1):
            a = _spawn('A', args, folder, cache, args.steps)
            b = _spawn('B', args, folder, cache, args.steps)
            rows.append((a, b))
            print(f'run {run}: A {a["value"]:7.1f} ex/s   B {b["value"]:7.1f} ex/s   '
                  f'B/A {b["value"] / a["value"]:.2f}', flush=True)
        conv = _spawn('conv', args, folder, cache, args.steps)['value']
    med_a = statistics.median(r[0]['value'] for r in rows)
    med_b = statistics.median(r[1]['value'] for r in rows)
    ratio = statistics.median(r[1]['value'] / r[0]['value'] for r in rows)
    peak_a = max(r[0]['peak_rss_gb'] for r in rows)
    peak_b = max(r[1]['peak_rss_gb'] for r in rows)
    achieved = med_b * GFLOP_PER_EXAMPLE
    print()
    print('| code | examples/sec (median) | peak RSS (GB) |')
    print('|---|---|---|')
    print(f'| A: chapter as written | {med_a:.1f} | {peak_a:.2f} (main process) |')
    print(f'| B: gluon_dcgan | {med_b:.1f} | {peak_b:.2f} |')
    print(f'oneDNN fp32 convolution rate (B threads): {conv:.1f} GFLOP/s')
    print(f'B achieves {achieved:.1f} GFLOP/s at {GFLOP_PER_EXAMPLE} GFLOP/example: '
          f'{100 * achieved / conv:.0f}% of the convolution rate')
    print(f'speedup B/A: {ratio:.2f}')


if __name__ == '__main__':
    main()
