"""Checkpoints: one folder holds everything needed to continue a run, as data only.

Layout of checkpoints/ckpt-E{epoch:04d}-B{batch:06d}/ (epoch = last complete
epoch, batch = batches already done of the next one):
    net_G.params, net_D.params        both networks (with BatchNorm statistics)
    ema_G.params                      with --ema: the average of net_G's weights
    adam_G.params, adam_D.params      both Adam states: moments as MXNet arrays
    adam_G.json, adam_D.json          and their step counters; for dist_sync, whose
                                      Adam states live on the parameter servers:
    server-R.params, server-R.json    each server's Adam state, written by the
                                      servers themselves (dist/server.py)
    fixed_noise.npy                   the noise behind samples/epoch_NNN.png
    state.json                        epoch, batch, config, history, partial sums
    manifest.json                     SHA-256 of every file above; written last
Nothing in a checkpoint is pickled, so loading one runs no code (see the
README's Security note). A checkpoint is written under a temporary name,
fsynced, then renamed, so a crash leaves the old checkpoint or the new one,
never half of one. A damaged checkpoint is set aside as damaged-ckpt-..., never
deleted, and does not count among the KEEP newest. Other names than checkpoint_name's
(a user's ckpt-E0001-B000000.bak) are no checkpoints: never resumed from, pruned or set aside.
"""
import dataclasses
import json
import os
import re
import shutil

import numpy as onp

from ..config import MAX_EPOCHS, Config
from ..errors import UserError, first_line
from ..files import (Damaged, file_digest, fsync_path, load_npy, read_json, remove_leftovers,
                     temporary_folder)
from . import optimizer_state, shapes
from ..dist.server import load_server_states, save_server_states

KEEP = 2  # the newest intact checkpoints kept; older ones are removed
TMP_PREFIX = '.tmp-ckpt-'
NETS = ('net_G.params', 'net_D.params')
EMA = 'ema_G.params'  # only in the checkpoints of a run with --ema
ADAM = ('adam_G.params', 'adam_G.json', 'adam_D.params', 'adam_D.json')
FILES = NETS + ADAM + ('fixed_noise.npy', 'state.json')
FIXED_SAMPLES = 21  # rows of fixed_noise.npy: the 3x7 grid of samples/epoch_NNN.png
_NAME, _DIGITS = re.compile(r'ckpt-E([0-9]+)-B([0-9]+)'), re.compile('[0-9]+').fullmatch
# state.json's 'partial' (EpochSums.partial in loop.py); old versions wrote only the first five.
PARTIAL = {'batch', 'sum_D', 'sum_G', 'examples', 'seconds'}
PARTIAL_D = {'D_examples', 'sum_D_x', 'sum_D_G_z', 'sum_D_G_z2'}
_intact = set()  # checkpoints this process wrote or verified: no need to hash them again
# Bounds on what a checkpoint's files are read into memory with (a file over one is damaged):
# its small JSON files, and state.json, whose history holds a row (about 250 bytes) an epoch.
SMALL_JSON = 1 << 20
STATE_JSON = SMALL_JSON + 512 * MAX_EPOCHS


def checkpoint_name(epoch, batch):
    """ckpt-E0001-B000000: at least 4 and 6 digits; wider numbers just grow the name."""
    return f'ckpt-E{epoch:04d}-B{batch:06d}'


def parse_name(name):
    """(epoch, batch) of a checkpoint folder name, or None if save() would not write that name."""
    match = _NAME.fullmatch(name)
    if not match:
        return None
    position = int(match[1]), int(match[2])
    return position if checkpoint_name(*position) == name else None


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
        if gan.net_G_ema is not None:
            gan.net_G_ema.save_parameters(os.path.join(tmp, EMA))
        optimizer_state.save(gan.trainer_G, gan.net_G, os.path.join(tmp, 'adam_G'))
        optimizer_state.save(gan.trainer_D, gan.net_D, os.path.join(tmp, 'adam_D'))
        servers = []
        if optimizer_state.on_servers(gan.trainer_D):
            servers = save_server_states(gan.trainer_D._kvstore_params['kvstore'], tmp)
        onp.save(os.path.join(tmp, 'fixed_noise.npy'), fixed_noise)
        with open(os.path.join(tmp, 'state.json'), 'w') as f:
            json.dump(state, f)
        names = [n for n in FILES + (EMA,) if os.path.exists(os.path.join(tmp, n))] + servers
        manifest = {name: file_digest(os.path.join(tmp, name)) for name in names}
        with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
        for name in names + ['manifest.json']:
            fsync_path(os.path.join(tmp, name))
        if os.path.lexists(final):  # the same position saved again (e.g. SIGINT at an epoch end)
            if verify(final) is None:  # intact: this process wrote or verified it
                shutil.rmtree(final)
            else:  # a damaged one (resumed past with a warning) is kept for the user
                set_aside(final)
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
            _intact.discard(path)
        elif verify(path) is None:
            kept += 1
        else:
            set_aside(path)


