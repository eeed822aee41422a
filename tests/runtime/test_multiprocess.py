"""Two processes (4 simulated CPU devices each) train exactly as one process with 8.

Every run goes through the real entry point (`simclr_jax.runtime.cli`, the flags
`--coordinator_address --num_processes --process_id`) in a subprocess, via a small
wrapper that can stop the run after step K the way SIGTERM does, at the same step in
every process, or kill -9 process 1 once step K's checkpoint is complete. The
one-process run is the same config, unchanged: batch k depends only on (seed, k, global
batch size), each process feeding its rows of it.

One two-process run goes through every way a run ends and starts again, each start
compared with the uninterrupted one-process run: stopped as by SIGTERM, resumed until a
process is lost, resumed to the end.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import FAST_COMPILE_FLAG
from simclr_jax.training import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[2]
# A checkpoint after every step (the last 3 kept): stopped after 2, process 1 lost after 3,
# ends at 4. Not a longer run: a 6-step schedule's larger learning rate at steps 4-6 grew the
# cross-process rounding (below) past the tolerances (gradient norm 3e-4 at step 4, 4e-2 at 6).
STEPS, STOP_AT, KILL_AT = 4, 2, 3
OVERRIDES = {
    'model.width': 0.0625, 'model.head_dim': 16, 'data.image_size': 16,
    'data.synthetic_size': 20, 'data.num_synthetic': 120, 'batch_size': 16,
    'num_steps': STEPS, 'log_every_steps': 1, 'checkpoint_every_steps': 1,
    # No test split: the end-of-run representation check (not under test here) is skipped.
    'data.split': '(1.0,0.0,0.0)',
}

_WRAPPER = textwrap.dedent("""
  import os, signal, sys, time
  import jax
  from jax._src import cache_key
  from simclr_jax.runtime import cli
  from simclr_jax.training import loop
  from simclr_jax.data import pipeline

  stop_at = int(os.environ.get('STOP_AT', '0'))
  # Process 1 dies (kill -9) once this step's checkpoint is complete, as it asks for the
  # next batch.
  kill_at = int(os.environ.get('KILL_AT', '0'))
  real_batches = pipeline.pretrain_batches  # what the trainer's host feed iterates
  fetched = [0]  # the step whose batch was asked for last (a resumed run starts later)

  def kill_after_checkpoint(step):
    workdir = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--workdir='))
    deadline = time.time() + 120
    while not os.path.isdir(os.path.join(workdir, 'checkpoints', str(step))):
      if time.time() > deadline:
        break  # the test then finds the checkpoint missing
      time.sleep(0.1)  # until the step's checkpoint is complete
    with open(os.path.join(workdir, 'killed_at'), 'w') as f:
      f.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)

  def batches_of(*args, **kwargs):
    fetched[0] = kwargs.get('start_step', 0)
    for batch in real_batches(*args, **kwargs):
      fetched[0] += 1  # the loop asks for a stop only after running the batch's step
      if kill_at and fetched[0] > kill_at and '--process_id=1' in sys.argv:
        kill_after_checkpoint(kill_at)
      if kill_at and fetched[0] > kill_at and '--process_id=0' in sys.argv:
        time.sleep(120)  # waits for data, in no collective: only the watchdog can end it
      yield batch

  class StopAt:  # SIGTERM after step `stop_at`
    requested = property(lambda self: bool(stop_at) and fetched[0] >= stop_at)
    def restore(self):
      pass

  pipeline.pretrain_batches = batches_of
  loop._Preemption = StopAt
  if os.environ.get('SHARE_PROGRAMS'):
    # Process 0 compiles each program spanning both processes and hands process 1 the
    # binary (JAX's share_binary_between_hosts, as on GPU clusters), and later starts read
    # it from the compilation cache. On CPU, JAX hashes a per-process topology fingerprint
    # into the cache key, so the two processes' keys would differ and process 1 would wait
    # for a binary never shared; here the key hashes the device kinds instead (the device
    # assignment stays in the key, through the compile options).
    if not hasattr(cache_key, '_hash_accelerator_config'):  # else a hang: keys still differ
      sys.exit('harness: jax._src.cache_key._hash_accelerator_config is gone; update '
               'SHARE_PROGRAMS for this JAX')
    cache_key._hash_accelerator_config = cache_key._hash_devices
    jax.config.update('jax_share_binary_between_hosts', True)
  cli.run(loop.train_and_evaluate)
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices, **extra):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             # Both runs compile at the test process's LLVM level (FAST_COMPILE_FLAG): half
             # the compile time. With the two-process runs alone at it, their gradient drifted
             # 0.7% from the one-process run's at step 2.
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices} {FAST_COMPILE_FLAG}',
             JAX_DEFAULT_PRNG_IMPL='rbg',  # threefry's init takes tens of seconds to compile
             **{k: str(v) for k, v in extra.items()})
  for var in ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri'):
    env.pop(var, None)
  return env


