"""Writing results: `WORKDIR/metrics.json`, which every entry point writes when it ends."""

import json
import math
import os

import numpy as np


def _jsonable(value):
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (np.floating, float)):
    value = float(value)
    return value if math.isfinite(value) else None
  if hasattr(value, 'item') and getattr(value, 'shape', None) == ():
    return _jsonable(value.item())
  return value


def write_metrics_json(workdir: str, metrics: dict) -> str:
  """Writes atomically (temp file, then rename), so a reader never sees half a file."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'metrics.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(_jsonable(metrics), f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(tmp, path)
  return path
