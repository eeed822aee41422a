"""LP-FT: fine-tuning that starts from the linear probe begins exactly where linear
evaluation ends, and the probe's map moves onto raw features without changing a logit."""

import json

import numpy as np
import pytest

from simclr_jax.evaluation import fine_tuning, linear
from simclr_jax.training import loop
from tiny_configs import tiny_study_config


def test_standardised_fit_moves_onto_raw_features():
  rng = np.random.default_rng(0)
  h = rng.normal(3.0, 2.0, (50, 4))
  fit = linear.LinearFit(w=rng.normal(size=(4, 3)), b=rng.normal(size=3), mean=h.mean(0),
                         std=h.std(0) + 1e-6, l2=0.1, val={})
  kernel, bias = fit.on_raw_features()
  np.testing.assert_allclose(h @ kernel + bias, ((h - fit.mean) / fit.std) @ fit.w + fit.b,
                             rtol=1e-10)


def test_fine_tuning_from_the_probe_starts_at_linear_evaluation(tmp_path):
  config = tiny_study_config()
  pretrain_dir = str(tmp_path / 'pretrain')
  loop.train_and_evaluate(config, pretrain_dir)
  with config.unlocked():
    config.init_from = pretrain_dir
    config.label_fraction = 0.5
    config.finetune_from = 'encoder'  # the classifier reads h, as linear evaluation does
    config.finetune.linear_init = True
    config.finetune.select_metric = config.linear.select_metric = 'balanced_accuracy'
    config.linear.l2_grid = '1e-3,1e-1'
  probe = linear.run_linear_eval(config, str(tmp_path / 'linear'))
  tuned = fine_tuning.run_finetune(config, str(tmp_path / 'finetune'))
  first = tuned['history'][0]
  assert first['step'] == 0
  assert first['val_balanced_accuracy'] == pytest.approx(probe['val_balanced_accuracy'],
                                                         abs=1e-9)
  # The kept model is never worse on validation than the probe it started from.
  assert tuned['val_balanced_accuracy'] >= probe['val_balanced_accuracy'] - 1e-9
  assert json.loads((tmp_path / 'finetune' / 'metrics.json').read_text())['best_step'] >= 0


def test_the_control_takes_its_own_learning_rate():
  config = tiny_study_config()
  with config.unlocked():
    config.finetune.optim.base_lr = 1e-4
    config.finetune.control_base_lr = 1e-3
  assert fine_tuning.optimizer_config(config).base_lr == 1e-4
  config.supervised_control = True
  assert fine_tuning.optimizer_config(config).base_lr == 1e-3
  assert config.finetune.optim.base_lr == 1e-4  # the config itself is left alone


def test_the_control_takes_its_own_epochs():
  config = tiny_study_config()
  with config.unlocked():
    config.finetune.num_epochs = 30
  assert fine_tuning.num_epochs(config) == 30
  config.supervised_control = True
  assert fine_tuning.num_epochs(config) == 30  # 0: the same as every fine-tuning
  config.finetune.control_num_epochs = 100
  assert fine_tuning.num_epochs(config) == 100
  config.supervised_control = False
  assert fine_tuning.num_epochs(config) == 30