def _start(script, workdir, env, *flags):
  args = [sys.executable, str(script), '--config=configs/demo.py', f'--workdir={workdir}']
  args += [f'--config.{k}={v}' for k, v in OVERRIDES.items()] + list(flags)
  return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _launch(script, workdir, *flags, two_processes, stop_at=0, kill_at=0):
  """Starts one run: two processes with 4 devices each, or one with 8."""
  if not two_processes:
    env = _env(8, STOP_AT=stop_at)
    return [_start(script, workdir, env, *flags)]
  # The harness shares programs between the processes (SHARE_PROGRAMS, above): both then
  # start from the same compiled train step. Without it, JAX writes the compilation cache
  # from process 0 only and process 1's keys differ, so process 0 would start at once while
  # process 1 compiles, and on a busy machine wait past gloo's fixed 30 s for the first
  # collective.
  env = _env(4, STOP_AT=stop_at, KILL_AT=kill_at, SHARE_PROGRAMS=1)
  address = f'localhost:{_free_port()}'
  return [_start(script, workdir, env, f'--coordinator_address={address}',
                 '--num_processes=2', f'--process_id={i}', *flags) for i in range(2)]


def _wait(procs, timeout=600, expect_success=True):
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=timeout)[0])
  finally:
    for p in procs:  # one failing must not leave the other waiting for it
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outputs):
    assert (p.returncode == 0) == expect_success, out[-4000:]
  return outputs


def _checkpoint(workdir, step):
  """The checkpoint's params and batch stats on this process's first device (the saving
  runs had other devices)."""
  directory, _ = checkpoint.find_checkpoint(str(workdir))
  path = os.path.join(directory, str(step), 'model')
  with ocp.StandardCheckpointer() as checkpointer:
    metadata = checkpointer.metadata(path).item_metadata
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
    return checkpointer.restore(path, target)


_COMPARED = ('loss', 'contrastive_loss', 'probe_loss', 'grad_norm')


