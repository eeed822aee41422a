"""Augmentation ops: eager and inside tf.data, ranges, crop statistics, determinism."""

import dataclasses
import importlib.util
import pathlib

from absl import flags
from ml_collections import config_flags
import numpy as np
import pytest
import tensorflow as tf

from simclr_jax.config import defaults as default_config
from simclr_jax.data import augment as A
from simclr_jax.data.augment_ops import blur, grayscale

SEED = tf.constant([3, 4], tf.int64)


def _images(batch=8, h=40, w=48):
  rng = np.random.default_rng(0)
  return tf.constant(rng.integers(0, 256, (batch, h, w, 3), np.uint8)), \
      tf.constant(np.tile([h, w], (batch, 1)).astype(np.int32))


def _float_images(batch=8, side=32):
  return tf.constant(np.random.default_rng(1).uniform(0, 1, (batch, side, side, 3)), tf.float32)


OPS = {
    'random_resized_crop': lambda im, sz, x, s: A.random_resized_crop(im, sz, s, 24, flip_lr=True, flip_ud=True),
    'center_crop_resize': lambda im, sz, x, s: A.center_crop_resize(im, sz, 24),
    'color_jitter': lambda im, sz, x, s: A.color_jitter(x, s, 1.0, 1.0),
    'random_grayscale': lambda im, sz, x, s: A.random_grayscale(x, s, 0.5),
    'gaussian_blur': lambda im, sz, x, s: A.gaussian_blur(x, s, 1.0),
    'stain_jitter': lambda im, sz, x, s: A.stain_jitter(x, s, 0.1),
    'random_rot90': lambda im, sz, x, s: A.random_rot90(x, s),
    'simclr_views': lambda im, sz, x, s: A.simclr_views(
        im, sz, s, A.AugmentParams(blur_prob=0.5, rot90=True, flip_ud=True), 24),
    'simclr_views_stain': lambda im, sz, x, s: A.simclr_views(
        im, sz, s, A.AugmentParams(stain_jitter=0.05), 24),
    'supervised_augment': lambda im, sz, x, s: A.supervised_augment(
        im, sz, s, A.AugmentParams(rot90=True), 24),
}


@pytest.mark.parametrize('name', sorted(OPS))
def test_op_eager_equals_tf_data_and_is_in_range(name):
  images, sizes = _images()
  x = _float_images()
  op = OPS[name]
  eager = op(images, sizes, x, SEED).numpy()
  ds = tf.data.Dataset.from_tensors((images, sizes, x, SEED)).map(op)
  in_data = next(iter(ds)).numpy()
  np.testing.assert_allclose(eager, in_data, atol=1e-5)
  assert eager.dtype == np.float32
  assert eager.min() >= 0 and eager.max() <= 1
  expected_side = 32 if name in ('color_jitter', 'random_grayscale', 'gaussian_blur',
                                 'stain_jitter', 'random_rot90') else 24
  assert eager.shape[-3:] == (expected_side, expected_side, 3)
  if name.startswith('simclr_views'):
    assert eager.shape == (8, 2, 24, 24, 3)
    assert not np.allclose(eager[:, 0], eager[:, 1])  # two independent views


def test_ops_deterministic_for_a_seed_and_differ_across_seeds():
  images, sizes = _images()
  params = A.AugmentParams(blur_prob=0.5, jitter_strength=1.0)
  a = A.simclr_views(images, sizes, SEED, params, 24).numpy()
  b = A.simclr_views(images, sizes, SEED, params, 24).numpy()
  c = A.simclr_views(images, sizes, tf.constant([3, 5], tf.int64), params, 24).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).mean() > 0.01


