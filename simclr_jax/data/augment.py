"""SimCLR augmentations as batched tf.data ops.

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
per-channel brightness and contrast jitter instead (channel_jitter_matrix).

Presets (`config.augment.preset`): the preset-controlled keys (those in PRESETS) default
to None in `config/defaults.py` (ml_collections placeholders); the preset gives the value
of each key left None, and a key set to any value wins, even one equal to a default or to
another preset's value. So `--config.augment.preset=imagenet` alone gives s = 1 with blur,
`--config.augment.preset=imagenet --config.augment.blur_sigma_max=1.0` refines it, and
`--config.augment.preset=imagenet --config.augment.blur_prob=0.0` turns the blur off.
`resolve_params(config)` returns the effective values; entry points log them.

Deviations from the authors' TF code, made so the colour ops fuse into one matrix:
- brightness is a multiplicative factor (as in SimCLRv2 and torchvision), not additive;
- saturation blends with the luma grey image (torchvision style) instead of scaling S in
  HSV; hue is a rotation about the grey axis in YIQ space instead of a shift of H in HSV;
- the four jitter ops (in a random order per image), grayscale, and the uint8 to [0, 1]
  scaling compose into one 3x4 affine matrix per image, and the result is clipped to
  [0, 1] once at the end rather than after each op. Contrast uses the per-channel mean of
  the image as it is at that point in the chain (exact, since means commute with affine
  maps);
- contrast's per-channel mean is estimated from a 16x16 bilinear sample of the crop
  rather than every pixel of the view;
- the jitter matrix's bias rides through the crop as a fourth channel of ones, so the
  colour transform is one batched matmul with no separate add.
Blur pads with zeros, as the authors' code does.
"""

import math

import tensorflow as tf

# Re-exported: callers and tests name them through this module.
from simclr_jax.data.augment_params import (  # pylint: disable=unused-import
    PRESET_KEYS, PRESETS, AugmentParams, blur_kernel_radius, resolve_params)
from simclr_jax.data.augment_params import LUMA as _LUMA
from simclr_jax.data.augment_params import RGB_FROM_HED as _RGB_FROM_HED


def _fold(seed, salt: int):
  return tf.random.experimental.stateless_fold_in(tf.cast(seed[:2], tf.int64), salt)


def _uniform(seed, salt, shape, low=0.0, high=1.0, dtype=tf.float32):
  """Stateless draws of `shape` (rows first); a [4] seed keeps its slice of the global
  batch's draws (see the module docstring)."""
  if seed.shape[0] != 4:
    return tf.random.stateless_uniform(shape, _fold(seed, salt), low, high, dtype)
  rows = tf.cast(shape[0], tf.int32)
  part, parts = tf.cast(seed[2], tf.int32), tf.cast(seed[3], tf.int32)
  global_shape = tf.concat([[rows * parts], tf.constant(shape[1:], tf.int32)], 0)
  draws = tf.random.stateless_uniform(global_shape, _fold(seed, salt), low, high, dtype)
  return draws[part * rows:(part + 1) * rows]


def _bernoulli(seed, salt, batch, prob):
  return _uniform(seed, salt, [batch]) < prob


# ---------------------------------------------------------------- geometry

