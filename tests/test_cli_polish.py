"""The command line's surface: --version, grouped --help, unknown commands, snake_case flags."""
import io
import re
import sys

import pytest

from conftest import assert_one_line_error, run_cli
from gluon_dcgan import __version__
from gluon_dcgan.cli import COMMANDS


@pytest.mark.cli
def test_version_prints_the_package_version():
    proc = run_cli(['--version'])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'gluon_dcgan {__version__}' == 'gluon_dcgan 0.1.0'


@pytest.mark.cli
def test_training_help_groups_the_flags():
    proc = run_cli(['--help'])
    assert proc.returncode == 0
    headings = re.findall(r'^(\w+):$', proc.stdout, re.M)
    assert headings == ['options', 'data', 'model', 'training', 'output', 'distributed',
                        'quality']
    section = proc.stdout.split('\ndistributed:\n')[1].split('\n\n')[0]
    assert '--ctx' in section and '--kvstore' in section


@pytest.mark.cli
@pytest.mark.parametrize('word', ['genrate', 'trian', 'outputs'])
def test_an_unknown_command_lists_the_commands(word, tmp_path):
    proc = run_cli([word, '--epochs', '1', '--out-dir', str(tmp_path / 'out')])
    line = assert_one_line_error(proc, contains=f'unknown command {word!r}')
    assert all(command in line for command in COMMANDS)
    assert not list(tmp_path.iterdir())  # nothing was trained or written


@pytest.mark.cli
def test_a_near_miss_gets_a_suggestion():
    line = assert_one_line_error(run_cli(['genrate']), contains='did you mean generate?')
    assert 'generate' in line


def _long_flags(help_text):
    """The option strings of --help's option lines (not flags named in help texts)."""
    invocations = re.findall(r'^  (-.*?)(?:  |$)', help_text, re.M)
    return {f for line in invocations for f in re.findall(r'--[A-Za-z][\w-]*', line)}


@pytest.mark.cli
@pytest.mark.parametrize('command', [
    None, 'train', 'generate', 'export', 'evaluate',
    'ablate-activation', 'analyze-categories', 'launch'])
def test_help_lists_each_flag_once_in_kebab_case(command):
    proc = run_cli(([command] if command else []) + ['--help'])
    assert proc.returncode == 0, proc.stderr
    flags = _long_flags(proc.stdout)
    assert '--help' in flags and len(flags) > 2, proc.stdout
    assert not [f for f in flags if '_' in f], proc.stdout  # the snake twins are not listed
    invocations = re.findall(r'^  (--[\w-]+)', proc.stdout, re.M)
    assert len(invocations) == len(set(invocations)), invocations


@pytest.mark.cli
def test_snake_case_flags_parse_like_kebab_case(tmp_path):
    proc = run_cli(['generate', '--export', str(tmp_path), '--output', str(tmp_path / 'g.png'),
                    '--interpolate', '2', '--steps', '1'])
    assert_one_line_error(proc, contains='must be >= 2')
    proc = run_cli(['analyze-categories', '--run', str(tmp_path), '--classifier_epochs', '0'])
    assert_one_line_error(proc, contains='must be >= 1')


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so tqdm draws into it."""

    def isatty(self):
        return True


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
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    images, bad = cache.decode_all(paths, 64, 3, num_workers=3, progress=progress)
    assert images.shape == (12, 64, 64, 3) and bad == []
    drawn = err.getvalue()
    if progress and terminal:
        assert 'decoding images' in drawn and '/12' in drawn
    else:
        assert drawn == ''


@pytest.mark.unit
def test_a_download_is_announced_before_it_starts(tmp_path, monkeypatch):
    from d2l import mxnet as d2l
    from gluon_dcgan.data import hub
    from gluon_dcgan.errors import UserError
    monkeypatch.setitem(d2l.DATA_HUB, 'pokemon', ('http://127.0.0.1:9/pokemon.zip',
                                                  hub.POKEMON_SHA1))
    notes = []
    with pytest.raises(UserError, match='cannot download'):
        hub.pokemon_folder(str(tmp_path), log=notes.append)
    assert notes == [f'downloading pokemon.zip from http://127.0.0.1:9/pokemon.zip into '
                     f'{tmp_path} ...']


@pytest.mark.unit
def test_a_fashion_mnist_download_is_announced(tmp_path, monkeypatch):
    from gluon_dcgan.data.fashion_mnist import load_fashion_mnist
    from gluon_dcgan.errors import UserError
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')
    notes = []
    with pytest.raises(UserError, match='Fashion-MNIST'):
        load_fashion_mnist(str(tmp_path), log=notes.append)
    assert notes == [f'downloading train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz '
                     f'from http://127.0.0.1:9/gluon/dataset/fashion-mnist/ into '
                     f'{tmp_path / "fashion-mnist"} ...']


@pytest.mark.unit
def test_progress_notes_stay_off_the_pipe(monkeypatch):
    from gluon_dcgan.data.hub import progress_note
    for err, enabled, shown in ((_Terminal(), True, True), (_Terminal(), False, False),
                                (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, 'stderr', err)
        progress_note(enabled)('downloading x ...')
        assert (err.getvalue() == 'downloading x ...\n') is shown
