"""Failures whose message says everything the user needs: the entry points print it as one
line and exit non-zero, without a traceback (USER_ERRORS)."""

import contextlib
import logging
import os
import sys

from simclr_jax.errors import (MissingDependencyError, RunStopped,  # RunStopped: re-exported
                               UserError)


# Errors the project raises for bad input (a path, key or value), a diverged run or a run
# that cannot go on (RunStopped); any other exception is a bug and keeps its traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, FileExistsError,
               PermissionError, FloatingPointError, MissingDependencyError,
               RunStopped)


def exit_with(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def exit_now(message: str):
  """Like exit_with, skipping the exit-time handlers."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  logging.shutdown()
  os._exit(1)


@contextlib.contextmanager
def one_line_errors():
  """A user's mistake inside the block ends the program with one line naming it; a
  failure inside XLA is not the user's input and keeps its traceback."""
  import jax  # pylint: disable=g-import-not-at-top
  try:
    yield
  except USER_ERRORS as e:
    if isinstance(e, jax.errors.JaxRuntimeError):
      raise
    if getattr(e, 'skip_exit_handlers', False):
      exit_now(str(e))
    exit_with(str(e))
