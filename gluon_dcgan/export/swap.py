"""An export's swap: files.FolderSwap, with what an export's own files are and when it is whole.

An export E = PARENT/NAME may hold exports of its own (export/best/, a user's kept
exports), which the new export must keep. So the swap (files.FolderSwap, whose steps
its docstring lists) writes the new export whole in PARENT/.NAME.partial-S, manifest.json
last, and puts the old one aside as PARENT/.NAME.old-S; an export's own entries are the
files its manifest lists, and any folder in it is a sub-export, moved into the new one.
Nothing but an export's own files is ever deleted. A killed swap goes forward if the new
export is whole (it always is once the old one is aside), back otherwise.
"""
import contextlib
import os
import re
import stat

from ..errors import UserError
from ..files import TMP_MARK, FolderSwap, read_json, target_path
from .names import MANIFEST, ONNX, PARAMS, SYMBOL

PARTIAL, OLD = '.partial-', '.old-'
EXPORT_FILES = {SYMBOL, PARAMS, ONNX, MANIFEST}  # what the exporters write
MANIFEST_BYTES = 1 << 20  # a manifest is about 1 KiB
# The swap's own names beside an export: its lock, a writer's .partial-S and .old-S.
_OURS = re.compile(r'\..+(\.lock|\.(partial|old)-[0-9a-f]{8}-\d+-[0-9a-f]{8})$', re.S)
_HASHED = re.compile(r'.{60}-[0-9a-f]{8}', re.S)  # a long name as files.stem() cuts it


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


class ExportSwap(FolderSwap):
    """The swap of an export: own files are those its manifest lists (never a folder)."""
    # An export's own files are four: they go before a waiting signal is let through, so
    # an interrupted export leaves no .old- folder behind.
    remove_with_renames = True

    def own(self, folder):
        """The export's own files in `folder`, manifest.json last (safe to delete)."""
        listed = (export_files(folder) or set()) | EXPORT_FILES
        own = []
        for name in os.listdir(folder):
            base = name.split(TMP_MARK)[0]  # a write killed half way: manifest.json.tmp-…
            if (name in listed or base in EXPORT_FILES) and \
                    not stat.S_ISDIR(os.lstat(os.path.join(folder, name)).st_mode):
                own.append(name)
        return sorted(own, key=lambda n: n == MANIFEST)

    def complete(self, folder):
        """True if `folder` holds a finished export: a manifest and every file it lists."""
        files = export_files(folder) if os.path.isdir(folder) else None
        return files is not None and all(os.path.isfile(os.path.join(folder, n))
                                         for n in files)


EXPORT = ExportSwap(PARTIAL, OLD, 'export')
# What the exporter and the readers call: lock(folder), partial_folder(folder) (T, as a
# context), swap_in(tmp, folder), recover(folder, locked=False).
lock, partial_folder, swap_in, recover = \
    EXPORT.lock, EXPORT.new_folder, EXPORT.swap_in, EXPORT.recover


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
