r"""Benchmarks: the training step on device-resident random images, or the input pipeline.

  python -m simclr_jax.bench --config=configs/imagenet.py \
      --config.batch_size=256 --config.compute_dtype=bfloat16
  python -m simclr_jax.bench --config=configs/cifar10.py --input

Prints, last, one JSON line with `images_per_sec` (original images; each gives two views).
The step benchmark needs no TensorFlow, so it runs unchanged on any JAX machine.
"""

import json
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from simclr_jax import optim, parallel, pretrain_step, train_state
from simclr_jax.models import heads

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (configs/NAME.py).')
_INPUT = flags.DEFINE_bool('input', False, 'Benchmark the tf.data input pipeline instead.')
_INPUT_SOURCE = flags.DEFINE_enum('input_source', 'memory', ['memory', 'files'],
                                  'Where --input reads images from.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_WARMUP = flags.DEFINE_integer('warmup', 3, 'Untimed steps after compilation.')
_SECONDS = flags.DEFINE_float('seconds', 20.0, 'Seconds to measure the input pipeline for.')
_NUM_CLASSES = 10  # for the online probe, as in a labelled run


def benchmark_train_step(config, steps: int = 20, warmup: int = 3) -> dict:
  """Times the full pretraining step (global BN, sharded loss, probe, LARS update)."""
  mesh = parallel.make_mesh()
  batch, size = config.batch_size, config.data.image_size
  parallel.check_batch_divides(batch, mesh)
  tx, schedule = optim.make_optimizer(config.optim, batch, total_steps=10_000,
                                      steps_per_epoch=100)
  graphdef, state, state_sharding = train_state.create_train_state(
      lambda rngs: heads.build_simclr_model(config, _NUM_CLASSES, rngs), tx, mesh, config.seed)
  step = pretrain_step.make_pretrain_step(graphdef, tx, schedule, mesh, state_sharding, config)

  key_views, key_labels = jax.random.split(jax.random.key(config.seed))
  make_batch = jax.jit(lambda: {
      'views': jax.random.uniform(key_views, (batch, 2, size, size, 3)),
      'label': jax.random.randint(key_labels, (batch,), -1, _NUM_CLASSES)},
      out_shardings=parallel.batch_sharding(mesh))
  data = make_batch()

  start = time.perf_counter()
  state, metrics = step(state, data)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = step(state, data)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, data)
  jax.block_until_ready((state, metrics))
  elapsed = time.perf_counter() - start
  if not np.isfinite(float(metrics['loss'])):
    raise FloatingPointError(f'non-finite loss in the benchmark: {float(metrics["loss"])}')
  return {
      'images_per_sec': round(batch * steps / elapsed, 1),
      'step_ms': round(1000 * elapsed / steps, 2),
      'compile_s': round(compile_s, 1),
      'devices': mesh.devices.size,
      'device_kind': jax.devices()[0].device_kind,
      'batch_size': batch,
      'image_size': size,
      'model': f'{config.model.name}x{config.model.width:g}',
      'compute_dtype': config.compute_dtype,
  }


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/NAME.py is required')
  if _INPUT.value:
    from simclr_jax.data import input_bench  # pylint: disable=g-import-not-at-top (needs TF)
    result = input_bench.measure_input_throughput(config, source=_INPUT_SOURCE.value,
                                                  seconds=_SECONDS.value)
  else:
    result = benchmark_train_step(config, _STEPS.value, _WARMUP.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
