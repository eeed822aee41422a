"""The study survives one bad sub-run: it is recorded as failed in results.csv and
report.md, the other sub-runs go on, and the sweep ends non-zero saying which failed."""

import csv
import os

import pytest

from simclr_jax import sweep
from simclr_jax.evaluation import fine_tuning
from simclr_jax.runtime.run_errors import RunStopped
from simclr_jax.training import loop
from tiny_configs import tiny_study_config


def test_failed_sub_runs_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
  config = tiny_study_config()
  config.study.linear_eval = False
  ran = []

  def diverging_pretraining(c, workdir):
    raise FloatingPointError('non-finite loss or gradient at step 2 (loss=nan)')

  def finetune_broken_at_20_percent(c, workdir):
    ran.append(workdir)
    if c.label_fraction == 0.2:
      raise ValueError('config.label_fraction: the subset has 1 images, fewer than the 8 '
                       'devices')
    return {'status': 'completed', 'top1': 0.5, 'balanced_accuracy': 0.5, 'macro_f1': 0.5,
            'num_train': 20, 'num_test': 20}

  monkeypatch.setattr(loop, 'train_and_evaluate', diverging_pretraining)
  monkeypatch.setattr(fine_tuning, 'run_finetune', finetune_broken_at_20_percent)
  workdir = str(tmp_path / 'study')
  with pytest.raises(RunStopped) as info:
    sweep.run_and_summarize(config, workdir)
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith('3 of 4 sub-runs failed (supervised/finetune/frac_0.2/seed_0, '
                            'simclr/finetune/frac_0.2/seed_0, simclr/finetune/frac_0.5/seed_0)')
  assert len(ran) == 2  # the supervised control's two fractions; simclr's need pretraining
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = {(r['starting_point'], r['label_fraction']): r for r in csv.DictReader(f)}
  assert rows[('supervised', '0.5')]['status'] == 'completed'
  assert rows[('supervised', '0.2')]['status'] == 'failed'
  assert 'ValueError: config.label_fraction' in rows[('supervised', '0.2')]['error']
  assert 'pretraining' in rows[('simclr', '0.5')]['error']
  assert 'FloatingPointError: non-finite loss' in rows[('simclr', '0.5')]['error']
  report = open(os.path.join(workdir, 'report.md')).read()
  assert '## Failed sub-runs' in report
  assert '- supervised finetune 20% labels seed 0: ValueError: config.label_fraction' in report
  assert '| supervised | – | 50.0 ± 0.0 |' in report


def test_a_preempted_pretraining_stops_the_study_before_anything_evaluates_it(tmp_path,
                                                                              monkeypatch):
  config = tiny_study_config()
  evaluated = []

  def preempted_pretraining(c, workdir):  # what train returns after SIGTERM
    return {'status': 'preempted', 'step': 3}

  def record(c, workdir):
    evaluated.append(workdir)
    return {'status': 'completed'}

  monkeypatch.setattr(loop, 'train_and_evaluate', preempted_pretraining)
  monkeypatch.setattr(fine_tuning, 'run_finetune', record)
  workdir = tmp_path / 'study'
  with pytest.raises(RunStopped, match=r'SIGTERM: .*pretrain saved a checkpoint at step 3 '
                                       r'and stopped.*same workdir to resume'):
    sweep.run_and_summarize(config, str(workdir))
  assert not any('simclr' in w for w in evaluated)
  assert not (workdir / 'report.md').exists()
