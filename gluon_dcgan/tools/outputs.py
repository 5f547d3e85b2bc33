"""Reports a command writes into a folder that may also hold the user's files.

ablate-activation writes DIR/ablation.{md,json,png} and analyze-categories writes
RUN/categories.{md,png}. A command replaces only files it wrote itself: it keeps
their SHA-256s in the folder's record (FOLDER/.gluon_dcgan-outputs.json), and a
file under one of its names whose content is not the recorded one is the user's.
Such a file is refused in one line before any work starts, unless --overwrite.

A folder a command writes whole (share's site) holds its own record of every file in
it; foreign_entry finds the first entry that record does not vouch for.
"""
import json
import os

from ..errors import UserError
from ..files import Damaged, file_digest, read_json, target_path, written_atomically

RECORD = '.gluon_dcgan-outputs.json'
_RECORD_BYTES = 1 << 20  # a few names and digests; anything larger is not ours


def read_record(path, max_bytes=_RECORD_BYTES, **fields):
    """{name: sha256}, the 'files' of the record of ours at `path`; None if it cannot be
    read or is not ours (written_by gluon_dcgan, and each of `fields` as given)."""
    try:
        value = read_json(path, max_bytes)
    except (OSError, Damaged):
        return None
    files = value.get('files') if isinstance(value, dict) else None
    if (value.get('written_by') != 'gluon_dcgan' or not isinstance(files, dict) or
            not all(isinstance(v, str) for v in files.values()) or
            any(value.get(k) != v for k, v in fields.items())):
        return None
    return files


def _record(folder):
    """{name: sha256} of the record in `folder`; None if there is one but it is not ours."""
    path = os.path.join(folder, RECORD)
    return read_record(path) if os.path.lexists(path) else {}


def is_recorded(path, digest):
    if digest is None or os.path.islink(path) or not os.path.isfile(path):
        return False
    try:
        return file_digest(path) == digest
    except OSError:
        return False


def foreign_entry(folder, record, max_bytes, command):
    """The first entry of `folder`, a folder `command` writes whole (share's site), that the
    command did not write or that changed since, or None: an empty folder, or one the
    command wrote, may be replaced. `record` names its record in the folder; OSError if
    `folder` cannot be listed."""
    names = sorted(os.listdir(folder))
    path = os.path.join(folder, record)
    recorded = None
    if record in names and not os.path.islink(path):
        recorded = read_record(path, max_bytes, command=command)
    if names and recorded is None:
        return record if record in names else names[0]
    return next((n for n in names if n != record and
                 not is_recorded(os.path.join(folder, n), recorded.get(n))), None)


def check_owned_folder(folder, record, max_bytes, command, flag):
    """Refuse `folder` (the value of `flag`) unless it is missing, empty, or written whole by
    `command` and unchanged since (foreign_entry); writes nothing."""
    if not os.path.isdir(folder):
        return
    try:
        foreign = foreign_entry(folder, record, max_bytes, command)
    except OSError as exc:
        raise UserError(f'cannot read {flag} {folder} ({exc.strerror}): fix its permissions, '
                        f'or choose another folder')
    if foreign is not None:
        raise UserError(f'{flag} {folder} holds {foreign}, which {command} did not write (or '
                        f'which changed since): move it away, or choose another {flag}')


def folder_to_write(value, export, record, max_bytes, command, flag):
    """The absolute folder `value` of `flag`, refused unless `command` may make or replace it
    whole (generate --out-dir, share --out): its parent exists, it is no link, file or
    folder inside the export, and holds nothing `command` did not write. Writes nothing."""
    folder = target_path(value)
    parent = os.path.dirname(folder)
    if not os.path.isdir(parent):
        raise UserError(f'folder {parent!r} for {flag} does not exist: create it first')
    if os.path.islink(folder):
        raise UserError(f'{flag} {folder} is a symbolic link: give the folder it points to')
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise UserError(f'{flag} {folder} is a file: give the name of a folder')
    inside = os.path.realpath(export)
    if os.path.commonpath([folder, inside]) == inside:
        raise UserError(f'{flag} {folder} is inside the --export folder: choose a folder '
                        f'outside the export')
    check_owned_folder(folder, record, max_bytes, command, flag)
    return folder


def put_in_place(swap, tmp, folder, owned, digests, **fields):
    """Finish a folder a command wrote whole in `tmp` (swap.new_folder): write its record
    (`fields`, the command and each file's SHA-256 in `digests`), then, under the swap's
    lock, finish what a killed writer left, check once more that `folder` is still the
    command's (it may have changed while `tmp` was written), and swap `tmp` in.
    `owned` is (record name, its size bound, command, flag), as for check_owned_folder."""
    record, _, command, _ = owned
    with open(os.path.join(tmp, record), 'x') as f:
        json.dump(dict(fields, written_by='gluon_dcgan', command=command, files=digests), f,
                  indent=0, sort_keys=True)
    with swap.lock(folder):
        swap.recover(folder, locked=True)
        check_owned_folder(folder, *owned)
        swap.swap_in(tmp, folder)


def check_replaceable(folder, names, command, overwrite=False):
    """Raise a UserError unless `command` may write each of `names` in `folder`.

    A name is free if nothing is there, or if the file there is the one the record
    says was written; with `overwrite`, a file of the user's may be replaced too. A
    folder under one of the names is refused either way. Changes nothing on disk.
    """
    record = _record(folder)
    if record is None and not overwrite:
        raise UserError(f'{os.path.join(folder, RECORD)} is not the record of outputs '
                        f'gluon_dcgan writes: move it away, or add --overwrite')
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            raise UserError(f'{path} is a folder, where {command} writes its {name}: move it '
                            f'away, or choose another folder')
        if not (overwrite or is_recorded(path, (record or {}).get(name))):
            raise UserError(f'{path} was not written by {command} (or was changed since): '
                            f'move it away, or add --overwrite to replace it')


def record_written(folder, names):
    """Add the SHA-256s of `names`, just written in `folder`, to the folder's record."""
    files = _record(folder) or {}
    files.update({name: file_digest(os.path.join(folder, name)) for name in names})
    with written_atomically(os.path.join(folder, RECORD)) as tmp, open(tmp, 'w') as f:
        json.dump({'written_by': 'gluon_dcgan', 'files': files}, f, indent=1, sort_keys=True)
