"""Fast checks of evaluation's parts: label subsets, metrics vs scikit-learn, kNN, errors."""

import os

import numpy as np
import pytest
from sklearn import metrics as skm

from simclr_jax.config.defaults import get_default_config
from simclr_jax.evaluation import fine_tuning, label_subsets, linear
from simclr_jax.experiments import study
from simclr_jax.runtime import metrics
from simclr_jax.training import knn


def _labels():
  return np.repeat(np.arange(5), [100, 40, 13, 7, 3])  # imbalanced, like cytology


def test_label_subsets_are_stratified_nested_and_reproducible():
  labels = _labels()
  previous = None
  for fraction in (0.1, 0.2, 0.3, 0.4, 0.5, 1.0):
    subset = label_subsets.stratified_subset(labels, fraction, seed=3)
    counts = np.bincount(labels[subset], minlength=5)
    expected = np.maximum(1, np.ceil(fraction * np.bincount(labels)))
    np.testing.assert_array_equal(counts, expected)  # every class, in proportion
    assert len(np.unique(subset)) == len(subset)
    if previous is not None:
      assert set(previous) <= set(subset)  # nested
    previous = subset
  np.testing.assert_array_equal(label_subsets.stratified_subset(labels, 0.2, seed=3),
                                label_subsets.stratified_subset(labels, 0.2, seed=3))
  assert not np.array_equal(label_subsets.stratified_subset(labels, 0.2, seed=3),
                            label_subsets.stratified_subset(labels, 0.2, seed=4))


@pytest.mark.parametrize('fraction', [0.0, -0.1, 1.5])
def test_label_fraction_outside_unit_interval_is_an_error(fraction):
  with pytest.raises(ValueError, match='config.label_fraction'):
    label_subsets.stratified_subset(_labels(), fraction, seed=0)


def test_classification_metrics_agree_with_scikit_learn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, 300)
  labels[:5] = 4  # a rare class...
  preds = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 4, 300))  # ...never predicted
  probs = rng.dirichlet(np.ones(5), 300)
  probs[np.arange(300), preds] += 1.0
  probs /= probs.sum(1, keepdims=True)
  positive = [1, 4]
  got = metrics.classification_metrics(labels, preds, 5, probs=probs, positive_classes=positive)
  assert got['top1'] == pytest.approx(skm.accuracy_score(labels, preds))
  assert got['balanced_accuracy'] == pytest.approx(skm.balanced_accuracy_score(labels, preds))
  assert got['macro_f1'] == pytest.approx(
      skm.f1_score(labels, preds, average='macro', zero_division=0))
  np.testing.assert_allclose(got['per_class_recall'],
                             skm.recall_score(labels, preds, average=None, zero_division=0))
  np.testing.assert_allclose(got['per_class_precision'],
                             skm.precision_score(labels, preds, average=None, zero_division=0))
  np.testing.assert_array_equal(got['confusion_matrix'], skm.confusion_matrix(labels, preds))
  truth, called = np.isin(labels, positive), np.isin(preds, positive)
  assert got['sensitivity'] == pytest.approx(skm.recall_score(truth, called))
  assert got['specificity'] == pytest.approx(skm.recall_score(~truth, ~called))
  assert got['roc_auc'] == pytest.approx(skm.roc_auc_score(truth, probs[:, positive].sum(1)))
  ties = np.round(probs[:, positive].sum(1), 1)  # AUC with tied scores
  assert metrics.binary_auc(ties, truth) == pytest.approx(skm.roc_auc_score(truth, ties))


def test_positive_classes_must_name_classes():
  with pytest.raises(ValueError, match='config.positive_classes'):
    metrics.parse_positive_classes('HSIL,nope', ('HSIL', 'LSIL'))
  assert metrics.parse_positive_classes(' LSIL ', ('HSIL', 'LSIL')) == [1]


def _knn_reference(train, train_labels, test, k, num_classes):
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  test = test / np.linalg.norm(test, axis=1, keepdims=True)
  preds = []
  for row in test:
    sims = np.array([row @ t for t in train])
    nearest = np.argsort(-sims)[:k]
    votes = np.zeros(num_classes)
    for i in nearest:
      votes[train_labels[i]] += np.exp(sims[i] / knn.TEMPERATURE)
    preds.append(int(np.argmax(votes)))
  return np.array(preds)


def test_knn_matches_brute_force_reference():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(3, 8))
  train_labels, test_labels = rng.integers(0, 3, 120), rng.integers(0, 3, 50)
  train = centres[train_labels] + rng.normal(size=(120, 8))
  test = centres[test_labels] + rng.normal(size=(50, 8))
  for k in (1, 5, 20):
    expected = _knn_reference(train, train_labels, test, k, 3)
    np.testing.assert_array_equal(knn.knn_predict(train, train_labels, test, k, 3, chunk=7),
                                  expected)
    assert knn.knn_top1(train, train_labels, test, test_labels, k) == pytest.approx(
        np.mean(expected == test_labels))
  assert knn.knn_top1(train, train_labels, test, test_labels, 5) > 0.6


