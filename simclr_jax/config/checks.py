"""The type and range of every config key, checked when a run starts (cli.run).

`--config.KEY=VALUE` gets its type from ml_collections, but not its range: a zero
log_every_steps or a NaN temperature would otherwise surface as a traceback minutes into
the run. `check(config)` raises one ValueError naming the first bad key, its value and what
was expected. Keys whose meaning depends on the data or the files (paths, class names,
comma-separated lists) are checked where they are used, with messages of the same form.
"""

import math

from simclr_jax.data.augment_params import PRESETS
from simclr_jax.evaluation import run_results as reporting
from simclr_jax.experiments import study_report as report
from simclr_jax.models.resnet import ARCHITECTURES
from simclr_jax.runtime.flat_keys import flatten  # config_checks.flatten: re-exported
from simclr_jax.training.losses import LOSS_NAMES
from simclr_jax.training.optim import LR_SCALINGS, OPTIMIZERS


_INT_MAX = 2**31 - 1  # larger ints overflow in TensorFlow's and NumPy's int32 uses


def _number(kind, low=None, high=None, low_open=False, high_open=False, optional=False):
  """A rule for an int (kind=int) or a float in [low, high] (open ends when asked)."""
  if kind is int and high is None:
    high = _INT_MAX
  name = 'an integer' if kind is int else 'a number'
  bounds = []
  if low is not None:
    bounds.append(f'{">" if low_open else ">="} {low}')
  if high is not None:
    bounds.append(f'{"<" if high_open else "<="} {high}')
  expected = name + (' ' + ' and '.join(bounds) if bounds else '')

  def rule(value):
    if value is None and optional:
      return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
      return expected
    if not math.isfinite(value):
      return expected
    if low is not None and (value <= low if low_open else value < low):
      return expected
    if high is not None and (value >= high if high_open else value > high):
      return expected
    return None

  return rule


def _num_folds(value):
  """study.folds: 0 (one train/val/test split) or K >= 2."""
  if isinstance(value, int) and not isinstance(value, bool) and (value == 0 or value >= 2):
    return None
  return 'an integer: 0 (one train/val/test split) or a number of folds >= 2'


def _choice(*values):
  expected = 'one of ' + ', '.join(repr(v) for v in values)
  return lambda value: None if value in values else expected


def _bool(optional=False):
  return lambda value: None if isinstance(value, bool) or (optional and value is None) \
      else 'True or False'


def _text(value):
  return None if isinstance(value, str) else 'a string'


def _nonempty_text(value):
  return None if isinstance(value, str) and value.strip() else 'a non-empty string'


def _split(value):
  try:
    fractions = [float(f) for f in value]
  except (TypeError, ValueError):
    fractions = []
  ok = (len(fractions) == 3 and all(math.isfinite(f) and f >= 0 for f in fractions)
        and abs(sum(fractions) - 1) <= 1e-6)
  return None if ok else 'three non-negative train/val/test fractions summing to 1'


_POSITIVE_INT = _number(int, 1)
_COUNT = _number(int, 0)
_PROBABILITY = _number(float, 0, 1)
_POSITIVE = _number(float, 0, low_open=True)
_NON_NEGATIVE = _number(float, 0)


def _optimizer_rules(prefix: str) -> dict:
  return {
      f'{prefix}.name': _choice(*OPTIMIZERS),
      f'{prefix}.base_lr': _POSITIVE,
      f'{prefix}.lr_scaling': _choice(*LR_SCALINGS),
      f'{prefix}.weight_decay': _NON_NEGATIVE,
      f'{prefix}.momentum': _number(float, 0, 1, high_open=True),
      f'{prefix}.trust_coefficient': _POSITIVE,
      f'{prefix}.warmup_epochs': _NON_NEGATIVE,
      f'{prefix}.warmup_steps': _COUNT,
  }


