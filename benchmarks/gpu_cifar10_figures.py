"""The CIFAR-10 figures of benchmarks/gpu_cifar10.sh against their goals, one JSON line each.

  python benchmarks/gpu_cifar10_figures.py STUDY_WORKDIR PRETRAIN_SECONDS

STUDY_WORKDIR: a finished (or partly finished) sweep of configs/study_cifar10.py:gpu.
PRETRAIN_SECONDS: the pretraining's wall time, start to end (data decoding, compilation
and the kNN monitor included); the epochs are the steps it ran times its batch over its
pretraining images (simclr/pretrain/metrics.json). kNN top-1 is computed here, k = 200
cosine-weighted (simclr_jax/training/knn.py), on the frozen h that the study's linear
evaluation cached (simclr/features.npz): the 10,000 test images against the 49,000
training images.
"""

import csv
import json
import pathlib
import sys

import numpy as np

from simclr_jax.training import knn

JPEG_CAVEAT = ('JPEG copies at quality about 75 (../shared/datasets/README.md): published '
               'figures carry over only to within a point or so')
GOALS = {
    'linear_top1': ('linear top-1 with all labels, after EPOCHS epochs', 0.86,
                    '83.1-83.3 % linear at 100 epochs'),
    'knn_top1': ('kNN top-1 (k = 200, cosine) on frozen h, after EPOCHS epochs', 0.85,
                 "84.7 % (batch 128) and 84.8 % (batch 512), best over all epochs (lightly's "
                 'benchmark)'),
    'epoch_seconds': ('one epoch end to end, kNN monitor included (s)', 1.5,
                      '11.9 s on an A100 for a PyTorch SimCLR; about 26 s on an RTX A6000 '
                      'with kNN every epoch'),
}
KNN_K = 200


def _read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def _goal_row(name, value, epochs, **extra) -> dict:
  what, goal, peers = GOALS[name]
  lower_is_better = name == 'epoch_seconds'
  met = None if value is None else (value <= goal if lower_is_better else value >= goal)
  return {'figure': name, 'what': what.replace('EPOCHS', str(epochs)),
          'value': None if value is None else round(float(value), 4),
          'goal': f"{'<=' if lower_is_better else '>='} {goal}", 'met': met,
          'peers': peers, **extra}


def figures(study: pathlib.Path, pretrain_seconds: float) -> list[dict]:
  pretrain = _read_json(study / 'simclr' / 'pretrain' / 'metrics.json') or {}
  done = pretrain.get('status') == 'completed'
  epochs = (pretrain['step'] * pretrain['batch_size'] / pretrain['num_pretrain']
            if done else None)
  epochs_label = f'{epochs:.3g}' if epochs else '?'
  rows = []
  linear = _read_json(study / 'simclr' / 'linear' / 'frac_1' / 'seed_0' / 'metrics.json')
  rows.append(_goal_row('linear_top1', linear and linear.get('top1'), epochs_label,
                        num_train=linear and linear.get('num_train'),
                        num_test=linear and linear.get('num_test')))
  cache = study / 'simclr' / 'features.npz'
  knn_top1 = None
  if cache.exists():
    with np.load(cache) as f:
      knn_top1 = knn.knn_top1(f['train_h'], f['train_y'], f['test_h'], f['test_y'], KNN_K)
  rows.append(_goal_row('knn_top1', knn_top1, epochs_label))
  rate = pretrain.get('images_per_sec')
  rows.append(_goal_row(
      'epoch_seconds', pretrain_seconds / epochs if epochs else None, epochs_label,
      pretrain_status=pretrain.get('status'), pretrain_seconds=round(pretrain_seconds, 1),
      steady_images_per_sec=rate,
      steady_epoch_seconds=round(pretrain['num_pretrain'] / rate, 3)
      if rate and pretrain.get('num_pretrain') else None))
  results = study / 'results.csv'
  if results.exists():
    with open(results) as f:
      for r in csv.DictReader(f):
        rows.append({'figure': 'few_label', 'starting_point': r['starting_point'],
                     'protocol': r['protocol'], 'label_fraction': float(r['label_fraction']),
                     'seed': int(r['seed']), 'status': r['status'],
                     'top1': float(r['top1']) if r.get('top1') else None})
  rows.append({'figure': 'caveat', 'note': JPEG_CAVEAT})
  return rows


def main(argv):
  for row in figures(pathlib.Path(argv[1]), float(argv[2])):
    print(json.dumps(row), flush=True)
  report = study / 'report.md'
  if report.exists():
    print(report.read_text()[:6000])


if __name__ == '__main__':
  main(sys.argv)
