"""Every bad input a user can give: one line on stderr, exit 2, no traceback, nothing left.

The refusals run cli.main in this process (conftest.main_in_process, checked against
the real command in test_cli.py): each would otherwise start Python and MXNet again.
"""
import os
import shutil

import pytest

from conftest import assert_one_line_error

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


@pytest.mark.unit
@pytest.mark.parametrize('name', sorted(CASES))
def test_bad_training_input(name, tmp_path, monkeypatch, main_in_process):
    make_args, expected = CASES[name]
    if name == 'pokemon offline':  # offline for sure, and no traffic beyond 127.0.0.0/8
        from d2l import mxnet as d2l
        from gluon_dcgan.data import hub
        monkeypatch.setitem(d2l.DATA_HUB, 'pokemon', ('http://127.0.0.1:9/pokemon.zip',
                                                      hub.POKEMON_SHA1))
    args = make_args(tmp_path)
    if '--out-dir' not in args:
        args += ['--out-dir', str(tmp_path / 'out')]
    proc = main_in_process(args)
    assert_one_line_error(proc, contains=expected)
    out = tmp_path / 'out'
    assert not (out / 'export').exists() and not (out / 'metrics.jsonl').exists()


@pytest.fixture
def export_copy(tiny_run, tmp_path):
    out, _ = tiny_run
    dst = tmp_path / 'export'
    shutil.copytree(out / 'export', dst)
    return dst


def _generate(main, export, tmp_path):
    return main(['generate', '--export', str(export), '--num', '4',
                 '--output', str(tmp_path / 'g.png')])


@pytest.mark.unit
def test_generate_missing_export(tmp_path, main_in_process):
    assert_one_line_error(_generate(main_in_process, tmp_path / 'none', tmp_path),
                          contains='does not exist')
    assert not (tmp_path / 'g.png').exists()


# These read a copy of the session's trained run (conftest.tiny_run): cli.
@pytest.mark.cli
def test_generate_partial_export(export_copy, tmp_path, main_in_process):
    (export_copy / 'generator-0000.params').unlink()
    assert_one_line_error(_generate(main_in_process, export_copy, tmp_path), contains='partial')
    assert not (tmp_path / 'g.png').exists()


@pytest.mark.cli
def test_generate_export_without_manifest(export_copy, tmp_path, main_in_process):
    (export_copy / 'manifest.json').unlink()
    assert_one_line_error(_generate(main_in_process, export_copy, tmp_path),
                          contains='not a complete export')


@pytest.mark.cli
def test_generate_mismatched_export(export_copy, tmp_path, main_in_process):
    params = export_copy / 'generator-0000.params'
    params.write_bytes(params.read_bytes()[:-100] + b'\0' * 100)
    assert_one_line_error(_generate(main_in_process, export_copy, tmp_path), contains='SHA-256')
    assert not (tmp_path / 'g.png').exists()


@pytest.mark.cli
def test_generate_bad_output(export_copy, tmp_path, main_in_process):
    proc = main_in_process(['generate', '--export', str(export_copy), '--output',
                            str(tmp_path / 'no' / 'dir' / 'g.png')])
    assert_one_line_error(proc, contains='does not exist')
