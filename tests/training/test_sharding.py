"""The sharded loss and the sharded training step equal the single-device computation.

On 1, 2, 4 and 8 simulated devices: the loss under `jax.shard_map` (each device its rows
against the gathered columns) and the whole step (global batch norm over the sharded
batch, the probe) give the loss, gradients and batch-norm statistics that one device
gives on the same global batch. Deliberately wrong variants (per-device batch norm, anchor
ids not offset by the device index) are computed too, to show the tolerances catch them.
"""

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from simclr_jax.models import heads, resnet
from simclr_jax.runtime import parallel
from simclr_jax.training import losses, step as pretrain_step, state as train_state

DEVICE_COUNTS = (1, 2, 4, 8)
TEMPERATURE = 0.2


# ----------------------------------------------------------------------------------------
# (a) the sharded contrastive loss


def _uninterleave(z):
  return jnp.concatenate([z[0::2], z[1::2]])


TWO_N, DIM = 32, 8


@functools.lru_cache(maxsize=None)
def _compiled_loss_and_grad(n, name):
  """Compiled once per (devices, loss) and shared by the tests below (for z [32, 8])."""
  mesh = parallel.make_mesh(n)

  def f(z):
    return losses.sharded_contrastive_loss(z, mesh, parallel.DATA_AXIS, name=name,
                                           temperature=TEMPERATURE, margin=0.4)

  z = jax.ShapeDtypeStruct((TWO_N, DIM), jnp.float32, sharding=parallel.batch_sharding(mesh))
  return (mesh, jax.jit(f).lower(z).compile(),
          jax.jit(jax.grad(lambda z: f(z)[0])).lower(z).compile())


CASES = ([(n, 'nt_xent') for n in DEVICE_COUNTS]
         + [(n, name) for n in (2, 8) for name in ('nt_logistic', 'margin_triplet')])


