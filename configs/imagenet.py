r"""ImageNet: ResNet-50, batch 4096, LARS base lr 0.3 (linear scaling), τ 0.1, 100 epochs.

  python -m simclr_jax.pretrain --config=configs/imagenet.py --workdir=gs://BUCKET/imagenet \
      --config.data.tfds_data_dir=gs://BUCKET/tensorflow_datasets
  # runlocal: a few steps of a narrow model at a small size, to check the setup
  python -m simclr_jax.pretrain --config=configs/imagenet.py:runlocal --workdir=/tmp/imagenet
"""

from simclr_jax.config.defaults import get_default_config


def get_config(arg=None):
  c = get_default_config()
  c.data.name = 'imagenet2012'
  c.data.image_size = 224
  c.augment.preset = 'imagenet'
  c.model.name = 'resnet50'
  c.model.head_layers = 2
  c.batch_size = 4096
  c.num_epochs = 100
  c.loss.temperature = 0.1
  c.optim.name = 'lars'
  c.optim.base_lr = 0.3
  c.optim.lr_scaling = 'linear'
  c.optim.weight_decay = 1e-6
  c.optim.warmup_epochs = 10.0
  c.compute_dtype = 'bfloat16'
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 100
  if arg == 'runlocal':
    c.model.width = 0.25
    c.data.image_size = 64
    c.model.small_stem = 'no'
    c.batch_size = 32
    c.num_steps = 10
    c.compute_dtype = 'float32'
    c.log_every_steps = 2
  return c
