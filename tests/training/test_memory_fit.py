"""A batch that does not fit in memory, made safely: the real pretraining entry point runs
in a subprocess whose address space is capped (RLIMIT_AS) just after the step compiles, so
the step's buffers cannot be allocated and XLA reports RESOURCE_EXHAUSTED, as a GPU does.
Uncapped, a CPU run would instead grow until the kernel's out-of-memory killer ends it."""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax

from conftest import FAST_COMPILE_FLAG
from simclr_jax.config.defaults import get_default_config
from simclr_jax.training import memory_fit
from tiny_configs import TINY_OVERRIDES

REPO = pathlib.Path(__file__).resolve().parents[2]

_CAPPED = textwrap.dedent("""
  import os, resource, sys
  from simclr_jax.runtime import cli
  from simclr_jax.training import loop, step_blocks

  real_call = step_blocks.Stepper.__call__

  def capped_call(self, state, item):
    if not getattr(self, 'capped', False):
      # Compile first (XLA needs memory for that), then allow MARGIN_MB more than now.
      self._single = self._single.lower(state, item).compile()
      print('step temporaries:', self._single.memory_analysis().temp_size_in_bytes,
            file=sys.stderr)
      with open('/proc/self/status') as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith('VmSize'))
      margin = int(os.environ['MARGIN_MB']) * 2**20
      resource.setrlimit(resource.RLIMIT_AS, (vm + margin, resource.RLIM_INFINITY))
      self.capped = True
    return real_call(self, state, item)

  step_blocks.Stepper.__call__ = capped_call
  cli.run(loop.train_and_evaluate)
""")


def test_a_batch_that_does_not_fit_is_one_line_naming_the_way_out(tmp_path):
  script = tmp_path / 'capped_pretrain.py'
  script.write_text(_CAPPED)
  # XLA asks for ~0.13 GiB of temporaries at once: twice the margin, so the cap stops it.
  overrides = {**TINY_OVERRIDES, 'batch_size': 512, 'data.num_synthetic': 520,
               'data.synthetic_size': 16, 'data.split': '(1.0,0.0,0.0)', 'num_steps': 2}
  args = [sys.executable, str(script), '--config=configs/demo.py',
          f'--workdir={tmp_path / "run"}', *[f'--config.{k}={v}' for k, v in overrides.items()]]
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', MARGIN_MB='64',
             XLA_FLAGS=f'--xla_force_host_platform_device_count=1 {FAST_COMPILE_FLAG}',
             JAX_DEFAULT_PRNG_IMPL='rbg')
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: config.batch_size=512 (512 images per device on 1 device) '
                         'does not fit in memory; XLA asked for '), result.stderr[-3000:]
  assert 'JAX reports no memory limit for the cpu device' in last
  assert 'Set config.grad_cache_chunk=128 (gradient caching' in last
  assert 'Traceback' not in result.stderr


def test_the_message_names_limits_and_chunks():
  config = get_default_config()
  config.batch_size = 96
  error = jax.errors.JaxRuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory while trying to allocate 3221225472 bytes.')
  assert memory_fit.is_out_of_memory(error)
  assert not memory_fit.is_out_of_memory(jax.errors.JaxRuntimeError('INTERNAL: other'))
  assert not memory_fit.is_out_of_memory(MemoryError('RESOURCE_EXHAUSTED'))
  message = str(memory_fit.batch_does_not_fit(error, config, num_devices=8))
  assert message.startswith('config.batch_size=96 (12 images per device on 8 devices) does '
                            'not fit in memory; XLA asked for 3.00 GiB more; ')
  assert 'Set config.grad_cache_chunk=3 ' in message  # a divisor of 12, a quarter of it
  config.grad_cache_chunk = 6
  message = str(memory_fit.batch_does_not_fit(error, config, num_devices=8))
  assert 'Lower config.grad_cache_chunk (now 6) to 1 and start again' in message


def test_step_memory_is_xla_estimate_of_the_buffers_on_cpu():
  x = jax.numpy.ones((1024, 256), jax.numpy.float32)  # 1 MiB
  add = jax.jit(lambda a, b: a + b)
  assert memory_fit.device_memory() == {}  # the CPU reports none
  assert memory_fit.step_memory(add, x, x) == {'step_memory_estimate_gib': round(3 / 1024, 3)}
  donated = jax.jit(lambda a, b: a + b, donate_argnums=0)  # the output reuses a's buffer
  assert memory_fit.step_memory(donated, x, x) == {'step_memory_estimate_gib':
                                                    round(2 / 1024, 3)}
