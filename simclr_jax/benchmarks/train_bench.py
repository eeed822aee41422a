"""The training-step and end-to-end benchmarks behind python -m simclr_jax.bench (its
docstring says what they print)."""

import itertools
import time

import jax
import numpy as np

from simclr_jax.data import device_feed, pipeline, stores, synthetic
from simclr_jax.errors import RunDiverged
from simclr_jax.models import heads
from simclr_jax.runtime import parallel, writers
from simclr_jax.training import (memory_fit, optim, step as pretrain_step, step_blocks, loop,
                                 state as train_state)

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
      stacked = parallel.stacked_sharding(mesh, np.zeros((k, batch)))
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
  from simclr_jax.benchmarks import input_bench  # pylint: disable=g-import-not-at-top
  distinct, _ = synthetic.generate(64, input_bench.source_side(config.data.image_size),
                                   config.data.seed, config.data.channels)
  index = np.arange(num_images)
  return stores.ArrayStore(distinct[index % 64]), (index % _NUM_CLASSES).astype(np.int32)


def benchmark_end_to_end(config, steps: int = 20, warmup: int = 3,
                         num_images: int = 8192) -> dict:
  """The training loop as training/loop.py runs it (loader, augmentation, step, progress report,
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
      values = loop.fetch_metrics(metrics)
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
