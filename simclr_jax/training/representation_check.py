"""Monitors of the representation during and after pretraining.

- kNN top-1 (cosine, config.knn_k) of test-split features against training-split ones:
  cheap, run every config.eval_every_steps and at the end.
- At the end, a logistic regression on frozen, standardised features of the training split,
  scored on the test split, for the trained encoder and for the same network freshly
  initialised: is the learned h better than a random encoder's? `linear_eval` is the
  proper evaluation (regularisation chosen on the validation split).
"""

import logging

import numpy as np

from simclr_jax.data import pipeline
from simclr_jax.training import features, knn


def _features(config, workdir, encode_fn, params, stats, mesh, split):
  batches = pipeline.labelled_iterator(config, workdir, split,
                                       batch_size=config.eval_batch_size, augment=False,
                                       shuffle=False, repeat=False)
  return features.apply_over_batches(encode_fn, params, stats, batches, mesh)


def knn_accuracy(config, workdir, encode_fn, params, stats, mesh) -> float:
  """kNN top-1 of the test split against the training split."""
  x_train, y_train = _features(config, workdir, encode_fn, params, stats, mesh, 'train')
  x_test, y_test = _features(config, workdir, encode_fn, params, stats, mesh, 'test')
  return knn.knn_top1(x_train, y_train, x_test, y_test, config.knn_k)


def probe_accuracy(train, test) -> float:
  # scikit-learn takes 1-2 s to import: only the runs that score a probe pay for it.
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  (x_train, y_train), (x_test, y_test) = train, test
  classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
  classifier.fit(x_train, y_train)
  return float(np.mean(classifier.predict(x_test) == y_test))


def compare_with_random(config, workdir, graphdef, trained, random_init, mesh) -> dict:
  """`trained` and `random_init` are (params, batch_stats) pairs of the same network."""
  encode_fn = features.make_encode_fn(graphdef, mesh)
  results = {}
  for name, (params, stats) in (('trained', trained), ('random_init', random_init)):
    train = _features(config, workdir, encode_fn, params, stats, mesh, 'train')
    test = _features(config, workdir, encode_fn, params, stats, mesh, 'test')
    results[name] = (train, test)
  accuracy = {name: probe_accuracy(*splits) for name, splits in results.items()}
  logging.info('frozen-feature probe on the test split: trained encoder %.3f, '
               'random encoder %.3f', accuracy['trained'], accuracy['random_init'])
  (x_train, y_train), (x_test, y_test) = results['trained']
  return {'knn_top1': knn.knn_top1(x_train, y_train, x_test, y_test, config.knn_k),
          'probe_test_top1': accuracy['trained'],
          'random_encoder_probe_test_top1': accuracy['random_init'],
          'train_features': results['trained'][0], 'test_features': results['trained'][1]}
