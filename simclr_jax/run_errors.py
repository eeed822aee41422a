"""Failures whose message says everything the user needs: the entry points print it as one
line and exit non-zero, without a traceback (see cli.USER_ERRORS)."""


class RunStopped(RuntimeError):
  """The run could not start or go on: a locked workdir, a changed config on resume, a
  checkpoint that could not be written, or failed sub-runs of a study."""
