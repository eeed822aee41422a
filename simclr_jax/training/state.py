"""The training state, its sharded creation, and the update pretraining and fine-tuning
share (apply_gradients).

The NNX model is split once into a static graph definition and two pytrees (parameters
and batch-norm statistics); the jitted steps merge them back at trace time. Parameters
are always float32; `config.compute_dtype` only sets the activations' dtype.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from simclr_jax.runtime import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def split_model(model: nnx.Module):
  """-> (graphdef, params, batch_stats) as pure pytrees of arrays (no Variable objects, so
  they cross jit and grad boundaries and checkpoint as plain arrays). Fails loudly if the
  model holds other state."""
  graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
  return graphdef, nnx.as_pure(params), nnx.as_pure(stats)


def create_train_state(build_model: Callable[[nnx.Rngs], nnx.Module], tx: optax.GradientTransformation,
                       mesh, seed: int, *, prepare_params=None):
  """Builds the model, optimizer state and step counter replicated on `mesh`.

  `build_model(rngs)` constructs the NNX model; `prepare_params(graphdef, params, stats)`,
  when given, runs on the host after random init (e.g. to load weights) and returns new
  (params, stats). Returns (graphdef, state, state_sharding).
  """
  # Initialised eagerly on the host, then replicated: jitting the initialisers of a deep
  # ResNet compiles for far longer (tens of seconds on CPU) than running them.
  graphdef, params, stats = split_model(build_model(nnx.Rngs(seed)))
  if prepare_params is not None:
    params, stats = prepare_params(graphdef, params, stats)
  replicated = parallel.replicated(mesh)
  params, stats = jax.device_put((params, stats), replicated)

  def init_state(params, stats):
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params))

  state = jax.jit(init_state, out_shardings=replicated)(params, stats)
  state_sharding = jax.tree_util.tree_map(lambda _: replicated, state)
  return graphdef, state, state_sharding


def merge(graphdef, state: TrainState) -> nnx.Module:
  return nnx.merge(graphdef, state.params, state.batch_stats)


def apply_gradients(state: TrainState, tx, grads, new_stats, loss, metrics, schedule):
  """One optimizer step; a non-finite loss or gradient keeps the old state (finite = 0)."""
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
