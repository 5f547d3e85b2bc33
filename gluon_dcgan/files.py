"""Small file helpers shared by data, checkpoints and exports (no MXNet import).

Writing. Every file the tool writes goes through a temporary name next to its
final one and is renamed into place when complete, so a crash (or a full disk)
never leaves a half-written file under a final name. A temporary name carries
the writer's host and PID (``.tmp-HOST-PID-RANDOM``): a later run removes only
the leftovers of a process of its own host that has gone, never a live writer's
(two exports or downloads into one folder) and never a user's file.

Replacing a folder. An export, or generate's --out-dir, is replaced whole: written
beside it, then swapped into place by renames a kill cannot cut in two (FolderSwap);
the next writer finishes or rolls back a swap whose process has gone.

Reading. Every file the tool reads may come from someone else, so reads are
bounded: regular files only (a FIFO or /dev/zero is refused, not waited on), a
size limit checked before reading, and parsers whose failures, MemoryError and
RecursionError alike, become one ``Damaged`` error.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import uuid

from . import signals
from .errors import UserError

# A full disk or quota: one line naming the folder, never a traceback.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# This host, hashed to a fixed-width name part (a run folder may be shared by hosts).
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_OWNER = re.compile(r'(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$')
TMP_MARK = '.tmp-'
# JSON the tool writes is a few levels deep; 64 leaves room and stays far from
# Python's recursion limit, whatever the caller's stack depth.
MAX_JSON_DEPTH = 64
MAX_JSON_BYTES = 64 << 20


class Damaged(ValueError):
    """A file that does not parse as what it should be (its first line says why)."""


def owner_suffix():
    """'HOST-PID-RANDOM': names a temporary file or folder as this process's own."""
    return f'{HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}'


def _process_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def is_stale(suffix):
    """True if `suffix` names a temporary of a process of this host that has gone."""
    match = _OWNER.match(suffix)
    if not match or match['host'] != HOST:
        return False  # not one of ours in this format, or another host's: keep it
    pid = int(match['pid'])
    return pid != os.getpid() and _process_gone(pid)


def file_digest(path, algorithm='sha256'):
    """Hex digest of a file, read in 1 MiB chunks."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


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


def disk_full(exc, folder):
    """True if `exc`, raised while writing in `folder`, came from a full disk (see _disk_full)."""
    return _disk_full(exc, folder)


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
    and carries on. Leftovers of killed writers of `path` are removed first.
    """
    folder = os.path.dirname(os.path.abspath(path))
    remove_leftovers(folder, os.path.basename(path) + TMP_MARK)
    tmp = f'{path}{TMP_MARK}{owner_suffix()}'
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt and SystemExit clean up too
        full = full_disk_error and _disk_full(exc, folder)
        _discard(tmp)
        if full:
            raise no_space_error(exc, path) from None
        raise


@contextlib.contextmanager
def temporary_folder(parent, prefix):
    """Yield a new empty folder `prefix`HOST-PID-RANDOM in `parent`, removed on failure.

    The caller renames it on success. A full disk becomes a one-line UserError naming
    `parent`.
    """
    tmp = os.path.join(parent, f'{prefix}{owner_suffix()}')
    try:
        os.makedirs(tmp)
        yield tmp
    except BaseException as exc:
        full = _disk_full(exc, parent)
        _discard(tmp)
        if full:
            raise no_space_error(exc, os.path.join(parent, 'x')) from None
        raise


def leftovers(parent, prefix):
    """Paths in `parent` named `prefix`HOST-PID-RANDOM whose process (of this host) is gone."""
    try:
        names = os.listdir(parent)
    except OSError:  # no folder yet, or not readable: nothing of ours to find
        return []
    return [os.path.join(parent, n) for n in sorted(names)
            if n.startswith(prefix) and is_stale(n[len(prefix):])]


def remove_leftovers(parent, prefix):
    """Remove what killed processes left in `parent` under `prefix`; a live writer's stays."""
    for path in leftovers(parent, prefix):
        _discard(path)


