r"""The label-fraction study on the built-in synthetic cells, sized for a 2-core CPU.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Starting points 'supervised' (random init: random-feature linear eval and the supervised
control) and 'simclr' (SimCLR pretraining on the training split); linear evaluation and
fine-tuning at 10 and 50% of the labels, 4 seeds, each seed with its own pretraining.

Sized so that its verdicts do not flip from one machine to the next: floating-point drift
between processors acts like another seed, so the comparisons pair 4 seeds with the
pretraining seed included, on 4005 test cells (synthetic cells cost nothing to score).
Paid for with fractions (the study's default has 10, 20, 30, 40 and 50%) and a shorter
pretraining: configs/demo.py's recipe (ResNet-18 at width 0.25, AdamW, batch 64) at 24 px
for 20 epochs, 4 times. Fine-tuning starts from the projection head's first layer, as
SimCLRv2 recommends for few labels (the supervised control trains the same network from
random init): 12 epochs of 16-image batches, at least 150 steps.

Its headline (study.headline) is SimCLR's frozen features against random ones at 10 %: a
gain of 7-9 points whose interval's lower end stayed at +2 to +5 points on every setting
measured (processors and XLA flags), where fine-tuning's gain at 10 % sits within its noise and its verdict flipped
from one processor to another (README, Quick start); report.md has both verdicts.
"""

import importlib.util
import os


def _demo_config():
  """configs/demo.py's config: the study pretrains with the demo's recipe."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'demo.py')
  spec = importlib.util.spec_from_file_location('demo_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(arg=None):
  del arg
  c = _demo_config()
  # 832 training (83 labels at 10%), 364 validation and 4004 test cells: the test split is
  # large because scoring costs a forward pass, and 4000 images make the test-set part of a
  # comparison's interval about 1 point (180 images made it 6).
  c.data.num_synthetic = 5200
  c.data.split = (0.16, 0.07, 0.77)
  c.data.image_size = 24  # from 40 px cells: half the cost of 32 px per image
  c.num_epochs = 20
  c.eval_at_end = False  # the study's linear evaluation does this check
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.eval_batch_size = 500
  c.finetune_from = 'head1'
  c.finetune.batch_size = 16
  c.finetune.num_epochs = 12
  c.finetune.min_steps = 150  # 83 labelled images: 29 epochs
  c.finetune.eval_every_epochs = 5
  c.finetune.optim.base_lr = 0.4  # SGD at 0.4 * 16 / 256 = 0.025, cosine decay
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.1,0.5'
  c.study.seeds = 4
  c.study.pretrain_per_seed = True  # seed s: pretraining s, label subset s, fine-tuning s
  c.study.headline = 'linear'  # frozen SimCLR features against random ones, at 10 %
  c.positive_classes = 'koilocytotic,dyskeratotic'  # the "abnormal" synthetic classes
  return c
