"""The augmentation ops' declarations (data/augment_ops/): each config key owned by one op,
salts and draws unique, the device's key order the registry's, each op's `off` switching it
off and `on` switching it on with values the config accepts, and the package importing
without TensorFlow."""

import collections
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from simclr_jax.config import defaults as default_config
from simclr_jax.config import keys as config_keys
from simclr_jax.data import augment as A
from simclr_jax.data import augment_ops, augment_params, device_augment
from simclr_jax.errors import UserError
from simclr_jax.experiments import findings_grid

# How augment.* keys say what runs, not what an op does.
NOT_OP_KEYS = {'preset', 'backend', 'eval_crop_fraction'}
# The device's draws as the released runs split them: a reorder changes every device view.
RELEASED_DRAWS = ('area', 'aspect', 'top', 'left', 'flip_lr', 'flip_ud', 'rot90',
                  'brightness', 'contrast', 'saturation', 'hue', 'order', 'jitter', 'grey',
                  'alpha', 'beta', 'blur', 'sigma')
SEED = tf.constant([5, 6], tf.int64)


def test_every_augment_key_is_owned_by_exactly_one_op():
  keys = {name.removeprefix('augment.') for name in config_keys.FLAT_KEYS
          if name.startswith('augment.')} - NOT_OP_KEYS
  owners = collections.Counter(key for op in augment_ops.OPS.values() for key in op.keys)
  assert set(owners) == keys
  assert [key for key, count in owners.items() if count != 1] == []
  for op in augment_ops.OPS.values():
    assert set(op.off) <= set(op.keys) and set(op.strengths) <= set(op.keys), op.name


def test_salts_and_draws_are_unique_and_the_device_splits_them_in_registry_order():
  draws = [(name, salt) for op in augment_ops.OPS.values() for name, salt in op.draws.items()]
  names, salts = zip(*draws)
  assert len(set(names)) == len(names)
  assert len(set(salts)) == len(salts)
  assert device_augment._DRAWS == names  # pylint: disable=protected-access
  assert names[:len(RELEASED_DRAWS)] == RELEASED_DRAWS


def test_findings_names_are_the_ops_and_color_and_the_config_documents_them():
  assert findings_grid.OPS == (*augment_ops.OPS, 'color')
  assert [op.name for op in augment_ops.named('color')] == ['jitter', 'grayscale']
  doc = config_keys.FLAT_KEYS['findings.augmentations'].doc
  assert all(name in doc for name in findings_grid.OPS), doc


def _config(preset='cytology', overrides=None):
  """The default config with `preset` and {'augment.KEY': value} overrides applied as the
  findings apply them."""
  c = default_config.get_default_config()
  c.augment.preset = preset
  variant = findings_grid.Variant('augmentations', 'test', overrides or {})
  return findings_grid.pretrain_config(c, variant, seed=0)


