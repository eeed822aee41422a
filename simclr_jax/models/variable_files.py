"""A module's parameters and batch-norm statistics as one npz file, keyed by their paths
(e.g. `params/stages/0/0/conv1/conv/kernel`): WORKDIR/encoder/ and WORKDIR/classifier/
hold them, loadable with this package alone."""

import jax
import numpy as np
from flax import nnx

from simclr_jax.errors import UserError


def flatten(prefix: str, tree) -> dict:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
    flat['/'.join([prefix] + keys)] = np.asarray(leaf)
  return flat


def save_variables(path: str, module: nnx.Module) -> None:
  """Every parameter and batch-norm statistic of `module`, keyed by its path, as npz."""
  arrays = {}
  arrays.update(flatten('params', jax.device_get(nnx.as_pure(nnx.state(module, nnx.Param)))))
  arrays.update(flatten('batch_stats',
                         jax.device_get(nnx.as_pure(nnx.state(module, nnx.BatchStat)))))
  np.savez(path, **arrays)


def load_variables(path: str, module: nnx.Module) -> None:
  """Loads a `save_variables` file into `module` (in place); names what is missing."""
  with np.load(path) as saved:
    for prefix, kind in (('params', nnx.Param), ('batch_stats', nnx.BatchStat)):
      state = nnx.as_pure(nnx.state(module, kind))
      expected = flatten(prefix, state)
      missing = sorted(set(expected) - set(saved.files))
      if missing:
        raise UserError(f'{path} lacks {len(missing)} arrays, e.g. {missing[:3]}')
      leaves = [saved[key] for key in expected]
      nnx.update(module, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state),
                                                      leaves))
