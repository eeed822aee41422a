"""New images through a trained model: finding them, preparing them exactly as evaluation
does (folder.py's decoder, channels.py's channel rules, pipeline.labelled_transform's
centre crop and resize), and one jitted function over batches sharded on every device.

A file that does not decode, or whose channels do not fit the model, becomes an error
for its row; the others go on.
"""

import collections
import dataclasses
import functools
import os
import pathlib

import jax
import numpy as np
from flax import nnx

from simclr_jax.data import folder, pipeline, stores
from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.inference import decode_pool
from simclr_jax.runtime import console, parallel


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
  """Decodes images in `workers` worker processes (decode_pool.py says why not threads),
  a batch ahead of the one being used, or here when workers is 1; records each failure's message and, when asked, a
  thumbnail of each image that decodes."""

  def __init__(self, config, thumbnails: bool, workers: int):
    self.channels = config.data.channels
    self.uint16_max = config.data.uint16_max
    self.size = config.data.image_size
    self.thumbnails = {} if thumbnails else None
    self.errors = {}
    self.workers = workers

  def decode_here(self, index: int, path: str):
    """One file in this process: its image, or None with its error recorded."""
    image, error, thumbnail = decode_pool.decode_chunk(
        [(index, path)], self.channels, self.uint16_max, self.thumbnails is not None)[0]
    self._record(index, error, thumbnail)
    return image

  def _record(self, index, error, thumbnail):
    if error is not None:
      self.errors[index] = error
    elif thumbnail is not None:
      self.thumbnails[index] = thumbnail

  def batches(self, paths, batch_size: int, process_index: int = 0, process_count: int = 1):
    """(images, sizes, file index as 'label', mask, seed) per global batch, this
    process's rows: failed files and padding past the end have mask False (padding has
    index -1)."""
    local = batch_size // process_count
    blank = np.zeros((self.size, self.size, self.channels), np.uint8)
    indices_of = []
    for start in range(0, len(paths), batch_size):
      indices = np.arange(start + process_index * local, start + (process_index + 1) * local)
      indices[indices >= len(paths)] = -1
      indices_of.append(indices)
    if self.workers == 1:
      decode = lambda todo: [self.decode_here(i, p) for i, p in todo]
      for indices in indices_of:
        todo = [(i, paths[i]) for i in indices.tolist() if i >= 0]
        yield self._batch(indices, dict(zip([i for i, _ in todo], decode(todo))), blank)
      return
    pool = decode_pool.process_pool(self.workers)
    try:
      pending = collections.deque()
      submit = lambda indices: pending.append((indices, self._submit(pool, paths, indices)))
      for indices in indices_of[:2]:  # the next batch decodes while this one is used
        submit(indices)
      for k in range(len(indices_of)):
        indices, futures = pending.popleft()
        if k + 2 < len(indices_of):
          submit(indices_of[k + 2])
        decoded = {}
        for chunk, future in futures:
          for (i, _), (image, error, thumbnail) in zip(chunk, future.result()):
            decoded[i] = image
            self._record(i, error, thumbnail)
        yield self._batch(indices, decoded, blank)
      pool.shutdown()  # the workers have finished: wait for them to exit
    finally:
      pool.shutdown(wait=False, cancel_futures=True)  # stopped early: do not wait

  def _submit(self, pool, paths, indices):
    todo = [(i, paths[i]) for i in indices.tolist() if i >= 0]
    # One task per worker and batch, not one per file: a hand-off costs as much as
    # decoding a small image.
    chunks = [c for c in (todo[k::self.workers] for k in range(self.workers)) if c]
    return [(c, pool.submit(decode_pool.decode_chunk, c, self.channels, self.uint16_max,
                            self.thumbnails is not None)) for c in chunks]

  @staticmethod
  def _batch(indices, decoded, blank):
    images = [decoded.get(i) for i in indices.tolist()]
    mask = np.array([im is not None for im in images], bool)
    images, sizes = stores.pad_batch([blank if im is None else im for im in images])
    return images, sizes, indices.astype(np.int32), mask, np.zeros(4, np.int64)


# Fewer files than this decode in this process: starting workers (a few tenths of a
# second each) would cost more than it saves.
PROCESS_POOL_MIN_FILES = 512


