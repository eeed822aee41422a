"""Stratified, nested, seeded subsets of the labelled training split.

Each class's indices are shuffled once by (data seed, run seed, class); a fraction f takes
the first ceil(f * n_c) of every class (at least one). The order does not depend on f, so
the 10% subset lies inside the 20% one and label-fraction curves change smoothly.
"""

import math

import numpy as np

from simclr_jax.errors import UserError


def check_fraction(fraction: float) -> float:
  if not 0.0 < fraction <= 1.0:
    raise UserError(f'config.label_fraction must be in (0, 1], got {fraction}')
  return float(fraction)


def stratified_subset(labels, fraction: float, seed: int) -> np.ndarray:
  """Sorted indices into `labels` of a stratified `fraction` of every class."""
  fraction = check_fraction(fraction)
  labels = np.asarray(labels)
  chosen = []
  for cls in np.unique(labels[labels >= 0]):
    members = np.flatnonzero(labels == cls)
    rng = np.random.default_rng([int(seed), int(cls), 7])
    order = rng.permutation(members)
    count = max(1, math.ceil(round(fraction * len(members), 9)))
    chosen.append(order[:count])
  return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def subset_for_config(config, labels) -> np.ndarray:
  """The subset a run with `config` trains on (config.seed picks it, with the data seed)."""
  return stratified_subset(labels, config.label_fraction,
                           seed=config.data.seed * 1_000_003 + config.seed)
