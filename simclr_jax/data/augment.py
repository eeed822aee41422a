"""SimCLR augmentations as batched tf.data ops: the whole pipelines (simclr_views,
supervised_augment, eval_preprocess) built from the ops of data/augment_ops/.

Every op works on a whole batch at once (batch first, then augment): one
`tf.image.crop_and_resize` makes the random resized crops (and flips) of a batch, one
einsum applies every image's colour distortion, and one depthwise convolution blurs the
images picked for blur. All randomness is stateless (`tf.random.stateless_*`) from a
`seed` tensor, so a seed fixes the output. A seed of shape [2] seeds a whole batch; one of
shape [4], (seed of the global batch [2], slice, slices), marks the batch as rows
slice * B ... (slice + 1) * B - 1 of a global batch of slices * B rows split among
processes: every draw is then made for the global batch and this slice's rows kept, so an
image's randomness depends on its row in the global batch, not on how many processes
share it (with slices = 1 the draws are the [2] seed's).

Images enter as uint8 [B, H, W, C] padded to the batch's largest size, with each image's
real size in `sizes` [B, 2] (height, width); ops after the crop work on float32
[B, S, S, C] in [0, 1]. Crops, flips, rotations and blur treat every channel alike; colour
jitter, grayscale and stain jitter are RGB ops (C = 3 only); other channel counts get
per-channel brightness and contrast jitter instead (augment_ops/jitter.py).

Presets (`config.augment.preset`): the preset-controlled keys (those in PRESETS) default
to None in `config/defaults.py` (ml_collections placeholders); the preset gives the value
of each key left None, and a key set to any value wins, even one equal to a default or to
another preset's value. So `--config.augment.preset=imagenet` alone gives s = 1 with blur,
`--config.augment.preset=imagenet --config.augment.blur_sigma_max=1.0` refines it, and
`--config.augment.preset=imagenet --config.augment.blur_prob=0.0` turns the blur off.
`resolve_params(config)` returns the effective values; entry points log them.

Fusion, where these pipelines differ from applying the ops one after another:
- the colour jitter (in a random order per image), grayscale and the uint8 to [0, 1]
  scaling compose into one affine matrix per image, and the result is clipped to [0, 1]
  once at the end rather than after each op; stain jitter, not affine, comes before it;
- contrast's per-channel mean is estimated from a 16x16 bilinear sample of the crop
  rather than every pixel of the view;
- without stain jitter the matrix multiplies the crop's 0..255 values directly, a few
  pixels per row (_apply_affine_255).
"""

import tensorflow as tf

from simclr_jax.data.augment_ops import blur, crop, flip, grayscale, jitter, rotate, stain
# Re-exported: callers and tests name them through this module.
from simclr_jax.data.augment_ops.blur import blur_kernel_radius  # pylint: disable=unused-import
from simclr_jax.data.augment_ops.crop import crop_and_resize  # pylint: disable=unused-import
from simclr_jax.data.augment_params import (  # pylint: disable=unused-import
    PRESET_KEYS, PRESETS, AugmentParams, resolve_params)

random_crop_boxes = crop.host_crop_boxes
random_rot90 = rotate.host_rot90
stain_jitter = stain.host_stain_jitter
gaussian_blur = blur.host_blur


# ---------------------------------------------------------------- geometry

def random_resized_crop(images, sizes, seed, out_size: int, area_range=(0.08, 1.0),
                        aspect_range=(3 / 4, 4 / 3), flip_lr=False, flip_ud=False):
  """Random resized crop (+ optional flips) of uint8 images to float32 in [0, 1]."""
  boxes = crop.host_crop_boxes(seed, sizes, tf.shape(images)[1:3], area_range, aspect_range)
  boxes = flip.host_flip_boxes(boxes, seed, flip_lr, flip_ud)
  return crop.crop_and_resize(images, boxes, out_size) * (1 / 255)


def center_crop_resize(images, sizes, out_size: int, crop_fraction: float = 0.875):
  """Evaluation preprocessing: the centre square of side crop_fraction * shorter side,
  resized to out_size (= resize the shorter side to S / fraction, then centre crop S).
  Returns float32 in [0, 1]."""
  sizes = tf.cast(sizes, tf.float32)
  h, w = sizes[:, 0], sizes[:, 1]
  side = crop_fraction * tf.minimum(h, w)
  boxes = crop.pixel_boxes((h - side) / 2, (w - side) / 2, side, side,
                           tf.shape(images)[1:3])
  return crop.crop_and_resize(images, boxes, out_size) * (1 / 255)


# ---------------------------------------------------------------- colour

def apply_affine(x, matrix, input_scale: float = 1.0):
  """x' = clip(A (input_scale x) + b, 0, 1) per image, with one einsum; matrix
  [B, C + 1, C + 1]."""
  c = matrix.shape[-1] - 1
  linear = matrix[:, :c, :c] * input_scale
  out = tf.einsum('bhwc,bdc->bhwd', x, linear) + matrix[:, None, None, :c, c]
  return tf.clip_by_value(out, 0.0, 1.0)


