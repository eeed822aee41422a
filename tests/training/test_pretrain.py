"""Pretraining as a product: outputs, resume equivalence, SIGTERM, NaN stop, config errors."""

import glob
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from simclr_jax import export
from simclr_jax.data import device_feed
from simclr_jax.training import checkpoint, loop
from tiny_configs import TINY_OVERRIDES, load_config

REPO = pathlib.Path(__file__).resolve().parents[2]
def final_params(workdir):
  """(step, leaves of params and batch stats) of the latest checkpoint in `workdir`."""
  directory, step = checkpoint.find_checkpoint(str(workdir))
  restored = ocp.StandardCheckpointer().restore(os.path.join(directory, str(step), 'model'))
  return step, jax.tree_util.tree_leaves(restored)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('full')
  results = loop.train_and_evaluate(load_config(eval_at_end=True, eval_every_steps=3,
                                                         health_monitor=True),
                                     str(workdir))
  return workdir, results


def test_run_writes_events_checkpoints_metrics_and_encoder(uninterrupted):
  workdir, results = uninterrupted
  assert results['status'] == 'completed' and results['step'] == 6
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
  assert sorted(int(s) for s in os.listdir(workdir / 'checkpoints')) == [2, 4, 6]
  written = json.loads((workdir / 'metrics.json').read_text())
  for key in ('loss', 'contrastive_acc', 'entropy', 'probe_acc', 'images_per_sec',
              'knn_top1', 'probe_test_top1', 'random_encoder_probe_test_top1',
              'health/z_std', 'health/z_rank', 'health_first', 'health_warnings'):
    assert key in written, key
  assert np.isfinite(written['loss'])
  # The exported encoder gives the checkpoint's features.
  encoder = export.load_encoder(str(workdir / 'encoder'))
  images = np.random.default_rng(0).random((4, 16, 16, 3), np.float32)
  features = np.asarray(encoder(images, train=False))
  assert features.shape == (4, encoder.num_features) and np.all(np.isfinite(features))


class _StopAfter:
  """Stands in for SIGTERM: the loop sees a preemption request after `steps` steps."""

  def __init__(self, steps):
    self.calls, self.steps = 0, steps

  def __call__(self):
    outer = self

    class Fake:
      @property
      def requested(self):
        outer.calls += 1
        return outer.calls >= outer.steps

      def restore(self):
        pass

    return Fake()


def test_resume_equals_uninterrupted_run(uninterrupted, tmp_path, monkeypatch):
  full_dir, _ = uninterrupted
  monkeypatch.setattr(loop, '_Preemption', _StopAfter(3))
  first = loop.train_and_evaluate(load_config(), str(tmp_path))
  assert first['status'] == 'preempted' and first['step'] == 3
  assert json.loads((tmp_path / 'metrics.json').read_text())['status'] == 'preempted'
  monkeypatch.undo()
  second = loop.train_and_evaluate(load_config(), str(tmp_path))
  assert second['status'] == 'completed' and second['step'] == 6
  step_a, params_a = final_params(full_dir)
  step_b, params_b = final_params(tmp_path)
  assert step_a == step_b == 6
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(a, b)  # bitwise on CPU


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  real_feed = device_feed.pretrain_feed

  class Poisoned:
    """The real feed, except that the 4th step sees a NaN image."""

    def __init__(self, feed):
      self.feed, self.step = feed, 0

    def __next__(self):
      batch = next(self.feed)
      if self.step == 3:
        batch = dict(batch, views=batch['views'] * np.nan)
      self.step += 1
      return batch

    def __getattr__(self, name):  # last_batch, close, ...
      return getattr(self.feed, name)

  monkeypatch.setattr(device_feed, 'pretrain_feed',
                      lambda *args, **kwargs: Poisoned(real_feed(*args, **kwargs)))
  with pytest.raises(FloatingPointError, match='non-finite loss.*step 4.*last good checkpoint '
                                               'is step 2'):
    loop.train_and_evaluate(load_config(), str(tmp_path))
  written = json.loads((tmp_path / 'metrics.json').read_text())
  assert written['status'] == 'stopped_non_finite'
  step, params = final_params(tmp_path)
  assert step == 2 and all(np.all(np.isfinite(p)) for p in params)


def _cli(workdir, *overrides, num_steps=6):
  args = [sys.executable, '-m', 'simclr_jax.pretrain', '--config=configs/demo.py',
          f'--workdir={workdir}']
  args += [f'--config.{k}={v}' for k, v in {**TINY_OVERRIDES, 'num_steps': num_steps}.items()]
  return args + list(overrides)


def _env():
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  env.pop('XLA_FLAGS', None)  # one device: the subprocess is a plain user run
  return env


