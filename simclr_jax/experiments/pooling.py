"""A k-fold study's pooled results: each arm's K test folds make one prediction per image.

An arm (starting point, protocol, label fraction, seed) ran once per fold, each run scored
on its own test fold; the folds partition the set, so concatenating the runs' test
predictions (fold 0 first, each in its split's order) gives every image exactly one
prediction. The pooled row's metrics are computed over those N images as one test set:
top-1, balanced accuracy, macro F1, and with positive classes sensitivity, specificity and
ROC AUC (from each image's positive-class probability). An arm with a fold unfinished or
failed has no pooled row: its images would be missing.
"""

import json
import os

import numpy as np

from simclr_jax.data import folds
from simclr_jax.experiments import study_report
from simclr_jax.runtime import metrics

POOLED = 'pooled'  # the 'fold' of a pooled row


def arm_of(row) -> tuple:
  return row['starting_point'], row['protocol'], row['label_fraction'], row['seed']


def pool_runs(runs, num_classes: int, positive) -> dict:
  """One arm's fold runs (fold order) -> its metrics over every image, with the pooled
  per-image predictions."""
  labels = np.concatenate([r['test_labels'] for r in runs]).astype(np.int64)
  preds = np.concatenate([r['test_predictions'] for r in runs]).astype(np.int64)
  result = metrics.classification_metrics(labels, preds, num_classes,
                                          positive_classes=positive)
  pooled = {'test_labels': labels.tolist(), 'test_predictions': preds.tolist()}
  if len(positive) and all(r.get('test_positive_scores') is not None for r in runs):
    scores = np.concatenate([r['test_positive_scores'] for r in runs])
    result['roc_auc'] = metrics.binary_auc(scores, np.isin(labels, list(positive)))
    pooled['test_positive_scores'] = scores.tolist()
  num_train = [r['num_train'] for r in runs if r.get('num_train') is not None]
  result.update(pooled, num_train=int(round(np.mean(num_train))) if num_train else None)
  # each fold's own value, for the per-fold spread and the comparisons' run-to-run part
  result['fold_values'] = {m: [r[m] for r in runs] for m in study_report.METRICS
                           if all(r.get(m) is not None for r in runs)}
  return result


def pool_rows(config, workdir, fold_rows) -> list[dict]:
  """The pooled row of every arm whose K fold runs all finished, in the fold rows' order."""
  with open(os.path.join(workdir, folds.FOLDS_FILE)) as f:
    class_names = json.load(f)['class_names']
  positive = metrics.parse_positive_classes(config.positive_classes, class_names)
  by_arm = {}
  for r in fold_rows:
    by_arm.setdefault(arm_of(r), {})[r['fold']] = r
  rows = []
  for arm, by_fold in by_arm.items():
    runs = [by_fold.get(k) for k in range(config.study.folds)]
    if any(r is None or r['status'] != 'completed' or r.get('test_predictions') is None
           for r in runs):
      continue
    rows.append(dict(study_report.result_row(*arm, pool_runs(runs, len(class_names), positive)),
                     fold=POOLED))
  return rows
