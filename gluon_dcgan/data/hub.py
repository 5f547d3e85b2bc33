"""The chapter's Pokemon download: d2l's DATA_HUB names the file, its URL and SHA-1; the
transfer is ours.

d2l.download waits on the server without a timeout, reads the whole response into
memory (``r.content``) and writes whatever came (an error page, a partial file)
under the final name. fetch_verified streams to a temporary file instead, with a
read timeout and a size bound, and renames it into place only once its SHA-1 is
the registered one; Fashion-MNIST's files come through it too. A file already
there with the right SHA-1 is not downloaded again (d2l's cache rule). Downloads
and the extraction into one data root take its lock (DATA_ROOT/.pokemon.lock),
so two runs sharing a --data-root do one after the other.
"""
import os
import shutil
import sys
import zipfile

from ..errors import UserError, first_line
from ..files import (file_digest, folder_lock, remove_leftovers, temporary_folder,
                     written_atomically)
from ..progress import progress_bar

POKEMON_SHA1 = 'c065c0e2593b8b161a2d7873e42418bf6a21106c'
# Seconds to wait for a connection, and then for each next piece of data: a server
# that stops sending ends the download in one line within READ_TIMEOUT.
CONNECT_TIMEOUT = 15
READ_TIMEOUT = 30
# The largest pokemon.zip accepted. Its size is not recorded here; tens of thousands of
# 96x96 sprites stay far below this, so a longer stream is not the file, and the disk
# an endless one can fill is bounded.
MAX_POKEMON_BYTES = 512 << 20
CHUNK = 1 << 16


class DownloadFailed(Exception):
    """A transfer that did not deliver the file: the message is the reason, in a few words."""


class WrongDigest(DownloadFailed):
    """The server sent a whole file, but not the registered one (`got` is its SHA-1)."""

    def __init__(self, got, expected):
        super().__init__(f'the server sent a file whose SHA-1 is {got}, not {expected}')
        self.got = got


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


class ProgressNote:
    """A log for progress lines such as 'downloading ...' (see progress_note)."""

    def __init__(self, enabled=True):
        self.enabled = enabled  # also decides whether a download draws its bar

    def __call__(self, message):
        if self.enabled and sys.stderr.isatty():
            print(message, file=sys.stderr, flush=True)


def progress_note(enabled=True):
    """A log for progress lines such as 'downloading ...': stderr if enabled and a terminal.

    Like the progress bars, nothing is shown with --no-progress or when stderr is a
    file or pipe, where a failed download's error stays the only line.
    """
    return ProgressNote(enabled)


def _reason(exc, timeout):
    """What went wrong in a requests error, in a few words."""
    import requests
    from urllib3.exceptions import ReadTimeoutError
    # requests reports a timeout while reading the body as a ConnectionError around it.
    if isinstance(exc, requests.Timeout) or (exc.args and isinstance(exc.args[0],
                                                                     ReadTimeoutError)):
        return f'the server sent nothing for {timeout:g} s'
    if isinstance(exc, requests.HTTPError):
        return f'the server answered HTTP {exc.response.status_code} {exc.response.reason}'
    return download_failure(exc)


def _declared_length(response, name, limit):
    """The body's length the headers announce, refused past `limit`; None if unknown."""
    declared = response.headers.get('Content-Length', '')
    if not declared.isdigit() or response.headers.get('Content-Encoding'):
        return None  # a coded body (gzip) is counted decoded: its length cannot be compared
    if int(declared) > limit:
        raise DownloadFailed(f'the server announced {declared} bytes, more than {name} can '
                             f'be ({limit} at most)')
    return int(declared)


