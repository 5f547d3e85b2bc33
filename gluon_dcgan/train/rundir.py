"""The run folder (--out-dir): what a run writes there, its lock, and the checks before it starts.

Rules: one process owns a run folder at a time (an flock on RUN/.lock, which the
kernel releases if the process dies); every check runs before anything in the
folder changes; --overwrite removes only the files a run writes, and only once
all checks have passed.
"""
import contextlib
import fcntl
import os
import re
import shutil

from ..config import BUILT_IN_DATA, MODEL_FIELDS, Config
from ..errors import UserError
from ..export.mxnet_export import check_target
from ..files import read_json, remove_stale_temps, written_atomically
from . import checkpoint

# Everything a run writes; --overwrite removes exactly these and nothing else: the files,
# and in each folder the entries whose names match (a user's other files there stay).
RUN_FILES = ('config.json', 'metrics.jsonl', 'real_samples.png', 'leaky_relu.png',
             'training.png', 'progress.gif')


_SAMPLE = re.compile(r'epoch_\d+\.png$').match
RUN_FOLDERS = ('samples', 'checkpoints', 'export')
# The longest path a run writes below its folder (a checkpoint file in its temporary
# folder is about 60 characters), with room to spare.
PATH_ROOM = 128
LOCK = '.lock'
CONFIG_BYTES = 1 << 20  # a config.json is under 1 KiB (its paths at most PATH_MAX each)
_held = {}  # real path of a run folder -> its open lock file: held as long as the process
_created = {}  # real path -> True if the lock created the folder, False if only its .lock


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
        """True if a run has already started here (config.json is a run's, or checkpoints)."""
        return _is_run_config(self.config) or bool(checkpoint.list_checkpoints(self.checkpoints))


def _is_run_config(path):
    """True if `path` holds a run's config.json (a JSON object with the model's fields)."""
    try:
        values = read_json(path, CONFIG_BYTES)
    except (OSError, ValueError):  # files.Damaged too: too large, nested too deep, a FIFO
        return False
    return isinstance(values, dict) and set(MODEL_FIELDS) <= set(values)


