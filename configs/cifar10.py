r"""CIFAR-10: the SimCLR authors' recipe (ResNet-18 with the small stem, batch 512, LARS).

  python -m simclr_jax.pretrain --config=configs/cifar10.py --workdir=gs://BUCKET/cifar10 \
      --config.data.tfds_data_dir=~/tensorflow_datasets
  # runlocal: a few steps of a narrow model to check the setup
  python -m simclr_jax.pretrain --config=configs/cifar10.py:runlocal --workdir=/tmp/cifar10
"""

from simclr_jax.config.defaults import get_default_config


def get_config(arg=None):
  c = get_default_config()
  c.data.name = 'cifar10'
  c.data.image_size = 32
  c.augment.preset = 'cifar'
  c.model.name = 'resnet18'
  c.model.small_stem = 'yes'
  c.batch_size = 512
  c.num_epochs = 1000
  c.loss.temperature = 0.5
  c.optim.name = 'lars'
  c.optim.base_lr = 1.0
  c.optim.lr_scaling = 'linear'
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 10.0
  c.compute_dtype = 'bfloat16'
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 100
  if arg == 'runlocal':
    c.model.width = 0.25
    c.batch_size = 64
    c.num_steps = 20
    c.compute_dtype = 'float32'
    c.log_every_steps = 5
  return c
