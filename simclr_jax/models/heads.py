"""The projection head g, the online linear probe, and the SimCLR model that holds f, g and
the probe together."""

import jax
import jax.numpy as jnp
from flax import nnx

from simclr_jax.errors import UserError
from simclr_jax.models import resnet


class ProjectionHead(nnx.Module):
  """g: `num_layers` Dense layers, Dense -> BN -> ReLU between them (SimCLRv1 uses 2, v2 3).

  0 layers is the identity (z = h); 1 is a linear map."""

  def __init__(self, in_features: int, *, num_layers: int, hidden: int, out: int,
               dtype=jnp.float32, bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
               rngs: nnx.Rngs):
    if num_layers < 0:
      raise UserError(f'config.model.head_layers must be >= 0, got {num_layers}')
    hidden_layers = []
    cin = in_features
    for _ in range(max(num_layers - 1, 0)):
      hidden_layers.append(_HiddenLayer(cin, hidden, dtype, bn_momentum, bn_epsilon, rngs))
      cin = hidden
    self.hidden = nnx.List(hidden_layers)
    self.out = nnx.Linear(cin, out, dtype=dtype, rngs=rngs) if num_layers > 0 else None
    self.out_features = out if num_layers > 0 else in_features

  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    x = h
    for layer in self.hidden:
      x = layer(x, train)
    if self.out is not None:
      x = self.out(x)
    return x.astype(jnp.float32)


class _HiddenLayer(nnx.Module):

  def __init__(self, cin, cout, dtype, bn_momentum, bn_epsilon, rngs):
    self.dense = nnx.Linear(cin, cout, use_bias=False, dtype=dtype, rngs=rngs)
    self.bn = nnx.BatchNorm(cout, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype,
                            rngs=rngs)

  def __call__(self, x, train: bool):
    return nnx.relu(self.bn(self.dense(x), use_running_average=not train))


class SimCLRModel(nnx.Module):
  """f (encoder), g (head) and an optional linear probe on stop-gradient h."""

  def __init__(self, encoder: resnet.ResNet, head: ProjectionHead, num_classes: int,
               *, rngs: nnx.Rngs):
    self.encoder = encoder
    self.head = head
    self.probe = (nnx.Linear(encoder.num_features, num_classes, rngs=rngs)
                  if num_classes > 0 else None)

  def __call__(self, x: jax.Array, train: bool):
    """Returns (h, z, probe logits or None); the probe never sends gradient into f."""
    h = self.encoder(x, train)
    z = self.head(h, train)
    logits = self.probe(jax.lax.stop_gradient(h)) if self.probe is not None else None
    return h, z, logits


def compute_dtype(config) -> jnp.dtype:
  name = config.compute_dtype
  if name not in ('float32', 'bfloat16'):
    raise UserError(f"config.compute_dtype must be 'float32' or 'bfloat16', got {name!r}")
  return jnp.dtype(name)


def build_encoder(config, rngs: nnx.Rngs) -> resnet.ResNet:
  m = config.model
  return resnet.build_resnet(
      m.name, width=m.width, in_channels=config.data.get('channels', 3),
      small_stem=resnet.uses_small_stem(m.small_stem, config.data.image_size),
      zero_init_residual=m.zero_init_residual, stride_on=m.stride_on,
      input_norm=m.input_norm, dtype=compute_dtype(config), bn_momentum=m.bn_momentum,
      bn_epsilon=m.bn_epsilon, rngs=rngs)


def build_simclr_model(config, num_classes: int, rngs: nnx.Rngs) -> SimCLRModel:
  encoder = build_encoder(config, rngs)
  m = config.model
  head = ProjectionHead(encoder.num_features, num_layers=m.head_layers,
                        hidden=m.head_hidden or encoder.num_features, out=m.head_dim,
                        dtype=compute_dtype(config), bn_momentum=m.bn_momentum,
                        bn_epsilon=m.bn_epsilon, rngs=rngs)
  return SimCLRModel(encoder, head, num_classes if config.probe else 0, rngs=rngs)
