"""Gaussian blur (findings name `blur`): with probability blur_prob a view is blurred by a
separable Gaussian of sigma uniform in [blur_sigma_min, blur_sigma_max] pixels, padding
with zeros as the authors' code does. The kernel's radius is blur_kernel_radius.

Host: two depthwise convolutions over the picked images, the batch folded into channels.
Device: a banded [S, S] matrix on each side of the view.
"""

import math

import jax.numpy as jnp

from simclr_jax.data.augment_ops.common import device_uniform, host_bernoulli, host_uniform, tf
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='blur',
    keys=('blur_prob', 'blur_sigma_min', 'blur_sigma_max'),
    draws={'blur': 31, 'sigma': 32},
    off={'blur_prob': 0.0},
    strengths={'blur_prob': 0.5})
_SALT = OP.draws


def blur_kernel_radius(side: int, sigma_max: float | None = None) -> int:
  """SimCLR's kernel is 10% of the side: radius (side // 10) // 2, at least 1.

  Taps further than 3 sigma_max from the centre are dropped: there even the widest
  Gaussian has fallen to 1.1% of its peak and the dropped tails hold 0.1% of its mass
  (a quarter of a grey level), while at 224 px the kernel shrinks from 23 to 13 taps,
  nearly halving the blur's cost.
  """
  radius = (side // 10) // 2
  if sigma_max is not None:
    radius = min(radius, math.ceil(3 * sigma_max))
  return max(1, radius)


# ---------------------------------------------------------------- host (tf.data)

def host_blur(x, seed, prob: float = 0.5, sigma_range=(0.1, 2.0)):
  """Blurs the images of x [B, S, S, C] picked with probability `prob`, each with its own
  sigma."""
  batch, side = tf.shape(x)[0], x.shape[1]
  radius = blur_kernel_radius(side, sigma_range[1])
  picked = tf.where(host_bernoulli(seed, _SALT['blur'], batch, prob))[:, 0]
  sigma = tf.gather(host_uniform(seed, _SALT['sigma'], [batch], *sigma_range), picked)

  def blur_picked():
    blurred = host_gaussian(tf.gather(x, picked), sigma, radius)
    return tf.tensor_scatter_nd_update(x, picked[:, None], blurred)

  # A convolution over zero channels is an error: skip it when nothing is picked.
  return tf.cond(tf.size(picked) > 0, blur_picked, lambda: x)


def host_gaussian(x, sigma, radius: int):
  """Blurs each image of x [n, H, W, C] with its sigma [n] (taps within `radius`)."""
  n = tf.shape(x)[0]
  h, w, c = x.shape[1], x.shape[2], x.shape[3]
  taps = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-tf.square(taps)[None, :] / (2 * tf.square(sigma)[:, None]))
  kernel /= tf.reduce_sum(kernel, axis=1, keepdims=True)  # [n, K]
  kernel = tf.transpose(tf.repeat(kernel, c, axis=0))  # [K, n*C]
  # [n, H, W, C] -> [1, H, W, n*C]: each (image, channel) is its own depthwise channel.
  folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c])
  folded = tf.nn.depthwise_conv2d(folded, kernel[None, :, :, None], [1, 1, 1, 1], 'SAME')
  folded = tf.nn.depthwise_conv2d(folded, kernel[:, None, :, None], [1, 1, 1, 1], 'SAME')
  return tf.transpose(tf.reshape(folded, [h, w, n, c]), [2, 0, 1, 3])


# ---------------------------------------------------------------- device (JAX)

def blur_matrix(sigma, side: int, radius: int):
  """[side, side] banded Gaussian (taps within `radius`, normalised, zero padding)."""
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-taps ** 2 / (2 * sigma ** 2))
  kernel = kernel / kernel.sum()
  offset = jnp.arange(side)[None, :] - jnp.arange(side)[:, None]  # column - row
  return jnp.where(jnp.abs(offset) <= radius, kernel[jnp.clip(offset + radius, 0, 2 * radius)],
                   0.0)


def device_blur(keys, x, prob: float, sigma_range):
  """One view [S, S, C] blurred with probability `prob`."""
  side = x.shape[0]
  radius = blur_kernel_radius(side, sigma_range[1])
  sigma = device_uniform(keys['sigma'], (), *sigma_range)
  matrix = jnp.where(device_uniform(keys['blur']) < prob, blur_matrix(sigma, side, radius),
                     jnp.eye(side))
  return jnp.einsum('sy,yxc,tx->stc', matrix, x, matrix)
