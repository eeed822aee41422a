"""SimCLR pretraining: `train_and_evaluate(config, workdir)`, called by `simclr_jax.pretrain`.

A run started again with the same workdir resumes from its latest checkpoint (model,
optimizer, step and data position; the step itself draws no random numbers, and the data
of step k depends only on k), so k steps, a stop and k more end with the same parameters
as 2k steps in one go. A damaged newest checkpoint is moved aside and the newest one
that restores is used (checkpoint.py). SIGTERM (a preempted VM) saves a checkpoint and
ends the run cleanly; a non-finite loss stops it, keeping the last good checkpoint; a
batch that does not fit in memory stops it with one line (memory_fit.py). A resume whose
config changes what the checkpoint means is refused (resume_check.py).
"""

import dataclasses
import json
import logging
import os
import signal
import time

import jax
from flax import nnx

from simclr_jax.config import checks as config_checks
from simclr_jax.data import device_feed, pipeline
from simclr_jax.errors import RunDiverged, UserError
from simclr_jax.models import encoder_export, heads
from simclr_jax.runtime import console, distributed, metrics, parallel, resume_check, writers
from simclr_jax.training import (checkpoint, features, health, init_from, memory_fit, optim,
                                 representation_check, state as train_state,
                                 step as pretrain_step, step_blocks)


@dataclasses.dataclass
class RunSize:
  steps_per_epoch: int
  total_steps: int


def run_size(config, num_images: int) -> RunSize:
  if config.batch_size <= 0:
    raise UserError(f'config.batch_size must be positive, got {config.batch_size}')
  steps_per_epoch = max(num_images // config.batch_size, 1)
  total = config.num_steps if config.num_steps > 0 else config.num_epochs * steps_per_epoch
  if total <= 0:
    raise UserError('set config.num_steps or config.num_epochs to a positive number '
                    f'(got num_steps={config.num_steps}, num_epochs={config.num_epochs})')
  return RunSize(steps_per_epoch, int(total))


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and stopping')
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def fetch_metrics(metrics_tree) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics_tree).items()}


def _stop_if_not_finite(values: dict, step: int, ckpt: checkpoint.Checkpointer, workdir: str):
  if values['finite'] >= 1.0:
    return
  ckpt.wait()
  last = ckpt.latest_step()
  message = (f'non-finite loss or gradient at step {step} (loss={values["loss"]}); the run '
             f'stopped. The last good checkpoint is step {last} in {ckpt.directory}. Lower '
             'config.optim.base_lr, raise config.loss.temperature or use '
             "config.compute_dtype='float32', then start again with the same workdir.")
  if jax.process_index() == 0:
    metrics.write_metrics_json(workdir, {'status': 'stopped_non_finite', 'step': step,
                                         'last_good_checkpoint': last})
  raise RunDiverged(message)


def _check_resume_config(config, workdir: str, ckpt: checkpoint.Checkpointer) -> None:
  """Stops a resume whose config changes what the checkpoint means (resume_check.py)."""
  saved = ckpt.saved_meta().get('config')
  if saved is None:
    return
  # The run took its model settings from init_from; take them again to compare like with like.
  if config.init_from and config.init_from == json.loads(saved).get('init_from') and \
      os.path.exists(config.init_from):
    init_from.adopt_model_settings(config)
  resume_check.check(saved, config, ckpt.directory, ckpt.latest_step(), workdir)


