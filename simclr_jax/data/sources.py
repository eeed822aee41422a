"""Datasets as image stores per split: synthetic_cells, folder, or any TFDS name.

`load(config, workdir)` returns a Source: class names, (store, labels) for train/val/
test, and the extra unlabelled images (config.data.extra_unlabeled) for pretraining.
Loaded sources are cached per process, so the trainer's several iterators and the study's
sub-runs decode (or generate) the images once.
"""

import dataclasses
import json
import logging
import pathlib

import numpy as np

from simclr_jax.data import channels as channels_lib
from simclr_jax.data import flag_blank as blank_lib
from simclr_jax.data import folder
from simclr_jax.data import split as split_lib
from simclr_jax.data import stores
from simclr_jax.data import synthetic
from simclr_jax.data.fingerprint import fingerprint
from simclr_jax.data.folder import DataError


@dataclasses.dataclass
class Source:
  class_names: tuple[str, ...]
  splits: dict  # 'train' | 'val' | 'test' -> (store, int32 labels, -1 = unlabelled)
  extra: object  # a store of unlabelled images, or None
  # Files left out as near-blank (config.data.drop_blank_below), per split.
  dropped_blank: dict = dataclasses.field(default_factory=dict)
  # Each split's image files in the split's order (folder datasets; none for arrays).
  paths: dict = dataclasses.field(default_factory=dict)


_CACHE = {}


def load(config, workdir) -> Source:
  data = config.data
  key = (fingerprint(data),)
  record = None
  if data.name == 'folder':
    # A folder dataset is its split record (reused, or made and written, by _folder_split):
    # keyed by the record's content, the study's sub-runs, each with a copy of one
    # split.json, decode the images once.
    record = _folder_split(config, workdir)
    key += (json.dumps(record, sort_keys=True),)
  if key in _CACHE:
    return _CACHE[key]
  source = SOURCES.get(data.name, _tfds)(config, record)
  if data.extra_unlabeled:
    source.extra = _unlabelled_folders(data.extra_unlabeled, data)
  _CACHE.clear()  # one dataset at a time: keep memory bounded
  _CACHE[key] = source
  return source


def _synthetic(config, record) -> Source:
  del record  # generated, not read
  data = config.data
  images, labels = synthetic.generate(data.num_synthetic, data.synthetic_size, data.seed,
                                      data.channels)
  parts = split_lib.stratified_split(labels, data.split, data.seed)
  base = stores.ArrayStore(images)
  splits = {name: (stores.SubsetStore(base, idx), labels[idx]) for name, idx in parts.items()}
  return Source(synthetic.CLASS_NAMES, splits, None)


def _folder_split(config, workdir) -> dict:
  """The split record: reused from WORKDIR (or init_from), else made and written."""
  data = config.data
  found = split_lib.find_split_file(workdir, config.init_from)
  if found:
    record = split_lib.read(found)
    split_lib.adopt(found, workdir)
    root = pathlib.Path(data.path)
    missing = [e['path'] for s in split_lib.SPLITS for e in record['splits'][s]
               if not (root / e['path']).is_file()]
    if missing:
      raise DataError(f'{found} lists {len(missing)} images missing from '
                      f'config.data.path={data.path!r} (e.g. {missing[0]!r}). Point '
                      'data.path at the dataset the split was made for, or use a new '
                      'workdir to make a new split.')
    return record
  own_splits = folder.own_split_folders(data.path)
  names, files, labels, parts = (_own_split(data) if own_splits else _stratified(data))
  record = {
      'data_path': str(pathlib.Path(data.path).resolve()), 'seed': data.seed,
      'fractions': list(split_lib.check_fractions(data.split)),
      # True: test (and val, when the folder has val/) are the folder's own folders.
      'own_splits': own_splits,
      'class_names': list(names),
      'splits': {s: [{'path': files[i], 'label': int(labels[i])} for i in idx]
                 for s, idx in parts.items()},
  }
  if workdir:
    split_lib.write(pathlib.Path(workdir) / split_lib.SPLIT_FILE, record)
  return record


def _readable(data, files, labels):
  ok = folder.check_headers(data.path, files, data.strict)
  return [f for f, good in zip(files, ok) if good], labels[ok]


def _stratified(data):
  """(class names, files, labels, {split: indices}): one folder split by data.split."""
  names, files, labels = folder.scan(data.path)
  files, labels = _readable(data, files, labels)
  return names, files, labels, split_lib.stratified_split(labels, data.split, data.seed)


