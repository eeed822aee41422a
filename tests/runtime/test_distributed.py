"""Two real processes on localhost join one JAX cluster and sum over 8 devices."""

import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import jax
import pytest

from conftest import FAST_COMPILE_FLAG
from simclr_jax.config.defaults import get_default_config
from simclr_jax.runtime import distributed

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Each process holds 4 of the 8 devices and feeds its own 4 rows of the batch.
_WORKER = textwrap.dedent("""
  import sys
  from absl import logging
  import jax
  from simclr_jax.runtime import distributed
  from simclr_jax.config.defaults import get_default_config

  config = get_default_config()
  config.distributed.coordinator_address = sys.argv[1]
  config.distributed.num_processes = 2
  config.distributed.process_id = int(sys.argv[2])
  # Off, as a site config might leave it: initialize must turn it on for CPU.
  jax.config.update('jax_cpu_collectives_implementation', None)
  distributed.initialize(config)
  distributed.initialize(config)  # idempotent

  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  distributed.setup_logging()
  logging.set_verbosity(logging.INFO)  # app.run would do this from --verbosity
  assert jax.process_count() == 2 and jax.device_count() == 8, jax.devices()
  assert jax.local_device_count() == 4
  assert distributed.is_main_process() == (jax.process_index() == 0)

  mesh = jax.make_mesh((8,), ('data',))
  local = np.arange(4, dtype=np.float32) + 4 * jax.process_index()  # rows 0..7
  x = jax.make_array_from_process_local_data(NamedSharding(mesh, P('data')), local)
  total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)
  logging.info('global sum %s', float(total))
  print('RESULT', float(total), flush=True)
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_sum_over_all_devices(tmp_path):
  script = tmp_path / 'worker.py'
  script.write_text(_WORKER)
  env = dict(os.environ)
  env.update(
      XLA_FLAGS=f'--xla_force_host_platform_device_count=4 {FAST_COMPILE_FLAG}',
      JAX_PLATFORMS='cpu',
      PYTHONPATH=str(REPO_ROOT),
  )
  for var in ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri'):
    env.pop(var, None)
  address = f'localhost:{_free_port()}'
  procs = [
      subprocess.Popen([sys.executable, str(script), address, str(i)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)
  ]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=45))
  finally:
    for p in procs:  # one failing must not leave the other waiting for it
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, (out, err)) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f'process {i} failed:\n{out}\n{err}'
    assert 'RESULT 28.0' in out  # 0 + 1 + ... + 7
    assert f'[process {i}/2]' in err and 'global sum 28.0' in err


def test_single_process_does_nothing(monkeypatch):
  for var in ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID', 'OMPI_MCA_orte_hnp_uri'):
    monkeypatch.delenv(var, raising=False)
  called = []
  monkeypatch.setattr(distributed.jax.distributed, 'initialize',
                      lambda **kw: called.append(kw))
  distributed.initialize(get_default_config())
  assert not called


@pytest.mark.parametrize('env, on_tpu_vm, expected', [
    ({}, False, False),
    ({}, True, True),  # JAX counts the workers from the TPU metadata itself
    ({'JAX_COORDINATOR_ADDRESS': 'host:1234'}, False, True),
    # One task: srun/sbatch without parallel tasks stays single-process.
    ({'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n1', 'SLURM_NTASKS': '1',
      'SLURM_PROCID': '0', 'SLURM_LOCALID': '0'}, False, False),
    ({'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'n[1-2]', 'SLURM_NTASKS': '16',
      'SLURM_PROCID': '3', 'SLURM_LOCALID': '3'}, False, True),
])
def test_cluster_detection(monkeypatch, env, on_tpu_vm, expected):
  from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(cloud_tpu_init, 'running_in_cloud_tpu_vm', on_tpu_vm)
  for var in ('JAX_COORDINATOR_ADDRESS', 'SLURM_JOB_ID', 'SLURM_STEP_NODELIST',
              'SLURM_NTASKS', 'SLURM_PROCID', 'SLURM_LOCALID',
              'OMPI_MCA_orte_hnp_uri'):
    monkeypatch.delenv(var, raising=False)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  called = []
  monkeypatch.setattr(distributed.jax.distributed, 'initialize',
                      lambda **kw: called.append(kw))
  distributed.initialize(get_default_config())
  assert called == ([{'heartbeat_timeout_seconds': 60}] if expected else [])


def test_explicit_settings_are_passed_on(monkeypatch):
  called = []
  monkeypatch.setattr(distributed.jax.distributed, 'initialize',
                      lambda **kw: called.append(kw))
  config = get_default_config()
  config.distributed.coordinator_address = 'node0:1234'
  distributed.initialize(config)  # the rest left to JAX's detection
  config.distributed.num_processes = 4
  config.distributed.process_id = 2
  config.distributed.heartbeat_timeout_seconds = 20
  distributed.initialize(config)  # all given: detection switched off
  assert called == [
      {'coordinator_address': 'node0:1234', 'heartbeat_timeout_seconds': 60},
      {'coordinator_address': 'node0:1234', 'num_processes': 4, 'process_id': 2,
       'cluster_detection_method': 'deactivate', 'heartbeat_timeout_seconds': 20},
  ]


def test_a_failed_collective_of_several_processes_is_a_lost_process(monkeypatch):
  gloo = jax.errors.JaxRuntimeError(
      'UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:538] Read '
      'error [127.0.0.1]:53939: Connection reset by peer')
  assert distributed.lost_process_error(gloo, 3, 2, '/w/checkpoints') is None  # one process
  monkeypatch.setattr(distributed.jax, 'process_count', lambda: 2)
  message = str(distributed.lost_process_error(gloo, 3, 2, '/w/checkpoints'))
  assert message.startswith('lost contact with another process during step 4 (UNKNOWN: Gloo '
                            'AllGather failed: ')
  assert 'the last complete checkpoint is step 2 in /w/checkpoints. Start every process' in message
  assert distributed.lost_process_error(jax.errors.JaxRuntimeError('INTERNAL: a bug'), 3, 2,
                                        '/w') is None
  nested = jax.errors.JaxRuntimeError(  # as a two-process CPU run reported a kill -9
      'INTERNAL: ' + 'Error dispatching computation: ' * 6 + 'Gloo all-reduce failed: '
      'Connection closed by peer [127.0.0.1]:14723')
  assert str(distributed.lost_process_error(nested, 40, 20, '/w')).startswith(
      'lost contact with another process during step 41 (INTERNAL: Gloo all-reduce failed: '
      'Connection closed by peer [127.0.0.1]:14723); the last complete checkpoint is step 20')
