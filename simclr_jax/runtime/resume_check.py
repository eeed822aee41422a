"""What may change when a pretraining workdir is resumed with another config.

Every checkpoint records the config its run started with. On resume the new config is
compared with it, key by key:
- keys that say how long to run, how often to log, save or evaluate, how evaluation and
  the study run, where caches are and how the processes meet (MAY_CHANGE) may differ: each
  change is logged. A new num_steps / num_epochs recomputes the learning-rate schedule
  for the new length; the steps already done are kept.
- every other key shapes the checkpoint's arrays or gives them their meaning: the model and
  head, image size, augmentation, dataset and split, loss, optimizer, seeds, and also
  batch_size (the learning-rate scaling, the steps per epoch and the data position all
  depend on it). Any difference stops the run with one line listing each key, its saved
  and its new value, and the ways out.
"""

import json
import logging

from simclr_jax.config.checks import flatten
from simclr_jax.runtime.run_errors import RunStopped

# Keys, or prefixes of keys (ending in '.'), that may differ from the checkpoint's.
MAY_CHANGE = (
    'num_steps', 'num_epochs', 'log_every_steps', 'checkpoint_every_steps',
    'keep_checkpoints', 'eval_every_steps', 'eval_at_end', 'eval_batch_size', 'knn_k',
    'lock_stale_minutes', 'init_from', 'grad_cache_chunk', 'steps_per_call', 'data.prefetch',
    'data.in_memory_limit_mb', 'data.device_cache_mb', 'data.tfds_data_dir', 'data.strict',
    'label_fraction',
    'finetune_from', 'class_weighting', 'supervised_control', 'positive_classes',
    'finetune.', 'linear.', 'study.', 'findings.', 'baseline.', 'export.', 'health_monitor', 'distributed.',
)


def _may_change(key: str) -> bool:
  return any(key == k or (k.endswith('.') and key.startswith(k)) for k in MAY_CHANGE)


def _comparable(value):
  """JSON's view of a value: the saved config went through JSON (tuples became lists)."""
  return json.loads(json.dumps(value, default=str))


def differences(saved: dict, new: dict) -> list[tuple[str, object, object]]:
  """(key, saved value, new value) for each key both configs have and that differs. A key
  the saved config lacks (added to the project since) is not compared."""
  saved, new = flatten(saved), flatten(new)
  return [(k, saved[k], new[k]) for k in sorted(new)
          if k in saved and _comparable(saved[k]) != _comparable(new[k])]


def check(saved_json: str, config, checkpoint_dir: str, step: int, workdir: str) -> None:
  """Logs the allowed changes; raises RunStopped listing the others."""
  changed = differences(json.loads(saved_json), config.to_dict())
  for key, old, value in changed:
    if _may_change(key):
      logging.info('resuming with config.%s=%r (the checkpoint was made with %r)',
                   key, value, old)
  refused = [(k, old, value) for k, old, value in changed if not _may_change(k)]
  if refused:
    listing = '; '.join(f'{k} saved {old!r}, new {value!r}' for k, old, value in refused)
    raise RunStopped(
        f'the config differs from the one checkpoint step {step} in {checkpoint_dir} was '
        f'made with: {listing}. Resume with the saved values, or start a new --workdir '
        f'(--config.init_from={workdir} starts it from this checkpoint).')
