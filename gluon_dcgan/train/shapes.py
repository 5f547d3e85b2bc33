"""Do a checkpoint's weights and Adam moments fit the model its own state.json describes?

A net_G.params from a run of another width, swapped into a checkpoint whose manifest
was re-hashed, passes every checksum; only its shapes give it away. Such a checkpoint
is damaged like a truncated one (checkpoint.verify), so a resume or an export moves on
to the next older intact checkpoint instead of failing on the first that does not load.
"""
import numpy as onp

from ..errors import first_line
from . import optimizer_state

_expected = {}  # (n_G, n_D, latent_dim, channels) -> the nets' parameters; shapes only


def _infer(net, shape):
    """{structural name: (shape, trainable)} of `net`'s parameters for an input of `shape`.

    Only shapes are inferred (no weights are allocated), in whichever array mode
    (numpy or legacy) MXNet is in, as the nets must be called in that mode.
    """
    import mxnet as mx
    zeros = mx.np.zeros if mx.util.is_np_array() else mx.nd.zeros
    net.infer_shape(zeros(shape))
    return {name: (tuple(p.shape), p.grad_req != 'null')
            for name, p in net._collect_params_with_prefix().items()}


def expected_parameters(cfg):
    """{'net_G.params': {name: (shape, trainable)}, 'net_D.params': ...} of `cfg`'s nets.

    The float32 nets: the bfloat16 ones have the same parameters (model.py).
    """
    import mxnet as mx
    from ..model import net_D, net_G
    key = (cfg.n_G, cfg.n_D, cfg.latent_dim, cfg.channels, cfg.d_input_norm)
    # Names of their own: Gluon numbers blocks process-wide (conv0, conv1, ...), and the
    # run's nets, built after a resume's check, must get the names they always had (the
    # export's generator-0000.params is keyed by them).
    with mx.name.NameManager():
        if key not in _expected:
            _expected[key] = {
                'net_G.params': _infer(net_G(cfg.n_G, cfg.channels),
                                       (1, cfg.latent_dim, 1, 1)),
                'net_D.params': _infer(net_D(cfg.n_D, input_norm=cfg.d_input_batch_norm),
                                       (1, cfg.channels, 64, 64))}
    return _expected[key]


def _net_problem(name, arrays, expected):
    """Why the arrays of a saved net are not the parameters `expected`, or None."""
    if not isinstance(arrays, dict) or set(arrays) != set(expected):
        return f'{name} holds other parameters than the model of its state.json'
    for key, (shape, _) in expected.items():
        if tuple(arrays[key].shape) != shape or onp.dtype(arrays[key].dtype) != onp.float32:
            return (f'{name} does not fit the model of its state.json: {key} is '
                    f'{onp.dtype(arrays[key].dtype)} {tuple(arrays[key].shape)}, not '
                    f'float32 {shape}')[:190]
        # A run stops before it saves a diverged state, so these were put there by hand.
        if not onp.isfinite(arrays[key].asnumpy()).all():
            return f'{name} holds values that are not finite, in {key}'[:190]
    return None


def problem(cfg, nets, adams):
    """Why a checkpoint's files do not fit the model of `cfg` (from its state.json), or None.

    `nets`: {'net_G.params': loaded arrays, ...}; `adams`: {'adam_G': (arrays, meta), ...}
    as optimizer_state.read returns them (absent for dist_sync checkpoints).
    """
    try:
        expected = expected_parameters(cfg)
    except Exception as exc:  # MXNetError, ValueError: sizes no net can be built with
        return f'its state.json describes no network that can be built ({first_line(exc)})'[:190]
    for name, arrays in nets.items():
        # ema_G.params (--ema) holds the average of net_G's weights: net_G's parameters
        why = _net_problem(name, arrays, expected.get(name, expected['net_G.params']))
        if why:
            return why
    for prefix, (arrays, meta) in adams.items():
        trainable = {key: shape for key, (shape, train) in
                     expected[f'net_{prefix[-1]}.params'].items() if train}
        if not optimizer_state.fits(arrays, meta, trainable):
            return f'{prefix}.params does not fit the model of its state.json'
    return None
