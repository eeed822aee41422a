"""Random resized crop (findings name `crop`).

A window whose area is uniform in [crop_area_min, crop_area_max] times the image's real
area (padding excluded) and whose aspect ratio (width / height) is log-uniform in
[crop_aspect_min, crop_aspect_max]: the first of ATTEMPTS samples that fits, else the
whole image (as tf.image.sample_distorted_bounding_box). The window is resized to the
view's side by bilinear sampling; flips (flip.py) reverse its axes.

Host: normalised boxes for `tf.image.crop_and_resize`, one call for a whole batch.
Device: the window as two bilinear interpolation matrices, [S, H] and [S, W], applied to
the uint8 image cast to float: two small matmuls per view, the same sampling as
`tf.image.crop_and_resize` on the host's boxes.
"""

import math

import jax
import jax.numpy as jnp

from simclr_jax.data.augment_ops.common import (PRECISION, device_uniform, host_uniform,
                                                tf)
from simclr_jax.data.augment_ops.op import AugmentOp

ATTEMPTS = 10  # window samples tried before falling back to the whole image


def _switch_on(p) -> dict:
  """The recipe's crop; where the recipe has none (area 1), the paper's."""
  full = p.crop_area_min == 1.0
  return {'crop_area_min': 0.08 if full else p.crop_area_min,
          'crop_area_max': p.crop_area_max,
          'crop_aspect_min': 0.75 if full else p.crop_aspect_min,
          'crop_aspect_max': 4 / 3 if full else p.crop_aspect_max}


OP = AugmentOp(
    name='crop',
    keys=('crop_area_min', 'crop_area_max', 'crop_aspect_min', 'crop_aspect_max'),
    draws={'area': 1, 'aspect': 2, 'top': 3, 'left': 4},
    off={'crop_area_min': 1.0, 'crop_area_max': 1.0, 'crop_aspect_min': 1.0,
         'crop_aspect_max': 1.0},
    switch_on=_switch_on)
_SALT = OP.draws


# ---------------------------------------------------------------- host (tf.data)

def host_crop_boxes(seed, sizes, padded_hw, area_range=(0.08, 1.0),
                    aspect_range=(3 / 4, 4 / 3), attempts=ATTEMPTS):
  """Random-resized-crop boxes [B, 4] (normalised y1, x1, y2, x2 for crop_and_resize) of
  images of real sizes `sizes` [B, 2] padded to `padded_hw`."""
  sizes = tf.cast(sizes, tf.float32)
  batch = tf.shape(sizes)[0]
  h, w = sizes[:, :1], sizes[:, 1:]
  area = host_uniform(seed, _SALT['area'], [batch, attempts], *area_range) * h * w
  log_aspect = host_uniform(seed, _SALT['aspect'], [batch, attempts],
                            math.log(aspect_range[0]), math.log(aspect_range[1]))
  aspect = tf.exp(log_aspect)  # width / height
  crop_w = tf.sqrt(area * aspect)
  crop_h = tf.sqrt(area / aspect)
  fits = (crop_w <= w) & (crop_h <= h)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  any_fits = tf.reduce_any(fits, axis=1)
  crop_h = tf.where(any_fits, tf.gather(crop_h, first, batch_dims=1), h[:, 0])
  crop_w = tf.where(any_fits, tf.gather(crop_w, first, batch_dims=1), w[:, 0])
  top = host_uniform(seed, _SALT['top'], [batch]) * (h[:, 0] - crop_h)
  left = host_uniform(seed, _SALT['left'], [batch]) * (w[:, 0] - crop_w)
  return pixel_boxes(top, left, crop_h, crop_w, padded_hw)


def pixel_boxes(top, left, crop_h, crop_w, padded_hw):
  """Boxes for crop_and_resize from windows in pixels of images padded to padded_hw."""
  # crop_and_resize samples y1 * (H - 1) ... y2 * (H - 1): the first and last pixel
  # centres of the crop.
  hp = tf.cast(tf.maximum(padded_hw[0] - 1, 1), tf.float32)
  wp = tf.cast(tf.maximum(padded_hw[1] - 1, 1), tf.float32)
  y1, x1 = top / hp, left / wp
  y2 = (top + tf.maximum(crop_h - 1, 0)) / hp
  x2 = (left + tf.maximum(crop_w - 1, 0)) / wp
  return tf.stack([y1, x1, y2, x2], axis=1)


def crop_and_resize(images, boxes, out_size: int):
  """Bilinear crops of `images` (any dtype) to float32 [B, S, S, C], values unscaled."""
  batch = tf.shape(images)[0]
  return tf.image.crop_and_resize(images, boxes, tf.range(batch), [out_size, out_size])


# ---------------------------------------------------------------- device (JAX)

def device_crop_window(keys, size_hw, area_range, aspect_range):
  """One view's window (top, left, height, width) in pixels of an image of real size
  size_hw, from the view's draw keys."""
  h, w = size_hw[0], size_hw[1]
  area = device_uniform(keys['area'], (ATTEMPTS,), *area_range) * h * w
  aspect = jnp.exp(device_uniform(keys['aspect'], (ATTEMPTS,), math.log(aspect_range[0]),
                                  math.log(aspect_range[1])))
  crop_w, crop_h = jnp.sqrt(area * aspect), jnp.sqrt(area / aspect)
  fits = (crop_w <= w) & (crop_h <= h)
  first = jnp.argmax(fits)
  crop_h = jnp.where(fits.any(), crop_h[first], h)
  crop_w = jnp.where(fits.any(), crop_w[first], w)
  top = device_uniform(keys['top']) * (h - crop_h)
  left = device_uniform(keys['left']) * (w - crop_w)
  return top, left, crop_h, crop_w


def interpolation_matrix(start, length, flip, out_size: int, padded: int):
  """[out_size, padded] bilinear weights sampling pixel centres start ... start + length
  - 1 (reversed when `flip`), as tf.image.crop_and_resize does on the host's boxes."""
  span = jnp.maximum(length - 1, 0)
  steps = jnp.arange(out_size, dtype=jnp.float32) * (span / max(out_size - 1, 1))
  pos = jnp.where(flip, start + span - steps, start + steps)
  low = jnp.floor(pos)
  frac = pos - low
  low = low.astype(jnp.int32)
  # An index of `padded` (the last pixel, frac 0) one-hots to a zero row: no weight lost.
  return (jax.nn.one_hot(low, padded) * (1 - frac)[:, None]
          + jax.nn.one_hot(low + 1, padded) * frac[:, None])


def resample(image, rows, cols):
  """image [H, W, C] -> [S, S, C] through row [S, H] and column [S, W] weights."""
  return jnp.einsum('sy,yxc,tx->stc', rows, image.astype(jnp.float32), cols,
                    precision=PRECISION)
