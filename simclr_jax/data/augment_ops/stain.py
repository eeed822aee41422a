"""Stain jitter (findings name `stain`): haematoxylin-eosin-DAB jitter (Tellez et al.
2018). In optical density, each stain's concentration becomes c * U(1 - s, 1 + s) +
U(-s, s), s = stain_jitter. An RGB op, and not affine in RGB: the pipelines apply it before
the fused colour matrix.
"""

import jax.numpy as jnp
import numpy as np

from simclr_jax.data.augment_ops.common import (PRECISION, device_uniform, host_uniform,
                                                tf)
from simclr_jax.data.augment_ops.op import AugmentOp

OP = AugmentOp(
    name='stain',
    keys=('stain_jitter',),
    draws={'alpha': 21, 'beta': 22},
    off={'stain_jitter': 0.0},
    strengths={'stain_jitter': 0.05})
_SALT = OP.draws

# Stain vectors (rows: haematoxylin, eosin, DAB) in optical density, as skimage.color.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


def host_stain_jitter(x, seed, strength: float = 0.05):
  """Stain jitter of a batch x [B, S, S, 3] in [0, 1] -> [0, 1]."""
  batch = tf.shape(x)[0]
  rgb_from_hed = tf.math.l2_normalize(tf.constant(RGB_FROM_HED), axis=1)
  hed_from_rgb = tf.linalg.inv(rgb_from_hed)
  alpha = host_uniform(seed, _SALT['alpha'], [batch, 3], 1 - strength, 1 + strength)
  beta = host_uniform(seed, _SALT['beta'], [batch, 3], -strength, strength)
  # Row vectors: od' = od @ hed_from_rgb @ diag(alpha) @ rgb_from_hed + beta @ rgb_from_hed
  linear = tf.einsum('ij,bj,jk->bik', hed_from_rgb, alpha, rgb_from_hed)
  bias = tf.einsum('bj,jk->bk', beta, rgb_from_hed)
  od = -tf.math.log((x * 255 + 1) / 256)
  od = tf.einsum('bhwc,bcd->bhwd', od, linear) + bias[:, None, None, :]
  return tf.clip_by_value((256 * tf.exp(-od) - 1) / 255, 0.0, 1.0)


_HED = np.asarray(RGB_FROM_HED, np.float64)
_RGB_FROM_HED_UNIT = _HED / np.linalg.norm(_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED_UNIT)


def device_stain_jitter(keys, x, strength: float):
  """Stain jitter of one view [S, S, 3] in [0, 1] -> [0, 1]."""
  alpha = device_uniform(keys['alpha'], (3,), 1 - strength, 1 + strength)
  beta = device_uniform(keys['beta'], (3,), -strength, strength)
  rgb_from_hed = jnp.asarray(_RGB_FROM_HED_UNIT, jnp.float32)
  linear = (jnp.asarray(_HED_FROM_RGB, jnp.float32) * alpha) @ rgb_from_hed
  od = -jnp.log((x * 255 + 1) / 256)
  od = jnp.einsum('hwc,cd->hwd', od, linear, precision=PRECISION) + beta @ rgb_from_hed
  return jnp.clip((256 * jnp.exp(-od) - 1) / 255, 0.0, 1.0)
