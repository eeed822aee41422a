r"""Benchmarks: the training step on device-resident random images, the input pipeline, or
the whole training loop.

  python -m simclr_jax.bench --config=configs/imagenet.py \
      --config.batch_size=256 --config.compute_dtype=bfloat16
  python -m simclr_jax.bench --config=configs/cifar10.py --input
  python -m simclr_jax.bench --config=configs/cifar10.py --end_to_end
  python -m simclr_jax.bench --predict_workdir=W --images=PATH

Prints, last, one JSON line with `images_per_sec` (original images; each gives two views)
and the step's device memory: `peak_device_memory_gib` where JAX reports it (GPU, TPU),
else `step_memory_estimate_gib`, XLA's estimate from the compiled step (CPU).
`--end_to_end` times the loop the trainer runs (the loader of config.augment.backend,
augmentation, the step, and the trainer's per-step bookkeeping) on --num_images uint8
synthetic images in memory, then the step alone on ready-made views, and prints both and
their ratio. `--predict_workdir` times `predict` over the images of --images against the
classifier's forward pass alone (predict_bench.py; no --config). The step and end-to-end benchmarks need no TensorFlow when the backend is
'device' (the default off CPU).
"""

import itertools
import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from simclr_jax import (memory_fit, optim, parallel, pretrain_step, step_blocks, train,
                        train_state, writers)
from simclr_jax import installed
from simclr_jax.data import device_feed, pipeline, stores, synthetic
from simclr_jax.errors import RunDiverged
from simclr_jax.models import heads

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/NAME.py).')
_INPUT = flags.DEFINE_bool('input', False, 'Benchmark the tf.data input pipeline instead.')
_INPUT_SOURCE = flags.DEFINE_enum('input_source', 'memory', ['memory', 'files'],
                                  'Where --input reads images from.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
_SECONDS = flags.DEFINE_float('seconds', 20.0, 'Seconds to measure the input pipeline for.')
_END_TO_END = flags.DEFINE_bool('end_to_end', False,
                                'Time the whole training loop from uint8 images in memory, '
                                'and the step alone.')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 8192,
                                   '--end_to_end: images in the in-memory dataset.')
_PREDICT_WORKDIR = flags.DEFINE_string('predict_workdir', None,
                                       'A classifier workdir: time predict on --images.')
_IMAGES = flags.DEFINE_string('images', None, '--predict_workdir: the images to predict.')
_NUM_CLASSES = 10  # for the online probe, as in a labelled run


class _Prepared:
  """The benchmarks' train state, its sharding and the pretraining update, jitted as the
  trainer jits it."""

  def __init__(self, config, mesh):
    parallel.check_batch_divides(config.batch_size, mesh)
    tx, schedule = optim.make_optimizer(config.optim, config.batch_size, total_steps=10_000,
                                        steps_per_epoch=100)
    graphdef, self.state, self.sharding = train_state.create_train_state(
        lambda rngs: heads.build_simclr_model(config, _NUM_CLASSES, rngs), tx, mesh,
        config.seed)
    self.mesh = mesh
    self.update = pretrain_step.make_pretrain_update(graphdef, tx, schedule, mesh, config)
    self.step = pretrain_step.jit_update(self.update, mesh, self.sharding)

  def stepper(self, feed) -> step_blocks.Stepper:
    return step_blocks.Stepper(self.step, self.update, feed, self.mesh, self.sharding)


class _ReadyViews:
  """A feed of one batch of random views already on the devices, repeated: the step alone.
  With steps_per_call K > 1 every item is a block of K steps of it."""

  consts = ()
  prepare = staticmethod(device_feed.HostFeed.prepare)

  def __init__(self, config, mesh):
    batch, size, k = config.batch_size, config.data.image_size, config.steps_per_call
    channels = config.data.channels
    key_views, key_labels = jax.random.split(jax.random.key(config.seed))
    if k == 1:
      self.item = jax.jit(lambda: {
          'views': jax.random.uniform(key_views, (batch, 2, size, size, channels)),
          'label': jax.random.randint(key_labels, (batch,), -1, _NUM_CLASSES)},
          out_shardings=parallel.batch_sharding(mesh))()
    else:
      stacked = step_blocks.stacked_sharding(mesh, np.zeros((k, batch)))
      block = jax.jit(lambda: {
          'views': jax.random.uniform(key_views, (k, batch, 2, size, size, channels)),
          'label': jax.random.randint(key_labels, (k, batch), -1, _NUM_CLASSES)},
          out_shardings=stacked)()
      block['step'] = jax.device_put(np.arange(k, dtype=np.int32), parallel.replicated(mesh))
      self.item = {'block': block}

  def __next__(self):
    return self.item