def _own_split(data):
  """The same for a folder with train/ and test/: test is test/, val is val/ or else
  carved from train/ (split.carve_val)."""
  names, own = folder.scan_own_splits(data.path)
  files, labels, parts = [], [], {}
  for split, (split_files, split_labels) in own.items():
    split_files, split_labels = _readable(data, split_files, split_labels)
    parts[split] = np.arange(len(files), len(files) + len(split_files))
    files += split_files
    labels.append(split_labels)
  labels = np.concatenate(labels)
  if 'val' not in parts:
    carved = split_lib.carve_val(labels[parts['train']], data.split, data.seed)
    parts['train'], parts['val'] = (parts['train'][carved[s]] for s in ('train', 'val'))
  return names, files, labels, parts


def _image_store(root, files, data):
  """(store, kept mask): decoded in memory when they fit in data.in_memory_limit_mb,
  else decoded from the files on each use."""
  root = pathlib.Path(root)
  decode = lambda i: folder.decode(root / files[i], data.channels, data.uint16_max)
  first = _first_decodable(decode, len(files))
  estimate_mb = len(files) * first.size / 2**20
  if estimate_mb > data.in_memory_limit_mb:
    logging.info('%s: ~%.0f MB decoded, over data.in_memory_limit_mb; decoding from files',
                 root, estimate_mb)
    return stores.DecodingStore(len(files), decode), np.ones(len(files), bool)
  images = folder.decode_all(root, files, data.strict, channels=data.channels,
                             uint16_max=data.uint16_max)
  kept = np.array([im is not None for im in images], bool)
  images = [im for im in images if im is not None]
  if images and all(im.shape == images[0].shape for im in images):
    return stores.ArrayStore(np.stack(images)), kept
  return stores.ListStore(images), kept


def _first_decodable(decode, count: int, attempts: int = 20) -> np.ndarray:
  """The first image that decodes, for the memory estimate (empty when none of the first
  `attempts` does: decode_all then names them). Decoding it also checks its channels now,
  not in the middle of training: a ChannelError is raised."""
  for i in range(min(count, attempts)):
    try:
      return decode(i)
    except channels_lib.ChannelError:
      raise
    except Exception:  # pylint: disable=broad-except  (a broken file, reported later)
      continue
  return np.zeros((0, 0, 1), np.uint8)


def _folder(config, record) -> Source:
  data = config.data
  entries = [(s, e) for s in split_lib.SPLITS for e in record['splits'][s]]
  store, kept = _image_store(data.path, [e['path'] for _, e in entries], data)
  entries = [entry for entry, ok in zip(entries, kept) if ok]
  keep = np.ones(len(entries), bool)
  if data.drop_blank_below > 0:
    keep = blank_lib.grey_stds(store) >= data.drop_blank_below
  split_of = np.array([s for s, _ in entries])
  labels = np.array([e['label'] for _, e in entries], np.int32)
  dropped = {s: [e['path'] for (split, e), k in zip(entries, keep) if split == s and not k]
             for s in split_lib.SPLITS}
  if data.drop_blank_below > 0:
    logging.info('%s: left out %s near-blank images (grey std < %g; data.drop_blank_below)',
                 data.path, {s: len(d) for s, d in dropped.items()}, data.drop_blank_below)
  splits = {s: (stores.SubsetStore(store, np.flatnonzero((split_of == s) & keep)),
                labels[(split_of == s) & keep]) for s in split_lib.SPLITS}
  paths = {s: [e['path'] for (split, e), k in zip(entries, keep) if split == s and k]
           for s in split_lib.SPLITS}
  return Source(tuple(record['class_names']), splits, None, dropped, paths)


def _tfds(config, record) -> Source:
  """Any other config.data.name is a TensorFlow Datasets name (read from
  config.data.tfds_data_dir, never downloaded)."""
  del record
  from simclr_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  names, splits = tfds_source.load(config)
  return Source(names, splits, None)


# config.data.name -> the loader: (config, the folder's split record or None) -> Source.
# A name not here is a TFDS dataset. A new source is one function and one entry here; its
# config keys that change the images go in fingerprint.py (a test checks that they do).
SOURCES = {'synthetic_cells': _synthetic, 'folder': _folder}


def _unlabelled_folders(spec: str, data):
  parts = []
  for path in [p.strip() for p in spec.split(',') if p.strip()]:
    root = pathlib.Path(path)
    if not root.is_dir():
      raise DataError(f'config.data.extra_unlabeled: {path!r} is not a folder')
    files = [str(f.relative_to(root)) for f in folder._image_files(root)]  # pylint: disable=protected-access
    if not files:
      raise folder._no_images_error(root, 'Unlabelled folder')  # pylint: disable=protected-access
    files = [f for f, ok in zip(files, folder.check_headers(root, files, data.strict)) if ok]
    store, _ = _image_store(root, files, data)
    parts.append(store)
  return stores.ConcatStore(parts)
