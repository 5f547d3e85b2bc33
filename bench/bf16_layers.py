#!/usr/bin/env python
"""The generator's k4/s2/p1 layers in fp32 and in the bf16 forms MXNet 1.9.1 offers.

For each of net_G's three middle Conv2DTranspose layers at the chapter's width
(512->256 at 4 px, 256->128 at 8 px, 128->64 at 16 px), one forward and backward
(input and weight gradients), in milliseconds, with the bench's threads:
  fp32      nn.Conv2DTranspose, hybridized (B's layer);
  subpixel  model_bf16.SubPixelConv2DTranspose in bf16, hybridized (C's layer, fp32
            output: the 2x2 convolution, its casts, depth_to_space and crop);
  deconv    bf16 Deconvolution for the forward and input-gradient passes, and the
            weight gradient as a bf16 Convolution's weight gradient: what a custom
            operator would run (imperative; the relative errors against fp32 are shown).
  probe     bf16 Deconvolution asked for its own weight gradient, in a child
            process: MXNet 1.9.1 crashes there, which is why neither a Gluon net nor
            the deconv row can use it directly.
Issue #11 asks why C/B stops short of its target; this shows the generator's share.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAYERS = ((512, 256, 4), (256, 128, 8), (128, 64, 16))  # in, out, input size
VARIANTS = ('fp32', 'subpixel', 'deconv', 'probe')


def _timed(fn, reps):
    from mxnet import nd
    fn()
    nd.waitall()
    start = time.time()
    for _ in range(reps):
        fn()
    nd.waitall()
    return (time.time() - start) / reps * 1000


def _gluon_ms(layer, x, reps):
    """Forward + backward of a hybridized Gluon layer on numpy-semantics `x`."""
    from mxnet import autograd
    layer.initialize()
    layer.hybridize(static_alloc=True, static_shape=True)
    x.attach_grad()

    def once():
        with autograd.record():
            y = layer(x)
        y.backward()
    return _timed(once, reps)


def _deconv_parts(batch, cin, cout, size, reps, weight_grad=False):
    """bf16 Deconvolution forward and input gradient, weight gradient via Convolution.

    Returns (ms, max relative errors of y, dx, dW against the fp32 Deconvolution)."""
    from mxnet import autograd, nd
    from mxnet.contrib.amp.amp import bfloat16
    bf = lambda a: nd.amp_cast(a, dtype=bfloat16)  # noqa: E731
    f32 = lambda a: nd.amp_cast(a, dtype='float32')  # noqa: E731
    kw = dict(kernel=(4, 4), stride=(2, 2), pad=(1, 1), no_bias=True)
    x = nd.random.normal(shape=(batch, cin, size, size))
    w = nd.random.normal(scale=0.02, shape=(cin, cout, 4, 4))
    dy = nd.random.normal(shape=(batch, cout, 2 * size, 2 * size))
    if weight_grad:  # the probe: MXNet 1.9.1 crashes in this backward pass
        w.attach_grad()
        with autograd.record():
            y = nd.Deconvolution(bf(x), bf(w), num_filter=cout, **kw)
        y.backward(bf(dy))
        nd.waitall()
        return 0.0, ()
    xb, wb, dyb, wv = bf(x), bf(w), bf(dy), w.copy()
    wv.attach_grad()

    def forward():
        return nd.Deconvolution(xb, wb, num_filter=cout, **kw)

    def input_grad():  # a transposed convolution's input gradient is a convolution
        return nd.Convolution(dyb, wb, num_filter=cin, **kw)

    def weight_grad_():  # ...and its weight gradient that convolution's weight gradient
        with autograd.record():
            out = nd.Convolution(dyb, bf(wv), num_filter=cin, **kw)
        out.backward(xb)
        return wv.grad
    ms = sum(_timed(fn, reps) for fn in (forward, input_grad, weight_grad_))
    ref_w = w.copy()
    ref_w.attach_grad()
    xr, dyr = f32(xb), f32(dyb)
    xr.attach_grad()
    with autograd.record():
        ref = nd.Deconvolution(xr, ref_w, num_filter=cout, **kw)
    ref.backward(dyr)
    rel = lambda a, b: float((nd.abs(f32(a) - b).max() / nd.abs(b).max()).asscalar())  # noqa: E731
    return ms, (rel(forward(), ref), rel(input_grad(), xr.grad), rel(weight_grad_(), ref_w.grad))


def child(args):
    from gluon_dcgan.runtime import use_np
    cin, cout, size = LAYERS[args.layer]
    if args.child in ('deconv', 'probe'):
        ms, errors = _deconv_parts(args.batch_size, cin, cout, size, args.reps,
                                   weight_grad=args.child == 'probe')
        print(json.dumps({'ms': ms, 'errors': errors}))
        return
    use_np()
    from mxnet import np
    from mxnet.gluon import nn
    from gluon_dcgan.model_bf16 import SubPixelConv2DTranspose
    layer = (nn.Conv2DTranspose(cout, 4, 2, 1, use_bias=False, in_channels=cin)
             if args.child == 'fp32' else
             SubPixelConv2DTranspose(cout, 'bfloat16', True, in_channels=cin))
    x = np.random.normal(size=(args.batch_size, cin, size, size))
    print(json.dumps({'ms': _gluon_ms(layer, x, args.reps), 'errors': ()}))


def _run(variant, layer, args):
    cmd = [sys.executable, os.path.abspath(__file__), '--child', variant, '--layer', str(layer),
           '--batch-size', str(args.batch_size), '--reps', str(args.reps)]
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        return None, 'hung (600 s)'
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1]), None
    if proc.returncode < 0:
        return None, f'killed by {signal.Signals(-proc.returncode).name}'
    return None, f'exit {proc.returncode}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--reps', type=int, default=3, help='timed repetitions per measurement')
    p.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument('--layer', type=int, choices=range(len(LAYERS)), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch_size <= 0 or args.reps <= 0:
        sys.exit('bench: --batch-size and --reps must be > 0')
    from gluon_dcgan.runtime import configure_process, cpu_supports_bf16, usable_cores
    configure_process()
    if args.child:
        return child(args)
    if not cpu_supports_bf16():
        sys.exit('bench: this CPU has no avx512_bf16; the bf16 rows would measure emulation')
    print(f'# {usable_cores()} cores, batch {args.batch_size}, {args.reps} reps; '
          f'ms per forward + backward (input and weight gradients)')
    print('| layer | fp32 | subpixel bf16 | deconv bf16 + conv weight grad | max rel. error '
          'y / dx / dW | bf16 Deconvolution weight grad |')
    print('|---|---|---|---|---|---|')
    for i, (cin, cout, size) in enumerate(LAYERS):
        cells = {}
        for variant in VARIANTS:
            result, failure = _run(variant, i, args)
            cells[variant] = (result, failure)
        ms = [f'{cells[v][0]["ms"]:.1f}' if cells[v][0] else cells[v][1]
              for v in ('fp32', 'subpixel', 'deconv')]
        errors = cells['deconv'][0]['errors'] if cells['deconv'][0] else ()
        probe = 'ran' if cells['probe'][0] else cells['probe'][1]
        print(f'| {cin}->{cout}, {size}->{2 * size} px | ' + ' | '.join(ms) + ' | '
              + ' / '.join(f'{e:.1e}' for e in errors) + f' | {probe} |', flush=True)


if __name__ == '__main__':
    main()
