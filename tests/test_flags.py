"""Flags and inputs, checked before anything runs: one line on stderr, exit 2, no
traceback, nothing left (not the run folder either).

The refusals run cli.main in this process (conftest.main_in_process, checked against
the real command in test_cli.py): each would otherwise start Python and MXNet again.
"""
import os

import pytest

from conftest import SYNTHETIC, assert_one_line_error


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


def _file(tmp_path):
    (tmp_path / 'afile').write_text('mine')
    return str(tmp_path / 'afile')


TRAIN_CASES = {
    'seed -1': (['--seed', '-1'], '--seed'),
    'seed 2**32': (['--seed', str(2 ** 32)], '--seed'),
    'seed text': (['--seed', 'x'], '--seed'),
    'data-root is a file': (lambda t: ['--data', 'pokemon', '--data-root', _file(t)],
                            'is not a folder'),
    'data-root inside a file': (lambda t: ['--data', 'pokemon', '--data-root',
                                           os.path.join(_file(t), 'sub')], 'which is not a folder'),
    'data-root empty': (['--data-root', ''], 'must not be empty'),
    'out-dir empty': (['--out-dir', ''], 'must not be empty'),
    'n-G 4096': (['--n-G', '4096'], 'GiB'),
    'batch 10**9': (['--batch-size', str(10 ** 9)], 'GiB'),
    'synthetic limit': (['--limit', '20000'], '16384'),
    'num-workers 10**6': (['--num-workers', str(10 ** 6)], '--num-workers'),
    'epochs 10**20': (['--epochs', str(10 ** 20)], '--epochs'),
    'out-dir not UTF-8': (lambda t: ['--out-dir', str(t / os.fsdecode(b'o\xff'))], 'UTF-8'),
    'more devices than examples': (['--ctx', 'cpu:0,1,2', '--batch-size', '2'], '3 devices'),
    'fid-num 1': (['--fid-every', '1', '--fid-num', '1'], 'argument --fid-num'),
    'fid-num 10**12': (['--fid-every', '1', '--fid-num', str(10 ** 12)], 'argument --fid-num'),
    # MXNet's Adam hands lr * sqrt(1 - beta2**t) / (1 - beta1**t) to a float32 kernel
    'lr 1e40': (['--lr', '1e40'], 'use --lr 1.6e+38 or less'),
    'lr 1e308': (['--lr', '1e308'], 'too large'),
    'lr 1e-38': (['--lr', '1e-38'], 'use --lr 3.9e-37 or more'),
    'lr 1e-320': (['--lr', '1e-320'], "--lr 1e-320 is too small for MXNet's float32"),
    'lr 1e30, beta1 near 1': (['--lr', '1e30', '--beta1', '0.99999999999'], '--beta1'),
    'ctx id above a C int': (['--ctx', 'cpu:2147483648'], 'in 0..1023'),
    'ctx id 1_0': (['--ctx', 'cpu:1_0'], "bad device list in --ctx 'cpu:1_0'"),
    'ctx id empty': (['--ctx', 'cpu:'], "bad device list in --ctx 'cpu:'"),
    'ctx id non-ASCII': (['--ctx', 'cpu:\u0662'], 'give numbers'),
}


@pytest.mark.unit
@pytest.mark.parametrize('name', sorted(TRAIN_CASES))
def test_bad_training_flag(name, tmp_path, main_in_process):
    extra, expected = TRAIN_CASES[name]
    extra = extra(tmp_path) if callable(extra) else extra
    proc = main_in_process(SYNTHETIC + ['--out-dir', str(tmp_path / 'out')] + extra)
    assert_one_line_error(proc, contains=expected)
    assert not (tmp_path / 'out').exists() or name == 'out-dir empty'
    if os.path.exists(tmp_path / 'afile'):
        assert (tmp_path / 'afile').read_text() == 'mine'


@pytest.mark.unit
@pytest.mark.parametrize('lr, beta1', [(3.9e-37, 0.5), (1.6e38, 0.5), (1e30, 0.99999)])
def test_extreme_but_representable_lr_is_accepted(lr, beta1):
    from gluon_dcgan.config import check_adam_rate
    check_adam_rate(lr, beta1)  # the bounds the refusals above print are themselves valid


@pytest.mark.unit
def test_data_root_that_is_read_only_is_refused(tmp_path, monkeypatch):
    # Tests may run as root, for whom chmod does not stop writes: ask os.access instead.
    from gluon_dcgan import config
    from gluon_dcgan.errors import UserError
    monkeypatch.setattr(config.os, 'access', lambda path, mode: False)
    with pytest.raises(UserError, match='cannot be written'):
        config.check_data_root(str(tmp_path / 'new' / 'root'))


@pytest.mark.unit
@pytest.mark.parametrize('command', ['generate', 'evaluate'])
@pytest.mark.parametrize('seed', ['-1', str(2 ** 32)])
def test_bad_seed_in_tools(command, seed, tmp_path, main_in_process):
    proc = main_in_process([command, '--export', str(tmp_path), '--seed', seed, '--output',
                            str(tmp_path / 'g.png')] if command == 'generate' else
                           [command, '--export', str(tmp_path), '--seed', seed])
    assert_one_line_error(proc, contains='--seed')
