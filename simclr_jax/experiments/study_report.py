"""The study's report: results.csv, report.md (mean ± std tables, paired comparisons with
their verdicts, and the run settings), label_fraction.png (accuracy and balanced accuracy
against label fraction) and embedding.png (a 2-D PCA map of the test set's h per starting
point, coloured by class)."""

import csv
import glob
import math
import os
from typing import NamedTuple

import numpy as np

from simclr_jax.evaluation.protocols import PROTOCOLS, with_network
from simclr_jax.experiments import compare, fold_report

METRICS = ('top1', 'balanced_accuracy', 'macro_f1', 'roc_auc', 'sensitivity', 'specificity')
# per image (and, pooled over k folds, per fold): for compare.py and pooling.py only
PREDICTION_KEYS = ('test_labels', 'test_predictions', 'test_positive_scores', 'fold_values')
BASELINE = ('baseline', 'baseline')
RANDOM_INIT = 'supervised'  # the starting point every protocol's arm is compared against
BASELINE_LABEL = 'baseline (no network)'  # its row goes into every table


def _table_protocols(rows) -> list[str]:
  """The protocols that get tables; the baseline has its own only when it is alone."""
  present = [p for p in with_network() if any(r['protocol'] == p for r in rows)]
  return present or [BASELINE[1]] * any(r['protocol'] == BASELINE[1] for r in rows)


def result_row(point, protocol, fraction, seed, result) -> dict:
  row = {'starting_point': point, 'protocol': protocol, 'label_fraction': fraction,
         'seed': seed, 'num_train': result.get('num_train'), 'num_test': result.get('num_test')}
  row.update({m: result.get(m) for m in METRICS})
  row.update(status=result.get('status', 'completed'), error=result.get('error', ''))
  row.update({k: result[k] for k in PREDICTION_KEYS if result.get(k) is not None})
  return row


def table_rows(rows) -> list[dict]:
  """The rows without their per-image predictions: for results.csv and the summary."""
  return [{k: v for k, v in r.items() if k not in PREDICTION_KEYS} for r in rows]


def failures_section(rows, heading: str, intro: str, describe) -> list[str]:
  """A report's section listing the failed runs, one line each (`describe(row)`: ...); no
  section when none failed. `intro` may hold {count}."""
  failed = [r for r in rows if r['status'] == 'failed']
  if not failed:
    return []
  return [heading, '', intro.format(count=len(failed)), ''] + [
      f"- {describe(r)}: {r['error']}" for r in failed] + ['']


def _failures(rows):
  """The failed sub-runs, one line each: they are left out of the tables."""
  return failures_section(
      rows, '## Failed sub-runs', '{count} sub-runs failed and are left out of the tables; '
      'starting the sweep again runs them again.',
      lambda r: f"{r['starting_point']} {r['protocol']} {r['label_fraction']:.0%} labels "
                f"seed {r['seed']}" + (f" fold {r['fold']}" if 'fold' in r else ''))


def write_csv(path, rows):
  rows = table_rows(rows)
  fields = list(rows[0]) if rows else []
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def summarise(rows, point, protocol, fraction, metric):
  """-> (mean, std over seeds, count) of `metric`, NaN when absent."""
  values = [r[metric] for r in rows if r['starting_point'] == point and
            r['protocol'] == protocol and r['label_fraction'] == fraction and
            r[metric] is not None]
  if not values:
    return float('nan'), float('nan'), 0
  return float(np.mean(values)), float(np.std(values)), len(values)


def num_test_images(rows) -> int | None:
  counts = {r['num_test'] for r in rows if r.get('num_test') is not None}
  return max(counts) if counts else None


def _table_title(title, metric, rows):
  n = num_test_images(rows)
  return f'{title}: test {metric} (%), mean ± std over seeds' + (
      f', {n} test images' if n else '') + (', pooled over the folds' if
                                            fold_report.is_pooled(rows) else '')


def _table_arms(rows, points, protocol) -> list[tuple[str, str, str]]:
  """A table's rows: (label, starting point, protocol), the baseline's last."""
  arms = [(point, point, protocol) for point in points if point != BASELINE[0]]
  return arms + [(BASELINE_LABEL, *BASELINE)] * _has(rows, BASELINE)


def _table(rows, points, protocol, metric):
  fractions = sorted({r['label_fraction'] for r in rows if r['protocol'] == protocol})
  lines = ['| starting point | ' + ' | '.join(f'{f:.0%} labels' for f in fractions) + ' |',
           '| --- |' + ' --- |' * len(fractions)]
  for label, point, row_protocol in _table_arms(rows, points, protocol):
    cells = []
    for f in fractions:
      mean, std, n = summarise(rows, point, row_protocol, f, metric)
      cells.append('–' if n == 0 else f'{100 * mean:.1f} ± {100 * std:.1f}')
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return lines


