"""Exercise 2: Fashion-MNIST through Gluon's real loader, and the category analysis."""
import gzip
import os
import struct

import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli

# Gluon checks each file against the official SHA-1 and re-downloads on a mismatch, and
# so does our bounded fetch before it (fashion_mnist.SPLIT_FILES). The test's small files
# cannot match, so the table is given their SHA-1s and gluon's download is replaced by a
# local-only one, in this process and (via sitecustomize) in the CLI's.
PATCH = '''
import hashlib
import os
from mxnet.gluon.data.vision import datasets
from gluon_dcgan.data import fashion_mnist

def _local_only(url, path=None, overwrite=False, sha1_hash=None, **kwargs):
    fname = os.path.join(path, url.split('/')[-1])
    if not os.path.exists(fname):
        raise OSError(fname + ' is missing and the test has no network')
    return fname

def _local_split_files(root):
    def sha1(name):
        with open(os.path.join(root, name), 'rb') as f:
            return hashlib.sha1(f.read()).hexdigest()
    return {train: tuple((name, sha1(name)) for name, _ in files)
            for train, files in fashion_mnist.SPLIT_FILES.items()}
'''
INSTALL = '''
datasets.download = _local_only
fashion_mnist.SPLIT_FILES = _local_split_files({root!r})
'''


def _write_idx(root, count, seed, prefix):
    """Real-format idx .gz files: class k draws a bar at row 2 + 2k, plus noise."""
    rng = onp.random.RandomState(seed)
    labels = onp.arange(count) % 10
    images = rng.randint(0, 40, size=(count, 28, 28)).astype(onp.uint8)
    for i, k in enumerate(labels):
        images[i, 2 + 2 * k:4 + 2 * k, 4:24] = 250
    with gzip.open(os.path.join(root, f'{prefix}-images-idx3-ubyte.gz'), 'wb') as f:
        f.write(struct.pack('>IIII', 2051, count, 28, 28) + images.tobytes())
    with gzip.open(os.path.join(root, f'{prefix}-labels-idx1-ubyte.gz'), 'wb') as f:
        f.write(struct.pack('>II', 2049, count) + labels.astype(onp.uint8).tobytes())
    return images, labels


@pytest.fixture(scope='module')
def fashion_root(tmp_path_factory):
    data_root = tmp_path_factory.mktemp('fashion')
    root = data_root / 'fashion-mnist'
    root.mkdir()
    _write_idx(str(root), 200, 0, 'train')
    _write_idx(str(root), 100, 1, 't10k')
    patch_dir = tmp_path_factory.mktemp('patch')
    (patch_dir / 'sitecustomize.py').write_text(PATCH + INSTALL.format(root=str(root)))
    return data_root, {'PYTHONPATH': str(patch_dir)}


