"""Checkpoint faults on the real Checkpointer, with a small state (no model to compile):
a damaged newest checkpoint is moved aside and the one before it restored; a storage
failure is one line wherever it surfaces. training/loop.py's use of both is tested end to end in
test_resume_safety.py."""

import errno
import gc
import glob
import logging
import os
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler
from orbax.checkpoint._src.handlers import standard_checkpoint_handler
from orbax.checkpoint._src.serialization import serialization

from simclr_jax.training import checkpoint
from simclr_jax.training.state import TrainState


def small_state(step: int) -> TrainState:
  """A state whose every value says which step it belongs to."""
  rng = np.random.default_rng(step)
  leaf = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return TrainState(step=jnp.asarray(step, jnp.int32),
                    params={'conv': leaf(3, 3, 4, 8), 'bias': leaf(8)},
                    batch_stats={'mean': leaf(8)},
                    opt_state={'mu': leaf(3, 3, 4, 8), 'nu': leaf(8)})


def assert_same(a: TrainState, b: TrainState):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def save_steps(workdir, *steps):
  ckpt = checkpoint.Checkpointer(str(workdir))
  for step in steps:
    ckpt.save(small_state(step), {'data_position': step})
  ckpt.close()


def damage(step_dir, how: str) -> list[str]:
  """Truncates, zeroes or deletes every array data file of a checkpoint (its model and
  train items), as a bad disk or an interrupted copy leaves them."""
  files = sorted(glob.glob(f'{step_dir}/*/**/d/*', recursive=True))
  assert files
  for path in files:
    size = os.path.getsize(path)
    if how == 'truncated':
      os.truncate(path, size // 2)
    elif how == 'zeroed':
      with open(path, 'r+b') as f:
        f.write(bytes(size))
    else:
      os.remove(path)
  return files


@pytest.mark.parametrize('how', ['truncated', 'zeroed', 'deleted'])
def test_a_damaged_newest_checkpoint_is_moved_aside_and_the_previous_restored(
    tmp_path, caplog, how):
  save_steps(tmp_path, 1, 2)
  directory = tmp_path / 'checkpoints'
  damage(directory / '2', how)

  ckpt = checkpoint.Checkpointer(str(tmp_path))
  with caplog.at_level(logging.WARNING):
    state, meta = ckpt.restore_newest_good(small_state(0))
    gc.collect()  # asyncio logs the failed reads nobody awaited when they are collected
  assert_same(state, small_state(1))
  assert meta == {'data_position': 1}
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert len(warnings) == 1 and '\n' not in warnings[0]
  assert warnings[0].startswith(f'checkpoint step 2 in {directory} does not restore (')
  assert f'moved aside to {directory}/2.corrupt, resuming from step 1' in warnings[0]
  assert sorted(os.listdir(directory)) == ['1', '2.corrupt']  # kept, not deleted
  # The manager forgot step 2: the run saves it again when it gets there.
  ckpt.save(small_state(2), {'data_position': 2})
  ckpt.close()
  assert checkpoint.complete_steps(str(directory)) == [1, 2]


def test_when_no_checkpoint_restores_one_line_lists_them_and_leaves_them(tmp_path):
  save_steps(tmp_path, 1, 2)
  directory = tmp_path / 'checkpoints'
  damage(directory / '2', 'truncated')
  damage(directory / '1', 'deleted')
  with pytest.raises(checkpoint.CheckpointRestoreError) as info:
    checkpoint.Checkpointer(str(tmp_path)).restore_newest_good(small_state(0))
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'no checkpoint in {directory} restores (step 2: ')
  assert '; step 1: NOT_FOUND: ' in message and 'They are left in place' in message
  assert sorted(os.listdir(directory)) == ['1', '2']


def test_a_damaged_checkpoint_moved_aside_twice_keeps_both(tmp_path):
  save_steps(tmp_path, 1, 2)
  directory = tmp_path / 'checkpoints'
  os.mkdir(directory / '2.corrupt')  # an earlier damaged step 2
  damage(directory / '2', 'zeroed')
  checkpoint.Checkpointer(str(tmp_path)).restore_newest_good(small_state(0))
  assert sorted(os.listdir(directory)) == ['1', '2.corrupt', '2.corrupt-2']


# --- a disk that fills -------------------------------------------------------------

def _disk_full(path='/w/checkpoints/x'):
  return OSError(errno.ENOSPC, 'No space left on device', path)


async def _tensorstore_full(*args, **kwargs):
  """What TensorStore raises when the disk fills under an array write."""
  del args, kwargs
  raise ValueError(
      'RESOURCE_EXHAUSTED: Error writing "opt_state.mu/0.0" in OCDBT database at local '
      'file "/w/checkpoints/3.orbax-checkpoint-tmp/train/": Failed writing: "/w/d/3aed": '
      "Failed to write 4860 bytes to file 5: No space left on device [os_error_code='28']")


