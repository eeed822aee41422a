"""The study: for each starting point, pretrain once, then linear evaluation and fine-tuning
(the protocols of evaluation/protocols.py) at every label fraction and seed; then the
report (study_report.py).

Starting points (config.study.starting_points):
  supervised       random init: linear eval of random features (a floor) and the
                   supervised-from-scratch control (config.supervised_control)
  simclr           SimCLR pretraining from scratch on the study's data
  imagenet         the ImageNet weights file config.study.imagenet_weights, as it is
  imagenet_simclr  those weights, then SimCLR pretraining on the study's data
  baseline         no network: logistic regression on hand-made features of the pixels
                   (baseline.py), at the same fractions and seeds: the floor every deep
                   row should clear

Layout: WORKDIR/<starting point>/{pretrain, features.npz, linear/frac_F/seed_S,
finetune/frac_F/seed_S}; with config.study.pretrain_per_seed, pretrain/seed_S and
features_seedS.npz, one per seed. A sub-run whose metrics.json exists (and says it
completed) is read, not redone, so a stopped study picks up where it was. One
train/val/test split, WORKDIR/split.json, is copied into every sub-run.

With config.study.folds = K (data/folds.py): WORKDIR/folds.json assigns every image to a
fold, and WORKDIR/fold_k/ holds fold k's split.json (test: fold k) and the layout above,
run on it; with config.study.pretrain_scope='all' the pretrainings are WORKDIR/<starting
point>/pretrain, once, on every image without labels. The report pools each arm's K test
folds into one prediction per image (pooling.py).

A sub-run that fails (an exception, a non-finite loss) is recorded as failed (status and
error in results.csv and report.md) and the study goes on; the evaluations of a failed
pretraining are recorded as failed without running. summary['failed'] lists them, and the
next start runs them again. A pretraining stopped by SIGTERM (a preempted VM) stops the
whole study with one line, before anything could evaluate its unfinished checkpoint; the
next start resumes it.
"""

import json
import logging
import os
import shutil

import jax

from simclr_jax.data import folds, pipeline
from simclr_jax.errors import UserError
from simclr_jax.evaluation import label_subsets
from simclr_jax.evaluation.protocols import PROTOCOLS, with_network
from simclr_jax.experiments import pooling, study_report
from simclr_jax.runtime import console, distributed, metrics
from simclr_jax.runtime.run_errors import RunStopped

STARTING_POINTS = ('supervised', 'simclr', 'imagenet', 'imagenet_simclr', 'baseline')
PRETRAINED_HERE = ('simclr', 'imagenet_simclr')  # SimCLR on the study's data
SPLIT_FILE = 'split.json'


def parse_starting_points(config) -> list[str]:
  points = [p.strip() for p in config.study.starting_points.split(',') if p.strip()]
  unknown = [p for p in points if p not in STARTING_POINTS]
  if not points or unknown:
    raise UserError(f'config.study.starting_points={config.study.starting_points!r}: '
                    f'expected a comma-separated subset of {STARTING_POINTS}')
  if any(p.startswith('imagenet') for p in points) and not config.study.imagenet_weights:
    raise UserError("config.study.imagenet_weights is needed by the 'imagenet' and "
                    "'imagenet_simclr' starting points: give a weights file")
  return points


def parse_fractions(config) -> list[float]:
  try:
    fractions = [float(f) for f in config.study.label_fractions.split(',') if f.strip()]
  except ValueError as e:
    raise UserError(f'config.study.label_fractions={config.study.label_fractions!r}: '
                    'expected comma-separated numbers') from e
  if not fractions:
    raise UserError('config.study.label_fractions is empty')
  for f in fractions:
    try:
      label_subsets.check_fraction(f)
    except ValueError:
      raise UserError(f'config.study.label_fractions: {f} is outside (0, 1]') from None
  return sorted(set(fractions))


