"""Multi-process start: one JAX process per host (TPU VM worker) or per GPU.

Call `initialize(config)` first thing in every entry point, before any other JAX
call (jax.devices(), a jit, a PRNG key...): JAX can only join a cluster before its
backends exist. Then `setup_logging()` so that every log line says which process
wrote it.

How the processes find each other, in order:
  1. `config.distributed.{coordinator_address,num_processes,process_id}` (the
     `--coordinator_address/--num_processes/--process_id` flags): used as given;
     any left unset is filled in by JAX's own cluster detection.
  2. Nothing set: JAX auto-detects Cloud TPU VMs, SLURM (`srun`) and Open MPI
     (`mpirun`), and reads `JAX_COORDINATOR_ADDRESS`. We only ask it to when one
     of those is present, so a plain `python -m simclr_jax.pretrain` stays a
     single process with no coordinator service.

A lost process (a crash, kill -9, a host gone) ends the others with one line: a
collective that fails because of it (gloo on CPU sees the connection reset) raises
ProcessLost, and a process waiting elsewhere is ended by the peer watchdog
(peer_watchdog.py) once the lost one has shown no sign of life for half of
`config.distributed.heartbeat_timeout_seconds`. That is before JAX's own heartbeat
check, which would end it with a fatal log line and exit status 134 (JAX 0.10 offers no
hook to replace it). The launch scripts then say which process failed first and the
command that resumes.
"""

import logging
import os
import re

from absl import logging as absl_logging
import jax

from simclr_jax.runtime import peer_watchdog
from simclr_jax.runtime.run_errors import RunStopped

# How a collective with a process that is gone fails: gloo (CPU) sees the connection
# reset, the coordination service reports the process unhealthy.
_LOST_PEER = re.compile(r'Gloo|[Cc]onnection (reset|refused|closed)|UNAVAILABLE|unhealthy|'
                        r'heartbeat|DEADLINE_EXCEEDED')


class ProcessLost(RunStopped):
  """Another process of the run is gone. The entry point prints the message and ends at
  once: JAX's exit-time shutdown would wait for the lost process and abort."""
  skip_exit_handlers = True


def lost_process_error(error: BaseException, step: int, last_checkpoint, directory: str):
  """A ProcessLost for a failed collective of a multi-process run, else None."""
  if jax.process_count() == 1 or not _LOST_PEER.search(str(error)):
    return None
  # XLA nests the failure once per dispatch layer: 'Error dispatching computation: ' x 6.
  cause = re.sub(r'(Error dispatching computation: )+', '',
                 str(error).strip().splitlines()[0])[:200]
  return ProcessLost(
      f'lost contact with another process during step {step + 1} ({cause}); '
      f'{_last_checkpoint(last_checkpoint, directory)}. Start every process again with the '
      'same command to resume from there (the launch scripts print it, and which process '
      'failed first).')


def run_status(step: int, last_checkpoint, directory: str) -> str:
  """'during step N; the last complete checkpoint is ...': where a run stands (`step`
  steps done), for the line a lost process ends it with."""
  return f'during step {step + 1}; {_last_checkpoint(last_checkpoint, directory)}'


def _last_checkpoint(step, directory: str) -> str:
  return (f'the last complete checkpoint is step {step} in {directory}'
          if step is not None else 'no checkpoint was written yet')


def _cluster_detected() -> bool:
  """True where `jax.distributed.initialize()` with no arguments would work.

  Mirrors jax/_src/clusters/*.py (jax 0.10) but only says yes for more than one
  process where that is cheap to know.
  """
  if os.environ.get('JAX_COORDINATOR_ADDRESS'):
    return True
  # SLURM: the same variables JAX's SlurmCluster needs; srun sets them per task.
  slurm = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID',
           'SLURM_LOCALID')
  if all(v in os.environ for v in slurm):
    return int(os.environ['SLURM_NTASKS']) > 1
  # Open MPI's mpirun.
  if 'OMPI_MCA_orte_hnp_uri' in os.environ:
    return int(os.environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1
  # Cloud TPU VM: set when `import jax` found TPU chips. Counting the workers
  # needs the metadata server, which JAX asks itself; on a one-worker VM the
  # result is a harmless one-process cluster, while missing a pod slice would
  # make every worker train its own model.
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, 'running_in_cloud_tpu_vm', False))


