"""Exercise 2: Fashion-MNIST through Gluon's real loader, and the category analysis."""
import gzip
import os
import struct

import numpy as onp
import pytest

from conftest import assert_one_line_error, run_cli

# Gluon checks each file against the official SHA-1 and re-downloads on a mismatch.
# The test's small files cannot match, so the download function is replaced by a
# local-only one, in this process and (via sitecustomize) in the CLI's.
PATCH = '''
import os
from mxnet.gluon.data.vision import datasets

def _local_only(url, path=None, overwrite=False, sha1_hash=None, **kwargs):
    fname = os.path.join(path, url.split('/')[-1])
    if not os.path.exists(fname):
        raise OSError(fname + ' is missing and the test has no network')
    return fname

datasets.download = _local_only
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
    (patch_dir / 'sitecustomize.py').write_text(PATCH)
    return data_root, {'PYTHONPATH': str(patch_dir)}


@pytest.mark.unit
def test_loader_reads_real_format_files(fashion_root, monkeypatch):
    from mxnet.gluon.data.vision import datasets
    data_root, _ = fashion_root
    namespace = {}
    exec(PATCH.replace('datasets.download = _local_only', ''), namespace)
    monkeypatch.setattr(datasets, 'download', namespace['_local_only'])
    from gluon_dcgan.data.fashion_mnist import load_fashion_mnist
    images, labels = load_fashion_mnist(str(data_root), train=True, size=64)
    assert images.shape == (200, 64, 64, 1) and images.dtype == onp.uint8
    assert list(labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # class 9's bar (rows 20-21 of 28) lands near rows 46-49 of 64
    assert images[9, 47, 32, 0] > 200 and images[0, 47, 32, 0] < 100


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
