"""Global pretraining batches for the training loop, from either augmentation backend.

`pretrain_feed` yields {'views': [N, 2, S, S, C], 'label': [N]} as global arrays sharded
along the data axis. With the host backend they come from the tf.data pipeline
(pipeline.pretrain_batches) as before. With the device backend a background thread walks
the same index order (pipeline.pretrain_order) and sends the devices either the uint8
images (padded to one shape) or, when the whole pretraining pool fits in
config.data.device_cache_mb, only the indices into a copy of the pool put on every device
once; device_augment then makes the views on the devices, keyed by (config.seed, step) and
each image's row in the global batch, which the host sends along.

With `block_sizes` (step_blocks.block_sizes, config.steps_per_call > 1) a feed yields
{'block': xs} for each block of several steps: the block's inputs stacked on a leading
axis, which the trainer scans over in one jitted call (with the device backend, the
augmentation runs inside that call). Each step's data is the same either way.
"""

import functools
import itertools
import logging

import jax
import numpy as np

from simclr_jax.data import augment_params, device_augment, pipeline, prefetch, stores
from simclr_jax.runtime import parallel


def pretrain_feed(config, store, labels, mesh, *, start_step=0, batch_size=None,
                  block_sizes=None):
  """The pretraining batches of steps start_step, start_step + 1, ... as global arrays;
  with `block_sizes`, one item per block (a single batch for a block of 1)."""
  kwargs = dict(start_step=start_step, process_index=jax.process_index(),
                process_count=jax.process_count(), batch_size=batch_size)
  if pipeline.augment_backend(config) == 'host':
    batches = pipeline.pretrain_batches(config, store, labels, **kwargs)
    return HostFeed(batches, mesh, start_step, block_sizes, max(1, config.data.prefetch))
  return DeviceFeed(config, store, labels, mesh, block_sizes=block_sizes, **kwargs)


def _blocks(items, block_sizes):
  """Groups an iterator's items into lists of the given sizes (all 1 without sizes)."""
  items = iter(items)
  for size in (block_sizes if block_sizes is not None else itertools.repeat(1)):
    block = list(itertools.islice(items, size))
    if len(block) < size:
      return
    yield block


def _stacked_global(mesh, array):
  """A block's input [K, ...] from this process's rows, sharded by parallel.stacked_sharding."""
  array = np.asarray(array)
  return jax.make_array_from_process_local_data(parallel.stacked_sharding(mesh, array),
                                                array)


class HostFeed:
  """Views augmented on the host by tf.data (config.augment.backend='host')."""

  consts = ()

  def __init__(self, batches, mesh, start_step, block_sizes, depth):
    self.mesh = mesh
    self._steps = itertools.count(start_step)
    self._items = self._items_of(_blocks(batches, block_sizes))
    if block_sizes is not None:  # stacking and transfers overlap the step
      self._items = prefetch.threaded(self._items, depth)

  def _items_of(self, blocks):
    for block in blocks:
      steps = [next(self._steps) for _ in block]
      if len(block) == 1:
        yield parallel.to_global_batch(block[0], self.mesh)
        continue
      xs = {k: np.stack([b[k] for b in block]) for k in ('views', 'label')}
      xs['step'] = np.asarray(steps, np.int32)
      yield {'block': {k: _stacked_global(self.mesh, v) for k, v in xs.items()}}

  @staticmethod
  def prepare(consts, x):
    del consts
    return x['views'], x['label']

  @staticmethod
  def last_batch(item) -> dict:
    if 'block' not in item:
      return item
    return {k: item['block'][k][-1] for k in ('views', 'label')}

  def __iter__(self):
    return self

  def __next__(self):
    return next(self._items)

  def close(self):
    if hasattr(self._items, 'close'):
      self._items.close()


def fits_on_device(store, config) -> bool:
  hw = stores.max_size(store)
  pixels = len(store) * hw[0] * hw[1] if hw is not None else 0
  return hw is not None and pixels * config.data.channels <= config.data.device_cache_mb * 2**20


@functools.lru_cache(maxsize=8)
def _jitted_views(mesh, params, image_size: int, seed: int, resident: bool):
  """One jitted augmentation per setting, so that runs in one process (the study, the
  tests) trace and compile it once."""
  views = device_augment.sharded_views(mesh, parallel.DATA_AXIS, params, image_size, seed,
                                       resident)
  batch, replicated = parallel.batch_sharding(mesh), parallel.replicated(mesh)
  in_shardings = ((replicated, replicated, batch, batch, replicated) if resident
                  else (batch, batch, batch, replicated))
  return jax.jit(views, in_shardings=in_shardings, out_shardings=batch)


