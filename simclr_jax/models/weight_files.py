"""Reading ResNet weight files of other frameworks into {name: numpy array}.

Keras `.h5`/`.weights.h5` (h5py), torchvision `.pth`/`.pt` (torch) and `.safetensors`
(numpy, no extra package), and TensorFlow checkpoints (`tf.train.load_checkpoint`).
`models/pretrained.py` maps the tensors onto the encoder. `write_safetensors` is the one
writer, for the torchvision export.
"""

import json
import os
import re
from typing import Dict, Optional

import numpy as np

from simclr_jax.errors import MissingDependencyError, PathNotFound, UserError


_KERAS_SUFFIXES = ('.weights.h5', '.h5')
_TORCH_SUFFIXES = ('.pth', '.pt')
_SAFETENSORS_SUFFIX = '.safetensors'
TF_VALUE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'


# ---------------------------------------------------------------------------------------
# Which format a path is.


def is_weights_file(path: str) -> bool:
  """True for a file (or TF checkpoint) this module loads, as opposed to an orbax
  checkpoint or a pretraining workdir."""
  return format_of(path) is not None


def format_of(path: str) -> Optional[str]:
  lower = path.lower()
  if lower.endswith(_KERAS_SUFFIXES):
    return 'keras'
  if lower.endswith(_TORCH_SUFFIXES):
    return 'torch'
  if lower.endswith(_SAFETENSORS_SUFFIX):
    return 'safetensors'
  if _tf_checkpoint_prefix(path) is not None:
    return 'tf'
  return None


def _tf_checkpoint_prefix(path: str) -> Optional[str]:
  """The prefix `tf.train.load_checkpoint` wants: `path` itself when `path.index` exists,
  else from a directory (a SavedModel, its variables/ folder, or a training dir)."""
  if os.path.isfile(path + '.index'):
    return path
  if not os.path.isdir(path):
    return None
  for sub in ('variables/variables', 'saved_model/variables/variables'):
    if os.path.isfile(os.path.join(path, sub + '.index')):
      return os.path.join(path, sub)
  if os.path.isfile(os.path.join(path, 'variables.index')):
    return os.path.join(path, 'variables')
  latest = _latest_in_checkpoint_state(path)
  if latest is not None:
    return latest
  indexes = sorted(f[:-len('.index')] for f in os.listdir(path) if f.endswith('.index'))
  if indexes:  # the highest step, for names like ckpt-1000
    key = lambda p: int(m.group(1)) if (m := re.search(r'(\d+)$', p)) else -1
    return os.path.join(path, max(indexes, key=key))
  return None


def _latest_in_checkpoint_state(directory: str) -> Optional[str]:
  """Reads TF's `checkpoint` state file without importing TensorFlow."""
  state_file = os.path.join(directory, 'checkpoint')
  if not os.path.isfile(state_file):
    return None
  with open(state_file, errors='replace') as f:
    match = re.search(r'^model_checkpoint_path:\s*"(.*)"', f.read(), re.MULTILINE)
  if not match:
    return None
  prefix = match.group(1)
  prefix = prefix if os.path.isabs(prefix) else os.path.join(directory, prefix)
  return prefix if os.path.isfile(prefix + '.index') else None


# ---------------------------------------------------------------------------------------
# Reading each format into {name: array}.


def read_tensors(path: str, fmt: str) -> Dict[str, np.ndarray]:
  if fmt != 'tf' and not os.path.isfile(path):
    raise PathNotFound(f'Pretrained weights file {path} does not exist')
  readers = {'keras': _read_keras_h5, 'torch': _read_torch, 'safetensors': _read_safetensors,
             'tf': _read_tf_checkpoint}
  try:
    tensors = readers[fmt](path)
  except Exception as e:  # each library has its own errors for a broken file
    if isinstance(e, UserError):
      raise  # already says which file and why
    raise UserError(f'{path}: cannot be read as a {_FORMAT_NAMES[fmt]} weights file '
                    f'(truncated or not that format?): {type(e).__name__}: {e}') from e
  if not tensors:
    raise UserError(f'{path}: holds no tensors')
  return tensors


