"""Every config key the project knows, with its default.

Each `configs/NAME.py` starts from `get_default_config()` and overrides what it needs,
so every key exists in every config and `--config.KEY=VALUE` can set any of them
(ml_collections rejects unknown keys and values of the wrong type). The keys, their
defaults, rules and documentation are declared once, in config_keys.py; docs/config_keys.md
lists them.
"""

import ml_collections
from ml_collections import config_dict

from simclr_jax.config import keys as config_keys


def get_default_config() -> ml_collections.ConfigDict:
  return _config_dict(config_keys.KEYS)


def _config_dict(tree: dict) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  for name, item in tree.items():
    if isinstance(item, config_keys.Section):
      c[name] = _config_dict(item.keys)
    elif isinstance(item.default, config_keys.Unset):
      # A fresh placeholder per config: one shared FieldReference would tie them together.
      c[name] = config_dict.placeholder(item.default.type)
    else:
      c[name] = item.default
  return c
