"""k-fold cross-validation in the study (study.folds): the folds partition the images, no
test image reaches its fold's training side, a 3-fold study runs end to end and resumes,
and its pooled metrics are those of the per-fold predictions put together."""

import csv
import json
import math
import os

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from sklearn import metrics as skm

from simclr_jax import sweep
from simclr_jax.config.checks import check
from simclr_jax.data import folds, pipeline, sources, synthetic
from simclr_jax.evaluation import baseline, fine_tuning, label_subsets, linear
from simclr_jax.experiments import compare, study
from simclr_jax.runtime import metrics
from simclr_jax.runtime.run_errors import RunStopped
from simclr_jax.training import loop
from tiny_configs import share_compilations_between_test_runs, tiny_study_config

NUM_FOLDS = 3
POSITIVE = ('koilocytotic', 'dyskeratotic')


@pytest.fixture(scope='module')
def cell_folder(tmp_path_factory):
  """The synthetic cells as a folder dataset: 5 classes x 13 images, 20 px."""
  root = tmp_path_factory.mktemp('cells')
  images, labels = synthetic.generate(65, 20, seed=3)
  for i, (image, label) in enumerate(zip(images, labels)):
    (root / synthetic.CLASS_NAMES[label]).mkdir(exist_ok=True)
    Image.fromarray(image).save(root / synthetic.CLASS_NAMES[label] / f'{i}.png')
  return root


def fold_config(path):
  c = tiny_study_config()
  c.data.name = 'folder'
  c.data.path = str(path)
  c.study.label_fractions = '0.5'
  c.study.linear_eval = False  # fine-tuning (and the control) is enough to pool; kept cheap
  c.study.folds = NUM_FOLDS
  return c


@pytest.fixture(scope='module')
def fold_study(cell_folder, tmp_path_factory):
  """One 3-fold study, run once for the module's tests: (config, workdir, summary)."""
  share_compilations_between_test_runs()
  config, workdir = fold_config(cell_folder), str(tmp_path_factory.mktemp('study'))
  return config, workdir, study.run_study(config, workdir)


def _split(workdir, fold):
  with open(os.path.join(folds.fold_dir(workdir, fold), 'split.json')) as f:
    return json.load(f)


def _paths(record, name):
  return [e['path'] for e in record['splits'][name]]


def test_folds_are_stratified_and_seeded():
  labels = np.repeat(np.arange(4), [10, 7, 5, 2])
  fold_of = folds.assign_folds(labels, 3, seed=0)
  assert np.array_equal(fold_of, folds.assign_folds(labels, 3, seed=0))
  assert not np.array_equal(fold_of, folds.assign_folds(labels, 3, seed=1))
  sizes = np.bincount(fold_of, minlength=3)
  assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(labels)
  for cls in range(4):  # every class spread as evenly as it can be
    counts = np.bincount(fold_of[labels == cls], minlength=3)
    assert counts.max() - counts.min() <= 1, (cls, counts)
  parts = folds.fold_split(labels, fold_of, 1, folds.val_share((0.7, 0.15, 0.15)), 0)
  assert np.array_equal(parts['test'], np.flatnonzero(fold_of == 1))
  everything = np.concatenate(list(parts.values()))
  assert sorted(everything) == list(range(len(labels)))  # disjoint and complete
  assert abs(len(parts['val']) / (len(labels) - len(parts['test'])) - 0.15 / 0.85) < 0.1


def test_every_image_is_in_exactly_one_test_fold(fold_study, cell_folder):
  _, workdir, _ = fold_study
  every = sorted(str(p.relative_to(cell_folder)) for p in cell_folder.rglob('*.png'))
  tests = [_paths(_split(workdir, k), 'test') for k in range(NUM_FOLDS)]
  assert sorted(sum(tests, [])) == every
  with open(os.path.join(workdir, folds.FOLDS_FILE)) as f:
    assigned = json.load(f)['images']
  for k, test in enumerate(tests):
    assert sorted(test) == sorted(e['path'] for e in assigned if e['fold'] == k)
    record = _split(workdir, k)
    assert not set(test) & (set(_paths(record, 'train')) | set(_paths(record, 'val')))


def _pretraining_pool_pixels(config, workdir):
  source = sources.load(config, workdir)
  store, _ = pipeline._pretrain_pool(config, source)  # pylint: disable=protected-access
  images, _ = store.fetch(np.arange(len(store)))
  return {np.asarray(image).tobytes() for image in images}


