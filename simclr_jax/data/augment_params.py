"""Augmentation parameters: presets and the effective values of a config, which the host
(tf.data, augment.py) and device (JAX, device_augment.py) pipelines take. The keys, their
defaults and the presets' values are declared in config/keys.py; the ops that own them in
augment_ops/.

Importing this module needs neither TensorFlow nor JAX.
"""

import dataclasses

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
