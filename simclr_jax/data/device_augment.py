"""The SimCLR and cytology augmentations in JAX, run under `jit` on the devices that train.

The same ops, parameters and distributions as augment.py (the tf.data version): random
resized crop from the whole stored image within its real size, flips, 90-degree rotations,
the fused colour matrix (jitter in a random order per view, grayscale), stain jitter and
the separable blur with the same truncated kernel; for images that are not RGB (C != 3),
augment.py's per-channel brightness / contrast jitter instead of the colour ops. The random numbers differ (JAX keys,
not TF stateless seeds), so the two versions agree in distribution, not pixel by pixel.

Each view draws from its own key, fold_in(fold_in(fold_in(key(seed), salt), step), row)
then the view, where `row` is the image's row in the global batch as the hosts numbered
it (sent with the images, so not the device it lands on): a batch is fixed by (seed, step)
whatever the number of devices or processes, so a resumed run sees the same views and a
sharded run equals an unsharded one. `sharded_views` runs the ops inside `jax.shard_map`
over the data axis, so each device augments only its own rows.

Crops (and flips) are two small matmuls per view: bilinear interpolation matrices
[S, H] and [S, W] applied to the uint8 image cast to float, the same sampling as
`tf.image.crop_and_resize` on augment.py's boxes. The blur is a banded [S, S] matrix on
each side (zero padding, as the TF depthwise convolution).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from simclr_jax.data.augment_params import (LUMA, RGB_FROM_HED, AugmentParams,
                                            blur_kernel_radius)

PRETRAIN_SALT, SUPERVISED_SALT = 1, 2
_ATTEMPTS = 10  # crop samples tried before falling back to the whole image (as TF)
_DRAWS = ('area', 'aspect', 'top', 'left', 'flip_lr', 'flip_ud', 'rot90', 'brightness',
          'contrast', 'saturation', 'hue', 'order', 'jitter', 'grey', 'alpha', 'beta',
          'blur', 'sigma')
# Crops and colour matrices: TF32 on GPUs, three bfloat16 passes on TPUs, float32 on CPUs:
# within about 0.1 of a grey level of float32, far cheaper than Precision.HIGHEST (float32
# without tensor cores) at 224 px. The blur keeps the default precision.
_PRECISION = jax.lax.Precision.HIGH


def _draw_keys(key) -> dict:
  return dict(zip(_DRAWS, jax.random.split(key, len(_DRAWS))))


def _uniform(key, shape=(), low=0.0, high=1.0):
  return jax.random.uniform(key, shape, jnp.float32, low, high)


# ---------------------------------------------------------------- geometry

def crop_window(keys, size_hw, area_range, aspect_range):
  """One random-resized-crop window (top, left, height, width) in pixels of an image of
  real size size_hw: area uniform in area_range times the image's, aspect (w / h)
  log-uniform; the first of 10 samples that fits, else the whole image."""
  h, w = size_hw[0], size_hw[1]
  area = _uniform(keys['area'], (_ATTEMPTS,), *area_range) * h * w
  aspect = jnp.exp(_uniform(keys['aspect'], (_ATTEMPTS,), math.log(aspect_range[0]),
                            math.log(aspect_range[1])))
  crop_w, crop_h = jnp.sqrt(area * aspect), jnp.sqrt(area / aspect)
  fits = (crop_w <= w) & (crop_h <= h)
  first = jnp.argmax(fits)
  crop_h = jnp.where(fits.any(), crop_h[first], h)
  crop_w = jnp.where(fits.any(), crop_w[first], w)
  top = _uniform(keys['top']) * (h - crop_h)
  left = _uniform(keys['left']) * (w - crop_w)
  return top, left, crop_h, crop_w


def interpolation_matrix(start, length, flip, out_size: int, padded: int):
  """[out_size, padded] bilinear weights sampling pixel centres start ... start + length
  - 1 (reversed when `flip`), as tf.image.crop_and_resize does on augment.py's boxes."""
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
                    precision=_PRECISION)


