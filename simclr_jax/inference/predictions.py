"""Class predictions of a trained classifier for new images: the CSV, metrics.json and the
page that python -m simclr_jax.predict writes (its docstring says what each holds)."""

import csv
import json
import os

import jax
import numpy as np

from simclr_jax.errors import PathTaken, UserError
from simclr_jax.evaluation import trained_model
from simclr_jax.evaluation import predictions_page
from simclr_jax.inference import new_images
from simclr_jax.runtime import distributed, metrics, parallel

DEFAULT_OUT = os.path.join('predict', 'predictions.csv')


def softmax_probs(model, images):
  return {'probs': jax.nn.softmax(model(images, train=False), axis=-1)}


def output_paths(workdir: str, out: str | None) -> dict:
  """{'csv', 'html', 'metrics'}; stops before any work if metrics.json there is a
  training run's."""
  csv_path = os.path.abspath(os.path.expanduser(out or os.path.join(workdir, DEFAULT_OUT)))
  if not csv_path.lower().endswith('.csv'):
    raise UserError(f'--out={out}: expected a file name ending in .csv')
  folder_path = os.path.dirname(csv_path)
  metrics_path = os.path.join(folder_path, 'metrics.json')
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      try:
        protocol = json.load(f).get('protocol')
      except ValueError:
        protocol = None
    if protocol != 'predict':
      raise PathTaken(f'--out={out}: {metrics_path} belongs to another run (protocol '
                      f'{protocol!r}); write the predictions to another folder')
  return {'csv': csv_path, 'html': csv_path[:-4] + '.html', 'metrics': metrics_path}


def write_csv(path: str, rows: list[dict], class_names, with_truth: bool) -> None:
  columns = ['path', 'predicted', *class_names] + (['true'] if with_truth else []) + ['error']
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      probs = [f'{p:.6f}' for p in row['probs']] if row['probs'] is not None else [''] * len(
          class_names)
      writer.writerow([row['path'], row['predicted'] or '', *probs]
                      + ([row['true'] or ''] if with_truth else []) + [row['error'] or ''])
  os.replace(tmp, path)


def predict(workdir: str, images: str, out: str | None = None, batch_size: int = 0,
            page: bool = True) -> dict:
  """Predicts every image of `images` with the classifier in `workdir`; -> metrics.json's
  content (with 'rows': one dict per image)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  trained_model.check_classifier_workdir(workdir)
  paths = output_paths(workdir, out)
  mesh = parallel.make_mesh()
  run = trained_model.load_classifier(workdir, mesh)
  names = list(run.class_names)
  found = new_images.find_images(images, names)
  outputs, order, errors, thumbs = new_images.apply_to_images(
      run, softmax_probs, found, mesh, batch_size or run.config.eval_batch_size, 'predict',
      thumbnails=page)
  probs = dict(zip(order.tolist(), outputs.get('probs', np.zeros((0, len(names))))))
  rows = []
  for i, path in enumerate(found.paths):
    p = probs.get(i)
    rows.append({'path': path, 'probs': p, 'predicted': names[int(np.argmax(p))] if p is not None
                 else None, 'true': names[found.labels[i]] if found.labels is not None else None,
                 'error': errors.get(i)})
  result = {'protocol': 'predict', 'workdir': workdir, 'images': images,
            'num_images': len(rows), 'num_errors': len(errors), 'class_names': names,
            'csv': paths['csv']}
  if found.labels is not None and len(order):
    truth = found.labels[order]
    predicted = outputs['probs'].argmax(1)
    try:
      positive = metrics.parse_positive_classes(run.config.positive_classes, names)
    except ValueError:
      positive = []
    result.update(metrics.classification_metrics(truth, predicted, len(names),
                                                 probs=outputs['probs'],
                                                 positive_classes=positive))
  if distributed.is_main_process():
    write_csv(paths['csv'], rows, names, found.labels is not None)
    if page:
      predictions_page.write_page(paths['html'], rows, names, thumbs,
                                  result.get('confusion_matrix'), title=workdir)
      result['html'] = paths['html']
    metrics.write_metrics_json(os.path.dirname(paths['csv']), result)
  return dict(result, rows=rows)


def summary_lines(result: dict) -> list[str]:
  lines = [f"predicted {result['num_images'] - result['num_errors']} of "
           f"{result['num_images']} images; {result['num_errors']} could not be read"
           + (' (see the error column)' if result['num_errors'] else '')]
  if 'top1' in result:
    names = result['class_names']
    lines.append(f"top-1 {result['top1']:.4f}  balanced accuracy "
                 f"{result['balanced_accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}  "
                 f"({result['num_test']} images)")
    width = max(len(n) for n in names) + 2
    lines.append('confusion matrix (rows: true, columns: predicted)')
    lines.append(' ' * width + ''.join(f'{n[:8]:>9}' for n in names))
    for name, counts in zip(names, result['confusion_matrix']):
      lines.append(f'{name:<{width}}' + ''.join(f'{c:>9}' for c in counts))
  lines.append(f"-> {result['csv']}" + (f"  {result['html']}" if 'html' in result else ''))
  return lines
