r"""The label-fraction study on the built-in synthetic cells, sized for a 2-core CPU.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Starting points 'supervised' (random init: random-feature linear eval and the supervised
control) and 'simclr' (SimCLR pretraining on the training split); linear evaluation and
fine-tuning at 10–50% of the labels, 2 seeds: about 30 minutes on a 2-core CPU. The
pretraining is configs/demo.py's (ResNet-18 at width 0.25, 32 px, a few minutes); each
fine-tuning run takes about a minute. Fine-tuning uses a larger learning rate than
SimCLR's ImageNet recipe (0.4 * batch / 256) because its runs are only a few hundred steps.
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
  c.data.num_synthetic = 1200
  c.num_epochs = 15
  c.log_every_steps = 25
  c.checkpoint_every_steps = 1000
  c.eval_batch_size = 200
  c.finetune.batch_size = 64
  c.finetune.num_epochs = 15
  c.finetune.min_steps = 100
  c.finetune.eval_every_epochs = 3
  c.finetune.optim.base_lr = 0.4
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.1,0.2,0.3,0.4,0.5'
  c.study.seeds = 2
  c.positive_classes = 'koilocytotic,dyskeratotic'  # the "abnormal" synthetic classes
  return c
