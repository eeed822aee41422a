"""Linear evaluation: a linear classifier on the frozen encoder's h (or, with
config.linear.features='g', on the projection head's output g(h)).

Optimizer: multinomial logistic regression fitted to convergence by full-batch L-BFGS
(optax.lbfgs with its zoom line search, in JAX, so it runs on the accelerator for large
feature sets), on features standardised with the training subset's mean and std (L-BFGS
converges in far fewer steps on standardised inputs; it does not change what a linear
model can express). Objective: mean (optionally class-weighted) cross-entropy +
l2/2 * ||W||^2. The L2 strength is picked from config.linear.l2_grid by the validation
split's config.linear.select_metric; the test split is scored once, with that choice.
Features are computed once (eval preprocessing) and cached in config.linear.feature_cache;
with config.linear.augment they are computed from augmented training images and not cached.
"""

import dataclasses
import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from simclr_jax.data import pipeline
from simclr_jax.data.fingerprint import fingerprint
from simclr_jax.errors import UserError
from simclr_jax.evaluation import label_subsets, networks, run_results, trained_model
from simclr_jax.runtime import distributed, metrics, parallel
from simclr_jax.training import checkpoint, features

SPLITS = ('train', 'val', 'test')


def parse_grid(spec: str) -> list[float]:
  try:
    grid = [float(v) for v in str(spec).split(',') if v.strip()]
  except ValueError as e:
    raise UserError(f'config.linear.l2_grid={spec!r}: expected comma-separated numbers') from e
  if not grid or min(grid) < 0:
    raise UserError(f'config.linear.l2_grid={spec!r}: expected one or more values >= 0')
  return grid


def class_weights(labels, num_classes: int, balanced: bool) -> np.ndarray:
  """Per-class loss weights: n / (C * n_c) when balanced (scikit-learn's 'balanced')."""
  if not balanced:
    return np.ones(num_classes, np.float32)
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  present = counts > 0
  weights = np.zeros(num_classes)
  weights[present] = len(labels) / (present.sum() * counts[present])
  return weights.astype(np.float32)


@functools.partial(jax.jit, static_argnames=('num_classes', 'max_iter'))
def fit_logistic(x, y, sample_weight, l2, *, num_classes: int, max_iter: int, tol=1e-5):
  """Full-batch L-BFGS on weighted cross-entropy + l2/2 ||W||^2 -> {'w', 'b'}."""
  params = {'w': jnp.zeros((x.shape[1], num_classes)), 'b': jnp.zeros((num_classes,))}
  total_weight = jnp.sum(sample_weight)

  def objective(p):
    ce = optax.softmax_cross_entropy_with_integer_labels(x @ p['w'] + p['b'], y)
    return jnp.sum(ce * sample_weight) / total_weight + 0.5 * l2 * jnp.sum(p['w'] ** 2)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  def step(carry):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=objective)
    return optax.apply_updates(p, updates), state

  def not_done(carry):
    _, state = carry
    count = optax.tree_utils.tree_get(state, 'count')
    grad = optax.tree_utils.tree_get(state, 'grad')
    return (count == 0) | ((count < max_iter) & (optax.tree_utils.tree_norm(grad) >= tol))

  params, _ = jax.lax.while_loop(not_done, step, (params, opt.init(params)))
  return params


def predict_probs(params, x) -> np.ndarray:
  return np.asarray(jax.nn.softmax(x @ params['w'] + params['b']))


def _cache_key(config) -> str:
  source = ''
  if config.init_from:
    if os.path.isdir(config.init_from):
      directory, step = checkpoint.find_checkpoint(config.init_from)
      source = f'{directory}@{step}'
    else:
      source = os.path.abspath(config.init_from)
  return json.dumps({'source': source, 'random_init_seed': config.seed if not source else None,
                     'model': config.model.to_dict(), 'image_size': config.data.image_size,
                     'data': fingerprint(config.data),
                     'augment': config.augment.to_dict(), 'layer': config.linear.features},
                    sort_keys=True)


def compute_features(config, workdir, mesh, *, augment_train: bool = False) -> dict:
  """{'train'|'val'|'test': (h [n, F], labels [n])} of the frozen encoder."""
  graphdef, params, stats = networks.encoder_variables(config, mesh)
  encode = features.make_encode_fn(graphdef, mesh, config.linear.features)
  out = {}
  for split in SPLITS:
    batches = pipeline.labelled_iterator(
        config, workdir, split, batch_size=config.eval_batch_size,
        augment=augment_train and split == 'train', shuffle=False, repeat=False,
        seed=config.seed, process_index=jax.process_index(),
        process_count=jax.process_count())
    out[split] = features.apply_over_batches(encode, params, stats, batches, mesh)
  return out


def cached_features(config, workdir, mesh) -> dict:
  """compute_features, read from / written to the cache when the encoder is the same."""
  path = config.linear.feature_cache or os.path.join(workdir, 'features.npz')
  key = _cache_key(config)
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached['key']) == key:
        logging.info('features from the cache %s', path)
        return {s: (cached[f'{s}_h'], cached[f'{s}_y']) for s in SPLITS}
  feats = compute_features(config, workdir, mesh)
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez(tmp, key=key, **{f'{s}_h': feats[s][0] for s in SPLITS},
             **{f'{s}_y': feats[s][1] for s in SPLITS})
    os.replace(tmp, path)
  return feats


