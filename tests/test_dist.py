"""The parameter servers' messages: the optimizer travels as data, and nothing runs pickle."""
import json
import os
import pickle
import subprocess
import sys

import mxnet as mx
import pytest

from gluon_dcgan.dist import server as dist_server


class _Planted:
    """Unpickling this runs a command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class _FakeStore:
    rank, _updater = 0, None

    def set_optimizer(self, optimizer):
        self._updater = mx.optimizer.get_updater(optimizer)


def _controller():
    server = type('Server', (dist_server.StatefulServerMixin,), {})()
    server.kvstore = _FakeStore()
    return server, server._controller()


@pytest.mark.unit
def test_a_trainers_adam_travels_as_data_and_comes_back_equal():
    adam = mx.optimizer.Adam(learning_rate=0.005, beta1=0.5)
    adam.rescale_grad = 1 / 64
    message = dist_server.optimizer_message(adam)
    again = dist_server.optimizer_from_message(json.loads(json.dumps(message)))
    fields = dict(vars(adam), param_dict=None)
    assert type(again) is mx.optimizer.Adam
    assert {k: v for k, v in vars(again).items() if k in dist_server.ADAM_FIELDS} == \
        {k: v for k, v in fields.items() if k in dist_server.ADAM_FIELDS}


@pytest.mark.unit
@pytest.mark.parametrize('change', [
    lambda m: m.update(name='sgd'),
    lambda m: m['fields'].update(lr=float('nan')),
    lambda m: m['fields'].update(lr='0.1'),
    lambda m: m['fields'].update(extra=1),
    lambda m: m['fields'].pop('beta1'),
    lambda m: m['fields'].update(num_update=True),
    lambda m: m['fields'].update(wd_mult={'w': 'x'}),
])
def test_any_other_optimizer_message_is_refused(change):
    message = dist_server.optimizer_message(mx.optimizer.Adam())
    change(message)
    with pytest.raises(ValueError):
        dist_server.optimizer_from_message(json.loads(json.dumps(message)))


@pytest.mark.unit
def test_only_a_plain_adam_is_sent():
    with pytest.raises(ValueError, match='plain Adam'):
        dist_server.optimizer_message(mx.optimizer.SGD())


@pytest.mark.unit
def test_a_pickled_optimizer_runs_nothing_and_is_refused(tmp_path, capsys):
    marker = tmp_path / 'pwned'
    server, controller = _controller()
    for body in (pickle.dumps(_Planted(marker), 0),
                 pickle.dumps(mx.optimizer.Adam(), 0),  # what stock MXNet workers send
                 dist_server.PREFIX.encode() + b'[' * 100000,
                 dist_server.PREFIX.encode() + b'{"action": "eval"}'):
        controller(0, body, None)
    controller(7, b'anything', None)
    assert not marker.exists()
    assert server.kvstore._updater is None  # no optimizer was installed
    refused = [l for l in capsys.readouterr().err.splitlines() if 'refused a message' in l]
    assert len(refused) == 5


@pytest.mark.unit
def test_our_optimizer_message_installs_adam(capsys):
    server, controller = _controller()
    adam = mx.optimizer.Adam(learning_rate=0.005, beta1=0.5)
    controller(0, (dist_server.PREFIX + json.dumps(dist_server.optimizer_message(adam))).encode(),
               None)
    installed = server.kvstore._updater.optimizer
    assert type(installed) is mx.optimizer.Adam and installed.beta1 == 0.5
    assert installed.lr == 0.005 and not capsys.readouterr().err


@pytest.mark.cli
def test_no_pickle_from_the_network_reaches_a_real_server(tmp_path):
    """A raw MXNet worker sends a planted pickle to a live scheduler + server on loopback."""
    from conftest import ROOT
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    marker = tmp_path / 'pwned'
    env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(port),
               DMLC_NUM_SERVER='1', DMLC_NUM_WORKER='1', DMLC_INTERFACE='lo',
               DMLC_NODE_HOST='127.0.0.1')
    server_py = os.path.join(ROOT, 'gluon_dcgan', 'dist', 'server.py')
    roles = [subprocess.Popen([sys.executable, server_py], env=dict(env, DMLC_ROLE=role),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for role in ('scheduler', 'server')]
    attacker = (f'import mxnet as mx, os, pickle\n'
                f'class P:\n'
                f'    def __reduce__(self): return (os.system, ("touch {marker}",))\n'
                f'kv = mx.kv.create("dist_sync")\n'
                f'kv._send_command_to_servers(0, pickle.dumps(P(), 0).decode())\n'
                f'print("sent")\n')
    try:
        worker = subprocess.run([sys.executable, '-c', attacker], env=dict(env, DMLC_ROLE='worker'),
                                capture_output=True, text=True, timeout=120)
        assert 'sent' in worker.stdout, worker.stderr[-2000:]
        server_err = roles[1].communicate(timeout=60)[1]
    finally:
        for proc in roles:
            proc.kill()
            proc.wait()
    assert not marker.exists()
    assert 'parameter server 0 refused a message (not a gluon_dcgan message)' in server_err
