"""Seeded stratified train/val/test splits, and WORKDIR/split.json that records one.

A dataset with its own test split (a folder holding train/ and test/, or a TFDS dataset)
keeps it: validation is then carved from the training images at config.data.split's val
share relative to train + val (its test share is unused), stratified and seeded.

A folder dataset's split is made once, written to WORKDIR/split.json (file paths relative
to config.data.path, labels, class names, seed) and reused by every later entry point, so
test images never leak into pretraining. A workdir without one takes it from
config.init_from (a workdir, or a checkpoint inside one) and copies it.
"""

import json
import logging
import os
import pathlib
import shutil

import numpy as np

from simclr_jax.errors import UserError

SPLITS = ('train', 'val', 'test')
SPLIT_FILE = 'split.json'


def check_fractions(fractions):
  fractions = tuple(float(f) for f in fractions)
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
    raise UserError(f'config.data.split={fractions}: expected three non-negative '
                    'train/val/test fractions summing to 1')
  return fractions


def stratified_split(labels, fractions, seed: int) -> dict[str, np.ndarray]:
  """Indices of each split, in ascending order; every class (and the unlabelled, -1) is
  divided in the given proportions, rounding so that a class with at least three
  images has one in each split with a non-zero fraction."""
  labels = np.asarray(labels)
  fractions = check_fractions(fractions)
  rng = np.random.default_rng(seed)
  parts = {name: [] for name in SPLITS}
  for label in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == label))
    n = len(members)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
      n_val = max(n_val, 1 if fractions[1] > 0 else 0)
      n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = max(n - n_val - n_test, 0)
    parts['train'].append(members[:n_train])
    parts['val'].append(members[n_train:n_train + n_val])
    parts['test'].append(members[n_train + n_val:])
  return {name: np.sort(np.concatenate(p)).astype(np.int64) if p else
          np.zeros(0, np.int64) for name, p in parts.items()}


def val_share_of_train(fractions) -> float:
  """The part of the training images that validation takes when the test split is the
  dataset's own: (0.9, 0.1, 0.0) and (0.72, 0.08, 0.2) both hold out 10 %."""
  train, val, _ = check_fractions(fractions)
  return val / (train + val) if train + val > 0 else 0.0


def carve_val(labels, fractions, seed: int) -> dict[str, np.ndarray]:
  """{'train', 'val'} indices into `labels` (the training images), validation at
  val_share_of_train, stratified and seeded."""
  share = val_share_of_train(fractions)
  parts = stratified_split(labels, (1 - share, share, 0.0), seed)
  return {'train': parts['train'], 'val': parts['val']}


def find_split_file(workdir, init_from) -> pathlib.Path | None:
  """WORKDIR/split.json, else one in init_from or a folder above it (a checkpoint)."""
  if workdir and (pathlib.Path(workdir) / SPLIT_FILE).is_file():
    return pathlib.Path(workdir) / SPLIT_FILE
  if init_from:
    path = pathlib.Path(init_from).resolve()
    for folder in [path, *path.parents]:
      if (folder / SPLIT_FILE).is_file():
        return folder / SPLIT_FILE
  return None


def write(path, record: dict):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix('.json.tmp')
  tmp.write_text(json.dumps(record, indent=1))
  os.replace(tmp, path)


def read(path) -> dict:
  try:
    record = json.loads(pathlib.Path(path).read_text())
    for name in SPLITS:
      record['splits'][name]
    record['class_names']
    return record
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a valid split file ({e!r}); delete it to make a '
                    'new split') from e


def adopt(found: pathlib.Path, workdir) -> None:
  """Copies a split found through init_from into the workdir."""
  if workdir and found.parent.resolve() != pathlib.Path(workdir).resolve():
    pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found, pathlib.Path(workdir) / SPLIT_FILE)
    logging.info('Reusing the split in %s (copied to %s)', found, workdir)
