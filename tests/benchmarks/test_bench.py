"""`python -m simclr_jax.bench` runs the step benchmark and prints its JSON line, without
TensorFlow."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT


def _env():
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  # One CPU device: the 8 simulated ones of the test process only make compiling slower.
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '').replace(
      '--xla_force_host_platform_device_count=8', '').strip()
  env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _run_bench(*flags) -> dict:
  """As `python -m simclr_jax.bench FLAGS`, checking that the run never loaded TensorFlow;
  -> its last line's JSON."""
  argv = ['simclr_jax.bench', '--config=configs/demo.py', '--config.model.width=0.0625',
          '--config.batch_size=16', '--config.data.image_size=16', *flags]
  code = ('import runpy, sys\n'
          f'sys.argv = {argv!r}\n'
          'try:\n'
          '  runpy.run_module("simclr_jax.bench", run_name="__main__", alter_sys=True)\n'
          'except SystemExit as e:\n'
          '  assert not e.code, e.code\n'
          'assert "tensorflow" not in sys.modules\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, env=_env(),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_prints_a_json_line():
  result = _run_bench('--steps=1', '--warmup=0')
  for key in ('images_per_sec', 'step_ms', 'compile_s', 'devices', 'batch_size', 'model'):
    assert key in result, result
  assert result['images_per_sec'] > 0
  assert result['batch_size'] == 16
  assert result['model'] == 'resnet18x0.0625'
  assert result['image_size'] == 16 and result['devices'] == 1
  # The CPU reports no device memory: XLA's estimate of the step's instead.
  assert 'peak_device_memory_gib' not in result and result['step_memory_estimate_gib'] > 0


def test_bench_does_not_import_tensorflow():
  code = ('import sys\n'
          'import simclr_jax.bench\n'
          'loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")\n'
          'assert not loaded, loaded[:5]\n'
          'print("ok")\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, env=_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == 'ok'


def test_end_to_end_bench_prints_both_throughputs_and_their_ratio():
  result = _run_bench('--end_to_end', '--steps=2', '--warmup=0', '--num_images=64',
                      '--config.augment.backend=device')
  assert result['backend'] == 'device' and result['device_resident']
  assert result['end_to_end_images_per_sec'] > 0 and result['step_only_images_per_sec'] > 0
  # The throughputs are printed rounded to 0.1 image/s, the ratio from the exact ones.
  assert result['ratio'] == pytest.approx(
      result['end_to_end_images_per_sec'] / result['step_only_images_per_sec'], abs=2e-3)
