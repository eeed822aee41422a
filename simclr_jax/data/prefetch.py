"""A background thread that runs an iterator ahead of its consumer (the TensorFlow-free
loaders): numpy gathers, PIL decoding and transfers to the devices release the GIL, so
they overlap with the training step."""

import queue
import threading

_DONE = object()


class threaded:  # pylint: disable=invalid-name (used like a function)
  """Iterates `iterator` in a daemon thread, keeping up to `depth` items ready. An
  exception in the thread is raised in the consumer at the item where it happened."""

  def __init__(self, iterator, depth: int = 2):
    self._queue = queue.Queue(maxsize=max(1, depth))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(iter(iterator),), daemon=True)
    self._thread.start()

  def _put(self, item) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self, iterator):
    try:
      for item in iterator:
        if not self._put((item, None)):
          return
    except BaseException as e:  # pylint: disable=broad-except  (re-raised in the consumer)
      self._put((_DONE, e))
      return
    self._put((_DONE, None))

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
