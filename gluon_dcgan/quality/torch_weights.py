"""PyTorch state dicts (.pth) read as numpy arrays, without torch and without running the file.

torch.save pickles a state dict, and a plain pickle.load imports and calls whatever
globals the file names (os.system included). This reader unpickles with a find_class
that knows only the globals a state dict of tensors uses, each mapped onto a stand-in
defined here; any other name is refused with a Damaged (a ValueError) saying the file
is not a plain weight file. Nothing the file names is imported or called.

Two layouts are read:
- legacy (torch < 1.6; EfficientNet-Lite0's file of 2020 is one): pickles one after
  another (magic number, protocol version, system info, the state dict, the storage
  keys), then each storage's bytes after its element count (a little-endian int64);
- zip (torch >= 1.6): ARCHIVE/data.pkl holds the state dict and ARCHIVE/data/KEY each
  storage's bytes, stored uncompressed.
Reads are bounded: the file is read whole under a size limit; each storage's length is
checked against the bytes there before it is sliced; a tensor may view its storage but
never reach outside it; and the arrays built together stay under the limit.
"""
import collections
import io
import math
import pickle  # for the restricted Unpickler below only (tests/test_checkpoint.py allows it here)
import zipfile

import numpy as onp

from ..files import Damaged, read_bounded

MAX_BYTES = 256 << 20  # EfficientNet-Lite0's file is 18.8 MB
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # torch.serialization's MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
LEGACY_START = b'\x80\x02\x8a\x0a'  # pickle protocol 2, then the magic number's 10 bytes
ZIP_START = b'PK\x03\x04'
# torch.<Name>Storage -> the dtype of its bytes: torch writes them little-endian (the
# legacy header says so, and it is checked). numpy has no bfloat16: refused.
STORAGE_DTYPES = {'DoubleStorage': '<f8', 'FloatStorage': '<f4', 'HalfStorage': '<f2',
                  'LongStorage': '<i8', 'IntStorage': '<i4', 'ShortStorage': '<i2',
                  'CharStorage': 'i1', 'ByteStorage': 'u1', 'BoolStorage': '?'}
# What the unpickler may raise on bytes that are not a pickle (or not a state dict's).
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                 AttributeError, IndexError, OverflowError, MemoryError, RecursionError)

_StorageType = collections.namedtuple('_StorageType', 'name dtype')
_Storage = collections.namedtuple('_Storage', 'key dtype numel')
_Tensor = collections.namedtuple('_Tensor', 'storage offset size stride')


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # Only recorded: in a legacy file the storages' bytes come after the state dict.
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


def _not_weights(path, why):
    return Damaged(f'{path} is not a plain weight file: {why}')


class _StateDictUnpickler(pickle.Unpickler):
    """An Unpickler that knows a state dict's globals only, and records its storages."""

    def __init__(self, stream, path):
        super().__init__(stream)
        self.path = path
        self.storages = {}  # key -> _Storage
        # Fresh callables for each load: the pickle's BUILD opcode can set attributes on
        # the objects find_class hands out, and must not reach this module's functions.
        self.allowed = {('collections', 'OrderedDict'): collections.OrderedDict,
                        ('torch._utils', '_rebuild_tensor_v2'):
                            lambda *args: _rebuild_tensor_v2(*args),
                        ('torch._utils', '_rebuild_parameter'):
                            lambda *args: _rebuild_parameter(*args)}
        self.allowed.update({('torch', name): _StorageType(name, onp.dtype(dtype))
                             for name, dtype in STORAGE_DTYPES.items()})

    def find_class(self, module, name):
        found = self.allowed.get((module, name))
        if found is None:
            raise _not_weights(self.path, f'its pickle names {str(module)[:60]}.'
                                          f'{str(name)[:60]}, which a state dict never needs')
        return found

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel); legacy files add a sixth item, the
        # storage it is a view of, which torch stopped writing in 0.4.
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and type(pid[2]) is str
                and type(pid[4]) is int and pid[4] >= 0 and pid[5:] in ((), (None,))):
            raise _not_weights(self.path, 'it refers to an object that is not a tensor storage')
        storage = _Storage(pid[2], pid[1].dtype, pid[4])
        if self.storages.setdefault(storage.key, storage) != storage:
            raise _not_weights(self.path, f'storage {storage.key[:40]!r} is declared twice')
        return storage


def _unpickle(unpickler, what):
    try:
        return unpickler.load()
    except Damaged:
        raise
    except _PARSE_ERRORS as exc:
        raise _not_weights(unpickler.path, f'{what} does not unpickle '
                                           f'({type(exc).__name__})') from None