def test_crop_area_and_aspect_distributions():
  n = 20000
  sizes = tf.constant(np.tile([200, 300], (n, 1)).astype(np.int32))
  boxes = A.random_crop_boxes(SEED, sizes, tf.constant([200, 300])).numpy()
  h = (boxes[:, 2] - boxes[:, 0]) * 199 + 1
  w = (boxes[:, 3] - boxes[:, 1]) * 299 + 1
  area = h * w / (200 * 300)
  aspect = w / h
  assert area.min() >= 0.08 - 1e-3 and area.max() <= 1 + 1e-3
  assert 3 / 4 - 1e-3 <= aspect.min() and aspect.max() <= 4 / 3 + 1e-3
  # Matches a numpy simulation of the rule: area uniform in [0.08, 1], log aspect
  # uniform, the first of 10 tries that fits, else the whole image.
  rng = np.random.default_rng(0)
  ref_area = rng.uniform(0.08, 1, (n, 10))
  ref_aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), (n, 10)))
  fits = (np.sqrt(ref_area * ref_aspect * 6e4) <= 300) & (np.sqrt(ref_area / ref_aspect * 6e4) <= 200)
  first = fits.argmax(1)
  ref = np.where(fits.any(1), ref_area[np.arange(n), first], 1.0)
  np.testing.assert_allclose(np.quantile(area, [0.1, 0.5, 0.9]),
                             np.quantile(ref, [0.1, 0.5, 0.9]), atol=0.02)
  ref_aspect = np.where(fits.any(1), ref_aspect[np.arange(n), first], 1.5)
  np.testing.assert_allclose(np.quantile(aspect, [0.1, 0.5, 0.9]),
                             np.quantile(ref_aspect, [0.1, 0.5, 0.9]), atol=0.03)
  assert (boxes[:, :2] >= -1e-6).all() and (boxes[:, 2:] <= 1 + 1e-6).all()


def test_crop_respects_real_size_of_padded_images():
  image = np.zeros((1, 50, 50, 3), np.uint8)
  image[0, :20, :30] = 200  # the real image; the rest is padding
  out = A.random_resized_crop(tf.constant(np.repeat(image, 64, 0)),
                              tf.constant([[20, 30]] * 64, tf.int32), SEED, 16).numpy()
  np.testing.assert_allclose(out, 200 / 255, atol=1e-5)


def test_center_crop_takes_the_centre():
  image = np.zeros((1, 40, 40, 3), np.uint8)
  image[0, 10:30, 10:30] = 255
  out = A.center_crop_resize(tf.constant(image), tf.constant([[40, 40]]), 8, 0.5).numpy()
  np.testing.assert_allclose(out, 1.0)


def test_color_ops_match_their_definitions():
  x = _float_images(batch=64)
  grey = A.random_grayscale(x, SEED, 1.0).numpy()
  np.testing.assert_allclose(grey[..., 0], grey[..., 1], atol=1e-5)
  expected = np.clip(x.numpy() @ np.array(grayscale.LUMA), 0, 1)
  np.testing.assert_allclose(grey[..., 0], expected, atol=1e-4)
  # Strength 0 or probability 0 leave images unchanged.
  np.testing.assert_allclose(A.color_jitter(x, SEED, 0.0, 1.0), x, atol=1e-5)
  np.testing.assert_allclose(A.color_jitter(x, SEED, 1.0, 0.0), x, atol=1e-5)
  # Hue rotation keeps grey pixels grey; jitter with p=0.8 changes about 80% of images.
  jittered = A.color_jitter(x, SEED, 1.0, 0.8).numpy()
  changed = np.abs(jittered - x.numpy()).max(axis=(1, 2, 3)) > 1e-4
  assert 0.6 < changed.mean() < 0.95
  flat = tf.fill([4, 8, 8, 3], 0.5)
  np.testing.assert_allclose(A.stain_jitter(flat, SEED, 0.0), flat, atol=1e-3)


def test_blur_keeps_constant_images_and_smooths_noise():
  x = _float_images(batch=16)
  blurred = A.gaussian_blur(x, SEED, 1.0, (2.0, 2.0)).numpy()
  # Interior (away from the zero-padded border): less variance, same mean.
  inner = blurred[:, 4:-4, 4:-4]
  assert inner.std() < 0.5 * x.numpy()[:, 4:-4, 4:-4].std()
  assert abs(inner.mean() - x.numpy().mean()) < 0.02
  untouched = A.gaussian_blur(x, SEED, 0.0).numpy()
  np.testing.assert_array_equal(untouched, x.numpy())


def test_rot90_is_a_rotation():
  x = tf.constant(np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3))
  out = A.random_rot90(tf.tile(x, [16, 1, 1, 1]), SEED).numpy()
  rotations = [np.rot90(x.numpy()[0], k) for k in range(4)]
  seen = {next(k for k, r in enumerate(rotations) if np.array_equal(o, r)) for o in out[::2]}
  assert len(seen) >= 3


REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / 'configs').glob('*.py'))


