"""What a run prints, and where its log goes.

The console (stdout, process 0 only) gets one line of settings, progress with the time
left, "run k of n" for a sweep's sub-runs, and the results. Warnings from simclr_jax and
errors from anywhere go to stderr as `warning: ...` / `error: ...`. Everything else that
is logged (absl / Python logging at INFO: orbax, JAX's backend probe, the trainer's step
lines, tracebacks of failed sub-runs) goes to WORKDIR/log.txt only (log.process<i>.txt
for process i > 0 of a multi-process run); `--verbose` shows it on stderr too, as before.

TensorFlow's and XLA's C++ start-up notices (oneDNN, CPU instructions, PjRt devices) are
filtered by TF_CPP_MIN_LOG_LEVEL, which they read when they are imported:
simclr_jax/__init__.py sets it.

On a terminal, progress is one line redrawn in place; where stdout is a file or a pipe
(CI, SLURM logs) it is a plain line now and then, since carriage returns would pile up.
"""

import contextlib
import logging
import logging.handlers
import os
import shutil
import sys
import time

# A record with this attribute set False is for the log file only: said on the console
# already (say), or a traceback whose one-line form the entry point prints.
ON_CONSOLE = 'on_console'
_FILE_ONLY = {ON_CONSOLE: False}

_open_line = []  # the stream whose progress line waits for its newline, if any


def _end_open_line() -> None:
  while _open_line:
    stream = _open_line.pop()
    stream.write('\n')
    stream.flush()


def _is_main_process() -> bool:
  jax = sys.modules.get('jax')
  return jax is None or jax.process_index() == 0


def say(message: str) -> None:
  """A line for the person at the console (stdout, process 0 only); in the log too."""
  logging.info('%s', message, extra=_FILE_ONLY)
  if _is_main_process():
    _end_open_line()
    print(message, flush=True)


def duration(seconds: float) -> str:
  """M:SS, or H:MM:SS from an hour."""
  seconds = max(int(round(seconds)), 0)
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f'{hours}:{minutes:02d}:{secs:02d}' if hours else f'{minutes}:{secs:02d}'


def about(seconds: float) -> str:
  """A rough time for a person: 'about 40 s', 'about 14 min', 'about 2.5 h'."""
  if seconds < 90:
    return f'about {max(round(seconds), 1)} s'
  if seconds < 90 * 60:
    return f'about {round(seconds / 60)} min'
  return f'about {seconds / 3600:.1f} h'


def _rate_text(rate: float) -> str:
  return f'{rate:.0f}' if rate >= 10 else f'{rate:.2g}'


def progress_text(what: str, done: int, total: int, noun: str, values: dict,
                  images_per_sec: float | None, eta_secs: float | None) -> str:
  """'pretrain: 120/2100 steps  loss 4.523  62 images/s  ETA 5:21'."""
  parts = [f'{what}: {done}/{total} {noun}']
  parts += [f'{k} {v:.4g}' for k, v in values.items() if v is not None]
  if images_per_sec is not None:
    parts.append(f'{_rate_text(images_per_sec)} images/s')
  if eta_secs is not None:
    parts.append(f'ETA {duration(eta_secs)}')
  return '  '.join(parts)


