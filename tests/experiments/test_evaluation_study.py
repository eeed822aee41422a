"""The study end to end on a tiny model: pretraining, linear evaluation, fine-tuning, the
supervised control and the report; then a second start that must skip every finished run.
The one study run is shared by this file's tests."""

import csv
import html.parser
import json
import os
import re

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from simclr_jax.evaluation import fine_tuning, linear, networks
from simclr_jax.experiments import study
from simclr_jax.models import heads
from simclr_jax.runtime import parallel
from simclr_jax.training import checkpoint, loop, state as train_state
from tiny_configs import share_compilations_between_test_runs, tiny_study_config


def study_config():
  c = tiny_study_config()
  # One fraction: every protocol and starting point still runs (test_study_failures.py
  # goes through several fractions).
  c.study.label_fractions = '0.5'
  return c


@pytest.fixture(scope='module')
def tiny_study(tmp_path_factory):
  """(config, workdir, summary) of one tiny study."""
  share_compilations_between_test_runs()
  config, workdir = study_config(), str(tmp_path_factory.mktemp('study'))
  return config, workdir, study.run_study(config, workdir)


def test_tiny_study_runs_end_to_end_and_resumes(tiny_study, monkeypatch):
  config, workdir, summary = tiny_study
  # 2 starting points x (linear at 0.5 and 1.0 + fine-tuning at 0.5)
  assert summary['num_runs'] == 6 and not summary['failed']
  for name in ('results.csv', 'report.md', 'label_fraction.png', 'embedding.png',
               'metrics.json', 'simclr/pretrain/metrics.json',
               'supervised/finetune/frac_0.5/seed_0/metrics.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, 'simclr/finetune/frac_0.5/seed_0/metrics.json')) as f:
    result = json.load(f)
  for key in ('top1', 'balanced_accuracy', 'macro_f1', 'per_class_recall',
              'per_class_precision', 'confusion_matrix', 'num_train', 'num_test', 'roc_auc',
              'sensitivity', 'specificity'):
    assert key in result, key
  with open(os.path.join(workdir, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert {r['protocol'] for r in rows} == {'linear', 'finetune'}
  assert 'supervised' in open(os.path.join(workdir, 'report.md')).read()

  def must_not_run(*args, **kwargs):
    raise AssertionError('a finished run was started again')

  monkeypatch.setattr(loop, 'train_and_evaluate', must_not_run)
  monkeypatch.setattr(fine_tuning, 'run_finetune', must_not_run)
  monkeypatch.setattr(linear, 'run_linear_eval', must_not_run)
  assert study.run_study(config, workdir)['num_runs'] == 6


class _Page(html.parser.HTMLParser):
  """The <img> tags of a page and the text of the cells that show them."""

  def __init__(self):
    super().__init__()
    self.images, self.text = 0, []

  def handle_starttag(self, tag, attrs):
    self.images += tag == 'img' and dict(attrs)['src'].startswith('data:image/png;base64,')

  def handle_data(self, data):
    self.text.append(data)


def test_report_links_a_page_of_test_predictions_per_run(tiny_study):
  config, workdir, summary = tiny_study
  report = open(os.path.join(workdir, 'report.md')).read()
  links = re.findall(r'\]\(([^)]*test_predictions\.html)\)', report)
  # every run of the study (none failed) has its page, linked once
  assert sorted(links) == sorted(os.path.relpath(os.path.join(r['run_dir'],
                                                              'test_predictions.html'), workdir)
                                 for r in summary['rows'])
  for link in links:
    run_dir = os.path.dirname(os.path.join(workdir, link))
    with open(os.path.join(run_dir, 'metrics.json')) as f:
      result = json.load(f)
    probs = np.load(os.path.join(run_dir, 'test_probs.npy'))
    # the saved probabilities are the run's: its predictions, and its top-1
    assert probs.shape == (result['num_test'], 5)
    np.testing.assert_array_equal(probs.argmax(1), result['test_predictions'])
    page = _Page()
    page.feed(open(os.path.join(workdir, link)).read())
    shown = min(config.study.page_images, result['num_test'])
    assert page.images == shown > 0
    text = ' '.join(page.text)
    assert f"the first {shown} of {result['num_test']} test images shown" in text
    wrong = int(np.sum(probs.argmax(1)[:shown] != np.asarray(result['test_labels'])[:shown]))
    assert f'{wrong} of {shown} misclassified' in text


def test_fine_tuning_from_head1_starts_from_the_encoder_and_the_heads_first_layer(tiny_study):
  config, workdir, _ = tiny_study
  config = config.copy_and_resolve_references()
  config.init_from = os.path.join(workdir, 'simclr', 'pretrain')
  config.finetune_from = 'head1'
  networks.check_starting_point(config, 'finetune')
  mesh = parallel.make_mesh()
  _, state, _ = train_state.create_train_state(
      lambda rngs: networks.FineTuneModel(config, 5, rngs), optax.identity(), mesh, 0,
      prepare_params=networks.load_pretrained(config))
  source = nnx.eval_shape(lambda: heads.build_simclr_model(config, 5, nnx.Rngs(0)))
  _, params, stats = train_state.split_model(source)
  saved, _, _ = checkpoint.restore_model_variables(config.init_from, params, stats)

  def assert_same(loaded, stored):
    loaded, stored = jax.tree.leaves(loaded), jax.tree.leaves(stored)
    assert len(loaded) == len(stored) > 0
    for a, b in zip(loaded, stored):
      np.testing.assert_allclose(a, b)

  assert_same(state.params['head1'], saved['head']['hidden'][0])
  assert_same(state.params['encoder'], saved['encoder'])


def _results(workdir):
  """metrics.json without what is wall-clock time or the run's own path."""
  with open(os.path.join(workdir, 'metrics.json')) as f:
    result = json.load(f)
  return {k: v for k, v in result.items() if k not in ('step_ms', 'images_per_sec', 'init_from')}


def test_pretraining_then_fine_tuning_repeats_bitwise(tiny_study, tmp_path):
  """Same machine, same seed, same command -> the same digits (docs/evaluation.md:
  Determinism): the study's SimCLR pretraining and its fine-tuning at 50 %, run again."""
  config, workdir, _ = tiny_study
  again = (str(tmp_path / 'pretrain'), str(tmp_path / 'finetune'))
  loop.train_and_evaluate(config, again[0])
  c = config.copy_and_resolve_references()
  c.init_from, c.label_fraction = again[0], 0.5
  fine_tuning.run_finetune(c, again[1])
  first = (os.path.join(workdir, 'simclr', 'pretrain'),
           os.path.join(workdir, 'simclr', 'finetune', 'frac_0.5', 'seed_0'))
  runs = [[_results(run) for run in pair] for pair in (first, again)]
  assert runs[0] == runs[1]  # == on floats: bitwise, not approximately
  assert runs[0][1]['test_predictions'] and 'loss' in runs[0][0]
