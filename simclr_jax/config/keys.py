"""Every config key, declared once: its default, the rule its value must meet, one line of
documentation.

`default_config.get_default_config()` builds the ConfigDict from `KEYS`, `config_checks.check`
runs each key's rule, `data.augment_params` takes the augmentation parameters and presets
from here, and `python -m simclr_jax.config.keys > docs/config_keys.md` writes the key
reference. Adding a key is one line here.

The names of choices that other layers implement (architectures, losses, optimizers, the
report's headlines) are listed here too, so that this module imports nothing of the project
and every layer may import it; a test checks that each list matches its implementation.

Only the standard library: the config layer is the bottom of the package.
"""

import dataclasses
import math
import sys
from typing import Any, Callable

# Choices whose implementations live in other layers (tests/config/test_config_keys.py
# checks that each matches its implementation).
ARCHITECTURE_NAMES = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')
LOSS_NAMES = ('nt_xent', 'nt_logistic', 'margin_triplet')
OPTIMIZERS = ('lars', 'sgd', 'adamw')
LR_SCALINGS = ('linear', 'sqrt', 'none')
SELECT_METRICS = ('top1', 'balanced_accuracy')  # validation metrics that pick a model
HEADLINES = ('finetune', 'linear')  # the study report's first comparison
AUGMENT_PRESETS = ('cifar', 'imagenet', 'cytology')

INT_MAX = 2**31 - 1  # larger ints overflow in TensorFlow's and NumPy's int32 uses


# --- Rules: what a value must be, in words (for the error message and the reference) and as
# a test.


@dataclasses.dataclass(frozen=True)
class Rule:
  expected: str  # completes 'config.KEY=VALUE: expected ...'
  accepts: Callable[[Any], bool]

  def __call__(self, value) -> str | None:
    """None when the value is fine, else what was expected."""
    return None if self.accepts(value) else self.expected


def number(kind, low=None, high=None, low_open=False, high_open=False) -> Rule:
  """An int (kind=int, at most INT_MAX) or a float in [low, high], open ends when asked."""
  if kind is int and high is None:
    high = INT_MAX
  bounds = []
  if low is not None:
    bounds.append(f'{">" if low_open else ">="} {low}')
  if high is not None:
    bounds.append(f'{"<" if high_open else "<="} {high}')
  name = 'an integer' if kind is int else 'a number'

  def accepts(value):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
      return False
    return (math.isfinite(value)
            and (low is None or (value > low if low_open else value >= low))
            and (high is None or (value < high if high_open else value <= high)))

  return Rule(' '.join([name, ' and '.join(bounds)]).strip(), accepts)


def choice(*values) -> Rule:
  return Rule('one of ' + ', '.join(repr(v) for v in values), lambda value: value in values)


def _is_split(value) -> bool:
  try:
    fractions = [float(f) for f in value]
  except (TypeError, ValueError):
    return False
  return (len(fractions) == 3 and all(math.isfinite(f) and f >= 0 for f in fractions)
          and abs(sum(fractions) - 1) <= 1e-6)


BOOL = Rule('True or False', lambda value: isinstance(value, bool))
TEXT = Rule('a string', lambda value: isinstance(value, str))
# Comma-separated lists and names whose meaning depends on the data or the files are checked
# where they are used, with messages of the same form.
NONEMPTY_TEXT = Rule('a non-empty string',
                     lambda value: isinstance(value, str) and bool(value.strip()))
SPLIT = Rule('three non-negative train/val/test fractions summing to 1', _is_split)
NUM_FOLDS = Rule('an integer: 0 (one train/val/test split) or a number of folds >= 2',
                 lambda value: isinstance(value, int) and not isinstance(value, bool)
                 and (value == 0 or value >= 2))
