#!/usr/bin/env bash
# Cloud TPU VM: create it, install this repo on every worker, run, delete.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh SUBCOMMAND --name=TPU --zone=ZONE [--project=PROJECT] [options]

  create   [--accelerator-type=v5litepod-8] [--version=RUNTIME] [gcloud flags, e.g. --spot]
           Creates the TPU VM. The runtime defaults to the one the Cloud TPU docs give
           for the generation: v6e v2-alpha-tpuv6e, v5e (v5litepod) v2-alpha-tpuv5-lite,
           v5p v2-alpha-tpuv5, v2/v3/v4 tpu-ubuntu2204-base.
  install  [--repo=GIT_URL [--ref=REF]] [--dir=simclr_jax] [--python=python3.11]
           (REF: a commit, a tag or origin/BRANCH; default origin/HEAD)
           On every worker: copies this working tree (files git does not ignore), or
           clones GIT_URL, into ~/DIR, makes a virtual environment and installs
           requirements.txt plus jax[tpu] of the pinned jax version.
  run      [--entry=NAME] [--dir=simclr_jax] --config=configs/NAME.py --workdir=DIR
           [--config.KEY=VALUE ...]
           On every worker at once (one process per worker):
           python -m simclr_jax.NAME --config=... --workdir=... [overrides]
           NAME: pretrain (default), linear_eval, finetune, sweep or bench. Every
           argument that is not a launcher option goes to python unchanged.
           jax.distributed.initialize() reads the workers from the TPU metadata, so
           no coordinator flags are needed. DIR must be a gs://bucket/path (orbax
           writes checkpoints to GCS directly) or a filesystem all workers share.
           After a failure it prints the command that resumes from the last
           checkpoint (the same command); the first log lines marked
           `[process i/n]` with an error name the worker that failed first.
  delete   [gcloud flags, e.g. --quiet]

--name, --zone and --project default to $TPU_NAME, $TPU_ZONE and $TPU_PROJECT.
Environment: DRY_RUN=1 prints the commands instead of running them.

Example (a 2-worker v5e slice):
  export TPU_NAME=simclr TPU_ZONE=us-west4-a
  launch/tpu_vm.sh create --accelerator-type=v5litepod-16
  launch/tpu_vm.sh install
  launch/tpu_vm.sh run --config=configs/cytology.py --workdir=gs://my-bucket/cyto \
      --config.batch_size=4096
  launch/tpu_vm.sh delete
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
  echo "tpu_vm.sh: error: $*" >&2
  echo "Run 'launch/tpu_vm.sh --help' for usage." >&2
  exit 2
}

default_version() {
  case "$1" in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    *) echo tpu-ubuntu2204-base ;;
  esac
}

(($#)) || { usage >&2; exit 2; }
# Running this again with the same arguments resumes from the workdir's last checkpoint.
resume_command="$(printf '%q ' "$0" "$@")"
resume_command="${resume_command% }"
subcommand="$1"
shift
case "$subcommand" in
  -h | --help) usage; exit 0 ;;
  create | install | run | delete) ;;
  *) die "unknown subcommand '$subcommand' (create, install, run or delete)" ;;
esac

name="${TPU_NAME:-}"
zone="${TPU_ZONE:-}"
project="${TPU_PROJECT:-}"
accelerator=v5litepod-8
version=
repo=
ref=
dir=simclr_jax
python=python3.11
entry=pretrain
rest=() # gcloud flags for create/delete, python arguments for run
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --name=*) name="${arg#*=}" ;;
    --zone=*) zone="${arg#*=}" ;;
    --project=*) project="${arg#*=}" ;;
    --accelerator-type=*) accelerator="${arg#*=}" ;;
    --version=*) version="${arg#*=}" ;;
    --repo=*) repo="${arg#*=}" ;;
    --ref=*) ref="${arg#*=}" ;;
    --dir=*) dir="${arg#*=}" ;;
    --python=*) python="${arg#*=}" ;;
    --entry=*) entry="${arg#*=}" ;;
    *) rest+=("$arg") ;;
  esac
