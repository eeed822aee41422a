"""The input pipeline the trainer and evaluators call.

A Python generator picks each batch's indices and fetches the uint8 images; a tf.data map
augments whole batches in parallel with stateless ops; prefetch overlaps it with training.
The order is global: global batch k of an epoch is the k-th run of batch_size images of
one permutation of the whole dataset seeded by (config.seed, epoch), and process p of P
takes its rows p * b ... (p + 1) * b - 1 (b = batch_size / P). The augmentation seed is
the global batch's, (config.seed, epoch, k), and each image's randomness is that of its
row in the global batch (augment.py's [4] seeds). Batch k therefore depends only on
(config.seed, k, batch_size): a run resumed at start_step=k sees exactly the same data,
and a run on 1, 2 or 64 processes trains on the same images and views.
Iterators yield numpy; the trainer makes global arrays with
jax.make_array_from_process_local_data.

`config.augment.backend` picks where pretraining augments: 'host' (the tf.data pipeline
above), 'device' (device_feed.py: the same generator's uint8 images, or only its indices
when the dataset is resident on the devices, augmented in JAX on the training devices), or
'auto': host on CPU when TensorFlow imports, device otherwise. Without TensorFlow the
labelled iterators (evaluation, fine-tuning) run the same generator through a threaded
prefetcher and device_augment.labelled_transform instead of tf.data.
"""

import dataclasses
import importlib.util
import itertools
from typing import Iterator

import numpy as np

from simclr_jax.data import augment_params
from simclr_jax.data import prefetch
from simclr_jax.data import sources
from simclr_jax.data import stores
from simclr_jax.errors import UserError

BACKENDS = ('auto', 'host', 'device')


def tensorflow_available() -> bool:
  """Whether `import tensorflow` can work, without importing it (slow, and it may claim
  accelerator memory)."""
  try:
    return importlib.util.find_spec('tensorflow') is not None
  except (ImportError, ValueError):
    return False


def augment_backend(config) -> str:
  """'host' or 'device': where pretraining augments (config.augment.backend)."""
  backend = config.augment.get('backend', 'auto')
  if backend not in BACKENDS:
    raise UserError(f'config.augment.backend={backend!r}: expected one of {BACKENDS}')
  if backend == 'auto':
    import jax  # pylint: disable=g-import-not-at-top
    return 'host' if jax.default_backend() == 'cpu' and tensorflow_available() else 'device'
  if backend == 'host' and not tensorflow_available():
    raise UserError("config.augment.backend='host' needs TensorFlow, which does not import "
                    "here; use 'device' or 'auto'")
  return backend


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  num_classes: int  # 0 when no labels
  class_names: tuple[str, ...]
  num_train: int
  num_val: int
  num_test: int
  num_pretrain: int  # train [+ val/test if pretrain_on_test] + extra unlabelled


def dataset_info(config, workdir) -> DatasetInfo:
  """Describes the dataset; for folders also creates or reuses WORKDIR/split.json."""
  source = sources.load(config, workdir)
  return DatasetInfo(
      num_classes=len(source.class_names), class_names=tuple(source.class_names),
      num_train=len(source.splits['train'][1]), num_val=len(source.splits['val'][1]),
      num_test=len(source.splits['test'][1]),
      num_pretrain=len(_pretrain_pool(config, source)[1]))


def split_labels(config, workdir, split: str) -> np.ndarray:
  return np.asarray(_split(sources.load(config, workdir), split)[1], np.int32)


def _split(source, split):
  if split not in source.splits:
    raise ValueError(f'split={split!r}: expected one of {sorted(source.splits)}')
  return source.splits[split]


def _pretrain_pool(config, source):
  names = ['train', 'val', 'test'] if config.data.pretrain_on_test else ['train']
  parts = [source.splits[n] for n in names]
  store_list = [s for s, _ in parts]
  labels = [l for _, l in parts]
  if source.extra is not None:
    store_list.append(source.extra)
    labels.append(np.full(len(source.extra), -1, np.int32))
  return stores.ConcatStore(store_list), np.concatenate(labels).astype(np.int32)


def _local_batch(batch_size: int, process_count: int, what: str) -> int:
  if batch_size % process_count:
    raise UserError(f'{what}={batch_size} is not divisible by the {process_count} '
                    'processes')
  return batch_size // process_count


def _seed(*parts) -> np.ndarray:
  """A stateless-op seed [2] from integers, well mixed."""
  state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
  return state.astype(np.int64)