POSITIVE_INT = number(int, 1)
COUNT = number(int, 0)
PROBABILITY = number(float, 0, 1)
POSITIVE = number(float, 0, low_open=True)
NON_NEGATIVE = number(float, 0)
FRACTION = number(float, 0, 1, low_open=True)  # in (0, 1]
IMAGE_SIDE = number(int, 8, 4096)
MOMENTUM = number(float, 0, 1, high_open=True)


# --- Keys and sections.


@dataclasses.dataclass(frozen=True)
class Unset:
  """A default of None with a type (ml_collections' placeholder): --config.KEY=VALUE parses
  VALUE as `type`, and None means "not set"."""
  type: type


@dataclasses.dataclass(frozen=True)
class Key:
  default: Any  # the value, or Unset(type)
  rule: Rule
  doc: str  # one line
  presets: dict | None = None  # {preset: value}: an augmentation key augment.preset fills

  def problem(self, value) -> str | None:
    """None when `value` is fine for this key, else what was expected."""
    if value is None and isinstance(self.default, Unset):
      return None
    return self.rule(value)


@dataclasses.dataclass(frozen=True)
class Section:
  doc: str
  keys: dict  # name -> Key or Section, in the order the config lists them


def preset_key(rule: Rule, doc: str, **presets) -> Key:
  """An augmentation key left None by default: augment.preset gives its value."""
  assert set(presets) == set(AUGMENT_PRESETS), presets
  return Key(Unset(type(presets['cifar'])), rule, doc, presets)


def _optimizer(name, base_lr, weight_decay, warmup_epochs) -> Section:
  return Section('The optimizer, with warm-up then cosine decay.', dict(
      name=Key(name, choice(*OPTIMIZERS), "'lars', 'sgd' or 'adamw'."),
      base_lr=Key(base_lr, POSITIVE, 'Learning rate before lr_scaling.'),
      lr_scaling=Key('linear', choice(*LR_SCALINGS),
                     "'linear' (base * batch / 256), 'sqrt' (base * sqrt(batch)) or 'none'."),
      weight_decay=Key(weight_decay, NON_NEGATIVE, 'Weight decay, not on biases and batch norm.'),
      momentum=Key(0.9, MOMENTUM, 'Momentum of lars and sgd.'),
      trust_coefficient=Key(0.001, POSITIVE, "LARS's trust coefficient."),
      warmup_epochs=Key(warmup_epochs, NON_NEGATIVE, 'Linear warm-up, in epochs.'),
      warmup_steps=Key(0, COUNT, '> 0 overrides warmup_epochs.'),
  ))