def random_crop_boxes(seed, sizes, padded_hw, area_range=(0.08, 1.0),
                      aspect_range=(3 / 4, 4 / 3), attempts=10):
  """Random-resized-crop boxes [B, 4] (normalised y1, x1, y2, x2 for crop_and_resize).

  Area is uniform in area_range times the image's area, the aspect ratio log-uniform in
  aspect_range; the first of `attempts` samples that fits is used, else the whole image
  (as tf.image.sample_distorted_bounding_box).
  """
  sizes = tf.cast(sizes, tf.float32)
  batch = tf.shape(sizes)[0]
  h, w = sizes[:, :1], sizes[:, 1:]
  area = _uniform(seed, 1, [batch, attempts], *area_range) * h * w
  log_aspect = _uniform(seed, 2, [batch, attempts], math.log(aspect_range[0]),
                        math.log(aspect_range[1]))
  aspect = tf.exp(log_aspect)  # width / height
  crop_w = tf.sqrt(area * aspect)
  crop_h = tf.sqrt(area / aspect)
  fits = (crop_w <= w) & (crop_h <= h)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  any_fits = tf.reduce_any(fits, axis=1)
  crop_h = tf.where(any_fits, tf.gather(crop_h, first, batch_dims=1), h[:, 0])
  crop_w = tf.where(any_fits, tf.gather(crop_w, first, batch_dims=1), w[:, 0])
  top = _uniform(seed, 3, [batch]) * (h[:, 0] - crop_h)
  left = _uniform(seed, 4, [batch]) * (w[:, 0] - crop_w)
  return _pixel_boxes(top, left, crop_h, crop_w, padded_hw)


def _pixel_boxes(top, left, crop_h, crop_w, padded_hw):
  # crop_and_resize samples y1 * (H - 1) ... y2 * (H - 1): the first and last pixel
  # centres of the crop.
  hp = tf.cast(tf.maximum(padded_hw[0] - 1, 1), tf.float32)
  wp = tf.cast(tf.maximum(padded_hw[1] - 1, 1), tf.float32)
  y1, x1 = top / hp, left / wp
  y2 = (top + tf.maximum(crop_h - 1, 0)) / hp
  x2 = (left + tf.maximum(crop_w - 1, 0)) / wp
  return tf.stack([y1, x1, y2, x2], axis=1)


def flip_boxes(boxes, seed, flip_lr: bool, flip_ud: bool):
  """Flips half the boxes left-right and/or up-down (a box with x1 > x2 is mirrored)."""
  batch = tf.shape(boxes)[0]
  y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
  if flip_lr:
    flip = _bernoulli(seed, 5, batch, 0.5)
    x1, x2 = tf.where(flip, x2, x1), tf.where(flip, x1, x2)
  if flip_ud:
    flip = _bernoulli(seed, 6, batch, 0.5)
    y1, y2 = tf.where(flip, y2, y1), tf.where(flip, y1, y2)
  return tf.stack([y1, x1, y2, x2], axis=1)


def crop_and_resize(images, boxes, out_size: int):
  """Bilinear crops of `images` (any dtype) to float32 [B, S, S, 3], values unscaled."""
  batch = tf.shape(images)[0]
  return tf.image.crop_and_resize(images, boxes, tf.range(batch), [out_size, out_size])


def random_resized_crop(images, sizes, seed, out_size: int, area_range=(0.08, 1.0),
                        aspect_range=(3 / 4, 4 / 3), flip_lr=False, flip_ud=False):
  """Random resized crop (+ optional flips) of uint8 images to float32 in [0, 1]."""
  boxes = random_crop_boxes(seed, sizes, tf.shape(images)[1:3], area_range, aspect_range)
  boxes = flip_boxes(boxes, seed, flip_lr, flip_ud)
  return crop_and_resize(images, boxes, out_size) * (1 / 255)


def center_crop_resize(images, sizes, out_size: int, crop_fraction: float = 0.875):
  """Evaluation preprocessing: the centre square of side crop_fraction * shorter side,
  resized to out_size (= resize the shorter side to S / fraction, then centre crop S).
  Returns float32 in [0, 1]."""
  sizes = tf.cast(sizes, tf.float32)
  h, w = sizes[:, 0], sizes[:, 1]
  side = crop_fraction * tf.minimum(h, w)
  boxes = _pixel_boxes((h - side) / 2, (w - side) / 2, side, side, tf.shape(images)[1:3])
  return crop_and_resize(images, boxes, out_size) * (1 / 255)


