"""What every entry point needs to run from an installed package (pip install .), from any
folder: --version, and --config=configs/NAME.py found among the configs installed with the
package (simclr_jax/configs, a link to the repository's configs/) when the current folder
has no such file."""

import os
import sys

from absl import app, flags

import simclr_jax

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'configs')


class _VersionFlag(flags.BooleanFlag):
  """--version prints the version and exits 0 while the flags are parsed, before a config
  is loaded or needed (as absl's --help does)."""

  def __init__(self):
    super().__init__('version', False, 'Print the version of simclr_jax and exit.',
                     allow_hide_cpp=True)

  def parse(self, argument):
    super().parse(argument)
    if self.value:
      print(f'simclr_jax {simclr_jax.__version__}')
      sys.exit(0)


flags.DEFINE_flag(_VersionFlag())


def with_installed_configs(argv: list[str]) -> list[str]:
  """argv with --config=configs/NAME.py[:ARG] naming the installed copy where the current
  folder has no configs/NAME.py; any other argument as it is."""
  out = []
  for arg in argv:
    if arg.startswith('--config='):
      path, colon, rest = arg.removeprefix('--config=').partition(':')
      installed = os.path.join(CONFIGS, os.path.relpath(path, 'configs'))
      if (not os.path.isfile(path) and os.path.normpath(path).startswith('configs' + os.sep)
          and os.path.isfile(installed)):
        arg = f'--config={installed}{colon}{rest}'
    out.append(arg)
  return out


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing (app.run's default) after with_installed_configs: pass as
  app.run(main, flags_parser=installed.parse_flags)."""
  return app.parse_flags_with_usage(with_installed_configs(argv))
