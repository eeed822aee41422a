"""Gradient caching gives the plain step's loss and gradient, on the 8-device mesh."""

import re

import jax
import numpy as np
import pytest

from simclr_jax.config.defaults import get_default_config
from simclr_jax.models import heads
from simclr_jax.runtime import parallel
from simclr_jax.training import grad_cache, optim, step as pretrain_step, state as train_state

_NUM_CLASSES = 3
_BATCH = 32  # 4 images per device on the 8-device mesh


def _config(chunk):
  c = get_default_config()
  c.model.name = 'resnet18'
  c.model.width = 0.0625
  c.model.head_dim = 16
  c.data.image_size = 16
  c.batch_size = _BATCH
  c.grad_cache_chunk = chunk
  c.optim.warmup_steps = 1
  return c


@pytest.fixture(scope='module')
def setup():
  config = _config(chunk=1)
  mesh = parallel.make_mesh()
  tx, schedule = optim.make_optimizer(config.optim, _BATCH, total_steps=10, steps_per_epoch=5)
  # rbg compiles the random init in a few seconds where threefry takes tens on CPU.
  with jax.default_prng_impl('rbg'):
    graphdef, state, sharding = train_state.create_train_state(
        lambda rngs: heads.build_simclr_model(config, _NUM_CLASSES, rngs), tx, mesh, seed=0)
  kv, kl = jax.random.split(jax.random.key(1))
  batch = jax.device_put({
      'views': jax.random.uniform(kv, (_BATCH, 2, 16, 16, 3)),
      'label': jax.random.randint(kl, (_BATCH,), -1, _NUM_CLASSES)},
      parallel.batch_sharding(mesh))
  return config, mesh, tx, schedule, graphdef, state, sharding, batch


def _gradients(grads_fn, state, batch):
  return jax.jit(grads_fn)(state.params, state.batch_stats, batch['views'], batch['label'])


def _assert_trees_close(actual, expected, rtol):
  flat_a = jax.tree_util.tree_leaves_with_path(actual)
  flat_e = jax.tree_util.tree_leaves(expected)
  assert len(flat_a) == len(flat_e)
  for (path, a), e in zip(flat_a, flat_e):
    a, e = np.asarray(a), np.asarray(e)
    # Relative to the leaf's scale: summation order differs between the two paths.
    scale = max(np.abs(e).max(), 1e-12)
    np.testing.assert_allclose(a / scale, e / scale, rtol=0, atol=rtol,
                               err_msg=jax.tree_util.keystr(path))


def _compare(cached, plain, rtol):
  (loss_c, stats_c, metrics_c, grads_c), (loss_p, stats_p, metrics_p, grads_p) = cached, plain
  np.testing.assert_allclose(loss_c, loss_p, rtol=1e-6)
  assert metrics_c.keys() == metrics_p.keys()
  for k in metrics_p:
    np.testing.assert_allclose(metrics_c[k], metrics_p[k], rtol=1e-6, err_msg=k)
  _assert_trees_close(grads_c, grads_p, rtol)
  _assert_trees_close(stats_c, stats_p, rtol)


def test_gradient_equals_plain_with_fixed_batch_norm(setup):
  """2 chunks of 2 images per device, batch norm on running averages: the same function."""
  _, mesh, _, _, graphdef, state, _, batch = setup
  config = _config(chunk=2)
  plain = _gradients(pretrain_step.plain_gradients(graphdef, mesh, config, train=False),
                     state, batch)
  cached = _gradients(grad_cache.cached_gradients(graphdef, mesh, config, train=False),
                      state, batch)
  _compare(cached, plain, rtol=1e-5)
  # The probe's gradient comes from the cached h (once: a double count would show above).
  assert np.abs(np.asarray(plain[3]['probe']['kernel'])).max() > 0


def test_one_chunk_per_device_is_the_plain_step(setup):
  """With a single chunk, per-chunk batch norm is the plain step's global batch norm."""
  _, mesh, _, _, graphdef, state, _, batch = setup
  config = _config(chunk=_BATCH // mesh.devices.size)
  plain = _gradients(pretrain_step.plain_gradients(graphdef, mesh, config), state, batch)
  cached = _gradients(grad_cache.cached_gradients(graphdef, mesh, config), state, batch)
  _compare(cached, plain, rtol=1e-5)


def test_per_chunk_batch_norm_step_moves_no_images(setup):
  """make_pretrain_step dispatches to grad caching; the step runs and reports finite values;
  the compiled step moves no images between devices: its only collectives are batch norm's
  all-reduces, the loss's all-gather of z and the gradient all-reduce."""
  _, mesh, tx, schedule, graphdef, state, sharding, batch = setup
  config = _config(chunk=2)
  fresh = jax.device_put(state, may_alias=False)  # a copy (no compiling): the step donates it
  step = pretrain_step.make_pretrain_step(graphdef, tx, schedule, mesh, sharding, config)
  compiled = step.lower(fresh, batch).compile()
  hlo = compiled.as_text()
  assert 'all-to-all' not in hlo and 'collective-permute' not in hlo
  gathered = re.findall(r'= (\w+\[[\d,]*\])[^ ]* all-gather', hlo)
  assert gathered and not [s for s in gathered if '16,16,3' in s], gathered

  new_state, metrics = compiled(fresh, batch)
  new_state, metrics = compiled(new_state, batch)
  assert int(new_state.step) == 2
  assert float(metrics['finite']) == 1.0
  for k in ('loss', 'contrastive_loss', 'probe_loss', 'grad_norm', 'contrastive_acc'):
    assert np.isfinite(float(metrics[k])), k
  moved = jax.tree_util.tree_map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                                 new_state.batch_stats, state.batch_stats)
  assert max(jax.tree_util.tree_leaves(moved)) > 0  # running averages updated


def test_chunk_must_divide_the_per_device_batch(setup):
  _, mesh, tx, schedule, graphdef, _, sharding, _ = setup
  config = _config(chunk=3)  # 4 images per device
  with pytest.raises(ValueError, match=r'config\.grad_cache_chunk=3'):
    pretrain_step.make_pretrain_step(graphdef, tx, schedule, mesh, sharding, config)