# Every key of default_config (a test checks that none is missing).
RULES = {
    'seed': _COUNT,
    'batch_size': _POSITIVE_INT,
    'num_epochs': _COUNT,
    'num_steps': _COUNT,
    'init_from': _text,
    'compute_dtype': _choice('float32', 'bfloat16'),
    'data.name': _nonempty_text,
    'data.path': _text,
    'data.image_size': _number(int, 8, 4096),
    'data.channels': _number(int, 1, 64),
    'data.uint16_max': _POSITIVE_INT,
    'data.extra_unlabeled': _text,
    'data.tfds_data_dir': _text,
    'data.split': _split,
    'data.pretrain_on_test': _bool(),
    'data.strict': _bool(),
    'data.num_synthetic': _POSITIVE_INT,
    'data.synthetic_size': _number(int, 8, 4096),
    'data.seed': _COUNT,
    'data.in_memory_limit_mb': _COUNT,
    'data.shuffle_buffer': _POSITIVE_INT,
    'data.prefetch': _number(int, 0, 64),  # batches held ahead; more only costs memory
    'data.drop_blank_below': _NON_NEGATIVE,
    'data.device_cache_mb': _COUNT,
    'augment.backend': _choice('auto', 'host', 'device'),
    'augment.preset': _choice(*sorted(PRESETS)),
    'augment.crop_area_min': _number(float, 0, 1, low_open=True),
    'augment.crop_area_max': _number(float, 0, 1, low_open=True),
    'augment.crop_aspect_min': _POSITIVE,
    'augment.crop_aspect_max': _POSITIVE,
    'augment.flip_lr': _bool(),
    'augment.flip_ud': _bool(optional=True),
    'augment.rot90': _bool(optional=True),
    'augment.jitter_strength': _number(float, 0, optional=True),
    'augment.jitter_prob': _PROBABILITY,
    'augment.grayscale_prob': _PROBABILITY,
    'augment.blur_prob': _number(float, 0, 1, optional=True),
    'augment.blur_sigma_min': _POSITIVE,
    'augment.blur_sigma_max': _POSITIVE,
    'augment.stain_jitter': _number(float, 0, optional=True),
    'augment.eval_crop_fraction': _number(float, 0, 1, low_open=True, optional=True),
    'model.name': _choice(*sorted(ARCHITECTURES)),
    'model.width': _number(float, 0, 16, low_open=True),
    'model.small_stem': _choice('auto', 'yes', 'no'),
    'model.zero_init_residual': _bool(),
    'model.stride_on': _choice('v1', 'v1.5'),
    'model.input_norm': _choice('none', 'imagenet', 'caffe'),
    'model.head_layers': _number(int, 0, 8),
    'model.head_dim': _POSITIVE_INT,
    'model.head_hidden': _COUNT,
    'model.bn_momentum': _number(float, 0, 1, high_open=True),
    'model.bn_epsilon': _POSITIVE,
    'loss.name': _choice(*LOSS_NAMES),
    'loss.temperature': _POSITIVE,
    'loss.margin': _NON_NEGATIVE,
    'loss.normalize': _bool(),
    **_optimizer_rules('optim'),
    'probe': _bool(),
    'grad_cache_chunk': _COUNT,
    'steps_per_call': _POSITIVE_INT,
    'log_every_steps': _POSITIVE_INT,
    'checkpoint_every_steps': _POSITIVE_INT,
    'keep_checkpoints': _POSITIVE_INT,
    'eval_every_steps': _COUNT,
    'eval_at_end': _bool(),
    'lock_stale_minutes': _POSITIVE,
    'label_fraction': _number(float, 0, 1, low_open=True),
    'finetune_from': _choice('encoder', 'head1'),
    'class_weighting': _bool(),
    'supervised_control': _bool(),
    'eval_batch_size': _POSITIVE_INT,
    'knn_k': _POSITIVE_INT,
    'positive_classes': _text,
    'finetune.num_epochs': _COUNT,
    'finetune.num_steps': _COUNT,
    'finetune.min_steps': _COUNT,
    'finetune.batch_size': _POSITIVE_INT,
    'finetune.augment': _bool(),
    'finetune.eval_every_epochs': _POSITIVE_INT,
    'finetune.patience': _COUNT,
    'finetune.select_metric': _choice(*reporting.SELECT_METRICS),
    'finetune.eval_cache_mb': _COUNT,
    'finetune.linear_init': _bool(),
    'finetune.control_base_lr': _NON_NEGATIVE,
    'finetune.control_num_epochs': _COUNT,
    **_optimizer_rules('finetune.optim'),
    'linear.l2_grid': _nonempty_text,
    'linear.max_iter': _POSITIVE_INT,
    'linear.select_metric': _choice(*reporting.SELECT_METRICS),
    'linear.augment': _bool(),
    'linear.feature_cache': _text,
    'linear.features': _choice('h', 'g'),
    'study.starting_points': _nonempty_text,
    'study.imagenet_weights': _text,
    'study.label_fractions': _nonempty_text,
    'study.seeds': _POSITIVE_INT,
    'study.linear_eval': _bool(),
    'study.pretrain_per_seed': _bool(),
    'study.confidence': _number(float, 0, 1, low_open=True, high_open=True),
    'study.folds': _num_folds,
    'study.pretrain_scope': _choice('fold', 'all'),
    'study.headline': _choice(*report.HEADLINES),
    # comma-separated lists, parsed (with their own messages) by evaluation/findings.py
    'findings.run': _nonempty_text,
    'findings.seeds': _POSITIVE_INT,
    'findings.augmentations': _nonempty_text,
    'findings.head_layers': _nonempty_text,
    'findings.batch_sizes': _nonempty_text,
    'findings.epochs': _nonempty_text,
    'findings.losses': _nonempty_text,
    'findings.loss_temperatures': _nonempty_text,
    'findings.margins': _nonempty_text,
    'findings.temperatures': _nonempty_text,
    'baseline.features': _nonempty_text,
    'baseline.pixel_size': _number(int, 1, 4096),
    'baseline.feature_cache': _text,
    'export.formats': _text,
    'health_monitor': _bool(),
    'distributed.coordinator_address': _text,
    'distributed.num_processes': _number(int, 1, optional=True),
    'distributed.process_id': _number(int, 0, optional=True),
    'distributed.heartbeat_timeout_seconds': _number(int, 5, 3600),
}


def check(config) -> None:
  """Raises ValueError('config.KEY=VALUE: expected ...') for the first bad key."""
  for key, value in flatten(config).items():
    rule = RULES.get(key)
    problem = rule(value) if rule else None
    if problem:
      raise ValueError(f'config.{key}={value!r}: expected {problem}')
  pairs = (('augment.crop_area_min', 'augment.crop_area_max'),
           ('augment.crop_aspect_min', 'augment.crop_aspect_max'),
           ('augment.blur_sigma_min', 'augment.blur_sigma_max'))
  flat = flatten(config)
  for low, high in pairs:
    if low in flat and high in flat and flat[low] > flat[high]:
      raise ValueError(f'config.{low}={flat[low]!r}: expected a value <= config.{high} '
                       f'({flat[high]!r})')
