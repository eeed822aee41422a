"""Frozen-encoder features h for evaluation: one jitted forward pass, batch-sharded."""

import jax
import numpy as np
from flax import nnx

from simclr_jax.errors import UserError
from simclr_jax.runtime import parallel


def make_encode_fn(graphdef, mesh, layer: str = 'h'):
  """(params, batch_stats, images [B, S, S, 3]) -> h [B, F] in inference mode; with
  layer='g', the projection head's output g(h) (the model must have a head)."""

  def encode(params, batch_stats, images):
    model = nnx.merge(graphdef, params, batch_stats)
    encoder = model.encoder if hasattr(model, 'encoder') else model
    h = encoder(images, train=False)
    return model.head(h, train=False) if layer == 'g' else h

  return jax.jit(encode, in_shardings=(parallel.replicated(mesh), parallel.replicated(mesh),
                                       parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def apply_over_batches(apply_fn, params, batch_stats, batches, mesh):
  """Runs a jitted `apply_fn(params, batch_stats, images) -> [B, ...]` (replicated output)
  over batches of {'image', 'label', 'mask'} -> (outputs [n, ...], labels [n]).

  Labels and masks are made global like the images, so with several processes every
  process gets every row, in the same order as the outputs. Padding rows are dropped.
  """
  outputs, labels = [], []
  for batch in batches:
    batch = parallel.to_global_batch(batch, mesh)
    out = np.asarray(jax.device_get(apply_fn(params, batch_stats, batch['image'])))
    mask = np.asarray(_replicated_value(batch['mask']), bool)
    outputs.append(out[mask])
    labels.append(np.asarray(_replicated_value(batch['label']))[mask])
  if not outputs:
    raise UserError('no images to evaluate: a split is empty (config.data.split gives it '
                    'no images, or none of its files decode)')
  return np.concatenate(outputs), np.concatenate(labels)


def _replicated_value(array):
  """The whole of a batch-sharded array on every process (an all-gather across hosts)."""
  if jax.process_count() == 1:
    return jax.device_get(array)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(array, tiled=True)
