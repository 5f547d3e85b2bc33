"""run.py export --run DIR: re-export a run's generator from its newest intact checkpoint."""
import os
import sys

from ..flags import OneLineParser, program


def main(argv):
    """Re-export; returns the exit code."""
    p = OneLineParser(prog=program('export'),
                      description="Re-export a run's generator (MXNet + ONNX + manifest).")
    p.add_argument('--run', required=True, metavar='DIR', help='the --out-dir of a run')
    p.add_argument('--out', metavar='DIR', help='where to write: an empty or new folder, or an '
                   'existing export to replace (default: RUN/export)')
    args = p.parse_args(argv)
    from ..export.mxnet_export import check_target
    from ..export.swap import target_path
    out = target_path(args.out or os.path.join(args.run, 'export'))  # '.', '..' resolved
    _check_not_here(out, args.out or out)
    check_target(out)  # before anything is loaded or written
    _lock_runs_around(out)
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


def _check_not_here(out, given):
    """The export replaces its folder: from inside it, the shell would be left in the old one."""
    from ..errors import UserError
    try:
        here = os.path.samefile(out, '.')
    except OSError:  # no such folder yet, or no current one
        return
    if here:
        raise UserError(f'--out {given} is the current folder, which the export replaces (this '
                        f'shell would be left in a deleted folder): run from its parent with '
                        f'--out {os.path.basename(out)}')


def _lock_runs_around(out):
    """Take the run folder that holds `out` (RUN/export, RUN/export/best): not while it trains."""
    from ..train import rundir
    folder = os.path.dirname(out)
    while True:
        if rundir.RunPaths(folder).holds_run():
            rundir.lock(folder)
        if os.path.dirname(folder) == folder:
            return
        folder = os.path.dirname(folder)