class Progress:
  """Where a loop of `total` units (images, steps) is: done/total, named values (the
  last loss), images/s and the time left.

  On a terminal the line is redrawn in place at most twice a second. Elsewhere a plain
  line is printed each time `done` reaches a multiple of `every` (the step at which the
  trainer fetches its loss), or, with `every` None, every `every_secs`; and once at the
  end. The rate is timed from the `warmup`-th update on (the first step compiles), and
  nothing is printed in the first `quiet_secs`. Only process 0 prints.
  """

  def __init__(self, total: int, what: str, noun: str = 'images', *, images_per_unit=1,
               every: int | None = None, every_secs: float = 10.0, warmup: int = 0,
               quiet_secs: float = 0.0, stream=None):
    self.total, self.what, self.noun = total, what, noun
    self.images_per_unit, self.every, self.every_secs = images_per_unit, every, every_secs
    self.warmup, self.quiet_secs = warmup, quiet_secs
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty()
    self.enabled = _is_main_process()
    self.start = self.last = time.perf_counter()
    self.start_done, self.last_done, self.updates = 0, 0, 0
    self.values = {}
    self._width = 0

  def update(self, done: int, values: dict | None = None) -> None:
    now = time.perf_counter()
    self.updates += 1
    self.values.update(values or {})
    if self.updates <= self.warmup:
      self.start, self.start_done = now, done
      if done < self.total:
        return
    final = done >= self.total
    if not self.enabled or now - self.start < self.quiet_secs or not (final or self._due(
        done, now)):
      return
    self.last, self.last_done = now, done
    timed = done > self.start_done and now > self.start
    rate = (done - self.start_done) / (now - self.start) if timed else None
    line = progress_text(self.what, done, self.total, self.noun, self.values,
                         rate * self.images_per_unit if rate else None,
                         (self.total - done) / rate if rate else None)
    self._write(line, final)

  def _due(self, done: int, now: float) -> bool:
    if self.tty:  # from half a second after the warm-up: the host runs ahead of the device
      return now - max(self.last, self.start) >= 0.5
    if self.every:
      return done % self.every == 0
    return now - self.last >= self.every_secs

  def _write(self, line: str, final: bool) -> None:
    if self.tty:
      filled = int(20 * min(self.last_done / max(self.total, 1), 1.0))
      line = line.replace(': ', f' [{"#" * filled}{"-" * (20 - filled)}] ', 1)
      line = line[:shutil.get_terminal_size().columns - 1]
      self.stream.write('\r' + line.ljust(self._width))
      self._width = len(line)
      if self.stream not in _open_line:
        _open_line.append(self.stream)
    else:
      self.stream.write(line + '\n')
    self.stream.flush()
    if final:
      self.close()

  def close(self) -> None:
    if self.stream in _open_line:
      _end_open_line()


class RunCounter:
  """'run k of n: <sub-run>' as a sweep's sub-runs start, with the time left from the mean
  time of the runs that ran so far. Runs read back from a finished workdir, or not run
  because their pretraining failed, count towards k but not towards that mean. With
  total 0 it counts and says nothing (a study run from code)."""

  def __init__(self, total: int = 0, root: str = ''):
    self.total, self.root = total, root
    self.count, self.skipped, self.timed, self.seconds = 0, 0, 0, 0.0

  def skip(self) -> None:
    self.count += 1
    self.skipped += 1

  @contextlib.contextmanager
  def running(self, workdir: str):
    self.count += 1
    if self.total:
      name = os.path.relpath(workdir, self.root) if self.root else workdir
      notes = []
      if self.timed:
        left = self.seconds / self.timed * (max(self.total, self.count) - self.count + 1)
        notes.append(f'{about(left)} left')
      if self.skipped and self.count == self.skipped + 1:
        notes.append(f'{self.skipped} finished before')
      say(f'run {self.count} of {max(self.total, self.count)}: {name}' +
          (f'  ({", ".join(notes)})' if notes else ''))
    started = time.perf_counter()
    try:
      yield
    finally:
      self.timed += 1
      self.seconds += time.perf_counter() - started


class _ConsoleFilter(logging.Filter):
  """Lets through what the console shows: records not marked file-only and, unless
  verbose, only warnings from simclr_jax and errors from anywhere."""

  def __init__(self, verbose: bool):
    super().__init__()
    self.verbose = verbose
    self.package_dir = os.path.dirname(os.path.abspath(sys.modules['simclr_jax'].__file__))

  def filter(self, record: logging.LogRecord) -> bool:
    if not getattr(record, ON_CONSOLE, True):
      return False
    ours = os.path.abspath(record.pathname).startswith(self.package_dir + os.sep)
    if not (self.verbose or record.levelno >= logging.ERROR or
            (record.levelno >= logging.WARNING and ours)):
      return False
    _end_open_line()
    return True


class _ConsoleFormatter(logging.Formatter):
  """`warning: ...` on one line (a traceback stays in the log file)."""

  def __init__(self, prefix: str = ''):
    super().__init__()
    self.prefix = prefix

  def format(self, record: logging.LogRecord) -> str:
    return f'{self.prefix}{record.levelname.lower()}: {record.getMessage()}'


def _absl_handler():
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.use_absl_handler()  # app.run does this too; a no-op the second time
  return absl_logging.get_absl_handler()


_buffer = logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1)


