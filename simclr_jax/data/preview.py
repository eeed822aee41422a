r"""A PNG grid of original images beside their two augmented views.

  python -m simclr_jax.data.preview --config=configs/cytology.py \
      --config.data.path=../shared/datasets/cric_cervix --out=views.png --num=8

Rows are training images: the original (eval preprocessing), then view 1 and view 2.
"""

import numpy as np
from PIL import Image

from simclr_jax.data import augment
from simclr_jax.data import sources
from simclr_jax.errors import UserError


def as_rgb(images: np.ndarray) -> np.ndarray:
  """[..., C] -> [..., 3] for viewing: grey repeated, two channels as red and green, more
  than three as their first three (false colour)."""
  channels = images.shape[-1]
  if channels == 1:
    return np.repeat(images, 3, axis=-1)
  if channels == 2:
    return np.concatenate([images, np.zeros_like(images[..., :1])], axis=-1)
  return images[..., :3]


def preview_grid(config, workdir, num: int = 8, seed: int = 0) -> np.ndarray:
  """uint8 [num * S, 3 * S, 3]: each row an original and its two views (as_rgb)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  store, labels = sources.load(config, workdir).splits['train']
  num = min(num, len(labels))
  if num == 0:
    raise UserError('the train split is empty: nothing to preview')
  idx = np.random.default_rng(seed).choice(len(labels), num, replace=False)
  images, sizes = store.fetch(np.sort(idx))
  params = augment.resolve_params(config)
  size = config.data.image_size
  original = augment.eval_preprocess(images, sizes, params, size)
  views = augment.simclr_views(images, sizes, tf.constant([seed, 1], tf.int64), params, size)
  rows = tf.concat([original, views[:, 0], views[:, 1]], axis=2)  # [n, S, 3S, C]
  grid = tf.reshape(rows, [num * size, 3 * size, -1]).numpy()
  return np.round(as_rgb(grid) * 255).astype(np.uint8)


def main(argv):
  del argv
  grid = preview_grid(_CONFIG.value, _WORKDIR.value, _NUM.value)
  Image.fromarray(grid).save(_OUT.value)
  print(f'wrote {_OUT.value}: {grid.shape[0] // grid.shape[1] * 3} rows of original | view 1 | view 2')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.')
  _OUT = flags.DEFINE_string('out', 'views.png', 'PNG file to write.')
  _NUM = flags.DEFINE_integer('num', 8, 'Number of images (rows).')
  _WORKDIR = flags.DEFINE_string('workdir', '', 'Reuse this workdir\'s split.json (optional).')
  flags.mark_flags_as_required(['config'])
  app.run(main)
