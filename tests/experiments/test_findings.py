"""The findings (simclr_jax/findings.py): the grids the config asks for, the unnormalised
loss against numpy, linear evaluation on g(h) against numpy, and a tiny run of every
finding end to end that a second start skips entirely."""

import csv
import os

import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from simclr_jax.config.defaults import get_default_config
from simclr_jax.evaluation import linear, networks
from simclr_jax.experiments import findings_grid
from simclr_jax.runtime import parallel
from simclr_jax.training import init_from, losses, loop


def tiny_findings_config():
  c = get_default_config()
  c.data.num_synthetic = 96
  c.data.synthetic_size = 20
  c.data.image_size = 16
  c.data.split = (0.5, 0.25, 0.25)  # 48 training images: 3 steps of 16
  c.data.shuffle_buffer = 200
  c.model.width = 0.125
  c.model.head_dim = 16
  c.model.head_layers = 1
  c.finetune_from = 'head1'  # as configs/study_demo.py: must not stop linear evaluation
  c.batch_size = 16
  c.num_epochs = 1
  c.optim.warmup_steps = 1
  c.log_every_steps = 1
  c.eval_at_end = False
  c.health_monitor = False
  c.eval_batch_size = 24
  c.linear.l2_grid = '1e-3'
  c.linear.max_iter = 20
  c.findings.seeds = 1
  # Every finding, its recipe's variant shared: 2 pretrainings (the recipe; NT-Xent without
  # normalisation). The recipe augments with the crop alone, so the augmentation finding's
  # one variant is the recipe too. test_each_grid_... checks larger grids.
  for key in ('flip_lr', 'flip_ud', 'rot90'):
    c.augment[key] = False
  for key in ('jitter_strength', 'jitter_prob', 'grayscale_prob', 'stain_jitter', 'blur_prob'):
    c.augment[key] = 0.0
  c.findings.augmentations = 'crop'
  c.findings.head_layers = '1'
  c.findings.batch_sizes = '16'
  c.findings.epochs = '1'
  c.findings.losses = 'nt_xent'
  c.findings.loss_temperatures = '0.5'
  c.findings.temperatures = '0.5'
  return c


def test_each_grid_is_the_one_the_config_asks_for():
  c = get_default_config()
  c.findings.augmentations = 'crop,color,blur'
  c.findings.head_layers = '0,1,3'
  c.findings.batch_sizes = '32,64'
  c.findings.epochs = '5,10,20'
  c.findings.losses = 'nt_xent,margin_triplet'
  c.findings.loss_temperatures = '0.1,0.5'
  c.findings.margins = '0.4'
  c.findings.temperatures = '0.05,1'
  by_finding = {}
  for v in findings_grid.plan(c):
    by_finding.setdefault(v.finding, []).append(v)
  names = {f: [v.name for v in vs] for f, vs in by_finding.items()}
  assert names['augmentations'] == ['crop', 'color', 'blur', 'crop+color', 'crop+blur',
                                    'color+blur']
  assert names['heads'] == ['none', 'linear', 'nonlinear_3']
  assert [v.layers for v in by_finding['heads']] == [('h',), ('h', 'g'), ('h', 'g')]
  assert names['batch_epochs'] == [f'batch{b}_epochs{e}' for b in (32, 64) for e in (5, 10, 20)]
  assert names['loss'] == ['nt_xent_temperature0.1', 'nt_xent_temperature0.5',
                           'margin_triplet_margin0.4']
  assert names['temperature'] == ['l2_t0.05', 'l2_t1', 'raw_t0.05', 'raw_t1']
  # the no-augmentation start plus exactly the ops of the variant
  crop_blur = findings_grid.pretrain_config(c, by_finding['augmentations'][4], seed=0)
  assert crop_blur.augment.crop_area_min == 0.08 and crop_blur.augment.blur_prob == 0.5
  assert crop_blur.augment.jitter_strength == 0 and crop_blur.augment.grayscale_prob == 0
  assert not crop_blur.augment.rot90 and not crop_blur.augment.flip_lr
  raw = findings_grid.pretrain_config(c, by_finding['temperature'][3], seed=2)
  assert (raw.loss.normalize, raw.loss.temperature, raw.seed) == (False, 1.0, 2)
  with c.unlocked():
    c.findings.run = 'heads'
  assert {v.finding for v in findings_grid.plan(c)} == {'heads'}


@pytest.mark.parametrize('key,value,needle', [
    ('run', 'heads,colour', 'config.findings.run'),
    ('augmentations', 'crop,sobel', "unknown op 'sobel'"),
    ('batch_sizes', '32,x', 'config.findings.batch_sizes'),
    ('losses', 'infonce', 'config.findings.losses'),
    ('temperatures', '0,1', 'config.findings.temperatures'),
])
def test_a_bad_grid_is_one_clear_error(key, value, needle):
  c = get_default_config()
  c.findings[key] = value
  with pytest.raises(ValueError, match=needle.replace('(', r'\(')):
    findings_grid.plan(c)


