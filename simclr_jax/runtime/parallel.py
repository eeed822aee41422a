"""The device mesh and the shardings the training step uses.

One mesh axis, 'data', spans every device of every process: the global batch is split
along it and parameters are replicated. Its axis type is Auto, so that XLA's sharding
propagation places the collectives of ops written for one device (batch-norm statistics
over the sharded batch become an all-reduce: the paper's global BN).
"""

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from simclr_jax.errors import UserError

DATA_AXIS = 'data'


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D data-parallel mesh over the first `num_devices` devices (all by default)."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f'asked for {n} devices, only {len(devices)} are visible')
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:n])


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def stacked_sharding(mesh, x) -> NamedSharding:
  """A block of steps' input (training/step_blocks.py): the leading (step) axis on every
  device, the batch axis after it sharded like a single step's batch; per-step scalars
  replicated."""
  if x.ndim <= 1:
    return replicated(mesh)
  return NamedSharding(mesh, P(None, DATA_AXIS))


def check_batch_divides(global_batch: int, mesh, what: str = 'config.batch_size') -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f'{what}={global_batch} must be divisible by the number of devices ({n})')


def to_global_batch(local_batch: dict, mesh) -> dict:
  """This process's slice of the batch -> global arrays sharded along the data axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}
