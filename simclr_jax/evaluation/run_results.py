"""Writing an evaluation run's results: metrics.json and TensorBoard, from process 0."""

import logging
import os

import numpy as np

from simclr_jax.runtime import distributed, metrics

SELECT_METRICS = ('top1', 'balanced_accuracy')


def test_predictions(labels, probs, positive=()) -> dict:
  """The test split's labels and predicted classes, in the split's order, for metrics.json:
  the study's comparisons (compare.py) pair two runs image by image. With positive classes,
  also each image's summed probability of them, so a k-fold study can pool ROC AUC.
  The probabilities themselves ('test_probs') go to WORKDIR/test_probs.npy (write_results),
  from which the study draws each run's page of test predictions."""
  probs = np.asarray(probs)
  result = {'test_labels': [int(v) for v in labels],
            'test_predictions': [int(v) for v in probs.argmax(1)],
            'test_probs': probs.astype(np.float32)}
  if len(positive):
    result['test_positive_scores'] = [float(v) for v in probs[:, list(positive)].sum(1)]
  return result


TEST_PROBS_FILE = 'test_probs.npy'


def write_results(workdir: str, result: dict) -> None:
  probs = result.pop('test_probs', None)  # an array: in its own file, not metrics.json
  if not distributed.is_main_process():
    return
  if probs is not None:
    np.save(os.path.join(workdir, TEST_PROBS_FILE), probs)
  metrics.write_scalars(workdir, result)
  path = metrics.write_metrics_json(workdir, result)
  logging.info('%s: top1=%.4f balanced_accuracy=%.4f macro_f1=%.4f -> %s',
               result.get('protocol'), result['top1'], result['balanced_accuracy'],
               result['macro_f1'], path)
