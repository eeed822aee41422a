"""Only the project's own error types print as one line; anything else, a ValueError
included, is a bug and keeps its traceback."""

import os
import pathlib
import subprocess
import sys

import pytest

from simclr_jax import errors
from simclr_jax.data import folder
from simclr_jax.models import weight_files
from simclr_jax.runtime import run_errors, workdir_lock

REPO = pathlib.Path(__file__).resolve().parents[2]

# An entry point whose job has a bug that raises a ValueError.
_PROGRAM = '''
from simclr_jax.runtime import cli

def job(config, workdir):
  raise ValueError('a bug: an internal invariant does not hold')

cli.run(job)
'''


@pytest.mark.parametrize('error', [ValueError('a bug'), FileNotFoundError('a bug'),
                                   FloatingPointError('a bug')])
def test_an_exception_of_another_type_keeps_its_traceback(error):
  with pytest.raises(type(error)):
    with run_errors.one_line_errors():
      raise error


@pytest.mark.parametrize('error', [
    errors.UserError('config.x=1: expected 2'), errors.PathNotFound('--workdir=x: no such folder'),
    errors.RunDiverged('non-finite loss at step 3'), folder.DataError('x.png: not an image'),
    weight_files.MissingDependencyError('reading x.pth needs PyTorch')])
def test_the_projects_own_errors_are_one_line(error, capsys):
  with pytest.raises(SystemExit) as info:
    with run_errors.one_line_errors():
      raise error
  assert info.value.code == 1
  assert capsys.readouterr().err == f'error: {error}\n'


def test_a_workdir_that_cannot_be_made_is_one_line(tmp_path):
  (tmp_path / 'a_file').write_text('')
  with pytest.raises(errors.RunStopped, match=r'^--workdir=.*a_file/run: cannot write there'):
    workdir_lock.acquire(str(tmp_path / 'a_file' / 'run'), 30.0)


def test_the_command_line_prints_a_bug_with_its_traceback(tmp_path):
  program = tmp_path / 'program.py'
  program.write_text(_PROGRAM)
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  done = subprocess.run([sys.executable, str(program), '--config=configs/demo.py',
                         f'--workdir={tmp_path / "run"}'], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode != 0
  assert 'Traceback' in done.stderr and 'in job' in done.stderr
  assert done.stderr.strip().splitlines()[-1] == (
      'ValueError: a bug: an internal invariant does not hold')
