"""The paper's findings on the user's data: each finding is a grid of pretraining variants
(config overrides), each pretrained per seed and linearly evaluated with the study's
protocol (evaluation/linear.py), then compared (findings_report.py).

Findings (config.findings.run), after SimCLR (Chen et al. 2020):
  augmentations  Fig. 5: no augmentation as the start, then each op alone and each pair
                 (config.findings.augmentations), on both views
  heads          Fig. 8 / Table 3: projection head of 0 (none), 1 (linear) or 2-3
                 (nonlinear) layers; linear evaluation on h and on g(h)
  batch_epochs   Fig. 9: batch sizes x epochs, the learning rate scaled by optim.lr_scaling
  loss           Table 2: NT-Xent, NT-Logistic, margin triplet, each at the temperature or
                 margin its sweep picks on the validation split
  temperature    Table 5: NT-Xent at each temperature, with and without l2 normalisation

Layout: WORKDIR/runs/<finding>/<variant>/seed<s>/{pretrain, linear_h, linear_g}. Variants
whose pretraining configs are the same (the config's own recipe is in several findings)
share one directory: the first finished one, else the first in the plan. Finished runs
are read, not redone; a failed one is recorded and the others go on (study.run_once).
"""

import dataclasses
import json
import os

from simclr_jax.data import augment_ops, augment_params, pipeline
from simclr_jax.errors import UserError
from simclr_jax.evaluation import linear
from simclr_jax.experiments import findings_report, study
from simclr_jax.runtime import console, distributed

FINDINGS = ('augmentations', 'heads', 'batch_epochs', 'loss', 'temperature')
# The augmentation ops by findings name (crop, flip, ..., and color = jitter + grayscale),
# the config keys that switch each off, and its strengths where the recipe has it off (the
# paper's ImageNet ones): all from the ops' declarations (data/augment_ops/).
OPS = augment_ops.FINDINGS_NAMES
NO_AUGMENTATION = {f'augment.{key}': value for op in augment_ops.OPS.values()
                   for key, value in op.off.items()}
OP_DEFAULTS = {key: value for op in augment_ops.OPS.values()
               for key, value in op.strengths.items()}


@dataclasses.dataclass(frozen=True)
class Variant:
  finding: str
  name: str
  overrides: dict  # {'loss.temperature': 0.1, ...}
  layers: tuple = ('h',)  # linear evaluation on h and/or g(h)
  coords: dict = dataclasses.field(default_factory=dict)  # for the report and figures


def _items(config, key: str, convert=str) -> list:
  spec = config.findings[key]
  try:
    values = [convert(v.strip()) for v in spec.split(',') if v.strip()]
  except ValueError:
    values = []
  if not values:
    raise UserError(f'config.findings.{key}={spec!r}: expected a comma-separated list of '
                    f'{"numbers" if convert is not str else "names"}')
  return list(dict.fromkeys(values))  # in order, without repeats


def _positive(config, key, convert=float) -> list:
  values = _items(config, key, convert)
  if min(values) <= 0:
    raise UserError(f'config.findings.{key}={config.findings[key]!r}: expected values > 0')
  return values


def _names(config, key, known) -> list[str]:
  names = _items(config, key)
  unknown = [n for n in names if n not in known]
  if unknown:
    raise UserError(f'config.findings.{key}={config.findings[key]!r}: unknown {unknown}; '
                    f'expected a comma-separated subset of {known}')
  return names


def parse_findings(config) -> list[str]:
  return _names(config, 'run', FINDINGS)


def op_overrides(config, op: str) -> dict:
  """The config keys that switch `op` on, at the recipe's strength (OP_DEFAULTS where the
  recipe has it off)."""
  if op not in OPS:
    raise UserError(f'config.findings.augmentations: unknown op {op!r}; expected some of '
                    f'{OPS}')
  p = augment_params.resolve_params(config)
  return {f'augment.{key}': value for member in augment_ops.named(op)
          for key, value in member.on(p).items()}


