r"""The trained encoder alone, as plain files any user can load.

WORKDIR/encoder/ holds `variables.npz` (every parameter and batch-norm statistic, keyed
by its path, e.g. `params/stages/0/0/conv1/conv/kernel`) and `config.json` (the model
settings). Loading needs this package only, no checkpoint tooling:

  from simclr_jax.export import load_encoder
  encoder = load_encoder('WORKDIR/encoder')
  h = encoder(images, train=False)  # images: float [B, S, S, C] in [0, 1]

Other frameworks (`config.export.formats` at the end of pretraining, or afterwards):

  python -m simclr_jax.export --workdir=WORKDIR --format=torchvision

writes WORKDIR/encoder_torchvision.safetensors, a torchvision ResNet state dict without
`fc` (models/torchvision_export.py says what is supported).
"""

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from flax import nnx

from simclr_jax.models import heads, torchvision_export, weight_files

EXPORT_DIR = 'encoder'
FORMATS = ('torchvision',)


def _flatten(prefix: str, tree) -> dict:
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path]
    flat['/'.join([prefix] + keys)] = np.asarray(leaf)
  return flat


def save_variables(path: str, module: nnx.Module) -> None:
  """Every parameter and batch-norm statistic of `module`, keyed by its path, as npz."""
  arrays = {}
  arrays.update(_flatten('params', jax.device_get(nnx.as_pure(nnx.state(module, nnx.Param)))))
  arrays.update(_flatten('batch_stats',
                         jax.device_get(nnx.as_pure(nnx.state(module, nnx.BatchStat)))))
  np.savez(path, **arrays)


def load_variables(path: str, module: nnx.Module) -> None:
  """Loads a `save_variables` file into `module` (in place); names what is missing."""
  with np.load(path) as saved:
    for prefix, kind in (('params', nnx.Param), ('batch_stats', nnx.BatchStat)):
      state = nnx.as_pure(nnx.state(module, kind))
      expected = _flatten(prefix, state)
      missing = sorted(set(expected) - set(saved.files))
      if missing:
        raise ValueError(f'{path} lacks {len(missing)} arrays, e.g. {missing[:3]}')
      leaves = [saved[key] for key in expected]
      nnx.update(module, jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(state),
                                                      leaves))


def export_encoder(workdir: str, model: nnx.Module, config) -> str:
  """Writes WORKDIR/encoder/ for `model`'s encoder; returns the folder."""
  encoder = getattr(model, 'encoder', model)
  out = os.path.join(workdir, EXPORT_DIR)
  os.makedirs(out, exist_ok=True)
  save_variables(os.path.join(out, 'variables.npz'), encoder)
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
    raise FileNotFoundError(f'{config_path} not found: expected a folder written by '
                            'export_encoder (WORKDIR/encoder)')
  with open(config_path) as f:
    settings = json.load(f)
  config = ml_collections.ConfigDict({
      'model': settings['model'],
      'data': {'image_size': settings['image_size'], 'channels': settings.get('channels', 3)},
      'compute_dtype': settings['compute_dtype']})
  encoder = heads.build_encoder(config, nnx.Rngs(0))
  load_variables(os.path.join(path, 'variables.npz'), encoder)
  return encoder


def parse_formats(spec: str) -> list:
  """'torchvision' (comma-separated; '' = none) -> the list; an unknown name is an error."""
  formats = [f.strip() for f in spec.split(',') if f.strip()]
  unknown = [f for f in formats if f not in FORMATS]
  if unknown:
    raise ValueError(f'export format {unknown[0]!r} is not one of {list(FORMATS)}')
  return formats


def check_formats(config) -> None:
  """Fails before training when `config.export.formats` cannot be written for this model,
  rather than after it."""
  if 'torchvision' in parse_formats(config.export.formats):
    m = config.model
    reason = torchvision_export.unsupported_reason(m.name, m.width, m.stride_on)
    if reason:
      raise ValueError(f'config.export.formats: {reason}')


def export_torchvision(workdir: str, encoder, model_settings: dict,
                       path: str | None = None) -> str:
  """Writes `encoder` as a torchvision state dict in safetensors; returns the path."""
  reason = torchvision_export.unsupported_reason(
      model_settings['name'], model_settings['width'], model_settings['stride_on'])
  if reason:
    raise ValueError(reason)
  path = path or os.path.join(workdir, 'encoder_torchvision.safetensors')
  metadata = {'format': 'pt', 'source': 'simclr_jax', 'architecture': model_settings['name'],
              'small_stem': str(encoder.small_stem).lower(),
              'input_norm': model_settings['input_norm'],
              'in_channels': str(encoder.stem.conv.in_features)}
  weight_files.write_safetensors(path, torchvision_export.torchvision_state_dict(encoder),
                                 metadata)
  return path


def export_formats(workdir: str, formats: list, path: str | None = None) -> list:
  """Writes each format from WORKDIR/encoder/; returns the files written."""
  if not formats:
    return []
  encoder_dir = os.path.join(workdir, EXPORT_DIR)
  encoder = load_encoder(encoder_dir)
  with open(os.path.join(encoder_dir, 'config.json')) as f:
    settings = json.load(f)['model']
  return [export_torchvision(workdir, encoder, settings, path)] if 'torchvision' in formats else []


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'A pretraining workdir (has encoder/).')
  formats = flags.DEFINE_string('format', 'torchvision', f'One of {list(FORMATS)}.')
  out = flags.DEFINE_string('out', None, 'The file to write (default: in the workdir).')

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value:
      raise app.UsageError('--workdir=DIR is required')
    try:
      for written in export_formats(os.path.expanduser(workdir.value),
                                    parse_formats(formats.value), out.value):
        print(written)
    except (ValueError, FileNotFoundError) as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)

  app.run(main)


if __name__ == '__main__':
  _main()
