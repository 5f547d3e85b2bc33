"""Every bad input a user can give: one line on stderr, exit 2, no traceback, nothing left."""
import os
import shutil

import pytest

from conftest import assert_one_line_error, run_cli

BASE = ['--data', 'synthetic', '--limit', '32', '--batch-size', '16', '--epochs', '1',
        '--no-progress', '--ctx', 'cpu']


def _folder_with_no_images(tmp):
    (tmp / 'empty' / 'cls').mkdir(parents=True)
    (tmp / 'empty' / 'cls' / 'readme.txt').write_text('no images here')
    return str(tmp / 'empty')


def _folder_with_bad_images(tmp):
    from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
    root = write_image_folder(make_sprites(4), str(tmp / 'imgs'))
    with open(os.path.join(root, 'sprites', 'broken.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + b'\0' * 20)
    return root


def _file_as_out_dir(tmp):
    (tmp / 'afile').write_text('x')
    return str(tmp / 'afile' / 'run')


CASES = {
    'pokemon offline': (lambda t: ['--data', 'pokemon', '--data-root', str(t / 'dr')] +
                        BASE[2:], 'cannot download pokemon'),
    'missing data path': (lambda t: ['--data', str(t / 'nope')] + BASE[2:], 'does not exist'),
    'no images': (lambda t: ['--data', _folder_with_no_images(t)] + BASE[2:], 'no images'),
    'bad images': (lambda t: ['--data', _folder_with_bad_images(t)] + BASE[2:] +
                   ['--data-root', str(t / 'c')], '--skip-bad-images'),
    'epochs 0': (lambda t: BASE + ['--epochs', '0'], '--epochs'),
    'batch size -4': (lambda t: BASE + ['--batch-size', '-4'], '--batch-size'),
    'lr 0': (lambda t: BASE + ['--lr', '0'], '--lr'),
    'lr nan': (lambda t: BASE + ['--lr', 'nan'], '--lr'),
    'latent 0': (lambda t: BASE + ['--latent-dim', '0'], '--latent-dim'),
    'limit 0': (lambda t: BASE + ['--limit', '0'], '--limit'),
    'alpha 1.5': (lambda t: BASE + ['--alpha', '1.5'], '--alpha'),
    'alpha text': (lambda t: BASE + ['--alpha', 'big'], '--alpha'),
    'unknown ctx': (lambda t: BASE + ['--ctx', 'tpu'], '--ctx'),
    'batch larger than data': (lambda t: BASE + ['--batch-size', '64'], 'larger than the dataset'),
    'unknown flag': (lambda t: BASE + ['--epoch', '3'], 'unrecognized'),
    'out-dir not writable': (lambda t: BASE + ['--out-dir', _file_as_out_dir(t)], 'out-dir'),
    'resume and overwrite': (lambda t: BASE + ['--resume', '--overwrite'], 'pick one'),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_training_input(name, tmp_path):
    make_args, expected = CASES[name]
    args = make_args(tmp_path)
    if '--out-dir' not in args:
        args += ['--out-dir', str(tmp_path / 'out')]
    proc = run_cli(args)
    assert_one_line_error(proc, contains=expected)
    out = tmp_path / 'out'
    assert not (out / 'export').exists() and not (out / 'metrics.jsonl').exists()


@pytest.fixture
def export_copy(tiny_run, tmp_path):
    out, _ = tiny_run
    dst = tmp_path / 'export'
    shutil.copytree(out / 'export', dst)
    return dst


def _generate(export, tmp_path):
    return run_cli(['generate', '--export', str(export), '--num', '4',
                    '--output', str(tmp_path / 'g.png')])


def test_generate_missing_export(tmp_path):
    assert_one_line_error(_generate(tmp_path / 'none', tmp_path), contains='does not exist')
    assert not (tmp_path / 'g.png').exists()


def test_generate_partial_export(export_copy, tmp_path):
    (export_copy / 'generator-0000.params').unlink()
    assert_one_line_error(_generate(export_copy, tmp_path), contains='partial')
    assert not (tmp_path / 'g.png').exists()


def test_generate_export_without_manifest(export_copy, tmp_path):
    (export_copy / 'manifest.json').unlink()
    assert_one_line_error(_generate(export_copy, tmp_path), contains='not a complete export')


def test_generate_mismatched_export(export_copy, tmp_path):
    params = export_copy / 'generator-0000.params'
    params.write_bytes(params.read_bytes()[:-100] + b'\0' * 100)
    assert_one_line_error(_generate(export_copy, tmp_path), contains='SHA-256')
    assert not (tmp_path / 'g.png').exists()


def test_generate_bad_output(export_copy, tmp_path):
    proc = run_cli(['generate', '--export', str(export_copy), '--output',
                    str(tmp_path / 'no' / 'dir' / 'g.png')])
    assert_one_line_error(proc, contains='does not exist')