def test_no_test_image_reaches_its_folds_training_side(fold_study, cell_folder):
  config, workdir, _ = fold_study
  for k in range(NUM_FOLDS):
    record = _split(workdir, k)
    test = set(_paths(record, 'test'))
    train_paths = _paths(record, 'train')
    train_labels = np.array([e['label'] for e in record['splits']['train']])
    for seed in (0, 1, 2):  # label subsets are drawn from the fold's training images
      c = config.copy_and_resolve_references()
      c.label_fraction, c.seed = 0.5, seed
      subset = label_subsets.subset_for_config(c, train_labels)
      assert not {train_paths[i] for i in subset} & test
    # what pretraining reads, pixel for pixel: the fold's pretraining has its split.json
    pretrain_dir = os.path.join(folds.fold_dir(workdir, k), 'simclr', 'pretrain')
    with open(os.path.join(pretrain_dir, 'split.json')) as f:
      assert json.load(f) == record
    c = config.copy_and_resolve_references()
    pool = _pretraining_pool_pixels(c, pretrain_dir)
    test_pixels = {np.asarray(Image.open(cell_folder / p)).tobytes() for p in test}
    assert pool and not pool & test_pixels
    with c.unlocked():  # pretrain_scope='all' pretrains with data.pretrain_on_test
      c.data.pretrain_on_test = True
    assert test_pixels <= _pretraining_pool_pixels(c, pretrain_dir)


def test_a_three_fold_study_runs_end_to_end_and_resumes(fold_study, monkeypatch):
  config, workdir, summary = fold_study
  # per fold: the control's and simclr's fine-tuning, and simclr's pretraining (not a row)
  assert summary['num_runs'] == NUM_FOLDS * 2 and not summary['failed']
  assert len(summary['rows']) == 2  # the pooled arms
  assert {r['num_test'] for r in summary['rows']} == {65}
  report = open(os.path.join(workdir, 'report.md')).read()
  assert 'pooled over 3 folds' in report and 'top-1 per fold' in report
  assert 'pretraining per fold on the images outside its test fold' in report
  assert 'a single split testing on one fold' in report
  for name in ('results.csv', 'label_fraction.png', 'folds.json',
               'fold_2/simclr/pretrain/metrics.json'):
    assert os.path.exists(os.path.join(workdir, name)), name

  def must_not_run(*args, **kwargs):
    raise AssertionError('a finished run was started again')

  for module, name in ((loop, 'train_and_evaluate'), (fine_tuning, 'run_finetune'),
                       (linear, 'run_linear_eval'), (baseline, 'run_baseline')):
    monkeypatch.setattr(module, name, must_not_run)
  again = study.run_study(config, workdir)
  assert again['num_runs'] == summary['num_runs'] and not again['failed']
  assert [r['top1'] for r in again['rows']] == [r['top1'] for r in summary['rows']]


def test_pooled_metrics_equal_the_per_fold_predictions_put_together(fold_study):
  _, workdir, summary = fold_study
  with open(os.path.join(workdir, 'results.csv')) as f:
    csv_rows = list(csv.DictReader(f))
  with open(os.path.join(workdir, folds.FOLDS_FILE)) as f:
    class_names = json.load(f)['class_names']  # the folder's classes, sorted by name
  positive = [class_names.index(n) for n in POSITIVE]
  for point, protocol, frac in (('simclr', 'finetune', '0.5'), ('supervised', 'finetune', '0.5')):
    runs = []
    for k in range(NUM_FOLDS):
      with open(os.path.join(workdir, f'fold_{k}', point, protocol, f'frac_{frac}', 'seed_0',
                             'metrics.json')) as f:
        runs.append(json.load(f))
    y = np.concatenate([r['test_labels'] for r in runs])
    pred = np.concatenate([r['test_predictions'] for r in runs])
    score = np.concatenate([r['test_positive_scores'] for r in runs])
    pooled = next(r for r in csv_rows if (r['starting_point'], r['protocol'], r['fold']) ==
                  (point, protocol, 'pooled') and math.isclose(float(r['label_fraction']),
                                                                float(frac)))
    truth, called = np.isin(y, positive), np.isin(pred, positive)
    expected = {'top1': skm.accuracy_score(y, pred),
                'balanced_accuracy': skm.balanced_accuracy_score(y, pred),
                'macro_f1': skm.f1_score(y, pred, average='macro'),
                'sensitivity': called[truth].mean(), 'specificity': (~called[~truth]).mean(),
                'roc_auc': skm.roc_auc_score(truth, score)}
    for metric, value in expected.items():
      assert float(pooled[metric]) == pytest.approx(value, abs=1e-9), (point, metric)
    assert int(pooled['num_test']) == len(y) == 65
    folds_rows = [r for r in csv_rows if (r['starting_point'], r['protocol']) ==
                  (point, protocol) and r['fold'] != 'pooled' and
                  math.isclose(float(r['label_fraction']), float(frac))]
    assert sorted(float(r['top1']) for r in folds_rows) == sorted(r['top1'] for r in runs)