class DeviceFeed:
  """Views augmented on the training devices (config.augment.backend='device')."""

  def __init__(self, config, store, labels, mesh, *, start_step=0, process_index=0,
               process_count=1, batch_size=None, block_sizes=None):
    self.mesh = mesh
    self.resident = fits_on_device(store, config)
    self.padded_hw = stores.max_size(store)
    self._batch = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    params = augment_params.resolve_params(config)
    self._views = _jitted_views(mesh, params, config.data.image_size, config.seed,
                                self.resident)
    # The same augmentation, unjitted, for the body of a block's scan.
    self._block_views = device_augment.sharded_views(
        mesh, parallel.DATA_AXIS, params, config.data.image_size, config.seed, self.resident)
    if self.resident:
      images, sizes = store.fetch(np.arange(len(store)))  # padded to the largest image
      self.pool = tuple(jax.make_array_from_process_local_data(replicated, a)
                        for a in (images, sizes))
      logging.info('pretraining pool on the devices: %d images of up to %dx%d (%.0f MB each)',
                   len(store), images.shape[1], images.shape[2], images.nbytes / 2**20)
    else:
      self.pool = ()
    order = pipeline.pretrain_order(config, len(labels), start_step=start_step,
                                    process_index=process_index, process_count=process_count,
                                    batch_size=batch_size)
    # This process's rows of the global batch (pretrain_order's slice): the views' keys.
    local = (batch_size or config.batch_size) // process_count
    self._local_rows = np.arange(process_index * local, (process_index + 1) * local,
                                 dtype=np.int32)
    self._rows = self._global(self._local_rows)
    self._items = prefetch.threaded(
        self._host_items(_blocks(order, block_sizes), store, labels),
        max(1, config.data.prefetch))

  @property
  def consts(self) -> tuple:
    return self.pool

  def _global(self, array):
    return jax.make_array_from_process_local_data(self._batch, np.asarray(array))

  def _host_inputs(self, idx, store) -> tuple:
    """(indices,) when the pool is on the devices, else (uint8 images, sizes)."""
    if self.resident:
      return (idx.astype(np.int32),)
    images, sizes = store.fetch(idx)
    if self.padded_hw is not None:
      images = stores.pad_to(images, *self.padded_hw)
    else:  # sizes unknown before decoding: few shapes, few compilations
      images = stores.pad_to_bucket(images, 64)
    return images, sizes

  def _host_items(self, blocks, store, labels):
    """Runs in the prefetch thread: gathers on the host and starts the transfers."""
    for block in blocks:
      inputs = [self._host_inputs(idx, store) for _, _, _, idx in block]
      if len(block) == 1:
        step, _, _, idx = block[0]
        inputs = tuple(self._global(a) for a in inputs[0])
        yield step, (*inputs, self._rows), self._global(labels[idx])
        continue
      if not self.resident:  # one shape for the whole block
        hw = np.max([i[0].shape[1:3] for i in inputs], axis=0)
        inputs = [(stores.pad_to(images, *hw), sizes) for images, sizes in inputs]
      names = ('idx',) if self.resident else ('images', 'sizes')
      xs = {name: np.stack([i[n] for i in inputs]) for n, name in enumerate(names)}
      xs['rows'] = np.stack([self._local_rows] * len(block))
      xs['label'] = np.stack([labels[idx] for _, _, _, idx in block])
      xs['step'] = np.asarray([step for step, _, _, _ in block], np.int32)
      yield None, {k: _stacked_global(self.mesh, v) for k, v in xs.items()}, None

  def _block_inputs(self, x) -> tuple:
    return ((x['idx'],) if self.resident else (x['images'], x['sizes'])) + (x['rows'],)

  def prepare(self, consts, x):
    """A block's step inside the scan: its views from its inputs, on the devices."""
    return self._block_views(*consts, *self._block_inputs(x), x['step']), x['label']

  def last_batch(self, item) -> dict:
    """The batch of a block's last step (the health monitor's input at a log step)."""
    if 'block' not in item:
      return item
    last = {k: v[-1] for k, v in item['block'].items()}
    inputs = tuple(jax.device_put(a, self._batch) for a in self._block_inputs(last))
    return {'views': self._views(*self.pool, *inputs, last['step']), 'label': last['label']}

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    step, inputs, labels = next(self._items)
    if step is None:
      return {'block': inputs}
    views = self._views(*self.pool, *inputs, np.int32(step))
    return {'views': views, 'label': labels}

  def close(self):
    self._items.close()
