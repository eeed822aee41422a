"""config_keys.py declares every key once; the default config, the checks, the augmentation
parameters and docs/config_keys.md are built from it."""

import dataclasses
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from simclr_jax.config import (checks as config_checks, keys as config_keys,
                               defaults as default_config)
from simclr_jax.data import augment_params
from simclr_jax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_the_default_config_has_exactly_the_declared_keys():
  flat = config_checks.flatten(default_config.get_default_config())
  assert sorted(flat) == sorted(config_keys.FLAT_KEYS) == sorted(config_checks.RULES)


@pytest.mark.parametrize('name', list(config_keys.FLAT_KEYS))
def test_each_default_and_preset_value_meets_its_own_rule(name):
  key = config_keys.FLAT_KEYS[name]
  value = config_checks.flatten(default_config.get_default_config())[name]
  if isinstance(key.default, config_keys.Unset):
    assert value is None
  else:
    assert value == key.default and type(value) is type(key.default)
    assert key.rule(value) is None, (name, value, key.rule.expected)
  for preset_value in (key.presets or {}).values():
    assert type(preset_value) is key.default.type and key.rule(preset_value) is None
  assert key.doc.strip() and '\n' not in key.doc


def test_placeholders_are_fresh_in_each_config():
  first, second = default_config.get_default_config(), default_config.get_default_config()
  first.augment.blur_prob = 0.3
  first.distributed.num_processes = 4
  assert second.augment.blur_prob is None and second.distributed.num_processes is None


def test_a_bad_value_is_one_user_error_line_naming_the_key():
  config = default_config.get_default_config()
  config.batch_size = 0
  with pytest.raises(UserError,
                     match=r'^config\.batch_size=0: expected an integer >= 1 and <= 2147483647$'):
    config_checks.check(config)
  config = default_config.get_default_config()
  config.augment.crop_area_min = 0.9
  config.augment.crop_area_max = 0.5
  with pytest.raises(UserError, match=r'^config\.augment\.crop_area_min=0\.9: expected a value '
                     r'<= config\.augment\.crop_area_max \(0\.5\)$'):
    config_checks.check(config)
  config_checks.check({'distributed': {'num_processes': None}})  # a placeholder may be unset
  with pytest.raises(UserError, match='model.width=None: expected a number > 0 and <= 16'):
    config_checks.check({'model': {'width': None}})


def test_augment_params_are_the_augment_keys_with_the_default_configs_values():
  settings = {'augment.preset', 'augment.backend'}
  assert [f'augment.{f.name}' for f in dataclasses.fields(augment_params.AugmentParams)] == \
      [name for name in config_keys.FLAT_KEYS if name.startswith('augment.')
       and name not in settings]
  assert augment_params.AugmentParams() == \
      augment_params.resolve_params(default_config.get_default_config())
  assert set(augment_params.PRESETS) == set(config_keys.AUGMENT_PRESETS)


def test_resolve_params_checks_the_preset_filled_values():
  config = default_config.get_default_config()
  config.augment.preset = 'imagenet'
  config.augment.blur_sigma_min = 3.0  # above blur_sigma_max
  with pytest.raises(UserError, match=r'config\.augment\.blur_sigma_min=3\.0'):
    augment_params.resolve_params(config)


def test_choice_lists_match_their_implementations():
  from simclr_jax.evaluation import protocols, run_results  # pylint: disable=g-import-not-at-top
  from simclr_jax.experiments import study_report  # pylint: disable=g-import-not-at-top
  from simclr_jax.models import resnet  # pylint: disable=g-import-not-at-top
  from simclr_jax.training import losses, optim  # pylint: disable=g-import-not-at-top
  assert config_keys.ARCHITECTURE_NAMES == tuple(resnet.ARCHITECTURES)
  assert config_keys.LOSS_NAMES == tuple(losses.LOSS_NAMES)
  assert config_keys.OPTIMIZERS == tuple(optim.OPTIMIZERS)
  assert config_keys.LR_SCALINGS == tuple(optim.LR_SCALINGS)
  assert config_keys.SELECT_METRICS == tuple(run_results.SELECT_METRICS)
  assert config_keys.HEADLINES == tuple(protocols.headlines()) == tuple(study_report.HEADLINES)


def test_the_config_layer_imports_nothing_above_it():
  code = ('import sys; from simclr_jax.config import checks, defaults; '
          'print(" ".join(sorted(sys.modules)))')
  loaded = subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.split()
  project = {m for m in loaded if m.startswith('simclr_jax')}
  assert project == {'simclr_jax', 'simclr_jax.config', 'simclr_jax.config.checks',
                     'simclr_jax.config.keys', 'simclr_jax.config.defaults', 'simclr_jax.errors'}
  assert not {'jax', 'tensorflow', 'flax'} & set(loaded)


def test_every_config_file_passes_the_checks():
  for path in sorted((REPO / 'configs').glob('*.py')):
    spec = importlib.util.spec_from_file_location(f'config_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for arg in (None, 'runlocal', 'cpu', 'tiny', 'gpu'):
      if arg is None or f"'{arg}'" in path.read_text():  # the variants the file names
        config_checks.check(module.get_config(arg))


def test_the_key_reference_is_up_to_date():
  committed = (REPO / 'docs' / 'config_keys.md').read_text()
  assert committed == config_keys.markdown(), \
      'docs/config_keys.md is stale: python -m simclr_jax.config.keys > docs/config_keys.md'
