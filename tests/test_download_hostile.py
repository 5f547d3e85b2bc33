"""Component: downloads against servers on 127.0.0.1 that hang, stream without end, or
break off, and two downloads sharing one data root.

Each server answers in a thread and stops by itself: a hanging answer waits at most
LIFETIME seconds, an endless one stops at CAP bytes or when the client goes away.
"""
import functools
import http.server
import os
import socket
import threading
import time

import pytest
from d2l import mxnet as d2l

from conftest import assert_one_line_error
from gluon_dcgan.data import hub
from gluon_dcgan.errors import UserError

LIFETIME = 20  # seconds any answer lasts at most, whatever the client does
CAP = 128 << 20  # bytes the endless server sends at most (the client should stop it at LIMIT)
LIMIT = 1 << 20  # the size bound the tests give the client
TIMEOUT = 1  # the read timeout the tests give the client, in seconds


class HostileServer:
    """An HTTP server on 127.0.0.1 with one bad behaviour; counts requests and body bytes."""

    def __init__(self, mode):
        self.mode, self.requests, self.served = mode, 0, 0
        self.done = threading.Event()
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.sock.settimeout(0.2)
        self.url = f'http://127.0.0.1:{self.sock.getsockname()[1]}/pokemon.zip'
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        deadline = time.monotonic() + LIFETIME
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn, deadline), daemon=True).start()
        self.sock.close()

    def _answer(self, conn, deadline):
        with conn:
            conn.settimeout(5)
            request = b''
            while b'\r\n\r\n' not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            self.requests += 1
            try:
                getattr(self, '_' + self.mode)(conn, deadline)
            except OSError:  # the client hung up: what it should do to an endless stream
                pass

    def _hang(self, conn, deadline):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n')
        self.done.wait(max(0, deadline - time.monotonic()))

    def _endless(self, conn, deadline):
        conn.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n')
        chunk = b'\0' * (1 << 16)
        while self.served < CAP and time.monotonic() < deadline and not self.done.is_set():
            conn.sendall(chunk)
            self.served += len(chunk)

    def _short(self, conn, deadline):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + b'P' * 1000)

    def stop(self):
        self.done.set()
        self.thread.join(LIFETIME + 5)


@pytest.fixture
def hostile(monkeypatch):
    """hostile(mode) -> a HostileServer registered as DATA_HUB['pokemon']."""
    servers = []

    def start(mode):
        server = HostileServer(mode)
        servers.append(server)
        monkeypatch.setitem(d2l.DATA_HUB, 'pokemon', (server.url, hub.POKEMON_SHA1))
        return server
    yield start
    for server in servers:
        server.stop()


def _assert_nothing_left(folder):
    """No file under the final name and no temporary: only the lock may stay."""
    assert sorted(os.listdir(folder)) in ([], ['.pokemon.lock']), os.listdir(folder)


def _failed_download(folder, **kwargs):
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        hub.pokemon_folder(str(folder), log=lambda m: None, **kwargs)
    message = str(err.value)
    assert '\n' not in message and message.startswith('cannot download pokemon from ')
    return message, time.monotonic() - start


@pytest.mark.unit
def test_a_server_that_hangs_after_its_headers_ends_within_the_read_timeout(tmp_path, hostile):
    server = hostile('hang')
    message, took = _failed_download(tmp_path, timeout=TIMEOUT)
    assert f'the server sent nothing for {TIMEOUT} s' in message
    assert took < LIFETIME / 2  # the server would hold the connection for LIFETIME
    assert server.requests == 1  # no retries
    _assert_nothing_left(tmp_path)


@pytest.mark.unit
def test_an_endless_stream_stops_at_the_size_bound(tmp_path, hostile):
    server = hostile('endless')
    message, _ = _failed_download(tmp_path, timeout=TIMEOUT, limit=LIMIT)
    assert f'the server sent more than {LIMIT} bytes' in message
    server.stop()
    # What the client read stopped at LIMIT; the rest sat in the sockets' buffers.
    assert server.served < 32 << 20, server.served
    _assert_nothing_left(tmp_path)


