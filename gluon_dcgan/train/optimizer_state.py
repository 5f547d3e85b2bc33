"""Adam's state saved as data: moments in an MXNet .params file, counters in JSON.

gluon.Trainer.save_states/load_states pickle the updater with the optimizer
inside it, so loading a states file can run code, and the loaded optimizer
replaces the new one (a resumed run kept its old --lr). Here only arrays and
numbers are stored, and they are put back into the Trainer's own updaters: the
learning rate and beta1 are always the ones the run was started with.

Files, for a checkpoint prefix P:
    P.params   'NAME.mean' and 'NAME.var' for each trainable parameter, NAME being
               its place in the net ('0.conv2d_trans.weight', as save_parameters
               names it), so the state fits any process that builds the same net
    P.json     step counters per device and the hyper-parameters (informative)
"""
import json
import re

import numpy as onp

from ..errors import UserError
from ..files import read_json

FORMAT = 'gluon_dcgan adam state v1'
# P.json holds a few counters per device and parameter: far less than this.
MAX_JSON_BYTES = 1 << 20


def _count(value):
    """A whole number >= 0 (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def on_servers(trainer):
    """True if Adam's state lives on dist_sync's parameter servers (saved by them, not here).

    Decided from the kvstore the Trainer was given, without initialising it: a
    dist Trainer must send its optimizer only at its first step, once that step
    has set the gradient scale.
    """
    kv = trainer._kvstore_params.get('kvstore')
    return kv is not None and not isinstance(kv, str) and 'dist' in kv.type


def _updaters(trainer):
    """The Updater objects that hold this Trainer's optimizer state on the workers."""
    if on_servers(trainer):
        return []
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return trainer._updaters


def _indices(trainer, net):
    """{structural parameter name: the Trainer's index} for the trainable parameters of `net`.

    The Trainer numbers parameters in the order of their global names, which
    depend on how many blocks the process built before; structural names do not.
    """
    return {name: trainer._param2idx[p.name]
            for name, p in net._collect_params_with_prefix().items() if p.grad_req != 'null'}


def save(trainer, net, prefix):
    """Write P.params and P.json for `trainer` of `net`; returns the files written.

    Writes nothing for dist_sync, whose state is on the servers.
    """
    import mxnet as mx
    updaters = _updaters(trainer)
    if not updaters:
        return []
    updater, opt = updaters[0], trainer._optimizer
    arrays = {}
    for name, index in _indices(trainer, net).items():
        if index in updater.states:  # created at a parameter's first step
            arrays[f'{name}.mean'], arrays[f'{name}.var'] = updater.states[index]
    mx.nd.save(prefix + '.params', arrays)
    names = {index: name for name, index in _indices(trainer, net).items()}
    meta = {'format': FORMAT, 'optimizer': type(opt).__name__.lower(),
            'num_update': opt.num_update,
            'update_counts': {str(dev): {names[i]: n for i, n in counts.items()}
                              for dev, counts in opt._all_index_update_counts.items()},
            'learning_rate': opt.learning_rate, 'beta1': opt.beta1, 'beta2': opt.beta2,
            'epsilon': opt.epsilon}
    with open(prefix + '.json', 'w') as f:
        json.dump(meta, f)
    return [prefix + '.params', prefix + '.json']


def read(prefix):
    """(arrays, meta) of a saved state, checked for the expected structure.

    Raises ValueError with a short reason if the files are not such a state (files.Damaged
    for a P.json that is not bounded JSON: too large, too deeply nested, not a regular file).
    """
    import mxnet as mx
    meta = read_json(prefix + '.json', MAX_JSON_BYTES)
    if not isinstance(meta, dict) or meta.get('format') != FORMAT:
        raise ValueError(f'{prefix}.json is not a {FORMAT!r} file')
    counts = meta.get('update_counts')
    # Device numbers (JSON keys are text) and step counts: whole numbers >= 0, as load needs.
    if not isinstance(counts, dict) or not _count(meta.get('num_update')) or not all(
            re.fullmatch('[0-9]+', dev) and isinstance(c, dict) and all(map(_count, c.values()))
            for dev, c in counts.items()):
        raise ValueError(f'{prefix}.json has malformed step counters')
    try:
        arrays = mx.nd.load(prefix + '.params')
    except (mx.base.MXNetError, MemoryError):  # e.g. a header declaring a huge array
        raise ValueError(f'{prefix}.params is not an MXNet array file') from None
    names = {n.rpartition('.')[0] for n in arrays} if isinstance(arrays, dict) else None
    # Adam keeps a float32 mean and var of one shape per parameter (weights stay float32).
    if names is None or set(arrays) != {f'{n}.{m}' for n in names for m in ('mean', 'var')} \
            or any(arrays[f'{n}.mean'].shape != arrays[f'{n}.var'].shape for n in names) \
            or any(a.dtype != onp.float32 for a in arrays.values()):
        raise ValueError(f'{prefix}.params does not hold Adam moments')
    return arrays, meta


def fits(arrays, meta, shapes):
    """True if a state read by ``read`` fits trainable parameters of `shapes` ({name: shape}).

    No moments at all (saved before the first step) fit any net; otherwise there are a
    mean and a var of each parameter's shape, and steps are counted for its names only.
    """
    counted = {name for counts in meta['update_counts'].values() for name in counts}
    moments = {f'{n}.{m}': tuple(shape) for n, shape in shapes.items() for m in ('mean', 'var')}
    return counted <= set(shapes) and (not arrays or set(arrays) == set(moments) and all(
        tuple(arrays[k].shape) == shape for k, shape in moments.items()))


def load(trainer, net, prefix):
    """Put a state saved by ``save`` into `trainer`'s updaters (on each one's device).

    A state that does not fit the net's trainable parameters raises UserError.
    """
    updaters = _updaters(trainer)
    if not updaters:
        return
    try:
        arrays, meta = read(prefix)
    except (OSError, ValueError) as exc:
        raise UserError(f'cannot read the optimizer state {prefix}.* ({exc})')
    indices = _indices(trainer, net)
    shapes = {name: trainer._params[i].shape for name, i in indices.items()}
    if not fits(arrays, meta, shapes):
        raise UserError(f'the optimizer state {prefix}.params does not fit the network: '
                        f'resume with the flags the run was started with')
    states = {indices[n]: (arrays[f'{n}.mean'], arrays[f'{n}.var']) for n in shapes if arrays}
    for updater in updaters:
        # Each device's updater gets its own copy on that device (synced lazily by MXNet).
        updater.states = {i: (m.copy(), v.copy()) for i, (m, v) in states.items()}
        updater.states_synced = dict.fromkeys(states, False)
    opt = trainer._optimizer
    opt.num_update = meta['num_update']
    # Step counts are kept per device (Adam's bias correction reads them). A run on other
    # devices updates a parameter where this one did not, so every device gets each
    # parameter's count: one missing would restart at 1, and the devices' weights part.
    merged = {}
    for counts in meta['update_counts'].values():
        for n, c in counts.items():
            merged[indices[n]] = max(c, merged.get(indices[n], 0))
    opt._all_index_update_counts = {dev: dict(merged) for dev in
                                    {0} | {ctx.device_id for ctx in trainer._contexts}}
    opt._index_update_count = opt._all_index_update_counts[0]
