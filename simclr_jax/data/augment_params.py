"""Augmentation parameters: presets, the effective values of a config, and constants
shared by the host (tf.data, augment.py) and device (JAX, device_augment.py) versions.
The keys, their defaults and the presets' values are declared in config_keys.py.

Importing this module needs neither TensorFlow nor JAX.
"""

import dataclasses
import math

from simclr_jax.config import checks as config_checks, keys as config_keys
from simclr_jax.errors import UserError

# The config.augment keys that say how augmentation runs; every other one is a parameter.
_SETTINGS = ('preset', 'backend')
_KEYS = {name.removeprefix('augment.'): key for name, key in config_keys.FLAT_KEYS.items()
         if name.startswith('augment.') and name.removeprefix('augment.') not in _SETTINGS}

# {preset: {key: value}}: each preset gives every preset-controlled key (the config keys
# that default to None).
PRESETS = {preset: {name: key.presets[preset] for name, key in _KEYS.items() if key.presets}
           for preset in config_keys.AUGMENT_PRESETS}
PRESET_KEYS = frozenset(PRESETS[config_keys.AUGMENT_PRESETS[0]])
_DEFAULT_PRESET = config_keys.FLAT_KEYS['augment.preset'].default

# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale.
LUMA = (0.2989, 0.5870, 0.1140)
# Stain vectors (rows: haematoxylin, eosin, DAB) in optical density, as skimage.color.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


def _default(name: str):
  key = _KEYS[name]
  return key.presets[_DEFAULT_PRESET] if key.presets else key.default


# One field per augmentation key of config_keys, defaulting to the default config's
# effective value (its preset's for the preset-controlled keys).
AugmentParams = dataclasses.make_dataclass(
    'AugmentParams',
    [(name, type(_default(name)), dataclasses.field(default=_default(name))) for name in _KEYS],
    frozen=True,
    namespace={'__module__': __name__,
               '__doc__': 'The effective augmentation values (resolve_params).'})


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
    values[field.name] = value
  # Also for configs that never went through cli.run's check.
  config_checks.check_values({f'augment.{name}': value for name, value in values.items()})
  return AugmentParams(**{field.name: type(field.default)(values[field.name])
                          for field in dataclasses.fields(AugmentParams)})


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
