r"""The label-fraction study on the built-in synthetic cells, sized for a 2-core CPU.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Starting points 'supervised' (random init: random-feature linear eval and the supervised
control) and 'simclr' (SimCLR pretraining on the training split); linear evaluation and
fine-tuning at 10, 30 and 50% of the labels (the study's default adds 20 and 40%), 2 seeds:
6–7 minutes on a 2-core CPU.

Pretraining is configs/demo.py's recipe (ResNet-18 at width 0.25, AdamW, batch 64) at
24 px for 30 epochs, under 3 minutes. Fine-tuning starts from the projection head's first
layer, as SimCLRv2 recommends for few labels (the supervised control trains the same
network from random init): 12 epochs of 16-image batches, at least 150 steps, 10 to 20
seconds a run.
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
  c.data.num_synthetic = 1200  # 840 training images: 85 labels at 10%
  c.data.image_size = 24  # from 40 px cells: half the cost of 32 px per image
  c.num_epochs = 30
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.eval_batch_size = 200
  c.finetune_from = 'head1'
  c.finetune.batch_size = 16
  c.finetune.num_epochs = 12
  c.finetune.min_steps = 150  # 85 labelled images: 28 epochs
  c.finetune.eval_every_epochs = 5
  c.finetune.optim.base_lr = 0.4  # SGD at 0.4 * 16 / 256 = 0.025, cosine decay
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.1,0.3,0.5'
  c.study.seeds = 2
  c.positive_classes = 'koilocytotic,dyskeratotic'  # the "abnormal" synthetic classes
  return c
