"""Image folders: one sub-folder per class, or a flat folder of unlabelled images, or
train/ and test/ (and optionally val/) folders each holding the class folders: the
dataset's own split (CIFAR-10 as image files).

Images may be JPEG, PNG, BMP or TIFF, grey, RGB, RGBA or palette, 8 or 16 bit, and TIFFs
multi-page or multi-channel; they are decoded to uint8 with config.data.channels channels
(channels.py: the fixed 16-bit scale, grey repeated to RGB, the channel-count check). A file
that does not decode is skipped with a warning naming it (an error when
config.data.strict); a file whose channel count does not fit is always an error.
"""

import concurrent.futures
import importlib.util
import logging
import os
import pathlib

import numpy as np
from PIL import Image

from simclr_jax.data import channels as channels_lib
from simclr_jax.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff')


class DataError(UserError):
  """A user's data is unusable; the message says which file or folder and why."""


def _image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.rglob('*')
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith('.') for part in p.relative_to(folder).parts))


def _no_images_error(folder: pathlib.Path, what: str) -> DataError:
  others = sorted({p.suffix.lower() or p.name for p in folder.rglob('*') if p.is_file()})
  found = f'; it holds only {", ".join(others[:10])}' if others else ' (it is empty)'
  return DataError(f'{what} {folder} has no images{found}. Expected files ending in '
                   f'{", ".join(IMAGE_EXTENSIONS)}.')


def scan(path) -> tuple[tuple[str, ...], list[str], np.ndarray]:
  """(class names, file paths relative to `path`, labels): labels are -1 for a flat
  folder of unlabelled images. Raises DataError for a missing or image-less folder or an
  empty class folder."""
  root = pathlib.Path(path)
  if not str(path) or not root.is_dir():
    raise DataError(f'config.data.path={str(path)!r} is not a folder. Expected a folder '
                    'with one sub-folder of images per class, or a folder of images.')
  class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.'))
  if not class_dirs:
    files = _image_files(root)
    if not files:
      raise _no_images_error(root, 'The folder')
    return (), [str(f.relative_to(root)) for f in files], np.full(len(files), -1, np.int32)
  loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
  if loose:
    logging.warning('%s: ignoring %d images outside the class folders (e.g. %s)',
                    root, len(loose), loose[0])
  names, files, labels = [], [], []
  for label, class_dir in enumerate(class_dirs):
    class_files = _image_files(class_dir)
    if not class_files:
      raise _no_images_error(class_dir, 'Class folder')
    names.append(class_dir.name)
    files += [str(f.relative_to(root)) for f in class_files]
    labels += [label] * len(class_files)
  return tuple(names), files, np.array(labels, np.int32)


OWN_SPLIT_FOLDERS = ({'train', 'test'}, {'train', 'val', 'test'})


def own_split_folders(path) -> bool:
  """Whether `path` holds exactly train/ and test/ (and optionally val/) folders."""
  root = pathlib.Path(path)
  if not root.is_dir():
    return False
  names = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')}
  return names in OWN_SPLIT_FOLDERS


def scan_own_splits(path) -> tuple[tuple[str, ...], dict]:
  """(class names of train/, {split: (file paths relative to `path`, labels)}) for a
  folder with own_split_folders. test/ and val/ may lack a class of train/ but may not add
  one (its label would mean nothing to a model trained on train/)."""
  root = pathlib.Path(path)
  names, parts = (), {}
  for split in ('train', 'val', 'test'):
    if not (root / split).is_dir():
      continue
    split_names, files, labels = scan(root / split)
    if not split_names:
      raise DataError(f'{root / split} holds no class folders. Expected {root}/train/ '
                      'and test/ (and optionally val/) each with one sub-folder of images '
                      'per class.')
    if split == 'train':
      names = split_names
    unknown = sorted(set(split_names) - set(names))
    if unknown:
      raise DataError(f'{root / split} has class folders that {root / "train"} lacks: '
                      f'{", ".join(unknown)}. Both must name the same classes.')
    to_train_label = np.array([names.index(n) for n in split_names], np.int32)
    parts[split] = ([f'{split}/{f}' for f in files], to_train_label[labels])
  return names, parts


def decode(path, channels: int = 3, uint16_max: int = 65535) -> np.ndarray:
  """A file as uint8 [H, W, channels]."""
  return channels_lib.decode(path, channels, uint16_max)


def decode_all(root, files, strict: bool, threads: int = 0, channels: int = 3,
               uint16_max: int = 65535):
  """Decodes every file: (list of arrays, or None where the file did not decode). A file
  whose channel count does not fit `channels` raises ChannelError (a setting to change,
  not a broken file to skip)."""
  root = pathlib.Path(root)

  def attempt(rel):
    try:
      return decode(root / rel, channels, uint16_max), None
    except channels_lib.ChannelError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (any decoder failure)
      return None, f'{root / rel}: {type(e).__name__}: {e}'

  with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 2) as pool:
    results = list(pool.map(attempt, files))
  failures = [msg for _, msg in results if msg]
  if failures:
    listing = '\n  '.join(failures[:20]) + ('\n  ...' if len(failures) > 20 else '')
    if strict:
      raise DataError(f'{len(failures)} images in {root} do not decode '
                      f'(config.data.strict=True):\n  {listing}')
    logging.warning('Skipping %d images in %s that do not decode:\n  %s',
                    len(failures), root, listing)
  return [image for image, _ in results]


def check_headers(root, files, strict: bool):
  """A cheap check that each file opens as an image (no full decode): bool mask."""
  root = pathlib.Path(root)

  def ok(rel):
    try:
      with Image.open(root / rel) as image:
        image.verify()
      return None
    except Exception as e:  # pylint: disable=broad-except
      if (root / rel).suffix.lower() in channels_lib.TIFF_SUFFIXES:
        if _tiff_opens(root / rel):
          return None  # a multi-channel TIFF that tifffile reads and Pillow does not
        if importlib.util.find_spec('tifffile') is None:
          return (f'{root / rel}: {type(e).__name__}: {e} (multi-channel TIFFs need '
                  'tifffile: pip install tifffile)')
      return f'{root / rel}: {type(e).__name__}: {e}'

  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
    errors = list(pool.map(ok, files))
  bad = [e for e in errors if e]
  if bad:
    listing = '\n  '.join(bad[:20])
    if strict:
      raise DataError(f'{len(bad)} images in {root} are not readable '
                      f'(config.data.strict=True):\n  {listing}')
    logging.warning('Skipping %d unreadable images in %s:\n  %s', len(bad), root, listing)
  return np.array([e is None for e in errors], bool)


def _tiff_opens(path) -> bool:
  try:
    import tifffile  # pylint: disable=g-import-not-at-top
    with tifffile.TiffFile(path) as tif:
      return bool(tif.series)
  except Exception:  # pylint: disable=broad-except  (missing tifffile or a broken file)
    return False
