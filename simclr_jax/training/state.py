"""The training state and its sharded creation.

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

from simclr_jax import parallel


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
