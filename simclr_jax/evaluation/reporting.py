"""Writing an evaluation run's results: metrics.json and TensorBoard, from process 0."""

import logging

from simclr_jax import distributed, metrics

SELECT_METRICS = ('top1', 'balanced_accuracy')


def write_results(workdir: str, result: dict) -> None:
  if not distributed.is_main_process():
    return
  metrics.write_scalars(workdir, result)
  path = metrics.write_metrics_json(workdir, result)
  logging.info('%s: top1=%.4f balanced_accuracy=%.4f macro_f1=%.4f -> %s',
               result.get('protocol'), result['top1'], result['balanced_accuracy'],
               result['macro_f1'], path)
