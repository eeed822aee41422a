r"""The label-fraction study on the built-in synthetic cells, sized for a 2-core CPU.

  python -m simclr_jax.sweep --config=configs/study_demo.py --workdir=workdirs/study_demo

Starting points 'supervised' (random init: random-feature linear eval and the supervised
control) and 'simclr' (SimCLR pretraining on the training split); linear evaluation and
fine-tuning at 10–50% of the labels, 2 seeds. A small ResNet-18 (width 0.25) at 32 px:
pretraining is a few minutes, each fine-tuning run seconds. Fine-tuning uses a larger
learning rate than SimCLR's ImageNet recipe (0.4 * batch / 256) because its runs are
only a few hundred steps.
"""

from simclr_jax.default_config import get_default_config


def get_config(arg=None):
  del arg
  c = get_default_config()
  c.data.name = 'synthetic_cells'
  c.data.num_synthetic = 1200
  c.data.synthetic_size = 40
  c.data.image_size = 32
  c.augment.preset = 'cytology'
  c.augment.blur_prob = 0.0
  c.augment.crop_area_min = 0.35
  c.augment.jitter_strength = 0.4
  c.model.name = 'resnet18'
  c.model.width = 0.25
  c.model.head_layers = 2
  c.model.head_dim = 64
  # Pretraining as configs/demo.py: a short, small-batch run, where AdamW learns far faster
  # per step than LARS.
  c.batch_size = 64
  c.num_epochs = 15
  c.loss.temperature = 0.3
  c.optim.name = 'adamw'
  c.optim.base_lr = 3e-3
  c.optim.lr_scaling = 'none'
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 1.0
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
