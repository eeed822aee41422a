"""A batch that does not fit in memory: one line naming it and the way out.

XLA reports an allocation it cannot make as RESOURCE_EXHAUSTED ("Out of memory allocating
N bytes" on CPU, "Out of memory while trying to allocate N bytes" on GPU), deep inside the
step. The message here names the batch, the memory asked for, the device's limit and use
where JAX reports them (device.memory_stats(): GPU and TPU; the CPU reports none), and the
way out: gradient caching (grad_cache.py), whose peak memory is one chunk's activations,
or a smaller batch. A CPU run with no memory cap is not warned at all: Linux hands out
memory until its out-of-memory killer ends the process (exit status 137).
"""

import re

import jax

from simclr_jax.runtime.run_errors import RunStopped

_OUT_OF_MEMORY = re.compile(r'RESOURCE_EXHAUSTED|[Oo]ut of memory')
_ASKED = re.compile(r'allocat\w*\s+(\d+)\s*bytes')


class BatchDoesNotFit(RunStopped):
  """The step ran out of device memory; the message says what to change."""


def is_out_of_memory(error: BaseException) -> bool:
  return isinstance(error, jax.errors.JaxRuntimeError) and bool(
      _OUT_OF_MEMORY.search(str(error)))


def gib(num_bytes: float) -> str:
  return f'{num_bytes / 2**30:.2f} GiB'


def device_memory(device=None) -> dict:
  """bytes_limit, bytes_in_use, peak_bytes_in_use... of a device where JAX reports them
  ({} on CPU)."""
  device = device or jax.local_devices()[0]
  try:
    return dict(device.memory_stats() or {})
  except (NotImplementedError, RuntimeError, jax.errors.JaxRuntimeError):
    return {}


def _suggested_chunk(per_device: int, current: int) -> int:
  """A divisor of the per-device batch, a quarter of it or of the current chunk."""
  target = max((current or per_device) // 4, 1)
  return max(d for d in range(1, target + 1) if per_device % d == 0)


def batch_does_not_fit(error: BaseException, config, num_devices: int) -> BatchDoesNotFit:
  per_device = max(config.batch_size // num_devices, 1)
  devices = f"{num_devices} device{'s' if num_devices > 1 else ''}"
  parts = [f'config.batch_size={config.batch_size} ({per_device} images per device on '
           f'{devices}) does not fit in memory']
  asked = _ASKED.search(str(error))
  if asked:
    parts.append(f'XLA asked for {gib(int(asked.group(1)))} more')
  stats = device_memory()
  if 'bytes_limit' in stats:
    parts.append(f"the device has {gib(stats['bytes_limit'])}, "
                 f"{gib(stats.get('bytes_in_use', 0))} in use")
  else:
    parts.append(f'JAX reports no memory limit for the {jax.devices()[0].platform} device')
  chunk = config.grad_cache_chunk
  way_out = (f'set config.grad_cache_chunk={_suggested_chunk(per_device, chunk)} '
             '(gradient caching: the same gradient, memory for one chunk of images)')
  if chunk > 0:
    way_out = (f'lower config.grad_cache_chunk (now {chunk}) to '
               f'{_suggested_chunk(per_device, chunk)}')
  return BatchDoesNotFit(f"{'; '.join(parts)}. {way_out[0].upper()}{way_out[1:]} and start "
                         'again with the same workdir, or lower config.batch_size (in a new '
                         '--workdir once this one has checkpoints).')


def step_memory(jitted, *args) -> dict:
  """Device memory of a jitted step, per device: the peak JAX measured where it reports
  one (GPU, TPU: the process's peak so far), else XLA's estimate from the compiled step
  (arguments + outputs + temporaries, less the donated buffers reused for outputs)."""
  stats = device_memory()
  if 'peak_bytes_in_use' in stats:
    return {'peak_device_memory_gib': round(stats['peak_bytes_in_use'] / 2**30, 3)}
  analysis = jitted.lower(*args).compile().memory_analysis()
  if analysis is None:
    return {}
  total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)
  return {'step_memory_estimate_gib': round(total / 2**30, 3)}
