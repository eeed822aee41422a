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
import jax.numpy as jnp
import optax
from flax import nnx

from simclr_jax import losses, parallel
from simclr_jax.models.heads import compute_dtype
from simclr_jax.train_state import TrainState


def probe_loss_and_accuracy(logits, labels):
  """Cross-entropy and accuracy over the labelled rows (label >= 0) only."""
  labelled = labels >= 0
  count = jnp.maximum(jnp.sum(labelled), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                       jnp.maximum(labels, 0))
  hit = jnp.argmax(logits, axis=-1) == labels
  return jnp.sum(ce * labelled) / count, jnp.sum(hit * labelled) / count


def embed(model, views, dtype, train: bool):
  """views [n, 2, S, S, 3] -> the model's (h, z, probe logits) for the 2n views, rows 2i
  and 2i+1 being image i (a reshape that keeps every device's rows where they are)."""
  n = views.shape[0]
  x = views.reshape((2 * n,) + views.shape[2:]).astype(dtype)
  return model(x, train=train)


def batch_loss(z, logits, labels, mesh, loss_config):
  """The total loss (contrastive + probe) and metrics from the whole batch's z [2N, D] and
  probe logits (None without a probe); `labels` [N] are per image."""
  loss, metrics = losses.sharded_contrastive_loss(
      z, mesh, parallel.DATA_AXIS, name=loss_config.name,
      temperature=loss_config.temperature, margin=loss_config.margin,
      normalize=loss_config.normalize)
  metrics['contrastive_loss'] = loss
  total = loss
  if logits is not None:
    probe_loss, probe_acc = probe_loss_and_accuracy(logits, jnp.repeat(labels, 2))
    metrics.update(probe_loss=probe_loss, probe_acc=probe_acc)
    total = total + probe_loss
  return total, metrics


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


def apply_gradients(state: TrainState, tx, grads, new_stats, loss, metrics, schedule):
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  grad_norm = optax.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  new_state = TrainState(step=state.step + 1, params=params, batch_stats=new_stats,
                         opt_state=opt_state)
  new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old),
                                     new_state, state)
  metrics = dict(metrics, loss=loss, grad_norm=grad_norm, lr=schedule(state.step),
                 finite=finite.astype(jnp.float32))
  return new_state, metrics


def update_fn(grads_fn, tx, schedule):
  """-> update(state, views, labels) -> (state, metrics): one optimisation step, unjitted,
  around any `grads_fn` of the shape `plain_gradients` returns (jitted alone by `jit_update`,
  or scanned over a block of steps by step_blocks.py)."""

  def update(state: TrainState, views, labels):
    loss, new_stats, metrics, grads = grads_fn(state.params, state.batch_stats, views, labels)
    return apply_gradients(state, tx, grads, new_stats, loss, metrics, schedule)

  return update


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
    from simclr_jax import grad_cache  # pylint: disable=g-import-not-at-top (it imports us)
    return grad_cache.make_grad_cache_update(graphdef, tx, schedule, mesh, config)
  return update_fn(plain_gradients(graphdef, mesh, config), tx, schedule)


def make_pretrain_step(graphdef, tx, schedule, mesh, state_sharding, config):
  """Returns step(state, batch) -> (state, metrics), jitted over `mesh`, state donated;
  with gradient caching when `config.grad_cache_chunk > 0`."""
  return jit_update(make_pretrain_update(graphdef, tx, schedule, mesh, config), mesh,
                    state_sharding)