@pytest.mark.parametrize('n,name', CASES)
def test_sharded_loss_and_gradient_equal_single_device(n, name):
  rng = np.random.default_rng(n)
  z_design = rng.normal(size=(TWO_N, DIM)).astype(np.float32)  # rows i, i+16 pair up
  z_inter = np.asarray(losses.interleave_pairs(jnp.asarray(z_design)))
  mesh, f, grad_f = _compiled_loss_and_grad(n, name)
  z_sharded = jax.device_put(z_inter, parallel.batch_sharding(mesh))

  loss, metrics = f(z_sharded)
  want, want_metrics = losses.contrastive_loss(jnp.asarray(z_design), name=name,
                                               temperature=TEMPERATURE, margin=0.4)
  np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
  for key in ('contrastive_acc', 'entropy'):
    np.testing.assert_allclose(float(metrics[key]), float(want_metrics[key]), rtol=1e-5)
  if name == 'nt_xent':
    np.testing.assert_allclose(float(loss), float(losses.nt_xent(jnp.asarray(z_design),
                                                                 TEMPERATURE)), rtol=1e-5)

  grad = grad_f(z_sharded)
  assert grad.sharding.is_equivalent_to(parallel.batch_sharding(mesh), 2)
  want_grad = jax.grad(lambda z: losses.contrastive_loss(
      z, name=name, temperature=TEMPERATURE, margin=0.4)[0])(jnp.asarray(z_design))
  scale = float(jnp.abs(want_grad).max())
  assert scale > 1e-3
  np.testing.assert_allclose(np.asarray(_uninterleave(grad)), np.asarray(want_grad),
                             rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize('n', (2, 4, 8))
def test_sharded_loss_never_holds_the_full_matrix(n):
  """Each device's similarity block is [2N/n, 2N]; no [2N, 2N] array exists anywhere.

  Reads XLA's compiled per-device HLO, in the forward and the backward pass."""
  _, f, grad_f = _compiled_loss_and_grad(n, 'nt_xent')
  for compiled in (f, grad_f):
    hlo = compiled.as_text()
    dots = re.findall(r'= f32\[(\d+),(\d+)\]\{[^}]*\} dot\(', hlo)
    assert (str(TWO_N // n), str(TWO_N)) in dots, dots
    assert f'f32[{TWO_N},{TWO_N}]' not in hlo
    assert 'all-gather' in hlo


# ----------------------------------------------------------------------------------------
# (b) the full training step's loss, gradients and batch-norm statistics

NUM_IMAGES = 16  # 2N = 32 views; 8 devices hold 2 images (4 views) each
IMAGE = 8
NUM_CLASSES = 3


def _build_model(rngs):
  encoder = resnet.ResNet('basic', (1, 1), width=0.125, small_stem=True, rngs=rngs)
  head = heads.ProjectionHead(encoder.num_features, num_layers=2, hidden=16, out=8, rngs=rngs)
  return heads.SimCLRModel(encoder, head, NUM_CLASSES, rngs=rngs)


def _numpy_init(model_fn, seed=0):
  """(graphdef, params, stats) with random values drawn by numpy.

  Random init inside XLA (threefry) takes many seconds to compile on a small CPU; the
  values only need to be generic: kernels He-scaled, BN scales near 1, biases and running
  statistics away from their trivial initial values."""
  graphdef, params, stats = train_state.split_model(nnx.eval_shape(lambda: model_fn(nnx.Rngs(0))))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['scale']"):
      return (1 + 0.2 * rng.standard_normal(leaf.shape)).astype(np.float32)
    if name.endswith("['var']"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    if leaf.ndim < 2:
      return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) * np.sqrt(2 / fan_in)).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(draw, params)
  stats = jax.tree_util.tree_map_with_path(draw, stats)
  return graphdef, params, stats


def _loss_config():
  c = ml_collections.ConfigDict()
  c.name = 'nt_xent'
  c.temperature = TEMPERATURE
  c.margin = 0.5
  c.normalize = True
  return c


def _probe_loss(logits, labels):
  """Mean softmax cross-entropy over the rows whose label is >= 0 (written independently)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  mask = labels >= 0
  nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=1)[:, 0]
  return jnp.sum(jnp.where(mask, nll, 0.0)) / jnp.sum(mask)


def _design_views(views):
  """[N, 2, ...] -> [2N, ...] with rows i and i+N the two views of image i."""
  return jnp.concatenate([views[:, 0], views[:, 1]])


class _Setup:
  pass


@pytest.fixture(scope='module')
def setup():
  s = _Setup()
  s.graphdef, s.params, s.stats = _numpy_init(_build_model)
  rng = np.random.default_rng(0)
  s.views = rng.uniform(size=(NUM_IMAGES, 2, IMAGE, IMAGE, 3)).astype(np.float32)
  s.labels = rng.integers(-1, NUM_CLASSES, size=(NUM_IMAGES,)).astype(np.int32)
  s.labels[:2] = (0, -1)  # at least one labelled and one unlabelled image

  def reference(params, stats, views, labels):
    model = nnx.merge(s.graphdef, params, stats)
    _, z, logits = model(_design_views(views), train=True)
    contrastive = losses.nt_xent(z, TEMPERATURE)
    probe = _probe_loss(logits, jnp.concatenate([labels, labels]))
    new_stats = nnx.as_pure(nnx.state(model, nnx.BatchStat))
    return contrastive + probe, (new_stats, contrastive, probe, z)

  (s.loss, (s.new_stats, s.contrastive, s.probe, s.z)), s.grads = jax.jit(
      jax.value_and_grad(reference, has_aux=True))(s.params, s.stats, s.views, s.labels)
  s.reference = reference
  return s


def _leaves(tree):
  return jax.tree_util.tree_leaves_with_path(tree)


def _assert_trees_close(got, want, rtol, what):
  got_leaves, want_leaves = _leaves(got), _leaves(want)
  assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves]
  for (path, g), (_, w) in zip(got_leaves, want_leaves):
    g, w = np.asarray(g), np.asarray(w)
    atol = rtol * max(np.abs(w).max(), 1e-6)
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol,
                               err_msg=f'{what} {jax.tree_util.keystr(path)}')


def _max_rel_diff(got, want):
  worst = 0.0
  for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
    worst = max(worst, np.abs(g - w).max() / max(np.abs(w).max(), 1e-6))
  return worst


LOSS_RTOL = 1e-5
GRAD_RTOL = 2e-4  # of each parameter's largest gradient entry
STATS_RTOL = 1e-5


@pytest.mark.parametrize('n', DEVICE_COUNTS)
def test_training_step_equals_single_device(setup, n):
  s = setup
  mesh = parallel.make_mesh(n)
  loss_fn = pretrain_step.simclr_loss_fn(s.graphdef, mesh, _loss_config(), jnp.float32)
  fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
  replicated, batch = parallel.replicated(mesh), parallel.batch_sharding(mesh)
  args = (jax.device_put(s.params, replicated), jax.device_put(s.stats, replicated),
          jax.device_put(s.views, batch), jax.device_put(s.labels, batch))
  compiled = fn.lower(*args).compile()
  (loss, (new_stats, metrics)), grads = compiled(*args)

  np.testing.assert_allclose(float(loss), float(s.loss), rtol=LOSS_RTOL)
  np.testing.assert_allclose(float(metrics['contrastive_loss']), float(s.contrastive),
                             rtol=LOSS_RTOL)
  np.testing.assert_allclose(float(metrics['probe_loss']), float(s.probe), rtol=LOSS_RTOL)
  _assert_trees_close(grads, s.grads, GRAD_RTOL, 'gradient')
  _assert_trees_close(new_stats, s.new_stats, STATS_RTOL, 'batch stats')
  # The running statistics really moved (so the comparison above means something).
  assert _max_rel_diff(new_stats, s.stats) > 1e-2
  # The probe is trained (its gradient is part of the comparison, and non-zero).
  assert float(jnp.abs(grads['probe']['kernel']).max()) > 0

  if n > 1:  # no device holds the [2N, 2N] similarity matrix (nor its gradient)
    assert f'f32[{2 * NUM_IMAGES},{2 * NUM_IMAGES}]' not in compiled.as_text()
  if n in (2, 8):
    _assert_wrong_variants_differ(s, n, float(loss))


def _assert_wrong_variants_differ(s, n, loss):
  """Bugs the tolerances above must catch, on the same batch."""
  tol = LOSS_RTOL * abs(loss)
  per_device = s.views.reshape(n, NUM_IMAGES // n, *s.views.shape[1:])

  # Per-device batch norm: each device normalises its own images only.
  def local_forward(params, stats, chunk):
    model = nnx.merge(s.graphdef, params, stats)
    _, z, _ = model(chunk.reshape((-1,) + chunk.shape[2:]), train=True)  # interleaved
    return z, nnx.as_pure(nnx.state(model, nnx.BatchStat))

  z_chunks, stats_chunks = jax.jit(jax.vmap(local_forward, in_axes=(None, None, 0)))(
      s.params, s.stats, per_device)
  z_local_bn = _uninterleave(z_chunks.reshape(2 * NUM_IMAGES, -1))
  wrong = float(losses.nt_xent(z_local_bn, TEMPERATURE) + s.probe)
  assert abs(wrong - loss) > 100 * tol, (wrong, loss)
  averaged = jax.tree_util.tree_map(lambda x: x.mean(axis=0), stats_chunks)
  assert _max_rel_diff(averaged, s.new_stats) > 100 * STATS_RTOL

  # Anchor ids not offset by the device index: device d takes rows 0..m-1 as its own.
  z_inter = losses.interleave_pairs(s.z)
  m = z_inter.shape[0] // n
  rows = [losses.contrastive_rows(z_inter[d * m:(d + 1) * m], z_inter, jnp.arange(m),
                                  jnp.arange(m) ^ 1, temperature=TEMPERATURE).loss
          for d in range(n)]
  wrong = float(jnp.mean(jnp.concatenate(rows)) + s.probe)
  assert abs(wrong - loss) > 100 * tol, (wrong, loss)

  # Pairs taken as rows i and i+N of the interleaved batch (the layouts mixed up).
  wrong = float(losses.nt_xent(z_inter, TEMPERATURE) + s.probe)
  assert abs(wrong - loss) > 100 * tol, (wrong, loss)
