"""SimCLR self-supervised learning as a distributed large-batch training system in JAX."""
