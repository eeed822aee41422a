"""The augmentation ops, one module each: its declaration (an AugmentOp: findings name,
config keys, random draws, what switches it off and on) beside its host (tf.data) and
device (JAX) functions. The whole pipelines, which fuse the ops (one colour matrix per
view), are data/augment.py (host) and data/device_augment.py (device).

Importing this package needs no TensorFlow: the host functions import it when they run.
"""

from simclr_jax.data.augment_ops import blur, crop, flip, grayscale, jitter, rotate, stain
from simclr_jax.data.augment_ops.op import AugmentOp

# Every op, by findings name. In this order the device splits each view's key into the
# ops' draws (DRAWS, device_augment._DRAWS). jax.random.split's i-th key does not depend on
# how many are split (threefry_partitionable, JAX's default), so a new op at the end leaves
# every other op's random numbers as they were; reordering changes them.
OPS = {op.name: op for op in (crop.OP, flip.OP, rotate.OP, jitter.OP, grayscale.OP,
                               stain.OP, blur.OP)}
# Findings names that stand for several ops at once.
COMPOUNDS = {'color': ('jitter', 'grayscale')}
FINDINGS_NAMES = (*OPS, *COMPOUNDS)
DRAWS = tuple(draw for op in OPS.values() for draw in op.draws)


def named(name: str) -> tuple[AugmentOp, ...]:
  """The ops a findings name stands for (KeyError for a name not in FINDINGS_NAMES)."""
  return tuple(OPS[member] for member in COMPOUNDS.get(name, (name,)))
