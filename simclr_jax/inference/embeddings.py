"""The encoder's features for new images: the .npz that python -m simclr_jax.embed writes
(its docstring says what it holds)."""

import json
import os

import numpy as np

from simclr_jax.errors import UserError
from simclr_jax.evaluation import trained_model
from simclr_jax.inference import new_images
from simclr_jax.runtime import distributed, parallel

DTYPES = ('float32', 'float16')


def _features(with_z: bool):
  def body(model, images):
    encoder = getattr(model, 'encoder', model)
    h = encoder(images, train=False)
    return {'h': h, 'z': model.head(h, train=False)} if with_z else {'h': h}

  return body


def _class_names_for(run, images: str):
  """The training classes, or for a pretraining the sub-folder names of `images`."""
  if run.class_names:
    return run.class_names
  if os.path.isdir(images):
    return tuple(sorted(d for d in os.listdir(images)
                        if os.path.isdir(os.path.join(images, d)) and not d.startswith('.')))
  return ()


def embed(workdir: str, images: str, out: str, with_z: bool = False, dtype: str = 'float32',
          batch_size: int = 0) -> dict:
  """Writes `out` (see the module doc); returns its arrays."""
  if dtype not in DTYPES:
    raise UserError(f'--dtype={dtype}: expected one of {DTYPES}')
  if not out.endswith('.npz'):
    raise UserError(f'--out={out}: expected a file name ending in .npz')
  workdir = os.path.abspath(os.path.expanduser(workdir))
  mesh = parallel.make_mesh()
  run = trained_model.load_encoder(workdir, mesh, with_head=with_z)
  names = _class_names_for(run, images)
  found = new_images.find_images(images, names)
  outputs, order, errors, _ = new_images.apply_to_images(
      run, _features(with_z), found, mesh, batch_size or run.config.eval_batch_size, 'embed')
  cast = lambda a: np.asarray(a, np.float32).astype(dtype)
  failed = sorted(errors)
  settings = {'model': run.config.model.to_dict(), 'image_size': run.config.data.image_size,
              'channels': run.config.data.channels, 'protocol': run.protocol,
              'workdir': workdir}
  arrays = {'h': cast(outputs['h']) if len(order) else np.zeros((0, 0), dtype),
            'paths': np.array([found.paths[i] for i in order], dtype=str),
            'failed_paths': np.array([found.paths[i] for i in failed], dtype=str),
            'failed_errors': np.array([errors[i] for i in failed], dtype=str),
            'encoder_config': np.array(json.dumps(settings))}
  if with_z and len(order):
    arrays['z'] = cast(outputs['z'])
  if found.labels is not None:
    arrays['labels'] = found.labels[order]
    arrays['class_names'] = np.array(names, dtype=str)
  if distributed.is_main_process():
    out = os.path.abspath(os.path.expanduser(out))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out[:-4] + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
  return arrays
