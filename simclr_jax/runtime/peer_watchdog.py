"""Ends a multi-process run with one line when another of its processes is gone.

Without it, a process waiting on a lost peer outside a collective that fails (a barrier,
a collective gloo does not see broken) is ended by JAX's coordination service after
`heartbeat_timeout_seconds`: a fatal C++ log line, a dump of extension modules, SIGABRT.

Each process beats a counter under its own key in the coordination service's key-value
store and watches the next process's (a ring: O(1) reads per process, so a pod of
thousands of hosts costs the store little). A counter that stops advancing for `timeout`
seconds (on the reader's own clock: no clock is shared between hosts) makes the reader
post the line under one shared key, which every process reads, so all end with the same
line naming the lost process, each adding its step and last complete checkpoint. A store
that fails or stops answering (process 0, which holds it, is gone or hung) ends the
process too. The timeout is half of JAX's, so this line comes first. A process that ends
normally says so first, so its silence is not taken for a loss.

One loss stays JAX's: when process 0 dies outright, JAX's own client sees the service's
socket close and aborts at once, before any thread of ours runs (JAX 0.10 has no hook).
"""

import atexit
import threading
import time
from typing import Callable

from simclr_jax.runtime import run_errors

_ALIVE = 'simclr_jax/alive/'
_DONE = 'simclr_jax/done/'
_LOST = 'simclr_jax/lost'


def _no_status() -> str:
  return ''


class PeerWatchdog:
  """A daemon thread. `status` (set by the job) says where the run is, for the message:
  'during step 4; the last complete checkpoint is ...'. `stop()` marks this process as
  ended normally."""

  def __init__(self, client, process_index: int, process_count: int, timeout: float,
               exit_fn: Callable[[str], None] = run_errors.exit_now):
    self.client, self.index, self.count = client, process_index, process_count
    self.timeout = float(timeout)
    self.interval = min(max(self.timeout / 10, 0.2), 5.0)
    self.exit_fn = exit_fn
    self.status: Callable[[], str] = _no_status
    self._stopped = threading.Event()
    self._beats = 0
    self._answered = time.monotonic()  # the store's last answer to this process
    self._ended = threading.Lock()

  def start(self) -> 'PeerWatchdog':
    self._beat()
    for target, name in ((self._watch, 'peer-watchdog'), (self._deadline, 'peer-deadline')):
      threading.Thread(target=target, name=name, daemon=True).start()
    atexit.register(self.stop)
    return self

  def stop(self) -> None:
    if self._stopped.is_set():
      return
    self._stopped.set()
    try:
      self.client.key_value_set(f'{_DONE}{self.index}', '1', allow_overwrite=True)
    except Exception:  # pylint: disable=broad-except  (ending anyway; others time out)
      pass

  def _beat(self) -> None:
    self._beats += 1
    self.client.key_value_set(f'{_ALIVE}{self.index}', str(self._beats), allow_overwrite=True)
    self._answered = time.monotonic()

  def _deadline(self) -> None:
    """A store that hangs (process 0 stopped, its host unreachable) blocks the watch
    thread's calls without failing them: this thread notices that no call has returned
    for `timeout` seconds."""
    last_loop = time.monotonic()
    while not self._stopped.wait(self.interval):
      now = time.monotonic()
      if now - last_loop > 3 * self.interval:  # this process was stalled: no evidence
        self._answered = now
      last_loop = now
      if now - self._answered > self.timeout:
        self._lost('process 0 (the coordination service it holds has not answered for '
                   f'{now - self._answered:.0f} s)')
        return

  def _get(self, key: str):
    """The value under `key`, or None where it is not set yet; other failures raise."""
    try:
      return self.client.key_value_try_get(key)
    except Exception as e:  # pylint: disable=broad-except  (jaxlib raises a plain error)
      if 'NOT_FOUND' in str(e):
        return None
      raise

  def _watch(self) -> None:
    watched = (self.index + 1) % self.count
    seen, changed = None, time.monotonic()
    last_loop = changed
    while not self._stopped.wait(self.interval):
      now = time.monotonic()
      if now - last_loop > 3 * self.interval:  # this process was stalled: no evidence
        changed = now
      last_loop = now
      try:
        self._beat()
        posted, beats, done = (self._get(_LOST), self._get(f'{_ALIVE}{watched}'),
                               self._get(f'{_DONE}{watched}'))
      except Exception as e:  # pylint: disable=broad-except  (the store is unreachable)
        if not self._stopped.is_set():
          self._lost('process 0 (it holds the coordination service: '
                     f'{" ".join(str(e).split())[:120]})')
        return
      if posted is not None:  # another process found one lost
        self._lost(posted)
        return
      if done is not None:
        continue
      if beats != seen:
        seen, changed = beats, now
      elif now - changed > self.timeout:
        who = f'process {watched} (no sign of life for {now - changed:.0f} s)'
        try:
          self.client.key_value_set(_LOST, who, allow_overwrite=True)
        except Exception:  # pylint: disable=broad-except  (this process ends anyway)
          pass
        self._lost(who)
        return

  def _lost(self, who: str) -> None:
    if self._stopped.is_set() or not self._ended.acquire(blocking=False):
      return  # ending normally, or the other thread has given the line
    try:
      status = self.status()
    except Exception:  # pylint: disable=broad-except  (the line matters more than its detail)
      status = ''
    self.exit_fn(f'lost contact with {who}{" " + status if status else ""}. Start every '
                 'process again with the same command to resume from there (the launch '
                 'scripts print it, and which process failed first).')