@pytest.mark.unit
def test_loader_reads_real_format_files(fashion_root, monkeypatch):
    from mxnet.gluon.data.vision import datasets
    from gluon_dcgan.data import fashion_mnist
    data_root, _ = fashion_root
    namespace = {}
    exec(PATCH, namespace)
    monkeypatch.setattr(datasets, 'download', namespace['_local_only'])
    monkeypatch.setattr(fashion_mnist, 'SPLIT_FILES',
                        namespace['_local_split_files'](str(data_root / 'fashion-mnist')))
    from gluon_dcgan.data.fashion_mnist import load_fashion_mnist
    images, labels = load_fashion_mnist(str(data_root), train=True, size=64)
    assert images.shape == (200, 64, 64, 1) and images.dtype == onp.uint8
    assert list(labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # class 9's bar (rows 20-21 of 28) lands near rows 46-49 of 64
    assert images[9, 47, 32, 0] > 200 and images[0, 47, 32, 0] < 100


@pytest.mark.unit
def test_the_sha1s_checked_before_gluon_are_gluons_own(tmp_path, monkeypatch):
    from mxnet.gluon.data.vision import FashionMNIST, datasets
    from gluon_dcgan.data.fashion_mnist import SPLIT_FILES
    monkeypatch.setattr(datasets.MNIST, '_get_data', lambda self: None)  # no download
    ds = FashionMNIST(root=str(tmp_path))
    assert SPLIT_FILES == {True: (ds._train_data, ds._train_label),
                           False: (ds._test_data, ds._test_label)}


@pytest.mark.unit
def test_offline_fashion_mnist_is_one_line(tmp_path, main_in_process):
    proc = main_in_process(['--data', 'fashion-mnist', '--channels', '1', '--data-root',
                            str(tmp_path), '--out-dir', str(tmp_path / 'o'), '--epochs', '1'])
    assert_one_line_error(proc, contains='Fashion-MNIST')


@pytest.mark.unit
def test_damaged_fashion_mnist_files_are_named_as_such(tmp_path, main_in_process):
    root = tmp_path / 'fashion-mnist'
    root.mkdir()
    _write_idx(str(root), 20, 0, 'train')  # real format, but not the official SHA-1
    # Gluon then downloads them again: from a closed port on this machine.
    proc = main_in_process(['--data', 'fashion-mnist', '--channels', '1', '--data-root',
                            str(tmp_path), '--out-dir', str(tmp_path / 'o'), '--epochs', '1'],
                           env={'MXNET_GLUON_REPO': 'http://127.0.0.1:9/'})
    line = assert_one_line_error(proc, contains='Fashion-MNIST files in')
    assert 'are damaged (not the official files)' in line and 'replace them' in line


@pytest.mark.unit
def test_fashion_needs_one_channel(tmp_path, main_in_process):
    proc = main_in_process(['--data', 'fashion-mnist', '--out-dir', str(tmp_path / 'o')])
    assert_one_line_error(proc, contains='--channels 1')


@pytest.mark.slow
def test_train_and_analyze_categories(fashion_root, tmp_path):
    data_root, env = fashion_root
    out = tmp_path / 'fm'
    proc = run_cli(['--data', 'fashion-mnist', '--channels', '1', '--data-root', str(data_root),
                    '--epochs', '1', '--limit', '64', '--batch-size', '32', '--n-G', '16',
                    '--n-D', '16', '--ctx', 'cpu', '--no-progress', '--out-dir', str(out)],
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert 'Storage type fallback' not in proc.stderr  # 339 lines of it before
    assert (out / 'export' / 'manifest.json').exists()
    args = ['analyze-categories', '--run', str(out), '--num', '40', '--classifier-epochs', '20']
    first = run_cli(args, env=env)
    assert first.returncode == 0, first.stderr
    import re
    accuracy = re.search(r'classifier test accuracy: ([\d.]+)%', first.stdout)
    assert accuracy and float(accuracy.group(1)) > 80  # the bars are easy to tell apart
    table = [l for l in (out / 'categories.md').read_text().splitlines()
             if l.startswith('| ') and not l.startswith('| rank')]
    assert len(table) == 10
    shares = [float(l.split('|')[3].strip().rstrip('%')) for l in table]
    assert abs(sum(shares) - 100) < 0.5
    names = {l.split('|')[2].strip() for l in table}
    assert 'Ankle boot' in names and len(names) == 10
    assert 'Ranked by' in (out / 'categories.md').read_text()
    from PIL import Image
    assert Image.open(out / 'categories.png').size == (8 * 66 + 2, 10 * 66 + 2)
    second = run_cli(args, env=env)  # the classifier is cached by data checksum
    assert second.returncode == 0 and 'classifier epoch' not in second.stderr
    assert 'cached' in (out / 'categories.md').read_text()
    assert 'classifier epoch' in first.stderr


def _fashion_run_config(run, data_root):
    """A run folder holding only the config.json of a --data fashion-mnist run."""
    from gluon_dcgan.config import Config
    run.mkdir()
    (run / 'config.json').write_text(Config(data='fashion-mnist', channels=1,
                                            data_root=str(data_root)).to_json())


@pytest.mark.unit
def test_analyze_categories_refuses_a_table_of_the_users(tmp_path, main_in_process):
    run = tmp_path / 'run'
    _fashion_run_config(run, tmp_path / 'dr')
    (run / 'categories.md').write_text('my own table\n')
    # Offline for sure: were the file not checked first, the download would fail instead.
    proc = main_in_process(['analyze-categories', '--run', str(run)],
                           env={'MXNET_GLUON_REPO': 'http://127.0.0.1:9/'})
    line = assert_one_line_error(proc, contains='categories.md was not written by '
                                                'analyze-categories')
    assert '--overwrite' in line
    assert (run / 'categories.md').read_text() == 'my own table\n'
    assert not (tmp_path / 'dr').exists()  # refused before any download


def _tiny_split():
    images = onp.zeros((4, 64, 64, 1), onp.uint8)
    return images, onp.arange(4) % 10


@pytest.mark.unit
def test_a_cached_classifier_that_does_not_load_is_refused_and_kept(tmp_path):
    from gluon_dcgan.tools import classifier
    from gluon_dcgan.errors import UserError
    images, labels = _tiny_split()
    key = classifier.data_checksum(images, labels, 1)
    planted = tmp_path / f'fashion-classifier-{key}.params'
    planted.write_bytes(b'not MXNet weights at all')
    with pytest.raises(UserError) as err:
        classifier.cached_classifier(str(tmp_path), images, labels, 1, log=lambda m: None)
    assert 'is not a classifier gluon_dcgan saved' in str(err.value)
    assert '\n' not in str(err.value)
    assert planted.read_bytes() == b'not MXNet weights at all'


@pytest.mark.unit
def test_a_classifiers_path_that_is_a_file_is_refused_before_training(tmp_path):
    from gluon_dcgan.tools import classifier
    from gluon_dcgan.errors import UserError
    (tmp_path / 'classifiers').write_text('mine')
    logged = []
    with pytest.raises(UserError, match='is not a folder'):
        classifier.cached_classifier(str(tmp_path / 'classifiers'), *_tiny_split(), 1,
                                     log=logged.append)
    assert logged == []  # no epoch was trained
    assert (tmp_path / 'classifiers').read_text() == 'mine'
