"""embed: the encoder's features for new images equal linear evaluation's for the same
images, from a pretraining or a classifier workdir; unreadable files are listed, not
embedded."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from simclr_jax.inference import embeddings
from tiny_trained_runs import trained_runs


@pytest.fixture(scope='module')
def runs():
  return trained_runs()


@pytest.fixture(scope='module')
def images(runs, tmp_path_factory):
  folder = tmp_path_factory.mktemp('embed') / 'images'
  shutil.copytree(runs['test_images'], folder)
  first_class = sorted(p.name for p in folder.iterdir())[0]
  (folder / first_class / 'broken.jpg').write_bytes(b'\xff\xd8 truncated')
  return folder


def _split_rows(paths):
  """Each embedded file's row in the test split (its NNNN.png name)."""
  return [int(pathlib.Path(p).stem) for p in paths]


@pytest.mark.parametrize('run', ['pretrain', 'linear'])
def test_features_equal_linear_evaluations_cached_features(runs, images, tmp_path, run):
  out = tmp_path / 'features.npz'
  embeddings.embed(runs[run], str(images), str(out), with_z=run == 'pretrain')
  saved = np.load(out)
  cached = np.load(pathlib.Path(runs['linear']) / 'features.npz')
  rows = _split_rows(saved['paths'])
  assert sorted(rows) == list(range(len(cached['test_y'])))
  assert saved['h'].dtype == np.float32
  np.testing.assert_allclose(saved['h'], cached['test_h'][rows], rtol=1e-5, atol=1e-6)
  names = list(saved['class_names'])
  assert [names[k] for k in saved['labels']] == [pathlib.Path(p).parent.name
                                                  for p in saved['paths']]
  assert [pathlib.Path(p).name for p in saved['failed_paths']] == ['broken.jpg']
  assert 'broken.jpg' in saved['failed_errors'][0]
  settings = json.loads(str(saved['encoder_config']))
  assert settings['model']['width'] == 0.0625 and settings['image_size'] == 16
  if run == 'pretrain':
    assert saved['z'].shape == (len(rows), 16)
  else:
    assert 'z' not in saved.files


def test_a_classifier_without_a_head_has_no_z(runs, tmp_path):
  with pytest.raises(ValueError, match='no projection head'):
    embeddings.embed(runs['finetune'], runs['test_paths'][0], str(tmp_path / 'f.npz'), with_z=True)
  with pytest.raises(FileNotFoundError, match='no such folder'):
    embeddings.embed(str(tmp_path / 'nowhere'), runs['test_paths'][0], str(tmp_path / 'f.npz'))
  assert not list(tmp_path.iterdir())


def test_half_precision_on_request(runs, tmp_path):
  out = tmp_path / 'f.npz'
  embeddings.embed(runs['finetune'], runs['test_paths'][0], str(out), dtype='float16')
  saved = np.load(out)
  assert saved['h'].dtype == np.float16 and saved['h'].shape[0] == 1
  assert 'labels' not in saved.files