def _settings(config, points):
  c = config
  return [
      f'- data: `{c.data.name}` {c.data.path or ""} at {c.data.image_size} px, '
      f'split {tuple(c.data.split)} (data seed {c.data.seed})',
      f'- model: {c.model.name} width {c.model.width}, head {c.model.head_layers} layers',
      f'- pretraining: batch {c.batch_size}, '
      + (f'{c.num_steps} steps' if c.num_steps else f'{c.num_epochs} epochs')
      + f', {c.optim.name} base lr {c.optim.base_lr}, temperature {c.loss.temperature}',
      f'- fine-tuning: from `{c.finetune_from}`'
      + (', classifier started from the linear probe (LP-FT)' if c.finetune.linear_init else '')
      + f', {c.finetune.optim.name} base lr {c.finetune.optim.base_lr}'
      + (f' (supervised control {c.finetune.control_base_lr})'
         if c.finetune.control_base_lr else '')
      + f', batch {c.finetune.batch_size}, '
      + (f'{c.finetune.num_steps} steps' if c.finetune.num_steps else
         f'{c.finetune.num_epochs} epochs'
         + (f' (supervised control {c.finetune.control_num_epochs})'
            if c.finetune.control_num_epochs else ''))
      + f', model chosen by validation {c.finetune.select_metric}, '
      f'class weighting {c.class_weighting}',
      f'- linear evaluation: L-BFGS logistic regression, L2 from {c.linear.l2_grid} '
      f'chosen by validation {c.linear.select_metric}',
      f'- starting points: {", ".join(points)}; label fractions '
      f'{c.study.label_fractions}; {c.study.seeds} seed(s) from {c.seed}'
      + (', one pretraining per seed' if c.study.pretrain_per_seed else ''),
  ] + ([f'- positive classes (binary grouping): {c.positive_classes}']
       if c.positive_classes else []) + (
      [f'- baseline (no network): logistic regression on `{c.baseline.features}` features '
       f'(pixels pooled to {c.baseline.pixel_size}²), L2 and feature set chosen by validation '
       f'{c.linear.select_metric}'] if BASELINE[0] in points else []) + (
      [f'- near-blank images (grey-level std < {c.data.drop_blank_below}) left out of every '
       'split'] if c.data.drop_blank_below > 0 else [])


def _points(value) -> str:
  return f'{100 * value:+.1f}'


def describe(c: compare.Comparison) -> str:
  """'better (+4.4 points, 95% interval +1.2 to +7.6)'."""
  if math.isinf(c.half_width):
    return f'{c.verdict} ({_points(c.difference)} points; {c.method})'
  return (f'{c.verdict} ({_points(c.difference)} points, {c.confidence:.0%} interval '
          f'{_points(c.low)} to {_points(c.high)})')


def _arm_name(arm) -> str:
  point, protocol = arm
  known = PROTOCOLS.get(protocol)
  if point == RANDOM_INIT and known and known.random_init_name:
    return known.random_init_name
  if arm == BASELINE:
    return 'the baseline'
  return f'{point} {known.words if known else protocol}'


def _has(rows, arm) -> bool:
  return any((r['starting_point'], r['protocol']) == arm for r in rows)


class Headline(NamedTuple):
  """The comparison the sweep prints first, and how its sentence names the two arms."""
  arm: tuple
  reference: tuple
  arm_words: str  # 'At 10% of the labels, {arm_words} 72.7 ± 5.2% test top-1'
  reference_words: str  # 'against 67.2 ± 2.2% {reference_words}'
  verdict_words: str  # '{verdict_words}: better (...)'


# config.study.headline -> the headline comparison, at the arms' smallest label fraction:
# SimCLR's arm against the random init's, with the protocol's words (protocols.py)
HEADLINES = {name: Headline(('simclr', name), (RANDOM_INIT, name), *p.headline)
             for name, p in PROTOCOLS.items() if p.headline}