def _logged(workdir) -> dict:
  """{(step, name): value} of the compared scalars in the workdir's TensorBoard events."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = {}
  for path in workdir.glob('events.out.tfevents.*'):
    for record in tf.data.TFRecordDataset(str(path)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for v in event.summary.value:
        if v.tag in _COMPARED:
          values[(event.step, v.tag)] = float(tf.make_ndarray(v.tensor))
  return values


# Both runs train on the same global batches over the same 8-device mesh; only the order
# in which the cross-process all-reduces (gradients, batch-norm statistics) sum differs,
# a float32 rounding of ~1e-7 that the steps compound. Measured at step 4: losses within
# 6e-7, the gradient norm (a sum of squares over every parameter) 7e-6, every parameter
# 5e-5 of its leaf's largest value.
_RTOL = {'grad_norm': 5e-5}


def _assert_same_training(workdir_a, workdir_b, step, status):
  """The runs logged the same losses up to `step`, and their checkpoints at `step` match."""
  metrics = json.loads((workdir_a / 'metrics.json').read_text())
  assert (metrics['status'], metrics['step']) == (status, step)
  logged_a, logged_b = _logged(workdir_a), _logged(workdir_b)
  for s in range(1, step + 1):
    for key in _COMPARED:
      np.testing.assert_allclose(logged_a[(s, key)], logged_b[(s, key)],
                                 rtol=_RTOL.get(key, 1e-5), err_msg=f'{key} at step {s}')
  np.testing.assert_allclose(metrics['loss'], logged_b[(step, 'loss')], rtol=1e-5)
  model_a, model_b = _checkpoint(workdir_a, step), _checkpoint(workdir_b, step)
  leaves_a = jax.tree_util.tree_leaves_with_path(model_a)
  leaves_b = jax.tree_util.tree_leaves(model_b)
  assert len(leaves_a) == len(leaves_b) > 0
  for (path, a), b in zip(leaves_a, leaves_b):
    scale = max(float(np.abs(b).max()), 1e-6)
    np.testing.assert_allclose(np.asarray(a) / scale, np.asarray(b) / scale, rtol=0,
                               atol=1e-4, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def script(tmp_path_factory):
  path = tmp_path_factory.mktemp('harness') / 'run_pretrain.py'
  path.write_text(_WRAPPER)
  return path


@pytest.fixture(scope='module')
def one(script, tmp_path_factory):
  """One process runs all STEPS, with a checkpoint after each."""
  workdir = tmp_path_factory.mktemp('one')
  _wait(_launch(script, workdir, two_processes=False))
  assert json.loads((workdir / 'metrics.json').read_text())['status'] == 'completed'
  return workdir


HEARTBEAT_TIMEOUT = 10
# Process 0 waits for its next batch, in no collective, after process 1 is lost, so no
# failing collective ends it: the peer watchdog does, once process 1 has shown no sign of
# life for HEARTBEAT_TIMEOUT / 2, well before JAX's own check would (a fatal log line,
# SIGABRT). The margin covers the watchdog's polling and a busy machine.
# (A collective that fails first gives the line tests/runtime/test_distributed.py checks.)
DETECTION_MARGIN = 10


def _assert_survivor_ended(procs, outputs, workdir):
  """Process 1 was killed after checkpoint KILL_AT; process 0 ended soon after it, with
  our one line."""
  ended = time.time()  # process 0 ended: process 1 was killed before it
  waited = ended - float((workdir / 'killed_at').read_text())
  assert procs[1].returncode == -signal.SIGKILL, outputs[1][-3000:]
  assert procs[0].returncode == 1, outputs[0][-3000:]
  last = outputs[0].strip().splitlines()[-1]
  assert last.startswith('error: lost contact with process 1 (no sign of life for '), last
  assert f's) during step {KILL_AT + 1}; the last complete checkpoint is step {KILL_AT} in ' in last, last
  assert 'Traceback' not in outputs[0] and 'Terminating process' not in outputs[0]
  # Silence is counted from the last beat seen, up to one polling interval (0.5 s) before
  # the kill.
  assert HEARTBEAT_TIMEOUT / 2 - 1 < waited < HEARTBEAT_TIMEOUT / 2 + DETECTION_MARGIN, waited
  assert checkpoint.complete_steps(str(workdir / 'checkpoints')) == list(range(1, KILL_AT + 1))


def test_two_processes_stop_lose_one_and_resume_like_one(script, one, tmp_path):
  two = tmp_path / 'two'

  # Two processes stopped (as by SIGTERM) after STOP_AT steps.
  _wait(_launch(script, two, two_processes=True, stop_at=STOP_AT))
  _assert_same_training(two, one, STOP_AT, 'preempted')

  # They resume from that checkpoint; process 1 is killed once checkpoint KILL_AT is
  # complete, and the survivor ends instead of waiting for it.
  timeout = f'--config.distributed.heartbeat_timeout_seconds={HEARTBEAT_TIMEOUT}'
  procs = _launch(script, two, timeout, two_processes=True, kill_at=KILL_AT)
  _assert_survivor_ended(procs, _wait(procs, expect_success=False), two)

  # Both started again: they resume from checkpoint KILL_AT and end as the uninterrupted
  # run, every logged step (step 3 by the run that lost a process) compared.
  _wait(_launch(script, two, two_processes=True))
  _assert_same_training(two, one, STEPS, 'completed')
