"""Writing results: `WORKDIR/metrics.json`, which every entry point writes when it ends."""

import json
import math
import os

import numpy as np

from simclr_jax.errors import UserError


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if hasattr(value, 'item') and getattr(value, 'shape', None) == ():
    return _jsonable(value.item())
  return value


def write_metrics_json(workdir: str, metrics: dict) -> str:
  """Writes atomically (temp file, then rename), so a reader never sees half a file."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'metrics.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(_jsonable(metrics), f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)
  return path


# Words that name a normal class in cytology sets: Bethesda's "Negative for intraepithelial
# lesion" (NILM), Herlev's "normal ...", SIPaKMeD-style "benign".
_NORMAL_WORDS = ('negative', 'normal', 'nilm', 'benign')


def parse_positive_classes(spec: str, class_names) -> list[int]:
  """'ASC-H,HSIL' -> their class indices; an unknown name is an error naming it.

  'auto' takes every class whose name does not contain a normal-class word
  (_NORMAL_WORDS), so one cytology config serves folders with other class names; when no
  class, or every class, is normal by that rule there is no binary grouping ([])."""
  if spec.strip() == 'auto':
    normal = [any(w in n.lower() for w in _NORMAL_WORDS) for n in class_names]
    return [] if all(normal) or not any(normal) else [
        i for i, is_normal in enumerate(normal) if not is_normal]
  names = [n.strip() for n in spec.split(',') if n.strip()]
  unknown = [n for n in names if n not in class_names]
  if unknown:
    raise UserError(f'config.positive_classes: {unknown} are not classes of this dataset '
                    f'(classes: {list(class_names)})')
  return [list(class_names).index(n) for n in names]


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """[true, predicted] counts."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(preds)), 1)
  return matrix


def binary_auc(scores, positive) -> float:
  """ROC AUC as the Mann-Whitney statistic (ties count half); NaN when one group is empty."""
  scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
  n_pos, n_neg = positive.sum(), (~positive).sum()
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  order = np.argsort(scores, kind='mergesort')
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  # average ranks over ties
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  for start, count in zip(first, counts):
    ranks[order[start:start + count]] = start + (count + 1) / 2
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(labels, preds, num_classes: int, probs=None,
                           positive_classes=()) -> dict:
  """The evaluation metrics of metrics.json from true labels and predicted classes.

  Classes absent from both labels and predictions are left out of the macro averages (as
  scikit-learn does); precision of a never-predicted class counts as 0. With
  `positive_classes` (indices) the classes are also grouped into positive / negative:
  sensitivity and specificity of the grouped predictions, and ROC AUC of the summed
  probability of the positive classes (when `probs` [n, C] is given).
  """
  labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
  matrix = confusion_matrix(labels, preds, num_classes)
  true_counts, pred_counts, hits = matrix.sum(1), matrix.sum(0), np.diag(matrix)
  recall = np.divide(hits, true_counts, out=np.zeros(num_classes), where=true_counts > 0)
  precision = np.divide(hits, pred_counts, out=np.zeros(num_classes), where=pred_counts > 0)
  denom = precision + recall
  f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
  present = true_counts > 0
  seen = present | (pred_counts > 0)
  result = {
      'top1': float(hits.sum() / max(len(labels), 1)),
      'balanced_accuracy': float(recall[present].mean()) if present.any() else float('nan'),
      'macro_f1': float(f1[seen].mean()) if seen.any() else float('nan'),
      'per_class_recall': recall.tolist(),
      'per_class_precision': precision.tolist(),
      'confusion_matrix': matrix.tolist(),
      'num_test': int(len(labels)),
  }
  if len(positive_classes):
    is_positive = np.isin(np.arange(num_classes), list(positive_classes))
    truth, called = is_positive[labels], is_positive[preds]
    tp, tn = np.sum(truth & called), np.sum(~truth & ~called)
    result['sensitivity'] = float(tp / truth.sum()) if truth.any() else float('nan')
    result['specificity'] = float(tn / (~truth).sum()) if (~truth).any() else float('nan')
    if probs is not None:
      score = np.asarray(probs, np.float64)[:, is_positive].sum(1)
      result['roc_auc'] = binary_auc(score, truth)
  return result


def write_scalars(workdir: str, metrics: dict, step: int = 0) -> None:
  """The scalar metrics to TensorBoard (writers.py), next to metrics.json."""
  from simclr_jax.runtime import writers  # pylint: disable=g-import-not-at-top
  scalars = {k: v for k, v in metrics.items()
             if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}
  writer = writers.create_writer(workdir)
  writer.write_scalars(step, scalars)
  writer.flush()
  writer.close()
