r"""The paper's findings on the built-in synthetic cells, sized for a 2-core CPU (all five
findings: 21 minutes on a quiet 2-core machine; README.md's Findings section has the
measurement).

  python -m simclr_jax.findings --config=configs/findings_demo.py --workdir=workdirs/findings_demo
  # one or two findings only:
  python -m simclr_jax.findings --config=configs/findings_demo.py --workdir=W \
      --config.findings.run=heads,augmentations

configs/study_demo.py's recipe (ResNet-18 at width 0.25, 24 px, AdamW, batch 64, NT-Xent at
0.3) for 8 epochs on 800 training cells, 2 seeds, each variant pretrained per seed and
linearly evaluated on 900 test cells. The grids: crop, colour distortion and rotation
singly and in pairs (6 pretrainings), heads of 0-3 layers, batch 32 and 128 at 4 and 8 epochs, the three
losses at 2 temperatures or margins each, NT-Xent at 3 temperatures with and without l2
normalisation; variants equal to the recipe itself are pretrained once.
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
  c = _config_file('study_demo.py')
  c.data.num_synthetic = 2000
  c.data.split = (0.4, 0.15, 0.45)  # 800 training, 300 validation, 900 test cells
  c.num_epochs = 8
  c.health_monitor = False  # the linear evaluation measures each encoder
  c.checkpoint_every_steps = 10_000  # one checkpoint, at the end
  c.keep_checkpoints = 1
  c.eval_batch_size = 300
  c.findings.seeds = 2
  c.findings.augmentations = 'crop,color,rotate'
  c.findings.head_layers = '0,1,2,3'
  c.findings.batch_sizes = '32,128'
  c.findings.epochs = '4,8'
  c.findings.losses = 'nt_xent,nt_logistic,margin_triplet'
  c.findings.loss_temperatures = '0.1,0.3'
  c.findings.margins = '0.2,0.5'
  c.findings.temperatures = '0.1,0.3,1.0'
  return c