def test_linear_classifier_fits_separable_features():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(200, 6)).astype(np.float32)
  y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
  params = linear.fit_logistic(x, y, np.ones(200, np.float32), 1e-4, num_classes=2,
                               max_iter=200)
  assert np.mean(linear.predict_probs(params, x).argmax(1) == y) > 0.97


def test_evaluation_entry_points_name_bad_keys(tmp_path):
  config = get_default_config()
  with pytest.raises(ValueError, match='config.init_from is missing'):
    fine_tuning.run_finetune(config, str(tmp_path))
  with pytest.raises(ValueError, match='config.init_from is missing'):
    linear.run_linear_eval(config, str(tmp_path))
  config.label_fraction = 1.5
  with pytest.raises(ValueError, match='config.label_fraction'):
    fine_tuning.run_finetune(config, str(tmp_path))
  config.label_fraction = 0.1
  config.init_from = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='config.init_from'):
    fine_tuning.run_finetune(config, str(tmp_path))
  config.study.starting_points = 'simclr,imagenet'
  with pytest.raises(ValueError, match='config.study.imagenet_weights'):
    study.run_study(config, str(tmp_path))
  config.study.starting_points = 'simclr,byol'
  with pytest.raises(ValueError, match='config.study.starting_points'):
    study.run_study(config, str(tmp_path))
  config.study.starting_points = 'simclr'
  config.study.label_fractions = '0.1,2'
  with pytest.raises(ValueError, match='config.study.label_fractions'):
    study.run_study(config, str(tmp_path))


def test_report_headline_compares_simclr_with_the_control_at_the_smallest_fraction():
  from simclr_jax.experiments import study_report
  rows = [study_report.result_row(point, 'finetune', fraction, seed, {'top1': top1})
          for point, fraction, seed, top1 in [
              ('supervised', 0.1, 0, 0.60), ('supervised', 0.1, 1, 0.64),
              ('simclr', 0.1, 0, 0.70), ('simclr', 0.1, 1, 0.75),
              ('supervised', 0.5, 0, 0.90), ('simclr', 0.5, 0, 0.80)]]
  lines = study_report.headline(['supervised', 'simclr'], rows)
  assert lines[0].startswith('At 10% of the labels, fine-tuning after SimCLR reaches 72.5 ± '
                             '2.5% test top-1 against 62.0 ± 2.0% for the supervised-from-'
                             'scratch control (2 seeds). SimCLR against the control: better '
                             '(+10.5 points, 95% interval ')
  assert '| simclr | 72.5 ± 2.5 | 80.0 ± 0.0 |' in lines
  rows[2]['top1'], rows[3]['top1'] = 0.50, 0.54  # 10 points behind on both seeds
  assert 'control: worse (-10.0 points' in study_report.headline(['supervised', 'simclr'], rows)[0]
  rows[3]['top1'] = 0.74  # the seeds disagree
  assert 'control: no difference detected (' in study_report.headline(['supervised', 'simclr'],
                                                                rows)[0]


def test_pretrain_per_seed_gives_each_seed_its_own_pretraining(tmp_path, monkeypatch):
  from simclr_jax.experiments import study_report
  from simclr_jax.training import loop
  config = get_default_config()
  config.data.num_synthetic = 50
  config.study.label_fractions = '0.5'
  config.study.seeds = 2
  config.study.pretrain_per_seed = True
  calls = []

  def fake_job(name):
    def job(c, workdir):
      calls.append((name, os.path.relpath(workdir, tmp_path), c.seed,
                    os.path.relpath(c.init_from, tmp_path) if c.init_from else '',
                    os.path.basename(c.linear.feature_cache)))
      return {'top1': 0.5, 'num_test': 10}
    return job

  monkeypatch.setattr(loop, 'train_and_evaluate', fake_job('pretrain'))
  monkeypatch.setattr(fine_tuning, 'run_finetune', fake_job('finetune'))
  monkeypatch.setattr(linear, 'run_linear_eval', fake_job('linear'))
  monkeypatch.setattr(study_report, 'write_report', lambda *args: {})
  study.run_study(config, str(tmp_path))
  pretrainings = [c for c in calls if c[0] == 'pretrain']
  assert [(c[1], c[2]) for c in pretrainings] == [('simclr/pretrain/seed_0', 0),
                                                  ('simclr/pretrain/seed_1', 1)]
  for name, workdir, seed, init_from, cache in calls:
    if name != 'pretrain' and workdir.startswith('simclr'):
      assert init_from == f'simclr/pretrain/seed_{seed}' and cache == f'features_seed{seed}.npz'
  simclr_linear = [c for c in calls if c[0] == 'linear' and c[1].startswith('simclr')]
  assert len(simclr_linear) == 4  # 50% and 100% for each seed: the encoders differ
