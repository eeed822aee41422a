"""Pretraining: the loop, the jitted step (with gradient caching and step blocks), the
state and its checkpoints, optimizer, losses, and the health and kNN checks on the way."""
