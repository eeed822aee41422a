"""One run per workdir: a lock file WORKDIR/run.lock naming its holder (host, pid, start).

cli.run takes it before the job touches the workdir and removes it when the job ends, so
every entry point that writes a workdir holds one; the study's sub-runs, which run inside
the sweep's process under the sweep's workdir, are covered by the sweep's lock. A second
run stops with one line naming the holder, as does a run whose workdir lies inside a
locked one (a sub-run folder of a running study).

A lock is stale, and is taken over with a warning, when its holder was a process on this
host that no longer exists, or when it has not been refreshed for config.lock_stale_minutes
(the holder touches it every minute or so): how a holder on another host that died (kill -9,
a lost VM) is recognised. In a multi-process job process 0 holds the lock and tells the
others whether it got it.
"""

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import time

from simclr_jax.runtime.run_errors import RunStopped

LOCK_FILE = 'run.lock'
_HEARTBEAT_MAX_S = 60.0


def _me() -> dict:
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds')}


def _describe(holder: dict) -> str:
  return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
          f"started {holder.get('started', '?')}")


def _read(path: str) -> dict | None:
  """The holder recorded in `path`; None when there is no lock; {} when it is unreadable."""
  try:
    with open(path) as f:
      holder = json.load(f)
    return holder if isinstance(holder, dict) else {}
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, TypeError, ValueError, OverflowError):
    return True  # another user's process, or a pid we cannot check: assume it runs
  return True


def _same_process(holder: dict) -> bool:
  return holder.get('host') == socket.gethostname() and holder.get('pid') == os.getpid()


def _stale_reason(path: str, holder: dict, max_age_s: float) -> str | None:
  """Why the lock in `path` may be taken over, or None while its holder counts as alive."""
  if holder.get('host') == socket.gethostname() and not _alive(holder.get('pid')):
    return f"its holder (pid {holder.get('pid')}) no longer runs on this host"
  try:
    age = time.time() - os.path.getmtime(path)
  except FileNotFoundError:
    return 'it was just released'
  if age > max_age_s:
    return (f'it has not been refreshed for {age / 60:.0f} min '
            f'(config.lock_stale_minutes={max_age_s / 60:g})')
  if not holder and age > 5:  # a holder writes its record in one step (see _create)
    return 'it does not say who holds it'
  return None


def _create(path: str, record: dict) -> bool:
  """Writes the lock atomically (a complete record, or nothing); False when one exists."""
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f)
  try:
    os.link(tmp, path)  # fails when the lock exists, atomically, also on NFS
    return True
  except FileExistsError:
    return False
  finally:
    os.remove(tmp)


def _refuse_if_inside_locked(workdir: str, max_age_s: float) -> None:
  parent = os.path.dirname(workdir)
  while parent and parent != os.path.dirname(parent):
    path = os.path.join(parent, LOCK_FILE)
    holder = _read(path)
    if holder and 'pid' in holder and not _same_process(holder) and not _stale_reason(
        path, holder, max_age_s):  # (a run.lock that is not ours, in a parent, is ignored)
      raise RunStopped(f'{workdir} lies inside {parent}, which is in use by another run '
                       f'({_describe(holder)}; lock file {path}). Use a --workdir outside '
                       'it, or wait for that run to end.')
    parent = os.path.dirname(parent)


class WorkdirLock:
  """The held lock: a heartbeat thread keeps it fresh until release()."""

  def __init__(self, path: str, record: dict, max_age_s: float):
    self.path, self.record = path, record
    self._stop = threading.Event()
    interval = min(_HEARTBEAT_MAX_S, max_age_s / 4)
    self._thread = threading.Thread(target=self._beat, args=(interval,), daemon=True,
                                    name='workdir-lock-heartbeat')
    self._thread.start()

  def _beat(self, interval: float) -> None:
    while not self._stop.wait(interval):
      with contextlib.suppress(OSError):
        os.utime(self.path)

  def release(self) -> None:
    self._stop.set()
    self._thread.join()
    if _read(self.path) == self.record:  # still ours (not taken over as stale)
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)


def acquire(workdir: str, stale_minutes: float) -> WorkdirLock | None:
  """Locks `workdir` (made if missing) for this process; None when this process already
  holds it. Raises RunStopped naming the holder when another run holds it."""
  workdir = os.path.abspath(workdir)
  max_age_s = 60.0 * stale_minutes
  _refuse_if_inside_locked(workdir, max_age_s)
  path = os.path.join(workdir, LOCK_FILE)
  try:  # a workdir that is a file, or in a folder this user may not write to
    os.makedirs(workdir, exist_ok=True)
    open(f'{path}.{os.getpid()}.tmp', 'a').close()
  except OSError as e:
    raise RunStopped(f'--workdir={workdir}: cannot write there ({e.strerror or e})') from e
  record = _me()
  for _ in range(3):
    if _create(path, record):
      return WorkdirLock(path, record, max_age_s)
    holder = _read(path)
    if holder is None:
      continue  # released in between: try again
    if _same_process(holder):
      return None
    reason = _stale_reason(path, holder, max_age_s)
    if reason is None:
      raise RunStopped(f'{workdir} is in use by another run ({_describe(holder)}; lock file '
                       f'{path}). Wait for it to end or use another --workdir; if that run '
                       f'is gone for good, delete {path}.')
    logging.warning('taking over the stale lock %s (%s): %s', path, _describe(holder), reason)
    if _read(path) == holder:  # not taken over by someone else meanwhile
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
  raise RunStopped(f'could not lock {workdir}: other runs keep taking {path}')


@contextlib.contextmanager
def hold(workdir: str, stale_minutes: float):
  """Holds the workdir's lock for the block (process 0 of a multi-process job)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() == 1:
    lock = acquire(workdir, stale_minutes)
  else:
    lock, error = None, None
    if jax.process_index() == 0:
      try:
        lock = acquire(workdir, stale_minutes)
      except RunStopped as e:
        error = e
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    if not multihost_utils.broadcast_one_to_all(error is None):
      raise error or RunStopped(f'process 0 could not lock {workdir}; its log says why')
  try:
    yield
  finally:
    if lock is not None:
      lock.release()
