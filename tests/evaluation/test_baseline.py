"""The study's no-network floor: end to end on a tiny folder, equal to scikit-learn on the
same features, near-blank crops left out, and skipped when finished like any sub-run."""

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression

from simclr_jax.config.defaults import get_default_config
from simclr_jax.data import sources
from simclr_jax.evaluation import baseline, label_subsets
from simclr_jax.experiments import study
from simclr_jax.runtime import metrics

CLASSES = ('dark nuclei', 'pale', 'red stain')


def _tiny_folder(root, per_class=24, blank=3):
  """Three classes told apart by colour and darkness, with noise; `blank` flat grey crops
  in the first class."""
  rng = np.random.default_rng(0)
  for k, name in enumerate(CLASSES):
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      image = rng.normal(150, 30, (20, 20, 3))
      image[6:14, 6:14] -= 60 * (k == 0) + rng.normal(0, 25)
      image[..., 0] += 50 * (k == 2)
      Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / name / f'{i}.png')
  for i in range(blank):
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(root / CLASSES[0] / f'b{i}.png')
  return root


def _config(path):
  c = get_default_config()
  c.data.name = 'folder'
  c.data.path = str(path)
  c.data.image_size = 16
  c.augment.preset = 'cytology'
  c.eval_batch_size = 32
  c.class_weighting = True
  c.linear.l2_grid = '1e-2'
  c.linear.max_iter = 1000
  c.linear.select_metric = 'balanced_accuracy'
  c.baseline.pixel_size = 4
  c.study.starting_points = 'baseline'
  c.study.label_fractions = '0.5'
  c.study.seeds = 2
  return c


def test_baseline_equals_scikit_learn_on_the_same_features(tmp_path):
  config = _config(_tiny_folder(tmp_path / 'cells'))
  with config.unlocked():
    config.baseline.features = 'colour_texture'
    config.label_fraction, config.seed = 0.5, 1
  result = baseline.run_baseline(config, str(tmp_path / 'run'))
  written = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
  assert written['protocol'] == 'baseline' and written['features'] == 'colour_texture'

  feats = baseline.cached_features(config, str(tmp_path / 'run'))['colour_texture']
  (train_x, train_y), (test_x, test_y) = feats['train'], feats['test']
  subset = label_subsets.subset_for_config(config, train_y)
  train_x, train_y = train_x[subset], train_y[subset]
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  # Ours: mean class-weighted cross-entropy + l2/2 |W|^2. scikit-learn: C * sum of weighted
  # cross-entropies + 1/2 |W|^2 (it leaves the intercept unpenalised, as we do), and the
  # 'balanced' weights sum to n: so C = 1 / (l2 n).
  reference = LogisticRegression(C=1 / (1e-2 * len(train_y)), class_weight='balanced',
                                 tol=1e-10, max_iter=10_000)
  reference.fit((train_x - mean) / std, train_y)
  probs = reference.predict_proba((test_x - mean) / std)
  expected = metrics.classification_metrics(test_y, probs.argmax(1), len(CLASSES), probs=probs)
  assert result['num_train'] == len(train_y) and result['num_test'] == len(test_y)
  for key in ('top1', 'balanced_accuracy', 'macro_f1'):
    assert result[key] == pytest.approx(expected[key], abs=1e-9), key
  assert result['confusion_matrix'] == expected['confusion_matrix']


def test_pixel_features_are_cell_means():
  images = np.random.default_rng(0).random((2, 6, 6, 3), np.float32)
  pooled = baseline.pixel_features(images, 3).reshape(2, 3, 3, 3)
  np.testing.assert_allclose(pooled[:, 1, 2], images[:, 2:4, 4:6].mean((1, 2)), rtol=1e-6)
  with pytest.raises(ValueError, match='config.baseline.pixel_size=7'):
    baseline.pixel_features(images, 7)


def test_near_blank_crops_are_left_out_of_every_split(tmp_path):
  config = _config(_tiny_folder(tmp_path / 'cells'))
  with config.unlocked():
    config.data.drop_blank_below = 8.0
  source = sources.load(config, str(tmp_path / 'run'))
  dropped = sum(source.dropped_blank.values(), [])
  assert sorted(p.split('/')[-1] for p in dropped) == ['b0.png', 'b1.png', 'b2.png']
  assert sum(len(labels) for _, labels in source.splits.values()) == 3 * 24


def test_study_with_baseline_writes_its_row_and_skips_it_when_finished(tmp_path, monkeypatch):
  config = _config(_tiny_folder(tmp_path / 'cells'))
  workdir = str(tmp_path / 'study')
  summary = study.run_study(config, workdir)
  # 2 seeds at 50% + one run at 100% of the labels
  assert [(r['starting_point'], r['protocol'], r['label_fraction'], r['seed'])
          for r in summary['rows']] == [('baseline', 'baseline', 0.5, 0), ('baseline',
                                        'baseline', 0.5, 1), ('baseline', 'baseline', 1.0, 0)]
  report_md = (tmp_path / 'study' / 'report.md').read_text()
  assert '| baseline (no network) |' in report_md

  def must_not_run(config, workdir):
    raise AssertionError(f'{workdir} had finished and ran again')

  monkeypatch.setattr(baseline, 'run_baseline', must_not_run)
  again = study.run_study(config, workdir)
  assert again['rows'] == summary['rows']