def _read_legacy(data, path):
    """(state dict of _Tensor, {key: 1-d array}) of a legacy torch file's bytes."""
    stream = io.BytesIO(data)
    magic, protocol, info = (_unpickle(_StateDictUnpickler(stream, path), 'the header')
                             for _ in range(3))
    if (magic, protocol) != (LEGACY_MAGIC, LEGACY_PROTOCOL) or not isinstance(info, dict) \
            or info.get('little_endian') is not True:
        raise _not_weights(path, 'its legacy header is not torch\'s, little-endian')
    unpickler = _StateDictUnpickler(stream, path)
    state = _unpickle(unpickler, 'the state dict')
    keys = _unpickle(_StateDictUnpickler(stream, path), 'the list of storages')
    if not (type(keys) is list and all(type(k) is str for k in keys)
            and len(set(keys)) == len(keys) and set(keys) == set(unpickler.storages)):
        raise _not_weights(path, 'its list of storages is not the state dict\'s')
    arrays, offset = {}, stream.tell()
    for key in keys:
        storage = unpickler.storages[key]
        end = offset + 8 + storage.numel * storage.dtype.itemsize
        count = int.from_bytes(data[offset:offset + 8], 'little', signed=True)
        if end > len(data) or count != storage.numel:
            raise _not_weights(path, f'storage {key[:40]!r} does not hold the '
                                     f'{storage.numel} elements it declares')
        arrays[key] = onp.frombuffer(data, storage.dtype, storage.numel, offset + 8)
        offset = end
    if offset != len(data):
        raise _not_weights(path, f'{len(data) - offset} bytes follow its last storage')
    return state, arrays


def _member(archive, info, path, limit):
    # torch stores members uncompressed: a member is then no larger than the file read.
    if info.compress_type != zipfile.ZIP_STORED or info.file_size > limit:
        raise _not_weights(path, f'{info.filename[:80]!r} is compressed or too large')
    return archive.read(info)


def _read_zip(data, path, limit):
    """(state dict of _Tensor, {key: 1-d array}) of a torch zip archive's bytes."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    members = {info.filename: info for info in archive.infolist()}
    pickles = [name for name in members
               if name.endswith('/data.pkl') and name.count('/') == 1]
    if len(pickles) != 1:
        raise _not_weights(path, 'it holds no single ARCHIVE/data.pkl')
    prefix = pickles[0][:-len('data.pkl')]
    byteorder = members.get(f'{prefix}byteorder')  # torch >= 2.1 says; older ones wrote 'little'
    if byteorder is not None and _member(archive, byteorder, path, 16) != b'little':
        raise _not_weights(path, 'its storages are not little-endian')
    unpickler = _StateDictUnpickler(
        io.BytesIO(_member(archive, members[pickles[0]], path, limit)), path)
    state = _unpickle(unpickler, 'data.pkl')
    arrays = {}
    for key, storage in unpickler.storages.items():
        info = members.get(f'{prefix}data/{key}')
        if info is None or info.file_size != storage.numel * storage.dtype.itemsize:
            raise _not_weights(path, f'storage {key[:40]!r} is missing or not '
                                     f'{storage.numel} elements long')
        arrays[key] = onp.frombuffer(_member(archive, info, path, limit), storage.dtype)
    return state, arrays


def _array(tensor, storages, path, name):
    """A copy of what `tensor` views of its storage, in native byte order."""
    def counts(values):
        return type(values) is tuple and all(type(v) is int and v >= 0 for v in values)
    if not (isinstance(tensor, _Tensor) and isinstance(tensor.storage, _Storage)
            and type(tensor.offset) is int and tensor.offset >= 0 and counts(tensor.size)
            and counts(tensor.stride) and len(tensor.size) == len(tensor.stride)):
        raise _not_weights(path, f'{name[:80]!r} is not a tensor')
    storage = storages[tensor.storage.key]
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if math.prod(tensor.size) and (last >= len(storage)
                                   or math.prod(tensor.size) > len(storage)):
        raise _not_weights(path, f'tensor {name[:80]!r} reaches outside its storage')
    view = onp.lib.stride_tricks.as_strided(
        storage[tensor.offset:], tensor.size, [s * storage.itemsize for s in tensor.stride])
    return view.astype(storage.dtype.newbyteorder('='))  # astype copies


def read_state_dict(path, limit=MAX_BYTES):
    """{name: numpy array} of the PyTorch state dict saved in `path` (torch.save of a
    module's state_dict(), legacy or zip layout), without torch and running nothing.

    Raises Damaged (a ValueError) for a file over `limit` bytes, or anything but a
    plain dict of tensors; OSError as open() does.
    """
    data = read_bounded(path, limit)
    try:
        if data.startswith(ZIP_START):
            state, storages = _read_zip(data, path, limit)
        elif data.startswith(LEGACY_START):
            state, storages = _read_legacy(data, path)
        else:
            raise _not_weights(path, 'it is neither a torch zip archive nor a legacy torch file')
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise _not_weights(path, f'its zip archive is damaged ({type(exc).__name__})') from None
    if not isinstance(state, dict) or not all(type(name) is str for name in state):
        raise _not_weights(path, 'it holds no dict of named tensors')
    arrays, total = collections.OrderedDict(), 0
    for name, tensor in state.items():
        arrays[name] = _array(tensor, storages, path, name)
        total += arrays[name].nbytes
        if total > limit:  # tensors that share a storage are each copied
            raise _not_weights(path, f'its tensors add up to more than {limit} bytes')
    return arrays
