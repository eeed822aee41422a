r"""Input pipeline throughput: images per second (two views each), and per core.

  python -m simclr_jax.benchmarks.input_bench --config=configs/cifar10.py --source=memory
  python -m simclr_jax.benchmarks.input_bench --config=configs/imagenet.py --source=files

Source images are synthetic cells of side image_size (image_size <= 64, CIFAR style) or
round(image_size * 256 / 224) (ImageNet style: 256 for 224), held decoded in memory
('memory') or written as PNG files and decoded on every use ('files'). The batch is
config.batch_size capped at 256 so large-batch configs fit on a workstation. The last
line printed is JSON with `images_per_sec` (wall clock), `images_per_cpu_sec` (images per
second of this process's CPU time, a figure that other jobs on a shared machine disturb
far less: cores * images_per_cpu_sec is about what an idle machine gives) and the load
average while it ran.
"""

import json
import os
import pathlib
import tempfile
import time

import numpy as np
from PIL import Image

from simclr_jax.data import folder
from simclr_jax.data import pipeline
from simclr_jax.data import stores
from simclr_jax.data import synthetic
from simclr_jax.errors import UserError

_DISTINCT_IMAGES = 64  # generated once, repeated to fill the dataset


def source_side(image_size: int) -> int:
  return image_size if image_size <= 64 else round(image_size * 256 / 224)


def measure_input_throughput(config, source: str = 'memory', seconds: float = 10.0,
                             num_images: int = 4096) -> dict:
  if source not in ('memory', 'files'):
    raise UserError(f"source={source!r}: expected 'memory' or 'files'")
  side = source_side(config.data.image_size)
  batch = min(config.batch_size, 256)
  channels = config.data.channels
  if source == 'files' and channels not in (1, 3):
    raise UserError(f'the files input benchmark writes PNGs, which hold 1 or 3 channels; '
                    f'config.data.channels={channels}: use the memory benchmark')
  distinct, _ = synthetic.generate(_DISTINCT_IMAGES, side, config.data.seed, channels)
  labels = np.zeros(num_images, np.int32)
  with tempfile.TemporaryDirectory() as tmp:
    if source == 'memory':
      store = stores.ArrayStore(distinct[np.arange(num_images) % _DISTINCT_IMAGES])
    else:
      paths = []
      for i, image in enumerate(distinct):
        paths.append(pathlib.Path(tmp) / f'{i}.png')
        Image.fromarray(image[..., 0] if channels == 1 else image).save(paths[-1])
      store = stores.DecodingStore(
          num_images, lambda i: folder.decode(paths[i % _DISTINCT_IMAGES], channels))
    batches = pipeline.pretrain_batches(config, store, labels, batch_size=batch)
    for _ in range(3):  # warm up: tracing, thread pools
      next(batches)
    count, start, cpu_start = 0, time.perf_counter(), _cpu_seconds()
    while time.perf_counter() - start < seconds:
      count += len(next(batches)['views'])
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  rate = count / elapsed
  return {'source': source, 'image_size': config.data.image_size, 'source_side': side,
          'preset': config.augment.preset, 'batch': batch, 'images': count,
          'seconds': round(elapsed, 2), 'images_per_sec': round(rate, 1),
          'images_per_sec_per_core': round(rate / cores, 1), 'cores': cores,
          'cpu_seconds': round(cpu, 2), 'images_per_cpu_sec': round(count / cpu, 1),
          'load_avg_1min': round(os.getloadavg()[0], 2)}


def _cpu_seconds() -> float:
  times = os.times()
  return times.user + times.system


def main(argv):
  del argv
  result = measure_input_throughput(_CONFIG.value, _SOURCE.value, _SECONDS.value)
  print(json.dumps(result))


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.')
  _SOURCE = flags.DEFINE_enum('source', 'memory', ['memory', 'files'], 'Where images come from.')
  _SECONDS = flags.DEFINE_float('seconds', 10.0, 'How long to measure.')
  flags.mark_flags_as_required(['config'])
  app.run(main)
