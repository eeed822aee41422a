r"""A trained model as plain files any user can load: the encoder, or a whole classifier.

WORKDIR/encoder/ holds `variables.npz` (every parameter and batch-norm statistic, keyed
by its path, e.g. `params/stages/0/0/conv1/conv/kernel`) and `config.json` (the model
settings). Loading needs this package only, no checkpoint tooling:

  from simclr_jax.export import load_encoder
  encoder = load_encoder('WORKDIR/encoder')
  h = encoder(images, train=False)  # images: float [B, S, S, C] in [0, 1]

Other frameworks (`config.export.formats` at the end of pretraining, or afterwards):

  python -m simclr_jax.export --workdir=WORKDIR --format=torchvision

writes WORKDIR/encoder_torchvision.safetensors, a torchvision ResNet state dict without
`fc` (models/torchvision_export.py says what is supported). On a fine-tuning or
linear-evaluation workdir it writes WORKDIR/classifier_torchvision.safetensors, with `fc`
(when the classifier reads h), and

  python -m simclr_jax.export --workdir=WORKDIR --format=onnx [--layout=nchw]

writes WORKDIR/model.onnx, the encoder and the classifier together
(models/onnx_export.py documents its input).
"""

import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from simclr_jax import run_errors, trained_model
from simclr_jax import installed
from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.models import (heads, onnx_export, torchvision_export, variable_files,
                               weight_files)

EXPORT_DIR = 'encoder'
FORMATS = ('torchvision',)  # config.export.formats, written at the end of pretraining
CLI_FORMATS = ('torchvision', 'onnx')  # onnx: a classifier workdir's whole classifier


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


def _classifier_torchvision(workdir: str, path: str | None) -> str:
  """A classifier workdir's encoder and linear layer as torchvision's ResNet with `fc`."""
  model, record = trained_model.load_classifier_module(workdir)
  if getattr(model, 'head1', None) is not None or getattr(model, 'head', None) is not None:
    raise UserError(f'{workdir}: this classifier reads a projection-head layer, not h, so '
                    "it has no torchvision `fc` equivalent; use --format=onnx")
  return export_torchvision(workdir, model.encoder, record['config']['model'], path,
                            classifier=model.classifier)


def _classifier_onnx(workdir: str, path: str | None, layout: str) -> str:
  trained_model.check_classifier_workdir(workdir)
  model, record = trained_model.load_classifier_module(workdir)
  data = record['config']['data']
  return onnx_export.classifier_onnx(model, data['image_size'], data['channels'],
                                     path or os.path.join(workdir, 'model.onnx'), layout)


def export_formats(workdir: str, formats: list, path: str | None = None,
                   layout: str = 'nhwc') -> list:
  """Writes each format; returns the files written. A classifier workdir (fine-tuning,
  linear evaluation) exports its whole classifier, a pretraining its encoder/."""
  if not formats:
    return []
  if not os.path.isdir(workdir):
    raise PathNotFound(f'--workdir={workdir}: no such folder')
  written = []
  if 'onnx' in formats:
    written.append(_classifier_onnx(workdir, path, layout))
  if 'torchvision' in formats:
    if trained_model.has_classifier(workdir):
      written.append(_classifier_torchvision(workdir, path))
    else:
      encoder_dir = os.path.join(workdir, EXPORT_DIR)
      encoder = load_encoder(encoder_dir)
      with open(os.path.join(encoder_dir, 'config.json')) as f:
        settings = json.load(f)['model']
      written.append(export_torchvision(workdir, encoder, settings, path))
  return written


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'A pretraining, fine-tuning or '
                                'linear-evaluation workdir.')
  formats = flags.DEFINE_string('format', 'torchvision', f'One of {list(CLI_FORMATS)}.')
  out = flags.DEFINE_string('out', None, 'The file to write (default: in the workdir).')
  layout = flags.DEFINE_enum('layout', 'nhwc', list(onnx_export.LAYOUTS),
                             'The ONNX model\'s image layout.')

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value:
      raise app.UsageError('--workdir=DIR is required')
    with run_errors.one_line_errors():
      for written in export_formats(os.path.expanduser(workdir.value),
                                    parse_formats(formats.value, CLI_FORMATS), out.value,
                                    layout.value):
        print(written)

  app.run(main, flags_parser=installed.parse_flags)


if __name__ == '__main__':
  _main()
