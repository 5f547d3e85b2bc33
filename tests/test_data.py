"""Component: the embedded dataset, image folders, batches and their value range."""
import os

import numpy as onp
import pytest
from mxnet import np

from gluon_dcgan.config import Config
from gluon_dcgan.data import folder, load_images, loader
from gluon_dcgan.data.synthetic import make_sprites, write_image_folder
from gluon_dcgan.errors import UserError


def test_synthetic_is_deterministic_and_sprite_like():
    a, b, c = make_sprites(16, seed=1), make_sprites(16, seed=1), make_sprites(16, seed=2)
    assert a.shape == (16, 64, 64, 3) and a.dtype == onp.uint8
    assert (a == b).all() and (a != c).any()
    assert (a[:, 0, 0] > 200).all()                       # light background
    assert (a[:, :, :32] == a[:, :, ::-1][:, :, :32]).all()  # left-right symmetric


def test_batches_are_normalised_into_minus_one_one():
    images = make_sprites(8)
    X = loader.normalize(np.array(images, dtype='uint8')).asnumpy()
    assert X.shape == (8, 3, 64, 64) and X.dtype == onp.float32
    assert X.min() >= -1 and X.max() <= 1
    assert X.min() < -0.5 and X.max() > 0.9  # uses the range, not a constant
    expected = (images.transpose(0, 3, 1, 2) / 255 - 0.5) / 0.5  # ToTensor + Normalize
    assert onp.abs(X - expected).max() < 1e-6


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = loader.shard_order(100, seed=3, epoch=2)
    assert (a == loader.shard_order(100, seed=3, epoch=2)).all()
    assert (a != loader.shard_order(100, seed=3, epoch=3)).any()
    assert sorted(a) == list(range(100))


def test_shards_are_equal_and_disjoint():
    parts = [loader.shard_order(101, 0, 1, rank=r, num_workers=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 50
    assert not set(parts[0]) & set(parts[1])


def test_last_batch_is_kept_like_the_chapter():
    slices = loader.batch_slices(onp.arange(70), 32)
    assert [len(s) for s in slices] == [32, 32, 6]
    assert loader.num_batches(70, 32) == 3


def test_folder_decodes_like_the_chapter(tmp_path):
    images = make_sprites(12, seed=4)
    root = write_image_folder(images, str(tmp_path / 'imgs'))
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=4, num_workers=2)
    got = load_images(cfg, log=lambda m: None)
    assert got.shape == (12, 64, 64, 3)
    assert (got == images).all()  # PNG round trip, Resize(64) of a 64x64 image is exact
    assert os.listdir(tmp_path / 'cache' / 'decoded')  # decoded once, cached
    assert (load_images(cfg, log=lambda m: None) == images).all()


def test_top_level_images_are_read_as_one_class(tmp_path):
    from PIL import Image
    for i, img in enumerate(make_sprites(3)):
        Image.fromarray(img).save(tmp_path / f'{i}.png')
    items, note = folder.list_images(str(tmp_path))
    assert len(items) == 3 and 'one class' in note


def test_resize_to_64(tmp_path):
    from PIL import Image
    (tmp_path / 'c').mkdir()
    Image.fromarray(make_sprites(1)[0]).resize((96, 96)).save(tmp_path / 'c' / 'big.png')
    cfg = Config(data=str(tmp_path), data_root=str(tmp_path / 'cache'), batch_size=1)
    assert load_images(cfg, log=lambda m: None).shape == (1, 64, 64, 3)


def test_bad_images_are_listed_or_skipped(tmp_path):
    root = write_image_folder(make_sprites(5), str(tmp_path / 'imgs'))
    cls = os.path.join(root, 'sprites')
    with open(os.path.join(cls, '00001.png'), 'rb') as f:
        data = f.read()
    with open(os.path.join(cls, 'truncated.png'), 'wb') as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(cls, 'notanimage.jpg'), 'w') as f:
        f.write('<html>error</html>')
    cfg = Config(data=root, data_root=str(tmp_path / 'cache'), batch_size=2)
    with pytest.raises(UserError) as err:
        load_images(cfg, log=lambda m: None)
    assert '2 unreadable' in str(err.value) and 'truncated.png' in str(err.value)
    assert '--skip-bad-images' in str(err.value)
    cfg.skip_bad_images = True
    logged = []
    assert load_images(cfg, log=logged.append).shape == (5, 64, 64, 3)
    assert 'skipping 2' in logged[0]


def test_batch_larger_than_dataset_is_refused():
    with pytest.raises(UserError, match='larger than the dataset'):
        load_images(Config(data='synthetic', limit=10, batch_size=11))