def _advance(stepper, state, feed, min_steps: int, on_step=None):
  """Calls the stepper on the feed's items until at least min_steps steps are done."""
  done, metrics = 0, None
  while done < min_steps:
    state, metrics, count = stepper(state, next(feed))
    done += count
    if on_step is not None:
      on_step(done, metrics)
  return state, metrics, done


def benchmark_train_step(config, steps: int = 20, warmup: int = 3, prepared=None) -> dict:
  """Times the full pretraining step (global BN, sharded loss, probe, LARS update), with
  config.steps_per_call steps per jitted call. `prepared`: a _Prepared already built and
  compiled (the end-to-end benchmark's)."""
  prepared = prepared or _Prepared(config, parallel.make_mesh())
  mesh, state = prepared.mesh, prepared.state
  batch, size = config.batch_size, config.data.image_size
  feed = _ReadyViews(config, mesh)
  stepper = prepared.stepper(feed)

  start = time.perf_counter()
  state, metrics, _ = _advance(stepper, state, feed, 1)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, metrics, _ = _advance(stepper, state, feed, warmup)
  jax.block_until_ready(metrics)
  start, cpu_start = time.perf_counter(), time.process_time()
  state, metrics, steps = _advance(stepper, state, feed, steps)
  jax.block_until_ready((state, metrics))
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  prepared.state = state
  if not np.isfinite(float(metrics['loss'])):
    raise RunDiverged(f'non-finite loss in the benchmark: {float(metrics["loss"])}')
  # Measured where JAX reports device memory; XLA's estimate for the single step elsewhere.
  memory = ({} if 'block' in feed.item and not memory_fit.device_memory()
            else memory_fit.step_memory(prepared.step, state, feed.item))
  return {
      **memory,
      'images_per_sec': round(batch * steps / elapsed, 1),
      'step_ms': round(1000 * elapsed / steps, 2),
      # CPU time of this process (all its threads) per step: on a CPU shared with other
      # work, wall time measures the other work too; this does not.
      'cpu_step_ms': round(1000 * cpu / steps, 2),
      'steps_per_call': config.steps_per_call,
      'compile_s': round(compile_s, 1),
      'devices': mesh.devices.size,
      'device_kind': jax.devices()[0].device_kind,
      'batch_size': batch,
      'image_size': size,
      'model': f'{config.model.name}x{config.model.width:g}',
      'compute_dtype': config.compute_dtype,
  }


def in_memory_store(config, num_images: int):
  """uint8 synthetic cells (64 distinct ones, repeated) at the input benchmark's source
  side (the image size, or 256 px for 224 px views), and cycling labels."""
  from simclr_jax.data import input_bench  # pylint: disable=g-import-not-at-top
  distinct, _ = synthetic.generate(64, input_bench.source_side(config.data.image_size),
                                   config.data.seed, config.data.channels)
  index = np.arange(num_images)
  return stores.ArrayStore(distinct[index % 64]), (index % _NUM_CLASSES).astype(np.int32)