def keep_quiet(verbose: bool) -> None:
  """The console shows only warnings of simclr_jax and errors (everything with verbose);
  until `log_to_file`, the log is kept in memory. Call before JAX starts its backends: it
  logs its probes then."""
  handler = _absl_handler()
  if not any(isinstance(f, _ConsoleFilter) for f in handler.filters):
    handler.addFilter(_ConsoleFilter(verbose))
  if not verbose:
    handler.python_handler.setFormatter(_ConsoleFormatter())
  logging.captureWarnings(True)  # library warnings go to the log, not straight to stderr
  root = logging.getLogger()
  if _buffer not in root.handlers:
    _buffer.setTarget(None)
    root.addHandler(_buffer)


def log_path(workdir: str, process_index: int) -> str:
  name = 'log.txt' if process_index == 0 else f'log.process{process_index}.txt'
  return os.path.join(workdir, name)


@contextlib.contextmanager
def log_to_file(workdir: str, verbose: bool):
  """For the block: the full log appended to WORKDIR/log.txt (what was kept since
  `keep_quiet` first), the command line at its start, and a failure's traceback at its
  end (the entry point prints its one line). Yields the log's path."""
  import jax  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  path = log_path(workdir, jax.process_index())
  os.makedirs(workdir, exist_ok=True)
  file_handler = logging.FileHandler(path, encoding='utf-8')
  file_handler.setFormatter(absl_logging.PythonFormatter())
  root = logging.getLogger()
  root.addHandler(file_handler)
  _buffer.setTarget(file_handler)
  _buffer.flush()
  root.removeHandler(_buffer)
  if not verbose:  # in place of distributed.setup_logging's prefix, where one process runs
    prefix = (f'[process {jax.process_index()}/{jax.process_count()}] '
              if jax.process_count() > 1 else '')
    _absl_handler().python_handler.setFormatter(_ConsoleFormatter(prefix))
  logging.info('command: %s', ' '.join(sys.argv), extra=_FILE_ONLY)
  try:
    yield path
  except (Exception, KeyboardInterrupt):
    logging.exception('the run stopped', extra=_FILE_ONLY)
    raise
  finally:
    _end_open_line()
    root.removeHandler(file_handler)
    file_handler.close()


def settings_line(program: str, config, workdir: str, log: str) -> str:
  """One line: what runs, on what, with what, and where the log is."""
  import jax  # pylint: disable=g-import-not-at-top
  data = config.data
  parts = [f"{data.name}{' ' + data.path if data.get('path') else ''} {data.image_size} px"]
  if program in ('pretrain', 'linear_eval', 'finetune') and config.get('init_from'):
    parts.append(f'the network of {config.init_from}')  # its model settings are taken
  else:
    parts.append(f'{config.model.name} width {config.model.width:g}')
  steps = (f'{config.num_steps} steps' if config.num_steps > 0
           else f'{config.num_epochs} epochs')
  if program == 'pretrain':
    parts.append(f'batch {config.batch_size}, {steps}')
  if program in ('linear_eval', 'finetune'):
    parts.append(f'{config.label_fraction:g} of the labels')
  if program == 'sweep':
    study = config.study
    parts.append(f'starting points {study.starting_points}, label fractions '
                 f'{study.label_fractions}, {study.seeds} seed(s)' +
                 (f', {study.folds} folds' if study.get('folds') else ''))
  if program == 'findings':
    parts.append(f'findings {config.findings.run}, {config.findings.seeds} seed(s), '
                 f'pretraining batch {config.batch_size}, {steps}')
  devices = jax.devices()
  parts.append(f'seed {config.seed}, {len(devices)} {devices[0].platform} device'
               f"{'s' if len(devices) > 1 else ''}")
  return f"{program}: {', '.join(parts)} -> {workdir} (log: {log})"


_PROTOCOL_NAMES = {'linear': 'linear evaluation', 'finetune': 'fine-tuning',
                   'supervised': 'supervised training from random init'}


def evaluation_summary(result: dict, workdir: str) -> str:
  """An evaluation's verdict on the test split, and where its results are."""
  name = _PROTOCOL_NAMES.get(result.get('protocol'), result.get('protocol', 'evaluation'))
  return (f"{name} finished: test top-1 {result['top1']:.3f}, balanced accuracy "
          f"{result['balanced_accuracy']:.3f}, macro F1 {result['macro_f1']:.3f} "
          f"({result['num_test']} test images, {result['num_train']} labelled for training)\n"
          f"results: {os.path.join(workdir, 'metrics.json')}")
