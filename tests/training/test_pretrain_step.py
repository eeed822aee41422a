"""The jitted pretraining step on an 8-device mesh: bfloat16 stays finite at a low
temperature, float32 learns a fixed batch, and a non-finite step leaves the state as it was."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from simclr_jax.config.defaults import get_default_config
from simclr_jax.models import heads, resnet
from simclr_jax.runtime import parallel
from simclr_jax.training import optim, step as pretrain_step, state as train_state

NUM_IMAGES, IMAGE, NUM_CLASSES = 16, 8, 3


def _config(compute_dtype, temperature, base_lr):
  c = get_default_config()
  c.compute_dtype = compute_dtype
  c.batch_size = NUM_IMAGES
  c.loss.temperature = temperature
  c.optim.base_lr = base_lr
  c.optim.lr_scaling = 'none'
  c.optim.warmup_steps = 2
  return c


def _build_model(rngs, dtype):
  encoder = resnet.ResNet('basic', (1, 1), width=0.125, small_stem=True, dtype=dtype, rngs=rngs)
  head = heads.ProjectionHead(encoder.num_features, num_layers=2, hidden=16, out=8,
                              dtype=dtype, rngs=rngs)
  return heads.SimCLRModel(encoder, head, NUM_CLASSES, rngs=rngs)


def _make(config, total_steps, mesh):
  """(step, state): the real make_pretrain_step; numpy-valued parameters (random init inside
  XLA takes many seconds to compile on a small CPU)."""
  dtype = heads.compute_dtype(config)
  abstract = nnx.eval_shape(lambda: _build_model(nnx.Rngs(0), dtype))
  graphdef, params, stats = train_state.split_model(abstract)
  rng = np.random.default_rng(0)

  def draw(path, p):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']") or name.endswith("['var']"):
      return np.ones(p.shape, np.float32)
    if p.ndim < 2:
      return np.zeros(p.shape, np.float32)
    return (rng.standard_normal(p.shape) * np.sqrt(2 / np.prod(p.shape[:-1]))).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, params)
  stats = jax.tree_util.tree_map_with_path(draw, stats)
  tx, schedule = optim.make_optimizer(config.optim, config.batch_size, total_steps,
                                      steps_per_epoch=10)
  replicated = parallel.replicated(mesh)
  state = train_state.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                 batch_stats=stats, opt_state=tx.init(params))
  state = jax.device_put(state, replicated)
  state_sharding = jax.tree_util.tree_map(lambda _: replicated, state)
  step = pretrain_step.make_pretrain_step(graphdef, tx, schedule, mesh, state_sharding, config)
  return step, state


def _batch(seed, mesh):
  rng = np.random.default_rng(seed)
  views = rng.uniform(size=(NUM_IMAGES, 2, IMAGE, IMAGE, 3)).astype(np.float32)
  labels = rng.integers(-1, NUM_CLASSES, size=(NUM_IMAGES,)).astype(np.int32)
  return views, labels


def _put(views, labels, mesh):
  sharding = parallel.batch_sharding(mesh)
  return {'views': jax.device_put(views, sharding), 'label': jax.device_put(labels, sharding)}


def _all_finite(tree):
  return all(bool(np.all(np.isfinite(np.asarray(x, np.float32))))
             for x in jax.tree_util.tree_leaves(tree))


def _assert_replicated(state, mesh):
  for leaf in jax.tree_util.tree_leaves(state):
    assert leaf.sharding.is_fully_replicated
    assert len(leaf.sharding.device_set) == mesh.devices.size


@pytest.fixture(scope='module')
def mesh():
  assert jax.device_count() == 8
  return parallel.make_mesh(8)


def test_bfloat16_low_temperature_stays_finite(mesh):
  config = _config('bfloat16', temperature=0.05, base_lr=2.0)
  steps = 20
  step, state = _make(config, steps, mesh)
  first_params = jax.device_get(state.params)
  for i in range(steps):
    state, metrics = step(state, _put(*_batch(100 + i, mesh), mesh))
    metrics = jax.device_get(metrics)
    assert float(metrics['finite']) == 1.0, (i, metrics)
    assert _all_finite(metrics), (i, metrics)
    assert metrics['loss'].dtype == np.float32
  assert int(state.step) == steps
  assert _all_finite(state)
  _assert_replicated(state, mesh)
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(state.params))
  moved = [np.abs(a - b).max() for a, b in zip(jax.tree_util.tree_leaves(first_params),
                                               jax.tree_util.tree_leaves(state.params))]
  assert min(moved) > 0  # every parameter was trained


@pytest.fixture(scope='module')
def float32_run(mesh):
  config = _config('float32', temperature=0.2, base_lr=2.0)
  step, state = _make(config, 40, mesh)
  return {'step': step, 'state': state}  # tests store the state back: each step donates it


def test_float32_learns_a_fixed_batch_and_keeps_state_replicated(float32_run, mesh):
  step, state = float32_run['step'], float32_run['state']
  batch = _put(*_batch(0, mesh), mesh)
  history = []
  for _ in range(8):
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  losses = [float(m['contrastive_loss']) for m in history]
  assert all(float(m['finite']) == 1.0 for m in history)
  assert losses[-1] < losses[0] - 0.05, losses
  assert float(history[-1]['probe_loss']) < float(history[0]['probe_loss'])
  np.testing.assert_allclose(float(history[0]['lr']), 0.0)  # warm-up starts at 0
  assert float(history[2]['lr']) == pytest.approx(2.0)  # the peak, after 2 warm-up steps
  _assert_replicated(state, mesh)
  float32_run['state'] = state


def test_non_finite_step_leaves_state_unchanged(float32_run, mesh):
  step, state = float32_run['step'], float32_run['state']
  views, labels = _batch(1, mesh)
  before = jax.device_get(state)  # the step donates its input state
  bad = views.copy()
  bad[3, 1, 2, 2, 0] = np.nan
  state, metrics = step(state, _put(bad, labels, mesh))
  float32_run['state'] = state
  assert float(metrics['finite']) == 0.0
  assert not np.isfinite(float(metrics['loss']))
  after = jax.device_get(state)
  for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
    np.testing.assert_array_equal(a, b)  # params, BN statistics, optimizer state and step
  _assert_replicated(state, mesh)

  state, metrics = step(state, _put(views, labels, mesh))  # training goes on
  assert float(metrics['finite']) == 1.0
  assert int(state.step) == int(before.step) + 1
  assert any(np.abs(a - b).max() > 0 for a, b in zip(
      jax.tree_util.tree_leaves(before.params), jax.tree_util.tree_leaves(jax.device_get(state.params))))
