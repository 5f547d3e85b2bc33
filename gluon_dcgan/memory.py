"""What this machine's memory can hold: a rough peak of training, and what is free.

Checked before anything is written, so nets or batches too large for the machine
are refused in one line instead of ending in the kernel's out-of-memory kill.
"""
from .errors import UserError
from .runtime import parse_ctx_spec

# net_G's G_block widths are n_G times these (model.MULTIPLIERS); net_D mirrors them.
_MULTIPLIERS = (8, 4, 2, 1)
# Copies of each activation a training step keeps: the output, its gradient, and the
# BatchNorm/activation buffers kept for the backward pass (the estimate for the default
# nets at batch 256 is 1.7 GB; their measured peak RSS, data and MXNet included, 2.2 GB).
_ACTIVATION_COPIES = 4


def parameter_counts(n_G, n_D, latent_dim, channels):
    """(net_G, net_D) trainable parameters, as model.count_parameters counts them.

    Every convolution is 4x4 without bias; each BatchNorm adds gamma and beta.
    """
    g = [n_G * m for m in _MULTIPLIERS]                 # 8n, 4n, 2n, n
    d = [n_D * m for m in reversed(_MULTIPLIERS)]       # n, 2n, 4n, 8n
    conv_G = [latent_dim] + g + [channels]
    conv_D = [channels] + d + [1]
    count = lambda widths: sum(16 * a * b for a, b in zip(widths, widths[1:]))
    return count(conv_G) + 2 * sum(g), count(conv_D) + 2 * sum(d)


def activation_values(n_G, n_D, channels):
    """Values of all layer outputs for one example: net_G once, net_D on a real and a fake."""
    sides = (4, 8, 16, 32)
    g = sum(n_G * m * s * s for m, s in zip(_MULTIPLIERS, sides)) + channels * 64 * 64
    d = sum(n_D * m * s * s for m, s in zip(reversed(_MULTIPLIERS), reversed(sides))) + 1
    return g + 2 * d


def training_memory_bytes(n_G, n_D, latent_dim, channels, batch_size, devices=1):
    """A rough peak memory of training, in bytes.

    Per device: float32 weights, gradients and Adam's two moments of both nets (16 bytes
    a parameter); plus the activations of one batch, kept _ACTIVATION_COPIES times.
    """
    params = sum(parameter_counts(n_G, n_D, latent_dim, channels))
    return (16 * params * devices
            + 4 * _ACTIVATION_COPIES * activation_values(n_G, n_D, channels) * batch_size)


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
