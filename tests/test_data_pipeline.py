"""The iterators: shapes, resume determinism, per-process shares, padding."""

import itertools

import numpy as np
import pytest

from simclr_jax import default_config
from simclr_jax.data import pipeline


def _config():
  c = default_config.get_default_config()
  c.data.num_synthetic = 100
  c.data.synthetic_size = 24
  c.data.image_size = 16
  c.batch_size = 16
  return c


def test_pretrain_shapes_and_resume_gives_the_same_batches():
  c = _config()
  steps = list(itertools.islice(pipeline.pretrain_iterator(c, None), 6))  # spans 2 epochs
  assert steps[0]['views'].shape == (16, 2, 16, 16, 3) and steps[0]['views'].dtype == np.float32
  assert steps[0]['label'].dtype == np.int32
  assert 0 <= steps[0]['views'].min() and steps[0]['views'].max() <= 1
  resumed = next(pipeline.pretrain_iterator(c, None, start_step=5))
  np.testing.assert_array_equal(resumed['views'], steps[5]['views'])
  assert not np.allclose(steps[0]['views'], steps[4]['views'])  # a new epoch differs


def test_processes_read_disjoint_shares():
  c = _config()
  a = next(pipeline.labelled_iterator(c, None, 'train', batch_size=16, augment=False,
                                      shuffle=False, repeat=False, process_count=2))
  b = next(pipeline.labelled_iterator(c, None, 'train', batch_size=16, augment=False,
                                      shuffle=False, repeat=False, process_index=1,
                                      process_count=2))
  assert a['image'].shape == (8, 16, 16, 3)
  assert not np.allclose(a['image'], b['image'])
  with pytest.raises(ValueError, match='divisible'):
    next(pipeline.pretrain_iterator(c, None, process_count=3))


def test_labelled_iterator_pads_last_batch_and_covers_the_split_once():
  c = _config()
  labels = pipeline.split_labels(c, None, 'val')
  batches = list(pipeline.labelled_iterator(c, None, 'val', batch_size=8, augment=False,
                                            shuffle=False, repeat=False))
  mask = np.concatenate([b['mask'] for b in batches])
  assert len(batches) == -(-len(labels) // 8) and mask.sum() == len(labels)
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in batches])[mask], labels)
  subset = list(pipeline.labelled_iterator(c, None, 'val', batch_size=8, indices=[0, 2],
                                           augment=True, shuffle=True, repeat=False))
  assert len(subset) == 1 and subset[0]['mask'].sum() == 2
