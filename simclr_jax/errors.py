"""The errors simclr_jax raises for what a user can fix. The entry points print them as one
line and exit 1 (run_errors.one_line_errors); any other exception is a bug and keeps its
traceback. A leaf module: every layer may import it."""


class UserError(ValueError):
  """Bad input: a path, key or value, named in the message with what was expected.
  A ValueError, so callers that catch ValueError still catch it."""


class PathNotFound(UserError, FileNotFoundError):
  """A file or folder the user named does not exist."""


class PathTaken(UserError, FileExistsError):
  """A path the user named for output holds something this run must not overwrite."""


class RunStopped(RuntimeError):
  """The run could not start or go on: a locked workdir, a changed config on resume, a
  checkpoint that could not be written, or failed sub-runs of a study."""
  # True where the exit-time handlers must be skipped (distributed.ProcessLost: JAX's
  # shutdown would wait for the lost process, then abort with a fatal log).
  skip_exit_handlers = False


class MissingDependencyError(UserError, ImportError):
  """A file format needs an optional package that is not installed: the user's setup to
  change, not a bug (the entry points report it in one line)."""


class RunDiverged(RunStopped, FloatingPointError):
  """A non-finite loss or gradient: the message names the step and the setting to lower."""
