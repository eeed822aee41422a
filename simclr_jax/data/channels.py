"""Image files as uint8 arrays of `config.data.channels` channels.

A file's channels are its colour channels (grey 1, RGB 3) times its pages: a multi-page
TIFF's pages and a multi-sample (H, W, C) TIFF's samples are channels, in file order.
TIFFs are read with tifffile when it is installed (every layout, any number of samples),
else with Pillow (grey, RGB and multi-page); other formats with Pillow.

Intensities become uint8 with one fixed scale for every image, so an image's brightness
stays comparable to another's (a per-image stretch would make an empty, dim field as
bright as a dense one): 8-bit values are kept, 16-bit (and other integer) values v become
round(v * 255 / uint16_max) clipped to 255 (config.data.uint16_max, 65535 = the full
16-bit range; 4095 for a 12-bit camera), floats are read as [0, 1]. Transparency is
composited on white, the light background of a slide.

Fitting the file to `channels`: a file with that many channels is kept as it is; with
channels=3 a grey file is repeated to RGB; with channels=1 an RGB file whose three channels
are equal (grey saved as RGB) is taken as grey. Anything else is a ChannelError naming the
file, its channel count and config.data.channels.
"""

import pathlib

import numpy as np
from PIL import Image, ImageSequence

from simclr_jax.errors import UserError

TIFF_SUFFIXES = ('.tif', '.tiff')
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')


class ChannelError(UserError):
  """A file's channel count does not fit config.data.channels."""


def _composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """colour [H, W, k] over white by alpha [H, W] (both in the dtype's full range, or
  [0, 1] for floats), in colour's dtype."""
  integer = colour.dtype.kind in 'ui'
  top = float(np.iinfo(colour.dtype).max) if integer else 1.0
  a = alpha.astype(np.float64)[..., None] / top
  out = colour.astype(np.float64) * a + top * (1 - a)
  return np.round(out).astype(colour.dtype) if integer else out


def _pillow_frame(frame: Image.Image) -> np.ndarray:
  """One Pillow frame -> [H, W, k], integers in their own range or float."""
  if frame.mode == 'P':
    frame = frame.convert('RGBA' if 'transparency' in frame.info else 'RGB')
  if frame.mode in _ALPHA_MODES:
    rgba = np.asarray(frame.convert('RGBA' if frame.mode in ('RGBA', 'RGBa', 'PA') else 'LA'))
    return _composite_on_white(rgba[..., :-1], rgba[..., -1])
  if frame.mode in ('1', 'CMYK', 'YCbCr', 'LAB', 'HSV'):
    frame = frame.convert('RGB' if frame.mode != '1' else 'L')
  array = np.asarray(frame)
  return array[..., None] if array.ndim == 2 else array


def _read_pillow(path) -> np.ndarray:
  with Image.open(path) as image:
    frames = [_pillow_frame(f) for f in ImageSequence.Iterator(image)]
  if len({f.shape[:2] for f in frames}) > 1:
    raise ValueError(f'its pages have different sizes {sorted({f.shape[:2] for f in frames})}')
  return frames[0] if len(frames) == 1 else np.concatenate(frames, axis=2)


def _read_tifffile(path) -> np.ndarray:
  """A TIFF as [H, W, k]: every axis other than height and width (pages, samples,
  channels, z) flattened into channels."""
  import tifffile  # pylint: disable=g-import-not-at-top
  with tifffile.TiffFile(path) as tif:
    series = tif.series[0]
    array, axes = series.asarray(), series.axes
    page = tif.pages[0]
    if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
      raise ValueError(f'photometric {page.photometric.name}: left to Pillow')
    alpha = any(int(e) in (1, 2) for e in page.extrasamples)
    rgb_padding = (page.photometric == tifffile.PHOTOMETRIC.RGB and page.samplesperpixel > 3
                   and not alpha)
  if 'Y' not in axes or 'X' not in axes:
    raise ValueError(f'a TIFF series with axes {axes!r}, expected a Y and an X axis')
  order = [axes.index('Y'), axes.index('X')]
  rest = [i for i in range(array.ndim) if i not in order]
  array = np.transpose(array, order + rest)
  array = array.reshape(array.shape[0], array.shape[1], -1)
  if alpha and array.shape[2] in (2, 4):
    array = _composite_on_white(array[..., :-1], array[..., -1])
  elif rgb_padding and array.shape[2] == page.samplesperpixel:
    array = array[..., :3]  # RGBX: an unused fourth sample, dropped as Pillow does
  return array


def read_channels(path) -> np.ndarray:
  """The file's pixels as [H, W, k] in their own dtype and range (see the module doc)."""
  if pathlib.Path(path).suffix.lower() in TIFF_SUFFIXES:
    try:
      return _read_tifffile(path)
    except ImportError:
      pass  # without tifffile, Pillow reads grey, RGB and multi-page TIFFs
    except Exception:  # pylint: disable=broad-except  (e.g. a codec tifffile lacks)
      try:
        return _read_pillow(path)
      except Exception:  # pylint: disable=broad-except
        pass
      raise
  return _read_pillow(path)


def to_uint8(array: np.ndarray, uint16_max: int = 65535) -> np.ndarray:
  """Fixed-scale conversion to uint8 (the module doc says why fixed)."""
  if array.dtype == np.uint8:
    return array
  if array.dtype == bool:
    return array.astype(np.uint8) * 255
  if array.dtype.kind in 'ui':
    scaled = np.round(array.astype(np.float64) * (255.0 / uint16_max))
  else:  # float: [0, 1]
    values = np.nan_to_num(np.asarray(array, np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    scaled = np.round(values * 255.0)
  return np.clip(scaled, 0, 255).astype(np.uint8)


def fit_channels(image: np.ndarray, channels: int, path) -> np.ndarray:
  """[H, W, k] uint8 -> [H, W, channels] by the module doc's rules, or a ChannelError."""
  found = image.shape[2]
  if found == channels:
    return image
  if channels == 3 and found == 1:
    return np.repeat(image, 3, axis=2)
  if channels == 1 and found == 3 and (image == image[..., :1]).all():
    return image[..., :1]
  what = 'grey' if found == 1 else 'RGB' if found == 3 else f'{found}-channel'
  raise ChannelError(
      f'{path} is a {what} image ({found} channels: colours x pages) but '
      f'config.data.channels={channels}. Set --config.data.channels={found}, or convert the '
      f'file (with channels=3 grey files are repeated to RGB; with channels=1 only RGB files '
      f'whose channels are equal are taken as grey).')


def decode(path, channels: int = 3, uint16_max: int = 65535) -> np.ndarray:
  """A file as uint8 [H, W, channels]."""
  return fit_channels(to_uint8(read_channels(path), uint16_max), channels, path)
