"""The SimCLR objective on a batch of views: the model's embeddings of the 2N views and the
batch's loss (contrastive, plus the online probe's cross-entropy). Shared by the plain step
(step.py), gradient caching (grad_cache.py) and the health monitor (health.py)."""

import jax.numpy as jnp
import optax

from simclr_jax.runtime import parallel
from simclr_jax.training import losses


def probe_loss_and_accuracy(logits, labels):
  """Cross-entropy and accuracy over the labelled rows (label >= 0) only."""
  labelled = labels >= 0
  count = jnp.maximum(jnp.sum(labelled), 1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                       jnp.maximum(labels, 0))
  hit = jnp.argmax(logits, axis=-1) == labels
  return jnp.sum(ce * labelled) / count, jnp.sum(hit * labelled) / count


def embed(model, views, dtype, train: bool):
  """views [n, 2, S, S, 3] -> the model's (h, z, probe logits) for the 2n views, rows 2i
  and 2i+1 being image i (a reshape that keeps every device's rows where they are)."""
  n = views.shape[0]
  x = views.reshape((2 * n,) + views.shape[2:]).astype(dtype)
  return model(x, train=train)


def batch_loss(z, logits, labels, mesh, loss_config):
  """The total loss (contrastive + probe) and metrics from the whole batch's z [2N, D] and
  probe logits (None without a probe); `labels` [N] are per image."""
  loss, metrics = losses.sharded_contrastive_loss(
      z, mesh, parallel.DATA_AXIS, name=loss_config.name,
      temperature=loss_config.temperature, margin=loss_config.margin,
      normalize=loss_config.normalize)
  metrics['contrastive_loss'] = loss
  total = loss
  if logits is not None:
    probe_loss, probe_acc = probe_loss_and_accuracy(logits, jnp.repeat(labels, 2))
    metrics.update(probe_loss=probe_loss, probe_acc=probe_acc)
    total = total + probe_loss
  return total, metrics