def _comparison(rows, confidence, choice='finetune', fold_rows=None):
  """The headline (HEADLINES[choice]) at the smallest fraction both arms have, with its
  verdict and the smallest difference the study could call."""
  simclr, control, arm_words, reference_words, verdict_words = HEADLINES[choice]
  fractions = sorted({r['label_fraction'] for r in rows
                      if (r['starting_point'], r['protocol']) == simclr})
  if not fractions or not (_has(rows, simclr) and _has(rows, control)):
    return []
  f = fractions[0]
  if not compare.paired_seeds(rows, simclr, control, f, 'top1'):
    return []
  c = compare.compare(rows, simclr, control, f, 'top1', confidence)
  mean, std, n = summarise(rows, *simclr, f, 'top1')
  reference, reference_std, _ = summarise(rows, *control, f, 'top1')
  images = f', {c.num_test} test images' if c.num_test else ''
  lines = [f'At {f:.0%} of the labels, {arm_words} '
           f'{100 * mean:.1f} ± {100 * std:.1f}% test top-1 against '
           f'{100 * reference:.1f} ± {100 * reference_std:.1f}% {reference_words} '
           f'({n} seed{"s" if n > 1 else ""}{images}). {verdict_words}: '
           f'{describe(c)}.', '']
  if not math.isinf(c.half_width):
    lines += [f'At this size ({n} seed{"s" if n > 1 else ""}{images}) a difference in '
              f'top-1 must be about {100 * c.half_width:.1f} points or more to be called '
              f'better or worse at {c.confidence:.0%}; smaller ones read "no difference '
              'detected".', '']
  if fold_rows:
    lines += fold_report.design_lines(fold_rows, simclr, control, f, c)
  return lines


def _verdict_table(rows, arms, reference, metric, confidence):
  """One row per arm, one column per label fraction: the arm against `reference`."""
  fractions = sorted({r['label_fraction'] for r in rows
                      if (r['starting_point'], r['protocol']) == reference})
  lines = ['| against ' + _arm_name(reference) + ' | ' +
           ' | '.join(f'{f:.0%} labels' for f in fractions) + ' |',
           '| --- |' + ' --- |' * len(fractions)]
  for arm in arms:
    cells = []
    for f in fractions:
      if compare.paired_seeds(rows, arm, reference, f, metric):
        cells.append(describe(compare.compare(rows, arm, reference, f, metric, confidence)))
      else:
        cells.append('–')
    lines.append(f'| {_arm_name(arm)} | ' + ' | '.join(cells) + ' |')
  return lines


def _deep_arms(rows, points, protocols=None):
  return [(p, protocol) for protocol in protocols or with_network() for p in points
          if p != BASELINE[0] and _has(rows, (p, protocol))]


def comparisons(rows, points, confidence) -> list[str]:
  """Every deep arm against the no-network baseline (balanced accuracy), when the study
  has one."""
  if not _has(rows, BASELINE):
    return []
  title = ('Against the baseline (a logistic regression on hand-made features of the pixels): '
           'balanced accuracy, difference in points, paired over seeds and test images, at '
           f'{confidence:.0%}')
  table = _verdict_table(rows, _deep_arms(rows, points), BASELINE, 'balanced_accuracy',
                         confidence)
  return [title, ''] + table + ['']


def headline(points, rows, confidence=0.95, choice='finetune') -> list[str]:
  """The comparison sentences and the top-1 tables: what the sweep prints when it ends."""
  lines = _comparison(rows, confidence, choice) + comparisons(rows, points, confidence)
  for protocol in _table_protocols(rows):
    lines += [_table_title(PROTOCOLS[protocol].title, 'top-1', rows), '']
    lines += _table(rows, points, protocol, 'top1') + ['']
  return lines


def _pages_section(rows, pages) -> list[str]:
  if not pages:
    return []
  from simclr_jax.experiments.prediction_pages import run_title  # pylint: disable=g-import-not-at-top
  return ['## Test predictions, image by image', '',
          "Each run's page shows its test images grouped by predicted class, most confident "
          'first, the misclassified apart, with the confusion matrix.', ''] + [
              f'- [{run_title(rows[i])}]({pages[i]})' for i in sorted(pages)] + ['']


