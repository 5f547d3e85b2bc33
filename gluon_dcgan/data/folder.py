"""Image folders: list the images in ImageFolderDataset's order, keep the regular files.

Decoding and its cache are in ``decode`` and ``cache``.
"""
import os
import stat

from ..errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png')  # what ImageFolderDataset accepts


def _is_image(name):
    return name.lower().endswith(EXTENSIONS)


def list_images(root):
    """[(path, label)] in ImageFolderDataset's order, and a note for the user or None.

    Class subfolders are the ImageFolder layout. A folder that has images only at
    its top level is accepted as a single class (and the note says so).
    """
    from mxnet.gluon.data.vision.datasets import ImageFolderDataset
    if not os.path.isdir(root):
        raise UserError(f'data folder {root!r} does not exist: check the path')
    import warnings
    try:
        # Not isfile(): a named pipe called x.png is listed, then skipped with a note.
        top = sorted(f for f in os.listdir(root)
                     if _is_image(f) and not os.path.isdir(os.path.join(root, f)))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # it warns about every non-image file
            items = list(ImageFolderDataset(root).items)
    except OSError as exc:
        raise UserError(f'cannot list the data folder {exc.filename or root!r} '
                        f'({exc.strerror}): fix its permissions')
    if items:
        note = (f'note: {len(top)} image(s) at the top of {root} are ignored; only class '
                f'subfolders are read') if top else None
        return items, note
    if top:
        return ([(os.path.join(root, f), 0) for f in top],
                f'note: {root} has no class subfolders; its {len(top)} top-level images are '
                f'read as one class')
    raise UserError(f'no images (.jpg, .jpeg, .png) in {root!r} or its subfolders: point '
                    f'--data at a folder of images, or use --data synthetic')


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, 'a named pipe'), (stat.S_ISSOCK, 'a socket'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISDIR, 'a folder')):
        if test(mode):
            return name
    return 'not a regular file'


def regular_files(paths):
    """(paths of regular files, their os.stat results, [(path, why)] of the others).

    A named pipe or device with an image name would block or never end a read; a
    broken link has nothing to read. Such entries are skipped, not decoded.
    """
    keep, stats, skipped = [], [], []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            skipped.append((path, exc.strerror))
            continue
        if stat.S_ISREG(st.st_mode):
            keep.append(path)
            stats.append(st)
        else:
            skipped.append((path, _kind(st.st_mode)))
    return keep, stats, skipped