def rot90(x, k):
  """Rotates a square [S, S, C] image by k quarter turns counter-clockwise (k traced)."""
  rot1 = jnp.swapaxes(x, 0, 1)[::-1]
  out = jnp.where(k == 1, rot1, x)
  out = jnp.where(k == 2, x[::-1, ::-1], out)
  return jnp.where(k == 3, rot1[::-1, ::-1], out)


def _random_crop(keys, image, size_hw, p: AugmentParams, out_size):
  """The crop [S, S, C] (values 0..255) and its 16 x 16 thumbnail's channel means / 255."""
  size_hw = size_hw.astype(jnp.float32)
  top, left, crop_h, crop_w = crop_window(keys, size_hw, (p.crop_area_min, p.crop_area_max),
                                          (p.crop_aspect_min, p.crop_aspect_max))
  flip_lr = (_uniform(keys['flip_lr']) < 0.5) & p.flip_lr
  flip_ud = (_uniform(keys['flip_ud']) < 0.5) & p.flip_ud
  hp, wp = image.shape[0], image.shape[1]

  def crop(side):
    return resample(image, interpolation_matrix(top, crop_h, flip_ud, side, hp),
                    interpolation_matrix(left, crop_w, flip_lr, side, wp))

  return crop(out_size), jnp.mean(crop(16), axis=(0, 1)) / 255


def _random_rot90(keys, x):
  return rot90(x, jax.random.randint(keys['rot90'], (), 0, 4))


# ---------------------------------------------------------------- colour

def _affine(linear, bias):
  return jnp.concatenate([jnp.concatenate([linear, bias[:, None]], axis=1),
                          jnp.array([[0., 0., 0., 1.]])], axis=0)


_GREY = np.array([LUMA] * 3, np.float32)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _hue_rotation(theta):
  c, s = jnp.cos(theta), jnp.sin(theta)
  rot = jnp.array([[1., 0., 0.], [0., c, -s], [0., s, c]])
  return jnp.asarray(_YIQ_TO_RGB, jnp.float32) @ rot @ jnp.asarray(_RGB_TO_YIQ, jnp.float32)


def jitter_matrix(keys, mean, strength: float, prob: float):
  """One view's colour jitter as a homogeneous 4x4 matrix on RGB in [0, 1]: brightness,
  contrast, saturation in [1 - 0.8s, 1 + 0.8s] and hue up to 0.2s turns, in a random
  order, applied with probability `prob` (augment.jitter_matrix's distributions)."""
  lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
  brightness = _uniform(keys['brightness'], (), lo, hi)
  contrast = _uniform(keys['contrast'], (), lo, hi)
  saturation = _uniform(keys['saturation'], (), lo, hi)
  hue = _uniform(keys['hue'], (), -0.2 * strength, 0.2 * strength) * 2 * math.pi
  order = jnp.argsort(_uniform(keys['order'], (4,)))
  eye, zeros = jnp.eye(3), jnp.zeros(3)
  fixed = [_affine(eye * brightness, zeros), None,
           _affine(saturation * eye + (1 - saturation) * _GREY, zeros),
           _affine(_hue_rotation(hue), zeros)]
  mean_h = jnp.concatenate([mean, jnp.ones(1)])
  total = jnp.eye(4)
  for slot in range(4):
    current_mean = (total @ mean_h)[:3]
    contrast_op = _affine(eye * contrast, (1 - contrast) * current_mean)
    ops = jnp.stack([fixed[0], contrast_op, fixed[2], fixed[3]])
    total = ops[order[slot]] @ total
  return jnp.where(_uniform(keys['jitter']) < prob, total, jnp.eye(4))


