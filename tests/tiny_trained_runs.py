"""One tiny pretraining, linear evaluation and fine-tuning on synthetic cells, made once per
test process and shared by the tests of predict, embed and export, with the test split
written out as PNG files in class folders (the images evaluation scored)."""

import atexit
import functools
import json
import pathlib
import shutil
import tempfile

import numpy as np
from PIL import Image

from simclr_jax.data import sources
from simclr_jax.evaluation import fine_tuning, linear
from simclr_jax.training import loop
from tiny_configs import tiny_study_config


def tiny_config():
  """The tiny study at the inference tests' size: the narrowest network, the smallest
  batch, and no health monitor (its forward pass is one more program to compile)."""
  c = tiny_study_config()
  c.model.width = 0.0625
  c.batch_size = 16
  c.health_monitor = False
  c.eval_at_end = False
  c.eval_batch_size = 16
  c.label_fraction = 0.5
  return c


def write_split(config, workdir, split: str, out: pathlib.Path) -> list[str]:
  """The split's images as OUT/CLASS/NNNN.png (NNNN: the image's row in the split);
  returns the paths in the split's order."""
  source = sources.load(config, workdir)
  store, labels = source.splits[split]
  images, _ = store.fetch(np.arange(len(labels)))
  paths = []
  for i, (image, label) in enumerate(zip(images, labels)):
    path = out / source.class_names[label] / f'{i:04d}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    paths.append(str(path))
  return paths


@functools.cache
def trained_runs() -> dict:
  """{'pretrain', 'linear', 'finetune': workdirs, 'test_images': folder, 'test_paths':
  the test split's files in its order, 'root': the folder holding them all}."""
  root = pathlib.Path(tempfile.mkdtemp(prefix='simclr_jax_trained_runs_'))
  atexit.register(shutil.rmtree, root, ignore_errors=True)
  config = tiny_config()
  runs = {name: str(root / name) for name in ('pretrain', 'linear', 'finetune')}
  loop.train_and_evaluate(config, runs['pretrain'])
  with config.unlocked():
    config.init_from = runs['pretrain']
  linear.run_linear_eval(config, runs['linear'])
  fine_tuning.run_finetune(config, runs['finetune'])
  runs['test_paths'] = write_split(config, runs['finetune'], 'test', root / 'test_images')
  runs['test_images'] = str(root / 'test_images')
  runs['root'] = str(root)
  return runs


def run_metrics(workdir: str) -> dict:
  return json.loads((pathlib.Path(workdir) / 'metrics.json').read_text())