def random_rot90(x, seed):
  """Rotates each square image by a random multiple of 90 degrees."""
  k = _uniform(seed, 7, [tf.shape(x)[0]], 0, 4, tf.int32)
  k = k[:, None, None, None]
  rot1 = tf.transpose(x, [0, 2, 1, 3])[:, ::-1]  # 90 degrees counter-clockwise
  out = tf.where(k == 1, rot1, x)
  out = tf.where(k == 2, x[:, ::-1, ::-1], out)
  return tf.where(k == 3, rot1[:, ::-1, ::-1], out)


# ---------------------------------------------------------------- colour

def _affine(linear, bias):
  """Homogeneous 4x4 matrices from [B, 3, 3] linear parts and [B, 3] biases."""
  batch = tf.shape(linear)[0]
  top = tf.concat([linear, bias[:, :, None]], axis=2)
  bottom = tf.tile(tf.constant([[[0., 0., 0., 1.]]]), [batch, 1, 1])
  return tf.concat([top, bottom], axis=1)


def _grey_matrix(batch):
  return tf.tile(tf.constant([[_LUMA] * 3]), [batch, 1, 1])


def _eye(batch, n=3):
  return tf.eye(n, batch_shape=[batch])


def _hue_rotation(theta):
  """Rotation by theta about the grey axis, in YIQ space: [B] -> [B, 3, 3]."""
  rgb_to_yiq = tf.constant([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]])
  yiq_to_rgb = tf.linalg.inv(rgb_to_yiq)
  c, s = tf.cos(theta), tf.sin(theta)
  one, zero = tf.ones_like(c), tf.zeros_like(c)
  rot = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, c, -s], -1),
                  tf.stack([zero, s, c], -1)], axis=1)
  return tf.einsum('ij,bjk,kl->bil', yiq_to_rgb, rot, rgb_to_yiq)


def jitter_matrix(seed, means, strength: float, prob: float):
  """Per-image colour jitter as homogeneous [B, 4, 4] matrices acting on RGB in [0, 1].

  Brightness, contrast, saturation (factors in [1 - 0.8s, 1 + 0.8s]) and hue (a turn of
  up to 0.2s) in a random order per image, applied with probability `prob`. `means`
  [B, 3] are the images' per-channel means, needed by contrast.
  """
  batch = tf.shape(means)[0]
  lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
  brightness = _uniform(seed, 11, [batch], lo, hi)
  contrast = _uniform(seed, 12, [batch], lo, hi)
  saturation = _uniform(seed, 13, [batch], lo, hi)
  hue = _uniform(seed, 14, [batch], -0.2 * strength, 0.2 * strength) * 2 * math.pi
  order = tf.argsort(_uniform(seed, 15, [batch, 4]), axis=1)
  eye, zeros = _eye(batch), tf.zeros([batch, 3])
  grey = _grey_matrix(batch)
  fixed_ops = [
      _affine(eye * brightness[:, None, None], zeros),
      None,  # contrast depends on the current mean, built in the loop
      _affine(saturation[:, None, None] * eye
              + (1 - saturation)[:, None, None] * grey, zeros),
      _affine(_hue_rotation(hue), zeros),
  ]
  mean_h = tf.concat([means, tf.ones([batch, 1])], axis=1)
  total = _eye(batch, 4)
  for slot in range(4):
    current_mean = tf.einsum('bij,bj->bi', total, mean_h)[:, :3]
    contrast_op = _affine(eye * contrast[:, None, None],
                          (1 - contrast)[:, None] * current_mean)
    ops = tf.stack([fixed_ops[0], contrast_op, fixed_ops[2], fixed_ops[3]], axis=1)
    op = tf.gather(ops, order[:, slot], batch_dims=1)
    total = tf.matmul(op, total)
  apply = _bernoulli(seed, 16, batch, prob)[:, None, None]
  return tf.where(apply, total, _eye(batch, 4))


