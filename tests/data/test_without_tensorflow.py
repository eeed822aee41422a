"""Pretraining and the study where `import tensorflow` fails: the numpy loader, device
augmentation in JAX, TensorBoard events from the tensorboard package, metrics.json."""

import json
import os
import subprocess
import sys

from conftest import FAST_COMPILE_FLAG, REPO_ROOT

_OVERRIDES = {
    'data.num_synthetic': 100, 'data.synthetic_size': 20, 'data.image_size': 16,
    'model.width': 0.0625, 'model.head_dim': 16, 'batch_size': 16, 'num_steps': 2,
    'log_every_steps': 1, 'eval_batch_size': 32, 'finetune.batch_size': 8,
    'finetune.num_steps': 2, 'linear.l2_grid': '1e-3', 'linear.max_iter': 20,
    'study.starting_points': 'simclr', 'study.label_fractions': '0.5', 'study.seeds': 1,
    # More compilations, which test_pretrain.py and test_health.py check.
    'eval_at_end': False, 'health_monitor': False,
}


def test_pretraining_and_a_tiny_study_run_without_tensorflow(tmp_path):
  shim = tmp_path / 'shim'
  shim.mkdir()
  # Loaded at start-up: every `import tensorflow` (clu's writers, TFDS...) now fails.
  (shim / 'sitecustomize.py').write_text("import sys\nsys.modules['tensorflow'] = None\n")
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=FAST_COMPILE_FLAG,  # one device
             PYTHONPATH=os.pathsep.join([str(shim), str(REPO_ROOT)]))
  workdir = tmp_path / 'study'
  cmd = [sys.executable, '-m', 'simclr_jax.sweep', '--config=configs/demo.py',
         f'--workdir={workdir}'] + [f'--config.{k}={v}' for k, v in _OVERRIDES.items()]
  proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert 'augmenting on the device' in (workdir / 'log.txt').read_text()
  pretrain = workdir / 'simclr' / 'pretrain'
  assert json.loads((pretrain / 'metrics.json').read_text())['status'] == 'completed'
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(pretrain))
  assert (pretrain / 'encoder').is_dir()
  summary = json.loads((workdir / 'metrics.json').read_text())
  assert summary['num_runs'] == 3  # linear at 0.5 and 1.0, fine-tuning at 0.5
  assert (workdir / 'report.md').is_file()
