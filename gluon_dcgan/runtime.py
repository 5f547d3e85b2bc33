"""Process set-up and device contexts: threads, importing MXNet, numpy semantics and
--ctx parsing (what this machine's memory can hold is in memory.py).

MXNet 1.9 reserves a core for its engine thread, so on a 2-core machine
oneDNN runs on one OpenMP thread; setting OMP_NUM_THREADS to the usable core
count before MXNet loads doubles the training speed there (see README).
"""
import contextlib
import io
import os
import sys

from .errors import UserError, first_line

# MXNet 1.9.1 wheels carry kernels for sm_50..sm_86 only (Ada 8.9 runs sm_86 code).
MAX_COMPUTE_CAPABILITY = 89
MAX_DEVICE_ID = 1023  # a --ctx id above this is a typo: MXNet fails on ids past a C int


def usable_cores():
    """Cores this process may run on (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# What mxnet-cu112 links against, in load order; the nvidia-*-cu11 wheels ship them.
CUDA_LIBRARIES = ('libcudart.so.11.0', 'libnvToolsExt.so.1', 'libcublasLt.so.11',
                  'libcublas.so.11', 'libcudnn.so.8', 'libnccl.so.2', 'libnvrtc.so.11.2',
                  'libcufft.so.10', 'libcurand.so.10', 'libcusolver.so.11')


def preload_cuda_libraries():
    """Load the CUDA 11 libraries of the nvidia-*-cu11 wheels before MXNet's GPU build.

    Those wheels put the libraries in site-packages/nvidia/*/lib, which the
    dynamic loader does not search; once loaded by name, libmxnet.so finds them.
    Does nothing for the CPU build or when the wheels are absent.
    """
    import ctypes
    import glob
    import importlib.metadata as md
    import site
    names = {d.metadata['Name'].lower() for d in md.distributions()}
    if not names & {'mxnet-cu112', 'mxnet-cu117'}:
        return
    roots = site.getsitepackages() + [site.getusersitepackages()]
    found = {}
    for root in roots:
        for path in glob.glob(os.path.join(root, 'nvidia', '*', 'lib', 'lib*.so*')):
            found.setdefault(os.path.basename(path), path)
    for name in CUDA_LIBRARIES:
        if name in found:
            ctypes.CDLL(found[name], mode=ctypes.RTLD_GLOBAL)


def configure_process():
    """Before importing mxnet: oneDNN gets every usable core (unless the user chose),
    and a GPU build gets its CUDA libraries."""
    os.environ.setdefault('OMP_NUM_THREADS', str(usable_cores()))
    preload_cuda_libraries()


ENGINES = ('ThreadedEnginePerDevice', 'ThreadedEngine', 'NaiveEngine')
# Counts MXNet reads as one int each: 0 or a huge count crashes or hangs it (OMP_NUM_THREADS=
# 100000 segfaults, MXNET_CPU_TEMP_COPY=0 dies of SIGFPE), so each must be in 1..MAX_THREADS.
COUNT_VARIABLES = ('OMP_NUM_THREADS', 'MXNET_CPU_WORKER_NTHREADS', 'MXNET_CPU_PRIORITY_NTHREADS',
                   'MXNET_GPU_WORKER_NTHREADS', 'MXNET_OMP_MAX_THREADS', 'MXNET_CPU_TEMP_COPY',
                   'MXNET_GPU_TEMP_COPY', 'MXNET_CPU_PARALLEL_RAND_COPY',
                   'MXNET_GPU_PARALLEL_RAND_COPY')
MAX_THREADS = 1024  # far above any core count; MXNet aborts or segfaults at 100000
# dmlc::GetEnv's bool: these spellings, any case; an empty value counts as unset.
BOOLEANS = ('0', '1', 'true', 'false', '')


def _count_problem(name, value):
    """Why `value` is no count of threads or copies for `name`, or None."""
    digits = value.strip()
    # ASCII only: str.isdigit also takes '٢', which MXNet cannot read.
    if not (digits.isascii() and digits.isdigit()):
        return (f'{name}={value!r} is not a whole number: set it to one number such as 1 '
                f'(no lists), or unset it')
    if not 1 <= int(digits) <= MAX_THREADS:
        return f'{name}={value!r} is out of range: set it to 1..{MAX_THREADS}, or unset it'
    return None


def check_environment():
    """Refuse settings MXNet would die or hang on, before it is imported.

    MXNet aborts in C++ on OMP_NUM_THREADS=abc or 2,1, hangs on MXNET_CPU_WORKER_NTHREADS=-1,
    aborts on MXNET_MKLDNN_ENABLED=abc, and an unknown MXNET_ENGINE_TYPE surfaces later as a
    misleading error.
    """
    for name in COUNT_VARIABLES:
        value = os.environ.get(name)
        problem = None if value is None else _count_problem(name, value)
        if problem:
            raise UserError(problem)
    onednn = os.environ.get('MXNET_MKLDNN_ENABLED')
    if onednn is not None and onednn.lower() not in BOOLEANS:
        raise UserError(f'MXNET_MKLDNN_ENABLED={onednn!r} is not a boolean MXNet reads: set it '
                        f'to 0 or 1 (or true/false), or unset it')
    engine = os.environ.get('MXNET_ENGINE_TYPE')
    if engine is not None and engine not in ENGINES:
        raise UserError(f'MXNET_ENGINE_TYPE={engine!r} is not an MXNet engine: use one of '
                        f'{", ".join(ENGINES)}, or unset it')


def avoid_onednn_single_channel_bug(channels):
    """Turn oneDNN off for 1-channel images; call before importing mxnet.

    MXNet 1.9.1's oneDNN backward of a Conv2DTranspose with one output channel
    (net_G's last layer when --channels 1) fails with 'could not create a
    primitive descriptor for a reorder primitive'. MXNet's own kernels are
    correct, about 1.5x slower here.
    """
    if channels == 1 and not os.environ.get('MXNET_MKLDNN_ENABLED'):  # '' is unset to MXNet
        os.environ['MXNET_MKLDNN_ENABLED'] = '0'
        # Without oneDNN, MXNet logs a many-line "Storage type fallback detected" block
        # for each such operator (126 of them, 339 lines, in one short run): said once here.
        os.environ.setdefault('MXNET_STORAGE_FALLBACK_LOG_VERBOSE', '0')


def onednn_enabled(channels):
    """Whether MXNet will use oneDNN: MXNET_MKLDNN_ENABLED, else on unless `channels` is 1
    (avoid_onednn_single_channel_bug turns it off then)."""
    value = os.environ.get('MXNET_MKLDNN_ENABLED', '')
    if not value:
        return channels != 1
    return value.lower() in ('1', 'true')


NO_DRIVER = ('the GPU build of MXNet needs the NVIDIA driver (libcuda.so.1), which this machine '
             'lacks: install the driver, or run `make setup` for the CPU build')


NO_MXNET = ("MXNet is not installed: pip install 'gluon-dcgan[cpu]' (or 'gluon-dcgan[gpu]' "
            "for CUDA 11.2), or run make setup")


def import_mxnet():
    """``import mxnet``, with a one-line UserError when its shared library cannot load.

    Every command path imports MXNet first through here (``use_np`` calls it). The GPU
    build raises OSError for a missing libcuda.so.1 on a machine without the driver.
    """
    try:
        import mxnet
    except ModuleNotFoundError as exc:
        if exc.name != 'mxnet':
            raise
        raise UserError(NO_MXNET) from None
    except OSError as exc:
        if 'libcuda' in str(exc):
            raise UserError(NO_DRIVER)
        raise UserError(f'MXNet cannot load ({first_line(exc, 200)}): reinstall it with '
                        f'`make setup`')
    return mxnet


def cpu_supports_bf16(cpuinfo='/proc/cpuinfo'):
    """True when the CPU flags (Linux /proc/cpuinfo) include avx512_bf16."""
    try:
        with open(cpuinfo) as f:
            return any(line.startswith('flags') and 'avx512_bf16' in line.split() for line in f)
    except OSError:
        return False


def bf16_problem(ctx_kind, cpuinfo='/proc/cpuinfo', channels=3):
    """Why --dtype bfloat16 cannot run on devices of `ctx_kind` ('cpu', 'gpu', 'auto') for
    `channels`-channel images, or None."""
    if ctx_kind == 'gpu':
        return ('--dtype bfloat16 runs on the CPU only (oneDNN); on a GPU use --dtype float32, '
                'or train on the CPU with --ctx cpu')
    if not onednn_enabled(channels):  # MXNet's own kernels have no bf16 ('type enum 12')
        why = ('MXNET_MKLDNN_ENABLED turns it off' if os.environ.get('MXNET_MKLDNN_ENABLED')
               else '--channels 1 turns it off, as MXNet 1.9.1\'s oneDNN fails on 1-channel '
                    'images')
        return (f'--dtype bfloat16 needs oneDNN, and {why}: use --dtype float32')
    if not cpu_supports_bf16(cpuinfo):
        return ('--dtype bfloat16 needs a CPU with avx512_bf16 (see the flags in /proc/cpuinfo), '
                'and this one has none; use --dtype float32')
    return None


def use_np():
    """Import MXNet and switch it to the chapter's numpy semantics (``npx.set_np()``)."""
    import_mxnet()
    from mxnet import npx
    npx.set_np()


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what C libraries write to file descriptor 2 to /dev/null, for the block.

    libpng and libjpeg print 'libpng error: ...' lines of their own for the files the
    image check rejects; the check reports those files in its one line. Python's
    sys.stderr keeps writing to the real stderr, so log lines and the SIGTERM
    message still show.
    """
    try:
        sys.stderr.flush()
        python_uses_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        python_uses_fd2 = False  # e.g. under pytest's capture
    try:
        saved, python_stderr = os.dup(2), sys.stderr
    except OSError:  # descriptor 2 is closed: nothing reaches the terminal anyway
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        if python_uses_fd2:
            sys.stderr = open(saved, 'w', buffering=1, encoding=python_stderr.encoding,
                              errors='backslashreplace', closefd=False)
        yield
    finally:
        if sys.stderr is not python_stderr:
            sys.stderr.flush()
            sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def parse_ctx_spec(spec):
    """Parse --ctx text into (kind, ids) without touching MXNet.

    'auto' -> ('auto', []); 'cpu' -> ('cpu', [0]); 'gpu' -> ('gpu', [0]);
    'gpu:1' -> ('gpu', [1]); 'cpu:0,1' -> ('cpu', [0, 1]).
    """
    text = spec.strip().lower()
    if text == 'auto':
        return 'auto', []
    kind, colon, ids = text.partition(':')
    if kind not in ('cpu', 'gpu'):
        raise UserError(f"unknown --ctx {spec!r}: use auto, cpu, gpu, gpu:N or a list "
                        f"such as gpu:0,1 or cpu:0,1")
    if not colon:
        return kind, [0]
    parts = [i.strip() for i in ids.split(',')]
    # ASCII digits only: int() also takes '1_0', '+1' and '٢'; MXNet's ids are C ints.
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(f"bad device list in --ctx {spec!r}: give numbers, e.g. {kind}:0,1")
    numbers = [int(p) for p in parts]
    if any(n > MAX_DEVICE_ID for n in numbers) or len(set(numbers)) != len(numbers):
        raise UserError(f"bad device list in --ctx {spec!r}: ids must be distinct and in "
                        f"0..{MAX_DEVICE_ID}")
    return kind, numbers


def _gpu_problem(device_id):
    """Why MXNet cannot use GPU `device_id`, or None if it can."""
    import mxnet as mx
    from mxnet.runtime import Features
    if not Features().is_enabled('CUDA'):
        return ('this MXNet build has no CUDA support; install the GPU build '
                '(make setup-gpu, see README) or use --ctx cpu')
    count = mx.context.num_gpus()
    if count == 0:
        return 'no GPU is visible to MXNet; use --ctx cpu'
    if device_id >= count:
        return f'gpu({device_id}) does not exist: MXNet sees {count} GPU(s); use gpu:0..{count - 1}'
    try:
        cc = mx.util.get_cuda_compute_capability(mx.gpu(device_id))
    except (OSError, RuntimeError) as exc:
        return f'cannot query gpu({device_id}): {exc}; use --ctx cpu'
    if cc > MAX_COMPUTE_CAPABILITY:
        return (f'gpu({device_id}) has compute capability {cc // 10}.{cc % 10}, but MXNet 1.9.1 '
                f'wheels carry kernels only for 5.0-8.9 (no Hopper/9.0+ code); '
                f'use --ctx cpu or an older GPU')
    return None


def resolve_contexts(spec):
    """Turn --ctx into a list of mx.Context, or raise a one-line UserError."""
    import mxnet as mx
    kind, ids = parse_ctx_spec(spec)
    if kind == 'auto':
        return [mx.gpu(0)] if _gpu_problem(0) is None else [mx.cpu(0)]
    if kind == 'cpu':
        return [mx.cpu(i) for i in ids]
    for i in ids:
        problem = _gpu_problem(i)
        if problem:
            raise UserError(f'--ctx {spec}: {problem}')
    return [mx.gpu(i) for i in ids]


def describe_contexts(ctxs):
    """'gpu(0)' for one device, '[gpu(0), gpu(1)]' for several, as the final line prints."""
    return str(ctxs[0]) if len(ctxs) == 1 else '[' + ', '.join(str(c) for c in ctxs) + ']'
