"""The study's paired comparisons on constructed results: a clear win, a tie inside the
noise, a loss; the fallbacks when runs lack predictions; the report's wording."""

import numpy as np
import pytest

from simclr_jax.experiments import compare, study_report

SIMCLR, CONTROL, BASELINE = ('simclr', 'finetune'), ('supervised', 'finetune'), (
    'baseline', 'baseline')
LABELS = np.repeat(np.arange(4), [400, 300, 200, 100])  # 1000 test images, imbalanced


def _run(arm, seed, accuracy, rng, fraction=0.1, with_predictions=True):
  """A result row whose predictions are right on a random `accuracy` share of images."""
  right = rng.random(len(LABELS)) < accuracy
  preds = np.where(right, LABELS, (LABELS + 1) % 4)
  recall = [np.mean(right[LABELS == c]) for c in range(4)]
  result = {'top1': float(right.mean()), 'balanced_accuracy': float(np.mean(recall)),
            'num_test': len(LABELS)}
  if with_predictions:
    result.update(test_labels=LABELS.tolist(), test_predictions=preds.tolist())
  return study_report.result_row(*arm[:1], arm[1], fraction, seed, result)


def _rows(accuracies_a, accuracies_b, a=SIMCLR, b=CONTROL, **kwargs):
  rng = np.random.default_rng(0)
  return [_run(arm, seed, acc, rng, **kwargs)
          for arm, accs in ((a, accuracies_a), (b, accuracies_b))
          for seed, acc in enumerate(accs)]


@pytest.mark.parametrize('metric', ['top1', 'balanced_accuracy'])
def test_clear_win_tie_and_loss(metric):
  win = compare.compare(_rows([0.80, 0.82, 0.81, 0.79], [0.70, 0.71, 0.69, 0.70]),
                        SIMCLR, CONTROL, 0.1, metric)
  assert win.verdict == 'better' and win.low > 0 and win.difference == pytest.approx(
      0.1, abs=0.03)
  assert win.num_seeds == 4 and win.num_test == 1000 and 'bootstrap' in win.method
  # seeds that disagree about the sign: a 1-point mean gap inside the noise
  tie = compare.compare(_rows([0.74, 0.70, 0.77, 0.71], [0.72, 0.74, 0.71, 0.71]),
                        SIMCLR, CONTROL, 0.1, metric)
  assert tie.verdict == 'no difference detected' and tie.low < 0 < tie.high
  loss = compare.compare(_rows([0.60, 0.62, 0.61, 0.60], [0.70, 0.71, 0.69, 0.70]),
                         SIMCLR, CONTROL, 0.1, metric)
  assert loss.verdict == 'worse' and loss.high < 0
  # B against A is the mirror image
  assert compare.compare(_rows([0.60, 0.62, 0.61, 0.60], [0.70, 0.71, 0.69, 0.70]),
                         CONTROL, SIMCLR, 0.1, metric).verdict == 'better'


def test_interval_widens_with_confidence_and_falls_back_to_seeds_alone():
  rows = _rows([0.76, 0.74, 0.79, 0.75], [0.70, 0.71, 0.69, 0.70])
  at_90 = compare.compare(rows, SIMCLR, CONTROL, 0.1, confidence=0.90)
  at_99 = compare.compare(rows, SIMCLR, CONTROL, 0.1, confidence=0.99)
  assert at_99.half_width > at_90.half_width
  assert at_90.verdict == 'better' and at_99.verdict == 'no difference detected'
  # e.g. a starting point whose runs do not save their test predictions
  seeds_only = compare.compare(_rows([0.76, 0.70, 0.79, 0.72], [0.70, 0.71, 0.69, 0.70],
                                     with_predictions=False), SIMCLR, CONTROL, 0.1)
  assert seeds_only.method == 'paired over 4 seeds (t)'
  differences = np.array([0.76, 0.70, 0.79, 0.72]) - [0.70, 0.71, 0.69, 0.70]
  assert seeds_only.difference == pytest.approx(differences.mean(), abs=0.02)


def test_one_seed_without_predictions_has_no_interval():
  c = compare.compare(_rows([0.9], [0.5], with_predictions=False), SIMCLR, CONTROL, 0.1)
  assert c.verdict == 'no difference detected' and c.half_width == float('inf')
  one_seed = compare.compare(_rows([0.9], [0.5]), SIMCLR, CONTROL, 0.1)  # images only
  assert one_seed.verdict == 'better' and 'run-to-run variation not included' in one_seed.method
  with pytest.raises(ValueError, match='no seed has both'):
    compare.compare(_rows([0.9], [0.5]), SIMCLR, BASELINE, 0.1)