def channel_jitter_matrix(seed, means, strength: float, prob: float):
  """Brightness and contrast jitter of each channel on its own, for images that are not
  RGB (grey, fluorescence channels): homogeneous [B, C + 1, C + 1] matrices.

  Each channel draws a brightness and a contrast factor in [1 - 0.8s, 1 + 0.8s] (the RGB
  jitter's ranges); applied with probability `prob` per image. Contrast pulls towards the
  channel's mean `means` [B, C]; the two ops commute (b (k x + (1 - k) m) = k (b x) +
  (1 - k) b m), so there is no order to draw.
  """
  batch, channels = tf.shape(means)[0], means.shape[-1]
  lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
  brightness = _uniform(seed, 11, [batch, channels], lo, hi)
  contrast = _uniform(seed, 12, [batch, channels], lo, hi)
  linear = tf.linalg.diag(brightness * contrast)
  bias = brightness * (1 - contrast) * means
  top = tf.concat([linear, bias[:, :, None]], axis=2)
  bottom = tf.one_hot(tf.fill([batch, 1], channels), channels + 1)
  matrix = tf.concat([top, bottom], axis=1)
  apply = _bernoulli(seed, 16, batch, prob)[:, None, None]
  return tf.where(apply, matrix, _eye(batch, channels + 1))


def grayscale_matrix(seed, batch, prob: float):
  """Homogeneous [B, 4, 4]: luma grey (three equal channels) with probability `prob`."""
  apply = _bernoulli(seed, 17, batch, prob)[:, None, None]
  linear = tf.where(apply, _grey_matrix(batch), _eye(batch))
  return _affine(linear, tf.zeros([batch, 3]))


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


def color_transform(x, seed, strength, jitter_prob, grayscale_prob, input_scale=1.0):
  """Colour jitter then random grayscale, fused into one matrix per image."""
  batch = tf.shape(x)[0]
  means = tf.reduce_mean(x, axis=[1, 2]) * input_scale
  matrix = jitter_matrix(seed, means, strength, jitter_prob)
  if grayscale_prob > 0:
    matrix = tf.matmul(grayscale_matrix(seed, batch, grayscale_prob), matrix)
  return apply_affine(x, matrix, input_scale)


def color_jitter(x, seed, strength: float = 0.5, prob: float = 0.8):
  return color_transform(x, seed, strength, prob, 0.0)


def random_grayscale(x, seed, prob: float = 0.2):
  return color_transform(x, seed, 0.0, 0.0, prob)


def stain_jitter(x, seed, strength: float = 0.05):
  """Haematoxylin-eosin-DAB jitter (Tellez et al. 2018): in optical density, each stain's
  concentration becomes c * U(1 - s, 1 + s) + U(-s, s). x in [0, 1] -> [0, 1]."""
  batch = tf.shape(x)[0]
  rgb_from_hed = tf.math.l2_normalize(tf.constant(_RGB_FROM_HED), axis=1)
  hed_from_rgb = tf.linalg.inv(rgb_from_hed)
  alpha = _uniform(seed, 21, [batch, 3], 1 - strength, 1 + strength)
  beta = _uniform(seed, 22, [batch, 3], -strength, strength)
  # Row vectors: od' = od @ hed_from_rgb @ diag(alpha) @ rgb_from_hed + beta @ rgb_from_hed
  linear = tf.einsum('ij,bj,jk->bik', hed_from_rgb, alpha, rgb_from_hed)
  bias = tf.einsum('bj,jk->bk', beta, rgb_from_hed)
  od = -tf.math.log((x * 255 + 1) / 256)
  od = tf.einsum('bhwc,bcd->bhwd', od, linear) + bias[:, None, None, :]
  return tf.clip_by_value((256 * tf.exp(-od) - 1) / 255, 0.0, 1.0)


# ---------------------------------------------------------------- blur

