"""Scale-out on CPU: two contexts in one process and in the CLI (dist_sync clusters:
test_launch.py; resuming on two contexts: test_resume.py)."""
import json
import os
import re
import signal
import subprocess
import sys

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, np

from conftest import FINAL_LINE, ROOT, run_cli
from gluon_dcgan import model
from gluon_dcgan.train import checkpoint, optimizer_state, steps


def _nets(ctxs, seed=3):
    mx.random.seed(seed)
    net_G, net_D = model.net_G(n_G=8), model.net_D(n_D=8)
    steps.initialize(net_G, net_D, ctxs)
    net_D(net_G(np.zeros((1, 100, 1, 1), ctx=ctxs[0])))
    return net_G, net_D


@pytest.mark.unit
def test_two_contexts_keep_identical_parameters():
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net_G, net_D = _nets(ctxs)
    steps.hybridize(net_G, net_D)
    trainer_G, trainer_D = steps.make_trainers(net_G, net_D, 0.005, 0.5, kvstore='local')
    loss = steps.make_loss()
    rng = onp.random.RandomState(0)
    for _ in range(3):
        X = np.array(rng.uniform(-1, 1, (16, 3, 64, 64)).astype('float32'))
        Z = np.array(rng.normal(size=(16, 100, 1, 1)).astype('float32'))
        Xs = gluon.utils.split_and_load(X, ctxs)
        Zs = gluon.utils.split_and_load(Z, ctxs)
        _, fake = steps.update_D(Xs, Zs, net_D, net_G, loss, trainer_D, 16)
        steps.update_G(fake, net_D, loss, trainer_G, 16)
    for net in (net_G, net_D):
        for p in net.collect_params().values():
            if p.grad_req == 'null':
                continue  # BatchNorm statistics stay per device, as in Gluon
            a, b = (d.asnumpy() for d in p.list_data())
            assert onp.array_equal(a, b), p.name


@pytest.mark.unit
def test_summed_gradients_match_one_context():
    """Per-example gradient terms add up across devices.

    BatchNorm is in inference mode, so each example's forward pass is independent,
    and the weight checked is the last Conv2D's: its gradient involves no BatchNorm
    backward (oneDNN's BatchNorm backward uses batch statistics even then).
    """
    rng = onp.random.RandomState(1)
    X = rng.uniform(-1, 1, (8, 3, 64, 64)).astype('float32')
    loss = steps.make_loss()
    grads = []
    for ctxs in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        _, net_D = _nets(ctxs)
        Xs = gluon.utils.split_and_load(np.array(X), ctxs)
        with autograd.record(train_mode=False):
            losses = [loss(net_D(x), np.ones((x.shape[0],), ctx=x.ctx)) for x in Xs]
        autograd.backward(losses)
        weight = net_D[-1].weight
        grads.append(sum(g.asnumpy() for g in weight.list_grad()))
    assert onp.abs(grads[0]).max() > 0
    assert onp.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def _trained_gan(num_devices):
    """A GAN on `num_devices` CPU contexts after one epoch of 32 sprites (two batches)."""
    from gluon_dcgan.config import Config
    from gluon_dcgan.data.synthetic import make_sprites
    from gluon_dcgan.train.loop import GAN, new_state, train
    cfg = Config(data='synthetic', batch_size=16, n_G=8, n_D=8, progress=False, epochs=1)
    gan = GAN(cfg, [mx.cpu(i) for i in range(num_devices)],
              kvstore='local' if num_devices > 1 else None)
    train(gan, make_sprites(32), 1, new_state())
    return gan


def _moments(trainer, net, updater=0):
    """{structural name: (mean, var)} of Adam in one of `trainer`'s updaters, as numpy."""
    states = optimizer_state._updaters(trainer)[updater].states
    return {name: tuple(s.asnumpy() for s in states[i])
            for name, i in optimizer_state._indices(trainer, net).items() if i in states}


@pytest.mark.unit
@pytest.mark.parametrize('first, then', [(2, 1), (1, 2)])
def test_adam_moments_move_between_one_and_two_devices(tmp_path, first, then):
    gan = _trained_gan(first)
    kvstores = (gan.trainer_G._kvstore, gan.trainer_D._kvstore)
    saved = {net: _moments(trainer, getattr(gan, net)) for net, trainer in
             (('net_G', gan.trainer_G), ('net_D', gan.trainer_D))}
    # The epoch end's BatchNorm average kept the Trainers' kvstores, and Adam's moments in them.
    assert (gan.trainer_G._kvstore, gan.trainer_D._kvstore) == kvstores
    for net, moments in saved.items():
        trainable = [p for p in getattr(gan, net).collect_params().values()
                     if p.grad_req != 'null']
        assert len(moments) == len(trainable) > 0, net
    path = checkpoint.save(str(tmp_path), gan, onp.zeros((21, 100, 1, 1), 'float32'),
                           {'epoch': 1, 'batch': 0})
    other = _trained_gan(then)  # trained on its own: the load must replace its moments
    checkpoint.load(path, other)
    for net, trainer in (('net_G', other.trainer_G), ('net_D', other.trainer_D)):
        for updater in range(len(optimizer_state._updaters(trainer))):
            loaded = _moments(trainer, getattr(other, net), updater)
            assert loaded.keys() == saved[net].keys()
            for name, (mean, var) in saved[net].items():
                assert onp.array_equal(loaded[name][0], mean) and \
                    onp.array_equal(loaded[name][1], var), (net, name)


