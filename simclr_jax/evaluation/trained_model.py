"""A finished run as a model to apply to new images.

Fine-tuning and linear evaluation end by writing WORKDIR/classifier/: `variables.npz`
(every parameter and batch-norm statistic of the whole classifier, keyed by its path, as
WORKDIR/encoder/ holds the encoder's) and `config.json` (the run's config, its class names
and its protocol). A pretraining workdir offers its encoder and projection head from the
last checkpoint, loaded exactly as linear evaluation loads them.
"""

import dataclasses
import json
import os

import jax
import ml_collections
from flax import nnx

from simclr_jax.errors import PathNotFound, UserError
from simclr_jax.evaluation import networks
from simclr_jax.models import variable_files
from simclr_jax.runtime import parallel
from simclr_jax.training import checkpoint, init_from, state as train_state

CLASSIFIER_DIR = 'classifier'
# metrics.json's `protocol` -> the network that protocol trains.
CLASSIFIERS = {'finetune': networks.FineTuneModel, 'supervised': networks.FineTuneModel,
               'linear': networks.LinearProbeModel}


@dataclasses.dataclass
class TrainedRun:
  """A model replicated on a mesh, with what it needs to preprocess and name its outputs."""
  graphdef: object
  params: object
  batch_stats: object
  config: ml_collections.ConfigDict  # the run's config (data keys: how images are prepared)
  class_names: tuple[str, ...]  # () for a pretraining
  protocol: str  # 'finetune' | 'supervised' | 'linear' | 'pretrain'


def save_classifier(workdir: str, model: nnx.Module, config, class_names,
                    protocol: str) -> str:
  """Writes WORKDIR/classifier/ for a trained `model`; returns the folder."""
  out = os.path.join(workdir, CLASSIFIER_DIR)
  os.makedirs(out, exist_ok=True)
  variable_files.save_variables(os.path.join(out, 'variables.npz'), model)
  record = {'protocol': protocol, 'class_names': list(class_names),
            'config': json.loads(config.to_json())}
  tmp = os.path.join(out, 'config.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, os.path.join(out, 'config.json'))
  return out


def _read_classifier_record(workdir: str) -> dict:
  with open(os.path.join(workdir, CLASSIFIER_DIR, 'config.json')) as f:
    return json.load(f)


def load_classifier_module(workdir: str) -> tuple[nnx.Module, dict]:
  """(the classifier as an NNX module in inference mode, its config.json record)."""
  record = _read_classifier_record(workdir)
  config = ml_collections.ConfigDict(record['config'])
  model = CLASSIFIERS[record['protocol']](config, len(record['class_names']), nnx.Rngs(0))
  variable_files.load_variables(os.path.join(workdir, CLASSIFIER_DIR, 'variables.npz'), model)
  model.eval()
  return model, record


def has_classifier(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, CLASSIFIER_DIR, 'config.json'))


def _is_pretraining(workdir: str) -> bool:
  try:
    checkpoint.find_checkpoint(workdir)
    return True
  except FileNotFoundError:
    return False


def _runs_below(workdir: str, limit: int = 200) -> list[str]:
  """Sub-folders holding a classifier (a study's runs), sorted."""
  found = []
  for root, dirs, _ in os.walk(workdir):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d != CLASSIFIER_DIR)
    if root != workdir and has_classifier(root):
      found.append(root)
      dirs[:] = []
    if len(found) >= limit:
      break
  return found


def check_classifier_workdir(workdir: str) -> None:
  """One clear error when `workdir` holds no classifier, saying what it holds instead."""
  if not os.path.isdir(workdir):
    raise PathNotFound(f'--workdir={workdir}: no such folder')
  if has_classifier(workdir):
    return
  if _is_pretraining(workdir):
    raise UserError(f'--workdir={workdir} is a pretraining run: it has an encoder but no '
                    'classifier. Train one with python -m simclr_jax.finetune (or '
                    f'linear_eval) --config.init_from={workdir}, and pass that workdir')
  runs = _runs_below(workdir)
  if runs:
    raise UserError(f'--workdir={workdir} holds {len(runs)} trained runs (a study); name '
                    f'one of them, e.g. --workdir={runs[0]}')
  raise UserError(f'--workdir={workdir} holds no trained classifier ({CLASSIFIER_DIR}/ '
                  'is written at the end of python -m simclr_jax.finetune and linear_eval)')


def load_classifier(workdir: str, mesh) -> TrainedRun:
  """A fine-tuning or linear-evaluation workdir's classifier, replicated on `mesh`."""
  check_classifier_workdir(workdir)
  model, record = load_classifier_module(workdir)
  graphdef, params, stats = train_state.split_model(model)
  params, stats = jax.device_put((params, stats), parallel.replicated(mesh))
  return TrainedRun(graphdef, params, stats, ml_collections.ConfigDict(record['config']),
                    tuple(record['class_names']), record['protocol'])


def load_encoder(workdir: str, mesh, with_head: bool = False) -> TrainedRun:
  """Any workdir with an encoder: a classifier's (with its projection head when the run
  has one), or a pretraining's last checkpoint, loaded as linear evaluation loads it
  (with the projection head when `with_head`)."""
  if not os.path.isdir(workdir):
    raise PathNotFound(f'--workdir={workdir}: no such folder')
  if has_classifier(workdir):
    run = load_classifier(workdir, mesh)
    if with_head and getattr(nnx.merge(run.graphdef, run.params, run.batch_stats), 'head',
                             None) is None:
      raise UserError(f'--workdir={workdir}: this classifier has no projection head, so '
                      'there is no z; give its pretraining workdir for z')
    return run
  if not _is_pretraining(workdir):
    check_classifier_workdir(workdir)  # raises, naming what the folder holds
  config = init_from.pretrain_config_of(workdir)
  with config.unlocked():
    config.init_from = workdir
    config.supervised_control = False
    config.linear.features = 'g' if with_head else 'h'
  graphdef, params, stats = networks.encoder_variables(config, mesh)
  return TrainedRun(graphdef, params, stats, config, (), 'pretrain')
