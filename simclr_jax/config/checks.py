"""The type and range of every config key, checked when a run starts (cli.run).

`--config.KEY=VALUE` gets its type from ml_collections, but not its range: a zero
log_every_steps or a NaN temperature would otherwise surface as a traceback minutes into
the run. `check(config)` raises one UserError naming the first bad key, its value and what
was expected. Each key's rule is declared with the key in config_keys.py; the relations
between keys are here. Keys whose meaning depends on the data or the files (paths, class
names, comma-separated lists) are checked where they are used, with messages of the same form.
"""

from simclr_jax.config import keys as config_keys
from simclr_jax.errors import UserError

# {'model.width': rule, ...}: each rule returns None for a good value, else what was expected.
RULES = {name: key.problem for name, key in config_keys.FLAT_KEYS.items()}

# (low, high): keys whose values must not decrease from the first to the second.
ORDERED_PAIRS = (('augment.crop_area_min', 'augment.crop_area_max'),
                 ('augment.crop_aspect_min', 'augment.crop_aspect_max'),
                 ('augment.blur_sigma_min', 'augment.blur_sigma_max'))


def flatten(config, prefix: str = '') -> dict:
  """{'model.width': 0.25, ...} for a ConfigDict (or a plain nested dict)."""
  flat = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def check(config) -> None:
  """Raises UserError('config.KEY=VALUE: expected ...') for the first bad key."""
  check_values(flatten(config))


def check_values(flat: dict) -> None:
  """check() for {'augment.blur_prob': 0.5, ...}: each key's rule, then the relations
  between the keys given."""
  for key, value in flat.items():
    rule = RULES.get(key)
    problem = rule(value) if rule else None
    if problem:
      raise UserError(f'config.{key}={value!r}: expected {problem}')
  for low, high in ORDERED_PAIRS:
    if low in flat and high in flat and flat[low] > flat[high]:
      raise UserError(f'config.{low}={flat[low]!r}: expected a value <= config.{high} '
                      f'({flat[high]!r})')
