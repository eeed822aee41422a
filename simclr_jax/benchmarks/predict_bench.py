"""Prediction throughput against the classifier's forward pass alone (bench --predict_workdir).

`predict` reads and decodes files, prepares them as evaluation does, moves them to the
devices and gathers the probabilities; the forward pass alone runs the same jitted model
on as many batches already on the devices. Their ratio says whether the loader keeps up.
Both are timed in alternating rounds after one untimed pass that compiles, and the median
round of each is reported: on a shared machine one round can be slowed by anything else.
The loader alone (files to prepared batches in host memory, no network) bounds predict on
any device: on a GPU the forward pass is fast, and the loader must outrun it.
CPU time counts this process and its decoding workers: on a CPU-only machine the loader
and the network share the same cores, so the ratio cannot pass forward CPU / (forward +
loader CPU) there, and CPU time per image says which costs what.
"""

import collections
import resource
import statistics
import time

import jax
import numpy as np

from simclr_jax.evaluation import trained_model
from simclr_jax.inference import new_images, predictions
from simclr_jax.runtime import parallel


def _cpu_seconds() -> float:
  own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                        resource.RUSAGE_CHILDREN))
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(fn) -> tuple[float, float]:
  """(wall seconds, CPU seconds) of fn()."""
  cpu, start = _cpu_seconds(), time.perf_counter()
  fn()
  return time.perf_counter() - start, _cpu_seconds() - cpu


def _forward_alone(run, mesh, batch_size: int, num_batches: int):
  """A function running the jitted forward pass over num_batches device-resident batches."""
  size, channels = run.config.data.image_size, run.config.data.channels
  images = jax.device_put(
      np.random.default_rng(0).random((batch_size, size, size, channels), np.float32),
      parallel.batch_sharding(mesh))
  apply_fn = new_images.jit_on_mesh(run.graphdef, mesh, predictions.softmax_probs)

  def forward():
    for _ in range(num_batches):
      out = apply_fn(run.params, run.batch_stats, images, ())
    jax.block_until_ready(out)

  return forward


def benchmark_predict(workdir: str, images: str, batch_size: int = 0, rounds: int = 3) -> dict:
  """Times predict's path over every image of `images` against the forward pass alone
  over the same number of batches (the last one's padding costs both the same)."""
  mesh = parallel.make_mesh()
  run = trained_model.load_classifier(workdir, mesh)
  found = new_images.find_images(images, run.class_names)
  devices = mesh.devices.size
  batch = -(-(batch_size or run.config.eval_batch_size) // devices) * devices
  num = len(found.paths)
  predict = lambda: new_images.apply_to_images(run, predictions.softmax_probs, found, mesh,
                                               batch, 'bench')
  forward = _forward_alone(run, mesh, batch, -(-num // batch))
  loader = lambda: collections.deque(
      new_images.prepared_batches(run.config, found, batch)[1], maxlen=0)
  _, order, errors, _ = predict()  # compiles, and warms the file cache
  forward()
  times = {'predict': [], 'forward': [], 'loader': []}
  for _ in range(rounds):
    for name, fn in (('predict', predict), ('forward', forward), ('loader', loader)):
      times[name].append(_timed(fn))
  wall = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
  cpu_us = {k: round(statistics.median(c for _, c in v) / num * 1e6, 1)
            for k, v in times.items()}
  return {'predict_images_per_sec': round(num / wall['predict'], 1),
          'forward_only_images_per_sec': round(num / wall['forward'], 1),
          'ratio': round(wall['forward'] / wall['predict'], 3),
          'loader_only_images_per_sec': round(num / wall['loader'], 1),
          'predict_cpu_us_per_image': cpu_us['predict'],
          'forward_cpu_us_per_image': cpu_us['forward'],
          'loader_cpu_us_per_image': cpu_us['loader'],
          'rounds': rounds, 'decode_workers': new_images.decode_workers(num // jax.process_count()),
          'num_images': num, 'num_errors': len(errors), 'predicted': int(len(order)),
          'batch_size': batch, 'image_size': run.config.data.image_size,
          'model': run.config.model.name, 'width': run.config.model.width, 'devices': devices,
          'device_kind': jax.devices()[0].device_kind}
