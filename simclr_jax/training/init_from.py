"""`config.init_from`: where an encoder starts from, for pretraining, linear_eval and finetune.

Two kinds of starting point:
- a pretraining workdir or orbax checkpoint of this project: the encoder (and, when the
  shapes match, the projection head) are restored, and the model settings are taken from
  the checkpoint's own config so the architecture always matches;
- an ImageNet weights file (Keras .h5, torchvision .pth/.safetensors, SimCLR TF2): the
  settings the file needs (architecture, stride placement, input normalisation, BN
  epsilon) are applied to the config, with a log line for each change.
"""

import json
import logging

import jax
import ml_collections
from flax import nnx

from simclr_jax.errors import UserError
from simclr_jax.models import pretrained
from simclr_jax.training import checkpoint

# Model keys that must match the checkpoint the encoder comes from.
_ENCODER_KEYS = ('name', 'width', 'small_stem', 'stride_on', 'input_norm', 'bn_epsilon',
                 'head_layers', 'head_dim', 'head_hidden')


def kind(path: str) -> str:
  """'none', 'weights_file' or 'checkpoint'."""
  if not path:
    return 'none'
  if pretrained.is_weights_file(path):
    return 'weights_file'
  checkpoint.find_checkpoint(path)  # raises a clear error when there is nothing to load
  return 'checkpoint'


def pretrain_config_of(path: str, meta: dict | None = None) -> ml_collections.ConfigDict:
  """The config a pretraining checkpoint was made with (from its meta, read if not given)."""
  meta = checkpoint.read_meta(path) if meta is None else meta
  if 'config' not in meta:
    raise UserError(f'config.init_from: the checkpoint at {path} has no recorded config')
  return ml_collections.ConfigDict(json.loads(meta['config']))


def adopt_model_settings(config: ml_collections.ConfigDict) -> None:
  """Makes config.model agree with what config.init_from holds (in place)."""
  source = kind(config.init_from)
  if source == 'none':
    return
  if source == 'weights_file':
    wanted = pretrained.expected_settings(config.init_from)
  else:
    source_config = pretrain_config_of(config.init_from)
    _check_channels(config, source_config)
    model = source_config.model
    wanted = {k: model[k] for k in _ENCODER_KEYS if k in model}
  with config.unlocked():
    for key, value in wanted.items():
      if key in config.model and config.model[key] != value:
        logging.info('config.model.%s: %r -> %r, as %s requires', key, config.model[key],
                     value, config.init_from)
        config.model[key] = type(config.model[key])(value)


def _check_channels(config, source_config) -> None:
  """A checkpoint's stem takes the channels it was pretrained on: the data must have them."""
  theirs = source_config.get('data', {}).get('channels', 3)
  if theirs != config.data.channels:
    raise UserError(f'config.init_from={config.init_from!r} was pretrained on {theirs}-channel '
                    f'images but config.data.channels={config.data.channels}; set '
                    f'--config.data.channels={theirs}')


def load_into(model: nnx.Module, config) -> None:
  """Loads config.init_from into `model` (a SimCLRModel or a bare encoder) in place."""
  source = kind(config.init_from)
  encoder = getattr(model, 'encoder', model)
  if source == 'weights_file':
    pretrained.load_encoder_weights(config.init_from, encoder)
  elif source == 'checkpoint':
    _load_checkpoint(model, config.init_from)
  if source != 'none':
    logging.info('initialised the encoder from %s', config.init_from)


def _load_checkpoint(model: nnx.Module, path: str) -> None:
  """Restores the encoder (and the head when `model` has one) from a checkpoint."""
  from simclr_jax.models import heads  # pylint: disable=g-import-not-at-top
  meta = checkpoint.read_meta(path)
  source_config = pretrain_config_of(path, meta)
  num_classes = int(meta.get('probe_classes', 0))
  abstract = nnx.eval_shape(lambda: heads.build_simclr_model(source_config, num_classes,
                                                             nnx.Rngs(0)))
  _, params, stats = nnx.split(abstract, nnx.Param, nnx.BatchStat)
  params, stats, _ = checkpoint.restore_model_variables(path, nnx.as_pure(params),
                                                        nnx.as_pure(stats))
  source = nnx.merge(nnx.graphdef(abstract), params, stats)
  nnx.update(getattr(model, 'encoder', model), jax.device_get(nnx.state(source.encoder)))
  if getattr(model, 'head', None) is not None:
    nnx.update(model.head, jax.device_get(nnx.state(source.head)))
