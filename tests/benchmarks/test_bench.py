"""`python -m simclr_jax.bench` runs the step benchmark and prints its JSON line, without
TensorFlow.

One subprocess runs the entry point twice, as `python -m simclr_jax.bench FLAGS` runs it:
the step benchmark, then the end-to-end one (whose step is the first run's program, read
back from the compilation cache), and says which TensorFlow modules it loaded by then."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

_COMMON = ['--config=configs/demo.py', '--config.model.width=0.0625', '--config.batch_size=16',
           '--config.data.image_size=16']
_RUNS = {
    'step': ['--steps=1', '--warmup=0'],
    'end_to_end': ['--end_to_end', '--steps=2', '--warmup=0', '--num_images=64',
                   '--config.augment.backend=device'],
}
# Each run gets a command line of its own: the --config.KEY override flags are defined when
# --config is parsed, so the previous run's are removed before the next parse.
_SEQUENCE = """
import contextlib, io, json, runpy, sys
from absl import flags
printed = {}
for name, argv in RUNS.items():
  for flag in [f for f in flags.FLAGS if f.startswith('config.')]:
    delattr(flags.FLAGS, flag)
  flags.FLAGS.unparse_flags()
  sys.argv = ['simclr_jax.bench', *argv]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    try:
      runpy.run_module('simclr_jax.bench', run_name='__main__', alter_sys=True)
    except SystemExit as e:
      assert not e.code, (name, e.code)
  printed[name] = out.getvalue()
loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')
print(json.dumps({'printed': printed, 'tensorflow_modules': loaded}))
"""


def _env():
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  # One CPU device: the 8 simulated ones of the test process only make compiling slower.
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '').replace(
      '--xla_force_host_platform_device_count=8', '').strip()
  env['PYTHONPATH'] = str(REPO_ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  return env


@pytest.fixture(scope='module')
def bench_runs() -> dict:
  """{'printed': {run: its stdout}, 'tensorflow_modules': those loaded after both runs}."""
  runs = {name: _COMMON + flags for name, flags in _RUNS.items()}
  proc = subprocess.run([sys.executable, '-c', f'RUNS = {runs!r}\n{_SEQUENCE}'],
                        cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _last_json_line(bench_runs, name) -> dict:
  return json.loads(bench_runs['printed'][name].strip().splitlines()[-1])


def test_bench_prints_a_json_line(bench_runs):
  result = _last_json_line(bench_runs, 'step')
  for key in ('images_per_sec', 'step_ms', 'compile_s', 'devices', 'batch_size', 'model'):
    assert key in result, result
  assert result['images_per_sec'] > 0
  assert result['batch_size'] == 16
  assert result['model'] == 'resnet18x0.0625'
  assert result['image_size'] == 16 and result['devices'] == 1
  # The CPU reports no device memory: XLA's estimate of the step's instead.
  assert 'peak_device_memory_gib' not in result and result['step_memory_estimate_gib'] > 0


def test_bench_does_not_import_tensorflow(bench_runs):
  # Importing the entry point is part of running it: neither loaded any of TensorFlow.
  assert bench_runs['tensorflow_modules'] == [], bench_runs['tensorflow_modules'][:5]


def test_end_to_end_bench_prints_both_throughputs_and_their_ratio(bench_runs):
  result = _last_json_line(bench_runs, 'end_to_end')
  assert result['backend'] == 'device' and result['device_resident']
  assert result['end_to_end_images_per_sec'] > 0 and result['step_only_images_per_sec'] > 0
  # The throughputs are printed rounded to 0.1 image/s, the ratio from the exact ones.
  assert result['ratio'] == pytest.approx(
      result['end_to_end_images_per_sec'] / result['step_only_images_per_sec'], abs=2e-3)
