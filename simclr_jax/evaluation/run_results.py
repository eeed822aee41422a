"""Writing an evaluation run's results: metrics.json and TensorBoard, from process 0."""

import logging

import numpy as np

from simclr_jax.runtime import distributed, metrics

SELECT_METRICS = ('top1', 'balanced_accuracy')


def test_predictions(labels, probs, positive=()) -> dict:
  """The test split's labels and predicted classes, in the split's order, for metrics.json:
  the study's comparisons (compare.py) pair two runs image by image. With positive classes,
  also each image's summed probability of them, so a k-fold study can pool ROC AUC."""
  probs = np.asarray(probs)
  result = {'test_labels': [int(v) for v in labels],
            'test_predictions': [int(v) for v in probs.argmax(1)]}
  if len(positive):
    result['test_positive_scores'] = [float(v) for v in probs[:, list(positive)].sum(1)]
  return result


def write_results(workdir: str, result: dict) -> None:
  if not distributed.is_main_process():
    return
  metrics.write_scalars(workdir, result)
  path = metrics.write_metrics_json(workdir, result)
  logging.info('%s: top1=%.4f balanced_accuracy=%.4f macro_f1=%.4f -> %s',
               result.get('protocol'), result['top1'], result['balanced_accuracy'],
               result['macro_f1'], path)
