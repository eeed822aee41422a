r"""The paper's findings on CIFAR-10, sized for one GPU (an H100/H200 class card: each
200-epoch pretraining of ResNet-18 at batch 512 takes roughly 15-20 minutes with the
augmentation on the device, so the whole grid, about 30 pretrainings per seed, is a
day-scale job; run a finding at a time).

  python -m simclr_jax.findings --config=configs/findings_cifar10.py --workdir=W \
      --config.data.tfds_data_dir=~/tensorflow_datasets --config.findings.run=heads

configs/cifar10.py's recipe (the authors': ResNet-18 with the small stem, LARS at 1.0 with
linear scaling, NT-Xent at 0.5, bfloat16) for 200 epochs instead of 1000. Linear
evaluation as everywhere: logistic regression on frozen features, L2 picked on a
validation split carved from the training set. Grids after the paper's: crop, colour
distortion, blur and rotation singly and in pairs; heads of 0-3 layers; batch 256, 1024
and 4096 at 100 and 200 epochs; the three losses at 2 temperatures or margins; NT-Xent
at 0.1, 0.5 and 1.0 with and without l2 normalisation; 3 seeds.
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
  c = _config_file('cifar10.py')
  c.num_epochs = 200
  c.eval_at_end = False
  c.eval_batch_size = 1000
  c.findings.seeds = 3
  c.findings.augmentations = 'crop,color,blur,rotate'
  c.findings.head_layers = '0,1,2,3'
  c.findings.batch_sizes = '256,1024,4096'
  c.findings.epochs = '100,200'
  c.findings.losses = 'nt_xent,nt_logistic,margin_triplet'
  c.findings.loss_temperatures = '0.1,0.5'
  c.findings.margins = '0.2,0.5'
  c.findings.temperatures = '0.1,0.5,1.0'
  return c
