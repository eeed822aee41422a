"""Colour jitter (findings name `jitter`; `color` is jitter + grayscale).

RGB images: brightness, contrast, saturation (factors in [1 - 0.8s, 1 + 0.8s], s =
jitter_strength) and hue (a turn of up to 0.2s), in a random order per view, applied with
probability jitter_prob. Each is an affine map of RGB, so the four compose into one
homogeneous 4x4 matrix per view, which the pipelines fuse with grayscale's and the uint8
scaling into one matrix. Deviations from the authors' TF code, made so the ops compose:
- brightness is a multiplicative factor (as in SimCLRv2 and torchvision), not additive;
- saturation blends with the luma grey image (torchvision style) instead of scaling S in
  HSV; hue is a rotation about the grey axis in YIQ space instead of a shift of H in HSV;
- contrast pulls towards the per-channel mean of the image as it is at that point in the
  chain (exact, since means commute with affine maps), from the mean of the crop given.

Other channel counts (grey, fluorescence channels): brightness and contrast of each channel
on its own (channel matrices), with the same ranges, probability and draws.
"""

import math

import jax.numpy as jnp
import numpy as np

from simclr_jax.data.augment_ops.common import (device_affine, device_uniform,
                                                host_affine, host_bernoulli, host_eye,
                                                host_uniform, tf)
from simclr_jax.data.augment_ops.grayscale import GREY, host_grey
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='jitter',
    keys=('jitter_strength', 'jitter_prob'),
    draws={'brightness': 11, 'contrast': 12, 'saturation': 13, 'hue': 14, 'order': 15,
           'jitter': 16},
    off={'jitter_strength': 0.0, 'jitter_prob': 0.0},
    strengths={'jitter_strength': 0.5, 'jitter_prob': 0.8})
_SALT = OP.draws


def _factor_range(strength: float):
  return max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength


# ---------------------------------------------------------------- host (tf.data)

def _host_hue_rotation(theta):
  """Rotation by theta about the grey axis, in YIQ space: [B] -> [B, 3, 3]."""
  rgb_to_yiq = tf.constant([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
  yiq_to_rgb = tf.linalg.inv(rgb_to_yiq)
  c, s = tf.cos(theta), tf.sin(theta)
  one, zero = tf.ones_like(c), tf.zeros_like(c)
  rot = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, c, -s], -1),
                  tf.stack([zero, s, c], -1)], axis=1)
  return tf.einsum('ij,bjk,kl->bil', yiq_to_rgb, rot, rgb_to_yiq)


def host_jitter_matrix(seed, means, strength: float, prob: float):
  """Per-image colour jitter as homogeneous [B, 4, 4] matrices acting on RGB in [0, 1];
  `means` [B, 3] are the images' per-channel means, needed by contrast."""
  batch = tf.shape(means)[0]
  lo, hi = _factor_range(strength)
  brightness = host_uniform(seed, _SALT['brightness'], [batch], lo, hi)
  contrast = host_uniform(seed, _SALT['contrast'], [batch], lo, hi)
  saturation = host_uniform(seed, _SALT['saturation'], [batch], lo, hi)
  hue = host_uniform(seed, _SALT['hue'], [batch], -0.2 * strength,
                     0.2 * strength) * 2 * math.pi
  order = tf.argsort(host_uniform(seed, _SALT['order'], [batch, 4]), axis=1)
  eye, zeros = host_eye(batch), tf.zeros([batch, 3])
  grey = host_grey(batch)
  fixed_ops = [
      host_affine(eye * brightness[:, None, None], zeros),
      None,  # contrast depends on the current mean, built in the loop
      host_affine(saturation[:, None, None] * eye
                  + (1 - saturation)[:, None, None] * grey, zeros),
      host_affine(_host_hue_rotation(hue), zeros),
  ]
  mean_h = tf.concat([means, tf.ones([batch, 1])], axis=1)
  total = host_eye(batch, 4)
  for slot in range(4):
    current_mean = tf.einsum('bij,bj->bi', total, mean_h)[:, :3]
    contrast_op = host_affine(eye * contrast[:, None, None],
                              (1 - contrast)[:, None] * current_mean)
    ops = tf.stack([fixed_ops[0], contrast_op, fixed_ops[2], fixed_ops[3]], axis=1)
    op = tf.gather(ops, order[:, slot], batch_dims=1)
    total = tf.matmul(op, total)
  apply = host_bernoulli(seed, _SALT['jitter'], batch, prob)[:, None, None]
  return tf.where(apply, total, host_eye(batch, 4))


