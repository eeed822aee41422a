"""benchmarks/scaling_table.py: its formulas give back the measured single-device figures."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / 'benchmarks' / 'scaling_table.py'


@pytest.fixture(scope='module')
def table():
  spec = importlib.util.spec_from_file_location('scaling_table', _PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize('name,batch,images_per_s', [('resnet50', 256, 2954),
                                                      ('resnet18', 1024, 43363)])
def test_one_h100_reproduces_the_measured_step(table, name, batch, images_per_s):
  row = table.row(table.MODELS[name], table.HARDWARE['h100'], 1, batch)
  assert not row['grad_cache'] and row['gather_ms'] == 0 and row['grads_ms'] == 0
  # The measured step already holds the NT-Xent and batch-norm work of one device.
  compute_rate = batch / (row['compute_ms'] / 1e3)
  assert compute_rate == pytest.approx(images_per_s, rel=0.005)


def test_collectives_follow_the_ring_formulas(table):
  h100 = table.HARDWARE['h100']
  one_gb = 1e9
  assert table.all_reduce_seconds(one_gb, 8, h100) == pytest.approx(2 * 7 / 8 / 360)
  # Two nodes: the NVLink part, plus half the array over the 8 NICs of a node.
  assert table.gather_seconds(one_gb, 16, h100) == pytest.approx(7 / 8 / 360 + 0.5 / (8 * 40))


def test_the_script_prints_its_tables(table, capsys, monkeypatch):
  monkeypatch.setattr('sys.argv', ['scaling_table.py', '--model=resnet50', '--hardware=v5p',
                                   '--batches=4096'])
  table.main()
  out = capsys.readouterr().out
  assert '### ResNet-50, 224 px on TPU v5p' in out and '| 32 | 4,096 | 128 |' in out
