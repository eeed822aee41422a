"""Prediction throughput against the classifier's forward pass alone (bench --predict_workdir).

`predict` reads and decodes files, prepares them as evaluation does, moves them to the
devices and gathers the probabilities; the forward pass alone runs the same jitted model
on batches already on the devices. Their ratio says whether the loader keeps up.
"""

import time

import jax
import numpy as np

from simclr_jax.evaluation import trained_model
from simclr_jax.inference import new_images, predictions
from simclr_jax.runtime import parallel


def _forward_alone(run, mesh, batch_size: int, num_batches: int) -> float:
  """images/s of the jitted forward pass on device-resident batches."""
  size, channels = run.config.data.image_size, run.config.data.channels
  images = jax.device_put(
      np.random.default_rng(0).random((batch_size, size, size, channels), np.float32),
      parallel.batch_sharding(mesh))
  apply_fn = new_images.jit_on_mesh(run.graphdef, mesh, predictions.softmax_probs)
  jax.block_until_ready(apply_fn(run.params, run.batch_stats, images))  # compile
  start = time.perf_counter()
  for _ in range(num_batches):
    out = apply_fn(run.params, run.batch_stats, images)
  jax.block_until_ready(out)
  return batch_size * num_batches / (time.perf_counter() - start)


def benchmark_predict(workdir: str, images: str, batch_size: int = 0) -> dict:
  """Times predict's path over every image of `images` (after one untimed pass that
  compiles), then the forward pass alone over as many images."""
  mesh = parallel.make_mesh()
  run = trained_model.load_classifier(workdir, mesh)
  found = new_images.find_images(images, run.class_names)
  devices = mesh.devices.size
  batch = -(-(batch_size or run.config.eval_batch_size) // devices) * devices
  apply = lambda: new_images.apply_to_images(run, predictions.softmax_probs, found, mesh,
                                             batch, 'bench')
  apply()  # compiles, and warms the file cache
  start = time.perf_counter()
  _, order, errors, _ = apply()
  predict_rate = len(found.paths) / (time.perf_counter() - start)
  forward_rate = _forward_alone(run, mesh, batch, max(1, -(-len(found.paths) // batch)))
  return {'predict_images_per_sec': round(predict_rate, 1),
          'forward_only_images_per_sec': round(forward_rate, 1),
          'ratio': round(predict_rate / forward_rate, 3), 'num_images': len(found.paths),
          'num_errors': len(errors), 'predicted': int(len(order)), 'batch_size': batch,
          'image_size': run.config.data.image_size, 'model': run.config.model.name,
          'width': run.config.model.width, 'devices': devices,
          'device_kind': jax.devices()[0].device_kind}
