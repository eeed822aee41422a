"""Global pretraining batches for the training loop, from either augmentation backend.

`pretrain_feed` yields {'views': [N, 2, S, S, C], 'label': [N]} as global arrays sharded
along the data axis. With the host backend they come from the tf.data pipeline
(pipeline.pretrain_batches) as before. With the device backend a background thread walks
the same index order (pipeline.pretrain_order) and sends the devices either the uint8
images (padded to one shape) or, when the whole pretraining pool fits in
config.data.device_cache_mb, only the indices into a copy of the pool put on every device
once; device_augment then makes the views on the devices, keyed by (config.seed, step).
"""

import functools
import logging

import jax
import numpy as np

from simclr_jax import parallel
from simclr_jax.data import augment_params, device_augment, pipeline, prefetch, stores


def pretrain_feed(config, store, labels, mesh, *, start_step=0, batch_size=None):
  """The pretraining batches of steps start_step, start_step + 1, ... as global arrays."""
  kwargs = dict(start_step=start_step, process_index=jax.process_index(),
                process_count=jax.process_count(), batch_size=batch_size)
  if pipeline.augment_backend(config) == 'host':
    return (parallel.to_global_batch(b, mesh)
            for b in pipeline.pretrain_batches(config, store, labels, **kwargs))
  return DeviceFeed(config, store, labels, mesh, **kwargs)


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
  in_shardings = ((replicated, replicated, batch, replicated) if resident
                  else (batch, batch, replicated))
  return jax.jit(views, in_shardings=in_shardings, out_shardings=batch)


class DeviceFeed:
  """Views augmented on the training devices (config.augment.backend='device')."""

  def __init__(self, config, store, labels, mesh, *, start_step=0, process_index=0,
               process_count=1, batch_size=None):
    self.mesh = mesh
    self.resident = fits_on_device(store, config)
    self.padded_hw = stores.max_size(store)
    self._batch = parallel.batch_sharding(mesh)
    replicated = parallel.replicated(mesh)
    self._views = _jitted_views(mesh, augment_params.resolve_params(config),
                                config.data.image_size, config.seed, self.resident)
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
    self._items = prefetch.threaded(self._host_items(order, store, labels),
                                    max(1, config.data.prefetch))

  def _global(self, array):
    return jax.make_array_from_process_local_data(self._batch, np.asarray(array))

  def _host_items(self, order, store, labels):
    """Runs in the prefetch thread: gathers on the host and starts the transfers."""
    for step, _, _, idx in order:
      if self.resident:
        inputs = (self._global(idx.astype(np.int32)),)
      else:
        images, sizes = store.fetch(idx)
        if self.padded_hw is not None:
          images = stores.pad_to(images, *self.padded_hw)
        else:  # sizes unknown before decoding: few shapes, few compilations
          images = stores.pad_to_bucket(images, 64)
        inputs = (self._global(images), self._global(sizes))
      yield step, inputs, self._global(labels[idx])

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    step, inputs, labels = next(self._items)
    views = self._views(*self.pool, *inputs, np.int32(step))
    return {'views': views, 'label': labels}

  def close(self):
    self._items.close()
