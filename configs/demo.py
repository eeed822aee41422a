r"""Demo: SimCLR on the built-in synthetic cells, sized to finish in minutes on a 2-core CPU.

  python -m simclr_jax.pretrain --config=configs/demo.py --workdir=workdirs/demo
"""

from simclr_jax.config.defaults import get_default_config


def get_config(arg=None):
  del arg
  c = get_default_config()
  c.data.name = 'synthetic_cells'
  c.data.num_synthetic = 2000
  c.data.synthetic_size = 40
  c.data.image_size = 32
  c.augment.preset = 'cytology'
  c.augment.blur_prob = 0.0
  c.model.name = 'resnet18'
  c.model.width = 0.25  # 16 channels in the first stage: a CPU-sized ResNet-18
  c.model.head_layers = 2
  c.model.head_dim = 64
  # A short run at a small batch: AdamW moves the weights far faster per step than LARS,
  # whose trust ratio (1e-3 of the weight norm per step) pays off only over long, large-batch
  # runs. Milder crops and jitter keep the nucleus in most views of these 32 px cells.
  c.batch_size = 64
  c.num_epochs = 10
  c.augment.crop_area_min = 0.35
  c.augment.jitter_strength = 0.4
  c.loss.temperature = 0.3
  c.optim.name = 'adamw'
  c.optim.base_lr = 3e-3
  c.optim.lr_scaling = 'none'
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 1.0
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
