"""The study end to end on a tiny model: pretraining, linear evaluation, fine-tuning, the
supervised control and the report; then a second start that must skip every finished run."""

import csv
import json
import os

import jax
import numpy as np
import optax
from flax import nnx

from simclr_jax.evaluation import fine_tuning, linear, networks
from simclr_jax.experiments import study
from simclr_jax.models import heads
from simclr_jax.runtime import parallel
from simclr_jax.training import checkpoint, loop, state as train_state
from tiny_configs import share_compilations_between_test_runs, tiny_study_config


def test_tiny_study_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
  share_compilations_between_test_runs()
  workdir = str(tmp_path / 'study')
  summary = study.run_study(tiny_study_config(), workdir)
  # 2 starting points x (linear at 0.2, 0.5, 1.0 + fine-tuning at 0.2, 0.5)
  assert summary['num_runs'] == 10
  for name in ('results.csv', 'report.md', 'label_fraction.png', 'embedding.png',
               'metrics.json', 'simclr/pretrain/metrics.json',
               'supervised/finetune/frac_0.2/seed_0/metrics.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'simclr/finetune/frac_0.5/seed_0/metrics.json')) as f:
    result = json.load(f)
  for key in ('top1', 'balanced_accuracy', 'macro_f1', 'per_class_recall',
              'per_class_precision', 'confusion_matrix', 'num_train', 'num_test', 'roc_auc',
              'sensitivity', 'specificity'):
    assert key in result, key
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert {r['protocol'] for r in rows} == {'linear', 'finetune'}
  assert 'supervised' in open(os.path.join(workdir, 'report.md')).read()

  def must_not_run(*args, **kwargs):
    raise AssertionError('a finished run was started again')

  monkeypatch.setattr(loop, 'train_and_evaluate', must_not_run)
  monkeypatch.setattr(fine_tuning, 'run_finetune', must_not_run)
  monkeypatch.setattr(linear, 'run_linear_eval', must_not_run)
  assert study.run_study(tiny_study_config(), workdir)['num_runs'] == 10

  # finetune_from='head1' starts from the checkpoint's encoder and the head's first layer.
  config = tiny_study_config()
  config.init_from = os.path.join(workdir, 'simclr', 'pretrain')
  config.finetune_from = 'head1'
  networks.check_starting_point(config, 'finetune')
  mesh = parallel.make_mesh()
  _, state, _ = train_state.create_train_state(
      lambda rngs: networks.FineTuneModel(config, 5, rngs), optax.identity(), mesh, 0,
      prepare_params=networks.load_pretrained(config))
  source = nnx.eval_shape(lambda: heads.build_simclr_model(config, 5, nnx.Rngs(0)))
  _, params, stats = train_state.split_model(source)
  saved, _, _ = checkpoint.restore_model_variables(config.init_from, params, stats)

  def assert_same(loaded, stored):
    loaded, stored = jax.tree.leaves(loaded), jax.tree.leaves(stored)
    assert len(loaded) == len(stored) > 0
    for a, b in zip(loaded, stored):
      np.testing.assert_allclose(a, b)

  assert_same(state.params['head1'], saved['head']['hidden'][0])
  assert_same(state.params['encoder'], saved['encoder'])


def test_pretraining_then_fine_tuning_repeats_bitwise(tmp_path):
  """Same machine, same seed, same command -> the same digits (README: Determinism)."""
  share_compilations_between_test_runs()
  config = tiny_study_config()
  config.eval_at_end = False
  config.label_fraction = 0.5
  timing = ('step_ms', 'images_per_sec', 'init_from')  # wall-clock, and the run's own path
  runs = []
  for name in ('first', 'second'):
    pretrain_dir = str(tmp_path / name / 'pretrain')
    pretrained = loop.train_and_evaluate(config, pretrain_dir)
    c = config.copy_and_resolve_references()
    c.init_from = pretrain_dir
    tuned = fine_tuning.run_finetune(c, str(tmp_path / name / 'finetune'))
    runs.append([{k: v for k, v in r.items() if k not in timing}
                 for r in (pretrained, tuned)])
  assert runs[0] == runs[1]  # == on floats: bitwise, not approximately
  assert runs[0][1]['test_predictions'] and 'loss' in runs[0][0]