def set_aside(path):
    """Move a damaged checkpoint to damaged-ckpt-... (-2, -3, ... if taken); returns that path."""
    parent, name = os.path.split(path)
    target, copies = os.path.join(parent, 'damaged-' + name), 1
    while os.path.lexists(target):  # one set aside before: keep it too
        copies += 1
        target = os.path.join(parent, f'damaged-{name}-{copies}')
    os.replace(path, target)
    return target


def list_checkpoints(folder):
    """Checkpoint folder names (checkpoint_name's only), oldest first by (epoch, batch)."""
    if not os.path.isdir(folder):
        return []
    found = ((parse_name(n), n) for n in os.listdir(folder))
    return [n for position, n in sorted((p, n) for p, n in found if p is not None)
            if os.path.isdir(os.path.join(folder, n))]


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value):
    """A whole number >= 0 (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _config_problem(config):
    """Why a checkpoint's config cannot be a run's Config (a field of the wrong type), or None."""
    if not isinstance(config, dict):
        return 'its config is not a mapping'
    for field in dataclasses.fields(Config):
        value, kind = config.get(field.name), field.type
        if field.name not in config or value is None and field.default is None or \
                not isinstance(kind, type):
            continue
        if not (_number(value) if kind is float else isinstance(value, kind) and
                not (kind is int and isinstance(value, bool))):
            return f'its config has {field.name} = {repr(value)[:40]}'
    cfg = Config.from_dict(config)
    return 'its config has a size below 1' if min(cfg.latent_dim, cfg.batch_size,
                                                  cfg.limit or 1) < 1 else None


def _position_problem(state, cfg):
    """Why epoch, batch and the half-done epoch's sums are not a training position, or None."""
    epoch, batch, partial = state['epoch'], state['batch'], state['partial']
    if not (_count(epoch) and epoch <= MAX_EPOCHS and _count(batch)):
        return f'epoch {repr(epoch)[:20]}, batch {repr(batch)[:20]} is no training position'
    sizes = [n for n in (cfg.limit, state.get('images')) if _count(n)]  # images: the run's count
    if batch and sizes and batch * cfg.batch_size >= min(sizes):
        return f'batch {batch} is past the end of an epoch of at most {min(sizes)} images'
    if partial is None:
        return 'the half-done epoch has no loss sums' if batch else None
    if not (batch and isinstance(partial, dict) and PARTIAL <= set(partial) <= PARTIAL | PARTIAL_D
            and all(_number(v) for v in partial.values()) and partial['batch'] == batch and
            _count(partial['examples']) and partial['examples'] > 0 and partial['seconds'] > 0
            and _count(partial.get('D_examples', 0))):
        return 'the loss sums of the half-done epoch are malformed'
    return None


def _history_problem(history, epoch):
    """Why `history` is not one row of numbers for each of the `epoch` epochs done, or None."""
    if not isinstance(history, list) or len(history) != epoch:
        return f'its history does not hold the {epoch} epoch(s) done'
    for number, row in enumerate(history, 1):
        if not (isinstance(row, dict) and {'epoch', 'loss_D', 'loss_G', 'examples_per_sec'} <=
                set(row) and all(_number(v) for v in row.values()) and row['epoch'] == number
                and _count(row['epoch'])):
            return f'its history row {number} is malformed'
    return None


def state_problem(state):
    """Why a state.json's content cannot be resumed from (types, ranges), or None."""
    if not isinstance(state, dict) or not {'epoch', 'batch', 'config', 'history',
                                           'partial'} <= set(state):
        return 'state.json lacks the training position'
    problem = _config_problem(state['config']) or _position_problem(
        state, Config.from_dict(state['config'])) or _history_problem(state['history'],
                                                                      state['epoch'])
    return f'state.json: {problem}' if problem else None


def _servers_problem(path, manifest):
    """Why a dist_sync server's counters (server-R.json, read by the servers) are malformed."""
    def counts(d):  # {the text of a whole number: a whole number}
        return isinstance(d, dict) and all(_DIGITS(k) and _count(n) for k, n in d.items())
    for name in (n for n in manifest if re.fullmatch(r'server-[0-9]+\.json', n)):
        info = read_json(os.path.join(path, name), SMALL_JSON)
        if not (isinstance(info, dict) and _count(info.get('num_update')) and counts(
                info.get('layout')) and isinstance(info.get('update_counts'), dict) and all(
                _DIGITS(d) and counts(c) for d, c in info['update_counts'].items())):
            return f'{name} is malformed'
    return None


