"""LARS on the real SimCLR parameter tree, learning-rate scaling and the schedule."""

import jax
import numpy as np
import pytest
from flax import nnx

from simclr_jax.config.defaults import get_default_config
from simclr_jax.models import heads
from simclr_jax.training import optim, state as train_state

LR0 = 0.5  # peak learning rate: the first update's, with no warm-up
WD, MOMENTUM, TRUST = 0.1, 0.9, 0.001


def _tiny_config():
  c = get_default_config()
  c.model.name = 'resnet18'
  c.model.width = 0.0625
  c.model.head_dim = 8
  c.data.image_size = 16
  c.optim.name = 'lars'
  c.optim.base_lr = LR0
  c.optim.lr_scaling = 'none'
  c.optim.weight_decay = WD
  c.optim.momentum = MOMENTUM
  c.optim.trust_coefficient = TRUST
  c.optim.warmup_epochs = 0.0
  c.optim.warmup_steps = 0
  return c


@pytest.fixture(scope='module')
def real_params():
  """The parameter tree of heads.build_simclr_model (with the probe), numpy-valued."""
  config = _tiny_config()
  abstract = nnx.eval_shape(lambda: heads.build_simclr_model(config, 5, nnx.Rngs(0)))
  _, params, _ = train_state.split_model(abstract)
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map(
      lambda p: (rng.standard_normal(p.shape) * (1.0 if p.ndim < 2 else 0.1)).astype(np.float32),
      params)
  return config, params


