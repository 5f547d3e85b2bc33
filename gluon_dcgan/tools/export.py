"""run.py export --run DIR: re-export a run's generator from its newest intact checkpoint."""
import os
import sys

from ..config import Config, OneLineParser
from ..errors import UserError


def load_run_generator(run_dir, ctx):
    """(net_G with the newest intact checkpoint's weights, the run's Config, checkpoint path).

    The net is built from the config saved inside the checkpoint, the one its
    weights were trained with; a config.json that disagrees is refused.
    """
    from ..model import build_net_G
    from ..train import checkpoint, rundir
    paths = rundir.RunPaths(run_dir)
    if not os.path.isdir(run_dir):
        raise UserError(f'--run {run_dir!r} is not a folder: give the --out-dir of a training run')
    cfg = rundir.saved_config(paths)
    if cfg is None:
        raise UserError(f'{run_dir} is not a run folder (no config.json): give --run the '
                        f'--out-dir of a training run')
    rundir.lock(run_dir)  # a training run in that folder must not change it meanwhile
    path = checkpoint.latest_valid(paths.checkpoints, lambda m: print(m, file=sys.stderr))
    if path is None:
        raise UserError(f'{run_dir} has no intact checkpoint to export: train it first')
    trained = Config.from_dict(checkpoint.load_state(path)['config'])
    differ = trained.model_differences(cfg)
    if differ:
        pairs = ', '.join(f'{f} {getattr(trained, f)!r} vs {getattr(cfg, f)!r}' for f in differ)
        raise UserError(f'{path} and {paths.config} disagree ({pairs}): the config.json was '
                        f'changed by hand; restore it, or train the run again')
    net_G = build_net_G(trained.n_G, trained.channels)
    net_G.load_parameters(os.path.join(path, 'net_G.params'), ctx=ctx)
    return net_G, trained, path


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
    ctx = mx.cpu()
    net_G, cfg, path = load_run_generator(args.run, ctx)
    manifest = export_run(net_G, cfg, out, ctx, checkpoint.load_state(path)['epoch'])
    print(f'exported {path} to {out} (ONNX max abs diff '
          f'{manifest["onnx"]["verified_max_abs_diff"]:.1e})', file=sys.stderr)
    return 0
