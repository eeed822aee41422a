"""SimCLR self-supervised learning as a distributed large-batch training system in JAX."""

__version__ = '0.5.0'
