"""Several steps per jitted call (config.steps_per_call): the schedule of blocks, the same
data per step as single steps, and a training run that ends where K = 1 ends."""

import itertools

import jax
import numpy as np
import pytest

from simclr_jax.data import device_feed, pipeline
from simclr_jax.runtime import parallel
from simclr_jax.training import step_blocks, loop
from test_pretrain import final_params
from tiny_configs import device_augment_config, load_config


def test_blocks_end_at_every_step_the_trainer_looks_at():
  # Log every 10, checkpoint every 15, last step 23: blocks of 4 stop at 10, 15, 20, 23.
  sizes = list(step_blocks.block_sizes(0, 23, 4, (10, 15, 0)))
  assert sizes == [4, 4, 1, 1, 4, 1, 4, 1, 1, 1, 1]
  ends = list(itertools.accumulate(sizes))
  assert {10, 15, 20, 23} <= set(ends) and ends[-1] == 23
  # A resumed run (from a preemption checkpoint at 13) picks up the same grid.
  assert list(step_blocks.block_sizes(13, 23, 4, (10, 15))) == [1, 1, 4, 1, 1, 1, 1]
  assert list(step_blocks.block_sizes(0, 8, 1, (3,))) == [1] * 8
  with pytest.raises(ValueError, match='steps_per_call'):
    list(step_blocks.block_sizes(0, 8, 0, ()))


@pytest.mark.parametrize('device_cache_mb', [2048, 0])  # resident pool, streamed images
def test_a_block_sees_the_views_of_the_same_steps_one_at_a_time(device_cache_mb):
  config = device_augment_config()
  config.data.device_cache_mb = device_cache_mb
  store, labels = pipeline.pretrain_pool(config, None)
  mesh = parallel.make_mesh()
  single = device_feed.DeviceFeed(config, store, labels, mesh, start_step=1)
  blocked = device_feed.DeviceFeed(config, store, labels, mesh, start_step=1,
                                   block_sizes=iter([3, 1]))
  expected = [next(single) for _ in range(4)]
  block = next(blocked)['block']
  prepare = jax.jit(blocked.prepare)  # as the block's scan runs it
  np.testing.assert_array_equal(np.asarray(block['step']), [1, 2, 3])
  for k in range(3):
    x = {name: value[k] for name, value in block.items()}
    views, block_labels = prepare(blocked.consts, x)
    # Fused into another call, XLA may reassociate a few float ops: atol 1e-5 on [0, 1].
    np.testing.assert_allclose(np.asarray(views), np.asarray(expected[k]['views']), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(block_labels), np.asarray(expected[k]['label']))
  np.testing.assert_allclose(np.asarray(blocked.last_batch({'block': block})['views']),
                             np.asarray(expected[2]['views']), atol=1e-5)
  after = next(blocked)  # the block of 1 after it is an ordinary batch of step 4
  np.testing.assert_array_equal(np.asarray(after['views']), np.asarray(expected[3]['views']))
  single.close()
  blocked.close()


def test_host_feed_stacks_the_batches_of_single_steps():
  config = load_config(**{'augment.backend': 'host'})
  store, labels = pipeline.pretrain_pool(config, None)
  mesh = parallel.make_mesh()
  single = device_feed.pretrain_feed(config, store, labels, mesh)
  blocked = device_feed.pretrain_feed(config, store, labels, mesh, block_sizes=iter([2, 1]))
  expected = [next(single) for _ in range(3)]
  block = next(blocked)['block']
  np.testing.assert_array_equal(np.asarray(block['step']), [0, 1])
  for k in range(2):
    views, block_labels = blocked.prepare((), {n: v[k] for n, v in block.items()})
    np.testing.assert_array_equal(np.asarray(views), np.asarray(expected[k]['views']))
    np.testing.assert_array_equal(np.asarray(block_labels), np.asarray(expected[k]['label']))
  np.testing.assert_array_equal(np.asarray(next(blocked)['views']),
                                np.asarray(expected[2]['views']))
  single.close()
  blocked.close()


def test_training_in_blocks_ends_where_single_steps_end(tmp_path):
  """A block of 2 (the scan) and a single step against one step per call: the same 3 steps
  on the same data, so the same parameters up to float reassociation inside the fused
  call (a 1e-7 change of one input moves them ~4e-4 relative after 3 steps; the block
  alone ~5e-5). Two steps carry the state through the scan as more would; on CPU the
  block is unrolled, so each step more in it is one more step to compile."""
  runs = {}
  for k in (1, 2):
    workdir = tmp_path / f'k{k}'
    config = load_config(num_steps=3, steps_per_call=k, log_every_steps=3,
                         checkpoint_every_steps=3, **{'augment.backend': 'device'})
    results = loop.train_and_evaluate(config, str(workdir))
    assert results['status'] == 'completed' and results['step'] == 3
    runs[k] = results, final_params(workdir)
  (one, (step_1, params_1)), (two, (step_2, params_2)) = runs[1], runs[2]
  assert step_1 == step_2 == 3
  assert two['loss'] == pytest.approx(one['loss'], rel=1e-4)
  for a, b in zip(params_1, params_2):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
