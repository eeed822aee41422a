"""Throughput measurements behind python -m simclr_jax.bench: the training step, the
input pipeline, and prediction."""
