"""Small configs that tests in several folders share: the demo config at test size
(load_config), the tiny study, a device-augmentation pretraining, and a compilation cache
shared between test runs."""

import importlib.util
import os
import pathlib
import tempfile

import jax

from simclr_jax.config.defaults import get_default_config

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_OVERRIDES = {
    'model.width': 0.0625, 'model.head_dim': 16, 'data.image_size': 16,
    'data.synthetic_size': 20, 'data.num_synthetic': 150, 'batch_size': 16,
    'num_steps': 6, 'log_every_steps': 1, 'checkpoint_every_steps': 2, 'eval_batch_size': 64,
  'eval_at_end': False,
  # Its extra forward pass is one more compilation per run; the tests that check it ask
  # for it.
  'health_monitor': False,
}


def load_config(name='demo', **overrides):
  spec = importlib.util.spec_from_file_location(name, REPO / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for key, value in {**TINY_OVERRIDES, **overrides}.items():
    node = config
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def tiny_study_config():
  c = get_default_config()
  c.data.num_synthetic = 160
  c.data.synthetic_size = 20
  c.data.image_size = 16
  c.data.shuffle_buffer = 200
  c.model.width = 0.0625
  c.model.head_dim = 16
  c.batch_size = 16
  c.num_steps = 2
  c.optim.warmup_steps = 1
  c.log_every_steps = 1
  c.eval_batch_size = 64
  # Its probe and kNN are more compilations per pretraining; tests/training/test_pretrain.py
  # checks them, and the study's evaluations measure the encoder.
  c.eval_at_end = False
  c.health_monitor = False  # one more compilation; tests/training/test_health.py checks it
  c.finetune.batch_size = 16
  c.finetune.num_steps = 2
  c.linear.l2_grid = '1e-3'
  c.linear.max_iter = 50
  c.positive_classes = 'koilocytotic,dyskeratotic'
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.2,0.5'
  c.study.seeds = 1
  return c


def share_compilations_between_test_runs():
  """Most of this test is XLA compiling a tiny ResNet; a persistent cache outside the
  test's tmp dir makes every run after the first several times faster."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir',
                      os.path.join(tempfile.gettempdir(), 'simclr_jax_test_jax_cache'))


def device_augment_config(**augment):
  c = get_default_config()
  c.data.num_synthetic = 60
  c.data.synthetic_size = 20
  c.data.image_size = 16
  c.batch_size = 16
  c.augment.backend = 'device'
  c.augment.preset = 'cytology'
  c.augment.update(augment)
  return c
