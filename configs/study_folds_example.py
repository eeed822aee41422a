r"""A 5-fold study on a small labelled folder, sized for a 2-core CPU (docs/folds.md).

  python -m simclr_jax.sweep --config=configs/study_folds_example.py \
      --workdir=workdirs/folds_example --config.data.path=PATH
  # the same images, one train/val/test split, for comparison:
  python -m simclr_jax.sweep --config=configs/study_folds_example.py \
      --workdir=workdirs/split_example --config.data.path=PATH --config.study.folds=0

PATH is a folder with one sub-folder per class (README's measured example: 100 CIFAR-10
training images per class, 1,000 in all, as a stand-in for a small medical set). Every
image is tested once, by the run whose fold did not train on it; pretraining per fold sees
only the images outside its test fold. A short recipe (ResNet-18 at width 0.125, 32 px,
8 pretraining epochs, fine-tuning at 10 and 50 % of the labels, 1 seed) that shows the
cost and the pooled design's power, not a good encoder. On 1,000 CIFAR-10 images it took
54 min on 2 cores shared with other jobs (docs/folds.md).
"""

from simclr_jax.config.defaults import get_default_config


def get_config(arg=None):
  del arg
  c = get_default_config()
  c.data.name = 'folder'
  c.data.path = ''  # --config.data.path=PATH
  c.data.image_size = 32
  c.model.name = 'resnet18'
  c.model.width = 0.125
  c.model.head_dim = 64
  c.batch_size = 64
  c.num_epochs = 8
  c.optim.name = 'adamw'
  c.optim.base_lr = 3e-3
  c.optim.lr_scaling = 'none'
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 1.0
  c.loss.temperature = 0.3
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.eval_at_end = False
  c.health_monitor = False  # its end-of-run check costs minutes on a busy 2-core CPU
  c.eval_batch_size = 250
  c.finetune.batch_size = 32
  c.finetune.num_epochs = 10
  c.finetune.min_steps = 40
  c.finetune.eval_every_epochs = 2
  c.finetune.optim.name = 'adamw'
  c.finetune.optim.base_lr = 1e-3
  c.finetune.optim.lr_scaling = 'none'
  c.finetune.optim.warmup_epochs = 1.0
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.1,0.5'
  c.study.seeds = 1
  c.study.linear_eval = False
  c.study.folds = 5
  return c