KEYS = dict(
    seed=Key(0, COUNT, 'Seed of the initialisation, augmentation and batch order.'),
    batch_size=Key(256, POSITIVE_INT, 'Global batch size, over all devices and processes.'),
    num_epochs=Key(100, COUNT, 'Pretraining epochs.'),
    num_steps=Key(0, COUNT, '> 0 overrides num_epochs.'),
    init_from=Key('', TEXT, 'A pretraining workdir, an orbax checkpoint, or an ImageNet '
                  'weights file (.h5 / .weights.h5 / .pth / .safetensors) to start from.'),
    compute_dtype=Key('float32', choice('float32', 'bfloat16'),
                      'The dtype of activations; parameters stay float32.'),
    data=Section('The images: source, size, splits and input pipeline.', dict(
        name=Key('synthetic_cells', NONEMPTY_TEXT,
                 "'synthetic_cells', 'folder' or any tfds name."),
        path=Key('', TEXT, "The image folder, for name='folder'."),
        image_size=Key(32, IMAGE_SIDE, 'Side of the square images the model sees.'),
        channels=Key(3, number(int, 1, 64),
                     'Channels per image: 3 (RGB; grey files are repeated), 1 (grey) or any C '
                     '(fluorescence: multi-page or multi-channel TIFFs); colour jitter, '
                     'grayscale and stain jitter need 3, other counts get per-channel '
                     'brightness/contrast jitter instead.'),
        uint16_max=Key(65535, POSITIVE_INT,
                       '16-bit (and other integer) pixel values v are stored as '
                       'round(v * 255 / uint16_max): 65535 for the full range, 4095 for a '
                       '12-bit camera.'),
        extra_unlabeled=Key('', TEXT, "Extra folders of unlabeled images used in pretraining "
                            "only ('a,b,c')."),
        tfds_data_dir=Key('', TEXT, "'' = TFDS's default (~/tensorflow_datasets)."),
        split=Key((0.7, 0.15, 0.15), SPLIT,
                  "Train/val/test fractions for 'folder' and synthetic; a dataset with its own "
                  'test split keeps it, and validation takes val / (train + val) of its '
                  'training images.'),
        pretrain_on_test=Key(False, BOOL,
                             'Let pretraining see val/test images (off: no leakage).'),
        strict=Key(False, BOOL, 'An undecodable file is an error instead of a warning.'),
        drop_blank_below=Key(0.0, NON_NEGATIVE,
                             "Folder datasets: images whose grey-level std is under this "
                             "(near-blank crops, as data.flag_blank lists them) are left out "
                             "of every split; 0 keeps all."),
        num_synthetic=Key(2000, POSITIVE_INT, "Images generated by 'synthetic_cells'."),
        synthetic_size=Key(64, IMAGE_SIDE, 'Side of the generated cell images.'),
        seed=Key(0, COUNT, 'Seed of the data itself (synthetic images, split), apart from '
                 'seed so runs with different seeds share one dataset and split.'),
        in_memory_limit_mb=Key(4096, COUNT,
                               'Datasets whose decoded images fit are decoded once into '
                               'memory; larger ones from files on every use.'),
        shuffle_buffer=Key(10_000, POSITIVE_INT, 'Images in the shuffle buffer.'),
        prefetch=Key(2, number(int, 0, 64),
                     'Batches prepared ahead; more only costs memory.'),
        device_cache_mb=Key(2048, COUNT,
                            "augment.backend 'device': a pretraining pool whose uint8 images "
                            "fit in this many MB is put on every device once, and the host "
                            "sends indices."),
    )),
    augment=Section(
        'Pretraining augmentation. A preset gives the value of every key below that is None; '
        'a key set to anything, even the value it has in another preset, wins: '
        '`--config.augment.preset=imagenet --config.augment.blur_prob=0.0` is ImageNet '
        'augmentation without blur. data.augment_params.resolve_params(config) returns the '
        'effective values.', dict(
            preset=Key('cifar', choice(*sorted(AUGMENT_PRESETS)),
                       "'cifar', 'imagenet' or 'cytology': the values of the keys left None."),
            backend=Key('auto', choice('auto', 'host', 'device'),
                        "Where pretraining augments: 'host' (tf.data on the CPU cores), "
                        "'device' (JAX on the training devices) or 'auto' (host on a CPU-only "
                        "machine with TensorFlow, else device)."),
            crop_area_min=Key(0.08, FRACTION, 'Random crop: smallest fraction of the area.'),
            crop_area_max=Key(1.0, FRACTION, 'Random crop: largest fraction of the area.'),
            crop_aspect_min=Key(3 / 4, POSITIVE, 'Random crop: smallest aspect ratio.'),
            crop_aspect_max=Key(4 / 3, POSITIVE, 'Random crop: largest aspect ratio.'),
            flip_lr=Key(True, BOOL, 'Random left-right flips.'),
            flip_ud=preset_key(BOOL, 'Random up-down flips.',
                               cifar=False, imagenet=False, cytology=True),
            rot90=preset_key(BOOL, 'Random rotations by multiples of 90 degrees.',
                             cifar=False, imagenet=False, cytology=True),
            jitter_strength=preset_key(NON_NEGATIVE, 'Colour jitter strength s.',
                                       cifar=0.5, imagenet=1.0, cytology=0.5),
            jitter_prob=Key(0.8, PROBABILITY, 'Probability of colour jitter.'),
            grayscale_prob=Key(0.2, PROBABILITY, 'Probability of converting to grey.'),
            blur_prob=preset_key(PROBABILITY, 'Probability of Gaussian blur.',
                                 cifar=0.0, imagenet=0.5, cytology=0.5),
            blur_sigma_min=Key(0.1, POSITIVE, 'Smallest Gaussian blur sigma, in pixels.'),
            blur_sigma_max=Key(2.0, POSITIVE, 'Largest Gaussian blur sigma, in pixels.'),
            stain_jitter=preset_key(NON_NEGATIVE,
                                    'Strength of haematoxylin-eosin-DAB jitter, 0 = off.',
                                    cifar=0.0, imagenet=0.0, cytology=0.05),
            eval_crop_fraction=preset_key(FRACTION,
                                          'Centre crop for evaluation (0.875 ImageNet style, '
                                          '1.0 the whole image).',
                                          cifar=1.0, imagenet=0.875, cytology=1.0),
        )),
    model=Section('The encoder f (ResNet) and the projection head g.', dict(
        name=Key('resnet18', choice(*sorted(ARCHITECTURE_NAMES)), 'resnet18 ... resnet152.'),
        width=Key(1.0, number(float, 0, 16, low_open=True),
                  'Width multiplier: 1, 2 or 4 as in the paper; below 1 for CPU demos.'),
        small_stem=Key('auto', choice('auto', 'yes', 'no'),
                       "'auto' (a small stem for images <= 64 px), 'yes' or 'no'."),
        zero_init_residual=Key(False, BOOL, "Start each residual block's last BN scale at 0."),
        stride_on=Key('v1.5', choice('v1', 'v1.5'),
                      "Bottleneck stride in the 3x3 conv ('v1.5') or the first 1x1 ('v1')."),
        input_norm=Key('none', choice('none', 'imagenet', 'caffe'),
                       "How inputs in [0, 1] are normalised: 'none' (SimCLR), 'imagenet' "
                       "(torchvision mean/std) or 'caffe' (Keras ResNet: BGR minus mean pixel)."),
        head_layers=Key(2, number(int, 0, 8),
                        '0 = identity, 1 = linear, 2 = SimCLRv1, 3 = SimCLRv2.'),
        head_dim=Key(128, POSITIVE_INT, 'Width of z, the head output.'),
        head_hidden=Key(0, COUNT, "Width of the head's hidden layers; 0 = the encoder's "
                        "feature width."),
        bn_momentum=Key(0.9, MOMENTUM, 'Batch norm running-average momentum.'),
        bn_epsilon=Key(1e-5, POSITIVE, 'Batch norm epsilon.'),
    )),
    loss=Section('The contrastive loss.', dict(
        name=Key('nt_xent', choice(*LOSS_NAMES), "'nt_xent', 'nt_logistic' or 'margin_triplet'."),
        temperature=Key(0.5, POSITIVE, 'Temperature tau of nt_xent and nt_logistic.'),
        margin=Key(0.5, NON_NEGATIVE, 'Margin of margin_triplet.'),
        normalize=Key(True, BOOL,
                      "False: raw dot products of z instead of cosines (the paper's Table 5 "
                      "ablation; unbounded logits, so it wants a larger temperature)."),
    )),
    optim=_optimizer('lars', base_lr=1.0, weight_decay=1e-4, warmup_epochs=10.0),
    probe=Key(True, BOOL, 'Online linear probe on stop-gradient h, trained with the labelled '
              'images in the batch by the same optimizer (as the authors\' TF2 code does).'),
    grad_cache_chunk=Key(0, COUNT, 'Gradient caching: embed the batch in chunks of this many '
                         'images per device (0 = off).'),
    steps_per_call=Key(1, POSITIVE_INT,
                       'Training steps per jitted call: K > 1 scans K steps in one call, so '
                       'small fast steps lose less to dispatch; log, checkpoint and kNN steps '
                       'still happen where they would.'),
    log_every_steps=Key(50, POSITIVE_INT, 'Pretraining log interval.'),
    health_monitor=Key(True, BOOL, 'At each log step: spread, effective rank, alignment and '
                       'uniformity of h and z, with a warning on collapse.'),
    checkpoint_every_steps=Key(500, POSITIVE_INT, 'Checkpoint interval.'),
    keep_checkpoints=Key(3, POSITIVE_INT, 'Checkpoints kept.'),
    lock_stale_minutes=Key(30.0, POSITIVE,
                           "A workdir lock not refreshed for this long (it is every minute) "
                           "was left by a dead run and is taken over."),
    eval_every_steps=Key(0, COUNT, 'kNN monitor during pretraining every N steps; 0 = only '
                         'at the end.'),
    eval_at_end=Key(True, BOOL, 'When pretraining ends: probe and kNN on frozen features, '
                    'trained against random encoder.'),
    export=Section('Files written next to WORKDIR/encoder/ when pretraining ends.', dict(
        formats=Key('', TEXT, "'torchvision': a torchvision ResNet state dict, "
                    "WORKDIR/encoder_torchvision.safetensors (width 1 only)."),
    )),
    label_fraction=Key(1.0, FRACTION, 'Fraction of the training labels that linear '
                       'evaluation and fine-tuning use.'),
    finetune_from=Key('encoder', choice('encoder', 'head1'),
                      "'encoder' or 'head1' (SimCLRv2: keep the head's first layer)."),
    class_weighting=Key(False, BOOL, 'Class-balanced loss for imbalanced data.'),
    supervised_control=Key(False, BOOL, 'Train from random init, no pretraining.'),
    eval_batch_size=Key(256, POSITIVE_INT, 'Batch size of evaluation and feature extraction.'),
    knn_k=Key(20, POSITIVE_INT, 'Neighbours in the kNN evaluation.'),
    positive_classes=Key('', TEXT,
                         "Classes counted as positive in a binary grouping (e.g. abnormal "
                         "cells); 'auto' = every class whose name has no normal-class word "
                         "(negative, normal, NILM, benign)."),
    finetune=Section(
        "Fine-tuning (finetune.py), after SimCLR's recipe (appendix B.5): SGD, momentum 0.9, "
        'lr 0.05 * batch / 256, no warm-up, no weight decay, crop + flip only.', dict(
            num_epochs=Key(30, COUNT, 'Fine-tuning epochs.'),
            num_steps=Key(0, COUNT, '> 0 overrides num_epochs.'),
            min_steps=Key(0, COUNT, 'At least this many steps, however small the label subset.'),
            batch_size=Key(128, POSITIVE_INT,
                           "Global; lowered to the subset's size when it is smaller."),
            augment=Key(True, BOOL, 'Random crop + flips on the labelled images.'),
            eval_every_epochs=Key(1, POSITIVE_INT,
                                  'Validation for model choice and early stopping.'),
            patience=Key(0, COUNT,
                         'Stop after this many validations without improvement (0 = off).'),
            select_metric=Key('top1', choice(*SELECT_METRICS),
                              "The validation metric that picks the kept model: 'top1' or "
                              "'balanced_accuracy'."),
            eval_cache_mb=Key(256, COUNT, 'Validation batches kept in memory up to this size.'),
            linear_init=Key(False, BOOL,
                            'LP-FT: start the classifier from a logistic regression fitted to '
                            'the frozen features (not for the supervised control).'),
            control_base_lr=Key(0.0, NON_NEGATIVE,
                                "The supervised control's base learning rate (0 = "
                                "finetune.optim.base_lr): from random init it wants a larger one."),
            control_num_epochs=Key(0, COUNT,
                                   "The supervised control's epochs (0 = finetune.num_epochs): "
                                   "from random init it needs more passes over the labels."),
            optim=_optimizer('sgd', base_lr=0.05, weight_decay=0.0, warmup_epochs=0.0),
        )),
    linear=Section(
        'Linear evaluation (linear_eval.py): multinomial logistic regression on frozen '
        'features, full-batch L-BFGS in JAX; the L2 strength is picked on the validation split.',
        dict(
            l2_grid=Key('1e-6,1e-5,1e-4,1e-3,1e-2', NONEMPTY_TEXT,
                        'L2 strengths on the weights (per example) to choose from.'),
            max_iter=Key(500, POSITIVE_INT, 'L-BFGS iterations.'),
            select_metric=Key('top1', choice(*SELECT_METRICS),
                              "The validation metric that picks L2: 'top1' or "
                              "'balanced_accuracy'."),
            augment=Key(False, BOOL,
                        'True: features of augmented training images (not cached).'),
            feature_cache=Key('', TEXT, "'' = WORKDIR/features.npz."),
            features=Key('h', choice('h', 'g'),
                         "'h' (the encoder's output) or 'g' (the projection head's output "
                         "z; needs a SimCLR checkpoint)."),
        )),
    study=Section(
        'The study (sweep.py): pretrain once per starting point, then linear evaluation and '
        'fine-tuning.', dict(
            starting_points=Key('supervised,simclr', NONEMPTY_TEXT,
                                "Comma-separated: supervised, simclr, imagenet, "
                                "imagenet_simclr."),
            imagenet_weights=Key('', TEXT,
                                 'A weights file, needed by the imagenet* starting points.'),
            label_fractions=Key('0.1,0.2,0.3,0.4,0.5', NONEMPTY_TEXT,
                                'Comma-separated label fractions.'),
            seeds=Key(3, POSITIVE_INT, 'Seeds (label subsets) per label fraction.'),
            pretrain_per_seed=Key(False, BOOL,
                                  "True: pretrain once per seed, so the comparisons cover "
                                  "pretraining's randomness too."),
            linear_eval=Key(True, BOOL, 'Run linear evaluation too.'),
            confidence=Key(0.95, number(float, 0, 1, low_open=True, high_open=True),
                           "Confidence level of the report's paired comparisons "
                           "(experiments/compare.py)."),
            folds=Key(0, NUM_FOLDS,
                      'K >= 2: stratified k-fold cross-validation (folder datasets), every '
                      'image tested once, at about K times the cost; 0: one split (data.split).'),
            pretrain_scope=Key('fold', choice('fold', 'all'),
                               "With folds: 'fold' pretrains on the images outside each test "
                               "fold; 'all' once on every image without labels (cheaper, but "
                               "the test folds' pixels are seen)."),
            page_images=Key(200, number(int, 0, 100000),
                            "Each reported run's test predictions as a page of images "
                            '(RUN/test_predictions.html, linked from report.md): the first '
                            'this many test images, most confident first per class; 0 = no '
                            'pages.'),
            headline=Key('finetune', choice(*HEADLINES),
                         "The comparison printed first, at the smallest label fraction: "
                         "'finetune' (SimCLR fine-tuning against the supervised control) or "
                         "'linear' (a linear classifier on SimCLR's against the untrained "
                         "network's features)."),
        )),
    findings=Section(
        "The paper's findings on the user's data (findings.py): each finding is a grid of "
        'pretraining variants, each linearly evaluated per seed. The lists are comma-separated.',
        dict(
            run=Key('augmentations,heads,batch_epochs,loss,temperature', NONEMPTY_TEXT,
                    'Which findings to run.'),
            seeds=Key(2, POSITIVE_INT, 'Each seed pretrains every variant again.'),
            augmentations=Key('crop,color,blur,rotate', NONEMPTY_TEXT,
                              'Ops, singly and in pairs (crop, jitter, grayscale, color = '
                              'jitter + grayscale, blur, rotate, flip, stain).'),
            head_layers=Key('0,1,2,3', NONEMPTY_TEXT, '0 = none, 1 = linear, 2+ = nonlinear.'),
            batch_sizes=Key('32,128', NONEMPTY_TEXT,
                            'The learning rate scales by optim.lr_scaling.'),
            epochs=Key('5,10', NONEMPTY_TEXT, 'Pretraining epochs, crossed with batch_sizes.'),
            losses=Key('nt_xent,nt_logistic,margin_triplet', NONEMPTY_TEXT, 'Losses compared.'),
            loss_temperatures=Key('0.1,0.5', NONEMPTY_TEXT,
                                  'Swept for nt_xent and nt_logistic.'),
            margins=Key('0.2,0.5', NONEMPTY_TEXT, 'Swept for margin_triplet.'),
            temperatures=Key('0.1,0.5,1.0', NONEMPTY_TEXT,
                             'NT-Xent, with and without l2 normalisation.'),
        )),
    baseline=Section(
        "The study's non-deep floor (evaluation/baseline.py): logistic regression on "
        'hand-made features; with several feature sets validation picks one.', dict(
            features=Key('pixels,colour_texture', NONEMPTY_TEXT,
                         "'pixels' and/or 'colour_texture'."),
            pixel_size=Key(16, number(int, 1, 4096),
                           "'pixels': the image average-pooled to this side."),
            feature_cache=Key('', TEXT, "'' = WORKDIR/baseline_features.npz."),
        )),
    distributed=Section(
        'Multi-process start (auto-detected on Cloud TPU and SLURM when left empty).', dict(
            coordinator_address=Key('', TEXT, 'host:port of process 0.'),
            num_processes=Key(Unset(int), number(int, 1), 'Processes in the run.'),
            process_id=Key(Unset(int), number(int, 0), "This process's index."),
            heartbeat_timeout_seconds=Key(60, number(int, 5, 3600),
                                          "JAX's limit for a silent process. The others end "
                                          'with one line once a process has shown no sign of '
                                          'life for half of it; started again, the run '
                                          'resumes from its last checkpoint.'),
        )),
)


