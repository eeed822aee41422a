"""Augmentation parameters: presets, the effective values of a config, and constants
shared by the host (tf.data, augment.py) and device (JAX, device_augment.py) versions.

Importing this module needs neither TensorFlow nor JAX.
"""

import dataclasses
import math

from simclr_jax.errors import UserError

# Each preset gives every preset-controlled key (the config keys that default to None).
PRESETS = {
    'cifar': dict(jitter_strength=0.5, blur_prob=0.0, flip_ud=False, rot90=False,
                  stain_jitter=0.0, eval_crop_fraction=1.0),
    'imagenet': dict(jitter_strength=1.0, blur_prob=0.5, flip_ud=False, rot90=False,
                     stain_jitter=0.0, eval_crop_fraction=0.875),
    'cytology': dict(jitter_strength=0.5, blur_prob=0.5, flip_ud=True, rot90=True,
                     stain_jitter=0.05, eval_crop_fraction=1.0),
}
PRESET_KEYS = frozenset(PRESETS['cifar'])
assert all(set(p) == PRESET_KEYS for p in PRESETS.values())

# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale.
LUMA = (0.2989, 0.5870, 0.1140)
# Stain vectors (rows: haematoxylin, eosin, DAB) in optical density, as skimage.color.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


@dataclasses.dataclass(frozen=True)
class AugmentParams:
  crop_area_min: float = 0.08
  crop_area_max: float = 1.0
  crop_aspect_min: float = 3 / 4
  crop_aspect_max: float = 4 / 3
  flip_lr: bool = True
  flip_ud: bool = False
  rot90: bool = False
  jitter_strength: float = 0.5
  jitter_prob: float = 0.8
  grayscale_prob: float = 0.2
  blur_prob: float = 0.0
  blur_sigma_min: float = 0.1
  blur_sigma_max: float = 2.0
  stain_jitter: float = 0.0
  eval_crop_fraction: float = 0.875


def resolve_params(config) -> AugmentParams:
  """Effective augmentation values: each key set in config.augment, else (for a key left
  None) the value config.augment.preset gives it."""
  aug = config.augment
  if aug.preset not in PRESETS:
    raise UserError(f'config.augment.preset={aug.preset!r}: expected one of '
                    f'{sorted(PRESETS)}')
  values = {}
  for field in dataclasses.fields(AugmentParams):
    value = aug.get(field.name)
    if value is None:
      if field.name not in PRESET_KEYS:
        raise UserError(f'config.augment.{field.name} is unset (None): only the keys '
                        f'{sorted(PRESET_KEYS)} take their value from the preset')
      value = PRESETS[aug.preset][field.name]
    values[field.name] = type(field.default)(value)
  params = AugmentParams(**values)
  _check_params(params)
  return params


def _check_params(p: AugmentParams):
  def expect(ok, key, what):
    if not ok:
      raise UserError(f'config.augment.{key}={getattr(p, key)!r}: expected {what}')
  expect(0 < p.crop_area_min <= p.crop_area_max, 'crop_area_min', '0 < min <= crop_area_max')
  expect(p.crop_area_max <= 1, 'crop_area_max', 'a value <= 1')
  expect(0 < p.crop_aspect_min <= p.crop_aspect_max, 'crop_aspect_min',
         '0 < min <= crop_aspect_max')
  for key in ('jitter_prob', 'grayscale_prob', 'blur_prob'):
    expect(0 <= getattr(p, key) <= 1, key, 'a probability in [0, 1]')
  expect(p.jitter_strength >= 0, 'jitter_strength', 'a value >= 0')
  expect(0 < p.blur_sigma_min <= p.blur_sigma_max, 'blur_sigma_min',
         '0 < min <= blur_sigma_max')
  expect(p.stain_jitter >= 0, 'stain_jitter', 'a value >= 0')
  expect(0 < p.eval_crop_fraction <= 1, 'eval_crop_fraction', 'a value in (0, 1]')


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
