"""Checkpoints with orbax: the model, the optimizer and the run's record, saved together.

A checkpoint `WORKDIR/checkpoints/STEP/` holds three items, so that evaluation can read
the encoder without building the optimizer:
  model: {'params', 'batch_stats'}   train: {'opt_state', 'step'}   meta: JSON
`meta` holds the config the run was started with (to rebuild the model) and the data
position, so a resumed run goes on exactly where it stopped.
"""

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from simclr_jax.train_state import TrainState

CHECKPOINT_DIR = 'checkpoints'


class Checkpointer:
  """Asynchronous saves every N steps and at the end, keeping the last K."""

  def __init__(self, workdir: str, keep: int = 3, asynchronous: bool = True):
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=asynchronous))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, state: TrainState, meta: dict, force: bool = False) -> None:
    step = int(jax.device_get(state.step))
    if step in self.manager.all_steps():
      return
    self.manager.save(step, args=ocp.args.Composite(
        model=ocp.args.StandardSave({'params': state.params, 'batch_stats': state.batch_stats}),
        train=ocp.args.StandardSave({'opt_state': state.opt_state, 'step': state.step}),
        meta=ocp.args.JsonSave(meta)), force=force)

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
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _as_abstract(tree):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      tree)


def find_checkpoint(path: str) -> tuple[str, int]:
  """A pretraining workdir, its checkpoints/ folder or one checkpoints/STEP folder ->
  (checkpoints directory, step). Raises a clear error when there is none."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f'config.init_from: {path} does not exist')
  candidates = [os.path.join(path, CHECKPOINT_DIR), path]
  for directory in candidates:
    if os.path.isdir(directory):
      steps = sorted(int(d) for d in os.listdir(directory) if d.isdigit())
      if steps:
        return directory, steps[-1]
  parent, name = os.path.split(path.rstrip('/'))
  if name.isdigit() and os.path.isdir(os.path.join(path, 'model')):
    return parent, int(name)
  raise FileNotFoundError(
      f'config.init_from: no checkpoint in {path} (expected a pretraining workdir holding '
      f'{CHECKPOINT_DIR}/STEP/, a {CHECKPOINT_DIR}/ folder, or one STEP folder)')


def read_meta(path: str) -> dict:
  directory, step = find_checkpoint(path)
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
  with ocp.CheckpointManager(directory) as manager:
    restored = manager.restore(step, args=ocp.args.Composite(
        model=ocp.args.StandardRestore({'params': _as_abstract(abstract_params),
                                        'batch_stats': _as_abstract(abstract_stats)}),
        meta=ocp.args.JsonRestore()))
  return restored['model']['params'], restored['model']['batch_stats'], restored['meta']
