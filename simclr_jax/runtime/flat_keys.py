"""A nested config as flat dotted keys: what the config checks walk, what a resume compares
with the checkpoint's config, and what TensorBoard records as hparams."""


def flatten(config, prefix: str = '') -> dict:
  """{'model.width': 0.25, ...} for a ConfigDict (or a plain nested dict)."""
  flat = {}
  for key, value in config.items():
    if hasattr(value, 'items'):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat
