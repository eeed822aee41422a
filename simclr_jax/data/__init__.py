"""The tf.data input pipeline: sources, augmentations and the iterators the trainers use."""

import os

# TensorFlow's C++ info and warning lines (oneDNN notices, grappler cost-model warnings
# about CropAndResize) say nothing a user can act on; errors still show.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
