"""`simclr_jax.losses.nt_xent(z, temperature)`, the name other people's scripts use; the
losses live in training/losses.py."""

from simclr_jax.training.losses import nt_xent  # pylint: disable=unused-import  # noqa: F401
