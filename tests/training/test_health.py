"""The representation-health monitor: its figures against numpy, and its collapse warning on
a deliberately collapsed model (constant encoder output) but not on a healthy one."""

import logging

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx

from simclr_jax.models import heads
from simclr_jax.runtime import parallel
from simclr_jax.training import health
from simclr_jax.training.state import TrainState, split_model


def _reference(h, z):
  """The module docstring's definitions, straight from numpy (an SVD, all pairs)."""

  def spread(x):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u.std(axis=0).mean() * np.sqrt(x.shape[1])

  def rank(x):
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return np.exp(-(p * np.log(p)).sum())

  u = z / np.linalg.norm(z, axis=1, keepdims=True)
  cos = u @ u.T
  m = len(u)
  pair = np.arange(m) ^ 1
  negative = ~np.eye(m, dtype=bool)
  negative[np.arange(m), pair] = False
  sq = np.maximum(2 - 2 * cos, 0)
  return {'h_std': spread(h), 'z_std': spread(z), 'h_rank': rank(h), 'z_rank': rank(z),
          'alignment': np.mean(sq[np.arange(m), pair]),
          'uniformity': np.log(np.exp(-2 * sq)[~np.eye(m, dtype=bool)].mean()),
          'pos_cos': np.mean(cos[np.arange(m), pair]), 'neg_cos': cos[negative].mean()}


def test_figures_match_numpy_and_a_spread_batch_is_healthy():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(32, 1, 24))
  z = (images + 0.3 * rng.normal(size=(32, 2, 24))).reshape(64, 24)  # rows 2i, 2i+1 pair
  h = np.abs(rng.normal(size=(64, 80)))  # non-negative, as after a ReLU; wider than the batch
  ours = jax.device_get(jax.jit(health.representation_health)(h.astype(np.float32),
                                                              z.astype(np.float32)))
  reference = _reference(h, z)
  for name, value in reference.items():
    np.testing.assert_allclose(ours[name], value, rtol=2e-4, atol=1e-5, err_msg=name)
  assert health.collapse_signals({k: float(v) for k, v in ours.items()}) == []


def _tiny_config():
  config = ml_collections.ConfigDict({
      'compute_dtype': 'float32', 'probe': False, 'grad_cache_chunk': 0,
      'health_monitor': True, 'data': {'image_size': 16},
      'model': {'name': 'resnet18', 'width': 0.0625, 'small_stem': 'auto',
                'zero_init_residual': False, 'stride_on': 'v1.5', 'input_norm': 'none',
                'head_layers': 2, 'head_dim': 16, 'head_hidden': 0, 'bn_momentum': 0.9,
                'bn_epsilon': 1e-5}})
  return config


def _state(model):
  graphdef, params, stats = split_model(model)
  return graphdef, TrainState(step=0, params=params, batch_stats=stats, opt_state=None)


@pytest.fixture(scope='module')
def views():
  """16 images [16, 2, 16, 16, 3], two noisy views each, made global over the 8 devices."""
  rng = np.random.default_rng(1)
  images = rng.uniform(0, 1, (16, 1, 16, 16, 3))
  views = np.clip(images + 0.1 * rng.normal(size=(16, 2, 16, 16, 3)), 0, 1).astype(np.float32)
  return parallel.to_global_batch({'views': views}, parallel.make_mesh())


def test_collapsed_model_warns_and_healthy_one_does_not(views, caplog):
  config = _tiny_config()
  healthy = heads.build_simclr_model(config, 0, nnx.Rngs(0))
  collapsed = heads.build_simclr_model(config, 0, nnx.Rngs(0))
  # A zero stem conv then a BN offset of 1: every image becomes the same constant map, so
  # h is the same for every view whatever the input, up to rounding. The head's batch norm
  # centres that h, leaving z as rounding noise near 0 whose direction depends on the
  # processor's vector width; an output bias of 1 makes z the same point everywhere.
  collapsed.encoder.stem.conv.kernel[...] = np.zeros(collapsed.encoder.stem.conv.kernel.shape)
  collapsed.encoder.stem.bn.bias[...] = np.ones(collapsed.encoder.stem.bn.bias.shape)
  collapsed.head.out.bias[...] = np.ones(collapsed.head.out.bias.shape)
  graphdef, healthy_state = _state(healthy)
  _, collapsed_state = _state(collapsed)
  monitor = health.HealthMonitor(graphdef, parallel.make_mesh(), config)
  with caplog.at_level(logging.WARNING):
    good = monitor(healthy_state, views, step=10)
    assert not caplog.records
    bad = monitor(collapsed_state, views, step=20)
  print('healthy', {k: round(v, 3) for k, v in good.items()})
  print('collapsed', {k: round(v, 3) for k, v in bad.items()})
  assert 'step 20: the representation may be collapsing' in caplog.text
  for name in ('z_std', 'h_std', 'z_rank', 'neg_cos', 'uniformity'):
    assert name in caplog.text
  assert bad['health/z_std'] < 1e-3 and bad['health/z_rank'] < 1.01
  assert bad['health/pos_cos'] > 0.999 and bad['health/uniformity'] > -1e-3
  summary = monitor.summary()
  assert summary['health_warnings'] == [20] and summary['health_first']['step'] == 10


def test_turned_off_measures_nothing(views):
  config = _tiny_config()
  config.health_monitor = False
  graphdef, state = _state(heads.build_simclr_model(config, 0, nnx.Rngs(0)))
  monitor = health.HealthMonitor(graphdef, parallel.make_mesh(), config)
  assert monitor(state, views, step=1) == {} and monitor.summary() == {}


def test_gradient_caching_measures_chunk_by_chunk(views):
  """With grad_cache_chunk the forward runs per chunk (1 image per device here), as the
  step's does; a healthy model stays healthy."""
  config = _tiny_config()
  config.grad_cache_chunk = 1
  graphdef, state = _state(heads.build_simclr_model(config, 0, nnx.Rngs(0)))
  values = health.HealthMonitor(graphdef, parallel.make_mesh(), config)(state, views, step=1)
  assert all(np.isfinite(v) for v in values.values())
  assert health.collapse_signals({k.split('/')[1]: v for k, v in values.items()}) == []