def flat(tree: dict = KEYS, prefix: str = '') -> dict:
  """{'model.width': Key, ...}: every key of the tree under its dotted name."""
  keys = {}
  for name, item in tree.items():
    if isinstance(item, Section):
      keys.update(flat(item.keys, f'{prefix}{name}.'))
    else:
      keys[prefix + name] = item
  return keys


FLAT_KEYS = flat()


# --- The key reference (docs/config_keys.md).


def _default_text(key: Key) -> str:
  if key.presets:
    return 'preset: ' + ', '.join(f'{p} `{v!r}`' for p, v in key.presets.items())
  if isinstance(key.default, Unset):
    return f'None ({key.default.type.__name__})'
  return f'`{key.default!r}`'


def _sections(tree: dict, prefix: str = '', doc: str = 'Top-level keys.'):
  """(title, doc, [(name, Key)]) for the tree's own keys, then each sub-section's."""
  own = [(prefix + name, item) for name, item in tree.items() if isinstance(item, Key)]
  yield prefix.rstrip('.') or 'top level', doc, own
  for name, item in tree.items():
    if isinstance(item, Section):
      yield from _sections(item.keys, f'{prefix}{name}.', item.doc)


def markdown() -> str:
  """docs/config_keys.md: every key with its default, rule and documentation."""
  cell = lambda text: str(text).replace('|', '\\|')
  lines = ['# Config keys', '',
           f'Generated from `{__spec__.name}` by `python -m {__spec__.name} > '
           'docs/config_keys.md`; a test fails when this file is stale. Set any key with '
           '`--config.KEY=VALUE`; a value outside its rule stops the run with one line naming '
           'the key.']
  for title, doc, keys in _sections(KEYS):
    lines += ['', f'## {title}', '', doc, '', '| key | default | expected | what |',
              '| --- | --- | --- | --- |']
    lines += [f'| `{name}` | {cell(_default_text(key))} | {cell(key.rule.expected)} | '
              f'{cell(key.doc)} |' for name, key in keys]
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  sys.stdout.write(markdown())
