"""Label-free health of the representation, measured at log steps on the current batch.

One extra forward pass (batch-norm on batch statistics, as the step sees them; nothing is
updated) embeds the batch's 2N views, then, written to TensorBoard as `health/NAME`:

- `h_std`, `z_std`: the per-dimension standard deviation over the batch of the
  L2-normalised h or z, averaged over dimensions and multiplied by √dim, so that a spread
  of points on the sphere reads about 1 and a collapse to one point reads 0 (SimSiam's
  monitor; ReLU features h are non-negative, so h reads lower when healthy).
- `h_rank`, `z_rank`: the effective rank, exp of the entropy of the normalised singular
  values of the [2N, dim] matrix (RankMe, Garrido et al. 2023): 1 when every row is the
  same, up to min(2N, dim) when the batch fills every direction.
- `alignment`: mean squared distance between the normalised z of the two views of an
  image; `uniformity`: log of the mean of exp(-2 × squared distance) over pairs of distinct
  views (Wang & Isola 2020, α = 2, t = 2), over at most the first 1,024 views. Lower is
  better for both; uniformity is 0 when all views coincide and about -4 when spread.
- `pos_cos`, `neg_cos`: mean cosine similarity of z between the two views of an image, and
  between views of different images.

Collapse thresholds (a warning in the log names each one crossed; `health_warnings` in
metrics.json lists the steps):
- z_std < 0.3: near one point, z_std is about sqrt(1 - neg_cos), so this fires with
  neg_cos > ~0.91; healthy runs read 0.7-0.8 (demo) and ~1 (a spread Gaussian).
- h_std < 0.05: ten times below the 0.35-0.6 that the non-negative h of the demo reads;
  h often keeps its spread while z collapses, so this flags an encoder that has collapsed.
- z_rank < 2: the batch spans about one direction.
- neg_cos > 0.9: views of different images look alike.
- uniformity > -0.1: pairs of views are, on average, within ~0.2 of each other.

The singular values come from the eigenvalues of the smaller Gram matrix, dim × dim (an
all-reduce over the sharded batch) or rows × rows, so no SVD of the batch is ever taken,
and the training step itself is untouched. `config.health_monitor=False` turns it off.
"""

import logging

import jax
import jax.numpy as jnp
from flax import nnx

from simclr_jax.models.heads import compute_dtype
from simclr_jax.runtime import parallel
from simclr_jax.training import grad_cache, losses, objective

UNIFORMITY_ROWS = 1024
# name -> (test, limit): a value on the wrong side of its limit signals collapse.
COLLAPSE_THRESHOLDS = {
    'z_std': ('<', 0.3),
    'h_std': ('<', 0.05),
    'z_rank': ('<', 2.0),
    'neg_cos': ('>', 0.9),
    'uniformity': ('>', -0.1),
}
_HIGHEST = jax.lax.Precision.HIGHEST


def spread(x: jax.Array) -> jax.Array:
  """Mean per-dimension std of the L2-normalised rows, times √dim."""
  u = losses.l2_normalize(x)
  return jnp.mean(jnp.std(u, axis=0)) * jnp.sqrt(x.shape[-1])


def effective_rank(x: jax.Array) -> jax.Array:
  """exp(entropy of s / sum(s)), s the singular values of x [rows, dim], from the
  eigenvalues of the smaller of x^T x and x x^T."""
  x = x.astype(jnp.float32)
  pattern = 'nd,ne->de' if x.shape[1] <= x.shape[0] else 'nd,md->nm'
  gram = jnp.einsum(pattern, x, x, precision=_HIGHEST)
  eigenvalues = jnp.linalg.eigvalsh(gram)
  # float32 rounding leaves eigenvalues of about 1e-7 of the largest where the true ones
  # are 0; their square roots would read as singular values of 3e-4 and lift the rank.
  s = jnp.sqrt(jnp.where(eigenvalues > 1e-6 * eigenvalues[-1], eigenvalues, 0.0))
  p = s / jnp.maximum(jnp.sum(s), 1e-12)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.exp(entropy)


