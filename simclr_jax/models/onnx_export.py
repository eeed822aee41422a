"""The whole classifier (encoder [+ head] + linear layer) as one ONNX model, by jax2onnx.

The model's input `images` is uint8 [B, S, S, C], NHWC (or NCHW with layout='nchw'): the
image already centre-cropped and resized to S x S as evaluation does (the centre square of
config.augment.eval_crop_fraction of the shorter side). The rest of the preprocessing is
folded in: the division by 255 and the encoder's input normalisation. Outputs: `logits`
[B, classes] and `probs` (their softmax). The batch size is free.

jax2onnx 0.17.1 declares dependencies this project does not use on this path and pins
orbax-checkpoint below the version the project needs, so it is installed without them:
`pip install --no-deps -r requirements-onnx.txt`.
"""

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from simclr_jax.errors import UserError
from simclr_jax.models import weight_files

LAYOUTS = ('nhwc', 'nchw')
INSTALL = 'pip install --no-deps -r requirements-onnx.txt'


def _jax2onnx():
  try:
    import jax2onnx  # pylint: disable=g-import-not-at-top
    import onnx  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise weight_files.MissingDependencyError(
        f'--format=onnx needs jax2onnx and onnx ({e}): {INSTALL}') from e
  return jax2onnx


def classifier_onnx(model: nnx.Module, image_size: int, channels: int, path: str,
                    layout: str = 'nhwc') -> str:
  """Writes `model` (called as model(x in [0, 1], train=False) -> logits) to `path`."""
  if layout not in LAYOUTS:
    raise UserError(f'--layout={layout}: expected one of {LAYOUTS}')
  jax2onnx = _jax2onnx()
  import onnx  # pylint: disable=g-import-not-at-top
  model.eval()

  def classify(images):
    logits = model(images.astype(jnp.float32) / 255, train=False)
    return logits, jax.nn.softmax(logits, axis=-1)

  (batch,) = jax.export.symbolic_shape('B')
  spec = jax.ShapeDtypeStruct((batch, image_size, image_size, channels), jnp.uint8)
  # Its plugin scan logs a traceback for every optional framework it finds missing
  # (equinox, dm_pix, ...), none of which this model uses.
  quiet = logging.getLogger('jax2onnx')
  level = quiet.level
  quiet.setLevel(logging.ERROR)
  try:
    proto = jax2onnx.to_onnx(classify, [spec], model_name='simclr_jax_classifier',
                             input_names=['images'], output_names=['logits', 'probs'],
                             inputs_as_nchw=[0] if layout == 'nchw' else None)
  finally:
    quiet.setLevel(level)
  # jax2onnx 0.17.1 leaves NHWC shapes on intermediate tensors it has moved to NCHW; they
  # are annotations only, and onnxruntime rejects the model with them, so drop them and
  # let the checker infer them again.
  del proto.graph.value_info[:]
  onnx.checker.check_model(proto, full_check=True)
  onnx.save_model(proto, path)
  return path
