"""evaluation/protocols.py is the one list of protocols: a new entry is run by the study,
counted by its console and reported, with no other file naming it."""

import numpy as np

from simclr_jax.config.defaults import get_default_config
from simclr_jax.evaluation import linear, protocols
from simclr_jax.experiments import study, study_report

POINTS = ['supervised', 'simclr', 'baseline']
FRACTIONS, SEEDS = [0.1, 0.5], [0, 1]
# a frozen protocol under a new name: linear evaluation on the encoder's other layer
PROBE_G = protocols.Protocol(
    module=linear, function='run_linear_eval', title='Linear evaluation on g(h)', words='probe on g(h)',
    plot_style=':x', frozen=True, random_init_name='random g(h) features',
    against_random_init='Probe on g(h) against random features')


def _rows(protocol_names, rng):
  labels = np.repeat(np.arange(2), 50)
  rows = []
  for name in protocol_names:
    for point in ('supervised', 'simclr'):
      for seed in SEEDS:
        right = rng.random(len(labels)) < (0.8 if point == 'simclr' else 0.6)
        result = {'top1': float(right.mean()), 'num_test': len(labels),
                  'test_labels': labels.tolist(),
                  'test_predictions': np.where(right, labels, 1 - labels).tolist()}
        rows.append(study_report.result_row(point, name, 0.1, seed, result))
  return rows


def test_the_study_runs_the_frozen_protocols_first_and_only_those_switched_on():
  config = get_default_config()
  names = [e[0] for e in study._evaluations(config, 'simclr', FRACTIONS, SEEDS)]
  assert names == ['linear'] * 5 + ['finetune'] * 4  # linear also at 100%, one seed there
  config.study.linear_eval = False
  assert {e[0] for e in study._evaluations(config, 'simclr', FRACTIONS, SEEDS)} == {'finetune'}
  assert protocols.with_network() == ['finetune', 'linear']


def test_a_new_protocol_is_run_counted_and_reported(monkeypatch):
  config = get_default_config()
  before = study.count_runs(config, POINTS, FRACTIONS, SEEDS)
  monkeypatch.setitem(protocols.PROTOCOLS, 'probe_g', PROBE_G)
  evaluations = study._evaluations(config, 'simclr', FRACTIONS, SEEDS)
  assert [e[0] for e in evaluations] == ['linear'] * 5 + ['probe_g'] * 5 + ['finetune'] * 4
  assert all(job is linear.run_linear_eval for name, *_, job in evaluations if name != 'finetune')
  # 5 more evaluations for simclr, 6 for the random init (its features differ by seed, so
  # every seed runs at 100% too), none for the baseline
  assert study.count_runs(config, POINTS, FRACTIONS, SEEDS) == before + 5 + 6

  rows = _rows(['finetune', 'probe_g'], np.random.default_rng(0))
  lines = study_report.headline(POINTS, rows)
  assert 'Linear evaluation on g(h): test top-1 (%), mean ± std over seeds, 100 test images' in (
      lines)


def test_the_report_compares_a_new_protocol_with_its_random_init_arm(monkeypatch, tmp_path):
  monkeypatch.setitem(protocols.PROTOCOLS, 'probe_g', PROBE_G)
  config = get_default_config()
  rows = _rows(['probe_g'], np.random.default_rng(1))
  study_report.write_markdown(tmp_path / 'report.md', config, ['supervised', 'simclr'], rows)
  report = (tmp_path / 'report.md').read_text()
  assert 'Probe on g(h) against random features: top-1, difference in points, at 95%' in report
  assert '| against random g(h) features | 10% labels |' in report
  assert '| simclr probe on g(h) | better (' in report
  assert '## Linear evaluation on g(h): balanced_accuracy' in report
