"""configs/study_cifar10.py at its tiny size on a generated folder with train/ and test/:
the whole study runs, and every model is scored on exactly the images of test/."""

import csv
import importlib.util
import json
import os
import pathlib
import tempfile

import jax
import numpy as np
import pytest
from PIL import Image

from simclr_jax.config import checks as config_checks
from simclr_jax.experiments import study
from simclr_jax.training import knn

_ROOT = pathlib.Path(__file__).resolve().parents[2]
_CONFIG = _ROOT / 'configs' / 'study_cifar10.py'
# 8 classes: 1 % of the labels is then one image per class, 8 in all, one per simulated device.
_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'ship')
_TRAIN, _TEST = 12, 2  # per class


def _module(path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _get_config(arg):
  return _module(_CONFIG).get_config(arg)


def _cifar_like_folder(root):
  rng = np.random.default_rng(0)
  for split, count in (('train', _TRAIN), ('test', _TEST)):
    for label, name in enumerate(_CLASSES):
      (root / split / name).mkdir(parents=True)
      for i in range(count):
        image = rng.integers(0, 256, (16, 16, 3), np.uint8)
        image[..., label % 3] = 255  # a class colour, so the labels mean something
        Image.fromarray(image).save(root / split / name / f'{i:04d}.png')
  return root


@pytest.mark.parametrize('variant', [None, 'gpu', 'tiny'])
def test_config_variants_pass_the_checks(variant):
  config_checks.check(_get_config(variant))


def test_tiny_study_scores_every_model_on_the_test_folder(tmp_path):
  if not jax.config.jax_compilation_cache_dir:  # shared with the other study tests
    jax.config.update('jax_compilation_cache_dir',
                      os.path.join(tempfile.gettempdir(), 'simclr_jax_test_jax_cache'))
  config = _get_config('tiny')
  config.data.path = str(_cifar_like_folder(tmp_path / 'cifar'))
  # SimCLR at 1 % alone: the control, random features and other fractions take the same
  # paths (test_evaluation_study.py runs them); each sub-run here is mostly compilation.
  config.study.starting_points, config.study.label_fractions = 'simclr', '0.01'
  workdir = tmp_path / 'study'
  summary = study.run_study(config, str(workdir))
  # pretraining, then linear evaluation at 1 % and 100 % and fine-tuning at 1 %
  assert summary['num_runs'] == 3 and not summary['failed']
  split = json.loads((workdir / 'split.json').read_text())
  assert sorted(e['path'] for e in split['splits']['test']) == sorted(
      str(p.relative_to(config.data.path)) for p in pathlib.Path(config.data.path, 'test').rglob('*.png'))
  with open(workdir / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert sorted((r['protocol'], float(r['label_fraction'])) for r in rows) == [
      ('finetune', 0.01), ('linear', 0.01), ('linear', 1.0)]
  scored = [json.loads(p.read_text()) for p in workdir.glob('simclr/*/frac_*/seed_*/metrics.json')]
  assert [m['num_test'] for m in scored] == [len(_CLASSES) * _TEST] * 3
  assert {m['num_train'] for m in scored if m['label_fraction'] < 1} == {len(_CLASSES)}
  # Each run's page of test predictions names the test/ files, in the split's order.
  test_files = [e['path'] for e in split['splits']['test']]
  page = (workdir / 'simclr/finetune/frac_0.01/seed_0/test_predictions.html').read_text()
  assert all(f'title="{path}"' in page for path in test_files)
  assert page.count('<img') == len(test_files)

  # benchmarks/gpu_cifar10.sh's figures, read from the same kind of workdir.
  figures = {r['figure']: r for r in _module(_ROOT / 'benchmarks' / 'gpu_cifar10_figures.py')
             .figures(workdir, pretrain_seconds=6.0)}
  all_labels = json.loads((workdir / 'simclr/linear/frac_1/seed_0/metrics.json').read_text())
  assert figures['linear_top1']['value'] == round(all_labels['top1'], 4)
  with np.load(workdir / 'simclr' / 'features.npz') as f:
    assert figures['knn_top1']['value'] == round(knn.knn_top1(
        f['train_h'], f['train_y'], f['test_h'], f['test_y'], 200), 4)
  pretrain = json.loads((workdir / 'simclr/pretrain/metrics.json').read_text())
  epochs = config.num_steps * config.batch_size / pretrain['num_pretrain']  # 2 steps of 16
  assert figures['epoch_seconds']['value'] == round(6.0 / epochs, 4)
  assert figures['epoch_seconds']['met'] is False
