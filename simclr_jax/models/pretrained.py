"""Load ImageNet (or SimCLR) ResNet weights from other frameworks into the NNX encoder.

Three sources, each read without building the source framework's model:

- Keras applications (`keras.applications.ResNet50/101/152`), `.weights.h5` (Keras 3) or
  legacy `.h5` (Keras 2, and the files Keras itself downloads). ResNet v1: the stride is
  in the first 1x1 conv, convs have biases, BN epsilon 1.001e-5, 'caffe' inputs.
- torchvision state dicts (`.pth`/`.pt` via torch, `.safetensors` read here with numpy),
  ResNet-18 ... 152, v1.5 strides, BN epsilon 1e-5, 'imagenet' inputs.
- The SimCLR authors' TF2 checkpoints (tf2/resnet.py object names, read with
  `tf.train.load_checkpoint`): ResNet-50/101/152 without selective kernels, v1.5 strides,
  BN epsilon 1e-5, inputs in [0, 1] ('none').

Every tensor of the encoder is matched by name and shape; anything missing, left over or
mis-shaped is an error that names the file and lists the tensors. The one exception is the
stem's RGB filters loaded into an encoder for images that are not RGB
(config.data.channels = C != 3): see rgb_stem_to_channels. Classifier layers (the
Keras `predictions`, torch `fc`) and, in TF checkpoints, everything outside the ResNet
(heads, optimizer slots, step counters) are skipped on purpose.
"""

import dataclasses
import inspect
import logging
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import jax
import numpy as np
from flax import nnx

from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.models import resnet
from simclr_jax.models.weight_files import format_of, read_tensors
from simclr_jax.models.weight_files import is_weights_file  # noqa: F401 (part of this API)


# ---------------------------------------------------------------------------------------
# Naming schemes: where each of the encoder's ConvBN layers lives in a source file.


@dataclasses.dataclass(frozen=True)
class _ConvBNSource:
  kernel: str
  conv_bias: Optional[str]  # Keras convs have one; folded into the BN mean
  scale: str
  offset: str
  mean: str
  var: str


@dataclasses.dataclass(frozen=True)
class _Architecture:
  block: str  # 'basic' or 'bottleneck'
  stage_sizes: Tuple[int, ...]
  width: int
  stem_kernel: int  # 7 (ImageNet stem) or 3 (small, CIFAR-style stem)

  def describe(self) -> str:
    name = _architecture_name(self.block, self.stage_sizes)
    stem = '7x7 ImageNet stem' if self.stem_kernel == 7 else f'{self.stem_kernel}x{self.stem_kernel} small stem'
    return f'{name} (width {self.width}, {stem})'


def _architecture_name(block, stage_sizes):
  for name, (kind, sizes) in resnet.ARCHITECTURES.items():
    if kind == block and tuple(sizes) == tuple(stage_sizes):
      return name
  return f'an unknown ResNet ({block} blocks, {list(stage_sizes)} per stage)'


@dataclasses.dataclass(frozen=True)
class _Scheme:
  """How one source format names a ResNet, and what it implies for the encoder."""
  description: str
  stem: Callable[[str], Tuple[str, ...]]
  block_conv: Callable[[str, int, int, int], Tuple[str, ...]]  # prefix, stage, block, k
  downsample: Callable[[str, int, int], Tuple[str, ...]]
  block_pattern: str  # regex on names: groups (stage, block, conv index)
  is_ignored: Callable[[str], bool]
  kernel_to_hwio: Callable[[np.ndarray], np.ndarray]
  stride_on: str
  input_norm: str
  bn_epsilon: float
  stem_pool_padding: str = 'symmetric'


def _keras_layer(name):
  return (f'{name}_conv/kernel', f'{name}_conv/bias', f'{name}_bn/gamma', f'{name}_bn/beta',
          f'{name}_bn/moving_mean', f'{name}_bn/moving_variance')


_KERAS = _Scheme(
    description='a Keras applications ResNet',
    stem=lambda p: _keras_layer('conv1'),
    block_conv=lambda p, s, b, k: _keras_layer(f'conv{s + 2}_block{b + 1}_{k}'),
    downsample=lambda p, s, b: _keras_layer(f'conv{s + 2}_block{b + 1}_0'),
    block_pattern=r'^conv(\d)_block(\d+)_(\d)_conv/kernel$',
    is_ignored=lambda n: n.startswith('predictions/'),
    kernel_to_hwio=lambda k: k,
    stride_on='v1', input_norm='caffe', bn_epsilon=1.001e-5)


