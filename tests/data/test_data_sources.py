"""Sources: folder decoding and errors, splits and split.json, synthetic cells, TFDS."""

import json

import numpy as np
import pytest
from PIL import Image

from simclr_jax.config import defaults as default_config
from simclr_jax.data import flag_blank
from simclr_jax.data import folder
from simclr_jax.data import pipeline
from simclr_jax.data import sources
from simclr_jax.data import split as split_lib
from simclr_jax.data import synthetic


def _config(**data):
  c = default_config.get_default_config()
  c.batch_size = 8
  for key, value in data.items():
    c.data[key] = value
  return c


def _messy_folder(root):
  rng = np.random.default_rng(0)
  (root / 'class a').mkdir(parents=True)
  (root / 'b').mkdir()
  for i in range(6):
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(root / 'class a' / f'{i}.png')
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(root / 'b' / f'{i}.jpg')
  Image.fromarray((rng.integers(0, 65535, (20, 24))).astype(np.uint16)).save(root / 'b' / 'deep.tif')
  rgba = rng.integers(0, 256, (20, 24, 4), np.uint8)
  rgba[..., 3] = 0  # fully transparent: composited on white
  Image.fromarray(rgba, 'RGBA').save(root / 'class a' / 'alpha.png')
  Image.fromarray(rng.integers(0, 256, (20, 24), np.uint8), 'L').save(root / 'class a' / 'grey.bmp')
  (root / 'b' / 'broken.png').write_bytes(b'not an image at all')
  return root


def test_folder_decodes_every_format_and_skips_corrupt(tmp_path, caplog):
  root = _messy_folder(tmp_path / 'data')
  assert folder.decode(root / 'b' / 'deep.tif').dtype == np.uint8
  assert folder.decode(root / 'b' / 'deep.tif').shape == (20, 24, 3)
  np.testing.assert_array_equal(folder.decode(root / 'class a' / 'alpha.png'), 255)
  grey = folder.decode(root / 'class a' / 'grey.bmp')
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  info = pipeline.dataset_info(_config(name='folder', path=str(root)), tmp_path / 'wd')
  assert info.class_names == ('b', 'class a')
  assert info.num_train + info.num_val + info.num_test == 15  # 16 files, one corrupt
  assert 'broken.png' in caplog.text
  with pytest.raises(folder.DataError, match='broken.png'):
    pipeline.dataset_info(_config(name='folder', path=str(root), strict=True), tmp_path / 'wd2')


def test_folder_errors_name_the_folder(tmp_path):
  root = tmp_path / 'd'
  (root / 'full').mkdir(parents=True)
  Image.new('RGB', (4, 4)).save(root / 'full' / 'x.png')
  (root / 'empty class').mkdir()
  with pytest.raises(folder.DataError, match='empty class'):
    folder.scan(root)
  (root / 'empty class' / 'notes.txt').write_text('x')
  with pytest.raises(folder.DataError, match=r'empty class.*\.txt'):
    folder.scan(root)
  with pytest.raises(folder.DataError, match='nowhere'):
    folder.scan(tmp_path / 'nowhere')


def test_flat_folder_is_unlabelled_and_extra_folders_join_pretraining(tmp_path):
  flat = tmp_path / 'flat'
  flat.mkdir()
  for i in range(10):
    Image.new('RGB', (8, 8), (i, i, i)).save(flat / f'{i}.png')
  names, files, labels = folder.scan(flat)
  assert names == () and len(files) == 10 and (labels == -1).all()
  config = _config(name='synthetic_cells', num_synthetic=50, extra_unlabeled=str(flat))
  info = pipeline.dataset_info(config, None)
  assert info.num_pretrain == info.num_train + 10


def test_split_is_stratified_and_stable():
  labels = np.repeat(np.arange(4), [100, 40, 13, 3])
  a = split_lib.stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
  b = split_lib.stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
  c = split_lib.stratified_split(labels, (0.7, 0.15, 0.15), seed=2)
  for name in split_lib.SPLITS:
    np.testing.assert_array_equal(a[name], b[name])
  assert not np.array_equal(a['train'], c['train'])
  all_idx = np.concatenate([a[s] for s in split_lib.SPLITS])
  assert sorted(all_idx) == list(range(len(labels)))
  for cls, n in enumerate([100, 40, 13, 3]):
    counts = [np.sum(labels[a[s]] == cls) for s in split_lib.SPLITS]
    assert abs(counts[0] - 0.7 * n) <= 1.5 and min(counts) >= 1  # tiny classes: 1 each


