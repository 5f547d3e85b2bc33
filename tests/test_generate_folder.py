"""generate --out-dir: one PNG per image (for FID tools), the grid's tiles to the bit,
made whole beside the folder and renamed into place; a folder of the user's is kept."""
import hashlib
import io
import json
import os
import sys

import numpy as onp
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from gluon_dcgan import files
from gluon_dcgan.tools import generate

TILE, PAD = 64, 2  # the export's image size and images.grid's padding


def _tiles(grid_png, num):
    """The num tiles of a square_grid PNG, in order."""
    canvas, cols = onp.asarray(Image.open(grid_png)), int(onp.ceil(onp.sqrt(num)))
    return [canvas[PAD + r * (TILE + PAD):PAD + r * (TILE + PAD) + TILE,
                   PAD + k * (TILE + PAD):PAD + k * (TILE + PAD) + TILE]
            for r, k in (divmod(i, cols) for i in range(num))]


def _images(folder):
    return sorted(n for n in os.listdir(folder) if n != generate.FOLDER_RECORD)


def _digests(folder):
    return {n: files.file_digest(folder / n) for n in os.listdir(folder)}


def _dead_suffix():
    pid_max = int(open('/proc/sys/kernel/pid_max').read())
    return f'{files.HOST}-{pid_max + 1}-deadbeef'  # a PID no process can have


@pytest.mark.unit
def test_names_are_zero_padded_to_five_digits_or_the_width_of_the_last():
    assert generate.image_names(3) == ['00000.png', '00001.png', '00002.png']
    assert generate.image_names(100_000)[-1] == '99999.png'
    assert generate.image_names(100_001)[0] == '000000.png'
    assert generate.image_names(100_001)[-1] == '100000.png'


@pytest.mark.unit
@pytest.mark.parametrize('flags, contains', [
    (['--output', 'g.png', '--out-dir', 'imgs'], 'give exactly one of --output'),
    ([], 'give exactly one of --output'),
    (['--out-dir', 'imgs', '--interpolate', '3'], 'not --out-dir'),
    (['--output', 'g.png', '--num', '10001'], 'write the images as files with --out-dir'),
    (['--out-dir', 'imgs', '--num', '100001'], 'must be <= 100000'),
    (['--out-dir', 'mine.txt'], 'is a file'),
    (['--out-dir', 'nowhere/imgs'], 'does not exist: create it first'),
    (['--out-dir', 'export/imgs'], 'inside the --export folder'),
    (['--out-dir', 'link'], 'symbolic link'),
])
def test_bad_folder_flags_are_one_line(tmp_path, flags, contains, main_in_process,
                                       monkeypatch):
    (tmp_path / 'export').mkdir()
    (tmp_path / 'mine.txt').write_text('keep me')
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    before = sorted(os.listdir(tmp_path))
    monkeypatch.chdir(tmp_path)
    proc = main_in_process(['generate', '--export', 'export'] + flags)
    assert_one_line_error(proc, contains=contains)
    assert sorted(os.listdir(tmp_path)) == before  # refused before anything was written
    assert not os.listdir(tmp_path / 'export') and not os.listdir(tmp_path / 'real')


@pytest.mark.unit
@pytest.mark.parametrize('record', [None, 'not json', {'written_by': 'someone', 'files': {}}])
def test_a_folder_of_the_users_is_refused_and_kept(tmp_path, record, main_in_process):
    imgs = tmp_path / 'imgs'
    imgs.mkdir()
    (imgs / '00000.png').write_bytes(b'my own picture')
    if record is not None:
        (imgs / generate.FOLDER_RECORD).write_text(
            record if isinstance(record, str) else json.dumps(record))
    before = _digests(imgs)
    proc = main_in_process(['generate', '--export', tmp_path / 'export', '--out-dir', imgs])
    line = assert_one_line_error(proc, contains='which generate did not write')
    assert 'move it away, or choose another --out-dir' in line
    assert _digests(imgs) == before and sorted(os.listdir(tmp_path)) == ['imgs']


@pytest.mark.unit
def test_a_killed_swap_is_undone_and_dead_writers_leftovers_removed(tmp_path):
    imgs = tmp_path / 'imgs'
    replaced = tmp_path / f'.imgs{generate.REPLACED}{_dead_suffix()}'
    writing = tmp_path / f'.imgs{generate.WRITING}{_dead_suffix()}'
    live = tmp_path / f'.imgs{generate.WRITING}{files.owner_suffix()}'  # this process: live
    for folder in (replaced, writing, live):
        folder.mkdir()
        (folder / '00000.png').write_bytes(folder.name.encode())
    generate.IMAGES.recover(str(imgs))  # killed between its two renames: imgs is missing
    assert (imgs / '00000.png').read_bytes() == replaced.name.encode()
    assert sorted(os.listdir(tmp_path)) == sorted(['imgs', live.name])


# ---- with a real export (conftest.tiny_run): cli ----------------------------------------

@pytest.fixture
def export(tiny_run):
    return tiny_run[0] / 'export'