def remove_stale_temps(folder):
    """Remove the written_atomically leftovers of killed processes in `folder`'s top level."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        head, mark, suffix = name.rpartition(TMP_MARK)
        if mark and head and is_stale(suffix):
            _discard(os.path.join(folder, name))


@contextlib.contextmanager
def folder_lock(path, what, remove=False):
    """Hold an exclusive flock on the file `path` (created if needed) for the block.

    Waits for another holder: two exports or downloads into one folder run one after
    the other. `what` names the folder in the error if the lock cannot be made.
    remove=True deletes the lock file as the block ends if it is empty, as every lock
    this makes is (a lock beside a user's folder leaves nothing behind); a waiter that
    then holds the deleted file tries again, so two holders never overlap.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise UserError(f'cannot lock {what} ({exc.strerror}: {path}): fix the folder\'s '
                            f'permissions or choose another one')
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if not remove or _same_file(fd, path):
            break
        os.close(fd)  # its holder deleted it as we waited: lock the file now at `path`
    try:
        yield
    finally:
        if remove and _same_file(fd, path) and os.fstat(fd).st_size == 0:
            with contextlib.suppress(OSError):
                os.remove(path)  # before the lock is released: no one can hold it anew
        os.close(fd)  # releases the lock


def _same_file(fd, path):
    try:
        here = os.lstat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)


def target_path(folder):
    """The absolute path `folder` names as the kernel resolves it, its last part unresolved.

    'RUN/export/.' and 'RUN/export/best/..' are RUN/export itself: every step acts on
    the real name, never on '.' or '..' (os.replace and rmtree fail on those). A
    symbolic link as the last part stays a link, for the caller to refuse.
    """
    path = os.fspath(folder)
    stripped = path.rstrip('/') or path
    head, tail = os.path.split(stripped)
    if tail in ('', '.', '..'):
        return os.path.realpath(stripped)
    return os.path.join(os.path.realpath(head or '.'), tail)


LOCK = '.lock'


def stem(folder):
    """'PARENT/.NAME': the start of every name a swap of `folder` uses beside it."""
    parent, name = os.path.split(folder)
    if len(name) > 80:  # room for the suffixes within the 255 bytes of a name
        name = name[:60] + '-' + hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
    return os.path.join(parent, '.' + name)


class SwapInterrupted(UserError):
    """A swap that failed half done and could not be rolled back: its folders are kept."""


