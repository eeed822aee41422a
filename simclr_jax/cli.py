"""What every entry point shares: flags, multi-process start, and clean errors.

  --config=configs/NAME.py[:ARG]  --workdir=DIR  [--config.KEY=VALUE ...]
  [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

A user's mistake (a bad path, key or value) ends the program with one line naming it and
exit status 1, not a traceback from deep inside JAX or TensorFlow.
"""

import logging
import os
import sys
from typing import Callable

import jax
from absl import app, flags
from ml_collections import config_flags

from simclr_jax import distributed
from simclr_jax.models import weight_files

CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file: configs/NAME.py[:ARG].')
WORKDIR = flags.DEFINE_string('workdir', None, 'Where results, checkpoints and logs go.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'Multi-process: HOST:PORT of process 0.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Multi-process: process count.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'Multi-process: this process.')

# Errors the project raises for bad input (a path, key or value) or a diverged run; any
# other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, FloatingPointError,
               weight_files.MissingDependencyError)


def _config_with_flags():
  config = CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/NAME.py is required')
  if not WORKDIR.value:
    raise app.UsageError('--workdir=DIR is required')
  with config.unlocked():
    if _COORDINATOR.value:
      config.distributed.coordinator_address = _COORDINATOR.value
    if _NUM_PROCESSES.value is not None:
      config.distributed.num_processes = _NUM_PROCESSES.value
    if _PROCESS_ID.value is not None:
      config.distributed.process_id = _PROCESS_ID.value
  return config


def run(job: Callable[[object, str], dict]) -> None:
  """Runs `job(config, workdir)` as a program (call from `if __name__ == '__main__'`)."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    config = _config_with_flags()
    distributed.initialize(config)
    distributed.setup_logging()
    workdir = os.path.expanduser(WORKDIR.value)
    try:
      job(config, workdir)
    except USER_ERRORS as e:
      if isinstance(e, jax.errors.JaxRuntimeError):
        raise  # a failure inside XLA is not the user's input: keep the traceback
      logging.error('%s', e)
      _exit_with(str(e))

  app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's parsing, with config_flags' failures (an unknown key, a missing config file)
  turned into one line that names the flag."""
  for arg in argv[1:]:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
      if not os.path.isfile(path):
        _exit_with(f'--config: no config file at {path} (expected configs/NAME.py)')
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _exit_with(f'{e}\nPass --helpfull to see the flags.')
  except (AttributeError, KeyError) as e:
    detail = str(e).encode().decode('unicode_escape').replace("'", '').strip()
    key = detail.split()[0] if detail else ''
    bad = [a for a in argv[1:] if a.startswith('--config.')
           and a.split('=', 1)[0].split('.')[-1] == key] or ['--config.?']
    hint = ' '.join(detail.split()[1:])
    _exit_with(f'unknown config key in {bad[0]}' + (f' ({hint})' if hint else ''))
  except OSError as e:
    _exit_with(f'could not load --config: {e}')


def _exit_with(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)

