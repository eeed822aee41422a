"""Resuming safely: a changed config is refused or logged key by key, a checkpoint write
that fails (a full disk) is one clear error that the next start recovers from, and a damaged
newest checkpoint gives way to the one before it."""

import errno
import glob
import logging
import os
import shutil

import numpy as np
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from simclr_jax.runtime.run_errors import RunStopped
from simclr_jax.training import checkpoint, loop
from test_checkpoint_faults import damage
from test_pretrain import final_params
from tiny_configs import load_config


# Every resume below runs to step 4: one more compiled program than the fixture's (the
# schedule's length is part of the program), shared by all of them.
RESUMED_STEPS = 4


@pytest.fixture(scope='module')
def two_steps(tmp_path_factory):
  """A workdir whose run ended with a checkpoint at step 2."""
  workdir = tmp_path_factory.mktemp('two_steps')
  loop.train_and_evaluate(load_config(num_steps=2), str(workdir))
  return workdir


def _copy(source, tmp_path):
  target = tmp_path / 'run'
  shutil.copytree(source, target)
  return target


@pytest.mark.parametrize('overrides, listed', [
    ({'model.width': 0.125}, 'model.width saved 0.0625, new 0.125'),
    ({'batch_size': 8, 'loss.temperature': 0.1},
     'batch_size saved 16, new 8; loss.temperature saved 0.3, new 0.1'),
])
def test_resume_with_a_changed_meaning_stops_listing_each_key(two_steps, tmp_path, overrides,
                                                              listed):
  workdir = _copy(two_steps, tmp_path)
  before = {p: os.path.getmtime(p) for p in glob.glob(f'{workdir}/**', recursive=True)}
  with pytest.raises(RunStopped) as info:
    loop.train_and_evaluate(load_config(num_steps=4, **overrides), str(workdir))
  message = str(info.value)
  assert '\n' not in message and listed in message
  assert 'Resume with the saved values' in message and f'--config.init_from={workdir}' in message
  after = {p: os.path.getmtime(p) for p in glob.glob(f'{workdir}/**', recursive=True)}
  assert after == before  # nothing written


def test_resume_with_a_longer_run_and_other_cadence_is_logged(two_steps, tmp_path, caplog):
  workdir = _copy(two_steps, tmp_path)
  with caplog.at_level(logging.INFO):
    result = loop.train_and_evaluate(
        load_config(num_steps=RESUMED_STEPS, log_every_steps=3), str(workdir))
  assert result['status'] == 'completed' and result['step'] == RESUMED_STEPS
  assert 'resuming with config.num_steps=4 (the checkpoint was made with 2)' in caplog.text
  assert 'config.log_every_steps=3' in caplog.text


def test_failed_checkpoint_write_is_one_line_and_the_next_start_recovers(two_steps, tmp_path,
                                                                          monkeypatch):
  workdir = _copy(two_steps, tmp_path)
  real_save = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def disk_full_at_step_3(self, item, directory):
    if item.get('data_position') == 3:
      raise OSError(errno.ENOSPC, 'No space left on device', str(directory / 'metadata'))
    return await real_save(self, item, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn',
                      disk_full_at_step_3)
  config = load_config(num_steps=RESUMED_STEPS, checkpoint_every_steps=1)
  with pytest.raises(checkpoint.CheckpointWriteError) as info:
    loop.train_and_evaluate(config, str(workdir))
  message = str(info.value)
  assert '\n' not in message
  assert f'could not write checkpoint step 3 to {workdir}/checkpoints' in message
  assert 'No space left on device' in message
  assert 'the last complete checkpoint is step 2' in message
  assert checkpoint.complete_steps(str(workdir / 'checkpoints')) == [2]
  assert glob.glob(f'{workdir}/checkpoints/3.orbax-checkpoint-tmp*')

  monkeypatch.undo()
  result = loop.train_and_evaluate(
      load_config(num_steps=RESUMED_STEPS, checkpoint_every_steps=1), str(workdir))
  assert result['status'] == 'completed' and result['step'] == RESUMED_STEPS
  assert not glob.glob(f'{workdir}/checkpoints/*tmp*')
  assert final_params(workdir)[0] == RESUMED_STEPS


def test_storage_errors_are_reduced_to_the_os_error():
  tensorstore = ValueError(
      'RESOURCE_EXHAUSTED: Error writing "opt_state.0.nu.probe.kernel/0.0" in OCDBT database '
      'at local file "/w/checkpoints/8.orbax-checkpoint-tmp/train/": Failed writing: '
      '"/w/checkpoints/8.orbax-checkpoint-tmp/d/3aed": Failed to write 2070257 bytes to file '
      "5: No space left on device [os_error_code='28'] [source locations='tensorstore/...']")
  assert checkpoint._storage_error(RuntimeError('wrapped')) == 'wrapped'
  wrapped = RuntimeError('background save failed')
  wrapped.__cause__ = tensorstore
  assert checkpoint._storage_error(wrapped) == '[Errno 28] No space left on device'
  denied = PermissionError(errno.EACCES, 'Permission denied', '/w/checkpoints/8')
  assert checkpoint._storage_error(denied) == "[Errno 13] Permission denied: '/w/checkpoints/8'"


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(two_steps, tmp_path,
                                                                    caplog):
  """The resume uses step 2 when step 4 is damaged (as test_checkpoint_faults does for each
  kind of damage), and ends where a resume from step 2 ends."""
  damaged, reference = _copy(two_steps, tmp_path / 'damaged'), _copy(two_steps, tmp_path)
  directory = damaged / 'checkpoints'
  # A newer checkpoint, its array files then truncated; what it held is never read.
  shutil.copytree(directory / '2', directory / '4')
  damage(directory / '4', 'truncated')
  with caplog.at_level(logging.WARNING):
    result = loop.train_and_evaluate(load_config(num_steps=RESUMED_STEPS), str(damaged))
  assert result['status'] == 'completed' and result['step'] == RESUMED_STEPS
  assert f'checkpoint step 4 in {directory} does not restore (OUT_OF_RANGE: ' in caplog.text
  # set aside, and step 4 made again from step 2
  assert sorted(os.listdir(directory)) == ['2', '4', '4.corrupt']

  loop.train_and_evaluate(load_config(num_steps=RESUMED_STEPS), str(reference))
  (step_a, leaves_a), (step_b, leaves_b) = final_params(damaged), final_params(reference)
  assert step_a == step_b == RESUMED_STEPS and len(leaves_a) == len(leaves_b) > 0
  for a, b in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(a, b)
