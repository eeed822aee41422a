#!/usr/bin/env bash
# Issue 12's GPU figures in one call of about 7 minutes on one H100/H200 (bfloat16):
#   1. end-to-end / step-only, ResNet-50 224 px, batch 256, blur on (imagenet preset)
#   2. end-to-end / step-only, ResNet-18 small stem 32 px, batch 1024; the same run times
#      one epoch of 50,000 in-memory 32 px images end to end, and gives the step's
#      images/s to compare with the README's 43,400 on an H100
#   3. the label-fraction study with configs/cytology.py (ResNet-50, 96 px) on CRIC, in the
#      time left; its table, its wall time, and the finished runs if it ran out of time.
#
#   benchmarks/gpu_check.sh CRIC_FOLDER [TOTAL_SECONDS]
#
# CRIC_FOLDER: one sub-folder per class (e.g. a copy of ../shared/datasets/cric_cervix in
# the repository tree); without it the study is skipped. Needs jax with CUDA, flax, optax,
# orbax, absl-py, tensorboard, numpy, pillow, scikit-learn, matplotlib; ml_collections (and
# PyYAML) are installed from .whl/ when missing. No TensorFlow needed. Every figure is a JSON
# line on stdout; logs and the study's workdir go to $OUT (a temporary folder when unset).
# EXTRA_BENCH_ARGS / EXTRA_STUDY_ARGS are appended to the commands (the last value of a
# flag wins): a CPU smoke test of this script sets tiny models with them.
set -eu -o pipefail
cd "$(dirname "$0")/.."
CRIC=${1:-}
TOTAL=${2:-420}
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
START=$(date +%s)
mkdir -p "$OUT"

# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh  # the study keeps its own cache in its fresh workdir

"$PY" - <<'PYEOF'
import json, jax
print(json.dumps({'figure': 'machine', 'jax': jax.__version__,
                  'devices': [d.device_kind for d in jax.devices()],
                  'backend': jax.default_backend()}), flush=True)
PYEOF

bench() {  # NAME LIMIT_SECONDS ARGS...: one bench run, its JSON line tagged with NAME
  local name=$1 limit=$2
  shift 2
  # shellcheck disable=SC2086
  if timeout "$limit" "$PY" -m simclr_jax.bench --end_to_end "$@" ${EXTRA_BENCH_ARGS:-} \
      >"$OUT/$name.log" 2>&1; then
    echo "{\"figure\": \"$name\", \"result\": $(tail -n 1 "$OUT/$name.log")}"
  else
    echo "{\"figure\": \"$name\", \"error\": \"exit $? after at most ${limit}s, see $OUT/$name.log\"}"
    tail -n 5 "$OUT/$name.log" >&2
  fi
}

bench resnet50_224px_b256_blur 170 --config=configs/imagenet.py --config.batch_size=256 \
  --config.compute_dtype=bfloat16 --steps=30 --warmup=5 --num_images=2048
# 48 steps of 1024 = one epoch of 50,000 images (the last 848 make no full batch).
bench resnet18_32px_b1024_epoch 130 --config=configs/cifar10.py --config.batch_size=1024 \
  --config.compute_dtype=bfloat16 --steps=48 --warmup=5 --num_images=50000

"$PY" benchmarks/gpu_summary.py goals "$OUT" || true

if [ -z "$CRIC" ]; then
  echo '{"figure": "cric_study", "error": "no CRIC folder given"}'
  exit 0
fi
LEFT=$(( TOTAL - ($(date +%s) - START) - 20 ))
if [ "$LEFT" -lt 60 ]; then
  echo "{\"figure\": \"cric_study\", \"error\": \"only ${LEFT}s left of ${TOTAL}s: pass a larger TOTAL_SECONDS\"}"
  exit 0
fi
STUDY_START=$(date +%s)
set +e
# shellcheck disable=SC2086
timeout "$LEFT" "$PY" -m simclr_jax.sweep --config=configs/cytology.py \
  --workdir="$OUT/study_cric" --config.data.path="$CRIC" \
  --config.num_epochs=100 --config.eval_at_end=false --config.study.seeds=1 \
  --config.study.label_fractions="${STUDY_FRACTIONS:-0.1,0.3,0.5}" \
  --config.class_weighting=true --config.finetune_from=head1 \
  --config.finetune.batch_size=32 --config.finetune.num_epochs=12 \
  --config.finetune.min_steps=150 --config.finetune.eval_every_epochs=2 \
  --config.finetune.select_metric=balanced_accuracy --config.finetune.optim.base_lr=0.4 \
  --config.linear.select_metric=balanced_accuracy ${EXTRA_STUDY_ARGS:-} \
  >"$OUT/study_cric.log" 2>&1
STATUS=$?
set -e
echo "{\"figure\": \"cric_study\", \"exit\": $STATUS, \"wall_s\": $(( $(date +%s) - STUDY_START )), \"time_limit_s\": $LEFT}"
"$PY" benchmarks/gpu_summary.py study "$OUT/study_cric"
grep -v '^\[process\|^[IWE][0-9]' "$OUT/study_cric.log" | tail -n 30 || true
echo "{\"figure\": \"total\", \"wall_s\": $(( $(date +%s) - START ))}"
