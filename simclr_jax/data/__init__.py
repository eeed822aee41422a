"""The tf.data input pipeline: sources, augmentations and the iterators the trainers use."""
