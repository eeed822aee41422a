#!/usr/bin/env bash
# SimCLR on CIFAR-10 against the published figures, on one GPU in about 8 minutes:
#   1. pretraining, configs/study_cifar10.py:gpu (configs/cifar10.py's recipe: ResNet-18
#      with the CIFAR stem, batch 512, LARS) for EPOCHS epochs (default 200) on the 49,000
#      training images left after validation, kNN monitor every 50 epochs; timed end to end;
#   2. the few-label study at GPU size on that pretraining (1 seed: linear evaluation at
#      1 %, 10 % and all labels, fine-tuning at 1 % and 10 %, the supervised control and
#      random features), every model scored on the 10,000 official test images;
#   3. the figures with their goals (benchmarks/gpu_cifar10_figures.py): linear top-1 with
#      all labels, kNN top-1 (k = 200, cosine) on frozen h, the epoch time, the study's rows.
#
#   benchmarks/gpu_cifar10.sh [PACKED_CIFAR10] [TIME_LIMIT_SECONDS]
#
# PACKED_CIFAR10: ../shared/datasets/cifar10/cifar10-jpeg.tar.gz copied into the ignored
# folder .data/ (the default path), which a device call names in carry. TIME_LIMIT_SECONDS
# (default 470) bounds steps 1 and 2 together; the figures of whatever finished are printed.
# Needs jax with CUDA, flax, optax, orbax, absl-py, numpy, pillow, scikit-learn,
# matplotlib; ml_collections from .whl/ when missing (benchmarks/gpu_env.sh). No
# TensorFlow. Logs and the study's workdir go to $OUT (a temporary folder when unset).
# EXTRA_ARGS is appended to both commands (the last value of a flag wins): a CPU smoke test
# of this script sets the config's tiny sizes with it.
set -eu -o pipefail
cd "$(dirname "$0")/.."
PACKED=${1:-.data/cifar10-jpeg.tar.gz}
LIMIT=${2:-470}
EPOCHS=${EPOCHS:-200}
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
DATA=${DATA:-/tmp/cifar10}
START=$(date +%s)
mkdir -p "$OUT" "$DATA"

# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh
"$PY" - <<'PYEOF'
import json, jax
print(json.dumps({'figure': 'machine', 'jax': jax.__version__,
                  'devices': [d.device_kind for d in jax.devices()],
                  'backend': jax.default_backend()}), flush=True)
PYEOF

tar xzf "$PACKED" -C "$DATA"
STUDY=$OUT/study
COMMON=(--config=configs/study_cifar10.py:gpu --config.data.path="$DATA"
        --config.num_epochs="$EPOCHS")
# Seconds left of LIMIT, at least 1 (timeout 0 would mean no limit at all).
left() { local s=$(( LIMIT - ($(date +%s) - START) )); echo $(( s > 1 ? s : 1 )); }

# 1. Pretraining into the study's own place for it: the sweep then finds it finished.
PRETRAIN_START=$(date +%s)
set +e
# shellcheck disable=SC2086
timeout "$(left)" "$PY" -m simclr_jax.pretrain "${COMMON[@]}" \
  --workdir="$STUDY/simclr/pretrain" ${EXTRA_ARGS:-} >"$OUT/pretrain.log" 2>&1
STATUS=$?
set -e
PRETRAIN_S=$(( $(date +%s) - PRETRAIN_START ))
echo "{\"figure\": \"pretrain\", \"exit\": $STATUS, \"wall_s\": $PRETRAIN_S, \"epochs\": $EPOCHS}"
[ "$STATUS" = 0 ] || tail -n 20 "$OUT/pretrain.log" >&2

# 2. The study, on the same split (split.json) and the finished pretraining.
if [ "$STATUS" = 0 ] && [ "$(left)" -gt 10 ]; then
  cp "$STUDY/simclr/pretrain/split.json" "$STUDY/split.json"
  set +e
  # shellcheck disable=SC2086
  timeout "$(left)" "$PY" -m simclr_jax.sweep "${COMMON[@]}" --workdir="$STUDY" \
    ${EXTRA_ARGS:-} >"$OUT/study.log" 2>&1
  STUDY_STATUS=$?
  set -e
  echo "{\"figure\": \"study\", \"exit\": $STUDY_STATUS, \"wall_s\": $(( $(date +%s) - START ))}"
  [ "$STUDY_STATUS" = 0 ] || tail -n 20 "$OUT/study.log" >&2
fi

# 3. Every figure with its goal.
"$PY" benchmarks/gpu_cifar10_figures.py "$STUDY" "$PRETRAIN_S"
