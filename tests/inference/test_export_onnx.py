"""The classifier exported whole to ONNX gives JAX's logits in onnxruntime; the torchvision
export of a classifier carries its fc layer; a missing converter is one clear line."""

import pathlib
import sys

import numpy as np
import pytest

from simclr_jax.evaluation import trained_model
from simclr_jax.inference import model_export
from simclr_jax.models import torchvision_export, weight_files
from tiny_trained_runs import trained_runs


@pytest.fixture(scope='module')
def runs():
  return trained_runs()


def _uint8_test_images(runs) -> np.ndarray:
  """The test images centre-cropped to the model's 16 px: what the ONNX model takes."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  images = [np.asarray(Image.open(p)) for p in runs['test_paths']]
  return np.stack([im[2:18, 2:18] for im in images])


@pytest.mark.parametrize('run,layout', [('finetune', 'nhwc'), ('linear', 'nchw')])
def test_onnxruntime_gives_jaxs_logits(runs, tmp_path, run, layout):
  ort = pytest.importorskip('onnxruntime')
  pytest.importorskip('jax2onnx')
  path = str(tmp_path / 'model.onnx')
  assert model_export.export_formats(runs[run], ['onnx'], path, layout) == [path]
  images = _uint8_test_images(runs)
  model, _ = trained_model.load_classifier_module(runs[run])
  expected = np.asarray(model(images.astype(np.float32) / 255, train=False))
  session = ort.InferenceSession(path)
  feed = images if layout == 'nhwc' else images.transpose(0, 3, 1, 2)
  logits, probs = session.run(['logits', 'probs'], {'images': feed})
  scale = np.abs(expected).max()
  np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4 * scale)
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  assert (logits.argmax(1) == expected.argmax(1)).all()


def test_onnx_needs_a_classifier_and_names_the_missing_converter(runs, tmp_path, monkeypatch):
  with pytest.raises(ValueError, match='pretraining run'):
    model_export.export_formats(runs['pretrain'], ['onnx'], str(tmp_path / 'm.onnx'))
  monkeypatch.setitem(sys.modules, 'jax2onnx', None)  # as if not installed
  with pytest.raises(weight_files.MissingDependencyError,
                     match='pip install --no-deps -r requirements-onnx.txt'):
    model_export.export_formats(runs['finetune'], ['onnx'], str(tmp_path / 'm.onnx'))
  assert not list(tmp_path.iterdir())


def test_torchvision_export_of_a_classifier_writes_fc(runs, tmp_path, monkeypatch):
  # torchvision's ResNets have width 1 only; the tiny run's layers map the same way.
  monkeypatch.setattr(torchvision_export, 'unsupported_reason', lambda *args: None)
  path = str(tmp_path / 'classifier.safetensors')
  assert model_export.export_formats(runs['finetune'], ['torchvision'], path) == [path]
  tensors = weight_files.read_tensors(path, 'safetensors')
  model, _ = trained_model.load_classifier_module(runs['finetune'])
  np.testing.assert_array_equal(tensors['fc.weight'], np.asarray(model.classifier.kernel[...]).T)
  np.testing.assert_array_equal(tensors['fc.bias'], np.asarray(model.classifier.bias[...]))
  assert tensors['conv1.weight'].shape == (4, 3, 3, 3)  # the small stem at 16 px
