"""Pretrained-weight import: each source's own forward pass against the encoder's.

The references are Keras's own ResNet50, a torchvision-layout ResNet written here in
torch.nn (torchvision itself does not install beside the CPU torch wheel), and a forward
pass written here in TF ops after the SimCLR authors' tf2/resnet.py, saved under that
file's object names. All get random weights and random BN statistics, so a swapped or
mis-transposed tensor cannot hide behind identity-like values.
"""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from simclr_jax.config import defaults as default_config
from simclr_jax.inference import model_export
from simclr_jax.models import encoder_export, pretrained, resnet

# Relative error: max |ours - reference| over max |reference|, per batch of features.
_TOLERANCE = 1e-4


def _relative_error(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _images(size, seed=0, batch=2):
  return np.random.default_rng(seed).uniform(0, 1, (batch, size, size, 3)).astype(np.float32)


def _encoder(name, seed=0, **settings):
  settings.setdefault('small_stem', False)
  return resnet.build_resnet(name, rngs=nnx.Rngs(seed), **settings)


def _abstract_encoder(name, **settings):
  """Shapes only: enough for the errors raised before any value is converted."""
  return nnx.eval_shape(lambda: _encoder(name, **settings))


def _features(encoder, images):
  return np.asarray(nnx.jit(lambda m, x: m(x, train=False))(encoder, images))


# ----------------------------------------------------------------------------- Keras


@pytest.fixture(scope='module')
def keras_resnet50(tmp_path_factory):
  """(feature model, .weights.h5 path, legacy .h5 path or None) for a random ResNet50."""
  keras = pytest.importorskip('keras')
  rng = np.random.default_rng(1)
  model = keras.applications.ResNet50(weights=None, include_top=True, input_shape=(64, 64, 3))
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                         rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)])
    elif isinstance(layer, keras.layers.Conv2D):
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.2, bias.shape)])  # biases to fold
  folder = tmp_path_factory.mktemp('keras')
  weights_h5 = str(folder / 'resnet50.weights.h5')
  model.save_weights(weights_h5)
  legacy_h5 = str(folder / 'resnet50.h5')
  try:  # Keras 3 writes the legacy format only through this internal module
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    with h5py.File(legacy_h5, 'w') as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, model)
  except ImportError:
    legacy_h5 = None
  features = keras.Model(model.input, model.get_layer('avg_pool').output)
  return features, weights_h5, legacy_h5


@pytest.mark.parametrize('legacy', [False, True], ids=['weights.h5', 'legacy.h5'])
def test_keras_resnet50_matches_keras(keras_resnet50, legacy):
  keras_features, weights_h5, legacy_h5 = keras_resnet50
  path = legacy_h5 if legacy else weights_h5
  if path is None:
    pytest.skip('this Keras cannot write legacy .h5 files')
  settings = pretrained.expected_settings(path)
  assert settings == {'name': 'resnet50', 'width': 1, 'small_stem': 'no', 'stride_on': 'v1',
                      'input_norm': 'caffe', 'bn_epsilon': 1.001e-5}
  encoder = _encoder('resnet50', stride_on='v1', input_norm='caffe', bn_epsilon=1.001e-5)
  pretrained.load_encoder_weights(path, encoder)
  from keras.applications.resnet import preprocess_input
  images = _images(64)
  reference = keras_features(preprocess_input(images * 255.0), training=False)
  error = _relative_error(_features(encoder, images), reference)
  print(f'keras {os.path.basename(path)} max relative error {error:.2e}')
  assert error < _TOLERANCE


def test_keras_settings_mismatch_is_an_error(keras_resnet50):
  _, weights_h5, _ = keras_resnet50
  encoder = _abstract_encoder('resnet50')  # v1.5, no input norm, epsilon 1e-5
  with pytest.raises(ValueError, match='stride_on=v1.*input_norm=caffe.*bn_epsilon'):
    pretrained.load_encoder_weights(weights_h5, encoder)