def write_markdown(path, config, points, rows, fold_rows=None, pages=None):
  confidence = config.study.confidence
  n = num_test_images(rows)
  pooled = (f'pooled over {config.study.folds} folds, every image tested once by the run '
            'that did not train on it, ' if fold_rows is not None else '')
  lines = ['# SimCLR label-fraction study', '', f'Test-split results, {pooled}mean ± std over '
           'seeds (in %)' + (f' on {n} test images' if n else '') + '. A against B is a paired '
           'comparison (same seed, same label subset) with its interval: better, no '
           f'difference detected or worse at {confidence:.0%} (simclr_jax/evaluation/'
           'compare.py).', ''] + _comparison(rows, confidence, config.study.headline,
                                             fold_rows)
  lines += _failures(rows if fold_rows is None else fold_rows)
  lines += comparisons(rows, points, confidence)
  for protocol in with_network():
    title = PROTOCOLS[protocol].against_random_init
    reference = (RANDOM_INIT, protocol)
    arms = [a for a in _deep_arms(rows, points, (protocol,)) if a != reference]
    if title and arms and _has(rows, reference):
      lines += [f'{title}: top-1, difference in points, at {confidence:.0%}', '']
      lines += _verdict_table(rows, arms, reference, 'top1', confidence) + ['']
  lines += _pages_section(rows, pages)
  lines += ['## Settings', ''] + _settings(config, points) + (
      [fold_report.settings_line(config, n)] if fold_rows is not None else [])
  for protocol in _table_protocols(rows) if fold_rows is not None else ():
    lines += ['', f'## {PROTOCOLS[protocol].title}: top-1 per fold', '', "Each fold's test "
              'top-1 (%, averaged over seeds): mean ± std over the folds (lowest–highest).', '']
    lines += fold_report.spread_table(rows, _table_arms(rows, points, protocol), 'top1')
  for protocol in _table_protocols(rows):
    for metric in ('top1', 'balanced_accuracy', 'macro_f1') + (
        ('roc_auc', 'sensitivity', 'specificity') if config.positive_classes else ()):
      lines += ['', f'## {PROTOCOLS[protocol].title}: {metric}', '']
      lines += [f'Mean ± std over seeds (%), {n} test images.', ''] if n else []
      lines += _table(rows, points, protocol, metric)
  lines += ['', '![accuracy against label fraction](label_fraction.png)', '',
            '![test-set h, PCA](embedding.png)', '']
  with open(path, 'w') as f:
    f.write('\n'.join(lines))


def plot_label_fraction(path, rows, points):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, metric in zip(axes, ('top1', 'balanced_accuracy')):
    for i, point in enumerate(points):
      for protocol, style in ((name, p.plot_style) for name, p in PROTOCOLS.items()):
        fractions = sorted({r['label_fraction'] for r in rows
                            if r['protocol'] == protocol and r['starting_point'] == point})
        if not fractions:
          continue
        stats = [summarise(rows, point, protocol, f, metric) for f in fractions]
        ax.errorbar([100 * f for f in fractions], [100 * s[0] for s in stats],
                    yerr=[100 * s[1] for s in stats], fmt=style, color=f'C{i}', capsize=3,
                    label=f'{point} ({protocol})')
    ax.set_xlabel('labelled training images (%)')
    ax.set_ylabel(f'test {metric} (%)')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_embeddings(path, workdir, points, class_names):
  """PCA of each starting point's cached test features (features.npz)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  cached = []
  for point in points:
    if point == BASELINE[0]:
      continue
    files = sorted(glob.glob(os.path.join(workdir, point, 'features*.npz')))
    if files:
      cached.append((point, files[0]))
  if not cached:
    return False
  fig, axes = plt.subplots(1, len(cached), figsize=(4.5 * len(cached), 4.2), squeeze=False)
  for ax, (point, file) in zip(axes[0], cached):
    with np.load(file) as data:
      h, y = data['test_h'], data['test_y']
    xy = PCA(n_components=2, random_state=0).fit_transform(h)
    for cls in np.unique(y):
      name = class_names[cls] if cls < len(class_names) else str(cls)
      ax.scatter(*xy[y == cls].T, s=6, color=f'C{cls % 10}', label=name)
    ax.set_title(f'{point}: test h (PCA)')
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0][0].legend(fontsize=7, markerscale=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def write_report(config, workdir, points, rows, fold_rows=None) -> dict:
  """With k-fold, rows are the pooled rows and fold_rows every fold's; results.csv holds
  both (its `fold` column), the embedding map is fold 0's."""
  from simclr_jax.data import folds, pipeline  # pylint: disable=g-import-not-at-top
  from simclr_jax.experiments import prediction_pages  # pylint: disable=g-import-not-at-top
  # The sub-run folders (run_dir) stay out of results.csv, whose pooled k-fold rows have none.
  write_csv(os.path.join(workdir, 'results.csv'),
            [{k: v for k, v in r.items() if k != 'run_dir'} for r in rows + (fold_rows or [])])
  # With k-fold the reported rows are pooled over folds, each fold with its own test split.
  pages = prediction_pages.write_pages(config, workdir, rows) if fold_rows is None else {}
  write_markdown(os.path.join(workdir, 'report.md'), config, points, rows, fold_rows, pages)
  plot_label_fraction(os.path.join(workdir, 'label_fraction.png'), rows, points)
  features_dir = workdir if fold_rows is None else folds.fold_dir(workdir, 0)
  names = pipeline.dataset_info(config, features_dir).class_names
  plot_embeddings(os.path.join(workdir, 'embedding.png'), features_dir, points, names)
  return {'results_csv': os.path.join(workdir, 'results.csv'),
          'report': os.path.join(workdir, 'report.md')}