def _square_images(n=16):
  """uint8 images of square real sizes (12 or 16 px) padded to 16 x 20."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 16, 20, 3), np.uint8)
  sides = np.where(np.arange(n) % 2 == 0, 16, 12)
  for image, side in zip(images, sides):
    image[side:], image[:, side:] = 0, 0
  return tf.constant(images), tf.constant(np.stack([sides, sides], 1).astype(np.int32))


def test_no_augmentation_switches_every_op_off_and_each_on_switches_it_back_on():
  images, sizes = _square_images()
  off = augment_params.resolve_params(_config(overrides=findings_grid.NO_AUGMENTATION))
  for op in augment_ops.OPS.values():
    assert {key: getattr(off, key) for key in op.off} == op.off, op.name
  # With every op off, both views are the whole image resized.
  plain = A.center_crop_resize(images, sizes, 16, 1.0).numpy()
  views = A.simclr_views(images, sizes, SEED, off, 16).numpy()
  np.testing.assert_allclose(views[:, 0], plain, atol=1e-6)
  np.testing.assert_allclose(views[:, 1], plain, atol=1e-6)
  recipe = augment_params.resolve_params(_config())
  for op in augment_ops.OPS.values():
    on = {f'augment.{key}': value for key, value in op.on(recipe).items()}
    alone = augment_params.resolve_params(
        _config(overrides={**findings_grid.NO_AUGMENTATION, **on}))
    views = A.simclr_views(images, sizes, SEED, alone, 16).numpy()
    changed = np.abs(views - plain[:, None]).max(axis=(2, 3, 4)) > 1e-3
    assert changed.any(), f'{op.name} switched on changes no view'


def test_device_views_with_every_op_off_are_the_image_resized():
  images, sizes = (np.asarray(a) for a in _square_images(4))
  off = augment_params.resolve_params(_config(overrides=findings_grid.NO_AUGMENTATION))
  keys = device_augment.row_keys(0, device_augment.PRETRAIN_SALT, 0, np.arange(4))
  views = jax.jit(device_augment.simclr_views, static_argnums=(3, 4))(images, sizes, keys,
                                                                       off, 16)
  plain = device_augment.labelled_transform(images, sizes, np.zeros(2, np.uint32), p=off,
                                            out_size=16, augment=False)  # cytology: crop 1
  np.testing.assert_allclose(views[:, 0], plain, atol=1e-5)
  np.testing.assert_allclose(views[:, 1], plain, atol=1e-5)


@pytest.mark.parametrize('preset', config_keys.AUGMENT_PRESETS)
def test_on_gives_values_the_config_accepts_from_a_recipe_and_from_nothing(preset):
  for start in ({}, findings_grid.NO_AUGMENTATION):
    for name in findings_grid.OPS:
      overrides = findings_grid.op_overrides(_config(preset, start), name)
      assert {key.removeprefix('augment.') for key in overrides} == {
          key for op in augment_ops.named(name) for key in op.keys if key in op.off}
      # resolve_params runs the config's checks on every value.
      switched = augment_params.resolve_params(_config(preset, {**start, **overrides}))
      if start:  # from nothing: every op named is now on
        for op in augment_ops.named(name):
          assert {key: getattr(switched, key) for key in op.off} != op.off, name


def test_on_keeps_the_recipes_strength_and_else_takes_the_papers():
  recipe = augment_params.resolve_params(_config('imagenet'))
  assert augment_ops.OPS['jitter'].on(recipe) == {'jitter_strength': 1.0, 'jitter_prob': 0.8}
  assert augment_ops.OPS['blur'].on(recipe) == {'blur_prob': 0.5}
  none = augment_params.resolve_params(_config('imagenet', findings_grid.NO_AUGMENTATION))
  assert augment_ops.OPS['stain'].on(none) == {'stain_jitter': 0.05}
  assert augment_ops.OPS['crop'].on(none) == {'crop_area_min': 0.08, 'crop_area_max': 1.0,
                                              'crop_aspect_min': 0.75,
                                              'crop_aspect_max': 4 / 3}
  assert findings_grid.OP_DEFAULTS['grayscale_prob'] == 0.2


def test_an_unknown_op_is_a_user_error_naming_it_and_the_known_ones():
  with pytest.raises(UserError, match=r"unknown op 'sobel'.*'crop'.*'color'"):
    findings_grid.op_overrides(default_config.get_default_config(), 'sobel')
  with pytest.raises(KeyError):
    augment_ops.named('sobel')


def test_the_ops_and_the_device_pipeline_import_without_tensorflow():
  code = ("import sys; sys.modules['tensorflow'] = None\n"
          "from simclr_jax.data import augment_ops, device_augment\n"
          "assert 'tensorflow' not in {m.split('.')[0] for m in sys.modules if sys.modules[m]}\n"
          "try:\n"
          "  augment_ops.rotate.host_rot90(None, None)\n"
          "except ImportError:\n"
          "  print('host needs tf')\n")
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == 'host needs tf'
