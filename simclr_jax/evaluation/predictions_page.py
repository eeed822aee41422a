"""predictions.html: one self-contained page of a prediction run (predict, or a study sub-run's
test split), readable offline.

A gallery per predicted class, most confident first, each image (a PNG thumbnail
embedded as base64) with its class probabilities. When the truth is known each gallery is
split by true class, the misclassified groups marked, and every cell of the confusion
matrix links to its group, so each image appears once. Files that could not be read are
listed with their error.
"""

import base64
import html
import io
import os

import numpy as np
from PIL import Image

_STYLE = """
body{font-family:sans-serif;margin:16px;color:#222}
h1{font-size:20px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:14px;margin:12px 0 4px}h3.wrong{color:#b00}
.grid{display:flex;flex-wrap:wrap;gap:6px}
.cell{width:112px;border:1px solid #ddd;padding:3px;font-size:10px;background:#fafafa}
.cell.wrong{border:2px solid #c00;background:#fff0f0}
.cell img{width:104px;height:104px;object-fit:contain;image-rendering:pixelated;display:block}
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.p{display:flex;justify-content:space-between}.p.top{font-weight:bold}
table.cm{border-collapse:collapse;font-size:12px}
table.cm td,table.cm th{border:1px solid #ccc;padding:3px 6px;text-align:right}
table.cm td.diag{background:#e8f5e9}table.cm td.off{background:#ffebee}
"""


def thumbnail_png(image: np.ndarray, side: int = 96) -> bytes:
  """A decoded uint8 [H, W, C] image as a small PNG (grey, RGB, or the first channel)."""
  array = image[..., :3] if image.shape[2] == 3 else image[..., 0]
  picture = Image.fromarray(np.ascontiguousarray(array))
  picture.thumbnail((side, side))
  out = io.BytesIO()
  picture.save(out, format='PNG')
  return out.getvalue()


# More classes than this: a cell shows its top few probabilities only.
_ALL_PROBS_UP_TO = 6


def _anchor(predicted: int, true: int | None) -> str:
  return f'p{predicted}' + ('' if true is None else f't{true}')


def _cell(row, thumb: bytes, names, wrong: bool) -> str:
  order = np.argsort(-row['probs'])
  shown = order if len(names) <= _ALL_PROBS_UP_TO else order[:3]
  probs = ''.join(f'<div class="p{" top" if k == order[0] else ""}"><span>'
                  f'{html.escape(names[k][:14])}</span><span>{row["probs"][k]:.3f}</span></div>'
                  for k in shown)
  image = base64.b64encode(thumb).decode('ascii')
  name = html.escape(os.path.basename(row['path']))
  truth = f'<div>true: {html.escape(row["true"])}</div>' if wrong else ''
  return (f'<div class="cell{" wrong" if wrong else ""}" title="{html.escape(row["path"])}">'
          f'<img src="data:image/png;base64,{image}" alt="{name}"><div class="name">{name}'
          f'</div>{truth}{probs}</div>')


def _matrix(matrix, names) -> str:
  head = ''.join(f'<th>{html.escape(n)}</th>' for n in names)
  body = []
  for t, counts in enumerate(matrix):
    cells = []
    for p, count in enumerate(counts):
      kind = 'diag' if t == p else ('off' if count else '')
      text = f'<a href="#{_anchor(p, t)}">{count}</a>' if count else '0'
      cells.append(f'<td class="{kind}">{text}</td>')
    body.append(f'<tr><th>{html.escape(names[t])}</th>{"".join(cells)}</tr>')
  return (f'<table class="cm"><tr><th>true \\ predicted</th>{head}</tr>{"".join(body)}'
          '</table>')


def write_page(path: str, rows: list[dict], names, thumbnails: dict, confusion=None,
               title: str = '') -> str:
  """rows: {'path', 'probs' [C] or None, 'true' name or None, 'error'} per image, in the
  CSV's order; thumbnails: row index -> PNG bytes."""
  names = list(names)
  with_truth = any(r['true'] is not None for r in rows)
  index = {n: k for k, n in enumerate(names)}
  ok = [i for i, r in enumerate(rows) if r['probs'] is not None]
  parts = [f'<h1>Predictions: {len(ok)} images</h1>',
           f'<p>Model: {html.escape(title)}</p>' if title else '']
  if with_truth and confusion is not None:
    wrong = sum(1 for i in ok if rows[i]['true'] != rows[i]['predicted'])
    parts.append(f'<h2>Confusion matrix</h2><p>{wrong} of {len(ok)} misclassified '
                 '(red); each count links to its images.</p>' + _matrix(confusion, names))
  for p, name in enumerate(names):
    members = [i for i in ok if index[rows[i]['predicted']] == p]
    parts.append(f'<h2 id="{_anchor(p, None)}">Predicted {html.escape(name)}: '
                 f'{len(members)}</h2>')
    groups = [(None, members)] if not with_truth else [
        (t, [i for i in members if index[rows[i]['true']] == t])
        for t in [p] + [t for t in range(len(names)) if t != p]]
    for t, group in groups:
      if not group:
        continue
      group = sorted(group, key=lambda i: -rows[i]['probs'][p])
      wrong = t is not None and t != p
      if t is not None:
        label = 'correct' if not wrong else f'misclassified, true {html.escape(names[t])}'
        parts.append(f'<h3 id="{_anchor(p, t)}" class="{"wrong" if wrong else ""}">{label}: '
                     f'{len(group)}</h3>')
      parts.append('<div class="grid">' + ''.join(
          _cell(rows[i], thumbnails[i], names, wrong) for i in group) + '</div>')
  failed = [r for r in rows if r['error']]
  if failed:
    parts.append(f'<h2 id="errors">Not read: {len(failed)}</h2><ul>' + ''.join(
        f'<li>{html.escape(r["error"])}</li>' for r in failed) + '</ul>')
  page = ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>Predictions</title>'
          f'<style>{_STYLE}</style></head><body>{"".join(parts)}</body></html>')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page)
  return path
