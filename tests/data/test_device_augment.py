"""The JAX augmentations against the tf.data ones (exact where no randomness is involved,
in distribution where it is), and the device feed: per-image sizes, determinism, resume,
sharded equals unsharded, and the same uint8 batches as the tf.data loader."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from simclr_jax.config import defaults as default_config
from simclr_jax.data import augment as A
from simclr_jax.data import device_augment as D
from simclr_jax.data import device_feed, pipeline, stores
from simclr_jax.data.augment_ops import blur, crop
from simclr_jax.runtime import parallel
from tiny_configs import device_augment_config


def _ks(a, b) -> float:
  """Two-sample Kolmogorov-Smirnov statistic."""
  a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
  grid = np.concatenate([a, b])
  return float(np.max(np.abs(np.searchsorted(a, grid, 'right') / len(a)
                             - np.searchsorted(b, grid, 'right') / len(b))))


_views_jit = jax.jit(D.simclr_views, static_argnames=('p', 'out_size'))


def _cells(n=128, h=40, w=48):
  rng = np.random.default_rng(0)
  base = rng.integers(0, 256, (n, 1, 1, 3))  # one colour per image, plus texture
  images = np.clip(base + rng.normal(0, 30, (n, h, w, 3)), 0, 255).astype(np.uint8)
  return images, np.tile([h, w], (n, 1)).astype(np.int32)


def test_crops_eval_and_blur_equal_tf_where_nothing_is_random():
  images, sizes = _cells(4)
  sizes[1] = [30, 21]  # a smaller real image inside the padding
  p = A.AugmentParams(eval_crop_fraction=0.875)
  np.testing.assert_allclose(D.labelled_transform(images, sizes, np.zeros(2, np.uint32), p=p,
                                                  out_size=24, augment=False),
                             A.eval_preprocess(tf.constant(images), tf.constant(sizes), p, 24),
                             atol=2e-5)
  # One crop box, flipped left-right, through both samplers.
  top, left, ch, cw = 3.5, 7.25, 20.0, 17.0
  rows = D.interpolation_matrix(top, ch, False, 16, 40)
  cols = D.interpolation_matrix(left, cw, True, 16, 48)
  ours = jax.vmap(lambda im: D.resample(im, rows, cols))(images)
  box = crop.pixel_boxes(tf.constant([top]), tf.constant([left]), tf.constant([ch]),
                         tf.constant([cw]), (40, 48))
  box = tf.tile(tf.stack([box[:, 0], box[:, 3], box[:, 2], box[:, 1]], 1), [4, 1])
  theirs = A.crop_and_resize(tf.constant(images, tf.float32), box, 16)
  np.testing.assert_allclose(ours, theirs, atol=1e-3)
  # The blur with a given sigma: the banded matrix equals the depthwise convolution.
  x = np.random.default_rng(2).random((1, 24, 24, 3)).astype(np.float32)
  matrix = D.blur_matrix(1.3, 24, A.blur_kernel_radius(24, 2.0))
  ours = jnp.einsum('sy,yxc,tx->stc', matrix, x[0], matrix)
  theirs = blur.host_gaussian(tf.constant(x), tf.constant([1.3]), A.blur_kernel_radius(24, 2.0))
  np.testing.assert_allclose(ours, theirs[0], atol=1e-5)


def test_crop_area_and_aspect_follow_the_host_distribution():
  n, (h, w) = 3000, (40, 48)
  area_range, aspect_range = (0.08, 1.0), (3 / 4, 4 / 3)
  keys = jax.random.split(jax.random.key(0), n)
  window = jax.vmap(lambda k: D.crop_window(D._draw_keys(k), jnp.array([h, w], jnp.float32),  # pylint: disable=protected-access
                                            area_range, aspect_range))(keys)
  top, left, ch, cw = map(np.asarray, window)
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + ch <= h + 1e-4).all() and (left + cw <= w + 1e-4).all()
  boxes = A.random_crop_boxes(tf.constant([3, 4], tf.int64), tf.constant([[h, w]] * n),
                              (h, w), area_range, aspect_range).numpy()
  tf_h = (boxes[:, 2] - boxes[:, 0]) * (h - 1) + 1
  tf_w = (boxes[:, 3] - boxes[:, 1]) * (w - 1) + 1
  assert _ks(ch * cw / (h * w), tf_h * tf_w / (h * w)) < 0.05
  assert _ks(np.log(cw / ch), np.log(tf_w / tf_h)) < 0.05
  assert _ks(top / (h - ch + 1e-6), boxes[:, 0] * (h - 1) / (h - tf_h + 1e-6)) < 0.05


def _resolved(preset):
  c = default_config.get_default_config()
  c.augment.preset = preset
  if preset == 'imagenet':
    c.augment.blur_prob = 1.0  # every view blurred: compare blur strength
  return A.resolve_params(c)


@pytest.mark.parametrize('preset', ['imagenet', 'cytology'])
def test_views_match_the_host_colour_and_blur_statistics(preset):
  images, sizes = _cells(192, 24, 24)
  p = _resolved(preset)
  keys = D.row_keys(0, D.PRETRAIN_SALT, 0, jnp.arange(len(images)))
  ours = np.asarray(_views_jit(images, sizes, keys, p=p, out_size=16)).reshape(-1, 16, 16, 3)
  theirs = A.simclr_views(tf.constant(images), tf.constant(sizes),
                          tf.constant([5, 6], tf.int64), p, 16).numpy().reshape(-1, 16, 16, 3)
  assert ours.shape == theirs.shape and ours.dtype == np.float32
  assert ours.min() >= 0 and ours.max() <= 1 + 1e-5
  for stat in (lambda v: v.mean((1, 2, 3)),  # brightness
               lambda v: v.std((1, 2, 3)),  # contrast
               lambda v: v.std(3).mean((1, 2)),  # saturation: 0 for grey views
               lambda v: np.abs(np.diff(v, axis=2)).mean((1, 2, 3))):  # sharpness (blur)
    assert _ks(stat(ours), stat(theirs)) < 0.15, preset


@pytest.mark.parametrize('channels', [1, 5])
def test_views_of_other_than_rgb_match_the_host_statistics(channels):
  # Grey and 5-channel images: per-channel brightness / contrast jitter instead of the
  # colour ops, in distribution alike on both backends; channel 0 is black in every image
  # and stays black, as no op mixes channels (no grayscale, hue or stain jitter); channels
  # 1 and 2 are equal and stay so only in the views left unjittered (1 - jitter_prob).
  rng = np.random.default_rng(1)
  n, side = 96, 16
  images = np.clip(rng.integers(0, 256, (n, 1, 1, channels))
                   + rng.normal(0, 30, (n, side, side, channels)), 0, 255).astype(np.uint8)
  if channels > 1:
    images[..., 0] = 0
    images[..., 2] = images[..., 1]
  sizes = np.full((n, 2), side, np.int32)
  p = _resolved('cytology')  # stain jitter and grayscale on: they must not apply
  keys = D.row_keys(0, D.PRETRAIN_SALT, 0, jnp.arange(n))
  ours = np.asarray(_views_jit(images, sizes, keys, p=p, out_size=12))
  theirs = A.simclr_views(tf.constant(images), tf.constant(sizes),
                          tf.constant([5, 6], tf.int64), p, 12).numpy()
  assert ours.shape == theirs.shape == (n, 2, 12, 12, channels)
  ours, theirs = ours.reshape(-1, 12, 12, channels), theirs.reshape(-1, 12, 12, channels)
  last = channels - 1
  for stat in (lambda v: v[..., last].mean((1, 2)),  # brightness
               lambda v: v[..., last].std((1, 2)),  # contrast
               lambda v: np.abs(np.diff(v[..., last], axis=2)).mean((1, 2))):  # blur
    assert _ks(stat(ours), stat(theirs)) < 0.2, channels
  if channels > 1:
    assert ours[..., 0].max() == 0 and theirs[..., 0].max() == 0
    for views in (ours, theirs):
      differ = np.abs(views[..., 1] - views[..., 2]).max((1, 2)) > 1e-3
      assert abs(differ.mean() - p.jitter_prob) < 0.08


def test_padding_never_enters_a_view():
  # Black real images of 11 x 13 inside white padding: crops, flips, jitter, grayscale
  # and the zero-padded blur all keep black exactly black. (Same shapes and parameters as
  # the imagenet case above: one compilation.)
  images = np.full((192, 24, 24, 3), 255, np.uint8)
  images[:, :11, :13] = 0
  sizes = np.tile([[11, 13]], (192, 1)).astype(np.int32)
  keys = D.row_keys(0, D.PRETRAIN_SALT, 0, jnp.arange(192))
  views = _views_jit(images, sizes, keys, p=_resolved('imagenet'), out_size=16)
  assert float(jnp.max(views)) == 0.0


def _views(config, mesh, start_step=0, steps=2, device_cache_mb=2048):
  store, labels = pipeline.pretrain_pool(config, None)
  config.data.device_cache_mb = device_cache_mb
  feed = device_feed.DeviceFeed(config, store, labels, mesh, start_step=start_step)
  out = [np.asarray(b['views']) for b in itertools.islice(feed, steps)]
  feed.close()
  return out, feed.resident


# Captured before the order became global and the rows came from the host: the means of
# views 0, 1 of images 0, 1 at steps 0-2 (on 8 devices).
_PINNED_MEANS = [[[0.660396, 0.994393], [0.674115, 0.681453]],
                 [[0.961863, 0.508227], [0.600768, 0.813426]],
                 [[0.720569, 0.639361], [0.753133, 0.905267]]]


def test_device_feed_is_deterministic_resumable_and_shard_independent():
  config = device_augment_config()
  eight = parallel.make_mesh()
  views, resident = _views(config, eight, steps=3)
  assert resident and views[0].shape == (16, 2, 16, 16, 3)
  assert not np.allclose(views[0], views[1])
  np.testing.assert_allclose([v[:2].mean(axis=(2, 3, 4)) for v in views], _PINNED_MEANS,
                             atol=2e-6)
  again, _ = _views(config, eight, start_step=2, steps=1)
  np.testing.assert_array_equal(again[0], views[2])  # resume: step k depends on k only
  for devices in (1, 2):  # the views of step k whatever the mesh (steps 1-2: an epoch ends)
    fewer, _ = _views(config, parallel.make_mesh(devices), start_step=1, steps=2)
    np.testing.assert_allclose(fewer, views[1:], atol=1e-6)
  streamed, resident = _views(config, eight, steps=1, device_cache_mb=0)
  assert not resident
  np.testing.assert_array_equal(streamed[0], views[0])  # host-gathered = device-resident


def test_device_views_follow_the_hosts_rows_not_the_devices():
  # Another process count or device order puts an image on another device: its views
  # must not change. Reversing the batch with its row numbers reverses the views.
  config = device_augment_config()
  config.data.device_cache_mb = 0
  store, labels = pipeline.pretrain_pool(config, None)
  feed = device_feed.DeviceFeed(config, store, labels, parallel.make_mesh())
  step, (images, sizes, rows), _ = next(feed._items)  # pylint: disable=protected-access
  feed.close()
  np.testing.assert_array_equal(np.asarray(rows), np.arange(16))
  views = np.asarray(feed._views(images, sizes, rows, np.int32(step)))  # pylint: disable=protected-access
  flipped = [feed._global(np.asarray(a)[::-1]) for a in (images, sizes, rows)]  # pylint: disable=protected-access
  np.testing.assert_allclose(np.asarray(feed._views(*flipped, np.int32(step)))[::-1],  # pylint: disable=protected-access
                             views, atol=1e-6)


def test_numpy_loader_sends_the_tf_loaders_images():
  config = device_augment_config()
  config.data.device_cache_mb = 0
  store, labels = pipeline.pretrain_pool(config, None)
  tf_inputs = list(itertools.islice(pipeline.uint8_batches(config, store, labels), 3))
  feed = device_feed.DeviceFeed(config, store, labels, parallel.make_mesh())
  for images, sizes, batch_labels, _, _ in tf_inputs:
    _, (sent_images, sent_sizes, _), sent_labels = next(feed._items)  # pylint: disable=protected-access
    np.testing.assert_array_equal(np.asarray(sent_images), images)
    np.testing.assert_array_equal(np.asarray(sent_sizes), sizes)
    np.testing.assert_array_equal(np.asarray(sent_labels), batch_labels)
  feed.close()


def test_labelled_iterator_without_tensorflow_matches_tf(monkeypatch):
  config = device_augment_config()
  with_tf = next(pipeline.labelled_iterator(config, None, 'val', batch_size=8, augment=False,
                                            shuffle=False, repeat=False))
  monkeypatch.setattr(pipeline, 'tensorflow_available', lambda: False)
  without = pipeline.labelled_iterator(config, None, 'val', batch_size=8, augment=False,
                                       shuffle=False, repeat=False)
  batch = next(without)
  np.testing.assert_array_equal(batch['label'], with_tf['label'])
  np.testing.assert_allclose(batch['image'], with_tf['image'], atol=2e-5)
  augmented = next(pipeline.labelled_iterator(config, None, 'train', batch_size=8,
                                              augment=True, shuffle=True, repeat=True))
  assert augmented['image'].shape == (8, 16, 16, 3) and augmented['image'].max() <= 1


def test_backend_auto_is_host_on_cpu_with_tensorflow(monkeypatch):
  c = device_augment_config()
  c.augment.backend = 'auto'
  assert pipeline.augment_backend(c) == 'host'
  monkeypatch.setattr(pipeline, 'tensorflow_available', lambda: False)
  assert pipeline.augment_backend(c) == 'device'
  c.augment.backend = 'host'
  with pytest.raises(ValueError, match='needs TensorFlow'):
    pipeline.augment_backend(c)
  c.augment.backend = 'gpu'
  with pytest.raises(ValueError, match='expected one of'):
    pipeline.augment_backend(c)


def test_pad_helpers():
  x = np.ones((2, 17, 33, 3), np.uint8)
  assert stores.pad_to_bucket(x).shape == (2, 32, 64, 3)
  assert stores.max_size(stores.ListStore([x[0], np.ones((40, 5, 3), np.uint8)])) == (40, 33)