def lock(root):
    """Take the run folder for this process, or raise a UserError naming the process holding it.

    Creates the folder if needed. The lock is released when the process exits,
    however it exits.
    """
    if os.path.exists(root) and not os.path.isdir(root):
        raise UserError(f'--out-dir {root!r} is a file, not a folder: choose another path')
    if os.path.realpath(root) in _held:  # this process already owns it (ablate-activation)
        return
    _check_path_length(root)
    try:
        created = not os.path.exists(root)
        new_lock = not os.path.lexists(os.path.join(root, LOCK))
        os.makedirs(root, exist_ok=True)
        # O_NOFOLLOW: a .lock planted as a symlink must not make us write a PID elsewhere.
        fd = os.open(os.path.join(root, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if os.path.islink(os.path.join(root, LOCK)):
            raise UserError(f'{os.path.join(root, LOCK)} is a symbolic link, not the lock '
                            f'gluon_dcgan writes: remove it, then run again')
        raise UserError(f'--out-dir {root!r} cannot be written ({exc.strerror}): choose '
                        f'another folder or fix its permissions')
    if not os.path.isfile(os.path.join(root, LOCK)):
        os.close(fd)
        raise UserError(f'{os.path.join(root, LOCK)} is not a regular file: remove it, '
                        f'then run again')
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode('ascii', 'replace').strip() or 'unknown'
        os.close(fd)
        raise UserError(f'{root} is in use by another gluon_dcgan process (PID {holder}): '
                        f'wait for it to finish or stop it, or choose another --out-dir')
    _held[os.path.realpath(root)] = fd
    if created or new_lock:
        _created[os.path.realpath(root)] = created
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f'{os.getpid()}\n'.encode())
    except OSError as exc:  # a full disk
        unlock_if_unused(root)
        raise UserError(f'--out-dir {root!r} cannot be written ({exc.strerror}): free some '
                        f'space, or choose another folder')


def unlock_if_unused(root):
    """Remove the lock file (and the folder) this process created, if nothing else was written.

    A run refused by a check after taking the lock leaves no empty folder behind, and
    no .lock in a folder of the user's.
    """
    real = os.path.realpath(root)
    if real not in _created:
        return
    folder_too = _created.pop(real)
    os.close(_held.pop(real))
    with contextlib.suppress(OSError):
        os.remove(os.path.join(real, LOCK))
        if folder_too:
            os.rmdir(real)  # fails, as it should, if anything else went in


def saved_config(paths):
    """The Config saved in config.json, or None."""
    if os.path.exists(paths.root) and not os.path.isdir(paths.root):
        raise UserError(f'{paths.root} is not a folder: give the --out-dir of a training run')
    try:
        return Config.from_dict(read_json(paths.config, CONFIG_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError):
        raise UserError(f'{paths.config} is damaged; start afresh with --overwrite')


def model_mismatch(old, cfg, what):
    """A UserError if `cfg` changes the model or data of a run configured as `old`, else None."""
    differ = old.model_differences(cfg)
    if not differ:
        return None
    pairs = ', '.join(f'{f} {getattr(old, f)!r} -> {getattr(cfg, f)!r}' for f in differ)
    return UserError(f'cannot resume {what} with a different model or data ({pairs}): use '
                     f'the same flags, or --overwrite to start afresh')


def _check_kinds(paths):
    """Each name a run writes is what the run would write there: a file or a folder."""
    for name in RUN_FILES + RUN_FOLDERS:
        path = os.path.join(paths.root, name)
        want_folder = name in RUN_FOLDERS
        if os.path.islink(path) or (os.path.lexists(path) and
                                    os.path.isdir(path) != want_folder):
            what = ('a symbolic link' if os.path.islink(path) else
                    'a file' if want_folder else 'a folder')
            raise UserError(f'{path} is {what}, where a run writes its {name} '
                            f'{"folder" if want_folder else "file"}: move it away, or '
                            f'choose another --out-dir')


def _check_outside_data(cfg, paths):
    """Neither folder inside the other (real paths: through symbolic links too), as the
    run's own pictures (samples/epoch_NNN.png) would become training images."""
    real_out, data = os.path.realpath(paths.root), cfg.data
    if data in BUILT_IN_DATA or not os.path.isdir(data):
        return
    real_data = os.path.realpath(data)
    common = os.path.commonpath([real_out, real_data])
    if common == real_data:
        raise UserError(f'--out-dir {paths.root} is inside the --data folder {data}: its '
                        f'pictures would become training images; choose an --out-dir '
                        f'outside it')
    if common == real_out:
        raise UserError(f'--data {data} is inside the --out-dir {paths.root}: the run\'s own '
                        f'pictures (samples/...) would become training images; move the '
                        f'images out of the run folder, or choose another --out-dir')


def check_start(cfg, paths, log):
    """Apply the --resume/--overwrite rules; changes nothing on disk."""
    _check_outside_data(cfg, paths)
    _check_not_in_a_run(paths)
    _check_kinds(paths)
    run_config = _is_run_config(paths.config)
    started = run_config or bool(checkpoint.list_checkpoints(paths.checkpoints))  # = holds_run()
    if os.path.exists(paths.config) and not started:
        raise UserError(f'{paths.config} is not the config of a gluon_dcgan run, so '
                        f'{paths.root} holds files of your own: choose another --out-dir')
    # Training ends by replacing export/: refuse now, not after the last epoch.
    check_target(paths.export, advice='move them out of the run folder, then run again')
    if not started:
        _check_no_run_files(paths)
        _check_writable(paths, ())
        if cfg.resume:
            log(f'note: {paths.root} holds no run yet; --resume starts a new one')
        return
    if not (cfg.resume or cfg.overwrite):
        raise UserError(f'{paths.root} already holds a run: add --resume to continue it, '
                        f'--overwrite to replace it, or choose another --out-dir')
    if cfg.resume and run_config:
        error = model_mismatch(saved_config(paths), cfg, paths.root)
        if error:
            raise error
    # --overwrite empties the old run's folders; a resumed run prunes its old checkpoints.
    _check_writable(paths, old_run_entries(paths) if cfg.overwrite else
                    [os.path.join(paths.checkpoints, n)
                     for n in checkpoint.list_checkpoints(paths.checkpoints)])


def _check_not_in_a_run(paths):
    """Not inside another run's export/, checkpoints/ or samples/ (that run could not finish)."""
    folder = os.path.realpath(paths.root)
    while os.path.dirname(folder) != folder:
        parent = os.path.dirname(folder)
        if os.path.basename(folder) in RUN_FOLDERS and RunPaths(parent).holds_run():
            raise UserError(f'--out-dir {paths.root} is inside the {os.path.basename(folder)}/ '
                            f'folder of the run in {parent}: choose a folder outside that run')
        folder = parent


def _check_path_length(root):
    """The run's deepest files must fit in the system's path limit (PATH_MAX)."""
    limit = os.pathconf('/', 'PC_PATH_MAX')
    length = len(os.path.abspath(root))
    if length + PATH_ROOM > limit:
        raise UserError(f'--out-dir is {length} characters long as an absolute path, and the '
                        f'files a run writes in it would pass the system\'s limit of {limit}: '
                        f'choose a shorter path')


def _check_no_run_files(paths):
    """A folder holding no run must not hold files a run would write over: they are the user's."""
    found = [name for name in RUN_FILES if os.path.lexists(os.path.join(paths.root, name))]
    if os.path.isdir(paths.samples):
        found += sorted(f'samples/{n}' for n in os.listdir(paths.samples) if _SAMPLE(n))
    if os.path.lexists(os.path.join(paths.checkpoints, 'best')):
        found.append('checkpoints/best')
    if found:
        raise UserError(f'{paths.root} holds no run, but files named as a run names its own '
                        f'({", ".join(found[:3])}{" ..." if len(found) > 3 else ""}): a run '
                        f'would replace them; move them away, or choose another --out-dir')


def _check_writable(paths, removing):
    """The folders a run writes in, and those it will empty (`removing`), can be written: no
    change on disk is left half done for want of a permission."""
    folders = [paths.root] + [f for f in (paths.samples, paths.checkpoints, paths.export)
                              if os.path.isdir(f) and not os.path.islink(f)]
    for path in removing:
        if os.path.isdir(path) and not os.path.islink(path):
            folders += [top for top, _, _ in os.walk(path)]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UserError(f'{folder} cannot be written (permission denied): fix its '
                            f'permissions, or choose another --out-dir')


def old_run_entries(paths):
    """What --overwrite removes: the previous run's files and folders, config.json last.

    In checkpoints/: ckpt-E…-B… folders, their temporary folders, and best/ if the
    run kept a best one (--eval-every, --fid-every; damaged-… folders are kept: they are
    never deleted). In export/: the export's own files and, after such a run,
    export/best/; other exports kept there stay. In samples/: epoch_NNN.png.
    """
    old = saved_config(paths) if _is_run_config(paths.config) else None
    best = bool(old and (old.fid_every or old.eval_every))  # did it keep a best one?
    ours = {'samples': _SAMPLE,
            'checkpoints': lambda n: bool(checkpoint.parse_name(n) or (best and n == 'best')
                                          or n.startswith(checkpoint.TMP_PREFIX)),
            'export': lambda n: (not os.path.isdir(os.path.join(paths.export, n))
                                 or (best and n == 'best'))}
    entries = []
    for name in RUN_FOLDERS:
        folder = os.path.join(paths.root, name)
        if os.path.isdir(folder):
            entries += [os.path.join(folder, n) for n in sorted(os.listdir(folder))
                        if ours[name](n)]
    files = [os.path.join(paths.root, n) for n in RUN_FILES]
    return entries + [f for f in files[1:] + files[:1] if os.path.lexists(f)]


def clear_old_run(cfg, paths):
    """Once every check has passed: remove what killed writers left in the run's folders
    (their *.tmp-HOST-PID-RANDOM files; a live writer's stay) and, with --overwrite, the
    previous run's files."""
    for folder in (paths.root,) + tuple(os.path.join(paths.root, n) for n in RUN_FOLDERS):
        remove_stale_temps(folder)
    if not (cfg.overwrite and paths.holds_run()):
        return
    for path in old_run_entries(paths):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    for name in RUN_FOLDERS:
        folder = os.path.join(paths.root, name)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)


def write_config(cfg, paths):
    """config.json, written next to the outputs (atomically)."""
    with written_atomically(paths.config) as tmp, open(tmp, 'w') as f:
        f.write(cfg.to_json())