@pytest.mark.parametrize('override, expected', [
    ('--config.model.nme=resnet18', 'unknown config key in --config.model.nme=resnet18'),
    ('--config.batch_size=abc', "--config.batch_size=abc: invalid literal for int()"),
    ('--config.batch_size=0', 'config.batch_size=0: expected an integer >= 1'),
    ('--config.no_such_key=1', 'unknown config key in --config.no_such_key=1'),
])
def test_bad_overrides_give_one_clear_line(tmp_path, override, expected):
  result = subprocess.run(_cli(tmp_path, override), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert expected in result.stderr
  assert 'Traceback' not in result.stderr


# Runs the pretrain entry point with three test hooks. Two announce themselves by a marker
# file and then sleep, so the test can SIGKILL the run at an exact moment: PAUSE_AT_BATCH=k
# pauses before this run's k-th batch (0-based), STALL_SAVE_AT=s stalls the asynchronous
# save of step s midway (its temporary folder exists, its record is not yet written).
# TERM_AT_BATCH=k sends the run a real SIGTERM (as a scheduler does) as it fetches its k-th
# batch.
_KILLABLE = '''
import os, runpy, signal, sys, time
from orbax.checkpoint._src.handlers import json_checkpoint_handler as handler
from simclr_jax.data import pipeline

def announce_and_sleep():
  open(os.environ['MARKER'], 'w').close()
  time.sleep(300)

pause_at = int(os.environ.get('PAUSE_AT_BATCH', -1))
stall_at = int(os.environ.get('STALL_SAVE_AT', -1))
term_at = int(os.environ.get('TERM_AT_BATCH', -1))
real_batches, real_save = pipeline.pretrain_batches, handler.JsonCheckpointHandler._save_fn

def batches(*args, **kwargs):  # what the trainer's host feed iterates
  for index, batch in enumerate(real_batches(*args, **kwargs)):
    if index == pause_at:
      announce_and_sleep()
    if index == term_at:
      os.kill(os.getpid(), signal.SIGTERM)
    yield batch

async def save(self, item, directory):
  if item.get('data_position') == stall_at:
    announce_and_sleep()
  return await real_save(self, item, directory)

pipeline.pretrain_batches, handler.JsonCheckpointHandler._save_fn = batches, save
sys.argv[0] = 'simclr_jax.pretrain'
runpy.run_module('simclr_jax.pretrain', run_name='__main__')
'''


def test_sigkill_at_any_moment_or_sigterm_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
  full_dir, _ = uninterrupted
  workdir, marker = tmp_path / 'run', tmp_path / 'marker'
  # The same 8 simulated devices as this process, so the result compares bitwise with the
  # in-process uninterrupted run.
  env = dict(os.environ, PYTHONPATH=str(REPO), MARKER=str(marker))
  command = [sys.executable, '-c', _KILLABLE] + _cli(workdir)[3:]
  ckpts = str(workdir / 'checkpoints')

  def run_until_marker_then_kill(settled=lambda: True, **hook):
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(command, cwd=REPO, env=dict(env, **hook), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.2)
    assert marker.exists(), proc.communicate(timeout=60)[0][-3000:] if proc.poll() else 'slow'
    while not settled() and time.time() < deadline:
      time.sleep(0.2)
    proc.kill()  # SIGKILL
    proc.wait()

  # During the first (asynchronous) save: killed before any checkpoint is complete.
  run_until_marker_then_kill(STALL_SAVE_AT='2')
  assert checkpoint.complete_steps(ckpts) == []
  assert glob.glob(f'{ckpts}/2.orbax-checkpoint-tmp*')
  # Between saves: after step 3, once the asynchronous save of step 2 has finished.
  run_until_marker_then_kill(lambda: checkpoint.complete_steps(ckpts), PAUSE_AT_BATCH='3')
  assert checkpoint.complete_steps(ckpts) == [2]

  # SIGTERM as the resumed run fetches its second batch (step 4; the feed may fetch it
  # while step 3 runs): the run finishes the step it is in, saves it and exits 0.
  stopped = subprocess.run(command, cwd=REPO, env=dict(env, TERM_AT_BATCH='1'),
                           capture_output=True, text=True, timeout=300)
  assert stopped.returncode == 0, stopped.stderr[-3000:]
  assert 'resumed from step 2' in stopped.stdout  # the console says it
  assert 'warning: taking over the stale lock' in stopped.stderr
  written = json.loads((workdir / 'metrics.json').read_text())
  assert written['status'] == 'preempted' and written['step'] in (3, 4), written
  assert checkpoint.complete_steps(ckpts) == [2, written['step']]

  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'resumed from step {written["step"]}' in done.stdout
  step_a, params_a = final_params(full_dir)
  step_b, params_b = final_params(workdir)
  assert step_a == step_b == 6
  for a, b in zip(params_a, params_b):
    np.testing.assert_array_equal(a, b)