@pytest.mark.unit
def test_a_body_shorter_than_announced_is_named_and_not_kept(tmp_path, hostile):
    hostile('short')
    message, _ = _failed_download(tmp_path, timeout=TIMEOUT)
    assert 'the transfer broke off before the 100000 bytes announced' in message
    _assert_nothing_left(tmp_path)


@pytest.mark.unit
def test_a_broken_transfer_is_one_line_from_the_command(tmp_path, hostile, main_in_process):
    hostile('short')
    root = tmp_path / 'dr'
    proc = main_in_process(['--data', 'pokemon', '--data-root', str(root), '--epochs', '1',
                            '--no-progress', '--out-dir', str(tmp_path / 'out')])
    assert_one_line_error(proc, contains='the transfer broke off')
    _assert_nothing_left(root)


@pytest.mark.unit
def test_an_announced_length_past_the_bound_is_refused_before_reading(tmp_path, hostile):
    hostile('short')  # announces 100000 bytes
    message, _ = _failed_download(tmp_path, timeout=TIMEOUT, limit=50000)
    assert 'the server announced 100000 bytes' in message
    _assert_nothing_left(tmp_path)


@pytest.mark.unit
def test_a_cached_file_with_the_right_sha1_is_not_downloaded_again(tmp_path, monkeypatch):
    (tmp_path / 'pokemon.zip').write_bytes(b'the cached archive')
    sha1 = hub.sha1_of(str(tmp_path / 'pokemon.zip'))
    monkeypatch.setitem(d2l.DATA_HUB, 'pokemon', ('http://127.0.0.1:9/pokemon.zip', sha1))
    assert hub.download_verified('pokemon', str(tmp_path)) == str(tmp_path / 'pokemon.zip')


@pytest.mark.unit
def test_fashion_mnist_downloads_are_bounded_too(tmp_path, monkeypatch):
    from gluon_dcgan.data.fashion_mnist import load_fashion_mnist
    server = HostileServer('hang')
    try:
        monkeypatch.setenv('MXNET_GLUON_REPO', server.url.rsplit('/', 1)[0] + '/')
        start = time.monotonic()
        with pytest.raises(UserError) as err:
            load_fashion_mnist(str(tmp_path), log=lambda m: None, timeout=TIMEOUT)
        assert time.monotonic() - start < LIFETIME / 2
    finally:
        server.stop()
    assert 'cannot get Fashion-MNIST' in str(err.value)
    assert f'the server sent nothing for {TIMEOUT} s' in str(err.value)
    assert os.listdir(tmp_path / 'fashion-mnist') == []
    assert server.requests == 1


class _OnePauseHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; the first answer waits (a while at most) until a second request comes."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.server.state
        with state['lock']:
            state['requests'] += 1
            first = state['requests'] == 1
        if first:
            state['second'].wait(3)
        else:
            state['second'].set()
        super().do_GET()


@pytest.mark.unit
def test_two_downloads_into_one_data_root_take_turns(tmp_path, monkeypatch):
    from test_download import _pokemon_zip
    www = tmp_path / 'www'
    www.mkdir()
    archive = _pokemon_zip(str(www / 'pokemon.zip'))
    handler = functools.partial(_OnePauseHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    httpd.state = {'lock': threading.Lock(), 'requests': 0, 'second': threading.Event()}
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{httpd.server_address[1]}/pokemon.zip'
    monkeypatch.setitem(d2l.DATA_HUB, 'pokemon', (url, hub.sha1_of(archive)))
    root, results = tmp_path / 'root', []

    def download():
        try:
            results.append(hub.pokemon_folder(str(root), log=lambda m: None, timeout=10))
        except Exception as exc:  # the test reports it below
            results.append(exc)
    threads = [threading.Thread(target=download) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        httpd.shutdown()
    assert results == [str(root / 'pokemon')] * 2
    assert httpd.state['requests'] == 1  # the second found the first one's extraction
    assert sorted(os.listdir(root)) == ['.pokemon.lock', 'pokemon', 'pokemon.zip']
    assert sorted(os.listdir(root / 'pokemon')) == ['0', '1']