def benchmark_end_to_end(config, steps: int = 20, warmup: int = 3,
                         num_images: int = 8192) -> dict:
  """The training loop as train.py runs it (loader, augmentation, step, progress report,
  metrics fetched every config.log_every_steps), timed over `steps` steps after compiling
  and `warmup` steps; then the loader alone and the step alone, and the ratio of the
  end-to-end and step-only throughputs."""
  mesh = parallel.make_mesh()
  store, labels = in_memory_store(config, num_images)
  prepared = _Prepared(config, mesh)
  k = config.steps_per_call
  # One step (compiled first, as the trainer's remainders are), then blocks of k; with k
  # dividing log_every_steps this is the trainer's schedule.
  blocks = None if k == 1 else itertools.chain([1], itertools.repeat(k))
  feed = device_feed.pretrain_feed(config, store, labels, mesh, block_sizes=blocks)
  stepper = prepared.stepper(feed)
  progress = writers.create_progress(1 << 40, writers.LoggingWriter(),
                                     use_clu=pipeline.augment_backend(config) == 'host')
  position = {'phase_start': 0, 'last': 0}

  def bookkeeping(count, metrics):  # what the trainer does after each call
    done = position['phase_start'] + count
    progress(done)
    if done // config.log_every_steps > position['last'] // config.log_every_steps:
      values = train.fetch_metrics(metrics)
      if values['finite'] < 1:
        raise RunDiverged(f'non-finite loss in the benchmark at step {done}')
    position['last'] = done

  def phase(state, min_steps):
    state, metrics, count = _advance(stepper, state, feed, min_steps, bookkeeping)
    position['phase_start'] += count
    return state, metrics, count

  start = time.perf_counter()
  state, metrics, _ = phase(prepared.state, 1)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  state, _, _ = phase(state, warmup)
  jax.block_until_ready(state)
  start = time.perf_counter()
  state, metrics, steps = phase(state, steps)
  jax.block_until_ready((state, metrics))
  elapsed = time.perf_counter() - start
  feed.close()
  # The loader alone (gather, transfer, augmentation), one step per call: where the time
  # goes when the ratio falls short.
  loader = device_feed.pretrain_feed(config, store, labels, mesh)
  start = time.perf_counter()
  for _ in range(steps):
    batch = next(loader)
  jax.block_until_ready(batch)  # the views of one step after another: the last is enough
  loader_s = time.perf_counter() - start
  loader.close()
  prepared.state = state
  step_only = benchmark_train_step(config, steps, warmup, prepared=prepared)
  rate = config.batch_size * steps / elapsed
  return dict(step_only, **{
      'end_to_end_images_per_sec': round(rate, 1),
      'end_to_end_step_ms': round(1000 * elapsed / steps, 2),
      'step_only_images_per_sec': step_only['images_per_sec'],
      'ratio': round(rate / step_only['images_per_sec'], 3),
      'end_to_end_seconds': round(elapsed, 3), 'end_to_end_steps': steps,
      'end_to_end_compile_s': round(compile_s, 1),
      'loader_only_images_per_sec': round(config.batch_size * steps / loader_s, 1),
      'backend': pipeline.augment_backend(config),
      'device_resident': bool(getattr(loader, 'resident', False)),
      'num_images': num_images, 'source_side': int(store.images.shape[1]),
      'augment_preset': config.augment.preset,
      'blur_prob': pipeline.augment_params.resolve_params(config).blur_prob,
  })


def main(argv):
  del argv
  if _PREDICT_WORKDIR.value:
    if not _IMAGES.value:
      raise app.UsageError('--predict_workdir needs --images=PATH')
    from simclr_jax import predict_bench, run_errors  # pylint: disable=g-import-not-at-top
    with run_errors.one_line_errors():
      result = predict_bench.benchmark_predict(_PREDICT_WORKDIR.value, _IMAGES.value)
    print(json.dumps(result), flush=True)
    return
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/NAME.py is required')
  if _INPUT.value and _END_TO_END.value:
    raise app.UsageError('--input and --end_to_end are different benchmarks: pick one')
  if _INPUT.value:
    from simclr_jax.data import input_bench  # pylint: disable=g-import-not-at-top (needs TF)
    result = input_bench.measure_input_throughput(config, source=_INPUT_SOURCE.value,
                                                  seconds=_SECONDS.value)
  elif _END_TO_END.value:
    result = benchmark_end_to_end(config, _STEPS.value, _WARMUP.value, _NUM_IMAGES.value)
  else:
    result = benchmark_train_step(config, _STEPS.value, _WARMUP.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=installed.parse_flags)
