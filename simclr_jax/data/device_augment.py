"""The SimCLR and cytology augmentations in JAX, run under `jit` on the devices that train.

The same ops, parameters and distributions as augment.py (the tf.data version): random
resized crop from the whole stored image within its real size, flips, 90-degree rotations,
the fused colour matrix (jitter in a random order per view, grayscale), stain jitter and
the separable blur with the same truncated kernel; for images that are not RGB (C != 3),
the per-channel brightness / contrast jitter instead of the colour ops. The random numbers
differ (JAX keys, not TF stateless seeds), so the two versions agree in distribution, not
pixel by pixel.

Each view draws from its own key, fold_in(fold_in(fold_in(key(seed), salt), step), row)
then the view, where `row` is the image's row in the global batch as the hosts numbered
it (sent with the images, so not the device it lands on): a batch is fixed by (seed, step)
whatever the number of devices or processes, so a resumed run sees the same views and a
sharded run equals an unsharded one. `sharded_views` runs the ops inside `jax.shard_map`
over the data axis, so each device augments only its own rows. Within a view, the key is
split into one key per draw of the ops (_DRAWS, in the order of augment_ops.OPS).

The ops themselves (their device functions) are in data/augment_ops/; here they are fused
as on the host: one colour matrix per view (jitter and grayscale, with the uint8 scaling),
stain jitter before it, contrast's mean from a 16 x 16 thumbnail of the crop.
"""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from simclr_jax.data import augment_ops
from simclr_jax.data.augment_ops import blur, crop, flip, grayscale, jitter, rotate, stain
from simclr_jax.data.augment_ops.common import PRECISION
# Re-exported: callers and tests name them through this module.
from simclr_jax.data.augment_ops.blur import blur_matrix  # pylint: disable=unused-import
from simclr_jax.data.augment_ops.crop import (  # pylint: disable=unused-import
    interpolation_matrix, resample)
from simclr_jax.data.augment_params import AugmentParams

PRETRAIN_SALT, SUPERVISED_SALT = 1, 2
# Each view's key is split into one key per name, in this order (it fixes the numbers).
_DRAWS = augment_ops.DRAWS
crop_window = crop.device_crop_window


def _draw_keys(key) -> dict:
  return dict(zip(_DRAWS, jax.random.split(key, len(_DRAWS))))


def _random_crop(keys, image, size_hw, p: AugmentParams, out_size):
  """The crop (and flips) [S, S, C] (values 0..255) and its 16 x 16 thumbnail's channel
  means / 255."""
  size_hw = size_hw.astype(jnp.float32)
  top, left, crop_h, crop_w = crop.device_crop_window(
      keys, size_hw, (p.crop_area_min, p.crop_area_max),
      (p.crop_aspect_min, p.crop_aspect_max))
  flip_lr, flip_ud = flip.device_flips(keys, p.flip_lr, p.flip_ud)
  hp, wp = image.shape[0], image.shape[1]

  def crop_to(side):
    return resample(image, interpolation_matrix(top, crop_h, flip_ud, side, hp),
                    interpolation_matrix(left, crop_w, flip_lr, side, wp))

  return crop_to(out_size), jnp.mean(crop_to(16), axis=(0, 1)) / 255


def apply_affine(x, matrix, input_scale: float = 1.0):
  """clip(A (input_scale x) + b, 0, 1) for one view x [S, S, C] and a homogeneous
  [C + 1, C + 1] matrix."""
  c = matrix.shape[0] - 1
  out = jnp.einsum('hwc,dc->hwd', x, matrix[:c, :c] * input_scale,
                   precision=PRECISION) + matrix[:c, c]
  return jnp.clip(out, 0.0, 1.0)


def _random_blur(keys, x, p: AugmentParams):
  return blur.device_blur(keys, x, p.blur_prob, (p.blur_sigma_min, p.blur_sigma_max))


# ---------------------------------------------------------------- whole views

def simclr_view(key, image, size_hw, p: AugmentParams, out_size: int):
  """One augmented view [S, S, C] float32 in [0, 1] of a uint8 image [H, W, C] whose real
  size is size_hw (the rest is padding)."""
  keys = _draw_keys(key)
  x, mean = _random_crop(keys, image, size_hw, p, out_size)
  if p.rot90:
    x = rotate.device_rot90(keys, x)
  if image.shape[-1] != 3:  # not RGB: per-channel brightness / contrast, no colour ops
    x = apply_affine(x, jitter.device_channel_matrix(keys, mean, p.jitter_strength,
                                                     p.jitter_prob), 1 / 255)
    return _random_blur(keys, x, p) if p.blur_prob > 0 else x
  matrix = jitter.device_jitter_matrix(keys, mean, p.jitter_strength, p.jitter_prob)
  if p.grayscale_prob > 0:
    matrix = grayscale.device_grayscale_matrix(keys, p.grayscale_prob) @ matrix
  if p.stain_jitter > 0:
    x = apply_affine(stain.device_stain_jitter(keys, x / 255, p.stain_jitter), matrix)
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
    return (rotate.device_rot90(keys_, x) if p.rot90 else x) / 255

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
