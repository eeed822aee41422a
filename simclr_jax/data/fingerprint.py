"""One fingerprint of the data a run reads, for every cache of it or of what is computed
from it (the decoded sources, the linear evaluation's and the baseline's features).

Every key of config.data is either in IMAGE_KEYS (a change gives other images or labels)
or in OTHER_KEYS (with why it is not); a test checks that none is in neither, so a new
key cannot be left out of the caches' keys unnoticed.
"""

import json

IMAGE_KEYS = ('name', 'path', 'extra_unlabeled', 'tfds_data_dir', 'split', 'seed',
              'num_synthetic', 'synthetic_size', 'strict', 'drop_blank_below', 'channels',
              'uint16_max')
OTHER_KEYS = {
    'image_size': 'the size images are resized to as they are fed, not the images decoded '
                  '(a feature cache adds it to its key: the sources are decoded once for all)',
    'pretrain_on_test': 'which splits pretraining reads, not the images of a split',
    'in_memory_limit_mb': 'how the images are held', 'device_cache_mb': 'how they are held',
    'shuffle_buffer': 'how they are fed', 'prefetch': 'how they are fed',
}


def fingerprint(data) -> str:
  """A string that differs whenever config.data (`data`) gives other images or labels
  (of any split, or the extra unlabelled ones)."""
  values = {key: data.get(key) for key in IMAGE_KEYS}
  values['split'] = list(values['split'])
  return json.dumps(values, sort_keys=True)
