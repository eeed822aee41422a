"""The iterators: shapes, resume determinism, one global order split among processes,
padding."""

import hashlib
import itertools

import numpy as np
import pytest

from simclr_jax.config import defaults as default_config
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


# Captured from the pipeline before the order became global (one process): a one-process
# run must see the same indices, and the same views up to float noise, as it did then.
_PINNED_ORDER = ('cb10197e8558cc30', [62, 12, 51, 40, 0, 18, 10, 37],
                 [55, 32, 30, 62, 59, 68, 21, 34])  # sha of steps 0-5, step 0, step 4
_PINNED_VIEW_MEANS = {  # step: means of views 0, 1 of images 0, 1
    0: [[0.898152, 0.624962], [0.991468, 0.809219]],
    4: [[0.751148, 0.883299], [0.990960, 0.957344]]}
_PINNED_FINETUNE = {  # batch: labels, means of images 0-2 (batch 8, augment, shuffle)
    0: ([1, 1, 3, 0, 3, 3, 4, 3], [0.826836, 0.810967, 0.874676]),
    9: ([4, 4, 3, 3, 4, 0, 1, 0], [0.842769, 0.863571, 0.885493])}
_PINNED_FINETUNE_JAX = {0: [0.757382, 0.821133, 0.715028], 1: [0.867164, 0.821898, 0.857111]}


def _pretrain(c, steps, **kwargs):
  store, labels = pipeline.pretrain_pool(c, None)
  return [b['views'] for b in itertools.islice(
      pipeline.pretrain_batches(c, store, labels, **kwargs), steps)]


def _finetune(c, batches, **kwargs):
  it = pipeline.labelled_iterator(c, None, 'train', batch_size=8, augment=True, shuffle=True,
                                  repeat=True, **kwargs)
  out = list(itertools.islice(it, batches))
  getattr(it, 'close', lambda: None)()  # the TensorFlow-free loader's thread
  return out


def _joined(per_process, key=None):
  """Batch k of each process, concatenated in process order."""
  return [np.concatenate([b if key is None else b[key] for b in parts])
          for parts in zip(*per_process)]


def test_one_process_sees_the_batches_it_saw_before_the_order_became_global():
  c = _config()
  _, labels = pipeline.pretrain_pool(c, None)
  order = np.concatenate([i for *_, i in itertools.islice(pipeline.pretrain_order(c, len(labels)), 6)])
  digest = hashlib.sha256(order.astype('<i8').tobytes()).hexdigest()[:16]
  assert (digest, order[:8].tolist(), order[64:72].tolist()) == _PINNED_ORDER
  views = _pretrain(c, 5)
  for step, means in _PINNED_VIEW_MEANS.items():
    np.testing.assert_allclose(views[step][:2].mean(axis=(2, 3, 4)), means, atol=2e-6)
  batches = _finetune(c, 10)
  for k, (batch_labels, means) in _PINNED_FINETUNE.items():
    assert batches[k]['label'].tolist() == batch_labels
    np.testing.assert_allclose(batches[k]['image'][:3].mean(axis=(1, 2, 3)), means, atol=2e-6)


def test_processes_take_their_slices_of_the_one_process_batches():
  c = _config()
  c.augment.preset = 'imagenet'  # with the blur, the op with the most per-batch draws
  _, labels = pipeline.pretrain_pool(c, None)
  one = [i for *_, i in itertools.islice(pipeline.pretrain_order(c, len(labels)), 9)]
  for count in (2, 4):  # 4 steps an epoch (70 images) whatever the number of processes
    shares = [[i for *_, i in itertools.islice(
        pipeline.pretrain_order(c, len(labels), process_index=p, process_count=count), 9)]
              for p in range(count)]
    np.testing.assert_array_equal(_joined(shares), one)
  # The views too: each image's randomness is its global row's. Not bitwise: the blur's
  # and colour matrix's batched ops round a few ulp differently on fewer rows.
  one = _pretrain(c, 5)
  two = _joined([_pretrain(c, 5, process_index=p, process_count=2) for p in range(2)])
  np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
  # Fine-tuning batches: the same global order and per-row augmentation.
  one = _finetune(c, 9)  # 70 images: an epoch boundary at batch 8
  two = [_finetune(c, 9, process_index=p, process_count=2) for p in range(2)]
  np.testing.assert_array_equal(_joined(two, 'label'), [b['label'] for b in one])
  np.testing.assert_allclose(_joined(two, 'image'), [b['image'] for b in one], atol=1e-6)
  with pytest.raises(ValueError, match='divisible'):
    next(pipeline.pretrain_iterator(c, None, process_count=3))


def test_finetune_batches_without_tensorflow_are_as_before_and_split_by_rows(monkeypatch):
  c = _config()
  monkeypatch.setattr(pipeline, 'tensorflow_available', lambda: False)
  one = _finetune(c, 2)
  for k, means in _PINNED_FINETUNE_JAX.items():
    np.testing.assert_allclose(one[k]['image'][:3].mean(axis=(1, 2, 3)), means, atol=2e-6)
  two = [_finetune(c, 2, process_index=p, process_count=2) for p in range(2)]
  np.testing.assert_allclose(_joined(two, 'image'), [b['image'] for b in one], atol=1e-6)


def test_evaluation_batches_cover_each_image_once_across_processes():
  c = _config()
  labels = pipeline.split_labels(c, None, 'val')  # 15 images: the last batch is partial
  for count in (1, 2, 4):
    per_process = [list(pipeline.labelled_iterator(
        c, None, 'val', batch_size=8, augment=False, shuffle=False, repeat=False,
        process_index=p, process_count=count)) for p in range(count)]
    assert len({len(b) for b in per_process}) == 1  # every process runs every batch
    mask = np.concatenate(_joined(per_process, 'mask'))
    got = np.concatenate(_joined(per_process, 'label'))[mask]
    np.testing.assert_array_equal(got, labels)  # each once, in the one-process order


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
