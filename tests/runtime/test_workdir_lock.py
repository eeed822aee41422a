"""One run per workdir: the lock names its holder, refuses a second run (also one inside
a locked workdir), is re-entrant in its own process, and a stale one is taken over."""

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from simclr_jax.runtime import workdir_lock
from simclr_jax.runtime.run_errors import RunStopped


def _write_lock(workdir, **holder):
  workdir.mkdir(parents=True, exist_ok=True)
  record = {'host': socket.gethostname(), 'pid': os.getpid(), 'started': 'then', **holder}
  (workdir / workdir_lock.LOCK_FILE).write_text(json.dumps(record))
  return record


def _live_other_process():
  return subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])


def test_lock_records_holder_and_is_released(tmp_path):
  with workdir_lock.hold(str(tmp_path / 'run'), stale_minutes=30):
    holder = json.loads((tmp_path / 'run' / workdir_lock.LOCK_FILE).read_text())
    assert holder['pid'] == os.getpid() and holder['host'] == socket.gethostname()
    assert holder['started']
    with workdir_lock.hold(str(tmp_path / 'run'), stale_minutes=30):  # re-entrant
      pass
    assert (tmp_path / 'run' / workdir_lock.LOCK_FILE).exists()
  assert not (tmp_path / 'run' / workdir_lock.LOCK_FILE).exists()


def test_second_run_is_refused_naming_the_holder_and_touching_nothing(tmp_path):
  other = _live_other_process()
  try:
    _write_lock(tmp_path / 'run', pid=other.pid, started='2026-01-01T00:00:00')
    before = sorted(os.listdir(tmp_path / 'run'))
    with pytest.raises(RunStopped) as info:
      workdir_lock.acquire(str(tmp_path / 'run'), stale_minutes=30)
    message = str(info.value)
    assert '\n' not in message
    assert f'pid {other.pid} on {socket.gethostname()}' in message
    assert '2026-01-01T00:00:00' in message and 'is in use by another run' in message
    assert sorted(os.listdir(tmp_path / 'run')) == before
    # A workdir inside the locked one (a study's sub-run folder) is refused too.
    with pytest.raises(RunStopped, match='lies inside'):
      workdir_lock.acquire(str(tmp_path / 'run' / 'simclr' / 'pretrain'), stale_minutes=30)
    assert not (tmp_path / 'run' / 'simclr').exists()
  finally:
    other.kill()
    other.wait()


def test_stale_locks_are_taken_over_with_a_warning(tmp_path, caplog):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  _write_lock(tmp_path / 'dead', pid=dead.pid)
  _write_lock(tmp_path / 'old', host='another-host', pid=1)
  old = time.time() - 3600
  os.utime(tmp_path / 'old' / workdir_lock.LOCK_FILE, (old, old))
  with caplog.at_level(logging.WARNING):
    for name, reason in (('dead', 'no longer runs'), ('old', 'has not been refreshed')):
      lock = workdir_lock.acquire(str(tmp_path / name), stale_minutes=30)
      assert json.loads((tmp_path / name / workdir_lock.LOCK_FILE).read_text())['pid'] == \
          os.getpid()
      assert reason in caplog.text
      lock.release()
  # A recent lock of a live holder on another host is respected.
  _write_lock(tmp_path / 'remote', host='another-host', pid=1)
  with pytest.raises(RunStopped, match='another-host'):
    workdir_lock.acquire(str(tmp_path / 'remote'), stale_minutes=30)


def test_heartbeat_keeps_a_long_run_fresh(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, '_HEARTBEAT_MAX_S', 0.05)
  lock = workdir_lock.acquire(str(tmp_path), stale_minutes=30)
  path = tmp_path / workdir_lock.LOCK_FILE
  os.utime(path, (0, 0))
  time.sleep(0.3)
  assert time.time() - path.stat().st_mtime < 5
  lock.release()