def train_and_evaluate(config, workdir: str) -> dict:
  """Pretrains f and g with SimCLR; returns (and writes to WORKDIR/metrics.json) results."""
  os.makedirs(workdir, exist_ok=True)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints)
  resuming = ckpt.latest_step() is not None
  if resuming:
    _check_resume_config(config, workdir, ckpt)
  else:
    init_from.adopt_model_settings(config)
  encoder_export.check_formats(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(config.batch_size, mesh)
  info = pipeline.dataset_info(config, workdir)
  size = run_size(config, info.num_pretrain)
  tx, schedule = optim.make_optimizer(config.optim, config.batch_size, size.total_steps,
                                      size.steps_per_epoch)

  def build(rngs):
    return heads.build_simclr_model(config, info.num_classes, rngs)

  def load_starting_point(graphdef, params, stats):
    model = nnx.merge(graphdef, params, stats)
    init_from.load_into(model, config)
    _, params, stats = train_state.split_model(model)
    return params, stats

  graphdef, state, state_sharding = train_state.create_train_state(
      build, tx, mesh, config.seed,
      prepare_params=None if resuming or not config.init_from else load_starting_point)
  if resuming:
    state, _ = ckpt.restore_newest_good(state)
    console.say(f'resumed from step {int(state.step)} in {ckpt.directory}')
  meta = {'config': config.to_json(), 'probe_classes': info.num_classes if config.probe else 0}

  update = pretrain_step.make_pretrain_update(graphdef, tx, schedule, mesh, config)
  step_fn = pretrain_step.jit_update(update, mesh, state_sharding)
  is_main = jax.process_index() == 0
  # clu's TensorFlow writers where the host pipeline runs TensorFlow anyway.
  use_clu = pipeline.augment_backend(config) == 'host'
  writer = writers.create_writer(workdir, just_logging=not is_main, use_clu=use_clu)
  start_step = int(jax.device_get(state.step))
  if start_step == 0:
    writer.write_hparams(_flat_config(config))
  logging.info('pretraining %s for %d steps (%d per epoch) on %d devices, %d images, '
               'augmenting on the %s', config.model.name, size.total_steps,
               size.steps_per_epoch, mesh.devices.size, info.num_pretrain,
               'host' if use_clu else 'device')

  store, labels = pipeline.pretrain_pool(config, workdir)
  data = device_feed.pretrain_feed(config, store, labels, mesh, start_step=start_step,
                                   block_sizes=_block_sizes(config, start_step, size))
  stepper = step_blocks.Stepper(step_fn, update, data, mesh, state_sharding)
  monitor = (features.make_encode_fn(graphdef, mesh)
             if config.eval_every_steps > 0 and info.num_classes > 1 and info.num_test else None)
  health_monitor = health.HealthMonitor(graphdef, mesh, config)
  progress = writers.create_progress(size.total_steps, writer, use_clu=use_clu)
  bar = console.Progress(size.total_steps, 'pretrain', 'steps', images_per_unit=config.batch_size,
                         every=config.log_every_steps, warmup=1)
  preemption = _Preemption()
  last_values, status = {}, 'completed'
  window_start, window_steps = time.perf_counter(), 0
  done = start_step
  # A lost process ends this one with a line saying where the run stands (peer_watchdog).
  distributed.report_status(lambda: distributed.run_status(
      done, (checkpoint.complete_steps(ckpt.directory) or [None])[-1], ckpt.directory))
  try:
    while done < size.total_steps:
      item = next(data)
      state, step_metrics, count = stepper(state, item)
      window_steps += count
      done += count
      progress(done)
      log_now = done % config.log_every_steps == 0 or done == size.total_steps
      stop = preemption.requested
      save_now = done % config.checkpoint_every_steps == 0 or stop
      if log_now or save_now:
        values = fetch_metrics(step_metrics)
        _stop_if_not_finite(values, done, ckpt, workdir)
        elapsed = time.perf_counter() - window_start
        values['images_per_sec'] = window_steps * config.batch_size / elapsed
        values['step_ms'] = 1000 * elapsed / window_steps
        # Its time is in no window.
        values.update(health_monitor(state, data.last_batch(item), done))
        window_start, window_steps = time.perf_counter(), 0
        writer.write_scalars(done, values)
        last_values = values
        logging.info('step %d/%d  loss %.4f  contrastive acc %.3f  probe acc %s  %.0f img/s',
                     done, size.total_steps, values['loss'], values['contrastive_acc'],
                     f"{values['probe_acc']:.3f}" if 'probe_acc' in values else '-',
                     values['images_per_sec'])
      bar.update(done, {'loss': last_values.get('loss')})
      if monitor is not None and done % config.eval_every_steps == 0:
        knn_top1 = representation_check.knn_accuracy(
            config, workdir, monitor, state.params, state.batch_stats, mesh)
        writer.write_scalars(done, {'knn_top1': knn_top1})
        logging.info('step %d: kNN top-1 %.3f', done, knn_top1)
      if save_now:
        ckpt.save(state, dict(meta, data_position=done))
      if stop:
        status = 'preempted'
        break
    else:
      values = fetch_metrics(step_metrics) if size.total_steps > start_step else last_values
      if values:
        _stop_if_not_finite(values, int(jax.device_get(state.step)), ckpt, workdir)
      ckpt.save(state, dict(meta, data_position=int(jax.device_get(state.step))), force=True)
  except jax.errors.JaxRuntimeError as e:
    if memory_fit.is_out_of_memory(e):
      raise memory_fit.batch_does_not_fit(e, config, mesh.devices.size) from e
    lost = distributed.lost_process_error(e, done, ckpt.latest_step(), ckpt.directory)
    if lost:
      raise lost from e
    raise
  finally:
    bar.close()
    data.close()
    preemption.restore()
    ckpt.close()
    writer.flush()

  results = {'status': status, 'step': int(jax.device_get(state.step)),
             'total_steps': size.total_steps, 'num_pretrain': info.num_pretrain,
             'batch_size': config.batch_size, 'devices': mesh.devices.size}
  results.update({k: v for k, v in last_values.items() if k != 'finite'})
  results.update(health_monitor.summary())
  if status == 'completed' and config.eval_at_end:
    random_init = train_state.split_model(build(nnx.Rngs(config.seed)))[1:]
    results.update(_evaluate_representation(config, workdir, graphdef, state, random_init,
                                            mesh, info, writer))
  if status == 'completed' and is_main:
    encoder_export.export_encoder(workdir, train_state.merge(graphdef, state), config)
    encoder_export.export_encoder_formats(
        workdir, encoder_export.parse_formats(config.export.formats))
  if is_main:
    metrics.write_metrics_json(workdir, results)
  writer.close()
  return results


def _evaluate_representation(config, workdir, graphdef, state, random_init, mesh, info,
                             writer) -> dict:
  """The frozen-feature probe of the trained encoder vs the same network at its random
  initialisation (labelled data only)."""
  if info.num_classes < 2 or info.num_test == 0:
    return {}
  console.say('checking the representation on the test split: kNN and a linear probe on '
              'frozen features, against the same network at random init')
  check = representation_check.compare_with_random(
      config, workdir, graphdef, (state.params, state.batch_stats), random_init, mesh)
  results = {k: check[k] for k in ('knn_top1', 'probe_test_top1',
                                   'random_encoder_probe_test_top1')}
  writer.write_scalars(int(jax.device_get(state.step)), results)
  return results


def _block_sizes(config, start_step: int, size: RunSize):
  """The steps of each jitted call (step_blocks.py); None for one step per call."""
  if config.steps_per_call == 1:
    return None
  periods = (config.log_every_steps, config.checkpoint_every_steps, config.eval_every_steps)
  return step_blocks.block_sizes(start_step, size.total_steps, config.steps_per_call, periods)


def _flat_config(config) -> dict:
  """The config as TensorBoard hparams: scalars as they are, anything else as text."""
  return {k: v if isinstance(v, (int, float, str, bool)) else str(v)
          for k, v in config_checks.flatten(config).items()}