def test_keras_architecture_mismatch_names_both(keras_resnet50):
  _, weights_h5, _ = keras_resnet50
  encoder = _abstract_encoder('resnet101', stride_on='v1', input_norm='caffe', bn_epsilon=1.001e-5)
  with pytest.raises(ValueError, match=r'resnet50\.weights\.h5 holds resnet50 .* encoder is resnet101'):
    pretrained.load_encoder_weights(weights_h5, encoder)


def test_truncated_h5_names_the_file(keras_resnet50, tmp_path):
  _, weights_h5, _ = keras_resnet50
  truncated = tmp_path / 'cut.weights.h5'
  data = open(weights_h5, 'rb').read()
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match='cut.weights.h5'):
    pretrained.load_encoder_weights(str(truncated), _abstract_encoder('resnet50'))


def test_h5_of_another_model_is_an_error(tmp_path):
  keras = pytest.importorskip('keras')
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name='dense_out')])
  path = str(tmp_path / 'mlp.weights.h5')
  model.save_weights(path)
  with pytest.raises(ValueError, match=r'mlp\.weights\.h5.*does not look like a Keras'):
    pretrained.load_encoder_weights(path, _abstract_encoder('resnet50'))


# ----------------------------------------------------------------------------- torch

try:
  import torch
except ImportError:  # CI installs the CPU wheel; without it only these tests skip
  torch = None
needs_torch = pytest.mark.skipif(torch is None, reason='torch is not installed')
_TorchModule = torch.nn.Module if torch is not None else object


class _TorchBasicBlock(_TorchModule):
  expansion = 1

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = torch.nn.BatchNorm2d(width)
    self.conv2 = torch.nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = torch.nn.BatchNorm2d(width)
    self.downsample = _torch_downsample(cin, width, stride)

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class _TorchBottleneck(_TorchModule):
  expansion = 4

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = torch.nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = torch.nn.BatchNorm2d(width)
    self.conv2 = torch.nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5
    self.bn2 = torch.nn.BatchNorm2d(width)
    self.conv3 = torch.nn.Conv2d(width, width * 4, 1, bias=False)
    self.bn3 = torch.nn.BatchNorm2d(width * 4)
    self.downsample = _torch_downsample(cin, width * 4, stride)

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


def _torch_downsample(cin, cout, stride):
  if stride == 1 and cin == cout:
    return None
  return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))


class _TorchResNet(_TorchModule):
  """torchvision.models.ResNet's layout and state-dict names."""

  def __init__(self, name):
    super().__init__()
    block, sizes = resnet.ARCHITECTURES[name]
    block_cls = _TorchBasicBlock if block == 'basic' else _TorchBottleneck
    self.conv1 = torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = torch.nn.BatchNorm2d(64)
    self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
    cin = 64
    for i, n in enumerate(sizes):
      blocks = []
      for j in range(n):
        blocks.append(block_cls(cin, 64 * 2**i, 2 if (i > 0 and j == 0) else 1))
        cin = 64 * 2**i * block_cls.expansion
      setattr(self, f'layer{i + 1}', torch.nn.Sequential(*blocks))
    self.fc = torch.nn.Linear(cin, 1000)

  def features(self, x):
    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
    return x.mean(dim=(2, 3))


