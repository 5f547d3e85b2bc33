"""Replace an export folder by a new one so that a kill at any moment loses nothing.

An export E = PARENT/NAME may hold exports of its own (export/best/, a user's kept
exports), which the new export must keep. Under a lock (PARENT/.NAME.lock), with S
this process's owner suffix (files.owner_suffix):

    1. write the new export whole in T = PARENT/.NAME.partial-S, manifest.json last
    2. rename E -> O = PARENT/.NAME.old-S
    3. move O's other entries (sub-exports) into T, one rename each
    4. rename T -> E
    5. remove O's own files (those its manifest lists), manifest.json last, then O

Each rename is atomic, so at every moment each sub-export exists exactly once, in
E, O or T, and nothing but an export's own files is ever deleted. recover() finishes
or rolls back the swap of a process that has gone (files.is_stale): forward if T is
whole (it always is once O exists), back otherwise.
"""
import contextlib
import os
import re
import shutil
import stat

from .. import signals
from ..errors import UserError
from ..files import (TMP_MARK, disk_full, folder_lock, is_stale, no_space_error, owner_suffix,
                     read_json)
from .names import MANIFEST, ONNX, PARAMS, SYMBOL

PARTIAL, OLD, LOCK = '.partial-', '.old-', '.lock'
EXPORT_FILES = {SYMBOL, PARAMS, ONNX, MANIFEST}  # what the exporters write in T
MANIFEST_BYTES = 1 << 20  # a manifest is about 1 KiB
# The swap's own names beside an export: its lock, and a writer's T and O.
_OURS = re.compile(r'\..+(\.lock|\.(partial|old)-[0-9a-f]{8}-\d+-[0-9a-f]{8})$', re.S)
_HASHED = re.compile(r'.{60}-[0-9a-f]{8}', re.S)  # a long name as stem() cuts it


class Interrupted(UserError):
    """A swap that failed half done and could not be rolled back: its folders are kept."""


def target_path(folder):
    """The absolute path `folder` names as the kernel resolves it, its last part unresolved.

    'RUN/export/.' and 'RUN/export/best/..' are RUN/export itself: every step acts on
    the real name, never on '.' or '..' (os.replace and rmtree fail on those). A
    symbolic link as the last part stays a link, for check_target to refuse.
    """
    path = os.fspath(folder)
    stripped = path.rstrip('/') or path
    head, tail = os.path.split(stripped)
    if tail in ('', '.', '..'):
        return os.path.realpath(stripped)
    return os.path.join(os.path.realpath(head or '.'), tail)


def stem(folder):
    """'PARENT/.NAME': the start of every name the swap uses beside `folder`."""
    import hashlib
    parent, name = os.path.split(folder)
    if len(name) > 80:  # room for the suffixes within the 255 bytes of a name
        name = name[:60] + '-' + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    return os.path.join(parent, '.' + name)


def is_ours(name):
    """True for a name the swap of a sub-folder gives: .X.lock, .X.partial-S, .X.old-S."""
    return bool(_OURS.fullmatch(name))


def export_files(folder):
    """The names of the files the export in `folder` lists (manifest.json included), or None."""
    try:
        files = read_json(os.path.join(folder, MANIFEST), MANIFEST_BYTES)['files']
        return {n for n in files if isinstance(n, str)} | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):  # files.Damaged is a ValueError
        return None


def _own(folder):
    """Names in `folder` that are its export's own files (never a folder): safe to delete."""
    listed = (export_files(folder) or set()) | EXPORT_FILES
    own = []
    for name in os.listdir(folder):
        base = name.split(TMP_MARK)[0]  # a write killed half way: manifest.json.tmp-…
        if (name in listed or base in EXPORT_FILES) and \
                not stat.S_ISDIR(os.lstat(os.path.join(folder, name)).st_mode):
            own.append(name)
    return own


def _complete(folder):
    """True if `folder` holds a finished export: a manifest and every file it lists."""
    files = export_files(folder) if os.path.isdir(folder) else None
    return files is not None and all(os.path.isfile(os.path.join(folder, n)) for n in files)


def _move_others(src, dst):
    """Move every entry of `src` but its export's own files into `dst` (never over one)."""
    own = set(_own(src))
    moved = []
    for name in sorted(os.listdir(src)):
        if name not in own and not os.path.lexists(os.path.join(dst, name)):
            os.rename(os.path.join(src, name), os.path.join(dst, name))
            moved.append(name)
    return moved


def _remove_own(folder):
    """Delete `folder`'s own export files, manifest.json last, then `folder` if now empty."""
    for name in sorted(_own(folder), key=lambda n: n == MANIFEST):
        os.remove(os.path.join(folder, name))
    with contextlib.suppress(OSError):  # not empty: what is left is not ours to delete
        os.rmdir(folder)


