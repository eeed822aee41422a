r"""The label-fraction study on CRIC Cervix single-cell crops, sized for a CPU.

  python -m simclr_jax.sweep --config=configs/study_cric.py --workdir=workdirs/study_cric

2,121 crops (100x100), 6 imbalanced Bethesda classes (SCC has 43), split 70/15/15
stratified and recorded in WORKDIR/split.json. Because of the imbalance: class-weighted
losses, model and L2 choice by validation balanced accuracy, and the 5 abnormal classes
grouped as positive for ROC AUC / sensitivity / specificity. A small ResNet-18 (width
0.25) at 32 px, fine-tuned from the head's first layer (SimCLRv2), so that the whole study
(5 label fractions x 2 seeds) runs on a 2-core CPU in about 25 minutes; on a GPU use
configs/cytology.py's model and image size with the same study keys. Add
--config.study.starting_points=supervised,simclr,imagenet,imagenet_simclr
--config.study.imagenet_weights=resnet18.pth (or .h5) to compare ImageNet starts.
"""

from simclr_jax.default_config import get_default_config


def get_config(arg=None):
  del arg
  c = get_default_config()
  c.data.name = 'folder'
  c.data.path = '../shared/datasets/cric_cervix'
  c.data.image_size = 32
  c.augment.preset = 'cytology'
  c.augment.crop_area_min = 0.2  # smaller crops often miss the nucleus
  c.model.name = 'resnet18'
  c.model.width = 0.25  # 128 features: width 0.125's 64 left even linear eval near chance
  c.model.head_layers = 2
  c.model.head_dim = 64
  # A short CPU run at a small batch: AdamW, as in configs/demo.py (LARS pays off only in
  # long large-batch runs such as configs/cytology.py's).
  c.batch_size = 64
  c.num_epochs = 20
  c.loss.temperature = 0.3
  c.optim.name = 'adamw'
  c.optim.base_lr = 3e-3
  c.optim.lr_scaling = 'none'
  c.optim.weight_decay = 1e-4
  c.optim.warmup_epochs = 1.0
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.eval_batch_size = 256
  c.class_weighting = True
  c.finetune_from = 'head1'  # SimCLRv2's choice for few labels
  c.finetune.batch_size = 32
  c.finetune.num_epochs = 12
  c.finetune.min_steps = 150
  c.finetune.eval_every_epochs = 2
  c.finetune.select_metric = 'balanced_accuracy'
  c.finetune.optim.base_lr = 0.4
  c.linear.select_metric = 'balanced_accuracy'
  c.positive_classes = 'ASC-H,ASC-US,HSIL,LSIL,SCC'
  c.study.starting_points = 'supervised,simclr'
  c.study.label_fractions = '0.1,0.2,0.3,0.4,0.5'
  c.study.seeds = 2
  return c
