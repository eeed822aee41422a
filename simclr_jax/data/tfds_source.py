"""TensorFlow Datasets (cifar10, imagenet2012, ...) read from the user's TFDS data folder.

Nothing is downloaded: a dataset that is not prepared is an error that says how to
prepare it. Splits: 'test' is the dataset's test split, or its validation split when it
has no test split (imagenet2012); 'val' is the validation split when the dataset has both,
otherwise a seeded stratified part of train (split.carve_val: config.data.split's val
fraction relative to train + val). Splits that fit in config.data.in_memory_limit_mb are
decoded once into memory; larger ones are read by index from an ArrayRecord-prepared
dataset.
"""

import numpy as np

from simclr_jax.data import channels as channels_lib
from simclr_jax.data import split as split_lib
from simclr_jax.data import stores
from simclr_jax.data.folder import DataError


def _builder(name, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # pylint: disable=broad-except  (unknown name, bad config)
    raise DataError(f'config.data.name={name!r} is neither synthetic_cells, folder, nor a '
                    f'TFDS dataset this tensorflow-datasets knows ({e})') from e
  if not builder.is_prepared():
    where = data_dir or '~/tensorflow_datasets'
    raise DataError(
        f'TFDS dataset {name!r} is not prepared in {where} (config.data.tfds_data_dir). '
        'Nothing is downloaded at run time; prepare it once with\n'
        f'  tfds build {name} --data_dir={where}\n'
        'or python -c "import tensorflow_datasets as tfds; '
        f'tfds.builder(\'{name}\', data_dir=\'{where}\').download_and_prepare()" '
        '(imagenet2012 needs the archives placed in <data_dir>/downloads/manual first).')
  return builder


def _feature_keys(builder):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  image_key = label_key = None
  for key, feature in builder.info.features.items():
    if image_key is None and isinstance(feature, tfds.features.Image):
      image_key = key
    if label_key is None and isinstance(feature, tfds.features.ClassLabel):
      label_key = key
  if image_key is None:
    raise DataError(f'TFDS dataset {builder.info.name!r} has no image feature')
  return image_key, label_key


def _fitted(image, data, name):
  """A TFDS image as uint8 with config.data.channels channels (folder.py's rules); RGBA
  drops its alpha, as TFDS images have no transparency to composite."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 4 and data.channels == 3:
    image = image[..., :3]
  return channels_lib.fit_channels(channels_lib.to_uint8(image, data.uint16_max),
                                   data.channels, f'TFDS {name}')


def _load_split(builder, split, image_key, label_key, data):
  memory_limit_mb = data.in_memory_limit_mb
  as_array = lambda image: _fitted(image, data, f'{builder.info.name}[{split}]')
  info = builder.info.splits[split]
  shape = builder.info.features[image_key].shape
  pixels = np.prod([d or 256 for d in shape[:2]]) * data.channels
  if info.num_examples * pixels > memory_limit_mb * 2**20:
    try:
      source = builder.as_data_source(split=split)
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
          f'TFDS {builder.info.name}[{split}] (~{info.num_examples * pixels / 2**20:.0f} '
          f'MB decoded) is over config.data.in_memory_limit_mb={memory_limit_mb} and is '
          'not prepared as ArrayRecord for random access; raise the limit or prepare it '
          'with --file_format=array_record') from e
    labels = np.array([source[i][label_key] for i in range(len(source))], np.int32) \
        if label_key else np.full(len(source), -1, np.int32)
    return stores.DecodingStore(len(source), lambda i: as_array(source[i][image_key])), labels
  ds = builder.as_dataset(split=split, shuffle_files=False)
  images, labels = [], []
  for example in ds.as_numpy_iterator():
    images.append(as_array(example[image_key]))
    labels.append(example[label_key] if label_key else -1)
  store = (stores.ArrayStore(np.stack(images)) if images and
           all(im.shape == images[0].shape for im in images) else stores.ListStore(images))
  return store, np.array(labels, np.int32)


def load(config):
  """(class names, {split: (store, labels)})."""
  data = config.data
  builder = _builder(data.name, data.tfds_data_dir)
  image_key, label_key = _feature_keys(builder)
  names = tuple(builder.info.features[label_key].names) if label_key else ()
  available = set(builder.info.splits.keys())
  if 'train' not in available:
    raise DataError(f'TFDS dataset {data.name!r} has no train split ({sorted(available)})')
  test = 'test' if 'test' in available else 'validation' if 'validation' in available else None
  val = 'validation' if test == 'test' and 'validation' in available else None
  load_split = lambda s: _load_split(builder, s, image_key, label_key, data)
  train_store, train_labels = load_split('train')
  splits = {}
  if val is None:
    parts = split_lib.carve_val(train_labels, data.split, data.seed)
    for name in ('train', 'val'):
      splits[name] = (stores.SubsetStore(train_store, parts[name]), train_labels[parts[name]])
  else:
    splits['train'] = (train_store, train_labels)
    splits['val'] = load_split(val)
  splits['test'] = load_split(test) if test else (stores.ListStore([]), np.zeros(0, np.int32))
  return names, splits
