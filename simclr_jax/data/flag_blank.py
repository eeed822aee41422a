r"""Lists near-blank images: grey-level standard deviation under a threshold.

  python -m simclr_jax.data.flag_blank --path=../shared/datasets/cric_cervix \
      [--threshold=8] [--csv=blank.csv]

About 16% of the CRIC crops are almost empty background; this finds them.
"""

import csv
import pathlib

import numpy as np

from simclr_jax.data import folder


def grey_std(image: np.ndarray) -> float:
  """The std of the luma of an RGB image [H, W, 3], of the channel mean otherwise (grey
  or fluorescence channels, which have no luma weights)."""
  image = image.astype(np.float64)
  grey = image @ np.array([0.299, 0.587, 0.114]) if image.shape[-1] == 3 else image.mean(-1)
  return float(grey.std())


def grey_stds(store, chunk: int = 256) -> np.ndarray:
  """Grey-level std of every image of a store (each at its own size, padding excluded)."""
  out = np.empty(len(store), np.float64)
  for start in range(0, len(store), chunk):
    images, sizes = store.fetch(np.arange(start, min(start + chunk, len(store))))
    for i, (image, (height, width)) in enumerate(zip(images, sizes)):
      out[start + i] = grey_std(image[:height, :width])
  return out


def find_blank(path, threshold: float = 8.0, channels: int = 3) -> list[tuple[str, float]]:
  """(path relative to `path`, grey std) of each image under the threshold, sorted by
  path. Files that do not decode are skipped with a warning."""
  root = pathlib.Path(path)
  files = [str(f.relative_to(root)) for f in folder._image_files(root)]  # pylint: disable=protected-access
  if not root.is_dir() or not files:
    raise folder.DataError(f'--path={str(path)!r} is not a folder holding images')
  images = folder.decode_all(root, files, strict=False, channels=channels)
  stds = [(f, grey_std(im)) for f, im in zip(files, images) if im is not None]
  return [(f, s) for f, s in stds if s < threshold]


def main(argv):
  del argv
  blank = find_blank(_PATH.value, _THRESHOLD.value, _CHANNELS.value)
  for name, std in blank:
    print(f'{std:6.2f}  {name}')
  if _CSV.value:
    with open(_CSV.value, 'w', newline='') as f:
      writer = csv.writer(f)
      writer.writerow(['path', 'grey_std'])
      writer.writerows((name, f'{std:.3f}') for name, std in blank)
  print(f'{len(blank)} images with grey-level std < {_THRESHOLD.value}')


if __name__ == '__main__':
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  _PATH = flags.DEFINE_string('path', None, 'Image folder (searched recursively).')
  _THRESHOLD = flags.DEFINE_float('threshold', 8.0, 'Grey-level std below which an image is blank.')
  _CHANNELS = flags.DEFINE_integer('channels', 3, 'Channels per image (config.data.channels).')
  _CSV = flags.DEFINE_string('csv', '', 'Also write the list to this CSV file.')
  flags.mark_flags_as_required(['path'])
  app.run(main)
