"""Folders with their own train/ and test/ (CIFAR-10 as files): test/ is the test split,
validation is carved from train/, stratified and seeded, and split.json keeps it."""

import json

import numpy as np
import pytest
from PIL import Image

from simclr_jax.config import defaults as default_config
from simclr_jax.data import folder
from simclr_jax.data import pipeline
from simclr_jax.data import sources

_TRAIN_PER_CLASS, _TEST_PER_CLASS = 10, 3


def _config(root, **data):
  c = default_config.get_default_config()
  c.batch_size = 8
  c.data.name, c.data.path = 'folder', str(root)
  c.data.split = (0.8, 0.2, 0.0)  # validation: 20 % of train/
  for key, value in data.items():
    c.data[key] = value
  return c


def _own_split_folder(root, classes=('cat', 'dog', 'ship'), test_classes=None):
  rng = np.random.default_rng(0)
  for split, count, names in (('train', _TRAIN_PER_CLASS, classes),
                              ('test', _TEST_PER_CLASS, test_classes or classes)):
    for name in names:
      (root / split / name).mkdir(parents=True)
      for i in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
            root / split / name / f'{i:04d}.png')
  return root


def _split_record(config, workdir):
  sources._CACHE.clear()  # pylint: disable=protected-access
  pipeline.dataset_info(config, workdir)
  return json.loads((workdir / 'split.json').read_text())


def test_test_split_is_test_folder_and_val_is_carved_from_train(tmp_path):
  root = _own_split_folder(tmp_path / 'data')
  record = _split_record(_config(root), tmp_path / 'a')
  paths = {s: [e['path'] for e in record['splits'][s]] for s in ('train', 'val', 'test')}
  on_disk = lambda split: sorted(str(p.relative_to(root)) for p in (root / split).rglob('*.png'))
  assert record['own_splits'] and record['class_names'] == ['cat', 'dog', 'ship']
  assert sorted(paths['test']) == on_disk('test')
  assert not set(paths['val']) & set(paths['test'])
  assert sorted(paths['train'] + paths['val']) == on_disk('train')
  for s in ('val', 'test'):
    for e in record['splits'][s]:  # labels follow the class folder's name
      assert record['class_names'][e['label']] == e['path'].split('/')[1]
  val_labels = [e['label'] for e in record['splits']['val']]
  assert np.bincount(val_labels).tolist() == [2, 2, 2]  # 20 % of 10 per class

  # A second run makes the same split; another data seed another validation.
  assert _split_record(_config(root), tmp_path / 'b') == record
  other = _split_record(_config(root, seed=1), tmp_path / 'c')
  assert other['splits']['test'] == record['splits']['test']
  assert other['splits']['val'] != record['splits']['val']

  source = sources.load(_config(root), tmp_path / 'a')
  assert [len(source.splits[s][1]) for s in ('train', 'val', 'test')] == [24, 6, 9]


def test_own_val_folder_is_kept_and_unknown_test_class_is_an_error(tmp_path):
  root = _own_split_folder(tmp_path / 'data')
  (root / 'val' / 'dog').mkdir(parents=True)
  Image.new('RGB', (8, 8)).save(root / 'val' / 'dog' / 'x.png')
  record = _split_record(_config(root), tmp_path / 'a')
  assert record['splits']['val'] == [{'path': 'val/dog/x.png', 'label': 1}]
  assert len(record['splits']['train']) == 3 * _TRAIN_PER_CLASS

  bad = _own_split_folder(tmp_path / 'bad', test_classes=('cat', 'dog', 'horse'))
  with pytest.raises(folder.DataError, match=r'test has class folders .* lacks: horse'):
    _split_record(_config(bad), tmp_path / 'b')
