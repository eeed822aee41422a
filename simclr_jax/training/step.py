"""The SimCLR training step: one `jax.jit` over the mesh, state donated.

The batch arrives as views [N, 2, S, S, 3] sharded along N. Flattening it to [2N, ...]
keeps each device's rows (rows 2i and 2i+1 are the two views of image i), so no image
crosses devices; batch norm reduces over the sharded 2N axis, which makes its statistics
global; the contrastive loss runs under `jax.shard_map` (see losses.py).

A step whose loss or gradient is not finite leaves the state unchanged and reports
`finite = 0`, so the state the trainer checkpoints is always the last good one.

`config.grad_cache_chunk > 0` swaps the gradient computation for gradient caching
(grad_cache.py); everything else in the step is shared.
"""

import jax
from flax import nnx

from simclr_jax.models.heads import compute_dtype
from simclr_jax.runtime import parallel
from simclr_jax.training import grad_cache
from simclr_jax.training.objective import batch_loss, embed
from simclr_jax.training.state import update_fn


def simclr_loss_fn(graphdef, mesh, loss_config, dtype, train: bool = True):
  """(params, batch_stats, views, labels) -> (total loss, (new batch_stats, metrics)).

  `train=False` runs batch norm on its running averages (used by tests to compare
  gradient computations without batch statistics in the way)."""

  def loss_fn(params, batch_stats, views, labels):
    model = nnx.merge(graphdef, params, batch_stats)
    _, z, logits = embed(model, views, dtype, train)
    total, metrics = batch_loss(z, logits, labels, mesh, loss_config)
    return total, (nnx.as_pure(nnx.state(model, nnx.BatchStat)), metrics)

  return loss_fn


def plain_gradients(graphdef, mesh, config, train: bool = True):
  """-> grads_fn(params, batch_stats, views, labels) -> (loss, new_stats, metrics, grads),
  one forward and backward over the whole batch."""
  loss_fn = simclr_loss_fn(graphdef, mesh, config.loss, compute_dtype(config), train)

  def grads_fn(params, batch_stats, views, labels):
    (loss, (new_stats, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, views, labels)
    return loss, new_stats, metrics, grads

  return grads_fn


def jit_update(update, mesh, state_sharding):
  """The jitted step(state, batch) -> (state, metrics) around `update_fn`'s update."""
  batch_sharding = {'views': parallel.batch_sharding(mesh),
                    'label': parallel.batch_sharding(mesh)}
  return jax.jit(lambda state, batch: update(state, batch['views'], batch['label']),
                 in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, parallel.replicated(mesh)),
                 donate_argnums=0)


def make_pretrain_update(graphdef, tx, schedule, mesh, config):
  """The unjitted update(state, views, labels) -> (state, metrics) of `make_pretrain_step`."""
  if config.grad_cache_chunk > 0:
    return grad_cache.make_grad_cache_update(graphdef, tx, schedule, mesh, config)
  return update_fn(plain_gradients(graphdef, mesh, config), tx, schedule)


def make_pretrain_step(graphdef, tx, schedule, mesh, state_sharding, config):
  """Returns step(state, batch) -> (state, metrics), jitted over `mesh`, state donated;
  with gradient caching when `config.grad_cache_chunk > 0`."""
  return jit_update(make_pretrain_update(graphdef, tx, schedule, mesh, config), mesh,
                    state_sharding)
