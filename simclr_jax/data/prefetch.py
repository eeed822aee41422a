"""A background thread that runs an iterator ahead of its consumer (the TensorFlow-free
loaders): numpy gathers, PIL decoding and transfers to the devices release the GIL, so
they overlap with the training step."""

import queue
import threading

_DONE = object()


def _fill(iterator, items: queue.Queue, stop: threading.Event):
  """The thread's loop. It holds no reference to its `threaded` owner, so an owner the
  consumer drops (an endless fine-tuning iterator at the end of a run) is collected and
  stops the thread."""

  def put(item) -> bool:
    while not stop.is_set():
      try:
        items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in iterator:
      if not put((item, None)):
        return
  except BaseException as e:  # pylint: disable=broad-except  (re-raised in the consumer)
    put((_DONE, e))
    return
  put((_DONE, None))


class threaded:  # pylint: disable=invalid-name (used like a function)
  """Iterates `iterator` in a daemon thread, keeping up to `depth` items ready. An
  exception in the thread is raised in the consumer at the item where it happened."""

  def __init__(self, iterator, depth: int = 2):
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    threading.Thread(target=_fill, args=(iter(iterator), self._queue, self._stop),
                     daemon=True).start()

  def __iter__(self):
    return self

  def __next__(self):
    item, error = self._queue.get()
    if item is _DONE:
      self._queue.put((_DONE, error))  # later calls end the same way
      if error is not None:
        raise error
      raise StopIteration
    return item

  def close(self):
    self._stop.set()

  def __del__(self):
    self.close()