def test_split_json_written_and_reused_through_init_from(tmp_path):
  root = _messy_folder(tmp_path / 'data')
  config = _config(name='folder', path=str(root))
  pipeline.dataset_info(config, tmp_path / 'pre')
  record = json.loads((tmp_path / 'pre' / 'split.json').read_text())
  assert record['seed'] == 0 and record['class_names'] == ['b', 'class a']
  test_paths = {e['path'] for e in record['splits']['test']}
  assert all(not p.startswith('/') for p in test_paths)
  # A new image in the folder does not change a reused split.
  Image.new('RGB', (24, 20)).save(root / 'b' / 'new.png')
  sources._CACHE.clear()  # pylint: disable=protected-access
  config.init_from = str(tmp_path / 'pre' / 'checkpoints' / '100')
  pipeline.dataset_info(config, tmp_path / 'eval')
  assert json.loads((tmp_path / 'eval' / 'split.json').read_text()) == record


def test_folder_decoded_once_per_split_record(tmp_path, monkeypatch):
  """The study's sub-runs each hold a copy of one split.json: one decode serves them all."""
  root = _messy_folder(tmp_path / 'data')
  config = _config(name='folder', path=str(root))
  sources._CACHE.clear()  # pylint: disable=protected-access
  first = sources.load(config, tmp_path / 'a')

  def must_not_decode(*args, **kwargs):
    raise AssertionError('decoded the folder again')

  monkeypatch.setattr(folder, 'decode_all', must_not_decode)
  assert sources.load(config, tmp_path / 'a') is first  # the split it just wrote
  (tmp_path / 'b').mkdir()
  (tmp_path / 'b' / 'split.json').write_bytes((tmp_path / 'a' / 'split.json').read_bytes())
  assert sources.load(config, tmp_path / 'b') is first
  config.init_from = str(tmp_path / 'a' / 'checkpoints' / '7')  # found above init_from
  assert sources.load(config, tmp_path / 'c') is first
  assert (tmp_path / 'c' / 'split.json').read_bytes() == (tmp_path / 'a' / 'split.json').read_bytes()
  config.init_from, config.data.seed = '', 1  # another split record: another dataset
  with pytest.raises(AssertionError, match='decoded the folder again'):
    sources.load(config, tmp_path / 'd')


def test_synthetic_cells_reproducible_balanced_and_not_colour_trivial():
  a, la = synthetic.generate(100, 32, seed=5)
  b, lb = synthetic.generate(100, 32, seed=5)
  np.testing.assert_array_equal(a, b)
  assert np.bincount(la).tolist() == [20] * 5
  assert not np.array_equal(a, synthetic.generate(100, 32, seed=6)[0])
  assert a.dtype == np.uint8 and a.shape == (100, 32, 32, 3)
  # Mean colour per class overlaps: no class is separated by its average colour alone.
  means = a.reshape(100, -1, 3).mean(1)
  per_class = np.array([means[la == k].mean(0) for k in range(5)])
  assert np.ptp(per_class, axis=0).max() < means.std(0).max() * 2


def test_cric_cervix_through_folder_source(cric_cervix_path, tmp_path):
  config = _config(name='folder', path=str(cric_cervix_path), image_size=32)
  info = pipeline.dataset_info(config, tmp_path)
  assert info.num_classes == 6 and 'Negative for intraepithelial lesion' in info.class_names
  assert info.num_train + info.num_val + info.num_test == 2121
  labels = pipeline.split_labels(config, tmp_path, 'test')
  assert np.bincount(labels, minlength=6).min() >= 1  # stratified: SCC (43) is in test
  batch = next(pipeline.labelled_iterator(config, tmp_path, 'test', batch_size=16,
                                          augment=False, shuffle=False, repeat=False))
  assert batch['image'].shape == (16, 32, 32, 3)
  blank = flag_blank.find_blank(cric_cervix_path / 'SCC')
  assert 1 <= len(blank) < 43


def test_tfds_not_prepared_error_says_how(tmp_path):
  with pytest.raises(folder.DataError, match='tfds build cifar10'):
    pipeline.dataset_info(_config(name='cifar10', tfds_data_dir=str(tmp_path)), None)


def test_tfds_tiny_dataset(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  class TinyImages(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version('1.0.0')

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          'image': tfds.features.Image(shape=(8, 8, 3)),
          'label': tfds.features.ClassLabel(names=['x', 'y'])}))

    def _split_generators(self, dl_manager):
      return {'train': self._generate_examples(40), 'test': self._generate_examples(10)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {'image': np.full((8, 8, 3), i, np.uint8), 'label': i % 2}

  TinyImages(data_dir=str(tmp_path)).download_and_prepare()
  config = _config(name='tiny_images', tfds_data_dir=str(tmp_path))
  info = pipeline.dataset_info(config, None)
  assert info.class_names == ('x', 'y') and info.num_test == 10
  assert info.num_train + info.num_val == 40 and info.num_val >= 2
  assert sorted(np.bincount(pipeline.split_labels(config, None, 'val'))) == [info.num_val // 2] * 2