def decode_workers(num_files: int) -> int:
  return available_cores() if num_files >= PROCESS_POOL_MIN_FILES else 1


def available_cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
      os.cpu_count() or 1)


@functools.lru_cache(maxsize=8)
def jit_on_mesh(graphdef, mesh, body):
  """jax.jit of body(model, images) -> pytree of [B, ...], images sharded over the mesh's
  data axis, the model replicated, the outputs replicated. Extra batch-sharded arrays
  after the images come back replicated with the outputs: every process learns the whole
  batch's rows in the same call, without a separate all-gather. Cached, so a second pass
  over images (the benchmark's timed one, or embed after predict) does not compile again."""

  def apply(params, batch_stats, images, passed=()):
    return body(nnx.merge(graphdef, params, batch_stats), images), passed

  replicated, sharded = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  return jax.jit(apply, in_shardings=(replicated, replicated, sharded, sharded),
                 out_shardings=replicated)


class Progress(console.Progress):
  """images/s and ETA: redrawn in place on a terminal, a plain line every 10 s otherwise;
  silent for runs shorter than a few seconds."""

  def __init__(self, total: int, what: str, stream=None):
    super().__init__(total, what, 'images', every_secs=10.0, quiet_secs=3.0, stream=stream)


def prepared_batches(config, images: ImageSet, batch_size: int, thumbnails: bool = False):
  """(the Decoder, an iterator of this process's rows of each global batch, prepared as
  evaluation prepares them: {'image' [b, S, S, C] in [0, 1], 'label': file index, 'mask'})."""
  decoder = Decoder(config, thumbnails, decode_workers(len(images.paths) // jax.process_count()))
  uint8 = decoder.batches(images.paths, batch_size, jax.process_index(), jax.process_count())
  return decoder, pipeline.labelled_transform(config, uint8, augment=False)


def apply_to_images(run, body, images: ImageSet, mesh, batch_size: int, what: str,
                    thumbnails: bool = False):
  """Runs body(model, images [B, S, S, C] in [0, 1]) -> {name: [B, ...]} over every image.

  Returns (outputs {name: [n_ok, ...]}, the file indices of those rows (ascending), errors
  {file index: message}, thumbnails {file index: PNG bytes} or None)."""
  devices = mesh.devices.size
  batch_size = -(-max(batch_size, 1) // devices) * devices  # every device gets rows
  decoder, prepared = prepared_batches(run.config, images, batch_size, thumbnails)
  apply_fn = jit_on_mesh(run.graphdef, mesh, body)
  outputs, order = [], []
  progress = Progress(len(images.paths), what)
  done = 0

  def collect(result):
    nonlocal done
    out, (index, mask) = jax.device_get(result)
    mask = np.asarray(mask, bool)
    outputs.append({k: np.asarray(v)[mask] for k, v in out.items()})
    order.append(np.asarray(index)[mask])
    done += int((index >= 0).sum())
    progress.update(done)

  pending = None
  for batch in prepared:
    batch = parallel.to_global_batch(batch, mesh)
    # Dispatch is asynchronous: batch k + 1 is on its way before batch k is fetched, so
    # the devices do not wait for the host between batches.
    result = apply_fn(run.params, run.batch_stats, batch['image'],
                      (batch['label'], batch['mask']))
    if pending is not None:
      collect(pending)
    pending = result
  if pending is not None:
    collect(pending)
  progress.close()
  order = np.concatenate(order) if order else np.zeros(0, np.int32)
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in (outputs[0] if outputs else {})}
  # Other processes' rows: their failures' messages, and on process 0 (which writes the
  # page) their thumbnails, come from decoding those files again here.
  for i in sorted(set(range(len(images.paths))) - set(order.tolist()) - set(decoder.errors)):
    decoder.decode_here(i, images.paths[i])
    decoder.errors.setdefault(i, 'not decoded')
  if thumbnails and jax.process_index() == 0:
    for i in sorted(set(order.tolist()) - set(decoder.thumbnails)):
      decoder.decode_here(i, images.paths[i])
  return merged, order, dict(decoder.errors), decoder.thumbnails