def _pad_to_bucket(x, y, weights):
  """Pads the rows to the next power of two with weight 0, so every label fraction reuses
  one compiled fit instead of compiling one per subset size."""
  n = len(y)
  size = max(1024, 1 << max(n - 1, 1).bit_length())
  pad = size - n
  return (jnp.pad(x, ((0, pad), (0, 0))), jnp.pad(jnp.asarray(y, jnp.int32), (0, pad)),
          jnp.pad(jnp.asarray(weights, jnp.float32), (0, pad)))


@dataclasses.dataclass(frozen=True)
class LinearFit:
  """A logistic regression on standardised features: logits = ((h - mean) / std) @ w + b."""
  w: np.ndarray
  b: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  l2: float
  val: dict  # validation metrics of the kept L2

  def probs(self, h) -> np.ndarray:
    return predict_probs({'w': self.w, 'b': self.b},
                         jnp.asarray((h - self.mean) / self.std, jnp.float32))

  def on_raw_features(self) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of the same map on unstandardised h: for a Dense layer."""
    kernel = self.w / self.std[:, None]
    return kernel, self.b - self.mean @ kernel


def fit_and_select(config, train, val, num_classes: int) -> LinearFit:
  """Fits on `train` (h, y) at every L2 of config.linear.l2_grid; keeps the one with the best
  validation config.linear.select_metric."""
  train_h, train_y = train
  mean, std = train_h.mean(0), train_h.std(0) + 1e-6
  weights = class_weights(train_y, num_classes, config.class_weighting)[train_y]
  x_train, y_train, weights = _pad_to_bucket(jnp.asarray((train_h - mean) / std, jnp.float32),
                                             train_y, weights)
  select = config.linear.select_metric
  best = None
  for l2 in parse_grid(config.linear.l2_grid):
    params = fit_logistic(x_train, y_train, weights, l2,
                          num_classes=num_classes, max_iter=config.linear.max_iter)
    fit = LinearFit(np.asarray(params['w']), np.asarray(params['b']), mean, std, l2, {})
    val_metrics = metrics.classification_metrics(val[1], fit.probs(val[0]).argmax(1),
                                                 num_classes)
    logging.info('linear eval: l2=%g val %s=%.4f', l2, select, val_metrics[select])
    if best is None or val_metrics[select] > best.val[select]:
      best = dataclasses.replace(fit, val=val_metrics)
  return best


def evaluate_features(config, feats: dict, num_classes: int, positive: list[int]) -> dict:
  """Fits on the label subset, picks L2 on val, scores test; -> metrics."""
  return evaluate_and_fit(config, feats, num_classes, positive)[0]


def evaluate_and_fit(config, feats: dict, num_classes: int,
                     positive: list[int]) -> tuple[dict, LinearFit]:
  """evaluate_features, with the kept fit."""
  train_h, train_y = feats['train']
  subset = label_subsets.subset_for_config(config, train_y)
  fit = fit_and_select(config, (train_h[subset], train_y[subset]), feats['val'], num_classes)
  test_probs = fit.probs(feats['test'][0])
  result = metrics.classification_metrics(feats['test'][1], test_probs.argmax(1), num_classes,
                                          probs=test_probs, positive_classes=positive)
  result.update(num_train=int(len(subset)), l2=fit.l2, val_top1=fit.val['top1'],
                val_balanced_accuracy=fit.val['balanced_accuracy'],
                **run_results.test_predictions(feats['test'][1], test_probs, positive))
  return result, fit


def classifier_model(config, mesh, fit: LinearFit, num_classes: int) -> nnx.Module:
  """The encoder [+ projection head] and the fit as one network (networks.LinearProbeModel),
  its linear layer on the raw features."""
  graphdef, params, stats = networks.encoder_variables(config, mesh)
  source = nnx.merge(graphdef, jax.device_get(params), jax.device_get(stats))
  model = networks.LinearProbeModel(config, num_classes, nnx.Rngs(0))
  nnx.update(model.encoder, nnx.state(getattr(source, 'encoder', source)))
  if model.head is not None:
    nnx.update(model.head, nnx.state(source.head))
  kernel, bias = fit.on_raw_features()
  model.classifier.kernel[...] = jnp.asarray(kernel, jnp.float32)
  model.classifier.bias[...] = jnp.asarray(bias, jnp.float32)
  return model


def check_select_metric(config) -> None:
  if config.linear.select_metric not in run_results.SELECT_METRICS:
    raise UserError(f'config.linear.select_metric must be one of {run_results.SELECT_METRICS}, '
                    f'got {config.linear.select_metric!r}')


def run_linear_eval(config, workdir: str) -> dict:
  """Linear evaluation of config.init_from's encoder; writes WORKDIR/metrics.json."""
  config = config.copy_and_resolve_references()
  label_subsets.check_fraction(config.label_fraction)
  networks.check_starting_point(config, 'linear_eval')
  networks.check_head_features(config)
  check_select_metric(config)
  info = pipeline.dataset_info(config, workdir)
  positive = metrics.parse_positive_classes(config.positive_classes, info.class_names)
  mesh = parallel.make_mesh()
  parallel.check_batch_divides(config.eval_batch_size, mesh, 'config.eval_batch_size')
  if config.linear.augment:
    feats = compute_features(config, workdir, mesh, augment_train=True)
  else:
    feats = cached_features(config, workdir, mesh)
  result, fit = evaluate_and_fit(config, feats, info.num_classes, positive)
  model = classifier_model(config, mesh, fit, info.num_classes)
  if distributed.is_main_process():  # before metrics.json: a finished run has its model
    trained_model.save_classifier(workdir, model, config, info.class_names, 'linear')
  result.update(protocol='linear', label_fraction=config.label_fraction,
                features=config.linear.features,
                init_from=config.init_from, class_names=list(info.class_names))
  run_results.write_results(workdir, result)
  return result
