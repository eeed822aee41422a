"""The findings' report: results.csv (one row per finding, variant, seed and feature layer),
report.md (per finding: mean ± std over seeds and the paper's direction, tested with
compare.py's paired intervals) and one figure per finding."""

import math
import os

import numpy as np

from simclr_jax.experiments import compare, study_report

METRICS = study_report.METRICS
HOLDS, REVERSED, NOISE = 'holds', 'reversed', 'inside the noise'
LAYER_NAMES = {'h': 'h', 'g': 'g(h)'}
FIGURES = {'augmentations': 'augmentations.png', 'heads': 'heads.png',
           'batch_epochs': 'batch_epochs.png', 'loss': 'loss.png',
           'temperature': 'temperature.png'}


def _values(rows, finding, variant, layer, key):
  return [r[key] for r in rows if r['finding'] == finding and r['variant'] == variant and
          r['layer'] == layer and r['status'] == 'completed' and r.get(key) is not None]


def stats(rows, finding, variant, layer, key):
  """(mean, std over seeds, count); NaN when no seed finished."""
  values = _values(rows, finding, variant, layer, key)
  if not values:
    return math.nan, math.nan, 0
  return float(np.mean(values)), float(np.std(values)), len(values)


def _pct(mean, std, count) -> str:
  if not count:
    return 'failed'
  return f'{100 * mean:.1f} ± {100 * std:.1f}'


def best_by_validation(rows, finding, variants, metric, layer='h'):
  """The variant with the best mean validation `metric` (None when none finished): the
  pick does not look at the test split the comparison then scores."""
  scored = [(stats(rows, finding, v, layer, f'val_{metric}')[0], v) for v in variants]
  scored = [(s, v) for s, v in scored if not math.isnan(s)]
  return max(scored)[1] if scored else None


def direction(rows, finding, a, b, metric, confidence, layer_a='h', layer_b='h') -> str:
  """One line: does A beat B as the paper says? 'holds' / 'reversed' / 'inside the noise',
  with the paired difference and its interval."""
  arm_a = (f'{finding}/{a}', f'linear_{layer_a}')
  arm_b = (f'{finding}/{b}', f'linear_{layer_b}')
  name_a = f'{a} on {LAYER_NAMES[layer_a]}' if layer_a != layer_b else a
  name_b = f'{b} on {LAYER_NAMES[layer_b]}' if layer_a != layer_b else b
  ok = [r for r in rows if r['status'] == 'completed']
  try:
    c = compare.compare(ok, arm_a, arm_b, 1.0, metric, confidence)
  except ValueError:
    return f'- {name_a} > {name_b}: not measured (no seed has both)'
  word = {compare.BETTER: HOLDS, compare.WORSE: REVERSED}.get(c.verdict, NOISE)
  seeds = (f'{c.num_seeds} seeds' if c.num_seeds > 1 else
           '1 seed: run-to-run variation not included')
  return f'- {name_a} > {name_b}: **{word}**: {study_report.describe(c)}, {seeds}'


def _table(rows, variants, metric) -> list[str]:
  lines = [f'| variant | features | test {metric} (%) | val {metric} (%) | '
           'pretraining contrastive acc | seeds |', '|---|---|---|---|---|---|']
  for v in variants:
    for layer in v.layers:
      test = stats(rows, v.finding, v.name, layer, metric)
      val = stats(rows, v.finding, v.name, layer, f'val_{metric}')
      acc = stats(rows, v.finding, v.name, layer, 'contrastive_acc')
      acc_text = f'{acc[0]:.3f}' if acc[2] else '-'
      lines.append(f'| {v.name} | {LAYER_NAMES[layer]} | {_pct(*test)} | {_pct(*val)} | '
                   f'{acc_text} | {test[2]} |')
  return [''] + lines + ['']


