"""What a run prints: the settings line, progress (plain lines where stdout is no
terminal, one redrawn line on a terminal), "run k of n" for a sweep, and a console free of
TensorFlow's and XLA's notices while WORKDIR/log.txt holds the full log (--verbose shows it).

Two tiny command-line runs, started together: a pretraining, and a sweep of the baseline
alone (no network to compile) with --verbose."""

import io
import os
import re
import subprocess
import sys

import pytest

from conftest import FAST_COMPILE_FLAG, REPO_ROOT
from simclr_jax.config.defaults import get_default_config
from simclr_jax.experiments import study
from simclr_jax.runtime import console

_PRETRAIN = {  # the sizes of test_pretrain's tiny runs (tiny_configs.TINY_OVERRIDES)
    'model.width': 0.0625, 'model.head_dim': 16, 'data.image_size': 16,
    'data.synthetic_size': 20, 'data.num_synthetic': 150, 'batch_size': 16, 'num_steps': 4,
    'log_every_steps': 1, 'checkpoint_every_steps': 2, 'eval_batch_size': 64,
    'eval_at_end': False, 'health_monitor': False,
}
_SWEEP = {
    'data.num_synthetic': 100, 'data.synthetic_size': 20, 'data.image_size': 16,
    'eval_batch_size': 32, 'study.starting_points': 'baseline',
    'study.label_fractions': '0.5', 'study.seeds': 1,
    'baseline.features': 'pixels',  # one feature set: nothing for validation to choose
}
# absl's prefix: I1207 12:31:15.590136 139778420628352 file.py:849]
_ABSL_LINE = re.compile(r'^\[?(process \d+/\d+\] )?[IWEF]\d{4} \d\d:\d\d:\d\d', re.M)
# The line C++ logging (TensorFlow's, XLA's) starts with, then its notices: grappler's
# cost-model warnings about CropAndResize, oneDNN, CPU instructions...
_NATIVE_NOTICES = 'absl::InitializeLog'


