"""Prints issue 12's Goals rows from gpu_check.sh's outputs, one JSON line each.

  python benchmarks/gpu_summary.py goals OUT_DIR       # from the two bench logs
  python benchmarks/gpu_summary.py study STUDY_WORKDIR  # every finished sub-run
"""

import json
import pathlib
import sys

H100_R18_B1024 = 43_400  # README: ResNet-18 small stem, 32 px, batch 1024, H100 images/s
EPOCH_IMAGES = 50_000


def _last_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text().strip().splitlines()[-1])
  except (OSError, IndexError, ValueError):
    return None


def _throughputs(result):
  return {k: result.get(k) for k in ('end_to_end_images_per_sec', 'step_only_images_per_sec',
                                     'loader_only_images_per_sec', 'device_resident')}


def goals(out: pathlib.Path):
  r50 = _last_json(out / 'resnet50_224px_b256_blur.log')
  r18 = _last_json(out / 'resnet18_32px_b1024_epoch.log')
  rows = []
  if r50:
    rows.append({'goal': 'end-to-end / step-only, ResNet-50 224 px b256 blur, >= 0.95',
                 'value': r50['ratio'], **_throughputs(r50)})
  if r18:
    per_image = r18['end_to_end_seconds'] / (r18['end_to_end_steps'] * r18['batch_size'])
    rows += [
        {'goal': 'end-to-end / step-only, ResNet-18 small stem 32 px b1024, >= 0.95',
         'value': r18['ratio'], **_throughputs(r18)},
        {'goal': 'one epoch of 50,000 32 px images, ResNet-18 b1024, end to end (s), <= 2',
         'value': round(per_image * EPOCH_IMAGES, 2),
         'measured': f"{r18['end_to_end_steps']} steps x {r18['batch_size']} in "
                     f"{r18['end_to_end_seconds']} s"},
        {'goal': 'ResNet-18 32 px b1024 step images/s vs 43,400 (H100), >= 1.15x',
         'value': round(r18['step_only_images_per_sec'] / H100_R18_B1024, 3),
         'images_per_sec': r18['step_only_images_per_sec']},
    ]
  for row in rows:
    print(json.dumps(dict(figure='goal', **row)))


def study(workdir: pathlib.Path):
  for path in sorted(workdir.glob('*/*/frac_*/seed_*/metrics.json')):
    point, protocol, frac, seed = path.parts[-5:-1]
    m = json.loads(path.read_text())
    print(json.dumps({'figure': 'cric_run', 'start': point, 'protocol': protocol,
                      'fraction': float(frac[5:]), 'seed': int(seed[5:]),
                      'balanced_accuracy': m.get('balanced_accuracy'), 'top1': m.get('top1')}))
  pretrain = workdir / 'simclr' / 'pretrain' / 'metrics.json'
  if pretrain.exists():
    m = json.loads(pretrain.read_text())
    print(json.dumps({'figure': 'cric_pretrain', **{k: m.get(k) for k in (
        'status', 'step', 'loss', 'images_per_sec', 'knn_top1', 'probe_test_top1')}}))
  report = workdir / 'report.md'
  print(json.dumps({'figure': 'cric_report', 'written': report.exists()}))
  if report.exists():
    print(report.read_text()[:4000])


if __name__ == '__main__':
  {'goals': goals, 'study': study}[sys.argv[1]](pathlib.Path(sys.argv[2]))
