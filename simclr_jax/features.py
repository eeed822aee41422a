"""Frozen-encoder features h for evaluation: one jitted forward pass, batch-sharded."""

import jax
import numpy as np
from flax import nnx

from simclr_jax import parallel


def make_encode_fn(graphdef, mesh):
  """(params, batch_stats, images [B, S, S, 3]) -> h [B, F] in inference mode."""

  def encode(params, batch_stats, images):
    model = nnx.merge(graphdef, params, batch_stats)
    encoder = model.encoder if hasattr(model, 'encoder') else model
    return encoder(images, train=False)

  return jax.jit(encode, in_shardings=(parallel.replicated(mesh), parallel.replicated(mesh),
                                       parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


def extract_features(encode_fn, params, batch_stats, batches, mesh):
  """Runs `encode_fn` over batches of {'image', 'label', 'mask'} -> (h [n, F], labels [n]).

  Rows whose mask is False (padding of the last batch) are dropped.
  """
  feats, labels = [], []
  for batch in batches:
    images = parallel.to_global_batch({'image': batch['image']}, mesh)['image']
    h = np.asarray(jax.device_get(encode_fn(params, batch_stats, images)))
    mask = np.asarray(batch['mask'], bool)
    feats.append(h[mask])
    labels.append(np.asarray(batch['label'])[mask])
  if not feats:
    raise ValueError('no images to compute features for')
  return np.concatenate(feats), np.concatenate(labels)