class FolderSwap:
    """Replace a folder the tool owns by a new one, so that a kill at any moment loses nothing.

    For FOLDER, its stem PARENT/.NAME and S this process's owner suffix, under a lock
    (stem + '.lock') that two writers take in turn:

        1. write the new content whole in NEW = stem + new_mark + S (new_folder)
        2. rename FOLDER -> OLD = stem + old_mark + S
        3. move OLD's entries that are not its own (own) into NEW, one rename each
        4. rename NEW -> FOLDER
        5. remove OLD's own entries, then OLD if that emptied it

    SIGINT and SIGTERM wait for steps 2-4 (and 5, with remove_with_renames). Each rename
    is atomic, so an entry that is not the folder's own is at every moment in exactly one
    of FOLDER, OLD and NEW, and only own entries are ever deleted. recover() finishes or
    rolls back the swap of a process that has gone (is_stale): forward if NEW is
    complete, back otherwise.

    What is the folder's own, and when a new one is whole, its writer says (override own
    and complete). By default every entry is its own, a folder the tool wrote entire, and
    a killed swap rolls back to the old folder.
    """
    # Step 5 lets signals through: the old folder may hold many files, and a kill then
    # leaves only old files, which the next swap removes.
    remove_with_renames = False

    def __init__(self, new_mark, old_mark, writer):
        # writer: the command a user runs again to finish what a failed swap left.
        self.new_mark, self.old_mark, self.writer = new_mark, old_mark, writer

    def own(self, folder):
        """The entries of `folder` a swap may delete, in the order to delete them."""
        return sorted(os.listdir(folder))

    def complete(self, folder):
        """True if `folder`, a new folder a killed swap left, is whole and may take the place."""
        return False

    def lock(self, folder):
        """The lock two writers of `folder` take in turn (PARENT/.NAME.lock, removed after)."""
        return folder_lock(stem(folder) + LOCK, os.path.dirname(folder), remove=True)

    @contextlib.contextmanager
    def new_folder(self, folder):
        """Yield a new empty NEW for `folder`; NEW is removed on a failure.

        NEW holds only what the caller wrote until swap_in moves entries into it, and
        swap_in either finishes, takes them back out, or raises SwapInterrupted: then NEW
        stays. A full disk becomes a one-line UserError naming the folder.
        """
        tmp = stem(folder) + self.new_mark + owner_suffix()
        try:
            os.mkdir(tmp)
            yield tmp
        except SwapInterrupted:
            raise
        except BaseException as exc:
            full = _disk_full(exc, os.path.dirname(folder))
            _discard(tmp)
            if full:
                raise no_space_error(exc, tmp) from None
            raise

    def swap_in(self, tmp, folder):
        """Steps 2-5: the finished `tmp` becomes `folder`, keeping what is not its own.

        A failure (a permission) undoes what was done and raises a UserError; if that
        fails too, SwapInterrupted, and recover() finishes the job once this process has
        gone.
        """
        old = stem(folder) + self.old_mark + tmp.rsplit(self.new_mark, 1)[1]  # the same S
        renamed, moved = False, []
        with signals.deferred():
            try:
                if os.path.lexists(folder):
                    os.rename(folder, old)
                    renamed = True
                    moved = self._carry(old, tmp)
                os.rename(tmp, folder)
            except OSError as exc:
                self._undo(tmp, folder, old, renamed, moved, exc)
            if renamed and self.remove_with_renames:
                self._remove_quietly(old)
        if renamed and not self.remove_with_renames:
            self._remove_quietly(old)

    def _undo(self, tmp, folder, old, renamed, moved, exc):
        try:
            for name in moved:
                os.rename(os.path.join(tmp, name), os.path.join(old, name))
            if renamed:
                os.rename(old, folder)
        except OSError:
            raise SwapInterrupted(
                f'cannot replace {folder} ({exc.strerror}), nor undo it: its folders are kept '
                f'in {old} and {tmp}, and the next {self.writer} to {folder} puts them back; '
                f'fix the permissions, then {self.writer} again')
        raise UserError(f'cannot replace {folder} ({exc.strerror}): it is unchanged; fix the '
                        f'permissions of {os.path.dirname(folder)}, or choose another folder')

    def _carry(self, src, dst):
        """Move every entry of `src` but its own into `dst` (never over one); their names."""
        own = set(self.own(src))
        moved = []
        for name in sorted(os.listdir(src)):
            if name not in own and not os.path.lexists(os.path.join(dst, name)):
                os.rename(os.path.join(src, name), os.path.join(dst, name))
                moved.append(name)
        return moved

    def remove_own(self, folder):
        """Delete `folder`'s own entries, then `folder` if that emptied it."""
        for name in self.own(folder):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        with contextlib.suppress(OSError):  # not empty: what is left is not ours to delete
            os.rmdir(folder)

    def _remove_quietly(self, old):
        with contextlib.suppress(OSError):  # else left for recover(): old entries only
            self.remove_own(old)

    def _dead_suffixes(self, folder):
        parent, base = os.path.split(stem(folder))
        try:
            names = os.listdir(parent or '.')
        except OSError:
            return []
        found = {n[len(base) + len(mark):] for n in names
                 for mark in (self.new_mark, self.old_mark) if n.startswith(base + mark)}
        return sorted(s for s in found if is_stale(s))

    def _recover_one(self, folder, suffix):
        tmp, old = stem(folder) + self.new_mark + suffix, stem(folder) + self.old_mark + suffix
        if not os.path.lexists(folder):
            if self.complete(tmp):  # killed in steps 2-4 with NEW whole: finish the swap
                if os.path.isdir(old):
                    self._carry(old, tmp)
                os.rename(tmp, folder)
            elif os.path.isdir(old):  # the new folder is not whole: put the old one back
                if os.path.isdir(tmp):
                    self._carry(tmp, old)
                os.rename(old, folder)
        home = os.path.isdir(folder) and not os.path.islink(folder)
        whole = home and self.complete(folder)
        for leftover in (tmp, old):
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                if home:
                    self._carry(leftover, folder)  # what is not its own goes back
                # A whole folder is deleted only with a whole one in its place.
                if whole or not self.complete(leftover):
                    self.remove_own(leftover)

    def recover(self, folder, locked=False):
        """Finish or roll back the swaps of `folder` that gone processes left; True if any.

        Takes the folder's lock unless the caller holds it (`locked`).
        """
        folder = target_path(folder)
        if not os.path.basename(folder) or not self._dead_suffixes(folder):
            return False
        with contextlib.nullcontext() if locked else self.lock(folder):
            for suffix in self._dead_suffixes(folder):
                self._recover_one(folder, suffix)
        return True


