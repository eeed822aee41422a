"""ResNet-18 … ResNet-152 encoders (Flax NNX) with SimCLR's width multiplier.

The encoder f maps images in [0, 1] to h, the globally average-pooled features of the last
stage. Parameters are named `stem.{conv,bn}`, `stages.S.B.convK.{conv,bn}` and
`stages.S.B.downsample.{conv,bn}` (S, B, K counted from 0, 0, 1), which weight importers
map torchvision and Keras names onto.

Stride placement: 'v1.5' puts a bottleneck's stride in its 3×3 conv (torchvision, the
SimCLR authors' code); 'v1' puts it in the first 1×1 conv (Keras applications). Padding is
explicit and symmetric, as in both sources, so imported weights give the same outputs.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from simclr_jax.errors import UserError

# name -> (block kind, blocks per stage)
ARCHITECTURES = {
    'resnet18': ('basic', (2, 2, 2, 2)),
    'resnet34': ('basic', (3, 4, 6, 3)),
    'resnet50': ('bottleneck', (3, 4, 6, 3)),
    'resnet101': ('bottleneck', (3, 4, 23, 3)),
    'resnet152': ('bottleneck', (3, 8, 36, 3)),
}

# Normalisations applied to [0, 1] RGB inputs inside the model, so the data pipeline is the
# same whatever weights the encoder starts from. Inputs that are not RGB (C != 3 channels)
# get the average of the three colours' statistics on every channel (ImageNet: mean 0.449,
# std 0.226; Caffe: x 255 minus 114.8, no channel reversal), the grey image's statistics.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# He-normal fan-out init, as torchvision and the SimCLR authors use for convs.
_conv_init = nnx.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def normalize_input(x: jax.Array, mode: str) -> jax.Array:
  rgb = x.shape[-1] == 3
  if mode == 'none':
    return x
  if mode == 'imagenet':
    mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    if not rgb:
      mean, std = sum(mean) / 3, sum(std) / 3
    return (x - jnp.array(mean, x.dtype)) / jnp.array(std, x.dtype)
  if mode == 'caffe':
    if not rgb:
      return x * 255.0 - sum(_CAFFE_BGR_MEAN) / 3
    return x[..., ::-1] * 255.0 - jnp.array(_CAFFE_BGR_MEAN, x.dtype)
  raise UserError(f"config.model.input_norm must be 'none', 'imagenet' or 'caffe', got {mode!r}")


class ConvBN(nnx.Module):
  """Conv (no bias) then batch norm; the norm's statistics are over the whole global batch
  because the step is one jit over the mesh."""

  def __init__(self, cin, cout, kernel, stride, *, bn_scale_init=nnx.initializers.ones,
               dtype, bn_momentum, bn_epsilon, rngs):
    pad = kernel // 2
    self.conv = nnx.Conv(cin, cout, (kernel, kernel), (stride, stride),
                         padding=((pad, pad), (pad, pad)), use_bias=False,
                         kernel_init=_conv_init, dtype=dtype, rngs=rngs)
    self.bn = nnx.BatchNorm(cout, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype,
                            scale_init=bn_scale_init, rngs=rngs)

  def __call__(self, x, train: bool):
    return self.bn(self.conv(x), use_running_average=not train)


class BasicBlock(nnx.Module):
  expansion = 1

  def __init__(self, cin, width, stride, *, stride_on, zero_init_residual, **kw):
    del stride_on  # a basic block has its stride in the first 3x3 conv in every version
    last_scale = nnx.initializers.zeros if zero_init_residual else nnx.initializers.ones
    self.conv1 = ConvBN(cin, width, 3, stride, **kw)
    self.conv2 = ConvBN(width, width, 3, 1, bn_scale_init=last_scale, **kw)
    cout = width * self.expansion
    self.downsample = ConvBN(cin, cout, 1, stride, **kw) if (stride != 1 or cin != cout) else None

  def __call__(self, x, train: bool):
    shortcut = x if self.downsample is None else self.downsample(x, train)
    y = nnx.relu(self.conv1(x, train))
    y = self.conv2(y, train)
    return nnx.relu(y + shortcut)


class BottleneckBlock(nnx.Module):
  expansion = 4

  def __init__(self, cin, width, stride, *, stride_on, zero_init_residual, **kw):
    last_scale = nnx.initializers.zeros if zero_init_residual else nnx.initializers.ones
    s1, s3 = (stride, 1) if stride_on == 'v1' else (1, stride)
    cout = width * self.expansion
    self.conv1 = ConvBN(cin, width, 1, s1, **kw)
    self.conv2 = ConvBN(width, width, 3, s3, **kw)
    self.conv3 = ConvBN(width, cout, 1, 1, bn_scale_init=last_scale, **kw)
    self.downsample = ConvBN(cin, cout, 1, stride, **kw) if (stride != 1 or cin != cout) else None

  def __call__(self, x, train: bool):
    shortcut = x if self.downsample is None else self.downsample(x, train)
    y = nnx.relu(self.conv1(x, train))
    y = nnx.relu(self.conv2(y, train))
    y = self.conv3(y, train)
    return nnx.relu(y + shortcut)


class ResNet(nnx.Module):
  """Encoder f: images [B, H, W, C] in [0, 1] -> h [B, num_features] (float32), with C
  = in_channels (config.data.channels)."""

  def __init__(self, block: str, stage_sizes: Sequence[int], *, width: float = 1.0,
               in_channels: int = 3,
               small_stem: bool = False, zero_init_residual: bool = False,
               stride_on: str = 'v1.5', input_norm: str = 'none', dtype=jnp.float32,
               bn_momentum: float = 0.9, bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
    if stride_on not in ('v1', 'v1.5'):
      raise UserError(f"stride_on must be 'v1' or 'v1.5', got {stride_on!r}")
    normalize_input(jnp.zeros((1, 1, 1, in_channels)), input_norm)  # validate early
    kw = dict(dtype=dtype, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, rngs=rngs)
    block_cls = BasicBlock if block == 'basic' else BottleneckBlock
    self.input_norm = input_norm
    self.small_stem = small_stem
    base = max(int(round(64 * width)), 1)  # channels of the stem and the first stage
    stem_width = base
    if small_stem:  # CIFAR-style: 3x3 stride 1, no max-pool, keeps 32 px images large enough
      self.stem = ConvBN(in_channels, stem_width, 3, 1, **kw)
    else:
      self.stem = ConvBN(in_channels, stem_width, 7, 2, **kw)
    cin = stem_width
    stages = []
    for i, num_blocks in enumerate(stage_sizes):
      blocks = []
      for j in range(num_blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        blocks.append(block_cls(cin, base * 2**i, stride, stride_on=stride_on,
                                zero_init_residual=zero_init_residual, **kw))
        cin = base * 2**i * block_cls.expansion
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.num_features = cin

  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = normalize_input(x.astype(jnp.float32), self.input_norm)
    x = nnx.relu(self.stem(x, train))
    if not self.small_stem:
      # Symmetric padding of 1, as torchvision and Keras do; after a ReLU, 0 pads like -inf.
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')
    for stage in self.stages:
      for block in stage:
        x = block(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def uses_small_stem(setting: str, image_size: int) -> bool:
  if setting == 'auto':
    return image_size <= 64
  if setting in ('yes', 'no'):
    return setting == 'yes'
  raise UserError(f"config.model.small_stem must be 'auto', 'yes' or 'no', got {setting!r}")


def build_resnet(name: str, *, rngs: nnx.Rngs, **kwargs) -> ResNet:
  if name not in ARCHITECTURES:
    raise UserError(f'config.model.name must be one of {sorted(ARCHITECTURES)}, got {name!r}')
  block, sizes = ARCHITECTURES[name]
  return ResNet(block, sizes, rngs=rngs, **kwargs)
