"""What every entry point shares: flags, multi-process start, and clean errors.

  --config=configs/NAME.py[:ARG]  --workdir=DIR  [--config.KEY=VALUE ...]
  [--coordinator_address=HOST:PORT --num_processes=N --process_id=I] [--verbose]

The console shows the settings, progress and results; the full log goes to
WORKDIR/log.txt (console.py), and `--verbose` shows it on the console too.

A user's mistake (a bad path, key or value) ends the program with one line naming it and
exit status 1, not a traceback from deep inside JAX or TensorFlow. Before the job starts,
every key's type and range are checked (config/checks.py) and the workdir is locked for
this run (workdir_lock.py).
"""

import contextlib
import os
import re
import sys
from typing import Callable

from absl import app, flags
from ml_collections import config_flags

from simclr_jax.config import checks as config_checks
from simclr_jax.errors import UserError
from simclr_jax.runtime import console, distributed, installed, workdir_lock
# USER_ERRORS: re-exported for the entry points and tests
from simclr_jax.runtime.run_errors import USER_ERRORS, exit_with, one_line_errors

CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file: configs/NAME.py[:ARG].')
WORKDIR = flags.DEFINE_string('workdir', None, 'Where results, checkpoints and logs go.')
_CLUSTER = distributed.define_flags()
_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show the full log (INFO lines, TensorFlow and XLA notices) on '
                             'the console too; it always goes to WORKDIR/log.txt.')

def _config_with_flags():
  config = CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/NAME.py is required')
  if not WORKDIR.value:
    raise app.UsageError('--workdir=DIR is required')
  with config.unlocked():
    for key, value in _CLUSTER()['distributed'].items():
      if value not in (None, ''):
        config.distributed[key] = value
  return config


def run(job: Callable[[object, str], dict]) -> None:
  """Runs `job(config, workdir)` as a program (call from `if __name__ == '__main__'`)."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    config = _config_with_flags()
    try:
      config_checks.check(config)
    except UserError as e:
      exit_with(str(e))
    console.keep_quiet(_VERBOSE.value)  # before JAX starts its backends (and logs them)
    distributed.initialize(config)
    distributed.setup_logging()
    workdir = os.path.expanduser(WORKDIR.value)
    with one_line_errors(), workdir_lock.hold(workdir, config.get('lock_stale_minutes', 30.0)), \
        _console(config, workdir):
      job(config, workdir)

  app.run(main, flags_parser=_parse_flags)


@contextlib.contextmanager
def _console(config, workdir: str):
  """The full log in WORKDIR/log.txt, and the run's settings as the console's first line."""
  with console.log_to_file(workdir, _VERBOSE.value) as log:
    program = os.path.basename(sys.argv[0]).removesuffix('.py').split('.')[-1]  # pretrain
    console.say(console.settings_line(program, config, workdir, log))
    yield


def _parse_flags(argv):
  """absl's parsing, with config_flags' failures (an unknown key, a value of the wrong
  type, a missing config file) turned into one line that names the flag."""
  argv = installed.with_installed_configs(argv)
  for arg in argv[1:]:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
      if not os.path.isfile(path):
        exit_with(f'--config: no config file at {path} (expected configs/NAME.py)')
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    exit_with(flag_error_message(e, argv))


def flag_error_message(error: Exception, argv) -> str:
  """One line for a failure of absl / config_flags parsing `argv`."""
  if isinstance(error, flags.IllegalFlagValueError):  # a --config.KEY=VALUE of the wrong type
    return ' '.join(str(error).removeprefix('flag ').split())
  if isinstance(error, flags.Error):
    return ' '.join(str(error).split()) + ' (pass --helpfull to see the flags)'
  if isinstance(error, OSError):
    return f'could not load --config: {error}'
  # config_flags raises AttributeError('KEY\nDid you mean...') for an unknown key, and
  # KeyError('... Attempting to lookup: PATH') for a key below a value that is no dict.
  detail = str(error).encode().decode('unicode_escape').strip('\'" \n')
  lookup = re.search(r'Attempting to lookup: (\S+)', detail)
  key = lookup.group(1) if lookup else re.split(r'[\'"\s]', detail)[0]
  # The error names only the last part of a nested key: find the flag that ends with it.
  bad = [a for a in argv[1:] if a.startswith('--config.')
         and a.split('=', 1)[0].split('.')[-1] == key.split('.')[-1]]
  where = bad[0] if bad else f'--config.{key}'
  hint = re.search(r'Did you mean .*', detail)
  return f'unknown config key in {where}' + (f' ({hint.group(0)})' if hint else '')
