"""Metric writers and progress reports that work with or without TensorFlow.

clu's metric writers (TensorBoard events through tf.summary) and ReportProgress are used
where the run uses TensorFlow anyway (`use_clu`, by default: TensorFlow is already
imported) and clu imports. Otherwise events are written with the tensorboard package's own
event-file writer (what PyTorch's SummaryWriter uses), so a run that augments on the
accelerator never starts TensorFlow (which would claim accelerator memory); without that
package either, the run logs one line saying why and writes metrics only to the log and
metrics.json.
"""

import logging
import sys
import time


def _tensorflow_loaded() -> bool:
  return sys.modules.get('tensorflow') is not None


def create_writer(workdir: str, just_logging: bool = False, use_clu: bool | None = None):
  """A writer with write_scalars(step, dict), write_hparams(dict), flush(), close()."""
  reason = 'this run does not use TensorFlow'
  if _tensorflow_loaded() if use_clu is None else use_clu:
    try:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top (imports TF)
      return metric_writers.create_default_writer(workdir, just_logging=just_logging)
    except ImportError as e:
      reason = str(e)
  if just_logging:
    return LoggingWriter()
  try:
    return EventWriter(workdir)
  except ImportError as e:
    logging.warning('No TensorBoard events (neither TensorFlow nor the tensorboard package '
                    'imports: %s; %s): metrics go to the log and metrics.json only',
                    reason, e)
    return LoggingWriter()


class LoggingWriter:
  def write_scalars(self, step, scalars):
    logging.info('[%d] %s', step, ', '.join(f'{k}={float(v):.6g}' for k, v in scalars.items()))

  def write_hparams(self, hparams):
    del hparams

  def flush(self):
    pass

  def close(self):
    pass


class EventWriter(LoggingWriter):
  """TensorBoard scalar events from the tensorboard package alone (no TensorFlow)."""

  def __init__(self, workdir: str):
    # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    self._file = EventFileWriter(workdir)

  def write_scalars(self, step, scalars):
    super().write_scalars(step, scalars)
    values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._file.add_event(self._event(wall_time=time.time(), step=int(step),
                                     summary=self._summary(value=values)))

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


def create_progress(num_train_steps: int, writer, every_secs: float = 60.0,
                    use_clu: bool | None = None):
  """progress(step): clu's ReportProgress (as create_writer decides), else a log line of
  steps/s and the time left every `every_secs`."""
  if _tensorflow_loaded() if use_clu is None else use_clu:
    try:
      from clu import periodic_actions  # pylint: disable=g-import-not-at-top (imports TF)
      return periodic_actions.ReportProgress(num_train_steps=num_train_steps, writer=writer)
    except ImportError:
      pass
  return _Progress(num_train_steps, writer, every_secs)


class _Progress:

  def __init__(self, num_train_steps, writer, every_secs):
    self.total, self.writer, self.every = num_train_steps, writer, every_secs
    self.last_time, self.last_step = None, None

  def __call__(self, step: int):
    now = time.monotonic()
    if self.last_time is None:
      self.last_time, self.last_step = now, step
      return
    if now - self.last_time < self.every:
      return
    rate = (step - self.last_step) / (now - self.last_time)
    self.writer.write_scalars(step, {'steps_per_sec': rate})
    logging.info('step %d/%d: %.2f steps/s, %.1f min left', step, self.total, rate,
                 (self.total - step) / max(rate, 1e-9) / 60)
    self.last_time, self.last_step = now, step