def test_pooled_comparison_spreads_over_folds_and_seeds():
  """The run-to-run part of a pooled comparison: the K x S paired differences, Student's t
  (here without predictions, so it is the whole interval)."""
  fold_top1 = {('a', 0): [0.80, 0.70, 0.75], ('a', 1): [0.78, 0.74, 0.70],
               ('b', 0): [0.70, 0.69, 0.60], ('b', 1): [0.71, 0.66, 0.65]}
  rows = [{'starting_point': p, 'protocol': 'finetune', 'label_fraction': 0.1, 'seed': s,
           'top1': float(np.mean(v)), 'fold_values': {'top1': v}, 'num_test': 90}
          for (p, s), v in fold_top1.items()]
  c = compare.compare(rows, ('a', 'finetune'), ('b', 'finetune'), 0.1)
  d = np.subtract([0.80, 0.70, 0.75, 0.78, 0.74, 0.70], [0.70, 0.69, 0.60, 0.71, 0.66, 0.65])
  half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / math.sqrt(6)
  assert c.half_width == pytest.approx(half, rel=1e-9)
  assert c.difference == pytest.approx(d.mean(), abs=1e-12)
  assert '3 folds x 2 seeds' in c.method


def test_fold_keys_are_checked(cell_folder, tmp_path):
  c = fold_config(cell_folder)
  check(c)
  for key, value in (('folds', 1), ('folds', -2), ('pretrain_scope', 'everything')):
    bad = fold_config(cell_folder)
    bad.study[key] = value
    with pytest.raises(ValueError, match=f'config.study.{key}='):
      check(bad)
  c.data.name = 'synthetic_cells'
  with pytest.raises(ValueError, match="needs a folder dataset"):
    folds.write_fold_splits(c, str(tmp_path))


def finetune_predicting_class_0(c, workdir):
  """A stand-in for fine-tuning where the real one is not the subject (it is tested above):
  every test image of the run's split predicted as class 0."""
  labels = pipeline.split_labels(c, workdir, 'test')
  return {'status': 'completed', 'top1': float(np.mean(labels == 0)), 'balanced_accuracy': 0.2,
          'macro_f1': 0.1, 'num_train': 10, 'num_test': len(labels),
          'test_labels': labels.tolist(), 'test_predictions': [0] * len(labels)}


def test_a_failed_fold_run_is_recorded_and_its_arm_is_not_pooled(cell_folder, tmp_path,
                                                                 monkeypatch):
  config = fold_config(cell_folder)

  def pretraining_diverges_in_fold_1(c, workdir):
    if f'{os.sep}fold_1{os.sep}' in workdir:
      raise FloatingPointError('non-finite loss or gradient at step 2 (loss=nan)')
    return {'status': 'completed'}

  monkeypatch.setattr(loop, 'train_and_evaluate', pretraining_diverges_in_fold_1)
  monkeypatch.setattr(fine_tuning, 'run_finetune', finetune_predicting_class_0)
  workdir = str(tmp_path / 'study')
  with pytest.raises(RunStopped, match=r'^1 of 6 sub-runs failed \(fold_1/simclr/finetune/'):
    sweep.run_and_summarize(config, workdir)
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  failed = [r for r in rows if r['status'] == 'failed']
  assert [(r['starting_point'], r['fold']) for r in failed] == [('simclr', '1')]
  assert 'FloatingPointError' in failed[0]['error']
  pooled = [r for r in rows if r['fold'] == 'pooled']
  assert [r['starting_point'] for r in pooled] == ['supervised']  # simclr lacks fold 1
  assert int(pooled[0]['num_test']) == 65
  report = open(os.path.join(workdir, 'report.md')).read()
  assert '- simclr finetune 50% labels seed 0 fold 1: not run: pretraining' in report


def test_pretrain_scope_all_pretrains_once_on_every_image_and_says_so(cell_folder, tmp_path,
                                                                      monkeypatch):
  config = fold_config(cell_folder)
  config.study.pretrain_scope = 'all'
  pretrained, started_from = [], []

  def pretraining(c, workdir):
    pretrained.append((workdir, pipeline.dataset_info(c, workdir).num_pretrain))
    metrics.write_metrics_json(workdir, {'status': 'completed'})  # as train does: finished
    return {'status': 'completed'}

  def finetune_recording_its_start(c, workdir):
    started_from.append(c.init_from)
    return finetune_predicting_class_0(c, workdir)

  monkeypatch.setattr(loop, 'train_and_evaluate', pretraining)
  monkeypatch.setattr(fine_tuning, 'run_finetune', finetune_recording_its_start)
  workdir = str(tmp_path / 'study')
  study.run_study(config, workdir)
  assert pretrained == [(os.path.join(workdir, 'simclr', 'pretrain'), 65)]  # every image
  assert set(started_from) == {'', os.path.join(workdir, 'simclr', 'pretrain')}
  report = open(os.path.join(workdir, 'report.md')).read()
  assert 'test pixels were seen in pretraining' in report
