"""What the op modules share: TensorFlow imported on first use, each side's random draws,
homogeneous colour matrices, and the device's matmul precision.

The op modules hold host (tf.data) and device (JAX) functions side by side, and the device
path runs where TensorFlow is not installed: so nothing here imports TensorFlow until a
host function runs.
"""

import importlib

import jax
import jax.numpy as jnp


class _TensorFlowOnFirstUse:
  """`tf.NAME` imports TensorFlow the first time a host function needs it."""

  def __getattr__(self, name):
    return getattr(importlib.import_module('tensorflow'), name)


tf = _TensorFlowOnFirstUse()

# Crops and colour matrices: TF32 on GPUs, three bfloat16 passes on TPUs, float32 on CPUs:
# within about 0.1 of a grey level of float32, far cheaper than Precision.HIGHEST (float32
# without tensor cores) at 224 px. The blur keeps the default precision.
PRECISION = jax.lax.Precision.HIGH


# ---------------------------------------------------------------- host (tf.data)

def _fold(seed, salt: int):
  return tf.random.experimental.stateless_fold_in(tf.cast(seed[:2], tf.int64), salt)


def host_uniform(seed, salt: int, shape, low=0.0, high=1.0, dtype=None):
  """Stateless draws of `shape` (rows first) for the op draw numbered `salt`; a [4] seed
  keeps its slice of the global batch's draws (augment.py's docstring)."""
  dtype = tf.float32 if dtype is None else dtype
  if seed.shape[0] != 4:
    return tf.random.stateless_uniform(shape, _fold(seed, salt), low, high, dtype)
  rows = tf.cast(shape[0], tf.int32)
  part, parts = tf.cast(seed[2], tf.int32), tf.cast(seed[3], tf.int32)
  global_shape = tf.concat([[rows * parts], tf.constant(shape[1:], tf.int32)], 0)
  draws = tf.random.stateless_uniform(global_shape, _fold(seed, salt), low, high, dtype)
  return draws[part * rows:(part + 1) * rows]


def host_bernoulli(seed, salt: int, batch, prob):
  return host_uniform(seed, salt, [batch]) < prob


def host_eye(batch, n=3):
  return tf.eye(n, batch_shape=[batch])


def host_affine(linear, bias):
  """Homogeneous 4x4 matrices from [B, 3, 3] linear parts and [B, 3] biases."""
  batch = tf.shape(linear)[0]
  top = tf.concat([linear, bias[:, :, None]], axis=2)
  bottom = tf.tile(tf.constant([[[0., 0., 0., 1.]]]), [batch, 1, 1])
  return tf.concat([top, bottom], axis=1)


# ---------------------------------------------------------------- device (JAX)

def device_uniform(key, shape=(), low=0.0, high=1.0):
  return jax.random.uniform(key, shape, jnp.float32, low, high)


def device_affine(linear, bias):
  """A homogeneous 4x4 matrix from a 3x3 linear part and a bias of 3."""
  return jnp.concatenate([jnp.concatenate([linear, bias[:, None]], axis=1),
                          jnp.array([[0., 0., 0., 1.]])], axis=0)