def _augmentation_verdicts(rows, variants, metric, confidence):
  singles = [v.name for v in variants if '+' not in v.name]
  pairs = [v.name for v in variants if '+' in v.name]
  lines = ['Paper (Fig. 5): no single augmentation is enough; a composition, crop with '
           'colour distortion above all, learns the best representation.', '']
  best_single = best_by_validation(rows, 'augmentations', singles, metric)
  best_pair = best_by_validation(rows, 'augmentations', pairs, metric)
  if best_single and best_pair:
    lines.append('Best pair vs best single op (each picked on validation):')
    lines.append(direction(rows, 'augmentations', best_pair, best_single, metric, confidence))
  if 'crop+color' in pairs:
    lines += ['', 'Crop with colour distortion against each alone:']
    lines += [direction(rows, 'augmentations', 'crop+color', single, metric, confidence)
              for single in ('crop', 'color') if single in singles]
  return lines


def _head_verdicts(rows, variants, metric, confidence):
  by_layers = {v.coords['head_layers']: v.name for v in variants}
  nonlinear = [n for k, n in by_layers.items() if k >= 2]
  lines = ['Paper (Fig. 8, Table 3): on h, a nonlinear head > a linear head > none; and h is '
           'a better representation than g(h) after a nonlinear head.', '']
  best = best_by_validation(rows, 'heads', nonlinear, metric)
  if best and 1 in by_layers:
    lines.append(direction(rows, 'heads', best, by_layers[1], metric, confidence))
  if 1 in by_layers and 0 in by_layers:
    lines.append(direction(rows, 'heads', by_layers[1], by_layers[0], metric, confidence))
  if best and 0 in by_layers and 1 not in by_layers:
    lines.append(direction(rows, 'heads', best, by_layers[0], metric, confidence))
  for name in nonlinear:
    lines.append(direction(rows, 'heads', name, name, metric, confidence, 'h', 'g'))
  return lines


def _batch_epoch_verdicts(rows, variants, metric, confidence):
  batches = sorted({v.coords['batch_size'] for v in variants})
  epochs = sorted({v.coords['epochs'] for v in variants})
  lines = ['Paper (Fig. 9): larger batches are better, most of all in short training; '
           'training longer helps, and narrows the gap.', '']
  if len(batches) > 1:
    lines += [direction(rows, 'batch_epochs', f'batch{batches[-1]}_epochs{e}',
                        f'batch{batches[0]}_epochs{e}', metric, confidence) for e in epochs]
  if len(epochs) > 1:
    lines += [direction(rows, 'batch_epochs', f'batch{b}_epochs{epochs[-1]}',
                        f'batch{b}_epochs{epochs[0]}', metric, confidence) for b in batches]
  return lines


def picked_per_group(rows, variants, metric, group_key):
  """{group: the variant picked on validation} for the loss and temperature sweeps."""
  groups = {}
  for v in variants:
    groups.setdefault(v.coords[group_key], []).append(v.name)
  picked = {g: best_by_validation(rows, variants[0].finding, names, metric)
            for g, names in groups.items()}
  return {g: n for g, n in picked.items() if n}


def _loss_verdicts(rows, variants, metric, confidence):
  picked = picked_per_group(rows, variants, metric, 'loss')
  lines = ['Paper (Table 2): NT-Xent beats NT-Logistic and the margin triplet loss, each at '
           'its best temperature or margin.', '',
           'Picked on validation: ' + ', '.join(f'{g}: {n}' for g, n in picked.items()), '']
  if 'nt_xent' in picked:
    lines += [direction(rows, 'loss', picked['nt_xent'], n, metric, confidence)
              for g, n in picked.items() if g != 'nt_xent']
  return lines


def _temperature_verdicts(rows, variants, metric, confidence):
  picked = picked_per_group(rows, variants, metric, 'normalize')
  lines = ['Paper (Table 5): with l2 normalisation (cosine similarity) and a suitable '
           'temperature, NT-Xent learns a better representation than on raw dot products, '
           'though the unnormalised contrastive task is solved more often.', '']
  if True in picked and False in picked:
    lines.append('Best temperature of each (picked on validation):')
    lines.append(direction(rows, 'temperature', picked[True], picked[False], metric,
                           confidence))
  return lines