def _load_config(path, arg=None):
  spec = importlib.util.spec_from_file_location(f'config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_presets_fill_the_keys_left_none_and_explicit_values_win():
  c = default_config.get_default_config()
  c.augment.preset = 'imagenet'
  p = A.resolve_params(c)
  assert p.jitter_strength == 1.0 and p.blur_prob == 0.5 and p.eval_crop_fraction == 0.875
  c.augment.blur_prob = 0.25
  assert A.resolve_params(c).blur_prob == 0.25  # an explicit key wins
  c.augment.preset = 'cytology'
  p = A.resolve_params(c)
  assert p.flip_ud and p.rot90 and p.stain_jitter > 0 and p.blur_prob == 0.25
  c.augment.preset = 'cifar'
  c.augment.grayscale_prob = 1.5
  with pytest.raises(ValueError, match='grayscale_prob'):
    A.resolve_params(c)


def test_explicit_default_value_wins_over_the_preset():
  # The old rule ("a preset fills every key left at its default") ignored this.
  c = default_config.get_default_config()
  c.augment.preset = 'imagenet'
  c.augment.blur_prob = 0.0
  c.augment.jitter_strength = 0.5
  p = A.resolve_params(c)
  assert p.blur_prob == 0.0 and p.jitter_strength == 0.5
  # No blur: the views are those of the same params with the blur op never built.
  images, sizes = _images()
  views = A.simclr_views(images, sizes, SEED, p, 24).numpy()
  blurred = A.simclr_views(images, sizes, SEED, dataclasses.replace(p, blur_prob=1.0), 24)
  unblurred = A.gaussian_blur(tf.reshape(views, [16, 24, 24, 3]), SEED, 0.0)
  np.testing.assert_array_equal(views.reshape(16, 24, 24, 3), unblurred.numpy())
  assert not np.allclose(views, blurred.numpy())
  c.augment.preset = 'cytology'
  c.augment.flip_ud = False
  c.augment.stain_jitter = 0.0
  p = A.resolve_params(c)
  assert not p.flip_ud and p.rot90 and p.stain_jitter == 0.0


def test_unknown_preset_is_an_error_naming_the_key():
  c = default_config.get_default_config()
  c.augment.preset = 'nope'
  with pytest.raises(ValueError, match=r'config\.augment\.preset=.nope.*cifar'):
    A.resolve_params(c)


def test_placeholders_are_exactly_the_preset_keys():
  aug = default_config.get_default_config().augment
  unset = {k for k in aug.keys() if aug[k] is None}
  assert unset == A.PRESET_KEYS
  for preset in A.PRESETS.values():
    assert set(preset) == A.PRESET_KEYS


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_configs_resolve_and_do_not_restate_their_preset(path):
  c = _load_config(path)
  A.resolve_params(c)
  preset = A.PRESETS[c.augment.preset]
  restated = {k for k in A.PRESET_KEYS if c.augment[k] == preset[k]}
  assert not restated, f'{path.name} sets {sorted(restated)} to the preset\'s values'


def test_command_line_sets_a_placeholder_to_the_default_value():
  argv = ['prog', f'--config={REPO / "configs" / "imagenet.py"}',
          '--config.augment.blur_prob=0.0', '--config.augment.flip_ud=true',
          '--config.augment.jitter_strength=1']
  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file('config', None, 'A config file.',
                                           flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  p = A.resolve_params(config.value)
  assert p.blur_prob == 0.0 and p.flip_ud and p.jitter_strength == 1.0
  assert isinstance(config.value.augment.blur_prob, float)
  assert p.eval_crop_fraction == 0.875  # still the preset's


def test_blur_kernel_truncated_at_three_sigma_matches_the_full_kernel():
  # At 224 px the 10%-of-side kernel has radius 11; 3 * sigma_max = 6 keeps 99.9% of the
  # widest Gaussian's mass, so the truncated blur differs by well under one grey level.
  assert A.blur_kernel_radius(224) == 11 and A.blur_kernel_radius(224, 2.0) == 6
  assert A.blur_kernel_radius(32, 2.0) == 1  # the side's 10% stays the limit
  x = tf.random.stateless_uniform([2, 64, 64, 3], [1, 2])
  sigma = tf.constant([2.0, 1.0])
  full = blur.host_gaussian(x, sigma, 11).numpy()
  truncated = blur.host_gaussian(x, sigma, 6).numpy()
  assert np.max(np.abs(full - truncated)) < 1.0 / 255
  assert np.max(np.abs(full - x.numpy())) > 0.05  # and it does blur
