#!/usr/bin/env python
"""Training speed: the chapter's MXNet code (A) against gluon_dcgan's loop in fp32 (B) and bf16 (C).

Each run is its own process so none warms another's caches or thread pools.
After one warm-up run of each, A, B and C alternate (--runs times each). A run
times `--steps` training steps end to end, data pipeline included, after one
untimed step that builds the graphs:
  A: the chapter as written: nn.Block nets in nn.Sequential, d2l.update_D/update_G,
     DataLoader over ImageFolderDataset with the chapter's transforms and
     d2l.get_dataloader_workers() workers, decoding PNGs every epoch; default env.
  B: gluon_dcgan: decoded-once uint8 cache, hybridized nets, fast steps, its
     thread set-up (OMP_NUM_THREADS = usable cores).
  C: B with --dtype bfloat16 (CPU with avx512_bf16 only; skipped elsewhere).
It also measures oneDNN's convolution rate in fp32 and bf16 with B's threads
(forward, and forward + both backward passes), names the oneDNN ISA and the
bf16 convolution kernels C ran (from MKLDNN_VERBOSE), and prints the achieved
GFLOP/s counting 2.71 GFLOP per example per step (d2l semantics).
Last lines: `speedup C/B: X.XX` then `speedup B/A: X.XX` (medians of the
ratios within each run); `--no-a` skips A and its line.
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

# The checkout this script is in, before an installed gluon_dcgan (an editable install
# points at another checkout): B and C measure this code, in this process and its children.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GFLOP_PER_EXAMPLE = 2.71  # REFERENCE.md: 4 G passes + 9 D passes of ~0.21 GFLOP each


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def _chapter_nets():
    """The chapter's MXNet code, as written (nn.Block, imperative)."""
    from mxnet.gluon import nn

    class G_block(nn.Block):
        def __init__(self, channels, kernel_size=4, strides=2, padding=1, **kwargs):
            super().__init__(**kwargs)
            self.conv2d_trans = nn.Conv2DTranspose(
                channels, kernel_size, strides, padding, use_bias=False)
            self.batch_norm = nn.BatchNorm()
            self.activation = nn.Activation('relu')

        def forward(self, X):
            return self.activation(self.batch_norm(self.conv2d_trans(X)))

    class D_block(nn.Block):
        def __init__(self, channels, kernel_size=4, strides=2, padding=1, alpha=0.2, **kwargs):
            super().__init__(**kwargs)
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


def run_B(folder, steps, batch_size, ctx_spec, data_root, dtype='float32'):
    """gluon_dcgan's loop on the same images; returns examples/sec over `steps` steps."""
    from gluon_dcgan.runtime import resolve_contexts, use_np
    use_np()
    from mxnet import npx
    from gluon_dcgan.config import Config
    from gluon_dcgan.data import load_images
    from gluon_dcgan.train.loop import GAN, new_state, train
    cfg = Config(data=folder, data_root=data_root, batch_size=batch_size, ctx=ctx_spec,
                 progress=False, epochs=1, dtype=dtype)
    gan = GAN(cfg, resolve_contexts(ctx_spec))
    import numpy as onp
    # The first step builds the graphs: one batch of a warm-up epoch.
    train(gan, onp.zeros((batch_size, 64, 64, 3), onp.uint8), 1, new_state())
    npx.waitall()
    images = load_images(cfg, log=lambda m: None)[:steps * batch_size]
    start = time.time()
    train(gan, images, 2, new_state(epoch=1))
    npx.waitall()
    return len(images) // batch_size * batch_size / (time.time() - start)


