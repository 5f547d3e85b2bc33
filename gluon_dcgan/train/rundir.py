"""The run folder (--out-dir): what a run writes there, and the checks before it starts."""
import json
import os
import shutil

from ..config import Config
from ..errors import UserError
from . import checkpoint

# Everything a run writes; --overwrite removes exactly these and nothing else.
RUN_FILES = ('config.json', 'metrics.jsonl', 'real_samples.png', 'leaky_relu.png',
             'training.png', 'progress.gif', 'samples', 'checkpoints', 'export')


class RunPaths:
    """Paths inside one run folder."""

    def __init__(self, out_dir):
        self.root = out_dir
        self.config = os.path.join(out_dir, 'config.json')
        self.metrics = os.path.join(out_dir, 'metrics.jsonl')
        self.real_samples = os.path.join(out_dir, 'real_samples.png')
        self.leaky_relu = os.path.join(out_dir, 'leaky_relu.png')
        self.training = os.path.join(out_dir, 'training.png')
        self.gif = os.path.join(out_dir, 'progress.gif')
        self.samples = os.path.join(out_dir, 'samples')
        self.checkpoints = os.path.join(out_dir, 'checkpoints')
        self.export = os.path.join(out_dir, 'export')

    def holds_run(self):
        """True if a run has already started here."""
        return os.path.exists(self.config) or bool(checkpoint.list_checkpoints(self.checkpoints))


def _check_writable(root):
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, '.write-test')
        with open(probe, 'w') as f:
            f.write('ok')
        os.remove(probe)
    except OSError as exc:
        raise UserError(f'--out-dir {root!r} cannot be written ({exc.strerror}): choose '
                        f'another folder or fix its permissions')


def saved_config(paths):
    """The Config saved in config.json, or None."""
    try:
        with open(paths.config) as f:
            return Config.from_dict(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        raise UserError(f'{paths.config} is damaged; start afresh with --overwrite')


def prepare(cfg, paths):
    """Apply --resume/--overwrite rules; raise UserError on a refused start."""
    if os.path.exists(paths.root) and not os.path.isdir(paths.root):
        raise UserError(f'--out-dir {paths.root!r} is a file, not a folder: choose another path')
    _check_writable(paths.root)
    if not paths.holds_run():
        return
    if not (cfg.resume or cfg.overwrite):
        raise UserError(f'{paths.root} already holds a run: add --resume to continue it, '
                        f'--overwrite to replace it, or choose another --out-dir')
    if cfg.overwrite:
        for name in RUN_FILES:
            path = os.path.join(paths.root, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        return
    old = saved_config(paths)
    if old is not None:
        differ = old.model_differences(cfg)
        if differ:
            pairs = ', '.join(f'{f} {getattr(old, f)!r} -> {getattr(cfg, f)!r}' for f in differ)
            raise UserError(f'cannot resume {paths.root} with a different model or data '
                            f'({pairs}): use the same flags, or --overwrite to start afresh')


def write_config(cfg, paths):
    """config.json, written next to the outputs (atomically)."""
    tmp = paths.config + '.tmp'
    with open(tmp, 'w') as f:
        f.write(cfg.to_json())
    os.replace(tmp, paths.config)
