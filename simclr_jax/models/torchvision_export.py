"""The encoder as a torchvision ResNet state dict: the inverse of the import in pretrained.py.

Supported: ResNet-18 … 152 at width 1 (torchvision's `resnetNN` have only that width; its
`wide_resnet50_2` widens the bottleneck's inner convs only, not SimCLR's whole network),
with v1.5 strides (torchvision's; Keras-imported v1 bottlenecks would compute something
else in torchvision). Every conv and batch-norm tensor is written, running statistics
included; `fc` is not (SimCLR has no classifier), so torch loads the file with
`strict=False` and reports `fc.weight`, `fc.bias` as missing.

The small (CIFAR) stem, a 3×3 stride-1 conv without max-pool, is written under the same
names (`conv1.weight` is then [64, 3, 3, 3]); torchvision has no such stem, so swap it in
before loading:

  model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  model.maxpool = torch.nn.Identity()

A batch-norm epsilon other than torchvision's 1e-5 (a Keras-imported 1.001e-5) is folded
into `running_var`, which leaves the outputs exactly as they were. The input normalisation
stays outside the weights: the file's metadata says which one the encoder was trained with
(`none`: RGB in [0, 1]; `imagenet`: torchvision's Normalize; `caffe`: Keras's BGR, 0-255,
mean-subtracted).
"""

import numpy as np

from simclr_jax.models import pretrained, resnet

TORCH_BN_EPSILON = 1e-5


def unsupported_reason(name: str, width: float, stride_on: str) -> str | None:
  """Why a `config.model` cannot be exported to torchvision, or None when it can."""
  if float(width) != 1.0:
    return (f'torchvision export needs config.model.width=1 (torchvision has no SimCLR '
            f'width multiplier); this encoder has width {width}')
  if resnet.ARCHITECTURES.get(name, ('',))[0] == 'bottleneck' and stride_on != 'v1.5':
    return (f'torchvision export needs config.model.stride_on=v1.5 (torchvision places the '
            f'bottleneck stride in the 3x3 conv); this {name} has {stride_on!r}')
  return None


def torchvision_state_dict(encoder: resnet.ResNet) -> dict:
  """{torchvision name: float32 numpy array} for every layer of `encoder`, plus each batch
  norm's `num_batches_tracked` (0: torch uses it only with momentum=None)."""
  tensors = {}
  for conv_bn, (kernel, scale, bias, mean, var) in pretrained.torchvision_layers(encoder):
    bn = conv_bn.bn
    tensors[kernel] = np.transpose(_array(conv_bn.conv.kernel), (3, 2, 0, 1))  # HWIO -> OIHW
    tensors[scale] = _array(bn.scale)
    tensors[bias] = _array(bn.bias)
    tensors[mean] = _array(bn.mean)
    # BN divides by sqrt(var + eps): moving the epsilon difference into var is exact.
    tensors[var] = (_array(bn.var, np.float64) + (float(bn.epsilon) - TORCH_BN_EPSILON)
                    ).astype(np.float32)
    tensors[mean.rsplit('.', 1)[0] + '.num_batches_tracked'] = np.zeros((), np.int64)
  return tensors


def _array(variable, dtype=np.float32) -> np.ndarray:
  return np.asarray(variable[...], dtype=dtype)