def conv_rate(ctx_spec, batch_size, dtype='float32', backward=False):
    """oneDNN convolution GFLOP/s on the discriminator's three middle layers.

    Forward only, or (`backward`) forward + data and weight gradients (3x the FLOPs).
    """
    from mxnet import autograd, np, npx
    from mxnet.gluon import nn
    from gluon_dcgan.model_bf16 import BF16Conv2D
    from gluon_dcgan.runtime import resolve_contexts
    npx.set_np()
    ctx = resolve_contexts(ctx_spec)[0]
    layers = [(64, 128, 32), (128, 256, 16), (256, 512, 8)]  # in, out, input size
    total_flops, total_time = 0, 0.0
    for cin, cout, size in layers:
        conv = (nn.Conv2D(cout, 4, 2, 1, use_bias=False, in_channels=cin) if dtype == 'float32'
                else BF16Conv2D(cout, 4, 2, 1, dtype, in_channels=cin))
        conv.initialize(ctx=ctx)
        conv.hybridize(static_alloc=True, static_shape=True)
        x = np.random.normal(size=(batch_size, cin, size, size), ctx=ctx)
        if backward:
            x.attach_grad()

        def once():
            if not backward:
                return conv(x)
            with autograd.record():
                y = conv(x)
            y.backward()
            return y
        once().wait_to_read()
        reps = 5
        t = time.time()
        for _ in range(reps):
            once()
        npx.waitall()
        total_time += time.time() - t
        out = size // 2
        total_flops += reps * 2 * batch_size * cout * out * out * cin * 16 * (3 if backward else 1)
    return total_flops / total_time / 1e9


