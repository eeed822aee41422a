#!/usr/bin/env bash
# The projection-head finding (paper Fig. 8 / Table 3) on cytology crops, on one GPU:
# configs/findings_cric.py's recipe (ResNet-18, 64 px, AdamW, batch 64) pretrained for
# EPOCHS (default 60, the CRIC study's length) with heads of 0, 1 and 2 layers, SEEDS seeds
# (default 3), each evaluated linearly on h and on g(h). About 5 minutes on one H100/H200.
#
#   benchmarks/gpu_findings.sh CRIC_FOLDER [TIME_LIMIT_SECONDS]
#
# Writes $OUT/findings/{report.md,results.csv,heads.png}; prints the report, or the
# finished runs' scores when the time limit stops it first. No TensorFlow needed.
set -eu -o pipefail
cd "$(dirname "$0")/.."
CRIC=$1
LIMIT=${2:-380}
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh
# Seeds of one head compile the same step: the persistent cache compiles it once.
export JAX_COMPILATION_CACHE_DIR=/tmp/simclr_jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
START=$(date +%s)
set +e
# shellcheck disable=SC2086
timeout "$LIMIT" "$PY" -m simclr_jax.findings --config=configs/findings_cric.py \
  --workdir="$OUT/findings" --config.data.path="$CRIC" --config.findings.run=heads \
  --config.num_epochs="${EPOCHS:-60}" --config.findings.seeds="${SEEDS:-3}" \
  --config.compute_dtype=bfloat16 ${EXTRA_ARGS:-} >"$OUT/findings.log" 2>&1
STATUS=$?
set -e
echo "{\"figure\": \"findings_heads\", \"exit\": $STATUS, \"wall_s\": $(( $(date +%s) - START ))}"
if [ -f "$OUT/findings/report.md" ]; then
  cat "$OUT/findings/report.md"
else
  tail -n 20 "$OUT/findings.log"
fi
"$PY" - "$OUT/findings" <<'PYEOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob('runs/*/*/seed*/*/metrics.json')):
  finding, variant, seed, run = path.parts[-5:-1]
  m = json.loads(path.read_text())
  keys = ('balanced_accuracy', 'top1', 'loss', 'contrastive_acc', 'step')
  print(json.dumps({'run': f'{finding}/{variant}/{seed}/{run}',
                    **{k: m[k] for k in keys if k in m}}))
PYEOF