def gaussian_blur(x, seed, prob: float = 0.5, sigma_range=(0.1, 2.0)):
  """Separable Gaussian blur of the images picked with probability `prob`, each with its
  own sigma, as two depthwise convolutions with the batch folded into channels."""
  batch, side = tf.shape(x)[0], x.shape[1]
  radius = blur_kernel_radius(side, sigma_range[1])
  picked = tf.where(_bernoulli(seed, 31, batch, prob))[:, 0]
  sigma = tf.gather(_uniform(seed, 32, [batch], *sigma_range), picked)

  def blur_picked():
    blurred = _blur(tf.gather(x, picked), sigma, radius)
    return tf.tensor_scatter_nd_update(x, picked[:, None], blurred)

  # A convolution over zero channels is an error: skip it when nothing is picked.
  return tf.cond(tf.size(picked) > 0, blur_picked, lambda: x)


def _blur(x, sigma, radius):
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


# ---------------------------------------------------------------- whole pipelines

def simclr_views(images, sizes, seed, params: AugmentParams, out_size: int):
  """Two independent views of each uint8 image: float32 [B, 2, S, S, C] in [0, 1].

  Both views of the batch are made together as 2B rows (row 2i + v is view v of image
  i), so the result reshapes to [B, 2, ...] without a copy.
  """
  batch = tf.shape(images)[0]
  rows = tf.repeat(tf.range(batch), 2)
  boxes = random_crop_boxes(seed, tf.gather(sizes, rows), tf.shape(images)[1:3],
                            (params.crop_area_min, params.crop_area_max),
                            (params.crop_aspect_min, params.crop_aspect_max))
  boxes = flip_boxes(boxes, seed, params.flip_lr, params.flip_ud)
  # crop_and_resize is fastest on float32 input (uint8 is cast per sample, and a fourth
  # channel costs a third more): cast the batch once.
  source = tf.cast(images, tf.float32)
  means = tf.reduce_mean(tf.image.crop_and_resize(source, boxes, rows, [16, 16]),
                         axis=[1, 2]) / 255
  x = tf.image.crop_and_resize(source, boxes, rows, [out_size, out_size])
  if params.rot90:
    x = random_rot90(x, seed)
  channels = images.shape[-1]
  if channels != 3:  # not RGB: per-channel brightness / contrast, no colour ops
    matrix = channel_jitter_matrix(seed, means, params.jitter_strength, params.jitter_prob)
    x = _apply_affine_255(x, matrix)
  elif params.stain_jitter > 0:
    matrix = _rgb_matrix(seed, means, params, 2 * batch)
    # Stain jitter comes first and is not affine: apply it, then the colour matrix.
    x = stain_jitter(x / 255, seed, params.stain_jitter)
    x = apply_affine(x, matrix)
  else:
    x = _apply_affine_255(x, _rgb_matrix(seed, means, params, 2 * batch))
  if params.blur_prob > 0:
    x = gaussian_blur(x, seed, params.blur_prob,
                      (params.blur_sigma_min, params.blur_sigma_max))
  return tf.reshape(x, [batch, 2, out_size, out_size, channels])


def _rgb_matrix(seed, means, params: AugmentParams, rows):
  """Colour jitter then random grayscale, as one [rows, 4, 4] matrix."""
  matrix = jitter_matrix(seed, means, params.jitter_strength, params.jitter_prob)
  if params.grayscale_prob > 0:
    matrix = tf.matmul(grayscale_matrix(seed, rows, params.grayscale_prob), matrix)
  return matrix


def supervised_augment(images, sizes, seed, params: AugmentParams, out_size: int):
  """Standard supervised augmentation: random resized crop, flips, cytology rotations."""
  x = random_resized_crop(images, sizes, seed, out_size,
                          (params.crop_area_min, params.crop_area_max),
                          (params.crop_aspect_min, params.crop_aspect_max),
                          params.flip_lr, params.flip_ud)
  return random_rot90(x, seed) if params.rot90 else x


def eval_preprocess(images, sizes, params: AugmentParams, out_size: int):
  return center_crop_resize(images, sizes, out_size, params.eval_crop_fraction)
