"""run.py export --run DIR: re-export a run's generator from its newest intact checkpoint."""
import os
import sys

from ..flags import OneLineParser


def main(argv):
    """Re-export; returns the exit code."""
    p = OneLineParser(prog='run.py export',
                      description="Re-export a run's generator (MXNet + ONNX + manifest).")
    p.add_argument('--run', required=True, metavar='DIR', help='the --out-dir of a run')
    p.add_argument('--out', metavar='DIR', help='where to write: an empty or new folder, or an '
                   'existing export to replace (default: RUN/export)')
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run, 'export')
    from ..export.mxnet_export import check_target
    from ..train import rundir
    check_target(out)  # before anything is loaded or written
    parent = os.path.dirname(os.path.abspath(out))
    if rundir.RunPaths(parent).holds_run():  # e.g. RUN/export of another run: not while it trains
        rundir.lock(parent)
    from ..runtime import use_np
    use_np()
    import mxnet as mx
    from ..export.run_export import export_run
    from ..train import checkpoint
    from ..train.restore import load_run_generator
    ctx = mx.cpu()
    net_G, cfg, path = load_run_generator(args.run, ctx)
    manifest = export_run(net_G, cfg, out, ctx, checkpoint.load_state(path)['epoch'])
    print(f'exported {path} to {out} (ONNX max abs diff '
          f'{manifest["onnx"]["verified_max_abs_diff"]:.1e})', file=sys.stderr)
    return 0
