"""The k-fold parts of the study's report (study_report.py): the per-fold spread, the smallest
difference the pooled design can call next to what one fold alone (a single split) can
call, and the settings line that says where pretraining looked."""

import math

import numpy as np

from simclr_jax.experiments import compare


def is_pooled(rows) -> bool:
  return any(r.get('fold_values') for r in rows)


def _fold_means(rows, point, protocol, fraction, metric) -> np.ndarray:
  """Each fold's value of `metric`, averaged over seeds: [K], empty when absent."""
  per_seed = [r['fold_values'][metric] for r in rows
              if (r['starting_point'], r['protocol']) == (point, protocol) and
              r['label_fraction'] == fraction and metric in r.get('fold_values', {})]
  return np.mean(per_seed, axis=0) if per_seed else np.zeros(0)


def spread_table(rows, table_arms, metric) -> list[str]:
  """One row per (label, point, protocol), one column per label fraction: the folds'
  mean ± std and range (seed-averaged per fold), in %."""
  fractions = sorted({r['label_fraction'] for r in rows
                      if (r['starting_point'], r['protocol']) in
                      {(p, q) for _, p, q in table_arms}})
  lines = ['| starting point | ' + ' | '.join(f'{f:.0%} labels' for f in fractions) + ' |',
           '| --- |' + ' --- |' * len(fractions)]
  for label, point, protocol in table_arms:
    cells = []
    for f in fractions:
      values = 100 * _fold_means(rows, point, protocol, f, metric)
      cells.append('–' if not len(values) else
                   f'{values.mean():.1f} ± {values.std():.1f} '
                   f'({values.min():.1f}–{values.max():.1f})')
    lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return lines


def single_split_half_widths(fold_rows, a, b, fraction, confidence) -> list[float]:
  """The smallest top-1 difference each fold alone calls: what a single split with one
  fold's test images (and the study's seeds) can call."""
  widths = []
  for fold in sorted({r['fold'] for r in fold_rows}):
    rows = [r for r in fold_rows if r['fold'] == fold]
    if compare.paired_seeds(rows, a, b, fraction, 'top1'):
      c = compare.compare(rows, a, b, fraction, 'top1', confidence)
      if not math.isinf(c.half_width):
        widths.append(c.half_width)
  return widths


def design_lines(fold_rows, a, b, fraction, pooled: compare.Comparison) -> list[str]:
  """The pooled design's smallest callable difference next to a single split's."""
  widths = single_split_half_widths(fold_rows, a, b, fraction, pooled.confidence)
  if not widths or math.isinf(pooled.half_width):
    return []
  sizes = [r['num_test'] for r in fold_rows if r.get('num_test')]
  fold_size = f'about {round(float(np.median(sizes)))} test images' if sizes else 'one fold'
  return [f'Pooled over {len(widths)} folds ({pooled.num_test} test images, every image '
          f'tested once) the smallest difference called is {100 * pooled.half_width:.1f} '
          f'points; a single split testing on one fold ({fold_size}) calls '
          f'{100 * float(np.median(widths)):.1f} (median over the folds, '
          f'{100 * min(widths):.1f} to {100 * max(widths):.1f}).', '']


def settings_line(config, num_images: int | None) -> str:
  c = config
  images = f' of the {num_images} images' if num_images else ''
  line = (f'- k-fold: {c.study.folds} stratified folds{images} (folds.json, fold_k/split.json'
          f'; data seed {c.data.seed}), every image tested once by the run that did not '
          'train on it; validation carved from the other folds, label fractions drawn from '
          "each fold's training images; ")
  if c.study.pretrain_scope == 'all':
    return line + ('pretraining once on every image without labels: **test pixels were '
                   'seen in pretraining**')
  return line + 'pretraining per fold on the images outside its test fold'
