"""Small file helpers shared by data, checkpoints and exports (no MXNet import).

Every file the tool writes goes through a temporary name next to its final one
and is renamed into place when complete, so a crash (or a full disk) never
leaves a half-written file under a final name. Temporary names carry a random
suffix, so a user's own files never match them.
"""
import contextlib
import errno
import hashlib
import os
import shutil
import uuid

from .errors import UserError

# A full disk or quota: one line naming the folder, never a traceback.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def file_digest(path, algorithm='sha256'):
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path):
    """Flush a file or folder to disk (a folder: so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def no_space_error(exc, path):
    """The one-line error for a full disk while writing `path`."""
    folder = os.path.dirname(os.path.abspath(path)) or '.'
    return UserError(f'no space left to write in {folder}: free some space or choose a folder '
                     f'on another disk; the partial files were removed')


def _disk_full(exc, folder):
    """True if `exc` came from a full disk: ENOSPC/EDQUOT, or (for libraries such as MXNet's
    file writer that do not report errno) a folder with almost no free space left."""
    if isinstance(exc, OSError):  # its errno says (a folder in /sys has no free space either)
        return exc.errno in NO_SPACE
    if not isinstance(exc, Exception):
        return False
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    # Out of bytes, or out of inodes (a file system can run out of either).
    return (stats.f_bavail * stats.f_frsize < (1 << 20) or
            (stats.f_files > 0 and stats.f_favail < 16))  # f_files 0: no inode limit


def _discard(path):
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


@contextlib.contextmanager
def written_atomically(path, full_disk_error=True):
    """Yield a temporary path to write; it becomes `path` on success, vanishes on failure.

    A full disk becomes a one-line UserError naming the folder. full_disk_error=False
    re-raises the original error instead, for a cache whose caller logs a failed write
    and carries on.
    """
    tmp = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt and SystemExit clean up too
        full = full_disk_error and _disk_full(exc, os.path.dirname(os.path.abspath(path)))
        _discard(tmp)
        if full:
            raise no_space_error(exc, path) from None
        raise


@contextlib.contextmanager
def temporary_folder(parent, prefix):
    """Yield a new empty folder in `parent`, removed on failure (the caller renames it on success).

    A full disk becomes a one-line UserError naming `parent`.
    """
    tmp = os.path.join(parent, f'{prefix}{uuid.uuid4().hex[:8]}')
    try:
        os.makedirs(tmp)
        yield tmp
    except BaseException as exc:
        full = _disk_full(exc, parent)
        _discard(tmp)
        if full:
            raise no_space_error(exc, os.path.join(parent, 'x')) from None
        raise


def remove_leftovers(parent, prefix):
    """Remove temporary folders or files named `prefix`* that a killed run left in `parent`."""
    if not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        if name.startswith(prefix):
            _discard(os.path.join(parent, name))