def _torch_layer(conv, bn):
  return (f'{conv}.weight', None, f'{bn}.weight', f'{bn}.bias', f'{bn}.running_mean',
          f'{bn}.running_var')


_TORCH = _Scheme(
    description='a torchvision ResNet state dict',
    stem=lambda p: _torch_layer('conv1', 'bn1'),
    block_conv=lambda p, s, b, k: _torch_layer(f'layer{s + 1}.{b}.conv{k}',
                                               f'layer{s + 1}.{b}.bn{k}'),
    downsample=lambda p, s, b: _torch_layer(f'layer{s + 1}.{b}.downsample.0',
                                            f'layer{s + 1}.{b}.downsample.1'),
    block_pattern=r'^layer(\d)\.(\d+)\.conv(\d)\.weight$',
    is_ignored=lambda n: n.startswith('fc.') or n.endswith('.num_batches_tracked'),
    kernel_to_hwio=lambda k: np.transpose(k, (2, 3, 1, 0)),  # OIHW -> HWIO
    stride_on='v1.5', input_norm='imagenet', bn_epsilon=1e-5)


def _tf_layer(conv, bn):
  return (f'{conv}/conv2d/kernel', None, f'{bn}/bn/gamma', f'{bn}/bn/beta',
          f'{bn}/bn/moving_mean', f'{bn}/bn/moving_variance')


def _tf_block_conv(prefix, s, b, k):
  block = f'{prefix}block_groups/{s}/layers/{b}'
  # tf2/resnet.py keeps conv, BN (and DropBlock in bottlenecks) in one list per block.
  return _tf_layer(f'{block}/conv_relu_dropblock_layers/{3 * (k - 1)}',
                   f'{block}/conv_relu_dropblock_layers/{3 * (k - 1) + 1}')


_TF_SIMCLR = _Scheme(
    description="a SimCLR (tf2/resnet.py) checkpoint",
    stem=lambda p: _tf_layer(f'{p}initial_conv_relu_max_pool/0',
                             f'{p}initial_conv_relu_max_pool/2'),
    block_conv=_tf_block_conv,
    downsample=lambda p, s, b: _tf_layer(f'{p}block_groups/{s}/layers/{b}/projection_layers/0',
                                         f'{p}block_groups/{s}/layers/{b}/projection_layers/1'),
    block_pattern=r'block_groups/(\d)/layers/(\d+)/conv_relu_dropblock_layers/(\d+)/conv2d/kernel$',
    is_ignored=lambda n: False,
    kernel_to_hwio=lambda k: k,
    stride_on='v1.5', input_norm='none', bn_epsilon=1e-5, stem_pool_padding='same')

_SCHEMES = {'keras': _KERAS, 'torch': _TORCH, 'safetensors': _TORCH, 'tf': _TF_SIMCLR}
_TF_STEM_KERNEL = 'initial_conv_relu_max_pool/0/conv2d/kernel'


def _tf_resnet_prefix(path, tensors) -> str:
  """The object path of the ResNet inside a TF checkpoint ('model/resnet_model/' for the
  authors' run.py), found from its stem conv; the rest of the checkpoint is not ours."""
  stems = [n[:-len(_TF_STEM_KERNEL)] for n in tensors if n.endswith(_TF_STEM_KERNEL)]
  if len(stems) != 1:
    sample = ', '.join(sorted(tensors)[:8])
    raise UserError(f'{path}: expected one ResNet named as in SimCLR tf2/resnet.py (a '
                    f"'.../{_TF_STEM_KERNEL}'), found {len(stems)}; it holds e.g. {sample}")
  prefix = stems[0]
  if any(n.startswith(prefix) and 'conv2d_fixed_padding' in n for n in tensors) or f'{prefix}initial_conv_relu_max_pool/4/conv2d/kernel' in tensors:
    raise UserError(f'{path}: a selective-kernel (sk1) SimCLRv2 model, which this encoder '
                    f'does not have; use an sk0 checkpoint')
  if any(n.startswith(prefix) and '/conv2d_bn_layers/' in n for n in tensors):
    raise UserError(f'{path}: a SimCLR ResNet-18/34; tf2/resnet.py gives its first block a '
                    f'projection shortcut that this encoder (and torchvision) has not, so it '
                    f'cannot be loaded exactly')
  return prefix