def _named_leaves(tree):
  return {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_the_tree_has_every_kind_of_parameter(real_params):
  _, params = real_params
  names = _named_leaves(params)
  one_d = [k for k, v in names.items() if v.ndim == 1]
  assert any("['bn']['scale']" in k for k in one_d)
  assert any("['bn']['bias']" in k for k in one_d)
  assert "['head']['out']['bias']" in one_d  # Dense biases
  assert "['probe']['bias']" in one_d
  assert "['encoder']['stem']['conv']['kernel']" in names
  assert "['head']['hidden'][0]['dense']['kernel']" in names
  # Every 1-D parameter is a BN scale/bias or a bias; every bias/scale is 1-D.
  for k, v in names.items():
    is_norm_or_bias = k.endswith("['scale']") or k.endswith("['bias']")
    assert is_norm_or_bias == (v.ndim == 1), k
  mask = _named_leaves(optim.decay_and_adapt_mask(params))
  assert all(mask[k] == (names[k].ndim > 1) for k in names)


def _expected_lars(w, g1, g2, lr1, decay_and_adapt):
  """Two LARS updates (optax's order: decay, trust ratio, lr, momentum), float64."""
  w, g1, g2 = (np.asarray(a, np.float64) for a in (w, g1, g2))

  def direction(w, g):
    if not decay_and_adapt:
      return g  # plain momentum SGD: no weight decay, no trust ratio
    d = g + WD * w
    return TRUST * np.linalg.norm(w) / np.linalg.norm(d) * d

  u1 = -LR0 * direction(w, g1)
  w1 = w + u1
  u2 = MOMENTUM * u1 - lr1 * direction(w1, g2)
  return u1, u2


def test_lars_skips_bn_and_biases_on_the_real_tree(real_params):
  config, params = real_params
  tx, schedule = optim.make_optimizer(config.optim, batch_size=256, total_steps=3,
                                      steps_per_epoch=10)
  # No warm-up: the schedule starts at the peak and decays by a cosine to 0 at step 3.
  np.testing.assert_allclose(float(schedule(0)), LR0, rtol=1e-6)
  lr1 = LR0 * 0.5 * (1 + np.cos(np.pi / 3))
  np.testing.assert_allclose(float(schedule(1)), lr1, rtol=1e-6)

  rng = np.random.default_rng(1)
  g1 = jax.tree_util.tree_map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
  g2 = jax.tree_util.tree_map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
  update = jax.jit(tx.update)
  state = tx.init(params)
  u1, state = update(g1, state, params)
  p1 = jax.tree_util.tree_map(lambda p, u: p + u, params, u1)
  u2, _ = update(g2, state, p1)

  names, n1, n2 = _named_leaves(params), _named_leaves(u1), _named_leaves(u2)
  gg1, gg2 = _named_leaves(g1), _named_leaves(g2)
  for k, w in names.items():
    want1, want2 = _expected_lars(w, gg1[k], gg2[k], lr1, decay_and_adapt=w.ndim > 1)
    np.testing.assert_allclose(n1[k], want1, rtol=2e-5, atol=1e-8, err_msg=k)
    np.testing.assert_allclose(n2[k], want2, rtol=2e-5, atol=1e-8, err_msg=k)
    if w.ndim > 1:  # the LARS step really differs from plain SGD on kernels
      sgd1, _ = _expected_lars(w, gg1[k], gg2[k], lr1, decay_and_adapt=False)
      assert np.abs(np.asarray(n1[k]) - sgd1).max() > 0.1 * np.abs(sgd1).max(), k


def test_sgd_decays_kernels_only(real_params):
  config, params = real_params
  c = config.optim.copy_and_resolve_references()
  c.name = 'sgd'
  tx, _ = optim.make_optimizer(c, batch_size=256, total_steps=10, steps_per_epoch=10)
  zeros = jax.tree_util.tree_map(np.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  for k, u in _named_leaves(updates).items():
    w = _named_leaves(params)[k]
    want = -LR0 * WD * w if w.ndim > 1 else np.zeros_like(w)
    np.testing.assert_allclose(u, want, rtol=1e-5, atol=1e-8, err_msg=k)


def test_unknown_optimizer_raises(real_params):
  config, _ = real_params
  c = config.optim.copy_and_resolve_references()
  c.name = 'adam'
  with pytest.raises(ValueError, match='lars'):
    optim.make_optimizer(c, batch_size=256, total_steps=10, steps_per_epoch=10)


def test_learning_rate_scaling():
  # The paper: 0.3 x BatchSize/256 (linear) or 0.075 x sqrt(BatchSize): both 4.8 at 4096.
  assert optim.scaled_learning_rate(0.3, 4096, 'linear') == pytest.approx(4.8)
  assert optim.scaled_learning_rate(0.075, 4096, 'sqrt') == pytest.approx(4.8)
  assert optim.scaled_learning_rate(0.3, 256, 'linear') == pytest.approx(0.3)
  assert optim.scaled_learning_rate(0.1, 100, 'sqrt') == pytest.approx(1.0)
  assert optim.scaled_learning_rate(0.7, 4096, 'none') == pytest.approx(0.7)
  with pytest.raises(ValueError):
    optim.scaled_learning_rate(0.3, 256, 'quadratic')


def test_warmup_cosine_shape():
  peak, warmup, total = 2.0, 10, 100
  sched = optim.warmup_cosine(peak, warmup, total)
  values = np.array([float(sched(i)) for i in range(total + 1)])
  assert values[0] == 0.0
  np.testing.assert_allclose(values[5], peak / 2, rtol=1e-6)  # linear warm-up
  np.testing.assert_allclose(values[warmup], peak, rtol=1e-6)
  assert values.max() == pytest.approx(peak)
  assert np.all(np.diff(values[:warmup + 1]) > 0)
  assert np.all(np.diff(values[warmup:]) <= 1e-7)
  np.testing.assert_allclose(values[(warmup + total) // 2], peak / 2, rtol=1e-5)  # cosine
  assert values[-1] == pytest.approx(0.0, abs=1e-6)
  assert values[-2] < 1e-2 * peak


def test_warmup_steps_from_config():
  c = get_default_config().optim
  c.warmup_epochs, c.warmup_steps = 2.5, 0
  assert optim.warmup_steps(c, steps_per_epoch=40) == 100
  c.warmup_steps = 7
  assert optim.warmup_steps(c, steps_per_epoch=40) == 7


def test_make_optimizer_scales_and_warms_up():
  c = get_default_config().optim
  c.base_lr, c.lr_scaling, c.warmup_epochs, c.warmup_steps = 0.3, 'linear', 1.0, 0
  _, schedule = optim.make_optimizer(c, batch_size=1024, total_steps=50, steps_per_epoch=10)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), 1.2, rtol=1e-6)
  assert float(schedule(50)) == pytest.approx(0.0, abs=1e-6)
