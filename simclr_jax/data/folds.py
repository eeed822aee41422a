"""Stratified k-fold splits of a folder dataset for the study (config.study.folds = K).

Every image is assigned to one of K folds, class by class, so each fold holds about 1/K of
every class. Run k tests on fold k; its validation split is carved, stratified, from the
other folds (in data.split's val : train proportion) and the rest is its training split.

Written once and reused: WORKDIR/folds.json (every image's path, label and fold) and
WORKDIR/fold_k/split.json, a split record of the form data/split.py writes, which the
fold's sub-runs copy and read as any workdir's split.json, so the folder source loads it
unchanged and the fold's test images never reach its training, validation, label subsets
or (unless data.pretrain_on_test) its pretraining.
"""

import json
import os
import pathlib

import numpy as np

from simclr_jax.data import folder
from simclr_jax.data import split as split_lib
from simclr_jax.data.folder import DataError
from simclr_jax.errors import UserError

FOLDS_FILE = 'folds.json'


def check_num_folds(num_folds: int) -> int:
  if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
    raise UserError(f'config.study.folds={num_folds!r}: expected 0 (one train/val/test '
                    'split) or a number of folds >= 2')
  return num_folds


def assign_folds(labels, num_folds: int, seed: int) -> np.ndarray:
  """The fold of every image: each class is shuffled (seeded) and dealt round the folds,
  continuing where the previous class stopped, so every class is spread as evenly as it
  can be and the folds' sizes differ by at most one."""
  labels = np.asarray(labels)
  check_num_folds(num_folds)
  rng = np.random.default_rng([int(seed), 24])
  order = np.concatenate([rng.permutation(np.flatnonzero(labels == label))
                          for label in np.unique(labels)]) if len(labels) else np.zeros(0, int)
  fold = np.empty(len(labels), np.int64)
  fold[order] = np.arange(len(order)) % num_folds
  return fold


def fold_split(labels, fold_of, fold: int, val_share: float, seed: int
               ) -> dict[str, np.ndarray]:
  """Indices (ascending) of fold `fold`'s train / val / test: test is the fold itself; val
  is a stratified `val_share` of the other folds' images."""
  labels, fold_of = np.asarray(labels), np.asarray(fold_of)
  rest = np.flatnonzero(fold_of != fold)
  parts = split_lib.stratified_split(labels[rest], (1 - val_share, val_share, 0.0),
                                     seed * 1_000 + fold)
  return {'train': rest[parts['train']], 'val': rest[parts['val']],
          'test': np.flatnonzero(fold_of == fold)}


def val_share(split_fractions) -> float:
  """data.split's validation share of what is not test: the fraction of the other folds
  held out for validation."""
  train, val, _ = split_lib.check_fractions(split_fractions)
  return val / (train + val) if train + val > 0 else 0.0


def fold_dir(workdir, fold: int) -> str:
  return os.path.join(workdir, f'fold_{fold}')


def _scan(data):
  if data.name != 'folder':
    raise UserError(f'config.study.folds needs a folder dataset (data.name=\'folder\'), '
                    f'got data.name={data.name!r}')
  names, files, labels = folder.scan(data.path)
  if (labels < 0).all():
    raise DataError(f'config.data.path={data.path!r} has no class sub-folders: k-fold '
                    'cross-validation needs labelled images')
  ok = folder.check_headers(data.path, files, data.strict)
  return names, [f for f, good in zip(files, ok) if good], labels[ok]


def _read_assignment(path, config) -> dict:
  try:
    record = json.loads(pathlib.Path(path).read_text())
    record['images'], record['class_names']  # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f'{path} is not a valid folds file ({e!r}); delete it (and the '
                    'fold_* folders) to make new folds') from e
  asked = {'folds': config.study.folds, 'seed': config.data.seed}
  made = {k: record.get(k) for k in asked}
  if made != asked:
    raise UserError(f'{path} holds folds made with {made}, but the config asks for '
                    f'{asked} (config.study.folds, config.data.seed): use a new workdir, or '
                    'the settings the folds were made with')
  return record


def write_fold_splits(config, workdir) -> list[str]:
  """Makes (or reuses) WORKDIR/folds.json and every fold's split.json; -> the split files,
  fold 0 first."""
  num_folds = check_num_folds(config.study.folds)
  data = config.data
  path = pathlib.Path(workdir) / FOLDS_FILE
  if path.is_file():
    record = _read_assignment(path, config)
  else:
    names, files, labels = _scan(data)
    if len(files) < num_folds:
      raise DataError(f'config.study.folds={num_folds}: config.data.path={data.path!r} has '
                      f'only {len(files)} images')
    fold_of = assign_folds(labels, num_folds, data.seed)
    record = {'data_path': str(pathlib.Path(data.path).resolve()), 'seed': data.seed,
              'folds': num_folds, 'class_names': list(names),
              'images': [{'path': f, 'label': int(l), 'fold': int(k)}
                         for f, l, k in zip(files, labels, fold_of)]}
    split_lib.write(path, record)
  images = record['images']
  labels = np.array([e['label'] for e in images], np.int64)
  fold_of = np.array([e['fold'] for e in images], np.int64)
  split_files = []
  for fold in range(num_folds):
    split_file = pathlib.Path(fold_dir(workdir, fold)) / split_lib.SPLIT_FILE
    if not split_file.is_file():  # a fold's split is made once, then read by its runs
      parts = fold_split(labels, fold_of, fold, val_share(data.split), data.seed)
      split_lib.write(split_file, {
          'data_path': record['data_path'], 'seed': data.seed, 'fold': fold,
          'folds': num_folds,
          'fractions': [len(parts[s]) / len(images) for s in split_lib.SPLITS],
          'class_names': record['class_names'],
          'splits': {s: [{'path': images[i]['path'], 'label': images[i]['label']}
                         for i in idx] for s, idx in parts.items()}})
    split_files.append(str(split_file))
  return split_files