def channel_jitter_matrix(keys, mean, strength: float, prob: float):
  """Per-channel brightness and contrast jitter of one view that is not RGB, as a
  homogeneous [C + 1, C + 1] matrix (augment.channel_jitter_matrix's distributions)."""
  channels = mean.shape[0]
  lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
  brightness = _uniform(keys['brightness'], (channels,), lo, hi)
  contrast = _uniform(keys['contrast'], (channels,), lo, hi)
  matrix = jnp.zeros((channels + 1, channels + 1)).at[channels, channels].set(1.0)
  matrix = matrix.at[:channels, :channels].set(jnp.diag(brightness * contrast))
  matrix = matrix.at[:channels, channels].set(brightness * (1 - contrast) * mean)
  return jnp.where(_uniform(keys['jitter']) < prob, matrix, jnp.eye(channels + 1))


def grayscale_matrix(keys, prob: float):
  linear = jnp.where(_uniform(keys['grey']) < prob, _GREY, jnp.eye(3))
  return _affine(linear, jnp.zeros(3))


def apply_affine(x, matrix, input_scale: float = 1.0):
  c = matrix.shape[0] - 1
  out = jnp.einsum('hwc,dc->hwd', x, matrix[:c, :c] * input_scale,
                   precision=_PRECISION) + matrix[:c, c]
  return jnp.clip(out, 0.0, 1.0)


_HED = np.asarray(RGB_FROM_HED, np.float64)
_RGB_FROM_HED_UNIT = _HED / np.linalg.norm(_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED_UNIT)


def stain_jitter(keys, x, strength: float):
  """Haematoxylin-eosin-DAB jitter of one view in [0, 1] (augment.stain_jitter)."""
  alpha = _uniform(keys['alpha'], (3,), 1 - strength, 1 + strength)
  beta = _uniform(keys['beta'], (3,), -strength, strength)
  rgb_from_hed = jnp.asarray(_RGB_FROM_HED_UNIT, jnp.float32)
  linear = (jnp.asarray(_HED_FROM_RGB, jnp.float32) * alpha) @ rgb_from_hed
  od = -jnp.log((x * 255 + 1) / 256)
  od = jnp.einsum('hwc,cd->hwd', od, linear, precision=_PRECISION) + beta @ rgb_from_hed
  return jnp.clip((256 * jnp.exp(-od) - 1) / 255, 0.0, 1.0)


# ---------------------------------------------------------------- blur

def blur_matrix(sigma, side: int, radius: int):
  """[side, side] banded Gaussian (taps within `radius`, normalised, zero padding)."""
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-taps ** 2 / (2 * sigma ** 2))
  kernel = kernel / kernel.sum()
  offset = jnp.arange(side)[None, :] - jnp.arange(side)[:, None]  # column - row
  return jnp.where(jnp.abs(offset) <= radius, kernel[jnp.clip(offset + radius, 0, 2 * radius)],
                   0.0)


def _random_blur(keys, x, p: AugmentParams):
  side = x.shape[0]
  radius = blur_kernel_radius(side, p.blur_sigma_max)
  sigma = _uniform(keys['sigma'], (), p.blur_sigma_min, p.blur_sigma_max)
  matrix = jnp.where(_uniform(keys['blur']) < p.blur_prob, blur_matrix(sigma, side, radius),
                     jnp.eye(side))
  return jnp.einsum('sy,yxc,tx->stc', matrix, x, matrix)


# ---------------------------------------------------------------- whole views

def simclr_view(key, image, size_hw, p: AugmentParams, out_size: int):
  """One augmented view [S, S, C] float32 in [0, 1] of a uint8 image [H, W, C] whose real
  size is size_hw (the rest is padding)."""
  keys = _draw_keys(key)
  x, mean = _random_crop(keys, image, size_hw, p, out_size)
  if p.rot90:
    x = _random_rot90(keys, x)
  if image.shape[-1] != 3:  # not RGB: per-channel brightness / contrast, no colour ops
    x = apply_affine(x, channel_jitter_matrix(keys, mean, p.jitter_strength, p.jitter_prob),
                     1 / 255)
    return _random_blur(keys, x, p) if p.blur_prob > 0 else x
  matrix = jitter_matrix(keys, mean, p.jitter_strength, p.jitter_prob)
  if p.grayscale_prob > 0:
    matrix = grayscale_matrix(keys, p.grayscale_prob) @ matrix
  if p.stain_jitter > 0:
    x = apply_affine(stain_jitter(keys, x / 255, p.stain_jitter), matrix)
  else:
    x = apply_affine(x, matrix, 1 / 255)
  if p.blur_prob > 0:
    x = _random_blur(keys, x, p)
  return x