_FORMAT_NAMES = {'keras': 'Keras HDF5', 'torch': 'PyTorch', 'safetensors': 'safetensors',
                 'tf': 'TensorFlow checkpoint'}


def _read_keras_h5(path: str) -> Dict[str, np.ndarray]:
  """`layer_name/var_name` -> array, for Keras 3 `.weights.h5` and legacy Keras 2 `.h5`."""
  import h5py  # pylint: disable=import-outside-toplevel  (ships with keras)
  tensors = {}
  with h5py.File(path, 'r') as f:
    root = f['model_weights'] if 'model_weights' in f else f  # a whole saved model
    if 'layer_names' in root.attrs or any('weight_names' in g.attrs for g in root.values()
                                          if isinstance(g, h5py.Group)):
      _collect_legacy_h5(root, tensors)
    else:
      _collect_keras3_h5(root, tensors)
  return tensors


def _collect_legacy_h5(root, tensors):
  # Each layer group lists its weights in order under the 'weight_names' attribute, as
  # 'layer/kernel:0' (Keras 2) or 'layer/kernel' (Keras 3's legacy writer).
  for group in root.values():
    for weight_name in group.attrs.get('weight_names', []):
      weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
      parts = weight_name.split(':')[0].split('/')
      _add_unique(tensors, '/'.join(parts[-2:]), np.asarray(group[weight_name]))


# Keras 3 stores a layer's variables by position; these are the positions' names.
_KERAS3_VAR_NAMES = (
    ('_conv', ('kernel', 'bias')),
    ('_bn', ('gamma', 'beta', 'moving_mean', 'moving_variance')),
    ('predictions', ('kernel', 'bias')),
)


def _collect_keras3_h5(root, tensors):
  import h5py  # pylint: disable=import-outside-toplevel

  def visit(_, obj):
    if not (isinstance(obj, h5py.Group) and obj.name.endswith('/vars')):
      return
    values = [obj[k] for k in sorted(obj.keys(), key=int) if isinstance(obj[k], h5py.Dataset)]
    if not values:
      return
    layer = obj.attrs.get('name', obj.parent.name.rsplit('/', 1)[-1])
    layer = layer.decode() if isinstance(layer, bytes) else layer
    names = next((n for suffix, n in _KERAS3_VAR_NAMES if layer.endswith(suffix)), ())
    for i, value in enumerate(values):
      var = names[i] if i < len(names) else f'var{i}'
      _add_unique(tensors, f'{layer}/{var}', np.asarray(value))

  root.visititems(visit)


def _add_unique(tensors, name, value):
  if name in tensors:
    raise ValueError(f'two tensors are named {name!r}: a model with nested models?')
  tensors[name] = value


# torch.save writes a zip archive (PyTorch >= 1.6) or, before that, a pickle (protocol 2+).
_TORCH_MAGICS = (b'PK\x03\x04', b'\x80')


def _read_torch(path: str) -> Dict[str, np.ndarray]:
  with open(path, 'rb') as f:
    head = f.read(4)
  if not head.startswith(_TORCH_MAGICS):
    raise UserError(f'{path}: not a PyTorch file (neither the zip archive nor the pickle '
                    'that torch.save writes); truncated, or another format named .pth?')
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise MissingDependencyError(
        f'Reading {path} needs PyTorch (pip install torch, the CPU build is enough), or '
        'save the state dict as .safetensors instead') from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  # Training checkpoints often wrap the state dict.
  for key in ('state_dict', 'model'):
    if isinstance(state, dict) and isinstance(state.get(key), dict):
      state = state[key]
  if not isinstance(state, dict):
    raise UserError(f'{path}: holds a {type(state).__name__}, not a state dict')
  tensors = {}
  for name, value in state.items():
    if not torch.is_tensor(value):
      raise UserError(f'{path}: entry {name!r} is a {type(value).__name__}, not a tensor')
    tensors[_strip_data_parallel(name)] = value.detach().cpu().to(
        torch.float64 if value.is_floating_point() else value.dtype).numpy()
  return tensors


