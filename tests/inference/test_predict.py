"""predict: a trained classifier's answers for new images, scored as evaluation scores them,
with an error row for each file it cannot read and a page of the images."""

import csv
import html.parser
import io
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FAST_COMPILE_FLAG
from simclr_jax.benchmarks import predict_bench
from simclr_jax.evaluation import trained_model
from simclr_jax.inference import new_images, predictions
from simclr_jax.runtime import parallel
from tiny_trained_runs import run_metrics, trained_runs


@pytest.fixture(scope='module')
def runs():
  return trained_runs()


@pytest.fixture(scope='module')
def images_with_bad_files(runs, tmp_path_factory):
  """The test split, plus a file that is no image and a 2-page grey TIFF (2 channels, for
  a 3-channel model), both in a class folder."""
  folder = tmp_path_factory.mktemp('with_bad') / 'images'
  shutil.copytree(runs['test_images'], folder)
  first_class = sorted(p.name for p in folder.iterdir())[0]
  (folder / first_class / 'broken.png').write_bytes(b'not an image')
  pages = [Image.fromarray(np.full((20, 20), v, np.uint8)) for v in (50, 200)]
  pages[0].save(folder / first_class / 'two_pages.tif', save_all=True, append_images=pages[1:])
  return folder


def _read_csv(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


class _ImageCounter(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.images, self.links, self.ids = [], [], set()

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'img':
      self.images.append(attrs['src'])
    if tag == 'a':
      self.links.append(attrs['href'])
    if 'id' in attrs:
      self.ids.add(attrs['id'])


@pytest.mark.parametrize('run', ['finetune', 'linear'])
def test_predictions_score_as_evaluation_did(runs, images_with_bad_files, tmp_path, run):
  out = tmp_path / 'predictions.csv'
  result = predictions.predict(runs[run], str(images_with_bad_files), str(out))
  evaluated = run_metrics(runs[run])
  for key in ('top1', 'balanced_accuracy', 'macro_f1'):
    assert result[key] == pytest.approx(evaluated[key], abs=1e-12), key
  assert result['confusion_matrix'] == evaluated['confusion_matrix']
  assert result['num_test'] == evaluated['num_test'] == len(runs['test_paths'])
  written = run_metrics(tmp_path)
  assert written['protocol'] == 'predict' and written['top1'] == result['top1']
  assert written['num_errors'] == 2

  rows = _read_csv(out)
  names = evaluated['class_names']
  assert list(rows[0]) == ['path', 'predicted', *names, 'true', 'error']
  assert [r['path'] for r in rows] == sorted(str(p) for p in images_with_bad_files.rglob('*.*'))
  errors = {pathlib.Path(r['path']).name: r['error'] for r in rows if r['error']}
  assert set(errors) == {'broken.png', 'two_pages.tif'}
  assert 'config.data.channels=3' in errors['two_pages.tif']
  good = [r for r in rows if not r['error']]
  probs = np.array([[float(r[n]) for n in names] for r in good])
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  assert [r['predicted'] for r in good] == [names[k] for k in probs.argmax(1)]
  assert all(r['true'] == pathlib.Path(r['path']).parent.name for r in rows)

  page = _ImageCounter()
  page.feed(pathlib.Path(result['html']).read_text())
  assert len(page.images) == len(good)
  assert all(src.startswith('data:image/png;base64,') for src in page.images)
  assert page.links and all(link[1:] in page.ids for link in page.links)  # no dead links


def test_a_list_of_paths_keeps_its_order_and_reports_missing_files(runs, tmp_path):
  listed = [runs['test_paths'][3], str(tmp_path / 'missing.png'), runs['test_paths'][0]]
  list_file = tmp_path / 'files.txt'
  list_file.write_text('# new slides\n' + '\n'.join(listed) + '\n')
  result = predictions.predict(runs['finetune'], str(list_file), str(tmp_path / 'p.csv'),
                           page=False)
  rows = _read_csv(tmp_path / 'p.csv')
  assert [r['path'] for r in rows] == listed
  assert 'true' not in rows[0] and 'top1' not in result
  assert rows[1]['error'].startswith('FileNotFoundError') and not rows[1]['predicted']
  assert result['num_errors'] == 1 and not (tmp_path / 'p.html').exists()


def test_bad_workdirs_and_inputs_are_named(runs, tmp_path):
  images = runs['test_images']
  with pytest.raises(FileNotFoundError, match='no such folder'):
    predictions.predict(str(tmp_path / 'nowhere'), images, str(tmp_path / 'a.csv'))
  with pytest.raises(ValueError, match='pretraining run.*init_from='):
    predictions.predict(runs['pretrain'], images, str(tmp_path / 'a.csv'))
  with pytest.raises(ValueError, match='2 trained runs.*--workdir='):
    predictions.predict(runs['root'], images, str(tmp_path / 'a.csv'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='has no images'):
    predictions.predict(runs['finetune'], str(tmp_path / 'empty'), str(tmp_path / 'a.csv'))
  # The training run's own metrics.json is never overwritten.
  before = (pathlib.Path(runs['finetune']) / 'metrics.json').read_text()
  with pytest.raises(FileExistsError, match='belongs to another run'):
    predictions.predict(runs['finetune'], images, str(pathlib.Path(runs['finetune']) / 'p.csv'))
  assert (pathlib.Path(runs['finetune']) / 'metrics.json').read_text() == before
  assert not list(tmp_path.glob('*.csv'))


def test_the_command_line_stops_with_one_line(runs):
  done = subprocess.run([sys.executable, '-m', 'simclr_jax.predict',
                         f"--workdir={runs['pretrain']}", f"--images={runs['test_images']}"],
                        capture_output=True, text=True, timeout=300,
                        cwd=pathlib.Path(__file__).resolve().parents[2])
  assert done.returncode == 1
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith('error: --workdir=') and 'pretraining run' in last
  assert 'Traceback' not in done.stderr


def test_worker_processes_decode_as_this_process_does(runs, images_with_bad_files):
  """Large jobs decode in worker processes, a batch ahead: the same batches, masks, error
  messages and thumbnails as decoding here, broken files included."""
  config = trained_model.load_classifier(runs['finetune'], parallel.make_mesh()).config
  paths = new_images.find_images(str(images_with_bad_files)).paths
  decoded = {}
  for workers in (1, 2):
    decoder = new_images.Decoder(config, thumbnails=True, workers=workers)
    decoded[workers] = (list(decoder.batches(paths, 8)), decoder.errors, decoder.thumbnails)
  (here, here_errors, here_thumbs), (pool, pool_errors, pool_thumbs) = decoded[1], decoded[2]
  assert len(here) == -(-len(paths) // 8) > 2
  for batch_here, batch_pool in zip(here, pool, strict=True):
    for a, b in zip(batch_here, batch_pool, strict=True):
      np.testing.assert_array_equal(a, b)
  assert pool_errors == here_errors and len(here_errors) == 2
  assert 'broken.png' in pool_errors[paths.index(next(p for p in paths if 'broken' in p))]
  assert pool_thumbs == here_thumbs and len(here_thumbs) == len(paths) - 2


def test_worker_processes_do_not_run_the_callers_script(runs, tmp_path):
  """A spawned process imports its parent's main module; a script without an
  `if __name__ == '__main__':` guard would run again in every decoding worker."""
  image = new_images.find_images(runs['test_images']).paths[0]
  script = tmp_path / 'unguarded.py'
  script.write_text(
      "print('the script ran', flush=True)\n"
      'from simclr_jax.inference import decode_pool\n'
      'pool = decode_pool.process_pool(2)\n'
      f'chunk = [(0, {image!r})]\n'
      'image, error, _ = pool.submit(decode_pool.decode_chunk, chunk, 3, 65535, False).result()[0]\n'
      "print('decoded', image.shape, error, flush=True)\n"
      'pool.shutdown()\n')
  root = pathlib.Path(__file__).resolve().parents[2]
  done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        timeout=120, env={**os.environ, 'PYTHONPATH': str(root)})
  assert done.returncode == 0, done.stderr
  assert done.stdout.count('the script ran') == 1
  assert 'decoded (' in done.stdout and ' None' in done.stdout


def test_two_processes_predict_as_one(runs, images_with_bad_files, tmp_path):
  """predict over two processes (2 CPU devices each, the training launch flags): each
  decodes its rows of every batch, process 0 writes the same rows, errors and page as one
  process does."""
  images = str(images_with_bad_files)
  alone = predictions.predict(runs['finetune'], images, str(tmp_path / 'one' / 'p.csv'))
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  root = pathlib.Path(__file__).resolve().parents[2]
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count=2 {FAST_COMPILE_FLAG}')
  env.pop('JAX_COORDINATOR_ADDRESS', None)
  two = tmp_path / 'two' / 'p.csv'
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'simclr_jax.predict', f"--workdir={runs['finetune']}",
       f'--images={images}', f'--out={two}', f'--coordinator_address=localhost:{port}',
       '--num_processes=2', f'--process_id={i}'], cwd=root, env=env, text=True,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in (0, 1)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert 'predicted ' in outputs[0] and 'predicted ' not in outputs[1]
  one_rows, two_rows = _read_csv(alone['csv']), _read_csv(two)
  names = alone['class_names']
  for a, b in zip(one_rows, two_rows, strict=True):
    assert (a['path'], a['predicted'], a['true'], a['error']) == (
        b['path'], b['predicted'], b['true'], b['error'])
    if not a['error']:
      np.testing.assert_allclose([float(b[n]) for n in names], [float(a[n]) for n in names],
                                 atol=2e-6)
  assert sum(bool(r['error']) for r in two_rows) == 2
  page = _ImageCounter()
  page.feed(two.with_suffix('.html').read_text())
  assert len(page.images) == len(two_rows) - 2


def test_progress_prints_plain_lines_when_not_a_terminal():
  stream = io.StringIO()
  progress = new_images.Progress(1000, 'predict', stream)
  progress.start -= 20  # 20 s in
  progress.last -= 20
  progress.update(400)
  progress.update(500)  # within 10 s of the last line: silent
  progress.close()
  assert stream.getvalue() == 'predict: 400/1000 images  20 images/s  ETA 0:30\n'


def test_the_benchmark_times_predict_and_the_forward_pass(runs):
  result = predict_bench.benchmark_predict(runs['finetune'], runs['test_images'])
  assert result['num_images'] == result['predicted'] == len(runs['test_paths'])
  assert result['predict_images_per_sec'] > 0 and result['forward_only_images_per_sec'] > 0
  assert result['ratio'] == pytest.approx(
      result['predict_images_per_sec'] / result['forward_only_images_per_sec'], abs=2e-3)