def _fail_json_write_at(monkeypatch, step):
  real = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def save_fn(self, item, directory):
    if item.get('data_position') == step:
      raise _disk_full(str(directory / 'metadata'))
    return await real(self, item, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', save_fn)


def _fail_sync_save_at(monkeypatch, step):
  real = standard_checkpoint_handler.StandardCheckpointHandler.async_save

  def async_save(self, directory, *args, **kwargs):
    if f'/{step}.orbax-checkpoint-tmp' in str(directory):
      raise _disk_full(str(directory))
    return real(self, directory, *args, **kwargs)

  monkeypatch.setattr(standard_checkpoint_handler.StandardCheckpointHandler, 'async_save',
                      async_save)


def _fail_array_writes(monkeypatch, step):
  del step  # every array write from now on
  monkeypatch.setattr(serialization, 'async_serialize_from_host', _tensorstore_full)


def _join_started(thread, timeout: float):
  """Waits for a thread to end, including one enumerated between its start() and its first
  instruction (threading's "limbo", where join raises). Not orbax's join, which raises the
  failure again."""
  deadline = time.monotonic() + timeout
  while True:
    try:
      return threading.Thread.join(thread, max(0.0, deadline - time.monotonic()))
    except RuntimeError:  # not started yet
      if time.monotonic() > deadline:
        raise
      time.sleep(0.01)


def _wait_until_unchanged(directory, timeout: float = 10.0):
  def listing():
    return sorted((root, tuple(sorted(files))) for root, _, files in os.walk(directory))
  deadline = time.monotonic() + timeout
  previous = listing()
  while time.monotonic() < deadline:
    time.sleep(0.3)
    current = listing()
    if current == previous:
      return
    previous = current


# Where the failure of the save of step 3 (after a complete step 2) surfaces:
# the save call itself, orbax's background thread (seen when the next save waits for it),
# wait_until_finished, and the final save (seen when the checkpointer closes).
def _surfaces_in_save(ckpt):
  ckpt.save(small_state(3), {'data_position': 3})


def _surfaces_in_next_save(ckpt):
  ckpt.save(small_state(3), {'data_position': 3})
  ckpt.save(small_state(4), {'data_position': 4})


def _surfaces_in_wait(ckpt):
  ckpt.save(small_state(3), {'data_position': 3})
  ckpt.wait()


def _surfaces_in_final_save(ckpt):
  try:
    ckpt.save(small_state(3), {'data_position': 3}, force=True)
  finally:
    ckpt.close()  # as loop.py's `finally` does


@pytest.mark.parametrize('inject, surface', [
    (_fail_sync_save_at, _surfaces_in_save),
    (_fail_json_write_at, _surfaces_in_next_save),
    (_fail_array_writes, _surfaces_in_wait),
    (_fail_array_writes, _surfaces_in_final_save),
], ids=['save_call', 'background_thread', 'wait_until_finished', 'final_save'])
def test_a_full_disk_is_one_line_wherever_it_surfaces(tmp_path, monkeypatch, caplog, inject,
                                                      surface):
  save_steps(tmp_path, 2)
  directory = tmp_path / 'checkpoints'
  threads_before = set(threading.enumerate())
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  inject(monkeypatch, 3)
  with caplog.at_level(logging.INFO), pytest.raises(checkpoint.CheckpointWriteError) as info:
    surface(ckpt)
  ckpt.close()
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'could not write checkpoint step 3 to {directory}: [Errno 28] '
                            'No space left on device')
  assert 'the last complete checkpoint is step 2' in message
  # orbax's and asyncio's reports of the same failure, with their tracebacks, are dropped.
  assert not [r for r in caplog.records if r.exc_info], caplog.text
  assert checkpoint.complete_steps(str(directory)) == [2]

  # orbax's threads of the failed save end (a thread left waiting for a signal of the part
  # that failed would hold the process at exit for 300 s).
  for thread in set(threading.enumerate()) - threads_before:
    _join_started(thread, 10)
    assert not thread.is_alive() or thread.daemon, thread
  # TensorStore's own threads may still finish writes of the failed save in this process
  # (a new process, as a real restart is, has none).
  _wait_until_unchanged(directory)
  # The next start removes the partial folder and goes on from step 2.
  monkeypatch.undo()
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert sorted(os.listdir(directory)) == ['2']
  state, _ = ckpt.restore_newest_good(small_state(0))
  assert_same(state, small_state(2))
  ckpt.close()


def test_a_damaged_init_from_checkpoint_is_one_line_naming_the_steps_to_use(tmp_path):
  save_steps(tmp_path, 2, 4)
  directory = tmp_path / 'checkpoints'
  damage(directory / '4', 'truncated')
  abstract = small_state(0)
  with pytest.raises(checkpoint.CheckpointRestoreError) as info:
    checkpoint.restore_model_variables(str(tmp_path), abstract.params, abstract.batch_stats)
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'config.init_from: checkpoint step 4 in {directory} does not '
                            'restore (OUT_OF_RANGE: ')
  assert message.endswith(f'steps [2]: pass --config.init_from={directory / "2"} to start '
                          'from one.')
  # The step it names restores.
  params, _, meta = checkpoint.restore_model_variables(str(directory / '2'), abstract.params,
                                                       abstract.batch_stats)
  assert meta['data_position'] == 2
  np.testing.assert_array_equal(params['bias'], small_state(2).params['bias'])

  # Damaged metadata (how a run's config is read before anything is built).
  meta_file, = glob.glob(f'{directory}/4/meta/*meta*')
  with open(meta_file, 'w') as f:
    f.write('{"config": ')
  with pytest.raises(checkpoint.CheckpointRestoreError,
                     match=r'^config.init_from: checkpoint step 4 in .* does not restore \('):
    checkpoint.read_meta(str(tmp_path))