def _random_torch_resnet(name, seed):
  torch.manual_seed(seed)
  model = _TorchResNet(name)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.2)
        module.running_mean.normal_(0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
        module.num_batches_tracked.fill_(7)
  return model.eval()


def _write_safetensors(path, state_dict):
  """The safetensors layout (8-byte header length, JSON header, raw buffer), written with
  numpy so the test needs no extra package."""
  codes = {np.dtype(np.float32): 'F32', np.dtype(np.int64): 'I64'}
  header, chunks, offset = {}, [], 0
  for name, tensor in state_dict.items():
    array = np.ascontiguousarray(tensor.numpy())
    header[name] = {'dtype': codes[array.dtype], 'shape': list(array.shape),
                    'data_offsets': [offset, offset + array.nbytes]}
    chunks.append(array.tobytes())
    offset += array.nbytes
  encoded = json.dumps(header).encode()
  encoded += b' ' * (-len(encoded) % 8)
  with open(path, 'wb') as f:
    f.write(np.uint64(len(encoded)).tobytes() + encoded + b''.join(chunks))


@pytest.fixture(scope='module')
def torch_files(tmp_path_factory):
  """{name: (reference model, .pth path, .safetensors path)} for resnet18 and resnet50."""
  torch.set_num_threads(2)
  folder = tmp_path_factory.mktemp('torch')
  files = {}
  for seed, name in enumerate(('resnet18', 'resnet50')):
    model = _random_torch_resnet(name, seed)
    pth, st = str(folder / f'{name}.pth'), str(folder / f'{name}.safetensors')
    torch.save(model.state_dict(), pth)
    _write_safetensors(st, model.state_dict())
    files[name] = (model, pth, st)
  return files


@needs_torch
@pytest.mark.parametrize('name', ['resnet18', 'resnet50'])
@pytest.mark.parametrize('kind', ['pth', 'safetensors'])
def test_torchvision_layout_matches_torch(torch_files, name, kind):
  model, pth, st = torch_files[name]
  path = pth if kind == 'pth' else st
  settings = pretrained.expected_settings(path)
  assert settings == {'name': name, 'width': 1, 'small_stem': 'no', 'stride_on': 'v1.5',
                      'input_norm': 'imagenet', 'bn_epsilon': 1e-5}
  encoder = _encoder(name, stride_on='v1.5', input_norm='imagenet')
  pretrained.load_encoder_weights(path, encoder)
  images = _images(64, seed=2)
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  normalised = ((images - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
  with torch.no_grad():
    reference = model.features(torch.from_numpy(normalised)).numpy()
  error = _relative_error(_features(encoder, images), reference)
  print(f'torch {name} {kind} max relative error {error:.2e}')
  assert error < _TOLERANCE


@needs_torch
def test_state_dict_missing_and_extra_tensors_are_listed(torch_files, tmp_path):
  model, _, _ = torch_files['resnet18']
  state = dict(model.state_dict())
  del state['layer2.1.bn1.running_var']
  state['layer2.1.bn1.spare'] = torch.zeros(128)
  path = str(tmp_path / 'edited.pth')
  torch.save(state, path)
  with pytest.raises(ValueError) as info:
    pretrained.load_encoder_weights(path, _abstract_encoder('resnet18', input_norm='imagenet'))
  message = str(info.value)
  assert 'edited.pth' in message
  assert 'missing from the file: layer2.1.bn1.running_var' in message
  assert 'not in the encoder: layer2.1.bn1.spare' in message


@needs_torch
def test_state_dict_of_wrong_width_is_an_architecture_error(torch_files):
  _, pth, _ = torch_files['resnet18']
  encoder = _abstract_encoder('resnet18', width=2, input_norm='imagenet')
  with pytest.raises(ValueError, match=r'holds resnet18 \(width 1.*encoder is resnet18 \(width 2'):
    pretrained.load_encoder_weights(pth, encoder)


@needs_torch
def test_small_stem_encoder_is_told_to_use_the_imagenet_stem(torch_files):
  _, pth, _ = torch_files['resnet18']
  encoder = _abstract_encoder('resnet18', small_stem=True, input_norm='imagenet')
  with pytest.raises(ValueError, match='small_stem=no'):
    pretrained.load_encoder_weights(pth, encoder)


def test_random_bytes_pth_names_the_file(tmp_path):
  path = tmp_path / 'noise.pth'
  path.write_bytes(np.random.default_rng(0).bytes(4096))
  with pytest.raises(ValueError, match='noise.pth'):
    pretrained.load_encoder_weights(str(path), _abstract_encoder('resnet18'))


def test_pth_without_torch_says_what_to_install(tmp_path, monkeypatch):
  import sys  # pylint: disable=import-outside-toplevel
  from simclr_jax.models import weight_files  # pylint: disable=import-outside-toplevel
  from simclr_jax.runtime import cli  # pylint: disable=import-outside-toplevel
  path = tmp_path / 'model.pth'
  path.write_bytes(b'PK\x03\x04' + bytes(64))  # what torch.save writes starts so
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now fails
  with pytest.raises(weight_files.MissingDependencyError, match='model.pth.*pip install torch'):
    pretrained.load_encoder_weights(str(path), _abstract_encoder('resnet18'))
  assert issubclass(weight_files.MissingDependencyError, cli.USER_ERRORS)


@needs_torch
def test_truncated_pth_and_safetensors_name_the_file(torch_files, tmp_path):
  _, pth, st = torch_files['resnet18']
  for source in (pth, st):
    data = open(source, 'rb').read()
    cut = tmp_path / ('cut' + os.path.splitext(source)[1])
    cut.write_bytes(data[:len(data) // 3])
    with pytest.raises(ValueError, match=cut.name):
      pretrained.load_encoder_weights(str(cut), _abstract_encoder('resnet18', input_norm='imagenet'))


def test_missing_file_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match='absent.pth'):
    pretrained.load_encoder_weights(str(tmp_path / 'absent.pth'), _abstract_encoder('resnet18'))


# ------------------------------------------------------------------ SimCLR TF2 checkpoint


def _tf_simclr_checkpoint(tf, directory, name, small_stem, seed):
  """Random ResNet weights under tf2/resnet.py's object names, saved as run.py does
  (tf.train.Checkpoint(model=...)), with a head, an optimizer slot and a step beside it."""
  rng = np.random.default_rng(seed)

  def module(**attrs):
    m = tf.Module()
    for key, value in attrs.items():
      setattr(m, key, value)
    return m

  def conv(cin, cout, k):
    scale = np.sqrt(2.0 / (k * k * cin))
    return module(conv2d=module(kernel=tf.Variable(
        rng.normal(0, scale, (k, k, cin, cout)).astype(np.float32))))

  def bn(c):
    return module(bn=module(
        gamma=tf.Variable(rng.uniform(0.5, 1.5, c).astype(np.float32)),
        beta=tf.Variable(rng.normal(0, 0.2, c).astype(np.float32)),
        moving_mean=tf.Variable(rng.normal(0, 0.2, c).astype(np.float32)),
        moving_variance=tf.Variable(rng.uniform(0.5, 2.0, c).astype(np.float32))))

  placeholder = module  # IdentityLayer, DropBlock, MaxPool: no variables, but a list slot
  _, sizes = resnet.ARCHITECTURES[name]
  stem = [conv(3, 64, 3 if small_stem else 7), placeholder(), bn(64), placeholder()]
  if not small_stem:
    stem.append(placeholder())
  groups, cin = [], 64
  for i, n in enumerate(sizes):
    width, layers = 64 * 2**i, []
    for j in range(n):
      block = module(conv_relu_dropblock_layers=[
          conv(cin, width, 1), bn(width), placeholder(), conv(width, width, 3), bn(width),
          placeholder(), conv(width, 4 * width, 1), bn(4 * width), placeholder()])
      if j == 0:
        block.projection_layers = [conv(cin, 4 * width, 1), bn(4 * width)]
      layers.append(block)
      cin = 4 * width
    groups.append(module(layers=layers))
  net = module(initial_conv_relu_max_pool=stem, block_groups=groups)
  head = module(linear_layers=[module(dense=module(kernel=tf.Variable(np.ones((cin, 8)))))])
  model = module(resnet_model=net, _projection_head=head)
  checkpoint = tf.train.Checkpoint(model=model, global_step=tf.Variable(5, dtype=tf.int64))
  checkpoint.save(os.path.join(directory, 'ckpt'))
  return net


def _tf_simclr_forward(tf, net, images, small_stem):
  """tf2/resnet.py's inference pass: fixed padding for strided convs, SAME otherwise."""

  def conv(layer, x, stride):
    kernel = layer.conv2d.kernel
    if stride > 1:
      total = kernel.shape[0] - 1
      pad = [total // 2, total - total // 2]
      x = tf.pad(x, [[0, 0], pad, pad, [0, 0]])
    return tf.nn.conv2d(x, kernel, stride, 'SAME' if stride == 1 else 'VALID')

  def bn(layer, x, relu=True):
    p = layer.bn
    x = tf.nn.batch_normalization(x, p.moving_mean, p.moving_variance, p.beta, p.gamma, 1e-5)
    return tf.nn.relu(x) if relu else x

  stem = net.initial_conv_relu_max_pool
  x = bn(stem[2], conv(stem[0], tf.constant(images), 1 if small_stem else 2))
  if not small_stem:
    x = tf.nn.max_pool2d(x, 3, 2, 'SAME')
  for i, group in enumerate(net.block_groups):
    for j, block in enumerate(group.layers):
      stride = 2 if (i > 0 and j == 0) else 1
      shortcut = x
      if j == 0:
        shortcut = bn(block.projection_layers[1], conv(block.projection_layers[0], x, stride),
                      relu=False)
      layers = block.conv_relu_dropblock_layers
      y = bn(layers[1], conv(layers[0], x, 1))
      y = bn(layers[4], conv(layers[3], y, stride))
      y = bn(layers[7], conv(layers[6], y, 1), relu=False)
      x = tf.nn.relu(y + shortcut)
  return tf.reduce_mean(x, [1, 2]).numpy()


@pytest.mark.parametrize('small_stem,size', [(False, 66), (True, 32)],
                         ids=['imagenet_stem', 'cifar_stem'])
def test_simclr_tf2_checkpoint_matches_authors_forward(tmp_path, small_stem, size):
  tf = pytest.importorskip('tensorflow')
  net = _tf_simclr_checkpoint(tf, str(tmp_path), 'resnet50', small_stem, seed=3)
  assert pretrained.is_weights_file(str(tmp_path))
  settings = pretrained.expected_settings(str(tmp_path))
  assert settings == {'name': 'resnet50', 'width': 1,
                      'small_stem': 'yes' if small_stem else 'no', 'stride_on': 'v1.5',
                      'input_norm': 'none', 'bn_epsilon': 1e-5}
  encoder = _encoder('resnet50', small_stem=small_stem)
  pretrained.load_encoder_weights(str(tmp_path), encoder)
  # 66 px gives an odd-sized stem output, where TF's SAME max-pool pads symmetrically too.
  images = _images(size, seed=4)
  error = _relative_error(_features(encoder, images),
                          _tf_simclr_forward(tf, net, images, small_stem))
  print(f'simclr tf2 {"cifar" if small_stem else "imagenet"} stem max relative error {error:.2e}')
  assert error < _TOLERANCE


# ----------------------------------------------------------------------------- naming


def test_is_weights_file_by_extension_and_checkpoint_index(tmp_path):
  for name in ('a.h5', 'a.weights.h5', 'a.pth', 'a.pt', 'a.SAFETENSORS'):
    assert pretrained.is_weights_file(name)
  assert not pretrained.is_weights_file(str(tmp_path))  # an empty workdir
  assert not pretrained.is_weights_file('workdir/checkpoints/1000')
  (tmp_path / 'model.ckpt-10.index').write_bytes(b'')
  assert pretrained.is_weights_file(str(tmp_path / 'model.ckpt-10'))
  assert pretrained.is_weights_file(str(tmp_path))


# ----------------------------------------------------------------------- torchvision export


def _randomise_batch_norms(encoder, seed):
  """Random BN scales, offsets and statistics, so the export cannot pass on identity-like
  values."""
  rng = np.random.default_rng(seed)
  for conv_bn, _ in pretrained.torchvision_layers(encoder):
    bn, c = conv_bn.bn, conv_bn.bn.scale.shape[0]
    bn.scale[...] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bn.bias[...] = rng.normal(0, 0.2, c).astype(np.float32)
    bn.mean[...] = rng.normal(0, 0.2, c).astype(np.float32)
    bn.var[...] = rng.uniform(0.5, 2.0, c).astype(np.float32)


def _load_exported(path):
  """The state dict as torch tensors, read by the `safetensors` package when installed."""
  try:
    from safetensors.torch import load_file  # pylint: disable=import-outside-toplevel
    return load_file(path)
  except ImportError:
    from simclr_jax.models import weight_files  # pylint: disable=import-outside-toplevel
    tensors = weight_files.read_tensors(path, 'safetensors')
    return {k: torch.from_numpy(v) for k, v in tensors.items()}


@needs_torch
@pytest.mark.parametrize('name,small_stem,input_norm,epsilon', [
    ('resnet18', False, 'imagenet', 1e-5), ('resnet18', True, 'none', 1.001e-5)],
    ids=['resnet18', 'resnet18_small_stem_eps'])
def test_torchvision_export_matches_torch(tmp_path, name, small_stem, input_norm, epsilon):
  torch.set_num_threads(2)
  encoder = _encoder(name, small_stem=small_stem, input_norm=input_norm, bn_epsilon=epsilon)
  _randomise_batch_norms(encoder, seed=5)
  settings = {'name': name, 'width': 1, 'stride_on': 'v1.5', 'input_norm': input_norm}
  path = encoder_export.export_torchvision(str(tmp_path), encoder, settings)
  model = _TorchResNet(name)
  if small_stem:  # the swap models/torchvision_export.py documents
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
  result = model.load_state_dict(_load_exported(path), strict=False)
  assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight'] and not result.unexpected_keys
  images = _images(32 if small_stem else 64, seed=6)
  inputs = images
  if input_norm == 'imagenet':
    inputs = (images - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  with torch.no_grad():
    reference = model.eval().features(
        torch.from_numpy(inputs.astype(np.float32).transpose(0, 3, 1, 2))).numpy()
  error = _relative_error(_features(encoder, images), reference)
  print(f'torchvision export {name} max relative error {error:.2e}')
  assert error < 1e-5


def test_torchvision_export_round_trips_through_the_import(tmp_path):
  """A bottleneck ResNet through the export and back: the import is tested against torch
  above, so equal tensors here mean torch computes our features."""
  config = default_config.get_default_config()
  config.model.update(name='resnet50', input_norm='imagenet')
  encoder = _encoder('resnet50', input_norm='imagenet')
  _randomise_batch_norms(encoder, seed=7)
  encoder_export.export_encoder(str(tmp_path), encoder, config)
  (path,) = model_export.export_formats(str(tmp_path), ['torchvision'])
  assert path == str(tmp_path / 'encoder_torchvision.safetensors')
  assert pretrained.expected_settings(path)['name'] == 'resnet50'
  loaded = _encoder('resnet50', input_norm='imagenet', seed=1)
  pretrained.load_encoder_weights(path, loaded)
  original = jax.tree_util.tree_leaves(nnx.state(encoder))
  for a, b in zip(original, jax.tree_util.tree_leaves(nnx.state(loaded))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('model,message', [
    ({'width': 0.25}, 'width=1'), ({'name': 'resnet50', 'stride_on': 'v1'}, 'stride_on=v1.5')])
def test_torchvision_export_refuses_what_torchvision_cannot_hold(model, message):
  config = default_config.get_default_config()
  config.model.update(model)
  config.export.formats = 'torchvision'
  with pytest.raises(ValueError, match=f'config.export.formats: .*{message}'):
    encoder_export.check_formats(config)
  config.export.formats = 'onnx'
  with pytest.raises(ValueError, match="'onnx' is not one of"):
    encoder_export.check_formats(config)
