"""Property-based tests of what users feed in.

Image folders: random bytes, truncated files, every Pillow mode, extreme sizes and odd
names; each file either loads as 8-bit RGB or is skipped with a warning that names it.
Config overrides: any `--config.KEY=VALUE` is either used (right type, in range) or
refused with one line that names the key.
"""

import contextlib
import io
import logging
import pathlib
import tempfile

import numpy as np
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ml_collections import config_flags
from PIL import Image

from simclr_jax.config import checks as config_checks, defaults as default_config
from simclr_jax.data import folder, pipeline
from simclr_jax.runtime import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

MODES = ('1', 'L', 'P', 'RGB', 'RGBA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'I', 'F', 'I;16',
         'I;16B', 'I;16L', 'LA', 'PA', 'RGBX', 'RGBa', 'La')
FORMATS = {'.png': 'PNG', '.tif': 'TIFF', '.bmp': 'BMP', '.jpg': 'JPEG', '.TIFF': 'TIFF'}
SIZES = ((1, 1), (1, 10_000), (10_000, 1), (5, 3), (17, 40))
NAME_CHARS = list('aZ09 ._-') + ['é', 'ü', '日', '本', '\u202e', '%', "'", '"', '#', '(', ')']


@st.composite
def image_files(draw):
  """(file name, bytes, (height, width) when the bytes are a whole image, else None)."""
  stem = draw(st.text(st.sampled_from(NAME_CHARS), min_size=1, max_size=10))
  extension = draw(st.sampled_from(sorted(FORMATS)))
  kind = draw(st.sampled_from(('image', 'truncated', 'random')))
  if kind == 'random':
    return stem + extension, draw(st.binary(max_size=600)), None
  mode, (width, height) = draw(st.sampled_from(MODES)), draw(st.sampled_from(SIZES))
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  image = Image.frombytes(mode, (width, height),
                          rng.bytes(len(Image.new(mode, (1, 1)).tobytes()) * width * height))
  buffer = io.BytesIO()
  try:
    image.save(buffer, FORMATS[extension])
  except (OSError, ValueError, KeyError):  # the format cannot hold this mode
    return stem + extension, rng.bytes(64), None
  payload = buffer.getvalue()
  if kind == 'truncated':
    return stem + extension, payload[:draw(st.integers(0, len(payload) - 1))], None
  return stem + extension, payload, (height, width)


@contextlib.contextmanager
def _warnings():
  lines = []
  handler = logging.Handler(logging.WARNING)
  handler.emit = lambda record: lines.append(record.getMessage())
  logging.getLogger().addHandler(handler)
  try:
    yield lines
  finally:
    logging.getLogger().removeHandler(handler)


@FUZZ
@given(files=st.lists(image_files().filter(lambda f: f[0] != 'good.png'), min_size=1,
                      max_size=4, unique_by=lambda f: f[0]))
def test_every_file_loads_as_rgb_or_is_skipped_and_named(files):
  with tempfile.TemporaryDirectory() as tmp, _warnings() as warnings:
    root = pathlib.Path(tmp) / 'data'
    (root / 'cells ü').mkdir(parents=True)
    (root / 'odd. class').mkdir()
    for class_dir in ('cells ü', 'odd. class'):  # no class folder without an image
      Image.new('RGB', (4, 4)).save(root / class_dir / 'good.png')
    for name, payload, _ in files:
      (root / 'odd. class' / name).write_bytes(payload)
    _, listed, _ = folder.scan(root)
    readable = folder.check_headers(root, listed, strict=False)
    kept = [f for f, ok in zip(listed, readable) if ok]
    decoded = dict(zip(kept, folder.decode_all(root, kept, strict=False)))
    said = '\n'.join(warnings)
    for name, _, shape in files:
      rel = str(pathlib.Path('odd. class') / name)
      if name.startswith('.'):
        assert rel not in listed  # hidden files (.DS_Store and the like) are not images
        continue
      image = decoded.get(rel)
      if image is None:
        assert shape is None, f'{name}: a whole image was skipped'
        assert name in said, f'{name} was skipped without being named'
      else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert shape is None or image.shape[:2] == shape
    # The whole source (split.json, stores) takes the same files without a crash.
    config = default_config.get_default_config()
    config.data.name, config.data.path = 'folder', str(root)
    info = pipeline.dataset_info(config, str(pathlib.Path(tmp) / 'workdir'))
    assert info.num_train + info.num_val + info.num_test == sum(
        image is not None for image in decoded.values())


JUNK = ('abc', '', '-1', '0', '1', '1.5', '-0.5', 'nan', 'inf', '-inf', '1e30',
        '99999999999999999999', 'True', 'none', '(1,2)', '[1]', "'x'", 'resnet7', ' ')


@FUZZ
@given(key=st.sampled_from(sorted(config_checks.RULES)),
       value=st.one_of(st.sampled_from(JUNK), st.text(max_size=6)))
def test_a_config_override_is_used_or_refused_in_one_line_naming_the_key(key, value):
  argv = ['prog', f'--config={REPO}/configs/demo.py', f'--config.{key}={value}']
  flag_values = flags.FlagValues()
  config = config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values,
                                           sys_argv=argv)
  try:
    flag_values(argv)
    config_checks.check(config.value)
    return  # the right type and in range
  except (flags.Error, AttributeError, KeyError, OSError) as e:
    message = cli.flag_error_message(e, argv)
  except ValueError as e:
    message = str(e)
  assert '\n' not in message and key in message, message


def test_an_unknown_top_level_key_is_named():
  argv = ['prog', f'--config={REPO}/configs/demo.py', '--config.no_such_key=1']
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=flag_values, sys_argv=argv)
  try:
    flag_values(argv)
  except AttributeError as e:
    assert cli.flag_error_message(e, argv) == \
        'unknown config key in --config.no_such_key=1'
  else:
    raise AssertionError('an unknown key was accepted')


def test_every_default_key_has_a_rule():
  assert set(config_checks.flatten(default_config.get_default_config())) == \
      set(config_checks.RULES)