def _command(entry, config, workdir, overrides, *flags):
  return [sys.executable, '-m', f'simclr_jax.{entry}', f'--config=configs/{config}.py',
          f'--workdir={workdir}', *flags] + [f'--config.{k}={v}' for k, v in overrides.items()]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """{'pretrain' | 'sweep': (workdir, stdout, stderr)} of the two runs, both finished."""
  root = tmp_path_factory.mktemp('console')
  # A plain user run: one device, JAX probes its backends, TensorFlow logs at its default
  # level.
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
  for name in ('XLA_FLAGS', 'TF_CPP_MIN_LOG_LEVEL', 'JAX_PLATFORMS'):
    env.pop(name, None)
  # The pretraining keeps the test process's LLVM level, which changes nothing it prints:
  # compiling the network is most of its time, and that halves it. The sweep (no network)
  # spends its time running, which the full level does faster.
  launches = {
      'pretrain': (_command('pretrain', 'demo', root / 'pretrain', _PRETRAIN),
                   dict(env, XLA_FLAGS=FAST_COMPILE_FLAG)),
      'sweep': (_command('sweep', 'demo', root / 'sweep', _SWEEP, '--verbose'), env),
  }
  procs = {name: subprocess.Popen(cmd, cwd=REPO_ROOT, env=run_env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for name, (cmd, run_env) in launches.items()}
  results = {}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f'{name}:\n{out}\n{err[-3000:]}'
    results[name] = (root / name, out, err)
  return results


def test_pretraining_prints_settings_and_plain_progress_lines(runs):
  workdir, out, err = runs['pretrain']
  lines = out.splitlines()
  assert lines[0].startswith('pretrain: synthetic_cells 16 px, resnet18 width 0.0625, '
                             'batch 16, 4 steps, seed 0, 1 cpu device')
  assert lines[0].endswith(f"(log: {workdir / 'log.txt'})")
  progress = [l for l in lines if l.startswith('pretrain: ') and ' steps  ' in l]
  # Not on a terminal: one line per log_every_steps after the first (compiling) step.
  assert [l.split()[1] for l in progress] == ['2/4', '3/4', '4/4'], out
  assert all(re.fullmatch(r'pretrain: \d/4 steps  loss \d+\.\d+  \d+ images/s  ETA 0:\d\d', l)
             for l in progress), progress
  assert '\r' not in out
  assert 'pretraining completed at step 4' in out


def test_the_console_is_quiet_and_log_txt_holds_the_full_log(runs):
  workdir, out, err = runs['pretrain']
  assert not _ABSL_LINE.search(out + err), err[:2000]
  for notice in ("Unable to initialize backend 'tpu'", _NATIVE_NOTICES, 'CropAndResize',
                 'oneDNN', 'orbax', '[process 0/1]'):
    assert notice not in out + err
  log = (workdir / 'log.txt').read_text()
  assert _ABSL_LINE.search(log)
  for line in ("Unable to initialize backend 'tpu'",  # JAX's probe, an INFO line
               'pretraining resnet18 for 4 steps',  # the trainer's own INFO lines
               'step 4/4  loss', 'Finished saving checkpoint',  # orbax's
               'command: ', out.splitlines()[0]):  # what was said on the console
    assert line in log, line


def test_a_verbose_sweep_counts_its_runs_and_shows_the_full_log(runs):
  workdir, out, err = runs['sweep']
  counted = [l for l in out.splitlines() if l.startswith('run ')]
  assert counted[0] == 'run 1 of 2: baseline/frac_0.5/seed_0'
  assert re.fullmatch(r'run 2 of 2: baseline/frac_1/seed_0  \(about \d+ (s|min) left\)',
                      counted[1]), counted
  assert 'study finished: 2 evaluations' in out and 'report: ' in out
  # --verbose: the log on the console as well (TensorFlow's notices included), without
  # the console's own lines twice.
  assert _ABSL_LINE.search(err) and 'study: running' in err and _NATIVE_NOTICES in err
  assert 'run 1 of 2' not in err
  assert 'study: running' in (workdir / 'log.txt').read_text()


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


@pytest.fixture
def clock(monkeypatch):
  clock = _Clock()
  monkeypatch.setattr(console.time, 'perf_counter', clock)
  return clock


class _Terminal(io.StringIO):
  def isatty(self):
    return True


def test_plain_progress_every_k_steps_timed_after_the_first(clock):
  stream = io.StringIO()
  bar = console.Progress(10, 'pretrain', 'steps', images_per_unit=32, every=4, warmup=1,
                         stream=stream)
  clock.now += 30  # the first step compiles: not in the rate
  bar.update(1, {'loss': 6.25})
  for step in range(2, 11):
    clock.now += 0.5
    bar.update(step, {'loss': 6.25 - 0.125 * step} if step % 4 == 0 else None)
  assert stream.getvalue().splitlines() == [
      # 3 steps in 1.5 s: 2 steps/s, 64 images/s, 6 steps left
      'pretrain: 4/10 steps  loss 5.75  64 images/s  ETA 0:03',
      'pretrain: 8/10 steps  loss 5.25  64 images/s  ETA 0:01',
      'pretrain: 10/10 steps  loss 5.25  64 images/s  ETA 0:00',
  ]


def test_terminal_progress_redraws_one_line_and_ends_it_before_other_lines(clock, capsys):
  stream = _Terminal()
  bar = console.Progress(100, 'finetune', 'steps', every=50, warmup=1, stream=stream)
  bar.update(1)
  for step in range(2, 6):
    clock.now += 0.3  # redrawn at most twice a second
    bar.update(step, {'loss': 1.5})
  drawn = stream.getvalue()
  assert '\n' not in drawn and drawn.count('\r') == 2
  # 4 steps in 1.2 s after the first
  assert re.fullmatch(r'finetune \[#-{19}\] 5/100 steps  loss 1\.5  3\.3 images/s  ETA 0:2\d',
                      drawn.split('\r')[-1]), drawn
  console.say('run 2 of 3: x')  # ends the bar's line first
  assert stream.getvalue() == drawn + '\n'
  assert capsys.readouterr().out == 'run 2 of 3: x\n'
  bar.close()


def test_durations_and_rough_times():
  assert [console.duration(s) for s in (0, 59.6, 61, 3599, 3600, 36000)] == [
      '0:00', '1:00', '1:01', '59:59', '1:00:00', '10:00:00']
  assert [console.about(s) for s in (0.2, 40, 600, 5400 + 1800)] == [
      'about 1 s', 'about 40 s', 'about 10 min', 'about 2.0 h']


def test_run_counter_says_k_of_n_with_the_time_left_from_the_runs_that_ran(clock, capsys):
  runs = console.RunCounter(4, '/w')
  runs.skip()  # finished before: counted, not timed
  with runs.running('/w/simclr/pretrain'):
    clock.now += 600
  with runs.running('/w/simclr/linear/frac_0.1/seed_0'):
    clock.now += 60
  runs.skip()  # not run: its pretraining failed
  assert capsys.readouterr().out.splitlines() == [
      'run 2 of 4: simclr/pretrain  (1 finished before)',
      'run 3 of 4: simclr/linear/frac_0.1/seed_0  (about 20 min left)',  # 600 s x 2 runs
  ]
  assert runs.count == 4
  silent = console.RunCounter()  # a study run from code: counts, says nothing
  with silent.running('/w/x'):
    pass
  assert silent.count == 1 and not capsys.readouterr().out


@pytest.mark.parametrize('overrides, pretraining_fails', [
    ({}, False),
    ({'study.pretrain_per_seed': True, 'study.seeds': 2}, False),
    ({'study.linear_eval': False, 'study.label_fractions': '0.1,1.0'}, False),
    ({'study.starting_points': 'simclr,imagenet,imagenet_simclr,baseline',
      'study.imagenet_weights': 'w.npz', 'study.seeds': 2}, True),
])
def test_the_study_counts_every_run_it_goes_through(tmp_path, monkeypatch, overrides,
                                                    pretraining_fails):
  config = get_default_config()
  config.study.starting_points = 'supervised,simclr,baseline'
  config.study.label_fractions = '0.1,0.5'
  config.study.seeds = 1
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  calls = []

  def run_once(workdir, job, c, split_file, runs):
    del job, c, split_file
    calls.append(workdir)
    runs.skip()
    return {'status': 'failed'} if pretraining_fails and workdir.endswith('pretrain') else {}

  monkeypatch.setattr(study, 'run_once', run_once)
  points = study.parse_starting_points(config)
  fractions, seeds = study.parse_fractions(config), [0, 1][:config.study.seeds]
  runs = console.RunCounter()
  study._run_split(config, str(tmp_path), points, fractions, seeds, None, runs)
  assert runs.count == study.count_runs(config, points, fractions, seeds)
  assert len(calls) <= runs.count and (pretraining_fails or len(calls) == runs.count)


def test_the_settings_line_names_the_network_an_evaluation_starts_from():
  config = get_default_config()
  config.init_from, config.label_fraction = '/runs/demo', 0.1
  line = console.settings_line('finetune', config, '/w', '/w/log.txt')
  # The model keys are taken from the run it starts from, not from the config's defaults.
  assert line == (f'finetune: {config.data.name} {config.data.image_size} px, the network '
                  'of /runs/demo, 0.1 of the labels, seed 0, 8 cpu devices -> /w '
                  '(log: /w/log.txt)')


def test_an_evaluation_ends_with_its_verdict_on_the_test_split():
  result = {'protocol': 'finetune', 'top1': 0.8125, 'balanced_accuracy': 0.75,
            'macro_f1': 0.7, 'num_test': 400, 'num_train': 83}
  assert console.evaluation_summary(result, '/w').splitlines() == [
      'fine-tuning finished: test top-1 0.812, balanced accuracy 0.750, macro F1 0.700 '
      '(400 test images, 83 labelled for training)',
      'results: /w/metrics.json']
