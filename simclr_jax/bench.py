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

import json

from absl import app, flags
from ml_collections import config_flags

from simclr_jax.benchmarks import train_bench
from simclr_jax.runtime import console, installed, run_errors

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


def main(argv):
  del argv
  console.keep_quiet(verbose=False)  # before JAX starts its backends (and logs them)
  if _PREDICT_WORKDIR.value:
    if not _IMAGES.value:
      raise app.UsageError('--predict_workdir needs --images=PATH')
    from simclr_jax.benchmarks import predict_bench  # pylint: disable=g-import-not-at-top
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
    from simclr_jax.benchmarks import input_bench  # pylint: disable=g-import-not-at-top (needs TF)
    result = input_bench.measure_input_throughput(config, source=_INPUT_SOURCE.value,
                                                  seconds=_SECONDS.value)
  elif _END_TO_END.value:
    result = train_bench.benchmark_end_to_end(config, _STEPS.value, _WARMUP.value,
                                              _NUM_IMAGES.value)
  else:
    result = train_bench.benchmark_train_step(config, _STEPS.value, _WARMUP.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main, flags_parser=installed.parse_flags)
