"""Optimizers for large batches: LARS with masks, learning-rate scaling and schedules.

LARS (You et al. 2017) as the SimCLR authors use it: batch-norm parameters and biases get
neither weight decay nor the trust-ratio adaptation. Every 1-D parameter is a BN scale, a
BN bias or a Dense/Conv bias, and every kernel has two or more dimensions, so the mask is
decided by rank (as BYOL's `exclude_bias_and_norm`).
"""

import math

import jax
import optax

from simclr_jax.errors import UserError


def decay_and_adapt_mask(params):
  """True for the parameters LARS may decay and adapt: kernels, not biases or BN."""
  return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


OPTIMIZERS = ('lars', 'sgd', 'adamw')
LR_SCALINGS = ('linear', 'sqrt', 'none')


def scaled_learning_rate(base_lr: float, batch_size: int, scaling: str) -> float:
  if scaling == 'linear':
    return base_lr * batch_size / 256
  if scaling == 'sqrt':
    return base_lr * math.sqrt(batch_size)
  if scaling == 'none':
    return base_lr
  raise UserError(f"config.optim.lr_scaling must be 'linear', 'sqrt' or 'none', got {scaling!r}")


def warmup_cosine(peak_lr: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `peak_lr`, then cosine decay to 0 at `total_steps`."""
  warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_lr, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=0.0)


def warmup_steps(optim_config, steps_per_epoch: int) -> int:
  if optim_config.warmup_steps > 0:
    return int(optim_config.warmup_steps)
  return int(round(optim_config.warmup_epochs * steps_per_epoch))


def make_optimizer(optim_config, batch_size: int, total_steps: int, steps_per_epoch: int):
  """Returns (optax transformation, schedule) for config.optim."""
  peak = scaled_learning_rate(optim_config.base_lr, batch_size, optim_config.lr_scaling)
  schedule = warmup_cosine(peak, warmup_steps(optim_config, steps_per_epoch), total_steps)
  name = optim_config.name
  if name == 'lars':
    tx = optax.lars(schedule, weight_decay=optim_config.weight_decay,
                    weight_decay_mask=decay_and_adapt_mask,
                    trust_coefficient=optim_config.trust_coefficient,
                    trust_ratio_mask=decay_and_adapt_mask, momentum=optim_config.momentum)
  elif name == 'sgd':
    tx = optax.chain(
        optax.add_decayed_weights(optim_config.weight_decay, mask=decay_and_adapt_mask),
        optax.sgd(schedule, momentum=optim_config.momentum))
  elif name == 'adamw':
    tx = optax.adamw(schedule, weight_decay=optim_config.weight_decay, mask=decay_and_adapt_mask)
  else:
    raise UserError(f"config.optim.name must be 'lars', 'sgd' or 'adamw', got {name!r}")
  return tx, schedule
