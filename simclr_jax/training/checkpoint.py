"""Checkpoints with orbax: the model, the optimizer and the run's record, saved together.

A checkpoint `WORKDIR/checkpoints/STEP/` holds three items, so that evaluation can read
the encoder without building the optimizer:
  model: {'params', 'batch_stats'}   train: {'opt_state', 'step'}   meta: JSON
`meta` holds the config the run was started with (to rebuild the model) and the data
position, so a resumed run goes on exactly where it stopped.

A checkpoint is written to a temporary folder and renamed to STEP/ when complete, so a
STEP/ folder is always whole. A write that fails (a full disk, a permission error) raises
CheckpointWriteError: one line with the step, the folder, the OS error and the last
complete checkpoint; the complete ones are left alone, and the next start removes the
partial folder and resumes from the last complete checkpoint.

A complete checkpoint can still be damaged later (a bad disk, an interrupted copy of the
workdir, a partial sync from a bucket). A resume restores the newest checkpoint that
restores: each newer one that does not is named in a warning with its error and moved
aside as STEP.corrupt (kept for inspection, never deleted). When none restores the run
stops with one line listing them, and leaves them in place.
"""

import glob
import json
import logging
import os
import re
import shutil
import sys
import threading
from typing import Any

import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from simclr_jax.errors import PathNotFound
from simclr_jax.runtime.run_errors import RunStopped
from simclr_jax.training.state import TrainState

CHECKPOINT_DIR = 'checkpoints'
_PARTIAL_PATTERN = '*.orbax-checkpoint-tmp*'


class CheckpointWriteError(RunStopped):
  """A checkpoint could not be written; the message says which, where, why, and what is
  left to resume from."""


class CheckpointRestoreError(RunStopped):
  """No checkpoint of the workdir restores; the message lists each with its error."""


def _write_replicated_arrays_whole():
  """Each replicated array is written whole, from one device, except on a multi-host TPU
  slice. orbax's default there (replica-parallel) writes a slice from every replica, which
  spreads the write over the hosts, but costs a small compiled slice per array shape and
  device: the first save of a ResNet-18 on 8 CPU devices took 47 s instead of 2 s. orbax
  itself turns it off on GPUs."""
  parallel = jax.process_count() > 1 and jax.default_backend() == 'tpu'
  if _replica_parallel == [parallel]:
    return
  absl_logger = logging.getLogger('absl')  # orbax warns of every override
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=parallel),
        override=True)
  finally:
    absl_logger.setLevel(level)
  _replica_parallel[:] = [parallel]


_replica_parallel = []  # the setting registered in this process


