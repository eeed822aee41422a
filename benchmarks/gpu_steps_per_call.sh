#!/usr/bin/env bash
# config.steps_per_call on one GPU: ResNet-18 small stem, 32 px, batch 1024, bfloat16,
# 50,000 in-memory images, end to end and step only, for each K:UNROLL in VARIANTS (default
# "1:0 4:0 10:0 4:4": K steps per call, the scan unrolled UNROLL steps, 0 = the platform's
# default, step_blocks.SCAN_UNROLL; the cifar10 config logs every 100 steps, which 4 and 10
# divide). About 5 minutes on one H100/H200. Every figure is a JSON line on stdout; logs go to $OUT (a temporary folder
# when unset).
#
#   benchmarks/gpu_steps_per_call.sh
#
# Needs jax with CUDA, flax, optax, orbax, absl-py, numpy; ml_collections (and PyYAML) are
# unpacked from .whl/ when missing. No TensorFlow needed.
set -eu -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh
BENCH='import sys; from absl import app; from simclr_jax import bench; from simclr_jax.training import step_blocks
step_blocks.SCAN_UNROLL = int(sys.argv[1]) or None; sys.argv = sys.argv[1:]; app.run(bench.main)'
for VARIANT in ${VARIANTS:-1:0 4:0 10:0 4:4}; do
  K=${VARIANT%%:*} UNROLL=${VARIANT##*:}
  # shellcheck disable=SC2086
  if timeout "${LIMIT:-150}" "$PY" -c "$BENCH" "$UNROLL" --end_to_end --config=configs/cifar10.py \
      --config.batch_size=1024 --config.compute_dtype=bfloat16 --config.steps_per_call="$K" \
      --steps=${TIMED_STEPS:-96} --warmup=20 --num_images=50000 ${EXTRA_BENCH_ARGS:-} \
      >"$OUT/k${K}_u$UNROLL.log" 2>&1; then
    "$PY" - "$OUT/k${K}_u$UNROLL.log" "$UNROLL" <<'PYEOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
per_image = r['end_to_end_seconds'] / (r['end_to_end_steps'] * r['batch_size'])
print(json.dumps({'figure': 'steps_per_call', 'k': r['steps_per_call'],
                  'unroll': int(sys.argv[2]),
                  'step_only_images_per_sec': r['step_only_images_per_sec'],
                  'vs_h100_43400': round(r['step_only_images_per_sec'] / 43_400, 3),
                  'end_to_end_images_per_sec': r['end_to_end_images_per_sec'],
                  'ratio': r['ratio'], 'epoch_50k_s': round(per_image * 50_000, 2),
                  'step_ms': r['step_ms'], 'compile_s': r['compile_s'],
                  'end_to_end_compile_s': r['end_to_end_compile_s'],
                  'device': r['device_kind']}), flush=True)
PYEOF
  else
    echo "{\"figure\": \"steps_per_call\", \"k\": $K, \"unroll\": $UNROLL, \"error\": \"exit $?, see $OUT/k${K}_u$UNROLL.log\"}"
    tail -n 8 "$OUT/k${K}_u$UNROLL.log"
  fi
done