def _detect_architecture(path, tensors, scheme, prefix) -> _Architecture:
  stem_kernel_name = scheme.stem(prefix)[0]
  if stem_kernel_name not in tensors:
    sample = ', '.join(sorted(tensors)[:8])
    raise UserError(f'{path}: does not look like {scheme.description}: no '
                    f'{stem_kernel_name!r}; it holds {len(tensors)} tensors, e.g. {sample}')
  stem = scheme.kernel_to_hwio(tensors[stem_kernel_name])
  blocks, max_conv = {}, 0
  for name in tensors:
    if name.startswith(prefix) and (m := re.search(scheme.block_pattern, name)):
      stage, block, conv = (int(g) for g in m.groups())
      if scheme is _KERAS:
        stage -= 2  # conv2 ... conv5
      elif scheme is _TORCH:
        stage -= 1  # layer1 ... layer4
      if scheme is _TF_SIMCLR:
        conv = conv // 3 + 1
      blocks[stage] = max(blocks.get(stage, 0), block + (0 if scheme is _KERAS else 1))
      max_conv = max(max_conv, conv)
  if sorted(blocks) != [0, 1, 2, 3]:
    raise UserError(f'{path}: does not look like {scheme.description}: found stages '
                    f'{sorted(blocks)} instead of four')
  return _Architecture(block='bottleneck' if max_conv >= 3 else 'basic',
                       stage_sizes=tuple(blocks[s] for s in range(4)),
                       width=max(stem.shape[-1] // 64, 1), stem_kernel=stem.shape[0])


def _encoder_architecture(encoder: resnet.ResNet) -> _Architecture:
  first = encoder.stages[0][0]
  return _Architecture(
      block='bottleneck' if isinstance(first, resnet.BottleneckBlock) else 'basic',
      stage_sizes=tuple(len(stage) for stage in encoder.stages),
      width=encoder.stem.conv.out_features // 64,
      stem_kernel=encoder.stem.conv.kernel_size[0])


# ---------------------------------------------------------------------------------------
# The public API.


@dataclasses.dataclass
class _Loaded:
  fmt: str
  scheme: _Scheme
  prefix: str
  tensors: Dict[str, np.ndarray]
  architecture: _Architecture


def _load(path: str) -> _Loaded:
  fmt = format_of(path)
  if fmt is None:
    if not os.path.exists(path):
      raise PathNotFound(f'Pretrained weights file {path} does not exist')
    raise UserError(f'{path}: not a weights file this loader knows (.h5, .weights.h5, .pth, '
                    f'.pt, .safetensors or a TensorFlow checkpoint)')
  tensors = read_tensors(path, fmt)
  scheme = _SCHEMES[fmt]
  prefix = _tf_resnet_prefix(path, tensors) if scheme is _TF_SIMCLR else ''
  return _Loaded(fmt, scheme, prefix, tensors, _detect_architecture(path, tensors, scheme, prefix))


def expected_settings(path: str) -> dict:
  """The `config.model` values under which the file's weights give the source's outputs,
  e.g. {'name': 'resnet50', 'width': 1, 'small_stem': 'no', 'stride_on': 'v1',
  'input_norm': 'caffe', 'bn_epsilon': 1.001e-5} for a Keras ResNet50."""
  loaded = _load(path)
  return _settings(loaded)


def _settings(loaded: _Loaded) -> dict:
  arch, scheme = loaded.architecture, loaded.scheme
  return {
      'name': _architecture_name(arch.block, arch.stage_sizes),
      'width': arch.width,
      'small_stem': 'no' if arch.stem_kernel == 7 else 'yes',
      # A basic block has its stride in the 3x3 conv whatever the version.
      'stride_on': scheme.stride_on if arch.block == 'bottleneck' else 'v1.5',
      'input_norm': scheme.input_norm,
      'bn_epsilon': scheme.bn_epsilon,
  } | ({'stem_pool_padding': scheme.stem_pool_padding} if _encoder_has_pool_option() else {})


def _encoder_has_pool_option() -> bool:
  # tf2/resnet.py max-pools with TF's 'SAME' padding (0 before, 1 after on even sizes);
  # torchvision and Keras pad 1 on both sides. Reported once the encoder can do both.
  return 'stem_pool_padding' in inspect.signature(resnet.ResNet.__init__).parameters


def load_encoder_weights(path: str, encoder: resnet.ResNet, *, check_settings: bool = True
                         ) -> None:
  """Loads the weights in `path` into `encoder` in place.

  Raises FileNotFoundError for a missing file and ValueError for an unreadable one, one of a
  different architecture, one whose tensors do not all match the encoder's by name and
  shape, or (with `check_settings`) an encoder built with a stride placement, input
  normalisation or BN epsilon other than the source's, which would change the outputs.
  """
  loaded = _load(path)
  file_arch, encoder_arch = loaded.architecture, _encoder_architecture(encoder)
  if file_arch != encoder_arch:
    settings = _settings(loaded)
    raise UserError(
        f'{path} holds {file_arch.describe()} but the encoder is {encoder_arch.describe()}; '
        f"set --config.model.name={settings['name']} --config.model.width={settings['width']} "
        f"--config.model.small_stem={settings['small_stem']}")
  if check_settings:
    _check_encoder_settings(path, encoder, _settings(loaded))
  updates = _map_tensors(path, loaded, encoder)
  nnx.update(encoder, updates)
  if (loaded.scheme is _TF_SIMCLR and not encoder.small_stem
      and getattr(encoder, 'stem_pool_padding', 'symmetric') != 'same'):
    logging.warning('%s: the SimCLR TF stem max-pools with SAME padding; this encoder pads '
                    'symmetrically, so features differ slightly from the authors\' model on '
                    'even-sized stem outputs (e.g. 224 px inputs)', path)


def _check_encoder_settings(path, encoder, settings):
  actual = {
      'stride_on': _encoder_stride_on(encoder) or settings['stride_on'],
      'input_norm': encoder.input_norm,
      'bn_epsilon': float(encoder.stem.bn.epsilon),
  }
  if 'stem_pool_padding' in settings and not encoder.small_stem:
    actual['stem_pool_padding'] = getattr(encoder, 'stem_pool_padding', 'symmetric')
  wrong = [f'--config.model.{k}={settings[k]} (the encoder has {actual[k]!r})'
           for k in actual if actual[k] != settings[k]]
  if wrong:
    raise UserError(f'{path}: its weights reproduce the source model only with '
                    + ', '.join(wrong))


def _encoder_stride_on(encoder) -> Optional[str]:
  block = encoder.stages[1][0]
  if not isinstance(block, resnet.BottleneckBlock):
    return None
  return 'v1' if tuple(block.conv1.conv.strides) == (2, 2) else 'v1.5'


def _encoder_conv_bns(encoder) -> List[Tuple[Tuple, object, Callable]]:
  """(path in the NNX state, ConvBN module, function giving its source names) for each."""
  out = [(('stem',), encoder.stem, lambda scheme, p: scheme.stem(p))]
  for s, stage in enumerate(encoder.stages):
    for b, block in enumerate(stage):
      for k in (1, 2, 3):
        conv_bn = getattr(block, f'conv{k}', None)
        if conv_bn is not None:
          out.append((('stages', s, b, f'conv{k}'), conv_bn,
                      lambda scheme, p, s=s, b=b, k=k: scheme.block_conv(p, s, b, k)))
      if block.downsample is not None:
        out.append((('stages', s, b, 'downsample'), block.downsample,
                    lambda scheme, p, s=s, b=b: scheme.downsample(p, s, b)))
  return out


def torchvision_layers(encoder) -> List[Tuple[object, Tuple[str, str, str, str, str]]]:
  """(ConvBN module, its torchvision names (conv weight, BN weight, bias, running_mean,
  running_var)) for every layer of the encoder: the names the export writes."""
  layers = []
  for _, conv_bn, names_of in _encoder_conv_bns(encoder):
    source = _ConvBNSource(*names_of(_TORCH, ''))
    layers.append((conv_bn, (source.kernel, source.scale, source.offset, source.mean,
                             source.var)))
  return layers


def rgb_stem_to_channels(kernel: np.ndarray, channels: int) -> np.ndarray:
  """An RGB stem kernel [kh, kw, 3, out] (HWIO) as one for `channels` input channels.

  1 channel: the sum of the three colours' filters, so that a grey image gets exactly the
  first-layer output the RGB network gives the same image repeated to RGB. C channels:
  the RGB filters repeated cyclically (R, G, B, R, ...) and scaled by 3 / C, which keeps the
  output's scale for inputs of similar intensity in every channel (timm's rule).
  """
  if kernel.shape[2] != 3 or channels == 3:
    return kernel
  if channels == 1:
    return kernel.astype(np.float64).sum(axis=2, keepdims=True).astype(kernel.dtype)
  repeated = kernel[:, :, np.arange(channels) % 3].astype(np.float64) * (3 / channels)
  return repeated.astype(kernel.dtype)


def _map_tensors(path, loaded: _Loaded, encoder) -> dict:
  """The nested update for nnx.update; raises listing every name or shape that is off,
  before anything is converted."""
  tensors, scheme, prefix = loaded.tensors, loaded.scheme, loaded.prefix
  used, missing, misshaped, found = set(), [], [], []
  for state_path, conv_bn, names_of in _encoder_conv_bns(encoder):
    source = _ConvBNSource(*names_of(scheme, prefix))
    wanted = [n for n in dataclasses.astuple(source) if n is not None]
    absent = [n for n in wanted if n not in tensors]
    used.update(n for n in wanted if n in tensors)  # so only the truly extra are listed
    if absent:
      missing.extend(absent)
      continue
    values = _conv_bn_values(source, tensors, scheme)
    if state_path == ('stem',):
      values['kernel'] = rgb_stem_to_channels(values['kernel'], conv_bn.conv.in_features)
    variables = {
        'kernel': conv_bn.conv.kernel, 'scale': conv_bn.bn.scale, 'bias': conv_bn.bn.bias,
        'mean': conv_bn.bn.mean, 'var': conv_bn.bn.var,
    }
    for key, value in values.items():
      if value.shape != tuple(variables[key].shape):
        misshaped.append(f'{_source_name(source, key)}: {value.shape} in the file, '
                         f'{tuple(variables[key].shape)} in the encoder')
    found.append((state_path, values, variables))
  extra = sorted(n for n in tensors
                 if n.startswith(prefix) and n not in used and not scheme.is_ignored(n))
  problems = []
  if missing:
    problems.append(f'missing from the file: {_listing(missing)}')
  if extra:
    problems.append(f'in the file but not in the encoder: {_listing(extra)}')
  if misshaped:
    problems.append(f'of the wrong shape: {_listing(misshaped)}')
  if problems:
    raise UserError(f'{path}: its tensors do not match the encoder '
                    f'({loaded.architecture.describe()}, read as {scheme.description}); '
                    + '; '.join(problems))
  updates = {}
  for state_path, values, variables in found:
    new = {k: _like(values[k], variables[k]) for k in values}
    _set_nested(updates, state_path, {
        'conv': {'kernel': new['kernel']},
        'bn': {k: new[k] for k in ('scale', 'bias', 'mean', 'var')}})
  return updates


def _conv_bn_values(source, tensors, scheme):
  mean = tensors[source.mean].astype(np.float64)
  if source.conv_bias is not None:
    # BN(conv(x) + b) is BN with the moving mean lowered by b, exactly (inference mode).
    mean = mean - tensors[source.conv_bias].astype(np.float64)
  return {
      'kernel': scheme.kernel_to_hwio(tensors[source.kernel]),
      'scale': tensors[source.scale], 'bias': tensors[source.offset],
      'mean': mean, 'var': tensors[source.var],
  }


def _source_name(source, key):
  return {'kernel': source.kernel, 'scale': source.scale, 'bias': source.offset,
          'mean': source.mean, 'var': source.var}[key]


def _like(value: np.ndarray, variable) -> jax.Array:
  """The new value with the variable's dtype and, when it is sharded, its sharding."""
  old = variable[...]
  new = np.asarray(value, dtype=old.dtype)
  sharding = getattr(old, 'sharding', None)
  return jax.device_put(new, sharding) if sharding is not None else jax.numpy.asarray(new)


def _set_nested(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _listing(names, limit=20):
  shown = ', '.join(names[:limit])
  return f'{shown} (and {len(names) - limit} more)' if len(names) > limit else shown
