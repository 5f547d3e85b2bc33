"""Checkpoints: one folder holds everything needed to continue a run, as data only.

Layout of checkpoints/ckpt-E{epoch:04d}-B{batch:06d}/ (epoch = last complete
epoch, batch = batches already done of the next one):
    net_G.params, net_D.params        both networks (with BatchNorm statistics)
    adam_G.params, adam_D.params      both Adam states: moments as MXNet arrays
    adam_G.json, adam_D.json          and their step counters; for dist_sync, whose
                                      Adam states live on the parameter servers:
    server-R.params, server-R.json    each server's Adam state, written by the
                                      servers themselves (train/dist_server.py)
    fixed_noise.npy                   the noise behind samples/epoch_NNN.png
    state.json                        epoch, batch, config, history, partial sums
    manifest.json                     SHA-256 of every file above; written last
Nothing in a checkpoint is pickled, so loading one runs no code (see the
README's Security note). A checkpoint is written under a temporary name,
fsynced, then renamed, so a crash leaves the old checkpoint or the new one,
never half of one. A damaged checkpoint is set aside as damaged-ckpt-..., never
deleted, and does not count among the KEEP newest.
"""
import json
import os
import shutil

import numpy as onp

from ..errors import UserError, first_line
from ..files import file_digest, fsync_path, remove_leftovers, temporary_folder
from . import optimizer_state
from .dist_server import load_server_states, save_server_states

KEEP = 2  # the newest intact checkpoints kept; older ones are removed
TMP_PREFIX = '.tmp-ckpt-'
NETS = ('net_G.params', 'net_D.params')
ADAM = ('adam_G.params', 'adam_G.json', 'adam_D.params', 'adam_D.json')
FILES = NETS + ADAM + ('fixed_noise.npy', 'state.json')
_intact = set()  # checkpoints this process wrote or verified: no need to hash them again


def checkpoint_name(epoch, batch):
    """Names sort in training order."""
    return f'ckpt-E{epoch:04d}-B{batch:06d}'


def save(folder, gan, fixed_noise, state):
    """Write a checkpoint of `gan` (nets + Adam) atomically; return its path.

    `state` must hold epoch and batch.
    """
    os.makedirs(folder, exist_ok=True)
    remove_leftovers(folder, TMP_PREFIX)  # left by a run killed while saving
    final = os.path.join(folder, checkpoint_name(state['epoch'], state['batch']))
    with temporary_folder(folder, TMP_PREFIX) as tmp:
        gan.net_G.save_parameters(os.path.join(tmp, 'net_G.params'))
        gan.net_D.save_parameters(os.path.join(tmp, 'net_D.params'))
        optimizer_state.save(gan.trainer_G, gan.net_G, os.path.join(tmp, 'adam_G'))
        optimizer_state.save(gan.trainer_D, gan.net_D, os.path.join(tmp, 'adam_D'))
        servers = []
        if optimizer_state.on_servers(gan.trainer_D):
            servers = save_server_states(gan.trainer_D._kvstore_params['kvstore'], tmp)
        onp.save(os.path.join(tmp, 'fixed_noise.npy'), fixed_noise)
        with open(os.path.join(tmp, 'state.json'), 'w') as f:
            json.dump(state, f)
        names = [n for n in FILES if os.path.exists(os.path.join(tmp, n))] + servers
        manifest = {name: file_digest(os.path.join(tmp, name)) for name in names}
        with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
        for name in names + ['manifest.json']:
            fsync_path(os.path.join(tmp, name))
        if os.path.exists(final):  # the same position saved again (e.g. SIGINT at an epoch end)
            shutil.rmtree(final)
        os.replace(tmp, final)
    fsync_path(folder)
    _intact.add(final)
    prune(folder)
    return final


def prune(folder):
    """Keep the KEEP newest intact checkpoints; set damaged ones aside; remove older ones."""
    kept = 0
    for name in reversed(list_checkpoints(folder)):
        path = os.path.join(folder, name)
        if kept == KEEP:
            shutil.rmtree(path, ignore_errors=True)
        elif verify(path) is None:
            kept += 1
        else:
            set_aside(path)


def set_aside(path):
    """Rename a damaged checkpoint to damaged-ckpt-...: out of the way, but not deleted."""
    parent, name = os.path.split(path)
    target = os.path.join(parent, 'damaged-' + name)
    if os.path.exists(target):
        shutil.rmtree(target)  # an older copy of the same damaged checkpoint, set aside by us
    os.replace(path, target)


def list_checkpoints(folder):
    """Checkpoint folder names, oldest first (temporary and damaged folders excluded)."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n.startswith('ckpt-'))


def _readable(path, manifest):
    """None if every file of the checkpoint parses as the data it should be, else why not."""
    import mxnet as mx
    try:
        for name in NETS:
            mx.nd.load(os.path.join(path, name))
        for prefix in ('adam_G', 'adam_D'):
            if prefix + '.json' in manifest:
                optimizer_state.read(os.path.join(path, prefix))
        noise = onp.load(os.path.join(path, 'fixed_noise.npy'))  # allow_pickle stays False
        if noise.dtype != onp.float32 or noise.ndim != 4:
            return 'fixed_noise.npy is not a float32 noise batch'
        state = load_state(path)
        if not isinstance(state, dict) or not {'epoch', 'batch', 'config', 'history'} <= set(state):
            return 'state.json lacks the training position'
    except (ValueError, OSError, mx.base.MXNetError) as exc:
        return first_line(exc)
    return None


def verify(path):
    """None if the checkpoint at `path` is complete, intact and readable, else what is wrong."""
    if path in _intact:
        return None
    try:
        with open(os.path.join(path, 'manifest.json')) as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict):
            raise ValueError
    except (OSError, ValueError):
        return 'manifest.json is missing or unreadable'
    paired = set(ADAM) & set(manifest)
    required = [n for n in FILES if n not in ADAM] + sorted(paired) + sorted(
        n for n in manifest if n.startswith('server-'))
    if paired and paired != set(ADAM):
        return 'the Adam state is incomplete'
    for name in required:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            return f'{name} is missing'
        if file_digest(file) != manifest.get(name):
            return f'{name} does not match its checksum'
    problem = _readable(path, manifest)
    if problem is None:
        _intact.add(path)
    return problem


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


def load(path, gan):
    """Restore the nets and Adam states of `gan` in place from a checkpoint.

    Returns (fixed_noise, state)."""
    import mxnet as mx
    try:
        gan.net_G.load_parameters(os.path.join(path, 'net_G.params'), ctx=gan.ctxs)
        gan.net_D.load_parameters(os.path.join(path, 'net_D.params'), ctx=gan.ctxs)
    except (AssertionError, mx.base.MXNetError) as exc:  # shapes or names that do not fit
        raise UserError(f'the networks in {path} do not fit this model ({first_line(exc)}): '
                        f'resume with the flags the run was started with')
    if os.path.exists(os.path.join(path, 'adam_G.json')):
        optimizer_state.load(gan.trainer_G, gan.net_G, os.path.join(path, 'adam_G'))
        optimizer_state.load(gan.trainer_D, gan.net_D, os.path.join(path, 'adam_D'))
    elif optimizer_state.on_servers(gan.trainer_D) and \
            os.path.exists(os.path.join(path, 'server-0.json')):
        load_server_states(gan.trainer_D._kvstore_params['kvstore'], path)
    return onp.load(os.path.join(path, 'fixed_noise.npy')), load_state(path)
