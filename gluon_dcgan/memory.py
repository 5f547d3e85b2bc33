"""What this machine's memory can hold: a rough peak of training, and what is free.

Checked before anything is written, so nets or batches too large for the machine
are refused in one line instead of ending in the kernel's out-of-memory kill. The
estimate reads the layers of the chapter's nets (model.py), so it needs MXNet loaded.
"""
from .errors import UserError
from .runtime import parse_ctx_spec

# Copies of each activation a training step keeps: the output, its gradient, and the
# BatchNorm/activation buffers kept for the backward pass (the estimate for the default
# nets at batch 256 is 1.7 GB; their measured peak RSS, data and MXNet included, 2.2 GB).
_ACTIVATION_COPIES = 4


def _layers(net, channels, side):
    """(in channels, out channels, kernel, output side, has BatchNorm) of each layer of a
    chapter net (model.py) for square inputs of `side`, read from the layers themselves."""
    from mxnet.gluon import nn
    from .model import convolutions
    layers = []
    for layer, conv in zip(net, convolutions(net)):
        (k, _), (s, _), (p, _) = (conv._kwargs[n] for n in ('kernel', 'stride', 'pad'))
        side = ((side - 1) * s - 2 * p + k if isinstance(conv, nn.Conv2DTranspose)
                else (side + 2 * p - k) // s + 1)
        has_norm = getattr(layer, 'batch_norm', None) is not None
        layers.append((channels, conv._channels, k, side, has_norm))
        channels = conv._channels
    return layers


def _nets(n_G, n_D, latent_dim, channels):
    import mxnet as mx
    from .model import net_D, net_G  # built, not initialised: nothing is allocated
    # Names of their own: Gluon numbers blocks process-wide, and the run's nets must get
    # the names they always had (the export's generator-0000.params is keyed by them).
    with mx.name.NameManager():
        return (_layers(net_G(n_G, channels), latent_dim, 1),
                _layers(net_D(n_D), channels, 64))


def parameter_counts(n_G, n_D, latent_dim, channels):
    """(net_G, net_D) trainable parameters, as model.count_parameters counts them.

    No convolution has a bias; each BatchNorm adds gamma and beta.
    """
    return tuple(sum(c_in * c_out * k * k + 2 * c_out * bn for c_in, c_out, k, _, bn in net)
                 for net in _nets(n_G, n_D, latent_dim, channels))


def activation_values(n_G, n_D, channels, latent_dim=100):
    """Values of all layer outputs for one example: net_G once, net_D on a real and a fake."""
    g, d = (sum(c_out * side * side for _, c_out, _, side, _ in net)
            for net in _nets(n_G, n_D, latent_dim, channels))
    return g + 2 * d


def training_memory_bytes(n_G, n_D, latent_dim, channels, batch_size, devices=1):
    """A rough peak memory of training, in bytes.

    Per device: float32 weights, gradients and Adam's two moments of both nets (16 bytes
    a parameter); plus the activations of one batch, kept _ACTIVATION_COPIES times.
    """
    params = sum(parameter_counts(n_G, n_D, latent_dim, channels))
    return (16 * params * devices
            + 4 * _ACTIVATION_COPIES * activation_values(n_G, n_D, channels, latent_dim)
            * batch_size)


def _read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def available_memory_bytes():
    """Memory this process may still use: MemAvailable, lowered by a cgroup v2 limit.

    None where neither can be read (not Linux): the caller then skips its check.
    """
    found = []
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # 'max' (no limit) fails int() and is skipped
        found.append(_read_int('/sys/fs/cgroup/memory.max')
                     - _read_int('/sys/fs/cgroup/memory.current'))
    except (OSError, ValueError, IndexError):
        pass
    return min(found) if found else None


def check_training_memory(n_G, n_D, latent_dim, channels, batch_size, ctx):
    """Refuse nets and batches whose training would not fit in the available memory."""
    kind, ids = parse_ctx_spec(ctx)
    available = available_memory_bytes()
    # Not Linux: no cheap, reliable figure. On a GPU the limit is the card's, not the host's.
    if available is None or kind == 'gpu':
        return
    need = training_memory_bytes(n_G, n_D, latent_dim, channels, batch_size, max(1, len(ids)))
    if need > available:
        raise UserError(f'--n-G {n_G} --n-D {n_D} --latent-dim {latent_dim} --batch-size '
                        f'{batch_size} need about {need / 2**30:.1f} GiB to train, but only '
                        f'{available / 2**30:.1f} GiB of memory is free: lower them')
