"""Component: the embedded dataset, image folders, batches and their value range; and
training on a folder of odd entries, end to end."""
import io
import os
import sys

import numpy as onp
import pytest
from mxnet import np

from conftest import ONE_EPOCH, Terminal, assert_one_line_error, run_cli, snapshot
from gluon_dcgan.config import Config
from gluon_dcgan.data import folder, load_images, loader
from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
from gluon_dcgan.errors import UserError


@pytest.mark.unit
def test_synthetic_is_deterministic_and_sprite_like():
    a, b, c = make_sprites(16, seed=1), make_sprites(16, seed=1), make_sprites(16, seed=2)
    assert a.shape == (16, 64, 64, 3) and a.dtype == onp.uint8
    assert (a == b).all() and (a != c).any()
    assert (a[:, 0, 0] > 200).all()                       # light background
    assert (a[:, :, :32] == a[:, :, ::-1][:, :, :32]).all()  # left-right symmetric


@pytest.mark.unit
def test_batches_are_normalised_into_minus_one_one():
    images = make_sprites(8)
    X = loader.normalize(np.array(images, dtype='uint8')).asnumpy()
    assert X.shape == (8, 3, 64, 64) and X.dtype == onp.float32
    assert X.min() >= -1 and X.max() <= 1
    assert X.min() < -0.5 and X.max() > 0.9  # uses the range, not a constant
    expected = (images.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5  # ToTensor + Normalize
    assert onp.abs(X - expected).max() < 1e-6


@pytest.mark.unit
def test_epoch_order_depends_only_on_seed_and_epoch():
    a = loader.shard_order(100, seed=3, epoch=2)
    assert (a == loader.shard_order(100, seed=3, epoch=2)).all()
    assert (a != loader.shard_order(100, seed=3, epoch=3)).any()
    assert sorted(a) == list(range(100))


@pytest.mark.unit
def test_shards_are_equal_and_disjoint():
    parts = [loader.shard_order(101, 0, 1, rank=r, num_workers=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 50
    assert not set(parts[0]) & set(parts[1])


@pytest.mark.unit
def test_last_batch_is_kept_like_the_chapter():
    slices = loader.batch_slices(onp.arange(70), 32)
    assert [len(s) for s in slices] == [32, 32, 6]
    assert loader.num_batches(70, 32) == 3


@pytest.mark.unit
def test_folder_decodes_like_the_chapter(tmp_path):
    images = make_sprites(12, seed=4)
    root = write_image_folder(images, str(tmp_path / 'imgs'))
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=4, num_workers=2)
    got = load_images(cfg, log=lambda m: None)
    assert got.shape == (12, 64, 64, 3)
    assert (got == images).all()  # PNG round trip, Resize(64) of a 64x64 image is exact
    assert os.listdir(tmp_path / 'cache' / 'decoded')  # decoded once, cached
    assert (load_images(cfg, log=lambda m: None) == images).all()


@pytest.mark.unit
def test_top_level_images_are_read_as_one_class(tmp_path):
    from PIL import Image
    for i, img in enumerate(make_sprites(3)):
        Image.fromarray(img).save(tmp_path / f'{i}.png')
    items, note = folder.list_images(str(tmp_path))
    assert len(items) == 3 and 'one class' in note


@pytest.mark.unit
def test_resize_to_64(tmp_path):
    from PIL import Image
    (tmp_path / 'c').mkdir()
    Image.fromarray(make_sprites(1)[0]).resize((96, 96)).save(tmp_path / 'c' / 'big.png')
    cfg = Config(data=str(tmp_path), data_root=str(tmp_path / 'cache'), batch_size=1)
    assert load_images(cfg, log=lambda m: None).shape == (1, 64, 64, 3)


@pytest.mark.unit
def test_bad_images_are_listed_or_skipped(tmp_path):
    root = write_image_folder(make_sprites(5), str(tmp_path / 'imgs'))
    cls = os.path.join(root, 'sprites')
    with open(os.path.join(cls, '00001.png'), 'rb') as f:
        data = f.read()
    with open(os.path.join(cls, 'truncated.png'), 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(cls, 'notanimage.jpg'), 'w') as f:
        f.write('<html>error</html>')
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError) as err:
        load_images(cfg, log=lambda m: None)
    assert '2 unreadable' in str(err.value) and 'truncated.png' in str(err.value)
    # each file named with its own reason
    assert 'notanimage.jpg (OpenCV cannot decode it' in str(err.value)
    assert 'truncated.png (truncated PNG (no end chunk))' in str(err.value)
    assert '--skip-bad-images' in str(err.value)
    cfg.skip_bad_images = True
    logged = []
    assert load_images(cfg, log=logged.append).shape == (5, 64, 64, 3)
    assert 'skipping 2' in logged[0]


@pytest.mark.unit
def test_a_huge_file_with_an_image_name_is_a_bad_image_not_read(tmp_path, monkeypatch):
    from gluon_dcgan.data import cache
    root = write_image_folder(make_sprites(3), str(tmp_path / 'imgs'))
    huge = os.path.join(root, 'sprites', 'huge.png')
    with open(huge, 'wb') as f:
        f.truncate(100 << 30)  # 100 GiB, sparse: reading it whole ran out of memory
    reads = []
    monkeypatch.setattr(cache, 'decode_image',
                        lambda data, *a, real=cache.decode_image: reads.append(len(data)) or
                        real(data, *a))
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError, match=r'huge\.png \(100\.0 GiB: larger than any image'):
        load_images(cfg, log=lambda m: None)
    assert len(reads) == 3 and max(reads) < 1 << 20  # only the three sprites were read


