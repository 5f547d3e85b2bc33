"""Component: the Pokemon download (registered in d2l's DATA_HUB) against a zip served
from 127.0.0.1, and the line that announces a download (Pokemon, Fashion-MNIST) on a
terminal only. Servers that misbehave are in test_download_hostile.py."""
import functools
import http.server
import io
import os
import sys
import threading
import zipfile

import pytest
from d2l import mxnet as d2l

from conftest import Terminal
from gluon_dcgan.config import Config
from gluon_dcgan.data import hub, load_images
from gluon_dcgan.data.synthetic import make_sprites
from gluon_dcgan.errors import UserError


def _pokemon_zip(path, count=6):
    """A zip shaped like pokemon.zip: pokemon/<class>/<n>.png."""
    from PIL import Image
    with zipfile.ZipFile(path, 'w') as zf:
        for i, img in enumerate(make_sprites(count)):
            buf = io.BytesIO()
            Image.fromarray(img).resize((96, 96)).save(buf, format='PNG')
            zf.writestr(f'pokemon/{i % 2}/{i}.png', buf.getvalue())
    return path


@pytest.fixture
def server(tmp_path):
    """An http.server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / 'www'
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f'http://127.0.0.1:{httpd.server_address[1]}/'
    httpd.shutdown()


@pytest.fixture
def restore_hub():
    saved = dict(d2l.DATA_HUB), d2l.DATA_URL
    yield
    d2l.DATA_HUB.clear()
    d2l.DATA_HUB.update(saved[0])
    d2l.DATA_URL = saved[1]


def test_chapter_registration(restore_hub):
    d2l.DATA_HUB.pop('pokemon', None)
    assert hub.register_pokemon() == (d2l.DATA_URL + 'pokemon.zip', hub.POKEMON_SHA1)


def test_right_sha1_downloads_extracts_and_loads(server, tmp_path, restore_hub):
    www, url = server
    archive = _pokemon_zip(str(www / 'pokemon.zip'))
    d2l.DATA_HUB['pokemon'] = (url + 'pokemon.zip', hub.sha1_of(archive))
    cfg = Config(data='pokemon', data_root=str(tmp_path / 'root'), batch_size=2)
    images = load_images(cfg, log=lambda m: None)
    assert images.shape == (6, 64, 64, 3)
    assert sorted(os.listdir(tmp_path / 'root' / 'pokemon')) == ['0', '1']


def test_wrong_sha1_is_a_clear_error_and_leaves_no_file(server, tmp_path, restore_hub):
    www, url = server
    (www / 'pokemon.zip').write_text('<html>503 Service Unavailable</html>')
    d2l.DATA_HUB['pokemon'] = (url + 'pokemon.zip', hub.POKEMON_SHA1)
    root = tmp_path / 'root'
    with pytest.raises(UserError) as err:
        hub.download_verified('pokemon', str(root))
    assert 'SHA-1' in str(err.value) and 'deleted' in str(err.value)
    assert os.listdir(root) == []


def test_offline_is_a_clear_error(tmp_path, restore_hub):
    d2l.DATA_HUB['pokemon'] = ('http://127.0.0.1:9/pokemon.zip', hub.POKEMON_SHA1)
    with pytest.raises(UserError, match='--data synthetic'):
        hub.download_verified('pokemon', str(tmp_path))


def test_a_missing_file_is_named_with_the_servers_answer(server, tmp_path, restore_hub):
    _, url = server
    d2l.DATA_HUB['pokemon'] = (url + 'pokemon.zip', hub.POKEMON_SHA1)  # nothing served
    with pytest.raises(UserError, match='the server answered HTTP 404 File not found'):
        hub.download_verified('pokemon', str(tmp_path / 'root'))
    assert os.listdir(tmp_path / 'root') == []


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
    for err, enabled, shown in ((Terminal(), True, True), (Terminal(), False, False),
                                (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, 'stderr', err)
        progress_note(enabled)('downloading x ...')
        assert (err.getvalue() == 'downloading x ...\n') is shown