def test_headline_states_verdict_interval_and_detectable_difference():
  rows = _rows([0.80, 0.82, 0.81, 0.79], [0.70, 0.71, 0.69, 0.70])
  lines = study_report.headline(['supervised', 'simclr'], rows)
  c = compare.compare(rows, SIMCLR, CONTROL, 0.1)
  assert lines[0].startswith('At 10% of the labels, fine-tuning after SimCLR reaches ')
  assert lines[0].endswith(
      '(4 seeds, 1000 test images). SimCLR against the control: better '
      f'({100 * c.difference:+.1f} points, 95% interval {100 * c.low:+.1f} to '
      f'{100 * c.high:+.1f}).')
  assert lines[2] == (f'At this size (4 seeds, 1000 test images) a difference in top-1 must be '
                      f'about {100 * c.half_width:.1f} points or more to be called better or '
                      'worse at 95%; smaller ones read "no difference detected".')
  assert ('Fine-tuning (supervised control for "supervised"): test top-1 (%), mean ± std over '
          'seeds, 1000 test images') in lines
  tie = _rows([0.74, 0.70, 0.77, 0.71], [0.72, 0.74, 0.71, 0.71])
  assert 'the control: no difference detected (' in study_report.headline(['supervised', 'simclr'],
                                                                    tie)[0]
  assert not any('baseline' in line for line in lines)  # no baseline rows: no baseline table


def test_headline_choice_picks_the_comparison_and_its_smallest_fraction():
  """study.headline: the linear one compares SimCLR's frozen features with random ones at
  the linear arms' smallest fraction; the fine-tuning one is unchanged beside it."""
  rng = np.random.default_rng(2)
  linear, random_features = ('simclr', 'linear'), ('supervised', 'linear')
  rows = [_run(arm, seed, acc, rng, fraction=f)
          for f in (0.1, 0.5, 1.0) for seed in range(4)
          for arm, acc in ((linear, 0.5 + f / 4), (random_features, 0.4 + f / 4),
                           (SIMCLR, 0.72), (CONTROL, 0.70)) if f < 1 or arm[1] == 'linear']
  points = ['supervised', 'simclr']
  features = compare.compare(rows, linear, random_features, 0.1)
  lines = study_report.headline(points, rows, choice='linear')
  assert lines[0] == (
      "At 10% of the labels, a linear classifier on SimCLR's frozen features reaches "
      f"{100 * study_report.summarise(rows, *linear, 0.1, 'top1')[0]:.1f} ± "
      f"{100 * study_report.summarise(rows, *linear, 0.1, 'top1')[1]:.1f}% test top-1 against "
      f"{100 * study_report.summarise(rows, *random_features, 0.1, 'top1')[0]:.1f} ± "
      f"{100 * study_report.summarise(rows, *random_features, 0.1, 'top1')[1]:.1f}% on the "
      "untrained network's random features (4 seeds, 1000 test images). SimCLR's features "
      f'against random ones: {study_report.describe(features)}.')
  assert features.verdict == 'better'
  finetune = study_report.headline(points, rows)[0]  # the default: fine-tuning against the control
  assert finetune.startswith('At 10% of the labels, fine-tuning after SimCLR reaches ')
  assert 'SimCLR against the control: no difference detected (' in finetune
  assert lines[3:] == study_report.headline(points, rows)[3:]  # the tables do not depend on it
  # a study without linear evaluation has no linear headline to print
  no_linear = [r for r in rows if r['protocol'] == 'finetune']
  assert study_report.headline(points, no_linear, choice='linear')[0].startswith('Fine-tuning (')


def test_every_deep_arm_is_compared_with_the_baseline_at_every_fraction():
  rng = np.random.default_rng(1)
  rows = [_run(arm, seed, acc, rng, fraction=f)
          for f in (0.1, 0.5) for seed in range(3)
          for arm, acc in ((SIMCLR, 0.85), (CONTROL, 0.6), (('simclr', 'linear'), 0.5),
                           (BASELINE, 0.6))]
  lines = study_report.comparisons(rows, ['supervised', 'simclr'], 0.95)
  table = lines[lines.index('| against the baseline | 10% labels | 50% labels |'):]
  assert table[2].startswith('| supervised control | no difference detected (')
  assert table[3].startswith('| simclr fine-tuning | better (')
  assert table[4].startswith('| simclr linear evaluation | worse (')
  assert table[4].count('worse') == 2  # both fractions
  assert study_report.table_rows(rows)[0].keys().isdisjoint(study_report.PREDICTION_KEYS)