def read_bounded(path, limit, mode='rb'):
    """The contents of the regular file `path`, refused if larger than `limit` bytes.

    Raises Damaged for a FIFO, a device or a file over the limit (read at most
    limit + 1 bytes, so a file that grows while read is refused too), and OSError
    as open() does (missing, unreadable).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Damaged(f'{path} is not a regular file')
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Damaged(f'{path} is larger than {limit} bytes')
    return data.decode('utf-8') if mode == 'r' else data


# A JSON string, escapes included: removed before the brackets are counted.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r'[^\[\]{}]+')


def _json_depth_ok(text, limit):
    """True if no [ or { in `text` nests deeper than `limit`."""
    depth = 0
    for char in _NOT_BRACKET.sub('', _JSON_STRING.sub('', text)):
        depth += 1 if char in '[{' else -1
        if depth > limit:
            return False
    return True


def parse_json(text, name='JSON', max_depth=MAX_JSON_DEPTH):
    """json.loads(text), with every failure (nesting past `max_depth` too) a Damaged."""
    if not _json_depth_ok(text, max_depth):
        raise Damaged(f'{name} nests deeper than {max_depth} levels')
    try:
        return json.loads(text)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise Damaged(f'{name} is not valid JSON ({type(exc).__name__})') from None


def read_json(path, limit=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH):
    """The JSON value in the regular file `path`, bounded in size and depth.

    Raises Damaged if it is not a regular file, too large, too deep, not UTF-8 or not
    JSON; OSError as open() does.
    """
    data = read_bounded(path, limit)
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise Damaged(f'{path} is not UTF-8 text') from None
    return parse_json(text, path, max_depth)


def _npy_header(f, size, path, max_bytes):
    """(shape, fortran_order, dtype) of the .npy stream `f` of `size` bytes, checked.

    Damaged unless the header parses, the dtype holds no objects (no pickle), the
    array is at most `max_bytes`, and the data is exactly as long as the header says.
    """
    import numpy
    from numpy.lib import format as npy
    try:
        version = npy.read_magic(f)
        reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = reader(f, max_header_size=10000)
    except (ValueError, OSError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise Damaged(f'{path} is not a valid .npy array ({type(exc).__name__})') from None
    if dtype.hasobject:
        raise Damaged(f'{path} holds Python objects, which load only through pickle')
    nbytes = int(numpy.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > max_bytes:
        raise Damaged(f'{path} declares {nbytes} bytes of data, more than {max_bytes}')
    if size - f.tell() != nbytes:
        raise Damaged(f'{path} holds {size - f.tell()} bytes of data, its header says {nbytes}')
    return shape, fortran, dtype


def load_npy(path, max_bytes):
    """The array in the regular .npy file `path`, never more than `max_bytes` of data.

    Raises Damaged for anything else (see _npy_header); OSError as open() does.
    """
    import numpy
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, 'rb') as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Damaged(f'{path} is not a regular file')
        _npy_header(f, info.st_size, path, max_bytes)
        f.seek(0)
        try:
            return numpy.load(f, allow_pickle=False)
        except (ValueError, OSError, MemoryError) as exc:
            raise Damaged(f'{path} is not a valid .npy array ({type(exc).__name__})') from None


def load_npz(path, max_bytes):
    """{name: array} of the regular .npz file `path`, each member checked before it is read.

    `max_bytes` bounds the file and each member's data. Raises Damaged for anything
    else; OSError as open() does.
    """
    import io
    import zipfile
    import numpy
    data = read_bounded(path, max_bytes)
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for member in zf.infolist():
                if not member.filename.endswith('.npy') or member.file_size > max_bytes:
                    raise Damaged(f'{path} holds {member.filename!r}, not a bounded .npy array')
                with zf.open(member) as f:
                    _npy_header(f, member.file_size, f'{path}:{member.filename}', max_bytes)
                arrays[member.filename[:-4]] = numpy.load(io.BytesIO(zf.read(member)),
                                                          allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, MemoryError) as exc:
        if isinstance(exc, Damaged):
            raise
        raise Damaged(f'{path} is not a valid .npz archive ({type(exc).__name__})') from None
    return arrays
