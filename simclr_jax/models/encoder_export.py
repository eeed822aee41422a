r"""An encoder as plain files any user can load, and as torchvision's state dict.

WORKDIR/encoder/ holds `variables.npz` (every parameter and batch-norm statistic, keyed
by its path, e.g. `params/stages/0/0/conv1/conv/kernel`) and `config.json` (the model
settings). Loading needs this package only, no checkpoint tooling:

  from simclr_jax.export import load_encoder
  encoder = load_encoder('WORKDIR/encoder')
  h = encoder(images, train=False)  # images: float [B, S, S, C] in [0, 1]

Pretraining writes WORKDIR/encoder/ and the formats of `config.export.formats`;
python -m simclr_jax.export writes them afterwards, and a classifier's as well
(inference/model_export.py).
"""

import json
import os

import ml_collections
import numpy as np
from flax import nnx

from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.models import heads, torchvision_export, variable_files, weight_files

EXPORT_DIR = 'encoder'
FORMATS = ('torchvision',)  # config.export.formats, written at the end of pretraining


def export_encoder(workdir: str, model: nnx.Module, config) -> str:
  """Writes WORKDIR/encoder/ for `model`'s encoder; returns the folder."""
  encoder = getattr(model, 'encoder', model)
  out = os.path.join(workdir, EXPORT_DIR)
  os.makedirs(out, exist_ok=True)
  variable_files.save_variables(os.path.join(out, 'variables.npz'), encoder)
  settings = {'model': config.model.to_dict(), 'image_size': config.data.image_size,
              'channels': config.data.channels,
              'compute_dtype': 'float32', 'num_features': encoder.num_features}
  with open(os.path.join(out, 'config.json'), 'w') as f:
    json.dump(settings, f, indent=2)
  return out


def load_encoder(path: str):
  """The encoder saved by `export_encoder`, as an NNX module."""
  config_path = os.path.join(path, 'config.json')
  if not os.path.isfile(config_path):
    raise PathNotFound(f'{config_path} not found: expected a folder written by '
                       'export_encoder (WORKDIR/encoder)')
  with open(config_path) as f:
    settings = json.load(f)
  config = ml_collections.ConfigDict({
      'model': settings['model'],
      'data': {'image_size': settings['image_size'], 'channels': settings.get('channels', 3)},
      'compute_dtype': settings['compute_dtype']})
  encoder = heads.build_encoder(config, nnx.Rngs(0))
  variable_files.load_variables(os.path.join(path, 'variables.npz'), encoder)
  return encoder


def parse_formats(spec: str, allowed=FORMATS) -> list:
  """'torchvision' (comma-separated; '' = none) -> the list; an unknown name is an error."""
  formats = [f.strip() for f in spec.split(',') if f.strip()]
  unknown = [f for f in formats if f not in allowed]
  if unknown:
    raise UserError(f'export format {unknown[0]!r} is not one of {list(allowed)}')
  return formats


def check_formats(config) -> None:
  """Fails before training when `config.export.formats` cannot be written for this model,
  rather than after it."""
  if 'torchvision' in parse_formats(config.export.formats):
    m = config.model
    reason = torchvision_export.unsupported_reason(m.name, m.width, m.stride_on)
    if reason:
      raise UserError(f'config.export.formats: {reason}')


def export_torchvision(workdir: str, encoder, model_settings: dict,
                       path: str | None = None, classifier=None) -> str:
  """Writes `encoder` as a torchvision state dict in safetensors, with `fc` from
  `classifier` (an nnx.Linear on h) when given; returns the path."""
  reason = torchvision_export.unsupported_reason(
      model_settings['name'], model_settings['width'], model_settings['stride_on'])
  if reason:
    raise UserError(reason)
  name = 'classifier_torchvision' if classifier is not None else 'encoder_torchvision'
  path = path or os.path.join(workdir, f'{name}.safetensors')
  metadata = {'format': 'pt', 'source': 'simclr_jax', 'architecture': model_settings['name'],
              'small_stem': str(encoder.small_stem).lower(),
              'input_norm': model_settings['input_norm'],
              'in_channels': str(encoder.stem.conv.in_features)}
  tensors = torchvision_export.torchvision_state_dict(encoder)
  if classifier is not None:
    tensors['fc.weight'] = np.asarray(classifier.kernel[...], np.float32).T.copy()
    tensors['fc.bias'] = np.asarray(classifier.bias[...], np.float32)
  weight_files.write_safetensors(path, tensors, metadata)
  return path


def export_encoder_formats(workdir: str, formats: list, path: str | None = None) -> list:
  """Writes WORKDIR/encoder/ in each of `formats` (FORMATS); returns the files written."""
  written = []
  if 'torchvision' in formats:
    encoder_dir = os.path.join(workdir, EXPORT_DIR)
    encoder = load_encoder(encoder_dir)
    with open(os.path.join(encoder_dir, 'config.json')) as f:
      settings = json.load(f)['model']
    written.append(export_torchvision(workdir, encoder, settings, path))
  return written
