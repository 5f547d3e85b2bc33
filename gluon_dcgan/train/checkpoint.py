"""Checkpoints: one folder holds everything needed to continue a run.

Layout of checkpoints/ckpt-E{epoch:04d}-B{batch:06d}/ (epoch = last complete
epoch, batch = batches already done of the next one):
    net_G.params, net_D.params        both networks (with BatchNorm statistics)
    trainer_G.states, trainer_D.states both Adam states (Trainer.save_states); absent
                                      for dist_sync, whose Adam states live on the servers
    fixed_noise.npy                   the noise behind samples/epoch_NNN.png
    state.json                        epoch, batch, config, history, partial sums
    manifest.json                     SHA-256 of every file above; written last
A checkpoint is written under a temporary name, fsynced, then renamed, so a
crash leaves either the old checkpoint or the new one, never half of one.
"""
import json
import os
import shutil
import uuid

import numpy as onp

from ..files import file_digest
from .dist_server import load_server_states, save_server_states  # h2-launch (#14)

KEEP = 2  # the newest complete checkpoints kept; older ones are removed
FILES = ('net_G.params', 'net_D.params', 'trainer_G.states', 'trainer_D.states',
         'fixed_noise.npy', 'state.json')
TRAINER_FILES = ('trainer_G.states', 'trainer_D.states')


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _states_on_servers(trainer):
    """dist_sync keeps Adam's states on the parameter servers, where Gluon cannot save them."""
    kv = trainer._kvstore_params.get('kvstore')
    return kv is not None and not isinstance(kv, str) and 'dist' in kv.type


def checkpoint_name(epoch, batch):
    """Names sort in training order."""
    return f'ckpt-E{epoch:04d}-B{batch:06d}'


def save(folder, net_G, net_D, trainer_G, trainer_D, fixed_noise, state):
    """Write a checkpoint atomically; return its path. `state` must hold epoch and batch."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):  # left by a run killed while saving
        if name.startswith('.tmp-'):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    final = os.path.join(folder, checkpoint_name(state['epoch'], state['batch']))
    tmp = os.path.join(folder, f'.tmp-{uuid.uuid4().hex[:8]}')
    os.makedirs(tmp)
    net_G.save_parameters(os.path.join(tmp, 'net_G.params'))
    net_D.save_parameters(os.path.join(tmp, 'net_D.params'))
    server_files = []  # h2-launch (#14): dist_sync's Adam state, written by the servers
    if not _states_on_servers(trainer_G):
        trainer_G.save_states(os.path.join(tmp, 'trainer_G.states'))
        trainer_D.save_states(os.path.join(tmp, 'trainer_D.states'))
    else:  # h2-launch (#14)
        server_files = save_server_states(trainer_D._kvstore_params['kvstore'], tmp)
    onp.save(os.path.join(tmp, 'fixed_noise.npy'), fixed_noise)
    with open(os.path.join(tmp, 'state.json'), 'w') as f:
        json.dump(state, f)
    names = [n for n in FILES if os.path.exists(os.path.join(tmp, n))] + server_files
    manifest = {name: file_digest(os.path.join(tmp, name)) for name in names}
    with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    for name in names + ['manifest.json']:
        _fsync(os.path.join(tmp, name))
    if os.path.exists(final):  # the same position saved again (e.g. SIGINT at an epoch end)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(folder)
    for old in list_checkpoints(folder)[:-KEEP]:
        shutil.rmtree(os.path.join(folder, old), ignore_errors=True)
    return final


def list_checkpoints(folder):
    """Checkpoint folder names, oldest first (temporary folders excluded)."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.startswith('ckpt-'))


def verify(path):
    """None if the checkpoint at `path` is complete and intact, else what is wrong."""
    try:
        with open(os.path.join(path, 'manifest.json')) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return 'manifest.json is missing or unreadable'
    required = [n for n in FILES if n not in TRAINER_FILES or n in manifest]
    required += [n for n in manifest if n.startswith('server-')]  # h2-launch (#14)
    for name in required:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            return f'{name} is missing'
        if file_digest(file) != manifest.get(name):
            return f'{name} does not match its checksum'
    return None


def latest_valid(folder, warn):
    """Path of the newest intact checkpoint, warning about each damaged newer one."""
    for name in reversed(list_checkpoints(folder)):
        path = os.path.join(folder, name)
        problem = verify(path)
        if problem is None:
            return path
        warn(f'warning: checkpoint {path} is damaged ({problem}); trying an older one')
    return None


def load_state(path):
    """The state.json of a checkpoint (epoch, batch, config, history, partial sums)."""
    with open(os.path.join(path, 'state.json')) as f:
        return json.load(f)


def load(path, net_G, net_D, trainer_G, trainer_D, ctxs):
    """Restore nets and trainers in place from a checkpoint written by ``save``.

    Returns (fixed_noise, state)."""
    net_G.load_parameters(os.path.join(path, 'net_G.params'), ctx=ctxs)
    net_D.load_parameters(os.path.join(path, 'net_D.params'), ctx=ctxs)
    if os.path.exists(os.path.join(path, 'trainer_G.states')) and \
            not _states_on_servers(trainer_G):
        trainer_G.load_states(os.path.join(path, 'trainer_G.states'))
        trainer_D.load_states(os.path.join(path, 'trainer_D.states'))
    elif _states_on_servers(trainer_G) and \
            os.path.exists(os.path.join(path, 'server-0.json')):  # h2-launch (#14)
        load_server_states(trainer_D._kvstore_params['kvstore'], path)
    return onp.load(os.path.join(path, 'fixed_noise.npy')), load_state(path)