def _apply_affine_255(x, matrix, pixels_per_row: int = 4):
  """apply_affine(x / 255, matrix) for x [B, H, W, C] with H * W divisible by 4.

  A matmul whose inner dimension is 3 is slow in oneDNN, so `pixels_per_row` pixels make
  one row of C * pixels_per_row values and the colour matrix becomes block diagonal
  (kron(I, A^T)): the same products, a few times faster.
  """
  batch, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
  k = pixels_per_row if (h * w) % pixels_per_row == 0 else 1
  linear = tf.transpose(matrix[:, :c, :c], [0, 2, 1]) * (1 / 255)  # [B, in, out]
  blocks = tf.reshape(tf.einsum('ij,bcd->bicjd', tf.eye(k), linear), [batch, c * k, c * k])
  bias = tf.tile(matrix[:, None, :c, c], [1, 1, k])  # [B, 1, Ck]
  out = tf.matmul(tf.reshape(x, [batch, -1, c * k]), blocks) + bias
  return tf.reshape(tf.clip_by_value(out, 0.0, 1.0), [batch, h, w, c])


def _rgb_matrix(seed, means, strength, jitter_prob, grayscale_prob, rows):
  """Colour jitter then random grayscale, as one [rows, 4, 4] matrix."""
  matrix = jitter.host_jitter_matrix(seed, means, strength, jitter_prob)
  if grayscale_prob > 0:
    matrix = tf.matmul(grayscale.host_grayscale_matrix(seed, rows, grayscale_prob), matrix)
  return matrix


def color_transform(x, seed, strength, jitter_prob, grayscale_prob, input_scale=1.0):
  """Colour jitter then random grayscale, fused into one matrix per image."""
  means = tf.reduce_mean(x, axis=[1, 2]) * input_scale
  matrix = _rgb_matrix(seed, means, strength, jitter_prob, grayscale_prob, tf.shape(x)[0])
  return apply_affine(x, matrix, input_scale)


def color_jitter(x, seed, strength: float = 0.5, prob: float = 0.8):
  return color_transform(x, seed, strength, prob, 0.0)


def random_grayscale(x, seed, prob: float = 0.2):
  return color_transform(x, seed, 0.0, 0.0, prob)


# ---------------------------------------------------------------- whole pipelines

def simclr_views(images, sizes, seed, params: AugmentParams, out_size: int):
  """Two independent views of each uint8 image: float32 [B, 2, S, S, C] in [0, 1].

  Both views of the batch are made together as 2B rows (row 2i + v is view v of image
  i), so the result reshapes to [B, 2, ...] without a copy.
  """
  batch = tf.shape(images)[0]
  rows = tf.repeat(tf.range(batch), 2)
  boxes = crop.host_crop_boxes(seed, tf.gather(sizes, rows), tf.shape(images)[1:3],
                               (params.crop_area_min, params.crop_area_max),
                               (params.crop_aspect_min, params.crop_aspect_max))
  boxes = flip.host_flip_boxes(boxes, seed, params.flip_lr, params.flip_ud)
  # crop_and_resize is fastest on float32 input (uint8 is cast per sample, and a fourth
  # channel costs a third more): cast the batch once.
  source = tf.cast(images, tf.float32)
  means = tf.reduce_mean(tf.image.crop_and_resize(source, boxes, rows, [16, 16]),
                         axis=[1, 2]) / 255
  x = tf.image.crop_and_resize(source, boxes, rows, [out_size, out_size])
  if params.rot90:
    x = rotate.host_rot90(x, seed)
  channels = images.shape[-1]
  if channels != 3:  # not RGB: per-channel brightness / contrast, no colour ops
    matrix = jitter.host_channel_matrix(seed, means, params.jitter_strength,
                                        params.jitter_prob)
    x = _apply_affine_255(x, matrix)
  else:
    matrix = _rgb_matrix(seed, means, params.jitter_strength, params.jitter_prob,
                         params.grayscale_prob, 2 * batch)
    if params.stain_jitter > 0:
      # Stain jitter comes first and is not affine: apply it, then the colour matrix.
      x = apply_affine(stain.host_stain_jitter(x / 255, seed, params.stain_jitter), matrix)
    else:
      x = _apply_affine_255(x, matrix)
  if params.blur_prob > 0:
    x = blur.host_blur(x, seed, params.blur_prob,
                       (params.blur_sigma_min, params.blur_sigma_max))
  return tf.reshape(x, [batch, 2, out_size, out_size, channels])


def supervised_augment(images, sizes, seed, params: AugmentParams, out_size: int):
  """Standard supervised augmentation: random resized crop, flips, cytology rotations."""
  x = random_resized_crop(images, sizes, seed, out_size,
                          (params.crop_area_min, params.crop_area_max),
                          (params.crop_aspect_min, params.crop_aspect_max),
                          params.flip_lr, params.flip_ud)
  return rotate.host_rot90(x, seed) if params.rot90 else x


def eval_preprocess(images, sizes, params: AugmentParams, out_size: int):
  return center_crop_resize(images, sizes, out_size, params.eval_crop_fraction)
