r"""The paper's findings on single-cell cytology crops (CRIC Cervix by default), sized for a
2-core CPU: all five findings are 50 pretrainings and 62 linear evaluations over 2 seeds,
29 min 41 s end to end in one start on a quiet 2-core machine.

  python -m simclr_jax.findings --config=configs/findings_cric.py --workdir=workdirs/findings_cric
  # another folder of cell crops, or a few findings only:
  python -m simclr_jax.findings --config=configs/findings_cric.py --workdir=W \
      --config.data.path=PATH --config.findings.run=heads,augmentations

configs/study_cric.py's recipe (64 px with the ImageNet stem, near-blank crops left out,
nucleus-scale crops, mild colour jitter, AdamW at batch 64, NT-Xent at 0.3), pretrained for
6 epochs instead of 60 so that a grid fits: each variant costs about a tenth of the study's
one pretraining. Linear evaluation picks its L2 and reports by balanced accuracy (the
classes are imbalanced). Grids: crop, colour jitter, rotation and stain jitter singly and
in pairs; heads of 0-2 layers; batch 32 and 64 at 3 and 6 epochs; the three losses at 2
temperatures or margins; NT-Xent at 0.1, 0.3 and 1.0 with and without l2 normalisation; 2
seeds.

On a GPU, the same keys on configs/findings_cifar10.py run the findings on CIFAR-10.
"""

import importlib.util
import os


def _config_file(name):
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
  spec = importlib.util.spec_from_file_location(name[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config(arg=None):
  del arg
  c = _config_file('study_cric.py')
  c.num_epochs = 6
  c.optim.warmup_epochs = 0.5
  c.health_monitor = False
  c.checkpoint_every_steps = 10_000  # one checkpoint, at the end
  c.keep_checkpoints = 1
  c.findings.seeds = 2
  c.findings.augmentations = 'crop,jitter,rotate,stain'
  c.findings.head_layers = '0,1,2'
  c.findings.batch_sizes = '32,64'
  c.findings.epochs = '3,6'
  c.findings.losses = 'nt_xent,nt_logistic,margin_triplet'
  c.findings.loss_temperatures = '0.1,0.3'
  c.findings.margins = '0.2,0.5'
  c.findings.temperatures = '0.1,0.3,1.0'
  return c