def _strip_data_parallel(name: str) -> str:
  return name[len('module.'):] if name.startswith('module.') else name


_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'I64': np.int64,
    'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_,
}


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """The safetensors format: an 8-byte little-endian header length, a JSON header of
  {name: {dtype, shape, data_offsets}}, then the raw little-endian buffer."""
  data = np.memmap(path, dtype=np.uint8, mode='r')
  if data.size < 8:
    raise UserError(f'{path}: too short to be a safetensors file')
  header_len = int(data[:8].view('<u8')[0])
  if header_len > data.size - 8:
    raise UserError(f'{path}: safetensors header length {header_len} exceeds the file '
                    f'({data.size} bytes): truncated or not safetensors')
  try:
    header = json.loads(bytes(data[8:8 + header_len]))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f'{path}: safetensors header is not valid JSON') from e
  buffer = data[8 + header_len:]
  tensors = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    dtype = _safetensors_dtype(path, info['dtype'])
    begin, end = info['data_offsets']
    count = int(np.prod(info['shape'], dtype=np.int64))
    if end > buffer.size or end - begin != count * dtype.itemsize:
      raise UserError(f'{path}: tensor {name!r} lies outside the file: truncated?')
    tensors[name] = np.array(buffer[begin:end].view(dtype).reshape(info['shape']))
  return tensors


def write_safetensors(path: str, tensors: Dict[str, np.ndarray],
                      metadata: Optional[Dict[str, str]] = None) -> None:
  """The layout `_read_safetensors` reads (and the `safetensors` package), written with
  numpy so exporting needs no extra package; atomically, via a temporary file."""
  codes = {np.dtype(v).newbyteorder('<'): k for k, v in _SAFETENSORS_DTYPES.items()}
  header, chunks, offset = {}, [], 0
  if metadata:
    header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
  for name in sorted(tensors):
    array = np.ascontiguousarray(tensors[name])
    array = array.astype(array.dtype.newbyteorder('<'), copy=False)
    if array.dtype not in codes:
      raise ValueError(f'{name}: dtype {array.dtype} has no safetensors code')
    header[name] = {'dtype': codes[array.dtype], 'shape': list(array.shape),
                    'data_offsets': [offset, offset + array.nbytes]}
    chunks.append(array.tobytes())
    offset += array.nbytes
  encoded = json.dumps(header, separators=(',', ':')).encode()
  encoded += b' ' * (-len(encoded) % 8)  # the buffer starts 8-byte aligned, as the spec asks
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(np.uint64(len(encoded)).astype('<u8').tobytes())
    f.write(encoded)
    for chunk in chunks:
      f.write(chunk)
  os.replace(tmp, path)


def _safetensors_dtype(path, code):
  if code == 'BF16':
    import ml_dtypes  # pylint: disable=import-outside-toplevel  (a jax dependency)
    return np.dtype(ml_dtypes.bfloat16)
  if code not in _SAFETENSORS_DTYPES:
    raise UserError(f'{path}: unsupported safetensors dtype {code}')
  return np.dtype(_SAFETENSORS_DTYPES[code]).newbyteorder('<')


def _read_tf_checkpoint(path: str) -> Dict[str, np.ndarray]:
  prefix = _tf_checkpoint_prefix(path)
  if prefix is None:
    raise PathNotFound(f'{path}: no TensorFlow checkpoint (no .index file) found there')
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  reader = tf.train.load_checkpoint(prefix)
  # Only the ResNet's own values: not optimizer slots, heads, counters or the object graph.
  names = [n for n in reader.get_variable_to_shape_map()
           if n.endswith(TF_VALUE_SUFFIX) and '.OPTIMIZER_SLOT' not in n]
  return {n[:-len(TF_VALUE_SUFFIX)]: reader.get_tensor(n) for n in names}


