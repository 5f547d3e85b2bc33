"""A run folder's generator, rebuilt from its newest intact checkpoint.

Used by the export command and the exercises; it lives with the checkpoints it reads,
below the commands that use it.
"""
import os
import sys

from ..config import Config
from ..errors import UserError
from . import checkpoint, rundir


def load_run_generator(run_dir, ctx):
    """(net_G with the newest intact checkpoint's weights, the run's Config, checkpoint path).

    The net is built from the config saved inside the checkpoint, the one its
    weights were trained with; a config.json that disagrees is refused.
    """
    from .. import model
    paths = rundir.RunPaths(run_dir)
    if not os.path.isdir(run_dir):
        raise UserError(f'--run {run_dir!r} is not a folder: give the --out-dir of a training run')
    cfg = rundir.saved_config(paths)
    if cfg is None:
        raise UserError(f'{run_dir} is not a run folder (no config.json): give --run the '
                        f'--out-dir of a training run')
    if os.access(run_dir, os.W_OK | os.X_OK):  # a run we cannot write, we only read: its
        rundir.lock(run_dir)  # checkpoints are renamed into place whole, and checked
    path = checkpoint.latest_valid(paths.checkpoints, lambda m: print(m, file=sys.stderr))
    if path is None and checkpoint.list_checkpoints(paths.checkpoints):
        raise UserError(f'no checkpoint in {paths.checkpoints} is intact (the warnings above '
                        f'say why): nothing to export; train the run again with --overwrite')
    if path is None:
        raise UserError(f'{run_dir} has no intact checkpoint to export: train it first')
    trained = Config.from_dict(checkpoint.load_state(path)['config'])
    differ = trained.model_differences(cfg)
    if differ:
        pairs = ', '.join(f'{f} {getattr(trained, f)!r} vs {getattr(cfg, f)!r}' for f in differ)
        raise UserError(f'{path} and {paths.config} disagree ({pairs}): the config.json was '
                        f'changed by hand; restore it, or train the run again')
    net_G = model.net_G(trained.n_G, trained.channels)
    # A run with --ema exports the average of its weights, as its own export did.
    weights = checkpoint.EMA if os.path.exists(os.path.join(path, checkpoint.EMA)) else \
        'net_G.params'
    net_G.load_parameters(os.path.join(path, weights), ctx=ctx)
    return net_G, trained, path
