"""Random grayscale (findings name `grayscale`; `color` is jitter + grayscale): a view
becomes its ITU-R 601 luma in all three channels with probability grayscale_prob. An RGB
op: images that are not RGB skip it. It is a 3x3 matrix, which the pipelines fuse with the
colour jitter's (jitter.py) into one matrix per view.
"""

import jax.numpy as jnp
import numpy as np

from simclr_jax.data.augment_ops.common import (device_affine, device_uniform,
                                                host_affine, host_bernoulli, host_eye, tf)
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='grayscale',
    keys=('grayscale_prob',),
    draws={'grey': 17},
    off={'grayscale_prob': 0.0},
    strengths={'grayscale_prob': 0.2})

# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale.
LUMA = (0.2989, 0.5870, 0.1140)
GREY = np.array([LUMA] * 3, np.float32)  # the 3x3 matrix that makes each channel the luma


def host_grey(batch):
  """GREY for each of `batch` images: [B, 3, 3]."""
  return tf.tile(tf.constant([[LUMA] * 3]), [batch, 1, 1])


def host_grayscale_matrix(seed, batch, prob: float):
  """Homogeneous [B, 4, 4]: luma grey (three equal channels) with probability `prob`."""
  apply = host_bernoulli(seed, OP.draws['grey'], batch, prob)[:, None, None]
  linear = tf.where(apply, host_grey(batch), host_eye(batch))
  return host_affine(linear, tf.zeros([batch, 3]))


def device_grayscale_matrix(keys, prob: float):
  """One view's homogeneous 4x4: GREY with probability `prob`, else the identity."""
  linear = jnp.where(device_uniform(keys['grey']) < prob, GREY, jnp.eye(3))
  return device_affine(linear, jnp.zeros(3))
