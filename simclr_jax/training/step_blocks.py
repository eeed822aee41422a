"""Several training steps per jitted call (`config.steps_per_call`).

At small models a step lasts a few milliseconds, so what happens between steps (Python,
dispatch, a separate augmentation call, host round trips) shows in the throughput. With
steps_per_call = K > 1 the trainer runs K steps as one `jax.lax.scan` inside one jitted
call, the augmentation of each step fused into it on the device backend, and returns to
Python once per block. Blocks never cross a step where the trainer has to look (a log,
checkpoint or kNN step, the last step): such a step ends its block, and the steps up to it
that make no full block run one at a time with the ordinary single step. Each step draws
the same data and augmentation as it does with K = 1, so a run's data does not depend on K.

A feed (device_feed.py) yields either one batch {'views', 'label'} for a single step or
{'block': xs} for a block, xs holding K steps' inputs stacked on a leading axis; it also
gives the scan body its `prepare(consts, x) -> (views, labels)` and the `consts` (e.g. the
dataset resident on the devices) that every step of the block reads.
"""

from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp

from simclr_jax.errors import UserError
from simclr_jax.runtime import parallel


def block_sizes(start_step: int, total_steps: int, steps_per_call: int,
                periods: Iterable[int]) -> Iterator[int]:
  """The size of each call from start_step to total_steps: steps_per_call where a whole
  block fits before the next step that is a multiple of one of `periods` (or the last
  step), else 1. Deterministic, so the feed and the trainer walk the same schedule."""
  if steps_per_call < 1:
    raise UserError(f'config.steps_per_call must be >= 1, got {steps_per_call}')
  periods = [p for p in periods if p > 0]
  step = start_step
  while step < total_steps:
    next_stop = min([total_steps] + [(step // p + 1) * p for p in periods])
    size = steps_per_call if step + steps_per_call <= next_stop else 1
    yield size
    step += size


# How many steps of a block the scan unrolls: None = by platform. XLA:CPU ran a rolled
# loop's convolutions ~40x slower than the same steps unrolled (ResNet-18 x0.25, batch 64:
# 17 s against 0.4 s per step), so on CPU the block is unrolled whole; elsewhere the loop
# stays rolled (one compilation of the step, whatever the block size).
SCAN_UNROLL = None


def _unroll(steps: int) -> int:
  if SCAN_UNROLL is not None:
    return max(1, min(SCAN_UNROLL, steps))
  return steps if jax.default_backend() == 'cpu' else 1


def jit_block(update: Callable, prepare: Callable, mesh, state_sharding, consts_sharding,
              xs_example: dict):
  """-> block(state, consts, xs) -> (state, metrics): `update` scanned over the steps of
  xs, jitted over `mesh`, state donated. The metrics are the last step's, except `finite`,
  which is 0 when any step of the block was not finite (that step left the state as it
  was, as a single step does)."""

  def block(state, consts, xs):

    def body(state, x):
      views, labels = prepare(consts, x)
      return update(state, views, labels)

    steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    state, metrics = jax.lax.scan(body, state, xs, unroll=_unroll(steps))
    last = {k: v[-1] for k, v in metrics.items()}
    last['finite'] = jnp.min(metrics['finite'])
    return state, last

  xs_sharding = jax.tree_util.tree_map(lambda x: parallel.stacked_sharding(mesh, x), xs_example)
  return jax.jit(block, in_shardings=(state_sharding, consts_sharding, xs_sharding),
                 out_shardings=(state_sharding, parallel.replicated(mesh)),
                 donate_argnums=0)


class Stepper:
  """Advances the train state by one item of a feed: a single step or a block."""

  def __init__(self, single_step, update, feed, mesh, state_sharding):
    self._single = single_step
    self._update = update
    self._feed = feed
    self._mesh = mesh
    self._state_sharding = state_sharding
    self._block = None

  def __call__(self, state, item):
    """-> (state, metrics, number of steps taken)."""
    if 'block' not in item:
      state, metrics = self._single(state, item)
      return state, metrics, 1
    xs = item['block']
    if self._block is None:  # built on first use: the feed's inputs give the shardings
      consts_sharding = jax.tree_util.tree_map(lambda _: parallel.replicated(self._mesh),
                                               self._feed.consts)
      self._block = jit_block(self._update, self._feed.prepare, self._mesh,
                              self._state_sharding, consts_sharding, xs)
    state, metrics = self._block(state, self._feed.consts, xs)
    return state, metrics, int(xs['step'].shape[0])
