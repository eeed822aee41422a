"""Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup"): the contrastive loss of a batch far larger than the activations
that fit in memory, with the same gradient.

The loss couples every view with every other, so the batch cannot simply be split into
accumulated micro-batches. But it only depends on the parameters through the embeddings z,
so dL/dθ = Σ_chunks (dz_chunk/dθ)ᵀ · dL/dz_chunk:

  1. embed the batch chunk by chunk under `lax.scan`, keeping only h and z (no
     activations: nothing is differentiated in this pass);
  2. differentiate the loss (the sharded contrastive loss over the whole [2N, D] z, so
     it stays global across devices, plus the online probe on the cached h) with respect
     to z and the probe's parameters;
  3. re-run each chunk's forward under `jax.vjp` and pull its slice of dL/dz back to
     parameter gradients, summed over chunks in a second `lax.scan`.

Peak memory is one chunk's activations plus the batch's h and z, at the cost of a second
forward pass (about a third more compute).

Chunk size: `config.grad_cache_chunk` is in images PER DEVICE (each image gives two views,
kept in the same chunk), since per-device memory is what it bounds. It must divide the
per-device batch `config.batch_size / num_devices`. Chunk k holds rows
[k·c, (k+1)·c) of every device's block, so each chunk stays spread over all devices and
no image moves between devices (checked in tests against the compiled HLO).

Batch norm: each chunk is normalised with its own statistics (global over the chunk's
rows on all devices, as in the plain step) rather than the whole batch's, and the running
averages are updated once per chunk, in chunk order. With one chunk per device the step
is the plain step. Pass 3 recomputes the chunk exactly as pass 1 did (train-mode batch
norm does not read the running averages), so the gradient is exact for that model.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from simclr_jax.errors import UserError
from simclr_jax.models.heads import compute_dtype
from simclr_jax.runtime import parallel
from simclr_jax.training import objective
from simclr_jax.training.state import update_fn


def chunks_per_device(global_batch: int, num_devices: int, chunk: int) -> int:
  per_device = global_batch // num_devices
  if chunk <= 0 or per_device % chunk:
    raise UserError(
        f'config.grad_cache_chunk={chunk} must divide the per-device batch '
        f'{per_device} (global batch {global_batch} over {num_devices} devices)')
  return per_device // chunk


def to_chunks(x, mesh, num_chunks):
  """[B, ...] sharded along B -> [num_chunks, B / num_chunks, ...] sharded along axis 1,
  chunk k taking rows [k·c, (k+1)·c) of every device's block (a local relabelling)."""
  n_dev = mesh.devices.size
  rows = x.reshape((n_dev, num_chunks, -1) + x.shape[1:]).swapaxes(0, 1)
  rows = rows.reshape((num_chunks, -1) + x.shape[1:])
  return jax.lax.with_sharding_constraint(rows, NamedSharding(mesh, P(None, parallel.DATA_AXIS)))


def from_chunks(x, mesh):
  """The inverse of `to_chunks`: [num_chunks, b, ...] -> [num_chunks·b, ...]."""
  n_dev, num_chunks = mesh.devices.size, x.shape[0]
  rows = x.reshape((num_chunks, n_dev, -1) + x.shape[2:]).swapaxes(0, 1)
  rows = rows.reshape((-1,) + x.shape[2:])
  return jax.lax.with_sharding_constraint(rows, parallel.batch_sharding(mesh))


def cached_gradients(graphdef, mesh, config, train: bool = True):
  """-> grads_fn(params, batch_stats, views, labels) -> (loss, new_stats, metrics, grads),
  the same contract as `step.plain_gradients`; `train=False` runs batch norm on
  its running averages, where both give the same gradient."""
  dtype = compute_dtype(config)
  chunk = config.grad_cache_chunk
  n_dev = mesh.devices.size
  chunk_sharding = parallel.batch_sharding(mesh)

  def embed_chunk(params, batch_stats, views):
    """One chunk's views [b, 2, ...] -> ((h, z) for its 2b views, updated batch_stats)."""
    views = jax.lax.with_sharding_constraint(views, chunk_sharding)
    model = nnx.merge(graphdef, params, batch_stats)
    h, z, _ = objective.embed(model, views, dtype, train)
    return (h, z), nnx.as_pure(nnx.state(model, nnx.BatchStat))

  def grads_fn(params, batch_stats, views, labels):
    num_chunks = chunks_per_device(views.shape[0], n_dev, chunk)
    view_chunks = to_chunks(views, mesh, num_chunks)

    # 1. Embeddings without activations; batch_stats threaded through the chunks in order.
    def embed_step(stats, chunk_views):
      (h, z), stats = embed_chunk(params, stats, chunk_views)
      return stats, (h, z)

    new_stats, (h, z) = jax.lax.scan(embed_step, batch_stats, view_chunks)
    h, z = from_chunks(h, mesh), from_chunks(z, mesh)

    # 2. dL/dz, and the probe's whole gradient (it only sees the stop-gradient h).
    def loss_from_embeddings(z, params):
      probe = nnx.merge(graphdef, params, batch_stats).probe
      logits = probe(jax.lax.stop_gradient(h)) if probe is not None else None
      return objective.batch_loss(z, logits, labels, mesh, config.loss)

    (loss, metrics), (dz, grads) = jax.value_and_grad(
        loss_from_embeddings, argnums=(0, 1), has_aux=True)(z, params)

    # 3. Each chunk's forward again, its slice of dL/dz pulled back to the parameters.
    def backward_step(grads, chunk):
      chunk_views, chunk_dz = chunk
      _, pull_back = jax.vjp(lambda p: embed_chunk(p, batch_stats, chunk_views)[0][1],
                             params)
      (chunk_grads,) = pull_back(chunk_dz)
      return jax.tree_util.tree_map(jnp.add, grads, chunk_grads), None

    grads, _ = jax.lax.scan(backward_step, grads,
                            (view_chunks, to_chunks(dz, mesh, num_chunks)))
    return loss, new_stats, metrics, grads

  return grads_fn


def make_grad_cache_update(graphdef, tx, schedule, mesh, config):
  """`step.make_pretrain_update` with gradient caching: same arguments, same
  update(state, views, labels) -> (state, metrics), same metrics."""
  parallel.check_batch_divides(config.batch_size, mesh)
  chunks_per_device(config.batch_size, mesh.devices.size, config.grad_cache_chunk)
  return update_fn(cached_gradients(graphdef, mesh, config), tx, schedule)
