"""Contrastive losses over the global batch: NT-Xent and the paper's alternatives (Table 2).

All three losses share one computation: a block of anchor rows against every key column,
cosine similarity in float32 whatever the compute dtype, each anchor's own column masked.
On one device the block is the whole 2N×2N matrix; under `sharded_contrastive_loss` each
device holds only its rows × the 2N gathered columns, never the full matrix.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from simclr_jax.errors import UserError

# Subtracted from an anchor's similarity with itself (as the authors' code does): finite, so
# the softmax gives it exactly zero weight without producing 0 * inf in the entropy.
_SELF_MASK = 1e9


class RowStats(NamedTuple):
  """Per-anchor results; means over anchors give the figures users watch."""
  loss: jax.Array  # [m]
  correct: jax.Array  # [m] 1.0 when the positive is ranked first among the 2N-1 others
  entropy: jax.Array  # [m] entropy of the softmax over the 2N-1 others


def l2_normalize(z: jax.Array) -> jax.Array:
  z = z.astype(jnp.float32)
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))


class _Pairs(NamedTuple):
  """What every loss reads from one block of anchors against keys."""
  sim: jax.Array  # [m, K] cosine similarities (dot products without normalisation)
  logits: jax.Array  # [m, K] sim / temperature, the anchor's own column masked
  log_softmax: jax.Array  # [m, K]
  is_pos: jax.Array  # [m, K] the positive's column
  is_neg: jax.Array  # [m, K] the 2N - 2 negatives' columns
  num_neg: int
  margin: float


def _nt_xent(p: _Pairs) -> jax.Array:
  return -jnp.sum(jnp.where(p.is_pos, p.log_softmax, 0.0), axis=-1)


def _nt_logistic(p: _Pairs) -> jax.Array:
  # -log σ(u·v+/τ) - mean over negatives of log σ(-u·v-/τ): averaging the negatives keeps
  # the two terms on one scale whatever the batch size.
  pos_logit = jnp.sum(jnp.where(p.is_pos, p.logits, 0.0), axis=-1)
  neg = jnp.sum(jnp.where(p.is_neg, jax.nn.log_sigmoid(-p.logits), 0.0), axis=-1) / p.num_neg
  return -jax.nn.log_sigmoid(pos_logit) - neg


def _margin_triplet(p: _Pairs) -> jax.Array:
  # mean over negatives of max(u·v- - u·v+ + m, 0), on cosine similarities (or dot
  # products without normalisation).
  pos_sim = jnp.sum(jnp.where(p.is_pos, p.sim, 0.0), axis=-1, keepdims=True)
  hinge = jnp.maximum(p.sim - pos_sim + p.margin, 0.0)
  return jnp.sum(jnp.where(p.is_neg, hinge, 0.0), axis=-1) / p.num_neg


# config.loss.name -> the per-anchor loss. A new loss is one function here (and its name in
# config/keys.py's LOSS_NAMES, which a test checks against this dict).
LOSSES = {'nt_xent': _nt_xent, 'nt_logistic': _nt_logistic, 'margin_triplet': _margin_triplet}
LOSS_NAMES = tuple(LOSSES)


def contrastive_rows(anchors, keys, anchor_ids, positive_ids, *, name='nt_xent',
                     temperature=0.5, margin=0.5, normalize=True) -> RowStats:
  """Loss for anchors [m, D] against keys [K, D]; ids index the key columns.

  `anchor_ids[r]` is anchor r's own column (masked out), `positive_ids[r]` its positive.
  normalize=False compares raw dot products instead of cosines (the paper's Table 5
  ablation): their scale is unbounded, so the loss is only as stable as z's norm.
  """
  if normalize:
    a, k = l2_normalize(anchors), l2_normalize(keys)
  else:
    a, k = anchors.astype(jnp.float32), keys.astype(jnp.float32)
  sim = jnp.einsum('md,kd->mk', a, k, precision=jax.lax.Precision.HIGHEST)
  cols = jnp.arange(k.shape[0])
  is_self = cols[None, :] == anchor_ids[:, None]
  is_pos = cols[None, :] == positive_ids[:, None]
  is_neg = ~(is_self | is_pos)
  logits = sim / temperature - _SELF_MASK * is_self
  log_softmax = jax.nn.log_softmax(logits, axis=-1)
  correct = (jnp.argmax(logits, axis=-1) == positive_ids).astype(jnp.float32)
  entropy = -jnp.sum(jnp.exp(log_softmax) * log_softmax, axis=-1)

  if name not in LOSSES:
    raise UserError(f'config.loss.name must be one of {LOSS_NAMES}, got {name!r}')
  loss = LOSSES[name](_Pairs(sim, logits, log_softmax, is_pos, is_neg, k.shape[0] - 2, margin))
  return RowStats(loss, correct, entropy)


def _paired_ids(two_n: int):
  """Ids for DESIGN.md's layout: rows i and i+N are the two views of image i."""
  ids = jnp.arange(two_n)
  return ids, (ids + two_n // 2) % two_n


def nt_xent(z: jax.Array, temperature: float) -> jax.Array:
  """The paper's L: mean NT-Xent over the 2N anchors of z [2N, D] (rows i, i+N are a pair)."""
  if z.ndim != 2 or z.shape[0] % 2:
    raise ValueError(f'z must have shape [2N, D], got {z.shape}')
  ids, pos = _paired_ids(z.shape[0])
  return jnp.mean(contrastive_rows(z, z, ids, pos, temperature=temperature).loss)


def contrastive_loss(z: jax.Array, *, name='nt_xent', temperature=0.5, margin=0.5,
                     normalize=True):
  """Any of the three losses on one device, DESIGN.md layout; returns (loss, metrics)."""
  ids, pos = _paired_ids(z.shape[0])
  rows = contrastive_rows(z, z, ids, pos, name=name, temperature=temperature, margin=margin,
                          normalize=normalize)
  return jnp.mean(rows.loss), {'contrastive_acc': jnp.mean(rows.correct),
                               'entropy': jnp.mean(rows.entropy)}


def sharded_contrastive_loss(z: jax.Array, mesh, axis: str, *, name='nt_xent',
                             temperature=0.5, margin=0.5, normalize=True):
  """The global loss for z [2N, D] sharded over `axis`, in the pair-interleaved layout.

  Rows 2i and 2i+1 are the two views of image i, so every device's block of rows holds
  whole pairs and the training step never moves images between devices. Each device
  gathers all 2N rows as keys (O(local rows × 2N) memory) and offsets its anchor ids by
  its position on the axis, so loss and gradient equal the single-device computation.
  Returns (loss, metrics), replicated.
  """
  two_n = z.shape[0]

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=P(axis), out_specs=P())
  def per_device(z_local):
    m = z_local.shape[0]
    keys = jax.lax.all_gather(z_local, axis, tiled=True)
    anchor_ids = jax.lax.axis_index(axis) * m + jnp.arange(m)
    rows = contrastive_rows(z_local, keys, anchor_ids, anchor_ids ^ 1, name=name,
                            temperature=temperature, margin=margin, normalize=normalize)
    sums = jnp.stack([rows.loss.sum(), rows.correct.sum(), rows.entropy.sum()])
    return jax.lax.psum(sums, axis) / two_n

  loss, acc, entropy = per_device(z)
  return loss, {'contrastive_acc': acc, 'entropy': entropy}


def interleave_pairs(z: jax.Array) -> jax.Array:
  """DESIGN.md layout (rows i, i+N) -> interleaved layout (rows 2i, 2i+1)."""
  n = z.shape[0] // 2
  return jnp.stack([z[:n], z[n:]], axis=1).reshape(z.shape)
