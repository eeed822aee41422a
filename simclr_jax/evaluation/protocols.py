"""The evaluation protocols, one dict: how a starting point is scored on the labels.

The study (experiments/study.py) runs every protocol of PROTOCOLS on every starting point
with a network, at each label fraction and seed; the ones without a network (the pixel
baseline) are starting points of their own. Its report (experiments/study_report.py) takes
each protocol's tables, names, headline and plot style from here, in this dict's order.
Adding a protocol is its module and one entry here (and, if it can be the report's
headline, its name in config/keys.py's HEADLINES).
"""

from types import ModuleType
from typing import Any, Callable, NamedTuple

from simclr_jax.evaluation import baseline, fine_tuning, linear


class Headline(NamedTuple):
  """How the report's first sentence reads when config.study.headline names the protocol:
  'At 10% of the labels, {arm} 72.7 ± 5.2% test top-1 against 67.2 ± 2.2% {reference}
  (...). {verdict}: better (...)'. The arm is SimCLR's, the reference the random init's."""
  arm: str
  reference: str
  verdict: str


class Protocol(NamedTuple):
  module: ModuleType  # where its run(config, workdir) -> metrics.json function lives
  function: str  # that function's name
  title: str  # its tables' title in the report
  words: str  # an arm's name in the report: 'simclr {words}'
  plot_style: str  # its line in label_fraction.png (a matplotlib format)
  # evaluates the encoder frozen: cheap, so the study runs it before the others and also on
  # 100% of the labels
  frozen: bool = False
  in_study: Callable[[Any], bool] = lambda config: True  # whether this config's study runs it
  # False: no network to evaluate, so it is a starting point of its own ('baseline')
  needs_network: bool = True
  # from random init (the 'supervised' starting point): the arm's name in the report, and
  # the title of the table comparing every other starting point against it
  random_init_name: str = ''
  against_random_init: str = ''
  headline: Headline | None = None

  @property
  def run(self) -> Callable[[Any, str], dict]:
    # looked up when the study runs, so that replacing the module's function (as the tests
    # do) replaces the protocol's
    return getattr(self.module, self.function)


PROTOCOLS = {
    'finetune': Protocol(
        module=fine_tuning, function='run_finetune',
        title='Fine-tuning (supervised control for "supervised")', words='fine-tuning',
        plot_style='-o', random_init_name='supervised control',
        against_random_init='Fine-tuning against the supervised-from-scratch control',
        headline=Headline('fine-tuning after SimCLR reaches',
                          'for the supervised-from-scratch control',
                          'SimCLR against the control')),
    'linear': Protocol(
        module=linear, function='run_linear_eval', title='Linear evaluation (frozen encoder)',
        words='linear evaluation', plot_style='--s', frozen=True,
        in_study=lambda config: config.study.linear_eval,
        random_init_name='random features (linear evaluation)',
        against_random_init='Linear evaluation against random features',
        headline=Headline("a linear classifier on SimCLR's frozen features reaches",
                          "on the untrained network's random features",
                          "SimCLR's features against random ones")),
    'baseline': Protocol(
        module=baseline, function='run_baseline', title='Baseline (no network)', words='baseline',
        plot_style=':^', frozen=True, needs_network=False),
}


def with_network() -> list[str]:
  """The protocols a starting point with a network runs, in the report's order."""
  return [name for name, p in PROTOCOLS.items() if p.needs_network]


def headlines() -> list[str]:
  """The protocols config.study.headline may name."""
  return [name for name, p in PROTOCOLS.items() if p.headline]