def conv_kernels(args):
    """ISA and bf16 convolution kernels of C's training step, read from MKLDNN_VERBOSE.

    Runs two small C steps in a child with MKLDNN_VERBOSE=1 and parses its stdout.
    """
    cmd = [sys.executable, os.path.abspath(__file__), '--child', 'Cverbose', '--folder', '-',
           '--data-root', '-', '--steps', '1', '--batch-size', '32', '--ctx', args.ctx]
    env = dict(os.environ, MKLDNN_VERBOSE='1', DNNL_VERBOSE='1')
    env.pop('OMP_NUM_THREADS', None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    isa, kernels = 'unknown', {}
    for line in proc.stdout.splitlines():
        fields = line.split(',')
        if line.startswith('dnnl_verbose,info,cpu,isa:'):
            isa = line.split('isa:', 1)[1].strip()
        elif line.startswith('dnnl_verbose,exec,cpu,convolution,') and 'src_bf16' in line:
            kernels.setdefault(fields[5], set()).add(fields[4])
    return isa, {prop: ' / '.join(sorted(impls)) for prop, impls in sorted(kernels.items())}


def _verbose_steps(ctx_spec, batch_size):
    """Two bf16 training steps on random images (for conv_kernels)."""
    import numpy as onp
    from gluon_dcgan.config import Config
    from gluon_dcgan.runtime import resolve_contexts, use_np
    from gluon_dcgan.train.loop import GAN, new_state, train
    use_np()
    gan = GAN(Config(ctx=ctx_spec, batch_size=batch_size, dtype='bfloat16'),
              resolve_contexts(ctx_spec))
    images = onp.random.RandomState(0).randint(0, 256, (2 * batch_size, 64, 64, 3), onp.uint8)
    train(gan, images, 1, new_state())  # two steps
    from mxnet import npx
    npx.waitall()
    return 0.0


def child(args):
    """Run one measurement in this process and print it as JSON."""
    if args.child != 'A':
        from gluon_dcgan.runtime import configure_process
        configure_process()  # B and C are gluon_dcgan, with its thread set-up
    if args.child == 'A':
        value = run_A(args.folder, args.steps, args.batch_size, args.ctx)
    elif args.child in ('B', 'C'):
        value = run_B(args.folder, args.steps, args.batch_size, args.ctx, args.data_root,
                      'bfloat16' if args.child == 'C' else 'float32')
    elif args.child == 'Cverbose':
        value = _verbose_steps(args.ctx, args.batch_size)
    else:
        dtype, _, backward = args.child[len('conv-'):].partition('-')
        value = conv_rate(args.ctx, args.batch_size, dtype, backward == 'train')
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
    p.add_argument('--no-a', action='store_true',
                   help="skip A (the chapter's code, the slowest run): B and C only")
    p.add_argument('--child', choices=('A', 'B', 'C', 'Cverbose', 'conv-float32',
                                       'conv-bfloat16', 'conv-float32-train',
                                       'conv-bfloat16-train'), help=argparse.SUPPRESS)
    p.add_argument('--folder', help=argparse.SUPPRESS)
    p.add_argument('--data-root', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.runs <= 0:
        sys.exit('bench: --steps, --batch-size and --runs must be > 0')
    if args.child:
        return child(args)
    from gluon_dcgan.runtime import cpu_supports_bf16, usable_cores
    codes = ('A', 'B', 'C') if cpu_supports_bf16() and args.ctx == 'cpu' else ('A', 'B')
    codes = codes[1:] if args.no_a else codes
    with tempfile.TemporaryDirectory() as work:
        folder = _prepare_folder(args, work)
        cache = os.path.join(work, 'cache')
        print(f'# {usable_cores()} cores, batch {args.batch_size}, {args.steps} timed steps, '
              f'ctx {args.ctx}, data {args.data}', flush=True)
        for which in codes:
            _spawn(which, args, folder, cache, 1)  # warm-up: disk cache, imports, decode cache
        rows = []
        for run in range(1, args.runs + 1):
            row = {which: _spawn(which, args, folder, cache, args.steps) for which in codes}
            rows.append(row)
            print(f'run {run}: ' + '   '.join(f'{w} {row[w]["value"]:7.1f} ex/s' for w in codes)
                  + (f'   B/A {row["B"]["value"] / row["A"]["value"]:.2f}' if 'A' in row else '')
                  + (f'   C/B {row["C"]["value"] / row["B"]["value"]:.2f}' if 'C' in row else ''),
                  flush=True)
        dtypes = ('float32', 'bfloat16') if 'C' in codes else ('float32',)
        conv = {(d, t): _spawn(f'conv-{d}{t}', args, folder, cache, args.steps)['value']
                for d in dtypes for t in ('', '-train')}
        kernels = conv_kernels(args) if 'C' in codes else None
    _report(rows, codes, conv, kernels)


def _median(rows, key):
    return statistics.median(key(r) for r in rows)


def _report(rows, codes, conv, kernels):
    """The table, the convolution rates and kernels, then the speedup lines."""
    names = {'A': 'A: chapter as written', 'B': 'B: gluon_dcgan',
             'C': 'C: gluon_dcgan --dtype bfloat16'}
    med = {w: _median(rows, lambda r: r[w]['value']) for w in codes}
    print()
    print('| code | examples/sec (median) | peak RSS (GB) |')
    print('|---|---|---|')
    for w in codes:
        peak = max(r[w]['peak_rss_gb'] for r in rows)
        print(f'| {names[w]} | {med[w]:.1f} | {peak:.2f}{" (main process)" if w == "A" else ""} |')
    fwd, train = conv[('float32', '')], conv[('float32', '-train')]
    print(f'oneDNN fp32 convolution rate (B threads): {fwd:.1f} GFLOP/s forward, '
          f'{train:.1f} forward+backward')
    for w in (w for w in codes if w != 'A'):
        achieved = med[w] * GFLOP_PER_EXAMPLE
        rate = fwd if w == 'B' else conv[('bfloat16', '')]
        print(f'{w} achieves {achieved:.1f} GFLOP/s at {GFLOP_PER_EXAMPLE} GFLOP/example: '
              f'{100 * achieved / rate:.0f}% of its forward convolution rate')
    if 'C' in codes:
        bf, bf_train = conv[('bfloat16', '')], conv[('bfloat16', '-train')]
        isa, kernels_by_pass = kernels
        print(f'oneDNN bf16 convolution rate (B threads): {bf:.1f} GFLOP/s forward '
              f'({bf / fwd:.2f}x fp32), {bf_train:.1f} forward+backward ({bf_train / train:.2f}x)')
        print(f'oneDNN ISA: {isa}')
        for prop, impls in kernels_by_pass.items():
            print(f'C bf16 convolutions, {prop}: {impls}')
        print(f'target speedup C/B >= 0.8 x {bf / fwd:.2f} = {0.8 * bf / fwd:.2f}')
        print(f'speedup C/B: {_median(rows, lambda r: r["C"]["value"] / r["B"]["value"]):.2f}')
    if 'A' in codes:
        print(f'speedup B/A: {_median(rows, lambda r: r["B"]["value"] / r["A"]["value"]):.2f}')


if __name__ == '__main__':
    main()
