"""A page of test predictions per run the study reports: RUN/test_predictions.html (the
page python -m simclr_jax.predict writes, evaluation/predictions_page.py), linked from
report.md. Drawn from the probabilities each evaluation saved (test_probs.npy), so no
network runs again; the thumbnails are the test split's images as the dataset holds them.
"""

import logging
import os

import numpy as np

from simclr_jax.data import sources
from simclr_jax.evaluation import predictions_page
from simclr_jax.evaluation.run_results import TEST_PROBS_FILE
from simclr_jax.runtime import metrics

PAGE_FILE = 'test_predictions.html'


def _test_images(config, workdir, count: int):
  """-> (class names, labels, display names of every test image, thumbnails of the first
  `count`)."""
  source = sources.load(config, workdir)
  store, labels = source.splits['test']
  paths = source.paths.get('test') or [f'test image {i}' for i in range(len(labels))]
  shown = np.arange(min(count, len(labels)))
  images, sizes = store.fetch(shown) if len(shown) else ([], [])
  thumbs = {i: predictions_page.thumbnail_png(np.asarray(images[i])[:sizes[i][0], :sizes[i][1]])
            for i in range(len(shown))}
  return list(source.class_names), np.asarray(labels), paths, thumbs


def run_title(row) -> str:
  return (f"{row['starting_point']}, {row['protocol']}, {row['label_fraction']:.0%} of the "
          f"labels, seed {row['seed']}")


def write_pages(config, workdir: str, rows) -> dict:
  """Writes the page of every row whose run saved its test probabilities; -> {row index:
  the page's path relative to `workdir`}."""
  limit = config.study.page_images
  runs = [i for i, r in enumerate(rows) if limit and r.get('run_dir') and
          os.path.exists(os.path.join(r['run_dir'], TEST_PROBS_FILE))]
  if not runs:
    return {}
  names, labels, paths, thumbs = _test_images(config, workdir, limit)
  shown = len(thumbs)
  pages = {}
  for i in runs:
    row = rows[i]
    probs = np.load(os.path.join(row['run_dir'], TEST_PROBS_FILE))
    if probs.shape != (len(labels), len(names)):
      logging.warning('%s: %s holds %s probabilities, the test split has %d images of %d '
                      'classes; no page', row['run_dir'], TEST_PROBS_FILE, probs.shape,
                      len(labels), len(names))
      continue
    predicted = probs.argmax(1)
    page_rows = [{'path': paths[k], 'probs': probs[k], 'predicted': names[predicted[k]],
                  'true': names[labels[k]], 'error': None} for k in range(shown)]
    path = os.path.join(row['run_dir'], PAGE_FILE)
    predictions_page.write_page(
        path, page_rows, names, thumbs, metrics.confusion_matrix(labels, predicted, len(names)).tolist(),
        title=f'{run_title(row)}: the first {shown} of {len(labels)} test images shown; the '
              'confusion matrix counts them all')
    pages[i] = os.path.relpath(path, workdir)
  return pages
