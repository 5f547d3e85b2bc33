"""run.py export --run DIR: re-export a run's generator from its newest intact checkpoint."""
import os
import sys

from ..config import OneLineParser
from ..errors import UserError


def load_run_generator(run_dir, ctx):
    """(net_G with the newest intact checkpoint's weights, the run's Config)."""
    from ..model import build_net_G
    from ..train import checkpoint, rundir
    paths = rundir.RunPaths(run_dir)
    cfg = rundir.saved_config(paths)
    if cfg is None:
        raise UserError(f'{run_dir} is not a run folder (no config.json): give --run the '
                        f'--out-dir of a training run')
    path = checkpoint.latest_valid(paths.checkpoints,
                                   lambda m: print(m, file=sys.stderr))
    if path is None:
        raise UserError(f'{run_dir} has no intact checkpoint to export: train it first')
    net_G = build_net_G(cfg.n_G, cfg.channels)
    net_G.load_parameters(os.path.join(path, 'net_G.params'), ctx=ctx)
    return net_G, cfg, path


def main(argv):
    """Re-export; returns the exit code."""
    p = OneLineParser(prog='run.py export',
                      description="Re-export a run's generator (MXNet + ONNX + manifest).")
    p.add_argument('--run', required=True, metavar='DIR', help='the --out-dir of a run')
    p.add_argument('--out', metavar='DIR', help='where to write (default: RUN/export)')
    args = p.parse_args(argv)
    from ..runtime import use_np
    use_np()
    import mxnet as mx
    from ..train.fit import export_run
    ctx = mx.cpu()
    net_G, cfg, path = load_run_generator(args.run, ctx)
    out = args.out or os.path.join(args.run, 'export')
    manifest = export_run(net_G, cfg, out, ctx)
    print(f'exported {path} to {out} (ONNX max abs diff '
          f'{manifest["onnx"]["verified_max_abs_diff"]:.1e})', file=sys.stderr)
    return 0