done
[[ -n "$name" ]] || die "--name=TPU (or \$TPU_NAME) is required"
[[ -n "$zone" ]] || die "--zone=ZONE (or \$TPU_ZONE) is required"
target=("$name" "--zone=$zone")
[[ -z "$project" ]] || target+=("--project=$project")

# Runs a shell command on every worker of the TPU VM at the same time.
on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "${target[@]}" --worker=all --command="$1"
}

case "$subcommand" in
  create)
    run gcloud compute tpus tpu-vm create "${target[@]}" \
      "--accelerator-type=$accelerator" "--version=${version:-$(default_version "$accelerator")}" \
      "${rest[@]}"
    ;;

  install)
    ((${#rest[@]} == 0)) || die "install: unknown arguments: ${rest[*]}"
    qdir="$(printf %q "$dir")"
    if [[ -n "$repo" ]]; then
      # Detached at REF, so a rerun moves every worker to exactly the same commit.
      fetch="[ -d $qdir/.git ] || git clone -q $(printf %q "$repo") $qdir; \
git -C $qdir fetch -q --tags origin; git -C $qdir checkout -q --detach $(printf %q "${ref:-origin/HEAD}")"
    else
      root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
      tarball="${TMPDIR:-/tmp}/simclr_jax_$$.tgz"
      # The files git tracks or would track: no .venv, caches or workdirs.
      list=(git -C "$root" ls-files -z --cached --others --exclude-standard)
      pack=(tar -C "$root" --null --ignore-failed-read -T - -czf "$tarball")
      if [[ "${DRY_RUN:-0}" == 1 ]]; then
        echo "$(printf '%q ' "${list[@]}")| $(printf '%q ' "${pack[@]}")"
      else
        "${list[@]}" | "${pack[@]}"
      fi
      run gcloud compute tpus tpu-vm scp "$tarball" "$name:simclr_jax.tgz" "${target[@]:1}" --worker=all
      fetch="mkdir -p $qdir && tar -xzf simclr_jax.tgz -C $qdir"
    fi
    qpy="$(printf %q "$python")"
    # TPU VM images ship Ubuntu 22.04's Python 3.10; jax 0.10 needs >= 3.11.
    # The jax[tpu] version is read on the worker so it always matches its requirements.txt.
    on_all_workers "set -e; $fetch; cd $qdir; \
command -v $qpy >/dev/null || { sudo apt-get update -q && sudo apt-get install -yq $qpy $qpy-venv; }; \
$qpy -m venv .venv; .venv/bin/pip install -q -U pip; \
.venv/bin/pip install -q -r requirements.txt \"jax[tpu]==\$(sed -n 's/^jax==//p' requirements.txt)\""
    ;;

  run)
    case "$entry" in
      pretrain | linear_eval | finetune | sweep | bench) ;;
      *) die "unknown --entry=$entry (pretrain, linear_eval, finetune, sweep or bench)" ;;
    esac
    config='' workdir=''
    for arg in "${rest[@]}"; do
      case "$arg" in
        --config | --config=*) config=1 ;;
        --workdir=*) workdir="${arg#*=}" ;;
        --workdir) workdir=1 ;;
      esac
    done
    [[ -n "$config" ]] || die "run: --config=configs/NAME.py is required"
    [[ -n "$workdir" ]] || die "run: --workdir=DIR is required"
    if [[ "$workdir" != gs://* ]]; then
      echo "tpu_vm.sh: warning: --workdir=$workdir is not a gs:// path; with several" \
        "workers it must be a filesystem they all share" >&2
    fi
    status=0
    on_all_workers "cd $(printf %q "$dir") && .venv/bin/python -m simclr_jax.$entry$(printf ' %q' "${rest[@]}")" ||
      status=$?
    if ((status != 0)); then
      echo "tpu_vm.sh: the run failed on at least one worker (exit status $status); the" \
        "first error line marked [process i/n] above names the one that failed first. To" \
        "resume from the last checkpoint in the workdir, run: $resume_command" >&2
      exit "$status"
    fi
    ;;

  delete)
    run gcloud compute tpus tpu-vm delete "${target[@]}" "${rest[@]}"
    ;;
esac
