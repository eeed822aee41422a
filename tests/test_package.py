"""The package: pyproject.toml declares the pins of requirements*.txt, the entry points take
--version, and --config=configs/NAME.py finds the configs installed with the package from
a folder that has none."""

import os
import pathlib
import subprocess
import sys
import tomllib

import pytest
from absl import flags

import simclr_jax
from simclr_jax.runtime import cli, installed

REPO = pathlib.Path(__file__).resolve().parents[1]


def _pins(requirements: str) -> list[str]:
  lines = (REPO / requirements).read_text().splitlines()
  return sorted(line.split('#')[0].strip() for line in lines if line.split('#')[0].strip())


def _pyproject() -> dict:
  return tomllib.loads((REPO / 'pyproject.toml').read_text())


def test_pyproject_declares_the_pins_of_the_requirements_files():
  project = _pyproject()['project']
  assert sorted(project['dependencies']) == _pins('requirements.txt')
  extras = project['optional-dependencies']
  assert sorted(extras['test']) == _pins('requirements-test.txt')
  jax_pin = next(p for p in _pins('requirements.txt') if p.startswith('jax=='))
  assert extras['cuda12'] == [jax_pin.replace('jax', 'jax[cuda12]')]
  assert extras['tpu'] == [jax_pin.replace('jax', 'jax[tpu]')]


def test_the_version_has_one_source():
  dynamic = _pyproject()['tool']['setuptools']['dynamic']
  assert dynamic['version'] == {'attr': 'simclr_jax.__version__'}
  assert simclr_jax.__version__.count('.') == 2


def test_a_config_path_names_the_installed_copy_only_where_the_folder_has_none(tmp_path,
                                                                               monkeypatch):
  monkeypatch.chdir(tmp_path)
  argv = ['prog', '--config=configs/cytology.py:cpu', '--config.seed=3', '--workdir=w']
  assert installed.with_installed_configs(argv) == [
      'prog', f'--config={installed.CONFIGS}/cytology.py:cpu', '--config.seed=3', '--workdir=w']
  assert installed.with_installed_configs(['p', '--config=configs/none.py']) == [
      'p', '--config=configs/none.py']  # cli names the missing file
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'cytology.py').write_text('')
  assert installed.with_installed_configs(argv) == argv  # the folder's own file wins


@pytest.mark.parametrize('parse', [cli._parse_flags, installed.parse_flags],  # pylint: disable=protected-access
                         ids=['cli.run', 'app.run'])
def test_version_exits_0_before_a_config_is_needed(parse, capsys):
  """cli.run's entry points parse with cli._parse_flags; predict, embed, export and bench
  with installed.parse_flags."""
  try:
    with pytest.raises(SystemExit) as info:
      parse(['prog', '--version'])
  finally:
    flags.FLAGS['version'].unparse()
  assert info.value.code == 0
  assert capsys.readouterr().out == f'simclr_jax {simclr_jax.__version__}\n'


def test_a_config_is_found_from_another_folder(tmp_path):
  """configs/demo.py is the installed copy, started in a folder without configs/: its
  overrides apply (an unknown key is named) where a missing file would be refused."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  done = subprocess.run(
      [sys.executable, '-m', 'simclr_jax.pretrain', '--config=configs/demo.py',
       f'--workdir={tmp_path / "w"}', '--config.no_such_key=1'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      'error: unknown config key in --config.no_such_key=1')
