"""The feature caches are keyed by the data a run reads: a changed data.drop_blank_below or
data.channels recomputes the features instead of reusing a stale features.npz."""

import numpy as np
import pytest
from PIL import Image

from simclr_jax.config import defaults as default_config
from simclr_jax.data import fingerprint
from simclr_jax.evaluation import linear
from simclr_jax.runtime import parallel
from tiny_configs import tiny_study_config


def test_every_data_key_is_in_the_fingerprint_or_said_not_to_change_the_images():
  keys = set(default_config.get_default_config().data.keys())
  declared = set(fingerprint.IMAGE_KEYS) | set(fingerprint.OTHER_KEYS)
  assert keys == declared
  assert not set(fingerprint.IMAGE_KEYS) & set(fingerprint.OTHER_KEYS)


@pytest.mark.parametrize('key,value', [('drop_blank_below', 2.0), ('channels', 1),
                                       ('seed', 1), ('split', (0.8, 0.1, 0.1))])
def test_fingerprint_changes_with_the_images(key, value):
  data = default_config.get_default_config().data
  before = fingerprint.fingerprint(data)
  data[key] = value
  assert fingerprint.fingerprint(data) != before


def _folder_with_blank_images(root):
  """Two classes of 8 textured and 4 blank (uniform) 16 px grey images, as RGB files."""
  rng = np.random.default_rng(0)
  for name in ('a', 'b'):
    (root / name).mkdir(parents=True)
    for i in range(8):
      grey = rng.integers(0, 256, (16, 16, 1), np.uint8)
      Image.fromarray(np.repeat(grey, 3, axis=2)).save(root / name / f'{i}.png')
    for i in range(4):
      Image.new('RGB', (16, 16), (128, 128, 128)).save(root / name / f'blank{i}.png')
  return root


def test_linear_eval_recomputes_features_after_a_data_change(tmp_path, monkeypatch):
  config = tiny_study_config()
  config.data.name = 'folder'
  config.data.path = str(_folder_with_blank_images(tmp_path / 'images'))
  config.data.split = (0.5, 0.25, 0.25)
  config.eval_batch_size = 16
  computed = []
  compute = linear.compute_features
  monkeypatch.setattr(linear, 'compute_features',
                      lambda *a, **k: computed.append(1) or compute(*a, **k))
  mesh = parallel.make_mesh()
  workdir = str(tmp_path / 'run')

  def rows(feats):
    return sum(len(y) for _, y in feats.values())

  assert rows(linear.cached_features(config, workdir, mesh)) == 24
  linear.cached_features(config, workdir, mesh)
  assert len(computed) == 1  # the same data: read from the cache
  config.data.drop_blank_below = 1.0
  assert rows(linear.cached_features(config, workdir, mesh)) == 16  # the blank ones left out
  assert len(computed) == 2
  config.data.channels = 1
  linear.cached_features(config, workdir, mesh)
  assert len(computed) == 3
