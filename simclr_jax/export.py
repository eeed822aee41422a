"""The trained encoder alone, as plain files any user can load.

WORKDIR/encoder/ holds `variables.npz` (every parameter and batch-norm statistic, keyed
by its path, e.g. `params/stages/0/0/conv1/conv/kernel`) and `config.json` (the model
settings). Loading needs this package only, no checkpoint tooling:

  from simclr_jax.export import load_encoder
  encoder = load_encoder('WORKDIR/encoder')
  h = encoder(images, train=False)  # images: float [B, S, S, 3] in [0, 1]
"""

import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from simclr_jax.models import heads

EXPORT_DIR = 'encoder'


def _flatten(prefix: str, tree) -> dict:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
    flat['/'.join([prefix] + keys)] = np.asarray(leaf)
  return flat


def export_encoder(workdir: str, model: nnx.Module, config) -> str:
  """Writes WORKDIR/encoder/ for `model`'s encoder; returns the folder."""
  encoder = getattr(model, 'encoder', model)
  out = os.path.join(workdir, EXPORT_DIR)
  os.makedirs(out, exist_ok=True)
  arrays = {}
  arrays.update(_flatten('params', jax.device_get(nnx.as_pure(nnx.state(encoder, nnx.Param)))))
  arrays.update(_flatten('batch_stats',
                         jax.device_get(nnx.as_pure(nnx.state(encoder, nnx.BatchStat)))))
  np.savez(os.path.join(out, 'variables.npz'), **arrays)
  settings = {'model': config.model.to_dict(), 'image_size': config.data.image_size,
              'compute_dtype': 'float32', 'num_features': encoder.num_features}
  with open(os.path.join(out, 'config.json'), 'w') as f:
    json.dump(settings, f, indent=2)
  return out


def load_encoder(path: str):
  """The encoder saved by `export_encoder`, as an NNX module."""
  config_path = os.path.join(path, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{config_path} not found: expected a folder written by '
                            'export_encoder (WORKDIR/encoder)')
  with open(config_path) as f:
    settings = json.load(f)
  config = ml_collections.ConfigDict({
      'model': settings['model'], 'data': {'image_size': settings['image_size']},
      'compute_dtype': settings['compute_dtype']})
  encoder = heads.build_encoder(config, nnx.Rngs(0))
  with np.load(os.path.join(path, 'variables.npz')) as saved:
    for prefix, kind in (('params', nnx.Param), ('batch_stats', nnx.BatchStat)):
      state = nnx.as_pure(nnx.state(encoder, kind))
      expected = _flatten(prefix, state)
      missing = sorted(set(expected) - set(saved.files))
      if missing:
        raise ValueError(f'{path}/variables.npz lacks {len(missing)} arrays, e.g. {missing[:3]}')
      leaves = [saved[key] for key in expected]
      nnx.update(encoder, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state),
                                                       leaves))
  return encoder