def simclr_views(images, sizes, keys, p: AugmentParams, out_size: int):
  """Two views per image: uint8 [B, H, W, C], sizes [B, 2], keys [B] -> [B, 2, S, S, C]."""

  def two_views(key, image, size_hw):
    return jnp.stack([simclr_view(jax.random.fold_in(key, v), image, size_hw, p, out_size)
                      for v in range(2)])

  return jax.vmap(two_views)(keys, images, sizes)


def supervised_augment(images, sizes, keys, p: AugmentParams, out_size: int):
  """Random resized crop, flips and cytology rotations: [B, S, S, C] in [0, 1]."""

  def one(key, image, size_hw):
    keys_ = _draw_keys(key)
    x, _ = _random_crop(keys_, image, size_hw, p, out_size)
    return (_random_rot90(keys_, x) if p.rot90 else x) / 255

  return jax.vmap(one)(keys, images, sizes)


def eval_preprocess(images, sizes, p: AugmentParams, out_size: int):
  """The centre square of side eval_crop_fraction * the shorter side, resized."""

  def one(image, size_hw):
    h, w = size_hw[0].astype(jnp.float32), size_hw[1].astype(jnp.float32)
    side = p.eval_crop_fraction * jnp.minimum(h, w)
    rows = interpolation_matrix((h - side) / 2, side, False, out_size, image.shape[0])
    cols = interpolation_matrix((w - side) / 2, side, False, out_size, image.shape[1])
    return resample(image, rows, cols) / 255

  return jax.vmap(one)(images, sizes)


# ---------------------------------------------------------------- keys and sharding

def row_keys(seed: int, salt: int, step, rows):
  """Per-image keys of batch `step`: one per global row index in `rows`."""
  base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), salt), step)
  return jax.vmap(lambda r: jax.random.fold_in(base, r))(rows)


def sharded_views(mesh, axis: str, p: AugmentParams, out_size: int, seed: int,
                  resident: bool = False):
  """-> views(images, sizes, rows, step): [N, 2, S, S, C] from batch-sharded uint8 images,
  sizes and the images' rows in the global batch, each device augmenting its own rows
  (call it inside a jit). With `resident`, views(pool, pool_sizes, indices, rows, step)
  gathers each device's images from a dataset replicated on every device, so the host
  sends only indices."""

  def local(images, sizes, rows, step):
    keys = row_keys(seed, PRETRAIN_SALT, step, rows)
    return simclr_views(images, sizes, keys, p, out_size)

  if resident:
    return jax.shard_map(
        lambda pool, pool_sizes, idx, rows, step: local(pool[idx], pool_sizes[idx], rows, step),
        mesh=mesh, in_specs=(P(), P(), P(axis), P(axis), P()), out_specs=P(axis))
  return jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(axis), P(axis), P()),
                       out_specs=P(axis))


@functools.partial(jax.jit, static_argnames=('p', 'out_size', 'augment'))
def labelled_transform(images, sizes, seed, *, p: AugmentParams, out_size: int,
                       augment: bool):
  """The evaluation / fine-tuning transform on one device (the TensorFlow-free loader):
  supervised augmentation keyed by the host's batch seed (as augment.py's: [2], or [4]
  with the slice of the global batch these rows are, each keyed by its global row), or
  eval preprocessing."""
  if not augment:
    return eval_preprocess(images, sizes, p, out_size)
  key = jax.random.key(0)
  for part in seed[:2]:
    key = jax.random.fold_in(key, part)
  n = images.shape[0]
  first_row = seed[2] * n if seed.shape[0] == 4 else 0
  keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(first_row + jnp.arange(n))
  return supervised_augment(images, sizes, keys, p, out_size)