VERDICTS = {'augmentations': _augmentation_verdicts, 'heads': _head_verdicts,
            'batch_epochs': _batch_epoch_verdicts, 'loss': _loss_verdicts,
            'temperature': _temperature_verdicts}
TITLES = {'augmentations': 'Augmentation composition (Fig. 5)',
          'heads': 'Projection head (Fig. 8, Table 3)',
          'batch_epochs': 'Batch size × training length (Fig. 9)',
          'loss': 'Contrastive loss (Table 2)',
          'temperature': 'Temperature and l2 normalisation (Table 5)'}


def _settings(config, rows, metric) -> list[str]:
  c = config
  num_test = study_report.num_test_images(rows)
  seeds = sorted({r['seed'] for r in rows})
  return ['## Settings', '',
          f'- data: {c.data.path or c.data.name}; {c.data.image_size} px; '
          f'{num_test} test images',
          f'- recipe: {c.model.name} width {c.model.width:g}, head {c.model.head_layers} '
          f'layers, batch {c.batch_size}, '
          f'{f"{c.num_steps} steps" if c.num_steps else f"{c.num_epochs} epochs"}, {c.optim.name} at '
          f'{c.optim.base_lr:g} (scaling {c.optim.lr_scaling}), {c.loss.name} at '
          f'temperature {c.loss.temperature:g}, augmentation preset {c.augment.preset}',
          f'- every variant changes only what its finding varies; each seed ({seeds}) '
          'pretrains it again',
          f'- linear evaluation (logistic regression, L2 from {c.linear.l2_grid} picked on '
          f'validation {c.linear.select_metric}) on all training labels; the metric is test '
          f'{metric}, mean ± std over seeds; "pretraining contrastive acc" is the last '
          'training batch\'s (how often the positive ranks first)',
          f'- verdicts: paired over seeds and test images at {c.study.confidence:.0%} '
          '(evaluation/compare.py): **holds** when the interval lies on the paper\'s side of 0, '
          '**reversed** when on the other, **inside the noise** when it covers 0', '']


def _failures(rows):
  return study_report.failures_section(
      rows, '## Failed runs', '{count} runs failed and are left out; starting again with '
      'the same workdir runs them again.',
      lambda r: f"{r['finding']}/{r['variant']} seed {r['seed']} ({r['layer']})")