@pytest.mark.cli
def test_files_are_the_tiles_of_the_grid_across_passes(export, tmp_path, main_in_process):
    num = 300  # more than images.CHUNK: two forward passes
    imgs = tmp_path / 'imgs'
    args = ['generate', '--export', export, '--num', num, '--seed', 4]
    proc = main_in_process(args + ['--out-dir', imgs])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f'wrote {num} images to {imgs}\n' and not proc.stderr
    assert main_in_process(args + ['--output', tmp_path / 'g.png']).returncode == 0
    assert _images(imgs) == [f'{i:05d}.png' for i in range(num)]
    for i, tile in enumerate(_tiles(tmp_path / 'g.png', num)):
        image = Image.open(imgs / f'{i:05d}.png')
        assert image.mode == 'RGB' and image.size == (TILE, TILE)
        assert onp.array_equal(onp.asarray(image), tile), i
    record = json.loads((imgs / generate.FOLDER_RECORD).read_text())
    assert record['seed'] == 4 and record['num'] == num and not record['onnx']
    assert record['files'] == {n: hashlib.sha256((imgs / n).read_bytes()).hexdigest()
                               for n in _images(imgs)}
    assert sorted(os.listdir(tmp_path)) == ['g.png', 'imgs']  # no temporary folder, no lock


@pytest.mark.cli
def test_onnx_files_never_import_mxnet_and_are_the_onnx_grids_tiles(export, tmp_path,
                                                                     main_in_process):
    blocker = tmp_path / 'block' / 'mxnet'
    blocker.mkdir(parents=True)
    (blocker / '__init__.py').write_text("raise ImportError('mxnet is blocked for this test')")
    args = ['generate', '--export', str(export), '--onnx', '--num', '30', '--seed', '2']
    proc = run_cli(args + ['--out-dir', str(tmp_path / 'imgs')],
                   env={'PYTHONPATH': str(tmp_path / 'block')})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'wrote 30 images to {tmp_path / "imgs"}'
    assert main_in_process(args + ['--output', tmp_path / 'g.png']).returncode == 0
    for i, tile in enumerate(_tiles(tmp_path / 'g.png', 30)):
        assert onp.array_equal(onp.asarray(Image.open(tmp_path / 'imgs' / f'{i:05d}.png')),
                               tile), i


@pytest.mark.cli
def test_an_own_folder_is_replaced_and_a_changed_one_refused(export, tmp_path,
                                                              main_in_process):
    imgs = tmp_path / 'imgs'
    args = ['generate', '--export', export, '--out-dir', imgs]
    assert main_in_process(args + ['--num', '30', '--seed', '1']).returncode == 0
    first = _digests(imgs)
    proc = main_in_process(args + ['--seed', '2'])  # --num's default with --out-dir: 1000
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f'wrote 1000 images to {imgs}\n'
    assert len(_images(imgs)) == 1000 and _images(imgs)[-1] == '00999.png'
    assert _digests(imgs)['00000.png'] != first['00000.png']  # another seed: other images
    assert sorted(os.listdir(tmp_path)) == ['imgs']
    (imgs / '00007.png').write_bytes(b'edited by the user')
    before = _digests(imgs)
    proc = main_in_process(args + ['--num', '5'])
    assert_one_line_error(proc, contains=f'{imgs} holds 00007.png, which generate did not')
    assert _digests(imgs) == before


@pytest.mark.cli
def test_an_interrupted_run_leaves_the_old_folder_and_no_partial_one(export, tmp_path,
                                                                      main_in_process,
                                                                      monkeypatch):
    imgs = tmp_path / 'imgs'
    args = ['generate', '--export', export, '--num', '20', '--out-dir']
    assert main_in_process(args + [imgs]).returncode == 0
    before = _digests(imgs)
    encode, calls = generate.png_bytes, []

    def interrupted(image):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return encode(image)
    monkeypatch.setattr(generate, 'png_bytes', interrupted)
    for target in (imgs, tmp_path / 'new'):
        calls.clear()
        assert main_in_process(args + [target]).returncode == 130
    assert _digests(imgs) == before  # the old images, untouched
    assert sorted(os.listdir(tmp_path)) == ['imgs']  # no 'new', no temporary folder


@pytest.mark.unit
def test_latents_past_the_bound_are_refused_with_the_most_that_fit():
    manifest = {'latent_dim': 4096}
    generate._check_latents(manifest, generate.MAX_LATENT_BYTES // (4 * 4096))
    with pytest.raises(generate.UserError, match=r'lower --num \(at most 25600\)'):
        generate._check_latents(manifest, 25601)
    generate._check_latents({'latent_dim': 100}, generate.MAX_FILES)  # the chapter's: all fit


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws into it."""

    def isatty(self):
        return True


@pytest.mark.unit
@pytest.mark.parametrize('progress', [True, False])
def test_passes_are_bounded_and_the_bar_is_drawn_on_a_terminal(tmp_path, monkeypatch,
                                                               progress):
    err, passes = _Terminal(), []
    monkeypatch.setattr(sys, 'stderr', err)

    def pixels(Z):  # grey images whose value is the latent's index: order is checked
        passes.append(len(Z))
        return onp.broadcast_to(Z[:, :1, :1, :1].astype(onp.uint8), (len(Z), 8, 8, 1))
    Z = onp.arange(600, dtype=onp.float32).reshape(600, 1, 1, 1) % 256
    manifest = {'output_shape': ['N', 3, 64, 64]}
    generate._write_folder(str(tmp_path / 'imgs'), pixels, Z, manifest, {}, progress)
    assert passes == [256, 256, 88]  # images.CHUNK latents at a time, as the grid's passes
    names = generate.image_names(600)
    assert _images(tmp_path / 'imgs') == names
    for i in (0, 255, 256, 599):
        image = Image.open(tmp_path / 'imgs' / names[i])
        assert image.mode == 'L' and onp.all(onp.asarray(image) == i % 256)
    assert ('images' in err.getvalue() and '/600' in err.getvalue()) == progress
