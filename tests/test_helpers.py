"""Unit: the small shared helpers (one-line reasons, atomic writes, images, progress bars)."""
import errno
import io
import os
import sys

import numpy as onp
import pytest
from PIL import Image

from conftest import Terminal
from gluon_dcgan.errors import UserError, first_line, last_line
from gluon_dcgan.files import written_atomically


@pytest.mark.parametrize('exc, first, last', [
    (ValueError('reason\nmore detail'), 'reason', 'more detail'),
    (OSError('\n  padded reason  \n\n'), 'padded reason', 'padded reason'),
    (ValueError(''), 'ValueError', 'ValueError'),      # no message: the class name
    (AssertionError(), 'AssertionError', 'AssertionError'),
    (RuntimeError('\n \n'), 'RuntimeError', 'RuntimeError'),
])
def test_first_and_last_line(exc, first, last):
    assert first_line(exc) == first and last_line(exc) == last


def test_first_line_is_cut_to_the_limit():
    assert first_line(ValueError('x' * 500)) == 'x' * 160
    assert first_line(ValueError('x' * 500), limit=20) == 'x' * 20
    assert last_line(ValueError('a\n' + 'y' * 500)) == 'y' * 200


def _full_disk(path):
    raise OSError(errno.ENOSPC, 'No space left on device', path)


@pytest.mark.parametrize('fatal', [True, False])
def test_written_atomically_on_a_full_disk(tmp_path, fatal):
    target = tmp_path / 'out.bin'
    target.write_bytes(b'old')
    with pytest.raises(UserError if fatal else OSError) as info:
        with written_atomically(str(target), full_disk_error=fatal) as tmp:
            open(tmp, 'wb').close()
            _full_disk(tmp)
    if fatal:  # one line naming the folder
        assert str(info.value).startswith(f'no space left to write in {tmp_path}')
    else:  # the original error, for the caller to log
        assert info.value.errno == errno.ENOSPC and not isinstance(info.value, UserError)
    assert target.read_bytes() == b'old'
    assert sorted(os.listdir(tmp_path)) == ['out.bin']  # no temporary file left


def test_a_full_disk_while_caching_decoded_images_is_a_note(tmp_path, monkeypatch):
    from gluon_dcgan.data import cache
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f'{i}.png'))
        Image.new('RGB', (64, 64), (i, 2 * i, 3 * i)).save(paths[-1])
    stats = [os.stat(p) for p in paths]
    monkeypatch.setattr(cache.onp, 'save', lambda f, *a, **k: _full_disk(f.name))
    notes = []
    images, bad = cache.decoded_images(paths, stats, 64, 3, str(tmp_path / 'decoded'), 1,
                                       notes.append)
    assert images.shape == (3, 64, 64, 3) and bad == []  # training goes on
    assert len(notes) == 1 and notes[0].startswith('note: cannot write the decode cache in ')
    assert 'No space left on device' in notes[0]
    assert os.listdir(tmp_path / 'decoded') == []  # nothing half-written


def test_grid_without_padding_butts_the_tiles():
    from gluon_dcgan.images import grid, to_pixels
    x = onp.linspace(-1, 1, 21 * 3 * 4 * 5, dtype=onp.float32).reshape(21, 3, 4, 5)
    pixels = to_pixels(x)
    assert pixels.shape == (21, 4, 5, 3) and pixels.dtype == onp.uint8
    assert pixels.min() == 0 and pixels.max() == 255
    tiled = grid(pixels, cols=7, pad=0)
    assert tiled.shape == (3 * 4, 7 * 5, 3)
    assert (tiled[4:8, 10:15] == pixels[9]).all()  # row 1, column 2
    padded = grid(pixels[:8], cols=7)  # the second row has one tile, then white
    assert padded.shape == (2 * 6 + 2, 7 * 7 + 2, 3) and (padded[8:12, 9:] == 255).all()


def test_save_gif_writes_every_frame_and_nothing_for_none(tmp_path):
    from gluon_dcgan.images import save_gif
    frames = [onp.full((4, 4, 1), v, onp.uint8) for v in (0, 128, 255)]
    save_gif(frames, str(tmp_path / 'a.gif'), ms_per_frame=50)
    with Image.open(tmp_path / 'a.gif') as gif:
        assert gif.n_frames == 3 and gif.info['duration'] == 50
    save_gif([], str(tmp_path / 'none.gif'))
    assert sorted(os.listdir(tmp_path)) == ['a.gif']


@pytest.mark.parametrize('enabled, terminal', [(True, True), (False, True), (True, False)])
def test_progress_bar_draws_only_when_enabled_on_a_terminal(monkeypatch, enabled, terminal):
    from gluon_dcgan.progress import progress_bar
    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    with progress_bar(4, 'testing', 'item', enabled, initial=1) as bar:
        bar.update(3)
    drawn = err.getvalue()
    if enabled and terminal:  # starts at `initial`; leave=False blanks the line at the end
        assert 'testing:' in drawn and '1/4' in drawn and drawn.endswith(' \r')
    else:
        assert drawn == ''


def test_last_line_of_a_text_with_a_fallback_for_an_empty_one():
    assert last_line('Warning: x\n\nssh: connect to host h port 22: refused\n') == \
        'ssh: connect to host h port 22: refused'
    assert last_line('  \n', empty='no message') == 'no message'


@pytest.mark.unit
def test_only_a_full_disk_is_called_full(tmp_path):
    import errno
    from gluon_dcgan.files import _disk_full
    assert _disk_full(OSError(errno.ENOSPC, 'No space left on device'), str(tmp_path))
    # /sys has no free space at all, but a refusal there is not a full disk.
    assert not _disk_full(OSError(errno.EACCES, 'Permission denied'), '/sys')
    assert not _disk_full(RuntimeError('an error without errno'), str(tmp_path))