def write_markdown(path, config, variants, rows, metric):
  lines = ['# The paper\'s findings on this data', ''] + _settings(config, rows, metric)
  for finding in dict.fromkeys(v.finding for v in variants):
    of_finding = [v for v in variants if v.finding == finding]
    lines += [f'## {TITLES[finding]}', '']
    lines += VERDICTS[finding](rows, of_finding, metric, config.study.confidence)
    lines += _table(rows, of_finding, metric)
    lines += [f'![{finding}]({FIGURES[finding]})', '']
  lines += _failures(rows)
  with open(path, 'w') as f:
    f.write('\n'.join(lines))


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_augmentations(path, rows, variants, metric):
  plt = _pyplot()
  ops = [v.name for v in variants if '+' not in v.name]
  grid = np.full((len(ops), len(ops)), np.nan)
  text = {}
  for v in variants:
    i, j = ops.index(v.coords['second']), ops.index(v.coords['first'])
    mean, std, count = stats(rows, 'augmentations', v.name, 'h', metric)
    grid[i, j] = 100 * mean
    text[i, j] = f'{100 * mean:.1f}\n±{100 * std:.1f}' if count else 'failed'
  fig, ax = plt.subplots(figsize=(1.2 * len(ops) + 2, 1.1 * len(ops) + 1.5))
  image = ax.imshow(np.ma.masked_invalid(grid), cmap='viridis')
  middle = np.nanmean(grid) if np.isfinite(grid).any() else 0.0
  for (i, j), label in text.items():  # dark text on the bright (upper) end of viridis
    ax.text(j, i, label, ha='center', va='center', fontsize=8,
            color='black' if grid[i, j] > middle else 'white')
  ax.set_xticks(range(len(ops)), ops, rotation=30)
  ax.set_yticks(range(len(ops)), ops)
  ax.set_xlabel('1st transformation')
  ax.set_ylabel('2nd transformation')
  ax.set_title(f'test {metric} (%), mean ± std over seeds\nsingle ops on the diagonal',
               fontsize=10)
  fig.colorbar(image, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _bars(path, rows, finding, groups, series, metric, xlabel, title):
  """groups: [(label, {series name: (variant, layer)})] -> grouped bars with std bars."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(groups) + 2), 3.5))
  width = 0.8 / len(series)
  lows = []
  for k, name in enumerate(series):
    xs, means, stds = [], [], []
    for g, (_, members) in enumerate(groups):
      if name in members:
        mean, std, count = stats(rows, finding, *members[name], metric)
        if count:
          xs.append(g + (k - (len(series) - 1) / 2) * width)
          means.append(100 * mean)
          stds.append(100 * std)
    ax.bar(xs, means, width, yerr=stds, capsize=3, label=name)
    lows += [m - d for m, d in zip(means, stds)]
  if lows:  # differences of a few points: start the axis near the lowest bar, not at 0
    ax.set_ylim(bottom=max(0.0, min(lows) - 5))
  ax.set_xticks(range(len(groups)), [label for label, _ in groups])
  ax.set_xlabel(xlabel)
  ax.set_ylabel(f'test {metric} (%)')
  ax.set_title(title)
  if len(series) > 1:
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_batch_epochs(path, rows, variants, metric):
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  for b in sorted({v.coords['batch_size'] for v in variants}):
    points = sorted((v.coords['epochs'], stats(rows, 'batch_epochs', v.name, 'h', metric))
                    for v in variants if v.coords['batch_size'] == b)
    points = [(e, s) for e, s in points if s[2]]
    if points:
      ax.errorbar([e for e, _ in points], [100 * s[0] for _, s in points],
                  yerr=[100 * s[1] for _, s in points], marker='o', capsize=3,
                  label=f'batch {b}')
  ax.set_xlabel('training epochs')
  ax.set_ylabel(f'test {metric} (%)')
  ax.set_title('batch size × training length')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_finding(path, finding, rows, variants, metric):
  if finding == 'augmentations':
    return plot_augmentations(path, rows, variants, metric)
  if finding == 'batch_epochs':
    return plot_batch_epochs(path, rows, variants, metric)
  if finding == 'heads':
    groups = [(v.name, {LAYER_NAMES[l]: (v.name, l) for l in v.layers}) for v in variants]
    return _bars(path, rows, finding, groups, ['h', 'g(h)'], metric, 'projection head',
                 'linear evaluation on h and on g(h)')
  if finding == 'loss':
    picked = picked_per_group(rows, variants, metric, 'loss')
    groups = [(f'{g}\n({n.split("_")[-1]})', {'picked on val': (n, 'h')})
              for g, n in picked.items()]
    return _bars(path, rows, finding, groups, ['picked on val'], metric, 'loss',
                 'each loss at its validation-picked parameter')
  temperatures = sorted({v.coords['temperature'] for v in variants})
  groups = [(f'{t:g}', {('l2' if v.coords['normalize'] else 'raw'): (v.name, 'h')
                        for v in variants if v.coords['temperature'] == t})
            for t in temperatures]
  return _bars(path, rows, finding, groups, ['l2', 'raw'], metric, 'temperature',
               'NT-Xent with (l2) and without (raw) normalisation')


def write_report(config, workdir, variants, rows) -> dict:
  metric = config.linear.select_metric
  paths = {'report': os.path.join(workdir, 'report.md'),
           'results_csv': os.path.join(workdir, 'results.csv')}
  study_report.write_csv(paths['results_csv'], rows)
  write_markdown(paths['report'], config, variants, rows, metric)
  for finding in dict.fromkeys(v.finding for v in variants):
    path = os.path.join(workdir, FIGURES[finding])
    plot_finding(path, finding, rows, [v for v in variants if v.finding == finding], metric)
    paths[f'figure_{finding}'] = path
  return paths