@pytest.mark.unit
def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(UserError, match='larger than the dataset'):
        load_images(Config(data='synthetic', limit=10, batch_size=11))


def _sprite_folder(tmp_path, count=4):
    root = write_image_folder(make_sprites(count), str(tmp_path / 'imgs'))
    return root, os.path.join(root, 'sprites')


@pytest.mark.unit
@pytest.mark.parametrize('name, fmt', [('webp.png', 'WEBP'), ('gif.jpg', 'GIF'),
                                       ('truncated.jpg', 'JPEG')])
def test_files_the_decoder_rejects_are_bad_images(tmp_path, name, fmt):
    from PIL import Image
    root, cls = _sprite_folder(tmp_path)
    Image.fromarray(make_sprites(1, seed=9)[0]).save(os.path.join(cls, name), format=fmt)
    if name.startswith('truncated'):  # OpenCV alone would decode it with grey rows
        path = os.path.join(cls, name)
        data = open(path, 'rb').read()
        open(path, 'wb').write(data[:len(data) * 2 // 3])
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError, match=f'1 unreadable image.*{name}'):
        load_images(cfg, log=lambda m: None)
    cfg.skip_bad_images = True
    assert load_images(cfg, log=lambda m: None).shape == (4, 64, 64, 3)


@pytest.mark.unit
def test_jpeg_truncation_check_ignores_thumbnails_and_trailing_bytes(tmp_path):
    import io
    from PIL import Image
    from gluon_dcgan.data.headers import jpeg_truncated
    buf = io.BytesIO()
    Image.fromarray(make_sprites(1)[0]).save(buf, format='JPEG')
    data = buf.getvalue()
    assert not jpeg_truncated(data) and not jpeg_truncated(data + b'junk after the end')
    assert jpeg_truncated(data[:-2]) and jpeg_truncated(data[:len(data) // 2])
    # An APP1 segment holding a complete little JPEG (as EXIF thumbnails do) before the scan.
    app1 = b'\xff\xe1' + (len(data) + 2).to_bytes(2, 'big') + data
    assert not jpeg_truncated(data[:2] + app1 + data[2:])
    assert jpeg_truncated(data[:2] + app1 + data[2:len(data) // 2])


def _encoded(fmt):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(make_sprites(1)[0]).save(buf, format=fmt)
    return buf.getvalue()


def _png_with_size(width, height):
    """A PNG whose IHDR (CRC intact) declares width x height over a sprite's real data."""
    import struct
    import zlib
    data = bytearray(_encoded('PNG'))
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_with_size(width, height):
    from gluon_dcgan.data.headers import JPEG_SOF
    data = bytearray(_encoded('JPEG'))
    pos = 2
    while data[pos + 1] not in JPEG_SOF:
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
    data[pos + 5:pos + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def _chunk(kind, body):
    import struct
    import zlib
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))


def _png(width=64, height=64, depth=8, colour=2, before_data=b''):
    """A hand-made PNG: its header, chunks `before_data`, one row of data, the end."""
    import struct
    import zlib
    header = _chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, depth, colour, 0, 0, 0))
    return (b'\x89PNG\r\n\x1a\n' + header + before_data +
            _chunk(b'IDAT', zlib.compress(b'\0')) + _chunk(b'IEND', b''))


def _jpeg_cut_in_its_tables():
    data = _encoded('JPEG')
    return data[:data.index(b'\xff\xc4') + 100]  # inside the first Huffman table


_damaged_png = bytearray(_encoded('PNG'))
_damaged_png[60] ^= 0xFF  # a byte of the image data: the IDAT chunk's CRC no longer holds
_jpeg_12_bit = bytearray(_encoded('JPEG'))
_sof = _jpeg_12_bit.index(b'\xff\xc0')
_jpeg_12_bit[_sof + 1], _jpeg_12_bit[_sof + 4] = 0xC1, 12  # SOF1, 12-bit samples
# Each of these reached MXNet and came back as an image of uninitialised (often the
# previous image's) pixels, or made it allocate from a size it never checked.
BROKEN = {
    'PNG magic and nothing more': (b'\x89PNG\r\n\x1a\n' + b'\0' * 9, 'truncated PNG'),
    'PNG cut in its image data': (_encoded('PNG')[:70], 'truncated PNG'),
    'PNG with a damaged body': (bytes(_damaged_png), 'fails its CRC check'),
    'PNG of 2^31 x 2^31 pixels': (_png_with_size(2 ** 31 - 1, 2 ** 31 - 1), 'more than libpng'),
    'PNG of 1000001 x 1 pixels': (_png(1000001, 1), 'more than libpng'),
    'PNG of 10000 x 10000 pixels': (_png(10000, 10000), 'more than 8192x8192'),
    'PNG of 0 x 64 pixels': (_png_with_size(0, 64), 'empty image'),
    'PNG of colour type 7': (_png(colour=7), 'impossible header'),
    'PNG of bit depth 3': (_png(depth=3), 'impossible header'),
    'PNG palette image without a palette': (_png(colour=3), 'without its palette'),
    'PNG grey image with a palette': (_png(colour=0, before_data=_chunk(b'PLTE', b'\0' * 3)),
                                      'palette chunk'),
    'PNG with an unknown critical chunk': (_png(before_data=_chunk(b'ABCD', b'x')),
                                           'unknown critical chunk'),
    'PNG with two headers': (_png(before_data=_png()[8:33]), 'two headers'),
    'JPEG of 65535 x 65535 pixels': (_jpeg_with_size(65535, 65535), 'more than 8192x8192'),
    'JPEG of 64 x 0 pixels': (_jpeg_with_size(64, 0), 'empty image'),
    'JPEG cut in its tables': (_jpeg_cut_in_its_tables(), 'truncated JPEG'),
    'JPEG cut in its tables, end marker added': (_jpeg_cut_in_its_tables() + b'\xff\xd9',
                                                 'cannot decode'),
    'JPEG of 12-bit samples': (bytes(_jpeg_12_bit), 'cannot decode'),
}


@pytest.mark.unit
@pytest.mark.parametrize('case', sorted(BROKEN))
def test_an_image_mxnet_would_misread_is_a_bad_image(case):
    """After a good image, as in a folder: MXNet's garbage was often that image's pixels."""
    import mxnet as mx
    from gluon_dcgan.data import decode
    data, reason = BROKEN[case]
    assert decode.decode_image(_encoded('JPEG'), 64, 3).mean() > 100
    with pytest.raises(decode.BadImage, match=reason):
        decode.decode_image(data, 64, 3)
    mx.nd.waitall()  # and no error left behind for training's next waitall


@pytest.mark.unit
def test_intact_images_pass_the_checks_and_decode_as_before():
    """Including what libpng only warns about (an ancillary chunk with a bad CRC), and
    a JPEG with the comment segment decode_image inserts: the same pixels."""
    import mxnet as mx
    from gluon_dcgan.data import decode, headers
    text = bytearray(_chunk(b'tEXt', b'Comment\0hello'))
    text[-1] ^= 0xFF
    png = _encoded('PNG')
    cases = [png, _encoded('JPEG'), png[:33] + bytes(text) + png[33:]]
    for data in cases:
        assert headers.png_problem(data) is None and headers.jpeg_size_problem(data) is None
        expected = mx.image.imdecode(data)
        expected = mx.gluon.data.vision.transforms.Resize(64)(expected).asnumpy()
        assert (decode.decode_image(data, 64, 3) == expected).all()


@pytest.mark.unit
def test_a_decode_that_fails_inside_mxnet_leaves_no_error_for_a_later_waitall(monkeypatch):
    """A 2^31 x 2^31 PNG header handed to MXNet anyway: its allocation fails in the engine.
    Training's next waitall must not raise that (it did, at the end of an epoch)."""
    import mxnet as mx
    from gluon_dcgan.data import decode
    monkeypatch.setattr(decode, 'png_problem', lambda data: None)
    with pytest.raises(decode.BadImage):
        decode.decode_image(_png_with_size(2 ** 31 - 1, 2 ** 31 - 1), 64, 3)
    mx.nd.waitall()


@pytest.mark.unit
def test_file_name_that_is_not_utf8_is_accepted(tmp_path):
    root, cls = _sprite_folder(tmp_path)
    os.rename(os.path.join(cls, '00001.png'), os.path.join(cls, os.fsdecode(b'bad\xff.png')))
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    assert load_images(cfg, log=lambda m: None).shape == (4, 64, 64, 3)


@pytest.mark.unit
def test_named_pipe_is_skipped_with_a_note(tmp_path):
    root, cls = _sprite_folder(tmp_path)
    os.mkfifo(os.path.join(cls, 'x.png'))
    logged = []
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    assert load_images(cfg, log=logged.append).shape == (4, 64, 64, 3)
    assert any('x.png (a named pipe)' in m for m in logged), logged


def _no_decoding(monkeypatch):
    from gluon_dcgan.data import cache

    def fail(*args):
        raise AssertionError('decoded although the cache is warm')
    monkeypatch.setattr(cache, 'decode_all', fail)


@pytest.mark.unit
def test_warm_cache_decodes_nothing_and_keeps_the_bad_list(tmp_path, monkeypatch):
    root, cls = _sprite_folder(tmp_path)
    with open(os.path.join(cls, 'broken.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError, match='broken.png'):
        load_images(cfg, log=lambda m: None)
    _no_decoding(monkeypatch)
    with pytest.raises(UserError, match='broken.png'):  # the bad list came from the cache
        load_images(cfg, log=lambda m: None)
    cfg.skip_bad_images = True
    assert load_images(cfg, log=lambda m: None).shape == (4, 64, 64, 3)


def _damage(kind, npy, meta):
    if kind == 'truncated array':
        npy.write_bytes(npy.read_bytes()[:200])
    elif kind == 'pickled array':
        onp.save(npy, onp.array([{'x': 1}] * 4, dtype=object), allow_pickle=True)
    elif kind == 'bad json':
        meta.write_text('{not json')
    elif kind == 'count mismatch':
        meta.write_text(meta.read_text().replace('"count": 4', '"count": 5'))
    elif kind == 'array of another shape':
        onp.save(npy, onp.zeros((3, 64, 64, 3), onp.uint8))
    elif kind == 'header of 2**40 images':  # was a MemoryError traceback
        from numpy.lib import format as npy_format
        with open(npy, 'wb') as f:
            npy_format.write_array_header_1_0(f, {'descr': '|u1', 'fortran_order': False,
                                                  'shape': (1 << 40, 64, 64, 3)})
            f.write(bytes(64))
    elif kind == 'json 200000 deep':  # was a RecursionError traceback
        meta.write_text('[' * 200_000 + ']' * 200_000)
    elif kind == 'json a named pipe':  # would block the read
        meta.unlink()
        os.mkfifo(meta)


@pytest.mark.unit
@pytest.mark.parametrize('kind', ['truncated array', 'pickled array', 'bad json',
                                  'count mismatch', 'array of another shape',
                                  'header of 2**40 images', 'json 200000 deep',
                                  'json a named pipe'])
def test_damaged_cache_is_rebuilt(tmp_path, kind, monkeypatch):
    from gluon_dcgan.data import cache
    decode_all = cache.decode_all
    images = make_sprites(4)
    root = write_image_folder(images, str(tmp_path / 'imgs'))
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    load_images(cfg, log=lambda m: None)
    decoded = tmp_path / 'cache' / 'decoded'
    [npy] = decoded.glob('*.npy')
    _damage(kind, npy, npy.with_suffix('.json'))
    calls = []
    monkeypatch.setattr(cache, 'decode_all', lambda *a: calls.append(a) or decode_all(*a))
    assert (load_images(cfg, log=lambda m: None) == images).all()
    assert len(calls) == 1  # decoded again
    assert sorted(p.name for p in decoded.iterdir()) == sorted([npy.name, npy.stem + '.json'])


@pytest.mark.unit
def test_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    from gluon_dcgan import memory
    root, _ = _sprite_folder(tmp_path, count=6)
    monkeypatch.setattr(memory, 'available_memory_bytes', lambda: 5 * 64 * 64 * 3)
    _no_decoding(monkeypatch)
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError, match='6 images take .* use --limit 5 or fewer'):
        load_images(cfg, log=lambda m: None)


@pytest.mark.unit
def test_crop_center_keeps_the_central_square_and_the_default_stretches():
    import io
    from PIL import Image
    from gluon_dcgan.data.decode import decode_image
    pixels = onp.zeros((40, 120, 3), onp.uint8)
    pixels[:, 40:80] = 255  # a white central square between black sides
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='PNG')
    cropped = decode_image(buffer.getvalue(), 16, 3, crop='center')
    stretched = decode_image(buffer.getvalue(), 16, 3)
    assert cropped.min() == 255  # only the white square
    assert stretched[:, 0].max() == 0 and stretched[:, 8].min() == 255  # the sides squeezed in


@pytest.mark.unit
def test_a_last_batch_smaller_than_the_device_count_is_dropped():
    from gluon_dcgan.data import loader
    order = onp.arange(33)
    assert [len(s) for s in loader.batch_slices(order, 16, min_size=2)] == [16, 16]
    assert [len(s) for s in loader.batch_slices(order, 16)] == [16, 16, 1]  # the chapter's
    assert loader.num_batches(33, 16, min_size=2) == 2 and loader.num_batches(34, 16, 1, 2) == 3


def _png_folder(folder, count):
    from PIL import Image
    folder.mkdir()
    paths = []
    for i in range(count):
        paths.append(str(folder / f'{i}.png'))
        Image.new('RGB', (64, 64), (i, 2 * i, 3 * i)).save(paths[-1])
    return paths


@pytest.mark.unit
@pytest.mark.parametrize('progress, terminal', [(True, True), (False, True), (True, False)])
def test_decode_draws_one_bar_only_when_asked_and_on_a_terminal(tmp_path, monkeypatch,
                                                               progress, terminal):
    from gluon_dcgan.data import cache
    paths = _png_folder(tmp_path / 'imgs', 12)
    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    images, bad = cache.decode_all(paths, 64, 3, num_workers=3, progress=progress)
    assert images.shape == (12, 64, 64, 3) and bad == []
    drawn = err.getvalue()
    if progress and terminal:
        assert 'decoding images' in drawn and '/12' in drawn
    else:
        assert drawn == ''


def _save_webp(path):
    from PIL import Image

    from gluon_dcgan.data.synthetic import make_sprites
    Image.fromarray(make_sprites(1, seed=5)[0]).save(path, format='WEBP')


@pytest.mark.unit
def test_webp_named_png_is_one_line(tmp_path, main_in_process):
    root, cls = _sprite_folder(tmp_path, 31)  # + zz.png: --limit 32
    _save_webp(os.path.join(cls, 'zz.png'))
    before = snapshot(root)
    proc = main_in_process(['--data', root, '--data-root', str(tmp_path / 'cache'),
                            '--out-dir', str(tmp_path / 'out')] + ONE_EPOCH)
    line = assert_one_line_error(proc, contains='sprites/zz.png')
    assert '--skip-bad-images' in line
    assert not (tmp_path / 'out' / 'metrics.jsonl').exists() and snapshot(root) == before


@pytest.mark.cli
def test_odd_entries_are_skipped_and_training_goes_on(tmp_path):
    """A WebP named .png (--skip-bad-images), a named pipe, and names that are not UTF-8."""
    root, cls = _sprite_folder(tmp_path, count=30)
    _save_webp(os.path.join(cls, 'zz.png'))
    os.mkfifo(os.path.join(cls, 'x.png'))
    os.rename(os.path.join(cls, '00003.png'), os.path.join(cls, os.fsdecode(b'bad\xff.png')))
    data = os.path.join(str(tmp_path), os.fsdecode(b'd\xe9j\xe0'))
    os.rename(root, data)
    proc = run_cli(['--data', data, '--data-root', str(tmp_path / 'cache'), '--skip-bad-images',
                    '--out-dir', str(tmp_path / 'out')] + ONE_EPOCH, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert ('skipping 1 entries that are not readable regular files: sprites/x.png '
            '(a named pipe)') in proc.stderr
    assert 'skipping 1 unreadable image(s): sprites/zz.png' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.cli
def test_own_images_notes_name_other_extensions_and_count_non_square_ones(tmp_path):
    from PIL import Image
    root = tmp_path / 'imgs'
    (root / 'a').mkdir(parents=True)
    rng = onp.random.RandomState(0)
    for i in range(12):
        size = (48, 80) if i % 3 == 0 else (64, 64)
        pixels = rng.randint(0, 255, size + (3,), dtype=onp.uint8)
        Image.fromarray(pixels).save(root / 'a' / f'{i}.png')
    Image.fromarray(onp.zeros((8, 8, 3), onp.uint8)).save(root / 'a' / 'photo.webp')
    args = ['--data', str(root), '--epochs', '1', '--batch-size', '4', '--n-G', '8', '--n-D', '8',
            '--ctx', 'cpu', '--no-progress', '--data-root', str(tmp_path / 'cache')]
    proc = run_cli(args + ['--out-dir', str(tmp_path / 'stretched')])
    assert proc.returncode == 0, proc.stderr
    assert 'note: 1 file(s) with other image extensions are not read: a/photo.webp' in proc.stderr
    assert 'note: 4 of 12 images are not square: they are stretched' in proc.stderr
    assert 'note: only 3 steps (1 x 3 batches); a DCGAN needs 500+' in proc.stderr
    proc = run_cli(args + ['--crop', 'center', '--out-dir', str(tmp_path / 'cropped')])
    assert proc.returncode == 0 and 'their central squares are used' in proc.stderr
    # Two decode cache entries: the crop is part of the key.
    assert len(list((tmp_path / 'cache' / 'decoded').glob('images-*.npy'))) == 2
