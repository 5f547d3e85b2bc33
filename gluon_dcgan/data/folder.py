"""Image folders: list the images in ImageFolderDataset's order, keep the regular files.

Decoding and its cache are in ``decode`` and ``cache``.
"""
import os
import stat

from ..errors import UserError

EXTENSIONS = ('.jpg', '.jpeg', '.png')  # what ImageFolderDataset accepts
# Image files it does not read: named in a note, so that none is left out silently.
OTHER_IMAGES = ('.webp', '.bmp', '.gif', '.tif', '.tiff', '.jfif', '.ppm', '.pgm', '.heic',
                '.heif', '.avif', '.jp2', '.svg')


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


def other_images(root):
    """Files with other image extensions than EXTENSIONS at the top of `root` and in its
    class subfolders (where ImageFolderDataset looks), relative to `root`, sorted."""
    found = []
    try:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            names = [entry.name]
            if entry.is_dir():
                names = [os.path.join(entry.name, n) for n in sorted(os.listdir(entry.path))]
            found += [n for n in names if n.lower().endswith(OTHER_IMAGES)]
    except OSError:  # listing errors are list_images' to report
        pass
    return found


def count_not_square(paths, read=4096):
    """How many of `paths` declare a width other than their height (headers only).

    A JPEG's frame header may follow a large EXIF block; such a file, whose size is not
    in its first bytes, is not counted.
    """
    from .headers import declared_size
    count = 0
    for path in paths:
        try:
            with open(path, 'rb') as f:
                size = declared_size(f.read(read))
        except OSError:
            continue
        count += bool(size and size[0] != size[1])
    return count


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
