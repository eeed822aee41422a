"""k-nearest-neighbour accuracy on frozen features: a cheap monitor of representation quality.

Cosine similarity, the k most similar training images vote with weight exp(sim / T),
T = 0.07 (weighted voting as in InstDisc, Wu et al. 2018, and DINO's eval_knn). Weighting
makes k less critical than a plain majority vote and breaks most ties; remaining ties go
to the lower class index.
"""

import numpy as np

from simclr_jax.errors import UserError

TEMPERATURE = 0.07


def _normalize(x):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(train_feats, train_labels, test_feats, k: int, num_classes: int | None = None,
                chunk: int = 1024) -> np.ndarray:
  """Predicted class of each test row; test rows are processed in chunks to bound memory."""
  if k < 1:
    raise UserError(f'config.knn_k must be >= 1, got {k}')
  train, test = _normalize(train_feats), _normalize(test_feats)
  train_labels = np.asarray(train_labels, np.int64)
  if len(train) == 0:
    raise ValueError('kNN needs at least one training feature')
  k = min(k, len(train))
  num_classes = num_classes or int(train_labels.max()) + 1
  preds = []
  for start in range(0, len(test), chunk):
    sims = test[start:start + chunk] @ train.T  # [c, n_train]
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    votes = np.zeros((len(sims), num_classes))
    np.add.at(votes, (np.arange(len(sims))[:, None], train_labels[top]),
              np.exp(top_sims / TEMPERATURE))
    preds.append(votes.argmax(1))
  return np.concatenate(preds) if preds else np.zeros(0, np.int64)


def knn_top1(train_feats, train_labels, test_feats, test_labels, k: int) -> float:
  """Top-1 accuracy of weighted kNN; what the pretraining trainer reports as knn_top1."""
  test_labels = np.asarray(test_labels, np.int64)
  num_classes = int(max(np.max(train_labels), np.max(test_labels, initial=0))) + 1
  preds = knn_predict(train_feats, train_labels, test_feats, k, num_classes)
  return float(np.mean(preds == test_labels)) if len(test_labels) else float('nan')
