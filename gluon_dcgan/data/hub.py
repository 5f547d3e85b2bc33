"""The chapter's Pokemon download through d2l's DATA_HUB, with the checks d2l leaves out.

d2l.download checks the SHA-1 only of a file already cached and writes whatever
the server sent (an error page, a partial file) under the final name. We verify
after every download, delete a bad file, and extract into a temporary folder
that is renamed into place only when complete.
"""
import contextlib
import io
import os
import shutil
import sys
import zipfile

from ..errors import UserError, first_line
from ..files import file_digest, remove_leftovers, temporary_folder

POKEMON_SHA1 = 'c065c0e2593b8b161a2d7873e42418bf6a21106c'


def register_pokemon():
    """Register the dataset exactly as the chapter does (d2l.DATA_HUB['pokemon']).

    An entry already there (a mirror, or a test's local server) is kept.
    """
    from d2l import mxnet as d2l
    if 'pokemon' not in d2l.DATA_HUB:
        d2l.DATA_HUB['pokemon'] = (d2l.DATA_URL + 'pokemon.zip', POKEMON_SHA1)
    return d2l.DATA_HUB['pokemon']


def sha1_of(path):
    """Hex SHA-1 of a file, as DATA_HUB records it."""
    return file_digest(path, 'sha1')


def sha1_if_exists(path):
    """Hex SHA-1 of `path`, or None if it is not a readable file."""
    try:
        return sha1_of(path) if os.path.isfile(path) else None
    except OSError:
        return None


def download_failure(exc):
    """A short reason for a failed download (requests' messages run to several lines)."""
    text = str(exc).strip()
    if 'Connection' in type(exc).__name__ or 'Max retries' in text:
        return 'cannot reach the server'
    return first_line(exc)


def progress_note(enabled=True):
    """A log for progress lines such as 'downloading ...': stderr if enabled and a terminal.

    Like the progress bars, nothing is shown with --no-progress or when stderr is a
    file or pipe, where a failed download's error stays the only line.
    """
    def note(message):
        if enabled and sys.stderr.isatty():
            print(message, file=sys.stderr, flush=True)
    return note


def download_verified(name, folder, log=None):
    """d2l.download(name) into `folder`, then check the SHA-1; return the archive path.

    Says on `log` when a download starts: d2l's own line goes to stdout, which is muted.
    """
    from d2l import mxnet as d2l
    url, sha1 = d2l.DATA_HUB[name]
    if sha1_if_exists(os.path.join(folder, url.split('/')[-1])) != sha1:  # d2l's cache test
        (log or progress_note())(f'downloading {url.split("/")[-1]} from {url} into '
                                 f'{folder} ...')
    try:
        # d2l prints 'Downloading ...' to stdout; offline, the error below is the one line.
        with contextlib.redirect_stdout(io.StringIO()):
            fname = d2l.download(name, folder=folder)
    except Exception as exc:  # requests' connection errors, DNS failures, refused ports
        raise UserError(f"cannot download {name} from {url} ({download_failure(exc)}); offline, use "
                        f"--data synthetic or --data PATH to a folder of images")
    got = sha1_of(fname)
    if got != sha1:
        os.remove(fname)
        raise UserError(f"downloaded {os.path.basename(fname)} from {url} has SHA-1 {got}, "
                        f"expected {sha1} (an error page or a broken transfer); the file was "
                        f"deleted, so run again to retry, or use --data synthetic")
    return fname


def pokemon_folder(data_root, log=None):
    """Download (once) and extract the Pokemon sprites; return the ImageFolder root.

    `log` (default: progress_note()) gets a line before a download starts.
    """
    name, _ = os.path.splitext(os.path.basename(register_pokemon()[0]))
    target = os.path.join(data_root, name)
    if os.path.isdir(target):
        return target
    archive = download_verified('pokemon', data_root, log)
    prefix = f'.{name}.partial-'
    remove_leftovers(data_root, prefix)  # left by an extraction that was killed
    with temporary_folder(data_root, prefix) as partial:  # a full disk: one line, no leftovers
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(partial)
        except zipfile.BadZipFile as exc:
            os.remove(archive)
            raise UserError(f'{archive} is not a valid zip ({exc}); it was deleted, run again')
        # The zip holds a top-level 'pokemon/' folder of class subfolders.
        inner = os.path.join(partial, name)
        os.replace(inner if os.path.isdir(inner) else partial, target)
    shutil.rmtree(partial, ignore_errors=True)
    return target