def host_channel_matrix(seed, means, strength: float, prob: float):
  """Brightness and contrast jitter of each channel on its own: homogeneous
  [B, C + 1, C + 1] matrices for images of C channels with means `means` [B, C].

  Contrast pulls towards the channel's mean; the two ops commute (b (k x + (1 - k) m) =
  k (b x) + (1 - k) b m), so there is no order to draw.
  """
  batch, channels = tf.shape(means)[0], means.shape[-1]
  lo, hi = _factor_range(strength)
  brightness = host_uniform(seed, _SALT['brightness'], [batch, channels], lo, hi)
  contrast = host_uniform(seed, _SALT['contrast'], [batch, channels], lo, hi)
  linear = tf.linalg.diag(brightness * contrast)
  bias = brightness * (1 - contrast) * means
  top = tf.concat([linear, bias[:, :, None]], axis=2)
  bottom = tf.one_hot(tf.fill([batch, 1], channels), channels + 1)
  matrix = tf.concat([top, bottom], axis=1)
  apply = host_bernoulli(seed, _SALT['jitter'], batch, prob)[:, None, None]
  return tf.where(apply, matrix, host_eye(batch, channels + 1))


# ---------------------------------------------------------------- device (JAX)

_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _device_hue_rotation(theta):
  c, s = jnp.cos(theta), jnp.sin(theta)
  rot = jnp.array([[1., 0., 0.], [0., c, -s], [0., s, c]])
  return jnp.asarray(_YIQ_TO_RGB, jnp.float32) @ rot @ jnp.asarray(_RGB_TO_YIQ, jnp.float32)


def device_jitter_matrix(keys, mean, strength: float, prob: float):
  """One view's colour jitter as a homogeneous 4x4 matrix on RGB in [0, 1]; `mean` [3]
  is the view's channel means."""
  lo, hi = _factor_range(strength)
  brightness = device_uniform(keys['brightness'], (), lo, hi)
  contrast = device_uniform(keys['contrast'], (), lo, hi)
  saturation = device_uniform(keys['saturation'], (), lo, hi)
  hue = device_uniform(keys['hue'], (), -0.2 * strength, 0.2 * strength) * 2 * math.pi
  order = jnp.argsort(device_uniform(keys['order'], (4,)))
  eye, zeros = jnp.eye(3), jnp.zeros(3)
  fixed = [device_affine(eye * brightness, zeros), None,
           device_affine(saturation * eye + (1 - saturation) * GREY, zeros),
           device_affine(_device_hue_rotation(hue), zeros)]
  mean_h = jnp.concatenate([mean, jnp.ones(1)])
  total = jnp.eye(4)
  for slot in range(4):
    current_mean = (total @ mean_h)[:3]
    contrast_op = device_affine(eye * contrast, (1 - contrast) * current_mean)
    ops = jnp.stack([fixed[0], contrast_op, fixed[2], fixed[3]])
    total = ops[order[slot]] @ total
  return jnp.where(device_uniform(keys['jitter']) < prob, total, jnp.eye(4))


def device_channel_matrix(keys, mean, strength: float, prob: float):
  """One view's per-channel brightness and contrast jitter, as a homogeneous
  [C + 1, C + 1] matrix; `mean` [C] is the view's channel means."""
  channels = mean.shape[0]
  lo, hi = _factor_range(strength)
  brightness = device_uniform(keys['brightness'], (channels,), lo, hi)
  contrast = device_uniform(keys['contrast'], (channels,), lo, hi)
  matrix = jnp.zeros((channels + 1, channels + 1)).at[channels, channels].set(1.0)
  matrix = matrix.at[:channels, :channels].set(jnp.diag(brightness * contrast))
  matrix = matrix.at[:channels, channels].set(brightness * (1 - contrast) * mean)
  return jnp.where(device_uniform(keys['jitter']) < prob, matrix, jnp.eye(channels + 1))