# Stands where the seeds once had the process index: the order and the batch seeds are
# now the same for every process, and equal those of a one-process run before that.
_GLOBAL = 0


def _permutation(seed: int, epoch: int, salt: int, items: np.ndarray) -> np.ndarray:
  return np.random.default_rng(_seed(seed, epoch, _GLOBAL, salt)).permutation(items)


def _slice_seed(seed: int, epoch: int, salt: int, k: int, process_index: int,
                process_count: int) -> np.ndarray:
  """Global batch k's augmentation seed [4]: its seed [2] and which slice of it this
  process holds (augment.py draws for the whole global batch and keeps the slice)."""
  return np.concatenate([_seed(seed, epoch, _GLOBAL, salt, k),
                         [process_index, process_count]]).astype(np.int64)


def _to_tf(batches, config, transform, image_key):
  """Wraps a generator of (images, sizes, labels, mask, seed) in a parallel tf.data map."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  signature = (tf.TensorSpec([None, None, None, config.data.channels], tf.uint8),
               tf.TensorSpec([None, 2], tf.int32), tf.TensorSpec([None], tf.int32),
               tf.TensorSpec([None], tf.bool), tf.TensorSpec([4], tf.int64))
  ds = tf.data.Dataset.from_generator(lambda: batches, output_signature=signature)

  # The transforms branch only on Python values (the augmentation parameters, static
  # shapes) or through tf.cond: AutoGraph would rewrite nothing, yet converting them took
  # 7 of a tiny run's 30 seconds.
  @tf.autograph.experimental.do_not_convert
  def apply(images, sizes, labels, mask, seed):
    return {image_key: transform(images, sizes, seed), 'label': labels, 'mask': mask}

  ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(max(1, config.data.prefetch))
  options = tf.data.Options()
  options.threading.private_threadpool_size = 0
  options.deterministic = True
  return ds.with_options(options).as_numpy_iterator()


def pretrain_pool(config, workdir):
  """(store, int32 labels, -1 = unlabelled) of the images pretraining draws from."""
  return _pretrain_pool(config, sources.load(config, workdir))


def pretrain_iterator(config, workdir, *, start_step=0, process_index=0,
                      process_count=1) -> Iterator[dict]:
  """Infinite {'views': float32 [b, 2, S, S, C] in [0, 1], 'label': int32 [b]}."""
  store, labels = _pretrain_pool(config, sources.load(config, workdir))
  return pretrain_batches(config, store, labels, start_step=start_step,
                          process_index=process_index, process_count=process_count)


def pretrain_batches(config, store, labels, *, start_step=0, process_index=0,
                     process_count=1, batch_size=None) -> Iterator[dict]:
  """pretrain_iterator over any image store (the input benchmark uses it directly)."""
  from simclr_jax.data import augment as augment_lib  # pylint: disable=g-import-not-at-top
  params = augment_params.resolve_params(config)
  size = config.data.image_size
  batches = uint8_batches(config, store, labels, start_step=start_step,
                          process_index=process_index, process_count=process_count,
                          batch_size=batch_size)
  transform = lambda images, sizes, seed: augment_lib.simclr_views(images, sizes, seed, params, size)
  for batch in _to_tf(batches, config, transform, 'views'):
    del batch['mask']
    yield batch


def pretrain_order(config, num_images: int, *, start_step=0, process_index=0,
                   process_count=1, batch_size=None):
  """(step, epoch, batch-in-epoch, indices [b]) of this process for every step from
  start_step: its rows of global batch k of a permutation of all images seeded by
  (config.seed, epoch), so step k's indices depend only on k and the global batch size,
  not on the number of processes. Checks the sizes at once."""
  global_batch = batch_size or config.batch_size
  local = _local_batch(global_batch, process_count, 'config.batch_size')
  steps_per_epoch = num_images // global_batch
  if steps_per_epoch == 0:
    raise UserError(f'{config.data.name}: {num_images} pretraining images make no full '
                    f'batch of {global_batch}; lower config.batch_size')
  first = process_index * local

  def steps():
    epoch_order = (None, None)
    for step in itertools.count(start_step):
      epoch, k = divmod(step, steps_per_epoch)
      if epoch_order[0] != epoch:
        epoch_order = (epoch, _permutation(config.seed, epoch, 1, np.arange(num_images)))
      start = k * global_batch + first
      yield step, epoch, k, epoch_order[1][start:start + local]

  return steps()


def uint8_batches(config, store, labels, *, start_step=0, process_index=0,
                  process_count=1, batch_size=None):
  """(images uint8, sizes, labels, mask, seed) per step: what both backends augment."""
  order = pretrain_order(config, len(labels), start_step=start_step,
                         process_index=process_index, process_count=process_count,
                         batch_size=batch_size)
  return ((*store.fetch(idx), labels[idx], np.ones(len(idx), bool),
           _slice_seed(config.seed, epoch, 2, k, process_index, process_count))
          for _, epoch, k, idx in order)


def labelled_iterator(config, workdir, split: str, *, batch_size, indices=None,
                      augment: bool, shuffle: bool, repeat: bool, seed: int = 0,
                      process_index=0, process_count=1) -> Iterator[dict]:
  """{'image': float32 [b, S, S, C], 'label': int32 [b], 'mask': bool [b]}.

  batch_size is global (b = batch_size // process_count per process, like
  config.batch_size): as in pretraining, global batch k (of the chosen images, shuffled
  per epoch by (seed, epoch) if `shuffle`) is split into the processes' rows, each with
  the randomness of its global row. With repeat=False every process yields the same
  number of batches, the last padded with mask False.
  """
  local = _local_batch(batch_size, process_count, 'batch_size')
  store, labels = _split(sources.load(config, workdir), split)
  chosen = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
  if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(labels)):
    raise ValueError(f'indices for split {split!r} must be in [0, {len(labels)})')
  num_batches = -(-len(chosen) // batch_size)
  if repeat and len(chosen) < batch_size:
    raise UserError(f'split {split!r}: {len(chosen)} images make no batch of {batch_size}')
  first = process_index * local
  size = config.data.image_size

  def batches():
    for epoch in itertools.count():
      order = _permutation(seed, epoch, 3, chosen) if shuffle else chosen
      for k in range(len(order) // batch_size if repeat else num_batches):
        idx = order[k * batch_size + first:][:local]  # short or empty past the end
        mask = np.zeros(local, bool)
        mask[:len(idx)] = True
        padded = np.concatenate([idx, np.full(local - len(idx), idx[0] if len(idx) else 0)])
        if len(padded) and len(labels):
          images, sizes = store.fetch(padded)
          batch_labels = labels[padded]
        else:  # a process with nothing left pads with blank images
          images = np.zeros((local, size, size, config.data.channels), np.uint8)
          sizes = np.full((local, 2), size, np.int32)
          batch_labels = np.zeros(local, np.int32)
        yield (images, sizes, np.where(mask, batch_labels, 0).astype(np.int32), mask,
               _slice_seed(seed, epoch, 4, k, process_index, process_count))
      if not repeat:
        return

  return labelled_transform(config, batches(), augment)


def labelled_transform(config, batches, augment: bool) -> Iterator[dict]:
  """uint8 batches (images, sizes, labels, mask, seed) -> {'image', 'label', 'mask'}:
  supervised augmentation, or evaluation's preprocessing, in tf.data (or in JAX without
  TensorFlow). Prediction on new images goes through here too, so it prepares them
  exactly as evaluation does."""
  params = augment_params.resolve_params(config)
  if not tensorflow_available():
    return _transformed_in_jax(batches, config, params, augment)
  from simclr_jax.data import augment as augment_lib  # pylint: disable=g-import-not-at-top
  size = config.data.image_size
  if augment:
    transform = lambda im, sz, s: augment_lib.supervised_augment(im, sz, s, params, size)
  else:
    transform = lambda im, sz, s: augment_lib.eval_preprocess(im, sz, params, size)
  return _to_tf(batches, config, transform, 'image')


def _transformed_in_jax(batches, config, params, augment: bool) -> Iterator[dict]:
  """The labelled iterator without TensorFlow: the same uint8 batches, transformed by the
  JAX ops on the default device in a prefetching thread, yielded as numpy."""
  from simclr_jax.data import device_augment  # pylint: disable=g-import-not-at-top

  def transform(item):
    images, sizes, labels, mask, seed = item
    images = stores.pad_to_bucket(images)  # few distinct shapes: few compilations
    out = device_augment.labelled_transform(
        images, sizes, seed.astype(np.uint32), p=params, out_size=config.data.image_size,
        augment=augment)
    return {'image': np.asarray(out), 'label': labels, 'mask': mask}

  return prefetch.threaded(map(transform, batches), max(1, config.data.prefetch))

