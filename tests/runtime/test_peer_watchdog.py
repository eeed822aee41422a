"""The peer watchdog on a key-value store shared in memory, with the coordination client's
methods and errors: a process that stops beating is named by every other process within
the timeout, one that ended normally is not, an unreachable store names process 0, and a
stalled reader waits for fresh evidence. tests/runtime/test_multiprocess.py runs it in two
real processes, with JAX's store."""

import threading
import time

import pytest

from simclr_jax.runtime import peer_watchdog


class _Store:
  """The coordination service's key-value store, as `key_value_set` /
  `key_value_try_get` see it (a missing key raises NOT_FOUND, as jaxlib does); `down`
  makes every call fail as a lost service does."""

  def __init__(self):
    self.values, self.lock, self.down = {}, threading.Lock(), False
    self.answering = threading.Event()
    self.answering.set()

  def key_value_set(self, key, value, allow_overwrite=False):
    self.answering.wait()  # cleared: a call blocks, as to a stopped host
    with self.lock:
      if self.down:
        raise RuntimeError('UNAVAILABLE: failed to connect to all addresses')
      assert allow_overwrite or key not in self.values
      self.values[key] = value

  def key_value_try_get(self, key):
    with self.lock:
      if self.down:
        raise RuntimeError('UNAVAILABLE: failed to connect to all addresses')
      if key not in self.values:
        raise RuntimeError(f'NOT_FOUND: Config key {key} not found.')
      return self.values[key]


class _Exits:
  def __init__(self):
    self.messages, self.event = [], threading.Event()

  def __call__(self, message):
    self.messages.append((time.monotonic(), message))
    self.event.set()


def _watchdogs(store, count, timeout, exits):
  return [peer_watchdog.PeerWatchdog(store, i, count, timeout, exit_fn=exits[i])
          for i in range(count)]


def test_a_process_that_stops_beating_is_named_by_all_within_the_timeout():
  store, exits = _Store(), [_Exits() for _ in range(4)]
  dogs = _watchdogs(store, 4, 0.6, exits)
  dogs[1].status = lambda: 'during step 4; the last complete checkpoint is step 3 in /w/c'
  for dog in dogs:
    dog.start()
  time.sleep(1.0)  # all beating: no one is lost
  assert not any(e.messages for e in exits)
  dogs[2]._stopped.set()  # pylint: disable=protected-access  (its thread dies as in kill -9)
  silent_since = time.monotonic()
  assert all(exits[i].event.wait(5) for i in (0, 1, 3))
  for i in (0, 1, 3):
    dogs[i].stop()
  (when, message), = exits[1].messages  # process 1 watches process 2
  assert 0.6 - dogs[0].interval <= when - silent_since < 0.6 + 3 * dogs[0].interval + 0.5
  assert message.startswith('lost contact with process 2 (no sign of life for ')
  assert message.endswith(' s) during step 4; the last complete checkpoint is step 3 in '
                          '/w/c. Start every process again with the same command to resume '
                          'from there (the launch scripts print it, and which process '
                          'failed first).')
  for i in (0, 3):  # they read the line process 1 posted
    assert exits[i].messages[0][1].startswith('lost contact with process 2 (no sign of life')
  assert not exits[2].messages


def test_a_process_that_ended_normally_is_not_lost():
  store, exits = _Store(), [_Exits() for _ in range(2)]
  dogs = _watchdogs(store, 2, 0.4, exits)
  for dog in dogs:
    dog.start()
  dogs[0].stop()  # at exit: says so, stops beating
  time.sleep(1.5)
  dogs[1].stop()
  assert not exits[0].messages and not exits[1].messages
  assert store.values['simclr_jax/done/0'] == '1'


def test_an_unreachable_store_names_process_0():
  store, exits = _Store(), [_Exits() for _ in range(2)]
  dog = _watchdogs(store, 2, 5.0, exits)[1].start()
  store.down = True  # process 0, which holds the service, is gone
  assert exits[1].event.wait(5)
  dog.stop()  # its `done` mark fails quietly: the store is gone
  message = exits[1].messages[0][1]
  assert message.startswith('lost contact with process 0 (it holds the coordination '
                            'service: UNAVAILABLE: failed to connect to all addresses)')


def test_a_store_that_stops_answering_names_process_0():
  store, exits = _Store(), [_Exits() for _ in range(2)]
  dog = _watchdogs(store, 2, 0.6, exits)[1].start()
  time.sleep(0.5)
  store.answering.clear()  # process 0 stopped: calls neither return nor fail
  hung_since = time.monotonic()
  assert exits[1].event.wait(5)
  (when, message), = exits[1].messages
  assert 0.6 - dog.interval <= when - hung_since < 0.6 + 3 * dog.interval + 0.5
  assert message.startswith('lost contact with process 0 (the coordination service it '
                            'holds has not answered for 1 s). Start every process')
  dog._stopped.set()  # pylint: disable=protected-access  (the blocked thread stays blocked)
  store.answering.set()


@pytest.mark.parametrize('status_fails', [False, True])
def test_a_stalled_reader_waits_for_fresh_evidence(monkeypatch, status_fails):
  """Its own clock jumped (the process was stopped, or starved of CPU): the others' silence
  over that time is no evidence, and a failing status still gives the line."""
  store, exits = _Store(), [_Exits() for _ in range(2)]
  dog = peer_watchdog.PeerWatchdog(store, 0, 2, 1.0, exit_fn=exits[0])
  if status_fails:
    dog.status = lambda: 1 / 0
  clock = [100.0]
  monkeypatch.setattr(peer_watchdog.time, 'monotonic', lambda: clock[0])
  ticks = []

  def wait(_):
    clock[0] += 10.0 if len(ticks) == 2 else dog.interval  # a stall on the 3rd tick
    ticks.append(clock[0])
    return len(ticks) > 20 or bool(exits[0].messages)

  monkeypatch.setattr(dog._stopped, 'wait', wait)  # pylint: disable=protected-access
  store.key_value_set('simclr_jax/alive/1', '1', allow_overwrite=True)  # then never again
  dog._watch()  # pylint: disable=protected-access
  (when, message), = exits[0].messages
  assert when > ticks[2] + 1.0  # not at the stall: a full timeout after it
  assert message.startswith('lost contact with process 1 (no sign of life for 1 s). Start')
