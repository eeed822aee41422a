#!/usr/bin/env bash
# Train on one machine with several GPUs.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/multi_gpu.sh [--entry=NAME] [--processes=N] [--port=PORT] [--gpus=0,1,...]
                           --config=configs/NAME.py --workdir=DIR [--config.KEY=VALUE ...]

Runs `python -m simclr_jax.NAME --config=... --workdir=... [overrides]` on this machine.
Everything that is not a launcher option is passed to python unchanged.

  --entry=NAME     pretrain (default), linear_eval, finetune, sweep or bench
  --processes=N    1 (default, recommended): one process drives every local GPU.
                   N > 1: start N processes on localhost, each with its share of
                   the GPUs (CUDA_VISIBLE_DEVICES) and explicit
                   --coordinator_address=localhost:PORT --num_processes=N --process_id=i.
                   If one fails the others are stopped and its exit status is returned.

After a failed run the script prints which process failed first and the command
that resumes it from the last checkpoint in the workdir (the same command).
  --port=PORT      coordinator port for --processes > 1 (default 12355)
  --gpus=LIST      GPUs to use with --processes > 1 (default: $CUDA_VISIBLE_DEVICES,
                   else all that nvidia-smi lists)

Environment: PYTHON (default: python), DRY_RUN=1 prints the commands instead of running them.

Example:
  launch/multi_gpu.sh --config=configs/cytology.py --workdir=workdirs/cyto --config.batch_size=1024
EOF
}

# Prints the command, shell-quoted, under DRY_RUN=1; runs it otherwise.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

die() {
  echo "multi_gpu.sh: error: $*" >&2
  echo "Run 'launch/multi_gpu.sh --help' for usage." >&2
  exit 2
}

# The command as typed: running it again resumes from the workdir's last checkpoint.
resume_command="$(printf '%q ' "$0" "$@")"

# After a failure: which process failed first, and how to go on.
report_failure() { # STATUS [WHO]
  local how="exit status $1"
  (($1 > 128)) && how+=" (killed by signal $(($1 - 128)))"
  echo "multi_gpu.sh: ${2:-the run} failed first with $how. To resume from the last" \
    "checkpoint in the workdir, run: ${resume_command% }" >&2
}

entry=pretrain
processes=1
port=12355
gpus="${CUDA_VISIBLE_DEVICES:-}"
args=()
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --entry=*) entry="${arg#*=}" ;;
    --processes=*) processes="${arg#*=}" ;;
    --port=*) port="${arg#*=}" ;;
    --gpus=*) gpus="${arg#*=}" ;;
    *) args+=("$arg") ;;
  esac
done

has_flag() {
  local a
  for a in "${args[@]}"; do
    [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0
  done
  return 1
}

case "$entry" in
  pretrain | linear_eval | finetune | sweep | bench) ;;
  *) die "unknown --entry=$entry (pretrain, linear_eval, finetune, sweep or bench)" ;;
esac
has_flag --config || die "--config=configs/NAME.py is required"
has_flag --workdir || die "--workdir=DIR is required"
[[ "$processes" =~ ^[1-9][0-9]*$ ]] || die "--processes must be a positive integer"

cmd=("${PYTHON:-python}" -m "simclr_jax.$entry" "${args[@]}")

if ((processes == 1)); then
  # JAX sees every visible GPU from one process: no coordinator needed.
  status=0
  run "${cmd[@]}" || status=$?
  ((status == 0)) || report_failure "$status"
  exit "$status"
fi

if [[ -z "$gpus" ]]; then
  if [[ "${DRY_RUN:-0}" == 1 ]] || ! command -v nvidia-smi >/dev/null; then
    die "cannot tell which GPUs to use; pass --gpus=0,1,... or set CUDA_VISIBLE_DEVICES"
  fi
  gpus="$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)"
fi
IFS=, read -r -a gpu_list <<<"$gpus"
((${#gpu_list[@]} % processes == 0)) ||
  die "${#gpu_list[@]} GPUs ($gpus) do not split evenly over $processes processes"
per_process=$((${#gpu_list[@]} / processes))

pids=()
declare -A process_of # pid -> process id
# Whatever ends this script (failure, Ctrl-C) must not leave processes behind.
cleanup() {
  ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ((i = 0; i < processes; i++)); do
  mine="$(IFS=,; echo "${gpu_list[*]:i*per_process:per_process}")"
  proc_cmd=(env "CUDA_VISIBLE_DEVICES=$mine" "${cmd[@]}"
    "--coordinator_address=localhost:$port" "--num_processes=$processes" "--process_id=$i")
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    run "${proc_cmd[@]}"
  else
    "${proc_cmd[@]}" &
    pids+=($!)
    process_of[$!]=$i
  fi
done

# Wait for all; the first failure stops the rest (they would hang on collectives).
status=0
for ((k = 0; k < ${#pids[@]}; k++)); do
  wait -n -p ended || { status=$?; break; }
done
if ((status != 0)); then
  report_failure "$status" "process ${process_of[$ended]} of $processes (pid $ended)"
  exit "$status" # the EXIT trap stops the others
fi
pids=()