def _augmentation_variants(config) -> list[Variant]:
  ops = _items(config, 'augmentations')
  for op in ops:
    op_overrides(config, op)  # a clear error for an unknown op before anything runs
  pairs = [(a,) for a in ops] + [(a, b) for i, a in enumerate(ops) for b in ops[i + 1:]]
  return [Variant('augmentations', '+'.join(pair),
                  {**NO_AUGMENTATION, **{k: v for op in pair
                                         for k, v in op_overrides(config, op).items()}},
                  coords={'first': pair[0], 'second': pair[-1]}) for pair in pairs]


def head_name(layers: int) -> str:
  return {0: 'none', 1: 'linear'}.get(layers, f'nonlinear_{layers}')


def _head_variants(config) -> list[Variant]:
  counts = _items(config, 'head_layers', int)
  if min(counts) < 0 or max(counts) > 8:
    raise UserError(f'config.findings.head_layers={config.findings.head_layers!r}: '
                    'expected layer counts from 0 to 8')
  return [Variant('heads', head_name(k), {'model.head_layers': k},
                  layers=('h', 'g') if k > 0 else ('h',), coords={'head_layers': k})
          for k in counts]


def _batch_epoch_variants(config) -> list[Variant]:
  batches = _positive(config, 'batch_sizes', int)
  epochs = _positive(config, 'epochs', int)
  return [Variant('batch_epochs', f'batch{b}_epochs{e}',
                  {'batch_size': b, 'num_epochs': e, 'num_steps': 0},
                  coords={'batch_size': b, 'epochs': e}) for b in batches for e in epochs]


def _loss_variants(config) -> list[Variant]:
  from simclr_jax.training.losses import LOSS_NAMES  # pylint: disable=g-import-not-at-top
  names = _names(config, 'losses', LOSS_NAMES)
  variants = []
  for name in names:
    key, values = (('loss.margin', _items(config, 'margins', float)) if name ==
                   'margin_triplet' else ('loss.temperature',
                                          _positive(config, 'loss_temperatures')))
    if name == 'margin_triplet' and min(values) < 0:
      raise UserError(f'config.findings.margins={config.findings.margins!r}: expected '
                      'values >= 0')
    variants += [Variant('loss', f'{name}_{key.split(".")[1]}{v:g}',
                         {'loss.name': name, key: v, 'loss.normalize': True},
                         coords={'loss': name, 'parameter': key, 'value': v})
                 for v in values]
  return variants


def _temperature_variants(config) -> list[Variant]:
  return [Variant('temperature', f'{"l2" if norm else "raw"}_t{t:g}',
                  {'loss.name': 'nt_xent', 'loss.temperature': t, 'loss.normalize': norm},
                  coords={'normalize': norm, 'temperature': t})
          for norm in (True, False) for t in _positive(config, 'temperatures')]


VARIANT_BUILDERS = {'augmentations': _augmentation_variants, 'heads': _head_variants,
                    'batch_epochs': _batch_epoch_variants, 'loss': _loss_variants,
                    'temperature': _temperature_variants}


def plan(config) -> list[Variant]:
  """Every variant of the findings config.findings.run asks for, in order."""
  return [v for name in parse_findings(config) for v in VARIANT_BUILDERS[name](config)]


def seeds_of(config) -> list[int]:
  return list(range(config.seed, config.seed + config.findings.seeds))


def pretrain_config(config, variant: Variant, seed: int):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    for key, value in variant.overrides.items():
      node = c
      *parents, leaf = key.split('.')
      for part in parents:
        node = node[part]
      node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
    c.seed = seed
    c.init_from = ''
    c.supervised_control = False
  return c


def _same_pretraining_key(c) -> str:
  """Configs that pretrain the same network the same way (the evaluation keys aside)."""
  flat = json.loads(c.to_json())
  for key in ('findings', 'linear', 'study', 'finetune', 'baseline'):
    flat.pop(key, None)
  return json.dumps(flat, sort_keys=True)


