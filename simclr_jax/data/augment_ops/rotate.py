"""Random rotations by multiples of 90 degrees (findings name `rotate`, key rot90): for
cytology, where a cell has no up. Views are square, so a rotation keeps their shape.
"""

import jax
import jax.numpy as jnp

from simclr_jax.data.augment_ops.common import host_uniform, tf
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='rotate',
    keys=('rot90',),
    draws={'rot90': 7},
    off={'rot90': False},
    switch_on=lambda p: {'rot90': True})


def host_rot90(x, seed):
  """Rotates each square image of x [B, S, S, C] by a random multiple of 90 degrees."""
  k = host_uniform(seed, OP.draws['rot90'], [tf.shape(x)[0]], 0, 4, tf.int32)
  k = k[:, None, None, None]
  rot1 = tf.transpose(x, [0, 2, 1, 3])[:, ::-1]  # 90 degrees counter-clockwise
  out = tf.where(k == 1, rot1, x)
  out = tf.where(k == 2, x[:, ::-1, ::-1], out)
  return tf.where(k == 3, rot1[:, ::-1, ::-1], out)


def device_rot90(keys, x):
  """One view [S, S, C] rotated by a random multiple of 90 degrees."""
  return rot90(x, jax.random.randint(keys['rot90'], (), 0, 4))


def rot90(x, k):
  """Rotates a square [S, S, C] image by k quarter turns counter-clockwise (k traced)."""
  rot1 = jnp.swapaxes(x, 0, 1)[::-1]
  out = jnp.where(k == 1, rot1, x)
  out = jnp.where(k == 2, x[::-1, ::-1], out)
  return jnp.where(k == 3, rot1[::-1, ::-1], out)
