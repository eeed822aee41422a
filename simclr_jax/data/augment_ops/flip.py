"""Random flips (findings name `flip`): left-right (flip_lr) and up-down (flip_ud), each
of half the views. A flip reverses the crop window's axis (crop.py), so it costs nothing
beyond the crop.
"""

from simclr_jax.data.augment_ops.common import device_uniform, host_bernoulli, tf
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='flip',
    keys=('flip_lr', 'flip_ud'),
    draws={'flip_lr': 5, 'flip_ud': 6},
    off={'flip_lr': False, 'flip_ud': False},
    switch_on=lambda p: {'flip_lr': True, 'flip_ud': True})
_SALT = OP.draws


def host_flip_boxes(boxes, seed, flip_lr: bool, flip_ud: bool):
  """Flips half the crop boxes [B, 4] left-right and/or up-down (a box with x1 > x2 is
  mirrored by crop_and_resize)."""
  batch = tf.shape(boxes)[0]
  y1, x1, y2, x2 = tf.unstack(boxes, axis=1)
  if flip_lr:
    flip = host_bernoulli(seed, _SALT['flip_lr'], batch, 0.5)
    x1, x2 = tf.where(flip, x2, x1), tf.where(flip, x1, x2)
  if flip_ud:
    flip = host_bernoulli(seed, _SALT['flip_ud'], batch, 0.5)
    y1, y2 = tf.where(flip, y2, y1), tf.where(flip, y1, y2)
  return tf.stack([y1, x1, y2, x2], axis=1)


def device_flips(keys, flip_lr: bool, flip_ud: bool):
  """Whether one view flips left-right and up-down (traced booleans, for
  crop.interpolation_matrix)."""
  return ((device_uniform(keys['flip_lr']) < 0.5) & flip_lr,
          (device_uniform(keys['flip_ud']) < 0.5) & flip_ud)
