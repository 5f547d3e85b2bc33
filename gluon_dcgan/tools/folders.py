"""A folder a command writes whole (share's site): made beside it, recorded, renamed into place.

The new content is written into a folder beside the target (.NAME.writing-HOST-PID-…),
with a record there of what the command wrote (the SHA-256 of every file); then it is
renamed into place, the folder it replaces renamed aside first and removed last. Only a
folder the command wrote itself is replaced: an entry its record does not list, or a
file changed since, is the user's, and the command refuses the folder in its own words
(foreign_entry finds the entry). generate --out-dir writes its images the same way.
"""
import json
import os
import shutil

from .. import signals
from ..errors import UserError
from ..export import swap
from ..files import leftovers, remove_leftovers, temporary_folder
from .outputs import is_recorded, read_record

WRITING, REPLACED = '.writing-', '.replaced-'


def foreign_entry(folder, record, max_bytes, command):
    """The first entry of `folder` that `command` did not write (or that changed since), or
    None: an empty folder, or one the command wrote, may be replaced. `record` is the name
    of the command's record in it; OSError if `folder` cannot be listed."""
    names = sorted(os.listdir(folder))
    path = os.path.join(folder, record)
    recorded = None
    if record in names and not os.path.islink(path):
        recorded = read_record(path, max_bytes, command=command)
    if names and recorded is None:
        return record if record in names else names[0]
    return next((n for n in names if n != record and
                 not is_recorded(os.path.join(folder, n), recorded.get(n))), None)


def write_whole(folder, fill, record, fields, check_owned):
    """Make `folder` anew: fill(tmp) writes the files into an empty folder beside it and
    returns {name: sha256}; the record (`fields`, written_by and those files) is added;
    then, under the folder's lock, check_owned(folder) runs again (it may have changed
    while the files were made) and the new folder takes the old one's place."""
    parent, base = os.path.split(swap.stem(folder))
    with temporary_folder(parent, base + WRITING) as tmp:
        digests = fill(tmp)
        with open(os.path.join(tmp, record), 'x') as f:
            json.dump(dict(fields, written_by='gluon_dcgan', files=digests), f, indent=0,
                      sort_keys=True)
        with swap.lock(folder):
            _recover(folder)
            check_owned(folder)
            _swap_in(tmp, folder)


def _recover(folder):
    """Undo what a killed writer left beside `folder`: a folder it was replacing goes back
    if `folder` is missing; its other leftovers are removed."""
    parent, base = os.path.split(swap.stem(folder))
    replaced = leftovers(parent, base + REPLACED)
    if replaced and not os.path.lexists(folder):
        os.rename(replaced[-1], folder)
    remove_leftovers(parent, base + REPLACED)
    remove_leftovers(parent, base + WRITING)


def _swap_in(tmp, folder):
    """Rename the finished `tmp` to `folder`, whose old content (the command's own) is then
    removed. SIGINT and SIGTERM wait for both renames."""
    old = swap.stem(folder) + REPLACED + tmp.rsplit(WRITING, 1)[1]
    with signals.deferred():
        try:
            if os.path.lexists(folder):
                os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except OSError:
                if os.path.lexists(old):
                    os.rename(old, folder)
                raise
        except OSError as exc:
            raise UserError(f'cannot replace {folder} ({exc.strerror}): it is unchanged; fix '
                            f'the permissions of {os.path.dirname(folder)}, or choose another '
                            f'folder')
    shutil.rmtree(old, ignore_errors=True)  # if killed now, the next run removes the rest
