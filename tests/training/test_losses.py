"""The contrastive losses against float64 numpy references written from the paper and from
the docstrings in losses.py, and against optax's NT-Xent."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from simclr_jax.training import losses

TEMPERATURES = (0.05, 0.1, 0.5, 1.0)


# ----------------------------------------------------------------------------------------
# float64 references (DESIGN layout: rows i and i+N are the two views of image i)


def _cosine(z):
  z = np.asarray(z, np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  return z @ z.T


def _positives(two_n):
  return (np.arange(two_n) + two_n // 2) % two_n


def _logsumexp(x, axis=-1):
  m = np.max(x, axis=axis, keepdims=True)
  return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def ref_nt_xent_rows(z, temperature):
  sim = _cosine(z) / temperature
  two_n = sim.shape[0]
  pos = _positives(two_n)
  out = np.empty(two_n)
  for i in range(two_n):
    others = np.delete(sim[i], i)  # the 2N-1 others, self excluded
    out[i] = -sim[i, pos[i]] + _logsumexp(others)
  return out


def ref_nt_xent(z, temperature):
  return ref_nt_xent_rows(z, temperature).mean()


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -x)


def ref_nt_logistic(z, temperature):
  """-log σ(u·v+/τ) - mean over the 2N-2 negatives of log σ(-u·v-/τ), mean over anchors."""
  sim = _cosine(z) / temperature
  two_n = sim.shape[0]
  pos = _positives(two_n)
  out = []
  for i in range(two_n):
    negs = [sim[i, j] for j in range(two_n) if j not in (i, pos[i])]
    out.append(-_log_sigmoid(sim[i, pos[i]]) - np.mean(_log_sigmoid(-np.array(negs))))
  return np.mean(out)


def ref_margin_triplet(z, margin):
  """Mean over the 2N-2 negatives of max(u·v- - u·v+ + m, 0) on cosines, mean over anchors."""
  cos = _cosine(z)
  two_n = cos.shape[0]
  pos = _positives(two_n)
  out = []
  for i in range(two_n):
    negs = np.array([cos[i, j] for j in range(two_n) if j not in (i, pos[i])])
    out.append(np.mean(np.maximum(negs - cos[i, pos[i]] + margin, 0.0)))
  return np.mean(out)


def ref_acc_entropy(z, temperature):
  sim = _cosine(z) / temperature
  two_n = sim.shape[0]
  pos = _positives(two_n)
  acc, ent = [], []
  for i in range(two_n):
    others = np.delete(np.arange(two_n), i)
    logits = sim[i, others]
    acc.append(float(others[np.argmax(logits)] == pos[i]))
    p = np.exp(logits - _logsumexp(logits))
    ent.append(-np.sum(p * np.log(p)))
  return np.mean(acc), np.mean(ent)


def _random_z(seed, two_n=16, d=8, scale=1.0):
  return np.random.default_rng(seed).normal(size=(two_n, d)).astype(np.float32) * scale


def _simclr_labels(two_n):
  n = two_n // 2
  return jnp.concatenate([jnp.arange(n), jnp.arange(n)])


# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize('temperature', TEMPERATURES)
@pytest.mark.parametrize('seed,two_n,d', [(0, 16, 8), (1, 6, 3), (2, 32, 16)])
def test_nt_xent_matches_numpy_and_optax(temperature, seed, two_n, d):
  z = _random_z(seed, two_n, d, scale=3.0)
  got = float(losses.nt_xent(jnp.asarray(z), temperature))
  want = ref_nt_xent(z, temperature)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  via_optax = float(optax.losses.ntxent(jnp.asarray(z), _simclr_labels(two_n), temperature))
  np.testing.assert_allclose(got, via_optax, rtol=1e-5)


def test_nt_xent_pairs_rows_i_and_i_plus_n():
  """Aligned pairs (row i+N = row i) give a low loss; pairing i with i+1 would not."""
  rng = np.random.default_rng(3)
  half = rng.normal(size=(8, 32)).astype(np.float32)
  z = np.concatenate([half, half])
  loss = float(losses.nt_xent(jnp.asarray(z), 0.1))
  np.testing.assert_allclose(loss, ref_nt_xent(z, 0.1), rtol=1e-5, atol=1e-6)
  shuffled = np.concatenate([half, np.roll(half, 1, axis=0)])
  assert loss < 0.5 * float(losses.nt_xent(jnp.asarray(shuffled), 0.1))


def test_nt_xent_rejects_bad_shapes():
  with pytest.raises(ValueError):
    losses.nt_xent(jnp.zeros((5, 4)), 0.5)
  with pytest.raises(ValueError):
    losses.nt_xent(jnp.zeros((8,)), 0.5)


@pytest.mark.parametrize('temperature', TEMPERATURES)
def test_nt_logistic_matches_numpy(temperature):
  z = _random_z(4, 12, 6, scale=2.0)
  loss, _ = losses.contrastive_loss(jnp.asarray(z), name='nt_logistic', temperature=temperature)
  np.testing.assert_allclose(float(loss), ref_nt_logistic(z, temperature), rtol=1e-5)


@pytest.mark.parametrize('margin', (0.0, 0.5, 1.0))
def test_margin_triplet_matches_numpy(margin):
  z = _random_z(5, 12, 6)
  loss, _ = losses.contrastive_loss(jnp.asarray(z), name='margin_triplet', margin=margin,
                                    temperature=0.3)
  np.testing.assert_allclose(float(loss), ref_margin_triplet(z, margin), rtol=1e-5, atol=1e-7)
  if margin > 0:
    assert float(loss) > 0


def test_unknown_loss_name_raises():
  with pytest.raises(ValueError, match='nt_xent'):
    losses.contrastive_loss(jnp.ones((4, 2)), name='infonce')


@pytest.mark.parametrize('temperature', (0.1, 0.5))
def test_accuracy_and_entropy_match_numpy(temperature):
  # Half the pairs close together, so accuracy is strictly between 0 and 1.
  rng = np.random.default_rng(6)
  half = rng.normal(size=(8, 4))
  other = half + rng.normal(size=(8, 4)) * np.array([0.05] * 4 + [3.0] * 4)[:, None]
  z = np.concatenate([half, other]).astype(np.float32)
  loss, metrics = losses.contrastive_loss(jnp.asarray(z), temperature=temperature)
  acc, ent = ref_acc_entropy(z, temperature)
  assert 0 < acc < 1
  np.testing.assert_allclose(float(metrics['contrastive_acc']), acc, rtol=1e-6)
  np.testing.assert_allclose(float(metrics['entropy']), ent, rtol=1e-5)
  np.testing.assert_allclose(float(loss), ref_nt_xent(z, temperature), rtol=1e-5)
  # The entropy is over the 2N-1 others: at most log(2N-1), uniform for identical rows.
  _, uniform = losses.contrastive_loss(jnp.ones((16, 4)), temperature=temperature)
  np.testing.assert_allclose(float(uniform['entropy']), np.log(15), rtol=1e-5)


@pytest.mark.parametrize('temperature', (0.05, 0.5))
def test_bfloat16_input_computes_in_float32(temperature):
  z32 = _random_z(7, 32, 16, scale=2.0)
  z16 = jnp.asarray(z32).astype(jnp.bfloat16)
  rounded = np.asarray(z16.astype(jnp.float32))
  got = losses.nt_xent(z16, temperature)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), float(losses.nt_xent(jnp.asarray(rounded), temperature)),
                             rtol=1e-6)
  # A bf16 computation would be off by ~1e-2 relative; float32 matches float64 to 1e-5.
  np.testing.assert_allclose(float(got), ref_nt_xent(rounded, temperature), rtol=1e-5)
  for name in ('nt_logistic', 'margin_triplet'):
    l16, m16 = losses.contrastive_loss(z16, name=name, temperature=temperature)
    l32, m32 = losses.contrastive_loss(jnp.asarray(rounded), name=name, temperature=temperature)
    assert l16.dtype == jnp.float32
    np.testing.assert_allclose(float(l16), float(l32), rtol=1e-6)
    np.testing.assert_allclose(float(m16['entropy']), float(m32['entropy']), rtol=1e-6)


@pytest.mark.parametrize('temperature', (0.1, 0.5))
def test_nt_xent_gradient_matches_finite_differences(temperature):
  z = _random_z(8, 6, 3).astype(np.float64)
  grad = np.asarray(jax.grad(losses.nt_xent)(jnp.asarray(z, jnp.float32), temperature))
  eps = 1e-6
  fd = np.zeros_like(z)
  for idx in np.ndindex(*z.shape):
    plus, minus = z.copy(), z.copy()
    plus[idx] += eps
    minus[idx] -= eps
    fd[idx] = (ref_nt_xent(plus, temperature) - ref_nt_xent(minus, temperature)) / (2 * eps)
  assert np.abs(fd).max() > 1e-2  # a real, non-trivial gradient
  np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-5 * np.abs(fd).max() / temperature)


def test_interleave_pairs():
  z = jnp.arange(12.0).reshape(6, 2)  # rows 0,1,2 | 3,4,5 are pairs (i, i+3)
  inter = np.asarray(losses.interleave_pairs(z))
  np.testing.assert_array_equal(inter[0::2], np.asarray(z[:3]))
  np.testing.assert_array_equal(inter[1::2], np.asarray(z[3:]))