def test_unnormalised_nt_xent_matches_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(8, 5)).astype(np.float32)
  temperature = 2.0
  logits = (z.astype(np.float64) @ z.T.astype(np.float64)) / temperature
  np.fill_diagonal(logits, -np.inf)
  log_softmax = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(
      1, keepdims=True)) - logits.max(1, keepdims=True)
  n = len(z) // 2
  want = -np.mean([log_softmax[i, (i + n) % len(z)] for i in range(len(z))])
  got, _ = losses.contrastive_loss(jnp.asarray(z), temperature=temperature, normalize=False)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  normalised, _ = losses.contrastive_loss(jnp.asarray(z), temperature=temperature)
  assert abs(float(normalised) - want) > 1e-2  # the flag changes what is computed


@pytest.fixture(scope='module')
def tiny_findings(tmp_path_factory):
  from tiny_configs import share_compilations_between_test_runs
  share_compilations_between_test_runs()
  workdir = str(tmp_path_factory.mktemp('findings'))
  config = tiny_findings_config()
  return config, workdir, findings_grid.run_findings(config, workdir)


def test_every_finding_runs_end_to_end(tiny_findings):
  config, workdir, summary = tiny_findings
  assert not summary['failed'], summary['failed']
  for name in ('report.md', 'results.csv', 'augmentations.png', 'heads.png',
               'batch_epochs.png', 'loss.png', 'temperature.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [(r['finding'], r['variant'], r['layer']) for r in rows] == [
      ('augmentations', 'crop', 'h'), ('heads', 'linear', 'h'),
      ('heads', 'linear', 'g'), ('batch_epochs', 'batch16_epochs1', 'h'),
      ('loss', 'nt_xent_temperature0.5', 'h'), ('temperature', 'l2_t0.5', 'h'),
      ('temperature', 'raw_t0.5', 'h')]
  # the recipe's own variant is pretrained once and shared by every finding; the
  # unnormalised loss is pretrained apart
  recipe_dirs = {r['run_dir'] for r in rows if r['variant'] != 'raw_t0.5'}
  assert len(recipe_dirs) == 1
  assert len({r['run_dir'] for r in rows}) == 2
  assert all(0 <= float(r['top1']) <= 1 for r in rows)
  text = open(os.path.join(workdir, 'report.md')).read()
  for title in ('Augmentation composition', 'Projection head', 'Batch size',
                'Contrastive loss', 'Temperature'):
    assert title in text
  assert 'linear on h > linear on g(h)' not in text  # h vs g(h) only for nonlinear heads


def test_a_second_start_skips_every_finished_run(tiny_findings, monkeypatch):
  config, workdir, first = tiny_findings

  def must_not_run(*args, **kwargs):
    raise AssertionError('a finished run ran again')

  monkeypatch.setattr(loop, 'train_and_evaluate', must_not_run)
  monkeypatch.setattr(linear, 'run_linear_eval', must_not_run)
  again = findings_grid.run_findings(config, workdir)
  assert not again['failed']
  assert [r['top1'] for r in again['rows']] == [r['top1'] for r in first['rows']]


def test_linear_evaluation_on_g_is_the_head_applied_to_h(tiny_findings):
  config, workdir, summary = tiny_findings
  run_dir = next(r['run_dir'] for r in summary['rows'] if r['layer'] == 'g')
  c = config.copy_and_resolve_references()
  c.init_from = os.path.join(run_dir, 'pretrain')
  c.finetune_from = 'encoder'
  mesh = parallel.make_mesh()
  networks.check_starting_point(c, 'test')
  h = linear.compute_features(c, workdir, mesh)['val'][0]
  c.linear.features = 'g'
  g = linear.compute_features(c, workdir, mesh)['val'][0]
  holder = networks.build_encoder_and_head(c, nnx.Rngs(1))
  init_from.load_into(holder, c)
  kernel = np.asarray(holder.head.out.kernel[...], np.float64)
  bias = np.asarray(holder.head.out.bias[...], np.float64)
  assert g.shape == (len(h), c.model.head_dim)
  np.testing.assert_allclose(g, h.astype(np.float64) @ kernel + bias, rtol=1e-4, atol=1e-4)


def test_features_g_needs_a_pretraining_with_a_head():
  c = get_default_config()
  c.linear.features = 'g'
  c.supervised_control = True
  with pytest.raises(ValueError, match="config.linear.features='g'"):
    networks.check_head_features(c)