def run_dirs(config, workdir: str, variants: list[Variant]) -> dict:
  """(finding, variant, seed) -> its directory, shared by variants with the same
  pretraining config: a finished one if any, else the first in the plan."""
  candidates = {}
  for v in variants:
    for seed in seeds_of(config):
      key = _same_pretraining_key(pretrain_config(config, v, seed))
      path = os.path.join(workdir, 'runs', v.finding, v.name, f'seed{seed}')
      candidates.setdefault(key, []).append(((v.finding, v.name, seed), path))
  dirs = {}
  for group in candidates.values():
    finished = [p for _, p in group
                if study.finished_metrics(os.path.join(p, 'pretrain')) is not None]
    chosen = finished[0] if finished else group[0][1]
    dirs.update({ident: chosen for ident, _ in group})
  return dirs


def _linear_config(config, pretrain_dir, layer, seed, cache):
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.init_from = pretrain_dir
    c.supervised_control = False
    c.finetune_from = 'encoder'  # fine-tuning's key; a head1 setting would refuse 0-1 layers
    c.label_fraction = 1.0
    c.seed = seed
    c.linear.features = layer
    c.linear.feature_cache = cache  # one file, overwritten: the runs' metrics keep the results
  return c


def result_row(variant: Variant, seed: int, layer: str, run_dir: str, pretrained: dict,
               result: dict) -> dict:
  row = {'finding': variant.finding, 'variant': variant.name, 'seed': seed, 'layer': layer,
         # compare.py's arm: (starting point, protocol) at label fraction 1
         'starting_point': f'{variant.finding}/{variant.name}', 'protocol': f'linear_{layer}',
         'label_fraction': 1.0, 'num_test': result.get('num_test')}
  row.update({m: result.get(m) for m in findings_report.METRICS})
  row.update({f'val_{m}': result.get(f'val_{m}') for m in ('top1', 'balanced_accuracy')})
  row['contrastive_acc'] = pretrained.get('contrastive_acc')
  row.update(status=result.get('status', 'completed'), error=result.get('error', ''),
             run_dir=run_dir)
  row.update({k: result[k] for k in ('test_labels', 'test_predictions') if k in result})
  return row


def run_findings(config, workdir: str) -> dict:
  """Runs (or resumes) the findings config.findings.run asks for; writes results.csv,
  report.md and one figure per finding."""
  from simclr_jax.training import loop  # pylint: disable=g-import-not-at-top
  variants = plan(config)
  linear.check_select_metric(config)
  os.makedirs(workdir, exist_ok=True)
  study.use_compilation_cache(workdir)
  pipeline.dataset_info(config, workdir)  # makes WORKDIR/split.json for folder datasets
  split_file = os.path.join(workdir, study.SPLIT_FILE)
  split_file = split_file if os.path.exists(split_file) else None
  dirs = run_dirs(config, workdir, variants)
  cache = os.path.join(workdir, 'features_cache.npz')
  runs = console.RunCounter(
      sum(len(seeds_of(config)) * (1 + len(v.layers)) for v in variants), workdir)
  rows = []
  for variant in variants:
    for seed in seeds_of(config):
      run_dir = dirs[(variant.finding, variant.name, seed)]
      pretrain_dir = os.path.join(run_dir, 'pretrain')
      pretrained = study.run_once(pretrain_dir, loop.train_and_evaluate,
                                  pretrain_config(config, variant, seed), split_file, runs)
      for layer in variant.layers:
        if pretrained.get('status', 'completed') != 'completed':
          runs.skip()
          result = study.failed(f"not run: pretraining in {pretrain_dir} ended "
                                f"{pretrained.get('status')}: {pretrained.get('error', '')}")
        else:
          result = study.run_once(os.path.join(run_dir, f'linear_{layer}'),
                                  linear.run_linear_eval,
                                  _linear_config(config, pretrain_dir, layer, seed, cache),
                                  split_file, runs)
        rows.append(result_row(variant, seed, layer, run_dir, pretrained, result))
  summary = {'num_runs': len(rows), 'rows': rows,
             'failed': [r for r in rows if r['status'] == 'failed']}
  if distributed.is_main_process():
    summary.update(findings_report.write_report(config, workdir, variants, rows))
  return summary
