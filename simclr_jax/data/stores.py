"""Image stores: fetch a batch of uint8 images by index, padded to a common size.

`fetch(indices)` returns (images uint8 [b, H, W, C], sizes int32 [b, 2]) with C the
dataset's channels (config.data.channels): images of
different sizes are padded at the bottom/right to the largest, and `sizes` holds each
one's real (height, width), which the augmentations respect.
"""

import concurrent.futures
import os

import numpy as np


def pad_batch(images) -> tuple[np.ndarray, np.ndarray]:
  sizes = np.array([im.shape[:2] for im in images], np.int32).reshape(-1, 2)
  if len(images) and (sizes == sizes[0]).all():
    return np.stack(images), sizes
  height, width = sizes.max(axis=0) if len(images) else (1, 1)
  channels = images[0].shape[2] if len(images) else 3
  out = np.zeros((len(images), height, width, channels), np.uint8)
  for i, im in enumerate(images):
    out[i, :im.shape[0], :im.shape[1]] = im
  return out, sizes


def pad_to(images: np.ndarray, height: int, width: int) -> np.ndarray:
  """Pads a batch [b, h, w, C] at the bottom/right to [b, height, width, C]."""
  _, h, w, _ = images.shape
  if (h, w) == (height, width):
    return images
  return np.pad(images, ((0, 0), (0, height - h), (0, width - w), (0, 0)))


def pad_to_bucket(images: np.ndarray, multiple: int = 32) -> np.ndarray:
  """Pads height and width up to a multiple of `multiple`, so that batches of images of
  varying sizes come in few shapes (each shape is one compilation of a jitted op)."""
  _, h, w, _ = images.shape
  return pad_to(images, -(-h // multiple) * multiple, -(-w // multiple) * multiple)


def max_size(store):
  """The largest (height, width) in a store, or None where it is unknown without decoding
  every image (DecodingStore)."""
  if isinstance(store, ArrayStore):
    return tuple(store.images.shape[1:3])
  if isinstance(store, ListStore):
    return tuple(np.max([im.shape[:2] for im in store.images], axis=0)) if len(store) else (1, 1)
  if isinstance(store, SubsetStore):
    return max_size(store.base)
  if isinstance(store, ConcatStore):
    sizes = [max_size(s) for s in store.stores]
    return None if any(s is None for s in sizes) else tuple(np.max(sizes, axis=0))
  return None


class ArrayStore:
  """Decoded images of one size in memory."""

  def __init__(self, images: np.ndarray):
    self.images = images

  def __len__(self):
    return len(self.images)

  def fetch(self, indices):
    images = np.take(self.images, indices, axis=0)
    sizes = np.tile(np.array(self.images.shape[1:3], np.int32), (len(indices), 1))
    return images, sizes


class ListStore:
  """Decoded images of different sizes in memory."""

  def __init__(self, images: list):
    self.images = images

  def __len__(self):
    return len(self.images)

  def fetch(self, indices):
    return pad_batch([self.images[i] for i in indices])


class DecodingStore:
  """Images decoded on every fetch by `load(i)` (files, TFDS data sources), in threads."""

  def __init__(self, count: int, load, threads: int = 0):
    self.count, self.load = count, load
    self.pool = concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 2)

  def __len__(self):
    return self.count

  def fetch(self, indices):
    return pad_batch(list(self.pool.map(self.load, indices)))


class SubsetStore:
  """A view of another store through an index array (a split of a dataset)."""

  def __init__(self, base, indices):
    self.base, self.indices = base, np.asarray(indices, np.int64)

  def __len__(self):
    return len(self.indices)

  def fetch(self, indices):
    return self.base.fetch(self.indices[np.asarray(indices, np.int64)])


class ConcatStore:
  """Stores one after the other (pretraining pool: train + extra unlabelled)."""

  def __init__(self, stores):
    self.stores = [s for s in stores if len(s)]
    self.offsets = np.cumsum([0] + [len(s) for s in self.stores])

  def __len__(self):
    return int(self.offsets[-1])

  def fetch(self, indices):
    indices = np.asarray(indices, np.int64)
    which = np.searchsorted(self.offsets, indices, side='right') - 1
    images = [None] * len(indices)
    for k, store in enumerate(self.stores):
      pos = np.flatnonzero(which == k)
      if len(pos):
        batch, sizes = store.fetch(indices[pos] - self.offsets[k])
        for p, im, (h, w) in zip(pos, batch, sizes):
          images[p] = im[:h, :w]
    return pad_batch(images)
