"""The networks evaluation trains and reads: a frozen encoder for features, and the
fine-tuning classifier (encoder [+ the head's first layer] + a linear layer).

Weights come from config.init_from (a pretraining checkpoint or an ImageNet weights file,
via simclr_jax.training.init_from) unless config.supervised_control asks for a random start.
"""

import logging

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from simclr_jax.errors import UserError
from simclr_jax.models import heads
from simclr_jax.training import init_from, state as train_state

FINETUNE_FROM = ('encoder', 'head1')


def check_starting_point(config, what: str) -> None:
  """Clear errors for a missing or contradictory starting point; adopts its model keys."""
  if config.supervised_control:
    if config.init_from:
      raise UserError(f'{what}: config.supervised_control=True trains from random init, '
                      f'but config.init_from={config.init_from!r} is set; unset one of them')
  elif not config.init_from:
    raise UserError(f'{what}: config.init_from is missing: give a pretraining workdir, '
                    'checkpoint or weights file (or set config.supervised_control=True)')
  if config.finetune_from not in FINETUNE_FROM:
    raise UserError(f'config.finetune_from must be one of {FINETUNE_FROM}, '
                    f'got {config.finetune_from!r}')
  init_from.adopt_model_settings(config)
  if config.finetune_from == 'head1':
    if init_from.kind(config.init_from) == 'weights_file':
      raise UserError("config.finetune_from='head1' needs a SimCLR checkpoint with a "
                      f'projection head; {config.init_from} is a weights file')
    if config.model.head_layers < 2:
      raise UserError("config.finetune_from='head1' needs a head with a hidden layer "
                      f'(config.model.head_layers >= 2), got {config.model.head_layers}')


class _EncoderAndHead(nnx.Module):
  """What a pretraining checkpoint holds, minus the probe: for loading the head's layers."""

  def __init__(self, encoder, head):
    self.encoder = encoder
    self.head = head


def build_encoder_and_head(config, rngs) -> _EncoderAndHead:
  encoder = heads.build_encoder(config, rngs)
  return _EncoderAndHead(encoder, build_projection_head(config, encoder.num_features, rngs))


def check_head_features(config) -> None:
  """config.linear.features='g' reads the projection head, which only a SimCLR checkpoint
  with a head has."""
  if config.linear.features != 'g':
    return
  if config.supervised_control or init_from.kind(config.init_from) != 'checkpoint':
    raise UserError("config.linear.features='g' needs config.init_from to be a SimCLR "
                    f'pretraining (workdir or checkpoint), got {config.init_from!r}')
  if config.model.head_layers < 1:
    raise UserError("config.linear.features='g' needs a projection head "
                    f'(config.model.head_layers >= 1), got {config.model.head_layers}')


def build_projection_head(config, num_features: int, rngs) -> heads.ProjectionHead:
  m = config.model
  return heads.ProjectionHead(num_features, num_layers=m.head_layers,
                              hidden=m.head_hidden or num_features, out=m.head_dim,
                              dtype=heads.compute_dtype(config), bn_momentum=m.bn_momentum,
                              bn_epsilon=m.bn_epsilon, rngs=rngs)


class FineTuneModel(nnx.Module):
  """encoder -> [head1: Dense-BN-ReLU] -> linear classifier -> logits."""

  def __init__(self, config, num_classes: int, rngs: nnx.Rngs):
    self.encoder = heads.build_encoder(config, rngs)
    features = self.encoder.num_features
    use_head1 = config.finetune_from == 'head1'
    # Assigned once: NNX fixes an attribute as data or static on its first assignment.
    self.head1 = build_projection_head(config, features, rngs).hidden[0] if use_head1 else None
    if use_head1:
      features = config.model.head_hidden or features
    # N(0, 0.01) as in SimCLR's supervised head: near-zero logits at the start, so the
    # first steps' gradients do not scramble the pretrained features.
    self.classifier = nnx.Linear(features, num_classes,
                                 kernel_init=nnx.initializers.normal(0.01), rngs=rngs)

  def features(self, x, train: bool):
    """What the classifier reads: h, or head1(h)."""
    h = self.encoder(x, train)
    return h if self.head1 is None else self.head1(h, train)

  def __call__(self, x, train: bool):
    return self.classifier(self.features(x, train)).astype(jnp.float32)


class LinearProbeModel(nnx.Module):
  """Linear evaluation's classifier as one network: encoder [-> projection head, when the
  probe read g(h)] -> a linear layer on the raw (unstandardised) features."""

  def __init__(self, config, num_classes: int, rngs: nnx.Rngs):
    self.encoder = heads.build_encoder(config, rngs)
    self.head = (build_projection_head(config, self.encoder.num_features, rngs)
                 if config.linear.features == 'g' else None)
    features = self.head.out_features if self.head is not None else self.encoder.num_features
    self.classifier = nnx.Linear(features, num_classes, rngs=rngs)

  def features(self, x, train: bool):
    h = self.encoder(x, train)
    return h if self.head is None else self.head(h, train)

  def __call__(self, x, train: bool):
    return self.classifier(self.features(x, train)).astype(jnp.float32)


def load_pretrained(config):
  """-> prepare_params for train_state.create_train_state: loads init_from into the
  encoder (and head1) of a FineTuneModel or a bare encoder; None for a random start."""
  if config.supervised_control or not config.init_from:
    return None

  def prepare(graphdef, params, stats):
    model = nnx.merge(graphdef, jax.device_get(params), jax.device_get(stats))
    encoder = getattr(model, 'encoder', model)
    head1 = getattr(model, 'head1', None)
    if head1 is not None:
      holder = _EncoderAndHead(encoder, build_projection_head(config, encoder.num_features,
                                                              nnx.Rngs(0)))
      init_from.load_into(holder, config)
      nnx.update(head1, nnx.state(holder.head.hidden[0]))
    else:  # a model with a projection head (linear evaluation of g(h)) loads it too
      init_from.load_into(model if hasattr(model, 'head') else encoder, config)
    logging.info('fine-tuning from %s (%s)', config.init_from, config.finetune_from)
    _, params, stats = train_state.split_model(model)
    return params, stats

  return prepare


def encoder_variables(config, mesh):
  """(graphdef, params, batch_stats) of the encoder config.init_from describes (with its
  projection head when config.linear.features is 'g')."""
  build = build_encoder_and_head if config.linear.features == 'g' else heads.build_encoder
  graphdef, state, _ = train_state.create_train_state(
      lambda rngs: build(config, rngs), optax.identity(), mesh, config.seed,
      prepare_params=load_pretrained(config))
  return graphdef, state.params, state.batch_stats
