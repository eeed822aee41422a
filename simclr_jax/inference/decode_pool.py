"""Decoding new images in worker processes, for predict and embed.

Pillow parses a file's headers in Python, holding the GIL: for small images (a 32 px
JPEG: ~35 us of decoding in C, ~100 us of Python) threads queue on the GIL and decode no
faster than one. Worker processes decode in parallel whatever the image size. They are
spawned, not forked (the parent runs JAX's and TensorFlow's threads), and import only
numpy, Pillow and this module's two imports, so they start in a fraction of a second.
"""

import concurrent.futures
import contextlib
import multiprocessing
import sys
import types

from simclr_jax.data import channels as channels_lib
from simclr_jax.evaluation.predictions_page import thumbnail_png


def decode_chunk(items, channels: int, uint16_max: int, thumbnails: bool):
  """[(file index, path)] -> [(image or None, error message or None, thumbnail or None)]."""
  return [_decode_one(path, channels, uint16_max, thumbnails) for _, path in items]


def _decode_one(path, channels, uint16_max, thumbnails):
  try:
    image = channels_lib.decode(path, channels, uint16_max)
  except Exception as e:  # pylint: disable=broad-except  (any decoder failure: the row's error)
    message = str(e) if isinstance(e, ValueError) and str(path) in str(e) else (
        f'{type(e).__name__}: {e}')
    return None, ' '.join(message.split()), None
  return image, None, thumbnail_png(image) if thumbnails else None


def process_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """`workers` spawned processes, all started before this returns."""
  pool = concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'))
  with _main_module_hidden():
    for started in [pool.submit(int, 0) for _ in range(workers)]:  # one start per submit
      started.result()
  return pool


@contextlib.contextmanager
def _main_module_hidden():
  """A spawned process first imports its parent's __main__ (where a pickled function may
  live). The workers need only this module, and a user's script without an
  `if __name__ == '__main__':` guard would run again in each of them."""
  main = sys.modules['__main__']
  sys.modules['__main__'] = types.ModuleType('__main__')
  try:
    yield
  finally:
    sys.modules['__main__'] = main