def _dead_suffixes(folder):
    parent, base = os.path.split(stem(folder))
    try:
        names = os.listdir(parent or '.')
    except OSError:
        return []
    found = {n[len(base) + len(mark):] for n in names for mark in (PARTIAL, OLD)
             if n.startswith(base + mark)}
    return sorted(s for s in found if is_stale(s))


def _recover_one(folder, suffix):
    tmp, old = stem(folder) + PARTIAL + suffix, stem(folder) + OLD + suffix
    if not os.path.lexists(folder):
        if _complete(tmp):  # killed in steps 2-4: finish the swap
            if os.path.isdir(old):
                _move_others(old, tmp)
            os.rename(tmp, folder)
        elif os.path.isdir(old):  # the new export is not whole: put the old one back
            if os.path.isdir(tmp):
                _move_others(tmp, old)
            os.rename(old, folder)
    home = os.path.isdir(folder) and not os.path.islink(folder)
    whole = home and _complete(folder)
    for leftover in (tmp, old):
        if os.path.isdir(leftover) and not os.path.islink(leftover):
            if home:
                _move_others(leftover, folder)  # a sub-export goes back where it was
            # A whole export is deleted only with a whole one in its place.
            if whole or not _complete(leftover):
                _remove_own(leftover)


def recover(folder, locked=False):
    """Finish or roll back the swaps of `folder` that gone processes left; True if any.

    Takes the folder's lock unless the caller holds it (`locked`).
    """
    folder = target_path(folder)
    if not os.path.basename(folder) or not _dead_suffixes(folder):
        return False
    with contextlib.nullcontext() if locked else lock(folder):
        for suffix in _dead_suffixes(folder):
            _recover_one(folder, suffix)
    return True


def recover_sub_exports(folder):
    """recover() each export inside `folder` (export/best/) whose swap a kill left half way."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return
    for name in sorted(os.listdir(folder)):
        for mark in (PARTIAL, OLD):
            head = name.rpartition(mark)[0][1:]  # '.best.partial-S' -> 'best'
            # A cut long name does not say the folder's: reading that export recovers it.
            if name.startswith('.') and mark in name and head and not _HASHED.fullmatch(head):
                recover(os.path.join(folder, head))


def heal(folder):
    """Before `folder` is read: recover its parent (export/ of an export/best/), itself and
    the exports inside it. Quiet, and a no-op in a folder this user cannot write."""
    folder = target_path(folder)
    for step in (lambda: recover(os.path.dirname(folder)), lambda: recover(folder),
                 lambda: recover_sub_exports(folder)):
        with contextlib.suppress(OSError, UserError):
            step()


def lock(folder):
    """The lock two writers of `folder` take in turn (PARENT/.NAME.lock, removed after)."""
    return folder_lock(stem(folder) + LOCK, os.path.dirname(folder), remove=True)


@contextlib.contextmanager
def partial_folder(folder):
    """Yield a new empty T for the export of `folder`; T is removed on a failure.

    T holds only what this call wrote until swap_in moves sub-exports into it, and
    swap_in either finishes, takes them back out, or raises Interrupted: then T stays.
    """
    tmp = stem(folder) + PARTIAL + owner_suffix()
    try:
        os.mkdir(tmp)
        yield tmp
    except Interrupted:
        raise
    except BaseException as exc:
        full = disk_full(exc, os.path.dirname(folder))
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        if full:
            raise no_space_error(exc, tmp) from None
        raise


def swap_in(tmp, folder):
    """Steps 2-5 above: the finished `tmp` becomes `folder`, keeping its sub-exports.

    SIGINT and SIGTERM wait until it is done. A failure (a permission) undoes what was
    done and raises a UserError; if that fails too, Interrupted, and recover() finishes
    the job once this process has gone.
    """
    old = stem(folder) + OLD + tmp.rsplit(PARTIAL, 1)[1]  # the same suffix S
    renamed, moved = False, []
    with signals.deferred():
        try:
            if os.path.lexists(folder):
                os.rename(folder, old)
                renamed = True
                moved = _move_others(old, tmp)
            os.rename(tmp, folder)
        except OSError as exc:
            _undo(tmp, folder, old, renamed, moved, exc)
        else:
            if renamed:
                with contextlib.suppress(OSError):  # else left for recover(): old files only
                    _remove_own(old)


def _undo(tmp, folder, old, renamed, moved, exc):
    try:
        for name in moved:
            os.rename(os.path.join(tmp, name), os.path.join(old, name))
        if renamed:
            os.rename(old, folder)
    except OSError:
        raise Interrupted(f'cannot replace {folder} ({exc.strerror}), nor undo it: its '
                          f'folders are kept in {old} and {tmp}, and the next export to '
                          f'{folder} puts them back; fix the permissions, then export again')
    raise UserError(f'cannot replace {folder} ({exc.strerror}): it is unchanged; fix the '
                    f'permissions of {os.path.dirname(folder)}, or choose another folder')
