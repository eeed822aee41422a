"""The study's non-deep floor: a linear classifier on hand-made features of the pixels.

The same split, label subsets (label_fraction, seed), evaluation images (the ones the
deep models' evaluation sees, at config.data.image_size) and metrics as the deep rows, so a
table row of the study can be read against it. Feature sets (config.baseline.features;
when several are given, the validation split picks one per run, as it picks L2):

  pixels          the image average-pooled to config.baseline.pixel_size² × channels
  colour_texture  what a cytologist's eye uses without a network: per-channel colour
                  histograms, grey-level histograms of the whole crop and of its centre
                  (where the nucleus usually is), dark-pixel fractions (nuclear area and
                  chromatin), gradient-magnitude histograms (texture, edges) and moments;
                  for images that are not RGB the grey level is the channels' mean

The classifier is linear.py's: multinomial logistic regression by L-BFGS on standardised
features, L2 picked on validation, class weighting as configured.
"""

import json
import logging
import os

import jax
import numpy as np

from simclr_jax.data import pipeline
from simclr_jax.data.fingerprint import fingerprint
from simclr_jax.errors import UserError
from simclr_jax.evaluation import label_subsets, linear, run_results
from simclr_jax.runtime import metrics

FEATURE_SETS = ('pixels', 'colour_texture')
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def parse_feature_sets(spec: str) -> list[str]:
  sets = [s.strip() for s in str(spec).split(',') if s.strip()]
  unknown = [s for s in sets if s not in FEATURE_SETS]
  if not sets or unknown:
    raise UserError(f'config.baseline.features={spec!r}: expected a comma-separated '
                    f'subset of {FEATURE_SETS}')
  return sets


def pixel_features(images: np.ndarray, size: int) -> np.ndarray:
  """[n, H, W, C] in [0, 1] -> [n, size*size*C]: average pooling over equal cells."""
  n, height, width, channels = images.shape
  if size < 1 or size > min(height, width):
    raise UserError(f'config.baseline.pixel_size={size}: expected 1 to the image size '
                    f'({min(height, width)})')
  rows = np.array_split(np.arange(height), size)
  cols = np.array_split(np.arange(width), size)
  out = np.empty((n, size, size, channels), np.float32)
  for i, r in enumerate(rows):
    band = images[:, r].mean(axis=1)
    for j, c in enumerate(cols):
      out[:, i, j] = band[:, c].mean(axis=1)
  return out.reshape(n, -1)


def _histograms(values: np.ndarray, bins: int, top: float) -> np.ndarray:
  """Per-row normalised histograms of [n, ...] values in [0, top] (clipped)."""
  flat = values.reshape(len(values), -1)
  index = np.clip((flat / top * bins).astype(np.int64), 0, bins - 1)
  index += np.arange(len(flat))[:, None] * bins  # one bincount for every row at once
  counts = np.bincount(index.ravel(), minlength=len(flat) * bins).reshape(len(flat), bins)
  return (counts / flat.shape[1]).astype(np.float32)


def colour_texture_features(images: np.ndarray, bins: int = 16) -> np.ndarray:
  """[n, H, W, C] in [0, 1] -> [n, F] colour, grey-level, darkness and gradient statistics
  (grey: luma for RGB, the channels' mean otherwise)."""
  images = images.astype(np.float32)
  channels = images.shape[-1]
  grey = images @ _GREY if channels == 3 else images.mean(axis=-1)
  height, width = grey.shape[1:]
  centre = grey[:, height // 4: height - height // 4, width // 4: width - width // 4]
  grad_y, grad_x = np.gradient(grey, axis=(1, 2))
  magnitude = np.sqrt(grad_x ** 2 + grad_y ** 2)
  parts = [_histograms(images[..., c], bins, 1.0) for c in range(channels)]
  parts += [_histograms(grey, bins, 1.0), _histograms(centre, bins, 1.0),
            _histograms(magnitude, bins, 0.3)]
  parts += [np.stack([(g < t).mean(axis=(1, 2)) for t in (0.2, 0.3, 0.4, 0.5, 0.6)], 1)
            for g in (grey, centre)]
  parts.append(np.stack([grey.mean((1, 2)), grey.std((1, 2)), centre.mean((1, 2)),
                         centre.std((1, 2)), magnitude.mean((1, 2)),
                         magnitude.std((1, 2))], 1))
  parts.append(images.reshape(len(images), -1, channels).mean(1))
  parts.append(images.reshape(len(images), -1, channels).std(1))
  return np.concatenate(parts, axis=1).astype(np.float32)


def _features(name: str, images: np.ndarray, config) -> np.ndarray:
  if name == 'pixels':
    return pixel_features(images, config.baseline.pixel_size)
  return colour_texture_features(images)


def _split_images(config, workdir, split):
  batches = pipeline.labelled_iterator(
      config, workdir, split, batch_size=config.eval_batch_size, augment=False,
      shuffle=False, repeat=False, process_index=0, process_count=1)
  images, labels = [], []
  for batch in batches:
    keep = np.asarray(batch['mask'], bool)  # the last batch is padded
    images.append(np.asarray(batch['image'])[keep])
    labels.append(np.asarray(batch['label'])[keep])
  return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def _cache_key(config) -> str:
  return json.dumps({'data': fingerprint(config.data), 'image_size': config.data.image_size,
                     'eval_crop': config.augment.to_dict().get('eval_crop_fraction'),
                     'pixel_size': config.baseline.pixel_size,
                     'features': parse_feature_sets(config.baseline.features)},
                    sort_keys=True)


def cached_features(config, workdir) -> dict:
  """{feature set: {split: (features, labels)}}, cached in config.baseline.feature_cache
  (the study points every seed and fraction at one file: the images are read once)."""
  path = config.baseline.feature_cache or os.path.join(workdir, 'baseline_features.npz')
  key = _cache_key(config)
  sets = parse_feature_sets(config.baseline.features)
  if os.path.exists(path):
    with np.load(path) as cached:
      if str(cached['key']) == key:
        return {n: {s: (cached[f'{n}_{s}_x'], cached[f'{s}_y']) for s in linear.SPLITS}
                for n in sets}
  images = {s: _split_images(config, workdir, s) for s in linear.SPLITS}
  feats = {n: {s: (_features(n, x, config), y) for s, (x, y) in images.items()} for n in sets}
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.npz'
    np.savez(tmp, key=key, **{f'{s}_y': images[s][1] for s in linear.SPLITS},
             **{f'{n}_{s}_x': feats[n][s][0] for n in sets for s in linear.SPLITS})
    os.replace(tmp, path)
  return feats


def run_baseline(config, workdir: str) -> dict:
  """The classical floor at config.label_fraction / config.seed; writes metrics.json."""
  config = config.copy_and_resolve_references()
  label_subsets.check_fraction(config.label_fraction)
  linear.check_select_metric(config)
  info = pipeline.dataset_info(config, workdir)
  positive = metrics.parse_positive_classes(config.positive_classes, info.class_names)
  select = config.linear.select_metric
  best = None
  for name, feats in cached_features(config, workdir).items():
    result = linear.evaluate_features(config, feats, info.num_classes, positive)
    logging.info('baseline %s: val %s=%.4f', name, select, result[f'val_{select}'])
    if best is None or result[f'val_{select}'] > best[f'val_{select}']:
      best = dict(result, features=name)
  best.update(protocol='baseline', label_fraction=config.label_fraction,
              class_names=list(info.class_names))
  run_results.write_results(workdir, best)
  return best