def define_flags():
  """--coordinator_address, --num_processes and --process_id, for every entry point
  (cli.py copies them into the config; predict and embed have none). Returns a function
  giving the `config` that initialize takes."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  address = flags.DEFINE_string('coordinator_address', None,
                                'Multi-process: HOST:PORT of process 0.')
  count = flags.DEFINE_integer('num_processes', None, 'Multi-process: process count.')
  index = flags.DEFINE_integer('process_id', None, 'Multi-process: this process.')
  return lambda: {'distributed': {'coordinator_address': address.value,
                                  'num_processes': count.value, 'process_id': index.value}}


def initialize(config) -> None:
  """Joins the JAX cluster this process belongs to, if any. Idempotent."""
  if jax.distributed.is_initialized():
    return
  dist = config.get('distributed', {})
  explicit = {
      'coordinator_address': dist.get('coordinator_address') or None,
      'num_processes': dist.get('num_processes'),
      'process_id': dist.get('process_id'),
  }
  explicit = {k: v for k, v in explicit.items() if v is not None}
  if not explicit and not _cluster_detected():
    return  # single process: nothing to join
  if explicit.get('num_processes') != 1:  # several, or left to auto-detection
    # Cross-process collectives on CPU go through gloo over TCP; without it a
    # multi-process CPU computation fails ("Multiprocess computations aren't
    # implemented on the CPU backend"). gloo is jax 0.10's default, but a config
    # or JAX_CPU_COLLECTIVES_IMPLEMENTATION may have turned it off. It only
    # concerns the CPU client, so it changes nothing for TPU and GPU runs.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if len(explicit) == 3:
    # Fully specified (multi_gpu.sh --processes=N): don't let a SLURM or MPI
    # environment around the launcher pin each process to one GPU.
    explicit['cluster_detection_method'] = 'deactivate'
  # A lost process (a crash, kill -9, a dead host) ends the others after this long.
  timeout = dist.get('heartbeat_timeout_seconds', 100)
  jax.distributed.initialize(**explicit, heartbeat_timeout_seconds=timeout)
  _start_watchdog(timeout / 2)


_watchdog = None


def _start_watchdog(timeout: float) -> None:
  """Our one line for a lost process, before JAX's heartbeat check ends this one."""
  global _watchdog
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  state = jax_distributed.global_state
  if state.client is None or not state.num_processes or state.num_processes < 2:
    return
  _watchdog = peer_watchdog.PeerWatchdog(state.client, state.process_id,
                                         state.num_processes, timeout).start()


def report_status(status) -> None:
  """`status()` -> where the run is ('during step 4; the last complete checkpoint is
  ...'), for the line a lost process ends this one with."""
  if _watchdog is not None:
    _watchdog.status = status


def is_main_process() -> bool:
  """The process that writes metrics, checkpoints' metadata and summaries."""
  return jax.process_index() == 0


class _ProcessPrefix(logging.Formatter):
  """Wraps a formatter and puts `[process i/n] ` in front of each line."""

  def __init__(self, inner: logging.Formatter, prefix: str):
    super().__init__()
    self.inner = inner
    self.prefix = prefix

  def format(self, record: logging.LogRecord) -> str:
    return self.prefix + self.inner.format(record)


def setup_logging() -> None:
  """Prefixes every absl / logging line with `[process i/n]`. Idempotent.

  Call after `initialize`: the process index is only known once JAX has joined
  the cluster.
  """
  prefix = f'[process {jax.process_index()}/{jax.process_count()}] '
  absl_logging.use_absl_handler()  # app.run does this too; a no-op the second time
  absl_handler = absl_logging.get_absl_handler()
  # The absl handler formats through its inner python_handler.
  handlers = [absl_handler.python_handler]
  handlers += [h for h in logging.getLogger().handlers if h is not absl_handler]
  for handler in handlers:
    inner = handler.formatter or logging.Formatter()
    if isinstance(inner, _ProcessPrefix):
      inner = inner.inner
    handler.setFormatter(_ProcessPrefix(inner, prefix))