class Checkpointer:
  """Asynchronous saves every N steps and at the end, keeping the last K."""

  def __init__(self, workdir: str, keep: int = 3, asynchronous: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    if jax.process_index() == 0:
      remove_partial_checkpoints(self.directory)
    _checkpoint_directories.add(self.directory)
    _quiet_orbax_tracebacks()
    _ignore_callbacks_into_closed_loops()
    _write_replicated_arrays_whole()
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=asynchronous))
    self._pending_step = None  # the step of the save that may still be in flight
    self._failed = False

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState, meta: dict, force: bool = False) -> None:
    step = int(jax.device_get(state.step))
    if step in self.manager.all_steps():
      return
    self.wait()  # a failure of the previous (asynchronous) save is reported as its own
    try:
      self.manager.save(step, args=ocp.args.Composite(
          model=ocp.args.StandardSave({'params': state.params,
                                       'batch_stats': state.batch_stats}),
          train=ocp.args.StandardSave({'opt_state': state.opt_state, 'step': state.step}),
          meta=ocp.args.JsonSave(meta)), force=force)
    except Exception as e:  # pylint: disable=broad-except  (any storage failure)
      raise self._write_error(step, e) from e
    self._pending_step = step

  def _write_error(self, step: int, error: Exception) -> CheckpointWriteError:
    self._failed = True
    complete = complete_steps(self.directory)
    last = (f'the last complete checkpoint is step {complete[-1]}' if complete
            else 'no complete checkpoint was written yet')
    return CheckpointWriteError(
        f'could not write checkpoint step {step} to {self.directory}: '
        f'{_storage_error(error)}; {last}. Free space or fix the permissions, then start '
        'again with the same workdir to resume from there.')

  def restore_newest_good(self, abstract_state: TrainState):
    """-> (state, meta) of the newest checkpoint that restores. Newer ones that do not are
    named in a warning each and moved aside as STEP.corrupt; when none restores, raises
    CheckpointRestoreError listing them all."""
    failures = []
    for step in reversed(self.manager.all_steps()):
      try:
        restored = self.restore(abstract_state, step)
      except Exception as e:  # pylint: disable=broad-except  (any damage to the files)
        failures.append((step, _storage_error(e)))
        continue
      self._move_aside(failures, fallback=step)
      return restored
    listing = '; '.join(f'step {step}: {error}' for step, error in failures)
    raise CheckpointRestoreError(
        f'no checkpoint in {self.directory} restores ({listing}). They are left in place. '
        'Copy an intact checkpoint there, or start a new --workdir.')

  def _move_aside(self, failures: list[tuple[int, str]], fallback: int) -> None:
    """Renames each damaged checkpoint to STEP.corrupt (every process then sees the same
    steps: later saves of those steps must not be skipped as already done)."""
    if not failures:
      return
    for step, error in failures:
      target = _free_name(os.path.join(self.directory, f'{step}.corrupt'))
      logging.warning('checkpoint step %d in %s does not restore (%s); moved aside to %s, '
                      'resuming from step %d', step, self.directory, error, target, fallback)
      if jax.process_index() == 0:
        os.rename(os.path.join(self.directory, str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('simclr_jax: corrupt checkpoints moved aside')
    self.manager.reload()

  def saved_meta(self) -> dict:
    """The meta of the newest checkpoint whose meta reads ({} when none does: restoring
    then names the damage)."""
    for step in reversed(self.manager.all_steps()):
      try:
        return _read_meta(self.directory, step)
      except Exception:  # pylint: disable=broad-except  (a damaged checkpoint)
        continue
    return {}

  def restore(self, abstract_state: TrainState, step: int | None = None):
    """-> (state, meta) from `step` (the latest by default), placed like `abstract_state`."""
    step = self.latest_step() if step is None else step
    abstract = _as_abstract(abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore({'params': abstract.params,
                                        'batch_stats': abstract.batch_stats}),
        train=ocp.args.StandardRestore({'opt_state': abstract.opt_state, 'step': abstract.step}),
        meta=ocp.args.JsonRestore()))
    model, train = restored['model'], restored['train']
    state = TrainState(step=train['step'], params=model['params'],
                       batch_stats=model['batch_stats'], opt_state=train['opt_state'])
    return state, restored['meta']

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  (any storage failure)
      raise self._write_error(self._pending_step, e) from e

  def close(self) -> None:
    """Waits for the last save; after a reported failure, only releases the manager."""
    try:
      if not self._failed:
        self.wait()
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        if not self._failed:
          raise
      if self._failed:
        _release_threads_of_failed_saves()


def complete_steps(directory: str) -> list[int]:
  """The steps of the complete checkpoints (STEP/ folders; partial ones have other names)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def remove_partial_checkpoints(directory: str) -> None:
  """Removes the temporary folders of saves that never finished (a crash, a full disk)."""
  for path in sorted(glob.glob(os.path.join(directory, _PARTIAL_PATTERN))):
    logging.warning('removing %s: a checkpoint whose writing did not finish', path)
    shutil.rmtree(path, ignore_errors=True)


def _free_name(path: str) -> str:
  """`path`, or `path-2`, `path-3`... when it is taken (an earlier corruption of that step)."""
  candidate, n = path, 1
  while os.path.exists(candidate):
    n += 1
    candidate = f'{path}-{n}'
  return candidate


def _storage_error(error: BaseException) -> str:
  """The error at the root of a failed save or restore (orbax and TensorStore wrap it), in
  one line: the OS error, or else TensorStore's status line (e.g. `DATA_LOSS: ...`)."""
  seen, todo = [], [error]
  while todo:
    e = todo.pop(0)
    if e is None or any(e is s for s in seen):
      continue
    seen.append(e)
    if isinstance(e, OSError):
      return str(e)
    todo += [e.__cause__, e.__context__] + list(getattr(e, 'exceptions', ()))
  text = ' '.join(str(e) for e in seen)
  # TensorStore (the arrays) reports "...: No space left on device [os_error_code='28']".
  found = re.search(r":\s*([^:\[\]]+?)\s*\[os_error_code='?(\d+)", text)
  if found:
    return f'[Errno {found.group(2)}] {found.group(1)}'
  status = re.search(r'\b[A-Z]{2,}(?:_[A-Z]+)*: [^\n]+', text)
  if status:
    return status.group(0)[:400]
  lines = [line for line in str(seen[-1]).splitlines() if line.strip()] or [repr(seen[-1])]
  return lines[0][:300]


def _release_threads_of_failed_saves() -> None:
  """A save that failed part way can leave orbax threads waiting for a signal from the
  part that failed (e.g. 'directory created'). They are not daemons: the process would
  hang at exit for orbax's coordination timeout (300 s). Each such thread is cancelled and
  its awaited signals set, so it returns without running."""
  try:
    from orbax.checkpoint._src.futures import future  # pylint: disable=import-outside-toplevel
    # Every one, including those not yet running (a signal set now would let them write).
    threads = [t for t in threading.enumerate() if isinstance(t, future._SignalingThread)]  # pylint: disable=protected-access
    for thread in threads:
      thread.cancel()
    for thread in threads:
      future.set_signals(thread._receive_signals, operation_id=thread._operation_id)  # pylint: disable=protected-access
  except (ImportError, AttributeError) as e:  # another orbax: its threads time out instead
    logging.debug('could not release the threads of a failed save: %s', e)


def _ignore_callbacks_into_closed_loops() -> None:
  """When a save fails, orbax closes its event loop while TensorStore still finishes the
  other writes, whose callbacks into that loop would each print an 'Event loop is closed'
  traceback (the failure itself is reported once, as CheckpointWriteError)."""
  previous = sys.unraisablehook
  if getattr(previous, 'ignores_closed_loops', False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and 'Event loop is closed' in str(unraisable.exc_value)):
      previous(unraisable)

  hook.ignores_closed_loops = True
  sys.unraisablehook = hook


class _DropOrbaxFailures(logging.Filter):
  """orbax logs a failed save or restore, with its traceback, from each thread it passes
  through, and asyncio logs the writes still pending then ('Task exception was never
  retrieved'). The failure reaches the caller as an exception, reported once
  (CheckpointWriteError, or the warning of a checkpoint moved aside): drop those records.
  A restore reads the items concurrently; when one fails, asyncio logs the others' errors
  ('Future exception was never retrieved') whenever they are garbage collected. Raised by
  tensorstore, their tracebacks have no orbax frame, but their messages name the folder."""

  def filter(self, record):
    return not (record.exc_info and (_passes_through_orbax(record)
                                     or _names_a_checkpoint_folder(record)))


def _passes_through_orbax(record) -> bool:
  marker = f'{os.sep}orbax{os.sep}'
  if marker in record.pathname:
    return True
  tb = record.exc_info[2]
  while tb is not None:
    if marker in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


def _names_a_checkpoint_folder(record) -> bool:
  error = str(record.exc_info[1])
  return any(directory in error for directory in _checkpoint_directories)


_checkpoint_directories = set()  # those of this process's Checkpointers


def _quiet_orbax_tracebacks() -> None:
  for name in ('absl', '', 'asyncio'):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropOrbaxFailures) for f in logger.filters):
      logger.addFilter(_DropOrbaxFailures())