def _save(response, tmp, name, limit, timeout, progress):
    """Stream `response`'s body (the file `name`) into `tmp`, refused past `limit` bytes."""
    import requests
    declared = _declared_length(response, name, limit)
    got = shown = 0
    with open(tmp, 'wb') as f, progress_bar(None if declared is None else -(-declared // 1024),
                                            f'downloading {name}', 'KiB', progress) as bar:
        try:
            for chunk in response.iter_content(CHUNK):
                got += len(chunk)
                if got > limit:
                    raise DownloadFailed(f'the server sent more than {limit} bytes, more '
                                         f'than {name} can be')
                f.write(chunk)
                bar.update(got // 1024 - shown)
                shown = got // 1024
        except requests.exceptions.ChunkedEncodingError:
            # urllib3 drops the last partial read, so `got` may be short of what came.
            raise DownloadFailed('the transfer broke off' + (
                f' before the {declared} bytes announced' if declared else '')) from None
        except requests.RequestException as exc:
            raise DownloadFailed(_reason(exc, timeout)) from None
    if declared is not None and got != declared:
        raise DownloadFailed(f'the transfer broke off after {got} of the {declared} bytes '
                             f'announced')


def fetch_verified(url, path, sha1, limit, timeout=READ_TIMEOUT, progress=True):
    """Download `url` to `path` through a temporary file; it is renamed into place only if
    its SHA-1 is `sha1`.

    Raises DownloadFailed (WrongDigest for a whole file that is not the one) and leaves
    nothing under `path` or a temporary name; a full disk is a UserError. Waits at
    most CONNECT_TIMEOUT for the connection and `timeout` seconds for each next piece
    of data, and stops past `limit` bytes. `progress` draws a bar on a terminal.
    """
    import requests
    with written_atomically(path) as tmp:
        try:
            # identity: the file's own bytes, whose SHA-1 is registered, not a re-coding.
            with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, timeout),
                              headers={'Accept-Encoding': 'identity'}) as response:
                response.raise_for_status()
                _save(response, tmp, os.path.basename(path), limit, timeout, progress)
        except requests.RequestException as exc:  # before the body: refused, timed out, 404
            raise DownloadFailed(_reason(exc, timeout)) from None
        got = sha1_of(tmp)
        if got != sha1:
            raise WrongDigest(got, sha1)
    return path


def download_verified(name, folder, log=None, timeout=READ_TIMEOUT, limit=MAX_POKEMON_BYTES):
    """The DATA_HUB file `name` in `folder`, downloaded unless there with the right SHA-1.

    Says on `log` (default: progress_note()) when a download starts; a progress_note's
    `enabled` also decides the bar. Every failure is a one-line UserError, and leaves
    no file under the final name.
    """
    from d2l import mxnet as d2l
    url, sha1 = d2l.DATA_HUB[name]
    fname = os.path.join(folder, url.split('/')[-1])
    if sha1_if_exists(fname) == sha1:  # d2l's cache rule
        return fname
    log = log or progress_note()
    log(f'downloading {os.path.basename(fname)} from {url} into {folder} ...')
    os.makedirs(folder, exist_ok=True)  # as d2l.download does
    try:
        fetch_verified(url, fname, sha1, limit, timeout, getattr(log, 'enabled', True))
    except WrongDigest as exc:
        raise UserError(f"downloaded {os.path.basename(fname)} from {url} has SHA-1 {exc.got}, "
                        f"expected {sha1} (an error page or a broken transfer); the file was "
                        f"deleted, so run again to retry, or use --data synthetic")
    except DownloadFailed as exc:
        raise UserError(f"cannot download {name} from {url} ({exc}); run again to retry, or "
                        f"offline, use --data synthetic or --data PATH to a folder of images")
    return fname


def _extract(archive, data_root, name, target):
    prefix = f'.{name}.partial-'
    remove_leftovers(data_root, prefix)  # left by an extraction that was killed
    with temporary_folder(data_root, prefix) as partial:  # a full disk: one line, no leftovers
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(partial)
        except zipfile.BadZipFile as exc:
            raise UserError(f'{archive} has the registered SHA-1 but is not a valid zip '
                            f'({exc}): delete it, then run again')
        # The zip holds a top-level 'pokemon/' folder of class subfolders.
        inner = os.path.join(partial, name)
        os.replace(inner if os.path.isdir(inner) else partial, target)
        shutil.rmtree(partial, ignore_errors=True)  # what the zip held beside pokemon/


def pokemon_folder(data_root, log=None, timeout=READ_TIMEOUT, limit=MAX_POKEMON_BYTES):
    """Download (once) and extract the Pokemon sprites; return the ImageFolder root.

    `log` (default: progress_note()) gets a line before a download starts. Holds
    DATA_ROOT/.pokemon.lock while it downloads and extracts.
    """
    name, _ = os.path.splitext(os.path.basename(register_pokemon()[0]))
    target = os.path.join(data_root, name)
    if os.path.isdir(target):
        return target
    os.makedirs(data_root, exist_ok=True)
    with folder_lock(os.path.join(data_root, f'.{name}.lock'), data_root):
        if not os.path.isdir(target):  # else another process extracted it while we waited
            archive = download_verified('pokemon', data_root, log, timeout, limit)
            _extract(archive, data_root, name, target)
    return target
