r"""The encoder's features for new images, for clustering, retrieval or another classifier.

  python -m simclr_jax.embed --workdir=W --images=PATH --out=FILE.npz [--z] [--dtype=float16]

W is any workdir with an encoder: a pretraining (its last checkpoint), a fine-tuning or a
linear evaluation (its classifier's encoder). PATH is as for predict. FILE.npz holds

- `h` [n, F]: the encoder's pooled features, computed as linear evaluation computes them
  (float32 unless --dtype says otherwise);
- `z` [n, D] with --z: the projection head's output (pretraining workdirs, and linear
  evaluations of g(h));
- `paths` [n]: the embedded files, in the order of the rows;
- `labels` [n] and `class_names`, when PATH's sub-folders name classes (the training
  classes of a classifier workdir; for a pretraining, the sub-folders' own names);
- `failed_paths`, `failed_errors`: the files not embedded and why;
- `encoder_config`: the run's model and data settings, as a JSON string.
"""

import json
import os

import numpy as np

from simclr_jax import distributed, inference, parallel, run_errors, trained_model
from simclr_jax import installed
from simclr_jax.errors import UserError

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
  found = inference.find_images(images, names)
  outputs, order, errors, _ = inference.apply_to_images(
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


def _main():
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  workdir = flags.DEFINE_string('workdir', None, 'Any workdir with an encoder.')
  images = flags.DEFINE_string('images', None, 'An image, a folder, or a text file of paths.')
  out = flags.DEFINE_string('out', None, 'The .npz file to write.')
  with_z = flags.DEFINE_bool('z', False, 'Also the projection head\'s output z.')
  dtype = flags.DEFINE_string('dtype', 'float32', f'One of {DTYPES}.')
  batch = flags.DEFINE_integer('batch_size', 0, 'Global batch (0: the run\'s eval_batch_size).')

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not workdir.value or not images.value or not out.value:
      raise app.UsageError('--workdir=DIR, --images=PATH and --out=FILE.npz are required')
    with run_errors.one_line_errors():
      arrays = embed(workdir.value, images.value, out.value, with_z.value, dtype.value,
                     batch.value)
    if distributed.is_main_process():
      print(f"embedded {len(arrays['paths'])} images, {len(arrays['failed_paths'])} could "
            f"not be read (failed_paths, failed_errors) -> {out.value}")

  app.run(main, flags_parser=installed.parse_flags)


if __name__ == '__main__':
  _main()