def _as_abstract(tree):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      tree)


def find_checkpoint(path: str) -> tuple[str, int]:
  """A pretraining workdir, its checkpoints/ folder or one checkpoints/STEP folder ->
  (checkpoints directory, step). Raises a clear error when there is none."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise PathNotFound(f'config.init_from: {path} does not exist')
  candidates = [os.path.join(path, CHECKPOINT_DIR), path]
  for directory in candidates:
    if os.path.isdir(directory):
      steps = sorted(int(d) for d in os.listdir(directory) if d.isdigit())
      if steps:
        return directory, steps[-1]
  parent, name = os.path.split(path.rstrip('/'))
  if name.isdigit() and os.path.isdir(os.path.join(path, 'model')):
    return parent, int(name)
  raise PathNotFound(
      f'config.init_from: no checkpoint in {path} (expected a pretraining workdir holding '
      f'{CHECKPOINT_DIR}/STEP/, a {CHECKPOINT_DIR}/ folder, or one STEP folder)')


def read_meta(path: str) -> dict:
  directory, step = find_checkpoint(path)
  try:
    return _read_meta(directory, step)
  except Exception as e:  # pylint: disable=broad-except  (any damage to the files)
    raise _unreadable(directory, step, e) from e


def _unreadable(directory: str, step: int, error: Exception) -> CheckpointRestoreError:
  """config.init_from names a checkpoint that does not read: which one, why, and the other
  complete steps there to start from instead."""
  others = [s for s in complete_steps(directory) if s != step]
  instead = (f'; the other complete checkpoints there are steps {others}: pass '
             f'--config.init_from={os.path.join(directory, str(others[-1]))} to start from '
             'one' if others else '')
  return CheckpointRestoreError(
      f'config.init_from: checkpoint step {step} in {directory} does not restore '
      f'({_storage_error(error)}){instead}.')


def _read_meta(directory: str, step: int) -> dict:
  meta_dir = os.path.join(directory, str(step), 'meta')
  for name in ('metadata', 'meta'):
    candidate = os.path.join(meta_dir, name)
    if os.path.isfile(candidate):
      with open(candidate) as f:
        return json.load(f)
  with ocp.CheckpointManager(directory) as manager:
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def restore_model_variables(path: str, abstract_params: Any, abstract_stats: Any):
  """-> (params, batch_stats, meta) of a checkpoint, for evaluation and continued training."""
  directory, step = find_checkpoint(path)
  try:
    with ocp.CheckpointManager(directory) as manager:
      restored = manager.restore(step, args=ocp.args.Composite(
          model=ocp.args.StandardRestore({'params': _as_abstract(abstract_params),
                                          'batch_stats': _as_abstract(abstract_stats)}),
          meta=ocp.args.JsonRestore()))
  except Exception as e:  # pylint: disable=broad-except  (any damage to the files)
    raise _unreadable(directory, step, e) from e
  return restored['model']['params'], restored['model']['batch_stats'], restored['meta']