def _readable(path, manifest):
    """None if every file of the checkpoint parses as the data it should be, else why not."""
    import mxnet as mx
    try:
        nets = {name: mx.nd.load(os.path.join(path, name))
                for name in NETS + (EMA,) if name in NETS or name in manifest}
        adams = {prefix: optimizer_state.read(os.path.join(path, prefix))
                 for prefix in ('adam_G', 'adam_D') if prefix + '.json' in manifest}
        state = load_state(path)
        why = _servers_problem(path, manifest) or state_problem(state)
        if why:
            return why
        if parse_name(os.path.basename(path)) not in (None, (state['epoch'], state['batch'])):
            return 'state.json is of another position than its folder name'  # a renamed copy
        cfg = Config.from_dict(state['config'])
        read_fixed_noise(path, cfg.latent_dim)
        return shapes.problem(cfg, nets, adams)
    except (ValueError, OSError, EOFError, RecursionError, MemoryError,
            mx.base.MXNetError) as exc:  # Damaged is a ValueError
        return _reason(exc, path)


def _reason(exc, path):
    """The first line of `exc`, naming the checkpoint's files without its path (the warning
    names the checkpoint), so that the reason itself fits the line."""
    text = str(exc).replace(os.path.join(path, ''), '')
    return first_line(ValueError(text)) if text.strip() else type(exc).__name__


def read_fixed_noise(path, latent_dim):
    """The (FIXED_SAMPLES, latent_dim, 1, 1) float32 fixed_noise.npy of the checkpoint `path`.

    Read only if its header declares at most that many bytes (one declaring 2**40 floats
    is refused before anything is allocated); raises Damaged for any other file.
    """
    shape, file = (FIXED_SAMPLES, latent_dim, 1, 1), os.path.join(path, 'fixed_noise.npy')
    why = f'fixed_noise.npy is not finite float32 noise of shape {shape}'
    try:
        noise = load_npy(file, 4 * FIXED_SAMPLES * latent_dim)
    except Damaged as exc:
        raise Damaged(f'{why}: {str(exc).replace(file, "it")}') from None
    if noise.dtype != onp.float32 or noise.shape != shape or not onp.isfinite(noise).all():
        raise Damaged(why)
    return noise


def verify(path):
    """None if the checkpoint at `path` is complete, intact and readable, else what is wrong."""
    if path in _intact:
        return None
    try:
        manifest = read_json(os.path.join(path, 'manifest.json'), SMALL_JSON)
        if not isinstance(manifest, dict):
            raise ValueError
    except (OSError, ValueError):  # Damaged too: not a regular file, too large or deep
        return 'manifest.json is missing or unreadable'
    paired = set(ADAM) & set(manifest)
    required = [n for n in FILES if n not in ADAM] + sorted(paired) + sorted(
        n for n in manifest if n.startswith('server-') or n == EMA)
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
    """The state.json of a checkpoint (epoch, batch, config, history, partial sums).

    Raises Damaged for a file that is not bounded JSON (verify has said so before).
    """
    return read_json(os.path.join(path, 'state.json'), STATE_JSON)


def load(path, gan):
    """Restore the nets and Adam states of `gan` in place from a checkpoint.

    Returns (fixed_noise, state)."""
    import mxnet as mx
    try:
        gan.net_G.load_parameters(os.path.join(path, 'net_G.params'), ctx=gan.ctxs)
        gan.net_D.load_parameters(os.path.join(path, 'net_D.params'), ctx=gan.ctxs)
        if gan.net_G_ema is not None:  # a run that turns --ema on starts from net_G's weights
            ema = os.path.join(path, EMA if os.path.exists(os.path.join(path, EMA))
                               else 'net_G.params')
            gan.net_G_ema.load_parameters(ema, ctx=gan.ctxs[0])
    except (AssertionError, mx.base.MXNetError) as exc:  # shapes or names that do not fit
        raise UserError(f'the networks in {path} do not fit this model ({first_line(exc)}): '
                        f'resume with the flags the run was started with')
    if os.path.exists(os.path.join(path, 'adam_G.json')):
        optimizer_state.load(gan.trainer_G, gan.net_G, os.path.join(path, 'adam_G'))
        optimizer_state.load(gan.trainer_D, gan.net_D, os.path.join(path, 'adam_D'))
    elif optimizer_state.on_servers(gan.trainer_D) and \
            os.path.exists(os.path.join(path, 'server-0.json')):
        load_server_states(gan.trainer_D._kvstore_params['kvstore'], path)
    try:  # verified before: only a file changed since then fails here
        state = load_state(path)
        return read_fixed_noise(path, gan.cfg.latent_dim), state  # resume checked they agree
    except (OSError, Damaged) as exc:
        raise UserError(f'{path} changed while it was read ({first_line(exc)}): run again')