def pair_statistics(z: jax.Array) -> dict:
  """Alignment, uniformity and the positive / negative cosines of z [2N, D], rows 2i and
  2i+1 being the two views of image i (the step's layout)."""
  u = losses.l2_normalize(z)
  m = u.shape[0]
  first, second = u[0::2], u[1::2]
  pos = jnp.sum(first * second, axis=-1)
  total = jnp.sum(u, axis=0)
  # Σ_{i≠j} cos = |Σu|² − Σ|u|²; the negatives are all of those but the 2 × N positives.
  off_diagonal = jnp.sum(total * total) - jnp.sum(u * u)
  neg_cos = (off_diagonal - 2 * jnp.sum(pos)) / max(m * (m - 2), 1)
  sub = u[:min(m, UNIFORMITY_ROWS)]
  k = sub.shape[0]
  sq_dist = jnp.maximum(2.0 - 2.0 * jnp.einsum('id,jd->ij', sub, sub, precision=_HIGHEST),
                        0.0)
  not_self = ~jnp.eye(k, dtype=bool)
  mean_kernel = jnp.sum(jnp.where(not_self, jnp.exp(-2.0 * sq_dist), 0.0)) / (k * (k - 1))
  return {'alignment': jnp.mean(jnp.sum((first - second) ** 2, axis=-1)),
          'uniformity': jnp.log(mean_kernel),
          'pos_cos': jnp.mean(pos), 'neg_cos': neg_cos}


def representation_health(h: jax.Array, z: jax.Array) -> dict:
  """Every figure of the module docstring from h [2N, F] and z [2N, D]."""
  return {'h_std': spread(h), 'z_std': spread(z), 'h_rank': effective_rank(h),
          'z_rank': effective_rank(z), **pair_statistics(z)}


def collapse_signals(values: dict) -> list:
  """The thresholds `values` (health figures, without the `health/` prefix) cross, as
  readable strings; empty when healthy."""
  crossed = []
  for name, (test, limit) in COLLAPSE_THRESHOLDS.items():
    value = values.get(name)
    if value is not None and (value < limit if test == '<' else value > limit):
      crossed.append(f'{name} {value:.3g} {test} {limit:g}')
  return crossed


def make_health_fn(graphdef, mesh, config):
  """(params, batch_stats, views [N, 2, S, S, 3]) -> {name: scalar}, jitted over `mesh`.

  With gradient caching the views are embedded chunk by chunk as the step does, so the
  measurement needs no more memory than the step."""
  dtype = compute_dtype(config)

  def embed(params, batch_stats, views):
    model = nnx.merge(graphdef, params, batch_stats)
    h, z, _ = objective.embed(model, views, dtype, train=True)
    return h, z

  def measure(params, batch_stats, views):
    if config.grad_cache_chunk <= 0:
      return representation_health(*embed(params, batch_stats, views))
    # The step's own chunking, so each chunk's batch norm sees the rows it sees there.
    num_chunks = grad_cache.chunks_per_device(views.shape[0], mesh.devices.size,
                                              config.grad_cache_chunk)
    h, z = jax.lax.map(lambda chunk: embed(params, batch_stats, chunk),
                       grad_cache.to_chunks(views, mesh, num_chunks))
    return representation_health(grad_cache.from_chunks(h, mesh),
                                 grad_cache.from_chunks(z, mesh))

  return jax.jit(measure, in_shardings=(parallel.replicated(mesh), parallel.replicated(mesh),
                                        parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh))


class HealthMonitor:
  """Measures at log steps, warns on collapse, and keeps the summary for metrics.json."""

  def __init__(self, graphdef, mesh, config):
    self._measure = make_health_fn(graphdef, mesh, config) if config.health_monitor else None
    self.warning_steps = []
    self.first = None

  def __call__(self, state, batch, step: int) -> dict:
    """{'health/NAME': value} for the batch under `state`'s weights; {} when turned off."""
    if self._measure is None:
      return {}
    values = {k: float(v) for k, v in
              jax.device_get(self._measure(state.params, state.batch_stats,
                                           batch['views'])).items()}
    self.first = self.first or dict(values, step=step)
    logging.info('step %d health: %s', step,
                 '  '.join(f'{k} {v:.3g}' for k, v in sorted(values.items())))
    crossed = collapse_signals(values)
    if crossed:
      self.warning_steps.append(step)
      logging.warning('step %d: the representation may be collapsing: %s (thresholds in '
                      'simclr_jax/training/health.py)', step, ', '.join(crossed))
    return {f'health/{k}': v for k, v in values.items()}

  def summary(self) -> dict:
    """For metrics.json: the first measurement and the steps that warned (the last
    measurement is among the run's final scalars)."""
    if self._measure is None:
      return {}
    return {'health_first': self.first, 'health_warnings': self.warning_steps}
