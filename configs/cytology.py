r"""Cytology: SimCLR on a folder of single-cell Pap-smear crops (one sub-folder per class).

  python -m simclr_jax.pretrain --config=configs/cytology.py --workdir=workdirs/cric \
      --config.data.path=../shared/datasets/cric_cervix

Why these settings: single-cell crops are small (about 100 px), so 96 px keeps the
chromatin detail at a cost a single GPU affords; ResNet-50 at batch 512 is the largest
batch one 80 GB GPU holds comfortably in bfloat16 at 96 px and SimCLR gains little past
it on datasets of tens of thousands of images; cells have no canonical orientation, so
vertical flips and 90° rotations are free invariances; stain varies between labs and
slides, so haematoxylin-eosin-DAB jitter replaces part of the hue jitter; blur is kept
mild because nuclear texture is what tells the classes apart. Start from ImageNet weights
with --config.init_from=resnet50.weights.h5 (see README).
"""

from simclr_jax.config.defaults import get_default_config


def get_config(arg=None):
  c = get_default_config()
  c.data.name = 'folder'
  c.data.path = ''
  c.data.image_size = 96
  c.augment.preset = 'cytology'
  c.augment.blur_prob = 0.2
  c.augment.blur_sigma_max = 1.0
  c.augment.crop_area_min = 0.2  # smaller crops often miss the nucleus entirely
  c.model.name = 'resnet50'
  c.model.small_stem = 'no'
  c.batch_size = 512
  c.num_epochs = 200
  c.loss.temperature = 0.2
  c.optim.name = 'lars'
  c.optim.base_lr = 0.3
  c.optim.weight_decay = 1e-6
  c.optim.warmup_epochs = 10.0
  c.compute_dtype = 'bfloat16'
  c.positive_classes = 'ASC-H,ASC-US,HSIL,LSIL,SCC'
  if arg == 'cpu':  # a size that trains on a laptop CPU in minutes
    c.model.name = 'resnet18'
    c.model.width = 0.25
    c.data.image_size = 48
    c.batch_size = 128
    c.num_epochs = 20
    c.compute_dtype = 'float32'
  return c
