"""New images through a trained model: finding them, preparing them exactly as evaluation
does (folder.py's decoder, channels.py's channel rules, pipeline.labelled_transform's
centre crop and resize), and one jitted function over batches sharded on every device.

A file that does not decode, or whose channels do not fit the model, becomes an error
for its row; the others go on.
"""

import concurrent.futures
import dataclasses
import os
import pathlib

import jax
import numpy as np
from flax import nnx

from simclr_jax.data import folder, pipeline, stores
from simclr_jax.evaluation.predictions_page import thumbnail_png
from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.runtime import console, parallel
from simclr_jax.training import features


@dataclasses.dataclass
class ImageSet:
  paths: list[str]  # in a deterministic order: sorted for a folder, as listed for a list
  labels: np.ndarray | None  # training class index per image, when the folders name them
  source: str  # what --images named


def find_images(path: str, class_names=()) -> ImageSet:
  """One image, a folder searched recursively, or a text file of paths (one a line,
  relative ones from the list's folder; '#' starts a comment). When every image of a
  folder sits in a sub-folder named after a training class, its labels come with it."""
  root = pathlib.Path(os.path.expanduser(path))
  if not root.exists():
    raise PathNotFound(f'--images={path}: no such file or folder')
  if root.is_file():
    if root.suffix.lower() in folder.IMAGE_EXTENSIONS:
      return ImageSet([str(root)], None, path)
    return ImageSet(_listed_paths(root), None, path)
  files = folder._image_files(root)  # pylint: disable=protected-access
  if not files:
    raise folder._no_images_error(root, '--images: the folder')  # pylint: disable=protected-access
  top = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else None
         for f in files]
  labels = None
  if class_names and all(t in class_names for t in top):
    labels = np.array([list(class_names).index(t) for t in top], np.int32)
  return ImageSet([str(f) for f in files], labels, path)


def _listed_paths(list_file: pathlib.Path) -> list[str]:
  try:
    lines = list_file.read_text().splitlines()
  except UnicodeDecodeError as e:
    raise UserError(f'--images={list_file}: neither an image ({", ".join(folder.IMAGE_EXTENSIONS)}) '
                    f'nor a text file of paths ({e})') from e
  paths = [line.split('#', 1)[0].strip() for line in lines]
  paths = [str(list_file.parent / p) if not os.path.isabs(p) else p for p in paths if p]
  if not paths:
    raise UserError(f'--images={list_file}: the list names no files')
  return paths


class Decoder:
  """Decodes images in threads; records each failure's message and, when asked, a
  thumbnail of each image that decodes."""

  def __init__(self, config, thumbnails: bool):
    self.channels = config.data.channels
    self.uint16_max = config.data.uint16_max
    self.size = config.data.image_size
    self.thumbnails = {} if thumbnails else None
    self.errors = {}
    self.pool = concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2)

  def _one(self, item):
    index, path = item
    try:
      image = folder.decode(path, self.channels, self.uint16_max)
    except Exception as e:  # pylint: disable=broad-except  (any decoder failure: the row's error)
      message = str(e) if isinstance(e, ValueError) and str(path) in str(e) else (
          f'{type(e).__name__}: {e}')
      self.errors[index] = ' '.join(message.split())
      return None
    if self.thumbnails is not None:
      self.thumbnails[index] = thumbnail_png(image)
    return image

  def batches(self, paths, batch_size: int, process_index: int = 0, process_count: int = 1):
    """(images, sizes, file index as 'label', mask, seed) per global batch, this
    process's rows: failed files and padding past the end have mask False (padding has
    index -1)."""
    local = batch_size // process_count
    blank = np.zeros((self.size, self.size, self.channels), np.uint8)
    for start in range(0, len(paths), batch_size):
      first = start + process_index * local
      indices = np.arange(first, first + local)
      indices[indices >= len(paths)] = -1
      todo = [(int(i), paths[i]) for i in indices if i >= 0]
      decoded = dict(zip([i for i, _ in todo], self.pool.map(self._one, todo)))
      images = [decoded.get(int(i)) for i in indices]
      mask = np.array([im is not None for im in images], bool)
      images, sizes = stores.pad_batch([blank if im is None else im for im in images])
      yield images, sizes, indices.astype(np.int32), mask, np.zeros(4, np.int64)


def jit_on_mesh(graphdef, mesh, body):
  """jax.jit of body(model, images) -> pytree of [B, ...], images sharded over the mesh's
  data axis, the model replicated, the outputs replicated."""

  def apply(params, batch_stats, images):
    return body(nnx.merge(graphdef, params, batch_stats), images)

  replicated = parallel.replicated(mesh)
  return jax.jit(apply, in_shardings=(replicated, replicated, parallel.batch_sharding(mesh)),
                 out_shardings=replicated)


class Progress(console.Progress):
  """images/s and ETA: redrawn in place on a terminal, a plain line every 10 s otherwise;
  silent for runs shorter than a few seconds."""

  def __init__(self, total: int, what: str, stream=None):
    super().__init__(total, what, 'images', every_secs=10.0, quiet_secs=3.0, stream=stream)


def apply_to_images(run, body, images: ImageSet, mesh, batch_size: int, what: str,
                    thumbnails: bool = False):
  """Runs body(model, images [B, S, S, C] in [0, 1]) -> {name: [B, ...]} over every image.

  Returns (outputs {name: [n_ok, ...]}, the file indices of those rows (ascending), errors
  {file index: message}, thumbnails {file index: PNG bytes} or None)."""
  devices = mesh.devices.size
  batch_size = -(-max(batch_size, 1) // devices) * devices  # every device gets rows
  decoder = Decoder(run.config, thumbnails)
  uint8 = decoder.batches(images.paths, batch_size, jax.process_index(), jax.process_count())
  prepared = pipeline.labelled_transform(run.config, uint8, augment=False)
  apply_fn = jit_on_mesh(run.graphdef, mesh, body)
  outputs, order = [], []
  progress = Progress(len(images.paths), what)
  done = 0
  for batch in prepared:
    batch = parallel.to_global_batch(batch, mesh)
    out = jax.device_get(apply_fn(run.params, run.batch_stats, batch['image']))
    mask = np.asarray(features._replicated_value(batch['mask']), bool)  # pylint: disable=protected-access
    index = np.asarray(features._replicated_value(batch['label']))  # pylint: disable=protected-access
    outputs.append({k: np.asarray(v)[mask] for k, v in out.items()})
    order.append(index[mask])
    done += int((index >= 0).sum())
    progress.update(done)
  progress.close()
  order = np.concatenate(order) if order else np.zeros(0, np.int32)
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in (outputs[0] if outputs else {})}
  errors = dict(decoder.errors)
  for i in sorted(set(range(len(images.paths))) - set(order.tolist()) - set(errors)):
    errors[i] = _error_of(decoder, i, images.paths[i])  # another process's failure
  return merged, order, errors, decoder.thumbnails


def _error_of(decoder: Decoder, index: int, path: str) -> str:
  decoder._one((index, path))  # pylint: disable=protected-access
  return decoder.errors.get(index, 'not decoded')
