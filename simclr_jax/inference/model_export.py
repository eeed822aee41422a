"""A trained run in other frameworks' formats: a classifier workdir (fine-tuning, linear
evaluation) as torchvision's ResNet with `fc` or as one ONNX model, a pretraining workdir's
encoder as torchvision's ResNet (models/encoder_export.py).
"""

import os

from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.evaluation import trained_model
from simclr_jax.models import encoder_export, onnx_export

CLI_FORMATS = ('torchvision', 'onnx')  # onnx: a classifier workdir's whole classifier


def _classifier_torchvision(workdir: str, path: str | None) -> str:
  """A classifier workdir's encoder and linear layer as torchvision's ResNet with `fc`."""
  model, record = trained_model.load_classifier_module(workdir)
  if getattr(model, 'head1', None) is not None or getattr(model, 'head', None) is not None:
    raise UserError(f'{workdir}: this classifier reads a projection-head layer, not h, so '
                    "it has no torchvision `fc` equivalent; use --format=onnx")
  return encoder_export.export_torchvision(workdir, model.encoder, record['config']['model'],
                                          path, classifier=model.classifier)


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
      written += encoder_export.export_encoder_formats(workdir, ['torchvision'], path)
  return written
