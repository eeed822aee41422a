"""Paired comparisons of two study arms: is A better than B, worse, or is no difference
detected, at a stated confidence level?

An arm is (starting point, protocol), e.g. ('simclr', 'finetune') or ('baseline',
'baseline'). Two arms are paired by seed: the same seed trains on the same label subset
(label_subsets.py), and every run is scored on the same test images. The difference is
the mean over paired seeds of metric(A) - metric(B). Its uncertainty has two parts:

- run to run (pretraining, label subset, initialisation, data order): the paired
  differences' spread over seeds, with Student's t on S - 1 degrees of freedom. A
  bootstrap over 3-5 seeds would understate it (3 seeds give 10 distinct resamples).
- the test set being a sample of images: a paired Poisson bootstrap over the test images
  (one weight per image, the same for both arms and every seed), when the runs saved
  their test predictions (`test_labels`, `test_predictions` in metrics.json); for top1
  and balanced_accuracy.

With k-fold cross-validation (study.folds) the rows are the pooled ones (pooling.py: one
prediction per image of the whole set, per seed) and the run-to-run part is the spread of
the paired differences over every fold and seed (the rows' `fold_values`), K x S runs. That spread
also holds the test folds' sampling of images, which the bootstrap counts again: the
interval errs on the wide side.

The two variances add; the degrees of freedom follow Welch-Satterthwaite. The verdict is
'better' when the whole interval is above 0, 'worse' when below, else 'no difference
detected'. The interval's half-width is the smallest difference the study can call.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

from simclr_jax.errors import UserError

BETTER, NO_DIFFERENCE, WORSE = 'better', 'no difference detected', 'worse'
IMAGE_METRICS = ('top1', 'balanced_accuracy')  # metrics the image bootstrap recomputes
NUM_BOOTSTRAP = 1000  # enough for a standard error to ~2%


@dataclasses.dataclass(frozen=True)
class Comparison:
  """A against B at one label fraction on one metric (fractions of 1, not %)."""
  a: tuple
  b: tuple
  fraction: float
  metric: str
  confidence: float
  difference: float  # mean over paired seeds of metric(A) - metric(B)
  low: float  # the interval; -inf, inf when none can be formed
  high: float
  num_seeds: int
  num_test: int | None
  method: str  # how the interval was formed, in words

  @property
  def verdict(self) -> str:
    if self.low > 0:
      return BETTER
    if self.high < 0:
      return WORSE
    return NO_DIFFERENCE

  @property
  def half_width(self) -> float:
    """The smallest |difference| this study calls better or worse, at its spread."""
    return (self.high - self.low) / 2


def _arm_rows(rows, arm, fraction, metric) -> dict:
  point, protocol = arm
  return {r['seed']: r for r in rows
          if r['starting_point'] == point and r['protocol'] == protocol and
          math.isclose(r['label_fraction'], fraction) and r.get(metric) is not None}


def paired_seeds(rows, a, b, fraction, metric) -> list:
  """The seeds both arms have a result for at `fraction`."""
  return sorted(set(_arm_rows(rows, a, fraction, metric)) &
                set(_arm_rows(rows, b, fraction, metric)))


def _predictions(rows_a, rows_b, seeds, metric):
  """(labels [n], correct_a [S, n], correct_b [S, n]), or None when some run lacks its
  test predictions or the runs were not scored on the same images."""
  if metric not in IMAGE_METRICS:
    return None
  runs = [rows_a[s] for s in seeds] + [rows_b[s] for s in seeds]
  if any(r.get('test_predictions') is None or r.get('test_labels') is None for r in runs):
    return None
  labels = np.asarray(runs[0]['test_labels'])
  if any(not np.array_equal(r['test_labels'], labels) for r in runs):
    return None
  correct = np.stack([np.asarray(r['test_predictions']) == labels for r in runs])
  return labels, correct[:len(seeds)], correct[len(seeds):]


def _metric_under_weights(weights, labels, correct, metric):
  """metric of each run [S, n] under each bootstrap weighting [B, n] -> [B, S]."""
  if metric == 'top1':
    return (weights @ correct.T.astype(np.float64)) / weights.sum(1, keepdims=True)
  onehot = (labels[:, None] == np.unique(labels)[None]).astype(np.float64)  # [n, C]
  totals = weights @ onehot  # [B, C]
  per_class = correct[..., None] * onehot[None]  # [S, n, C]
  hits = (weights @ per_class.transpose(1, 0, 2).reshape(len(labels), -1)).reshape(
      len(weights), *per_class.shape[::2])  # [B, S, C]
  with np.errstate(invalid='ignore', divide='ignore'):
    recall = hits / totals[:, None, :]
  return np.nanmean(recall, axis=2)  # classes a resample left out are skipped


def _image_se(predictions, metric, num_bootstrap, seed) -> float:
  """Bootstrap standard error, over test images, of the seed-mean paired difference."""
  labels, correct_a, correct_b = predictions
  rng = np.random.default_rng(seed)
  weights = rng.poisson(1.0, size=(num_bootstrap, len(labels))).astype(np.float64)
  diff = (_metric_under_weights(weights, labels, correct_a, metric) -
          _metric_under_weights(weights, labels, correct_b, metric)).mean(1)
  return float(np.std(diff, ddof=1))


def _run_spread(rows_a, rows_b, seeds, metric) -> tuple[np.ndarray, str]:
  """(the paired differences of every run, what the runs are): one per seed, or with
  k-fold (pooled rows with `fold_values`) one per fold and seed."""
  runs = [rows_a[s] for s in seeds] + [rows_b[s] for s in seeds]
  if all(metric in r.get('fold_values', {}) for r in runs):
    per_fold = [np.subtract(rows_a[s]['fold_values'][metric], rows_b[s]['fold_values'][metric])
                for s in seeds]
    return (np.concatenate(per_fold).astype(np.float64),
            f'{len(per_fold[0])} folds x {len(seeds)} seed{"s" if len(seeds) > 1 else ""}')
  return (np.array([rows_a[s][metric] - rows_b[s][metric] for s in seeds], np.float64),
          f'{len(seeds)} seeds')


def compare(rows, a, b, fraction, metric='top1', confidence=0.95,
            num_bootstrap=NUM_BOOTSTRAP, seed=0) -> Comparison:
  """A against B: rows are the study's result rows (report.result_row), or a k-fold
  study's pooled rows (pooling.py); a and b are (starting point, protocol). Raises
  ValueError when no seed has both."""
  if not 0 < confidence < 1:
    raise UserError(f'config.study.confidence must be in (0, 1), got {confidence}')
  rows_a, rows_b = _arm_rows(rows, a, fraction, metric), _arm_rows(rows, b, fraction, metric)
  seeds = sorted(set(rows_a) & set(rows_b))
  if not seeds:
    raise ValueError(f'no seed has both {a} and {b} at label fraction {fraction:g} '
                     f'({metric})')
  differences = np.array([rows_a[s][metric] - rows_b[s][metric] for s in seeds], np.float64)
  difference, count = float(differences.mean()), len(seeds)
  predictions = _predictions(rows_a, rows_b, seeds, metric)
  num_test = rows_a[seeds[0]].get('num_test')
  parts, method = [], []  # (variance, degrees of freedom) of each uncertainty
  spread, units = _run_spread(rows_a, rows_b, seeds, metric)
  if len(spread) > 1:
    parts.append((float(np.var(spread, ddof=1)) / len(spread), len(spread) - 1))
    method.append(f'paired over {units} (t)')
  if predictions is not None:
    num_test = len(predictions[0])
    parts.append((_image_se(predictions, metric, num_bootstrap, seed) ** 2, num_test - 1))
    method.append(f'{num_test} test images (paired bootstrap)')
  if not parts:
    return Comparison(a, b, fraction, metric, confidence, difference, -math.inf, math.inf,
                      count, num_test, 'one seed and no test predictions: no interval')
  if len(spread) == 1:
    method.append('one seed: run-to-run variation not included')
  variance = sum(v for v, _ in parts)
  if variance == 0:
    low = high = difference
  else:
    dof = variance ** 2 / sum(v ** 2 / d for v, d in parts)  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(variance)
    low, high = difference - half, difference + half
  return Comparison(a, b, fraction, metric, confidence, difference, low, high, count,
                    num_test, '; '.join(method))
