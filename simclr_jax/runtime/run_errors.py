"""Failures whose message says everything the user needs: the entry points print it as one
line and exit non-zero, without a traceback (USER_ERRORS)."""

import contextlib
import logging
import os
import sys

from simclr_jax.errors import RunStopped, UserError  # RunStopped: re-exported


# Only the project's own types: bad input (a path, key or value, a missing optional
# package: UserError) and a run that cannot go on (RunStopped, a diverged run included).
# Any other exception, a ValueError or OSError from inside a library included, is a bug or
# a fault the project did not foresee, and keeps its traceback.
USER_ERRORS = (UserError, RunStopped)


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
  """A user's mistake inside the block ends the program with one line naming it; any
  other exception (a failure inside XLA, a bug) keeps its traceback."""
  try:
    yield
  except USER_ERRORS as e:
    if getattr(e, 'skip_exit_handlers', False):
      exit_now(str(e))
    exit_with(str(e))