@pytest.mark.unit
def test_per_device_adam_moments_agree_and_are_loaded_on_every_device(tmp_path, monkeypatch):
    """Updates on the devices (MXNET_UPDATE_ON_KVSTORE=0, or a parameter over 16 M
    values with the local kvstore): one updater per device, saved from the first."""
    monkeypatch.setenv('MXNET_UPDATE_ON_KVSTORE', '0')
    gan = _trained_gan(2)
    assert not gan.trainer_G._update_on_kvstore and len(gan.trainer_G._updaters) == 2
    first, second = (_moments(gan.trainer_G, gan.net_G, i) for i in (0, 1))
    assert first and first.keys() == second.keys()
    for name in first:
        assert all(onp.array_equal(a, b) for a, b in zip(first[name], second[name])), name
    path = checkpoint.save(str(tmp_path), gan, onp.zeros((21, 100, 1, 1), 'float32'),
                           {'epoch': 1, 'batch': 0})
    other = _trained_gan(2)
    checkpoint.load(path, other)
    for i in (0, 1):
        loaded = _moments(other.trainer_G, other.net_G, i)
        assert all(onp.array_equal(loaded[n][0], first[n][0]) for n in first)
    # A one-device checkpoint counted its steps on device 0 only: device 1 must get the
    # counts too, or its Adam restarts its bias correction and its weights part from device 0's.
    from gluon_dcgan.data.synthetic import make_sprites
    from gluon_dcgan.train.loop import new_state, train
    path = checkpoint.save(str(tmp_path / 'one'), _trained_gan(1),
                           onp.zeros((21, 100, 1, 1), 'float32'), {'epoch': 1, 'batch': 0})
    checkpoint.load(path, other)
    train(other, make_sprites(32), 2, new_state(epoch=1))
    for p in other.net_G.collect_params().values():
        if p.grad_req != 'null':
            a, b = (d.asnumpy() for d in p.list_data())
            assert onp.array_equal(a, b), p.name


@pytest.mark.slow
def test_dist_sync_workers_with_two_devices_each_finish_and_checkpoint(tmp_path):
    """The epoch end's BatchNorm average must not reset the dist kvstore (MXNet refuses)."""
    out = tmp_path / 'D'
    cmd = [sys.executable, '-m', 'gluon_dcgan.launch', '--workers', '2', '--servers', '1', '--',
           'python', 'run.py', '--data', 'synthetic', '--kvstore', 'dist_sync', '--epochs', '1',
           '--limit', '64', '--batch-size', '16', '--n-G', '8', '--n-D', '8', '--ctx', 'cpu:0,1',
           '--no-progress', '--out-dir', str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # its own session: the launcher, its servers and workers
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    assert proc.returncode == 0 and 'Traceback' not in stderr, stderr[-3000:]
    finals = [l.split('] ', 1)[1] for l in stdout.splitlines() if 'examples/sec on' in l]
    assert len(finals) == 2 and all(FINAL_LINE.match(l) and l.endswith('[cpu(0), cpu(1)]')
                                    for l in finals), stdout
    digests = set(re.findall(r'generator weights sha256 ([0-9a-f]{12})$', stderr, re.M))
    assert len(digests) == 1, stderr[-3000:]  # both workers end with the same weights
    assert (out / 'checkpoints' / 'ckpt-E0001-B000000' / 'server-0.params').exists()


@pytest.mark.unit
def test_every_device_holds_the_same_batchnorm_statistics_after_an_epoch():
    import mxnet as mx
    from gluon_dcgan.config import Config
    from gluon_dcgan.data.synthetic import make_sprites
    from gluon_dcgan.train.loop import GAN, new_state, train
    cfg = Config(data='synthetic', batch_size=16, n_G=8, n_D=8, progress=False, epochs=1)
    gan = GAN(cfg, [mx.cpu(0), mx.cpu(1)], kvstore='local')
    train(gan, make_sprites(32), 1, new_state())
    stats = [p for net in (gan.net_G, gan.net_D)
             for p in net.collect_params().values() if p.grad_req == 'null']
    assert stats
    for p in stats:
        a, b = (d.asnumpy() for d in p.list_data())
        assert onp.array_equal(a, b), p.name
        assert not onp.array_equal(a, onp.zeros_like(a)) or 'mean' not in p.name


@pytest.mark.slow
def test_two_devices_agree_and_the_export_is_verified(tmp_path):
    out = tmp_path / 'd'
    proc = run_cli(['--data', 'synthetic', '--ctx', 'cpu:0,1', '--epochs', '1', '--limit', '128',
                    '--batch-size', '64', '--no-progress', '--out-dir', str(out)])
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert FINAL_LINE.match(last) and last.endswith('on [cpu(0), cpu(1)]'), last
    manifest = json.loads((out / 'export' / 'manifest.json').read_text())
    assert (out / 'export' / 'generator.onnx').exists()
    assert manifest['onnx']['verified_max_abs_diff'] <= 1e-4