def finished_metrics(workdir: str) -> dict | None:
  """The metrics of a finished run in `workdir`, or None when it must (re)run."""
  path = os.path.join(workdir, 'metrics.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  return result if result.get('status', 'completed') == 'completed' else None


def run_once(workdir: str, job, config, split_file: str | None,
             runs: console.RunCounter | None = None) -> dict:
  """job(config, workdir), or its finished metrics; `runs` counts it (console.py)."""
  runs = runs or console.RunCounter()
  done = finished_metrics(workdir)
  if done is not None:
    logging.info('study: %s is finished, skipping', workdir)
    runs.skip()
    return done
  os.makedirs(workdir, exist_ok=True)
  if split_file and not os.path.exists(os.path.join(workdir, SPLIT_FILE)):
    shutil.copy(split_file, os.path.join(workdir, SPLIT_FILE))
  logging.info('study: running %s', workdir)
  try:
    with runs.running(workdir):
      result = job(config, workdir)
  except Exception as e:  # pylint: disable=broad-except  (one bad sub-run must not end the study)
    logging.exception('study: %s failed (%s: %s); the other runs go on', workdir,
                      type(e).__name__, ' '.join(str(e).split()))
    return failed(f'{type(e).__name__}: {e}')
  if result.get('status') == 'preempted':
    raise RunStopped(f'SIGTERM: {workdir} saved a checkpoint at step {result.get("step")} and '
                     'stopped, and so did the rest of the job. Start the same command with '
                     'the same workdir to resume; finished runs are skipped.')
  return result


def failed(error: str) -> dict:
  return {'status': 'failed', 'error': ' '.join(error.split())}


def _fraction_dir(kind_dir, fraction, seed):
  return os.path.join(kind_dir, f'frac_{fraction:g}', f'seed_{seed}')


def _pretrain_dir(base, config, seed):
  """Where seed `seed`'s evaluations find their pretraining."""
  if config.study.pretrain_per_seed:
    return os.path.join(base, 'pretrain', f'seed_{seed}')
  return os.path.join(base, 'pretrain')


def _evaluation_config(config, point, pretrain_dir):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.supervised_control = point == 'supervised'
    c.init_from = {'supervised': '', 'imagenet': config.study.imagenet_weights}.get(
        point, pretrain_dir)
  return c


def _pretrain(config, point, workdir, split_file, seed, runs):
  from simclr_jax.training import loop  # pylint: disable=g-import-not-at-top
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.init_from = config.study.imagenet_weights if point == 'imagenet_simclr' else ''
    c.supervised_control = False
    # k-fold with study.pretrain_scope='all': one pretraining on every image, test folds too
    c.data.pretrain_on_test = config.data.pretrain_on_test or (
        config.study.folds > 0 and config.study.pretrain_scope == 'all')
    if config.study.pretrain_per_seed:
      c.seed = seed
  return run_once(workdir, loop.train_and_evaluate, c, split_file, runs)


def _run_baseline(config, base, fractions, seeds, split_file, runs) -> list[dict]:
  rows = []
  for fraction, seed in _with_all_labels(fractions, seeds, per_seed=False):
    c = config.copy_and_resolve_references()
    with c.unlocked():
      c.label_fraction, c.seed = fraction, seed
      c.baseline.feature_cache = os.path.join(base, 'baseline_features.npz')
    run_dir = _fraction_dir(base, fraction, seed)
    result = run_once(run_dir, PROTOCOLS['baseline'].run, c, split_file, runs)
    rows.append(dict(study_report.result_row('baseline', 'baseline', fraction, seed, result),
                     run_dir=run_dir))
  return rows


def _with_all_labels(fractions, seeds, per_seed: bool) -> list[tuple[float, int]]:
  """(fraction, seed) for the frozen protocols, which also run on 100% of the labels: there
  every seed draws the same subset, so one run, unless the encoder differs by seed."""
  return [(f, s) for f in fractions + ([1.0] if 1.0 not in fractions else [])
          for s in (seeds if f < 1.0 or per_seed else seeds[:1])]


def use_compilation_cache(workdir: str) -> None:
  """Sub-runs build the same networks and steps again and again (every fine-tuning run of
  a starting point has the same shapes): JAX's persistent compilation cache compiles each
  once. Left alone when the user has set a cache directory."""
  if jax.config.jax_compilation_cache_dir:
    return
  jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, '.jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _pretrain_seeds(config, point, seeds) -> list[int]:
  """The seeds `point` pretrains with (none where it pretrains nothing here)."""
  if point not in PRETRAINED_HERE:
    return []
  return seeds if config.study.pretrain_per_seed else seeds[:1]


def _evaluations(config, point, fractions, seeds) -> list[tuple]:
  """(protocol, fraction, seed, job) of every evaluation of `point`, the frozen protocols
  first (protocols.py)."""
  runs = []
  for name in sorted(with_network(), key=lambda name: not PROTOCOLS[name].frozen):
    protocol = PROTOCOLS[name]
    if not protocol.in_study(config):
      continue
    pairs = (_with_all_labels(fractions, seeds, _per_seed(config, point)) if protocol.frozen
             else [(f, s) for f in fractions for s in seeds])
    runs += [(name, f, s, protocol.run) for f, s in pairs]
  return runs


def _per_seed(config, point) -> bool:
  """Whether `point`'s encoder, and so its feature cache, differs by seed."""
  return point == 'supervised' or (point in PRETRAINED_HERE and config.study.pretrain_per_seed)


def count_runs(config, points, fractions, seeds) -> int:
  """How many sub-runs run_study goes through (finished ones included)."""
  per_split = sum(
      len(_with_all_labels(fractions, seeds, per_seed=False)) if point == 'baseline' else
      len(_pretrain_seeds(config, point, seeds)) + len(_evaluations(config, point, fractions,
                                                                    seeds))
      for point in points)
  return per_split * max(config.study.folds, 1)


def _run_split(config, workdir, points, fractions, seeds, split_file, runs,
               pretrain_root=None, pretrain_split_file=None) -> list[dict]:
  """Every starting point's runs on one train/val/test split (the study's, or one fold's):
  WORKDIR/<point>/...; the pretrainings live under `pretrain_root`/<point> (default
  WORKDIR) and are started with `pretrain_split_file` (default the split's)."""
  rows = []
  for point in points:
    base = os.path.join(workdir, point)
    if point == 'baseline':
      rows += _run_baseline(config, base, fractions, seeds, split_file, runs)
      continue
    pretrain_base = os.path.join(pretrain_root or workdir, point)
    per_seed = _per_seed(config, point)
    pretraining = {}  # seed -> the pretraining's result
    for seed in _pretrain_seeds(config, point, seeds):
      pretraining[seed] = _pretrain(config, point, _pretrain_dir(pretrain_base, config, seed),
                                    pretrain_split_file or split_file, seed, runs)
    for protocol, fraction, seed, job in _evaluations(config, point, fractions, seeds):
      c = _evaluation_config(config, point, _pretrain_dir(pretrain_base, config, seed))
      with c.unlocked():
        c.label_fraction, c.seed = fraction, seed
        # a random encoder (supervised) or a pretraining per seed: one feature cache each
        c.linear.feature_cache = os.path.join(
            base, f'features_seed{seed}.npz' if per_seed else 'features.npz')
      done = pretraining.get(seed if config.study.pretrain_per_seed else seeds[0], {})
      run_dir = _fraction_dir(os.path.join(base, protocol), fraction, seed)
      if done.get('status', 'completed') != 'completed':
        runs.skip()
        result = failed(f"not run: pretraining in {c.init_from} ended "
                        f"{done.get('status')}: {done.get('error', '')}")
      else:
        result = run_once(run_dir, job, c, split_file, runs)
      rows.append(dict(study_report.result_row(point, protocol, fraction, seed, result),
                       run_dir=run_dir))
  return rows


def _run_folds(config, workdir, points, fractions, seeds, runs) -> list[dict]:
  """Every fold's runs (folds.py): WORKDIR/fold_k/<point>/...; -> the rows, each with its
  fold. With study.pretrain_scope='all' the pretrainings are shared, WORKDIR/<point>/
  pretrain, on every image of the set (test folds included, without labels)."""
  split_files = folds.write_fold_splits(config, workdir)
  on_all_images = config.study.pretrain_scope == 'all'
  rows = []
  for fold, split_file in enumerate(split_files):
    fold_rows = _run_split(
        config, folds.fold_dir(workdir, fold), points, fractions, seeds, split_file, runs,
        pretrain_root=workdir if on_all_images else None,
        pretrain_split_file=split_files[0] if on_all_images else None)
    rows += [dict(r, fold=fold) for r in fold_rows]
  return rows


def run_study(config, workdir: str) -> dict:
  """Runs (or resumes) the whole study; writes results.csv, report.md and the figures."""
  points = parse_starting_points(config)
  fractions = parse_fractions(config)
  if config.study.seeds < 1:
    raise UserError(f'config.study.seeds must be >= 1, got {config.study.seeds}')
  seeds = list(range(config.seed, config.seed + config.study.seeds))
  os.makedirs(workdir, exist_ok=True)
  use_compilation_cache(workdir)
  runs = console.RunCounter(count_runs(config, points, fractions, seeds), workdir)
  if config.study.folds:
    fold_rows = _run_folds(config, workdir, points, fractions, seeds, runs)
    rows = pooling.pool_rows(config, workdir, fold_rows)
    ran = fold_rows
  else:
    pipeline.dataset_info(config, workdir)  # makes WORKDIR/split.json for folder datasets
    split_file = os.path.join(workdir, SPLIT_FILE)
    split_file = split_file if os.path.exists(split_file) else None
    rows = ran = _run_split(config, workdir, points, fractions, seeds, split_file, runs)
    fold_rows = None
  summary = {'num_runs': len(ran), 'rows': rows,
             'failed': [r for r in ran if r['status'] == 'failed']}
  if distributed.is_main_process():
    summary.update(study_report.write_report(config, workdir, points, rows, fold_rows))
    # the per-image predictions stay in the sub-runs' metrics.json
    metrics.write_metrics_json(workdir, dict(summary, rows=study_report.table_rows(rows)))
  return summary
