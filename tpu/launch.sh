#!/usr/bin/env bash
# Create a TPU VM (one host or a pod slice), install this checkout on every worker, and
# run an experiment on all workers at once. Walk-through: tpu/README.md.
#
# Every remote command is one string that the worker's login shell parses again, so each
# argument is single-quoted here (POSIX quoting, any shell reads it back verbatim); with
# --dry-run (or DRY_RUN=1) the script prints the local commands it would run, one per
# line, in the same quoting, and runs nothing. Written for bash 3.2 too (macOS).
set -euo pipefail

REMOTE_DIR=rewardjax  # relative to the worker's home directory
SSH=(gcloud compute tpus tpu-vm ssh)
SCP=(gcloud compute tpus tpu-vm scp)

usage() {
  cat <<'EOF'
usage: tpu/launch.sh [--dry-run] COMMAND NAME ZONE [ARGS...]

  create     NAME ZONE ACCELERATOR [GCLOUD_FLAG ...]   e.g. v5litepod-16, v4-32; the
             runtime version follows the accelerator unless a --version=... flag is given
  setup      NAME ZONE                   copy this checkout to every worker, pip install
                                         jax[tpu] and the package (pip install -e .)
  checkpoint NAME ZONE SRC               copy a local HF directory (or gs://...) to
                                         checkpoints/<basename> on every worker
  experiment NAME ZONE EXPERIMENT [--preset P] [--set KEY=VALUE ...] [--out DIR] [--detach]
             python experiments/EXPERIMENT.py on every worker; outputs and one log per
             worker under DIR (default runs/EXPERIMENT-PRESET-<UTC time>, or runs/$RUN_ID)
  run        NAME ZONE [--] CMD [ARG ...]   any command in the checkout on every worker
  fetch      NAME ZONE RUN_DIR [LOCAL_DIR]  copy worker 0's RUN_DIR to LOCAL_DIR (runs/)
  delete     NAME ZONE

Environment: DRY_RUN=1 (as --dry-run), TPU_PYTHON (remote interpreter, python3),
RUN_ID (run directory name under runs/).
EOF
}

die_usage() {
  printf 'launch.sh: %s\n\n' "$1" >&2
  usage >&2
  exit 2
}

# A word the shell reads back verbatim: bare if it has no special characters,
# otherwise single-quoted with each ' written as '\''.
quote() {
  case $1 in
    '' | =* | *[!A-Za-z0-9_./:=@%+,-]*)
      local sq="'" q="'\\''"
      printf "'%s'" "${1//$sq/$q}" ;;
    *) printf '%s' "$1" ;;
  esac
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out="$out${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

do_cmd() {
  if [ "$dry_run" = 1 ]; then
    printf '%s\n' "$(quote_all "$@")"
  else
    printf '+ %s\n' "$(quote_all "$@")" >&2
    "$@"
  fi
}

on_all_workers() {  # on_all_workers REMOTE_COMMAND_STRING
  do_cmd "${SSH[@]}" "$name" --zone="$zone" --worker=all --command "$1"
}

runtime_version() {
  case $1 in
    v6e*) echo v2-alpha-tpuv6e ;;
    v5p*) echo v2-alpha-tpuv5 ;;
    v5litepod* | v5e*) echo v2-alpha-tpuv5-lite ;;
    v2* | v3* | v4*) echo tpu-ubuntu2204-base ;;
    *) die_usage "no default runtime version for accelerator '$1'; pass --version=..." ;;
  esac
}

dry_run=${DRY_RUN:-0}
case $dry_run in 0 | 1) ;; *) die_usage "DRY_RUN must be 0 or 1, got '$dry_run'" ;; esac
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die_usage "unknown option '$1'" ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || die_usage "expected COMMAND NAME ZONE, got ${#} argument(s)"
cmd=$1 name=$2 zone=$3
shift 3
[[ $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
  die_usage "NAME must be lowercase letters, digits and hyphens, got '$name'"
[[ $zone =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] ||
  die_usage "ZONE must look like us-west4-a, got '$zone'"
py=${TPU_PYTHON:-python3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

case $cmd in
  create)
    [ $# -ge 1 ] || die_usage "create needs an ACCELERATOR type, e.g. v5litepod-16"
    accel=$1
    shift
    version_flag=(--version="$(runtime_version "$accel")")
    for flag in "$@"; do
      case $flag in --version | --version=*) version_flag=() ;; esac
    done
    do_cmd gcloud compute tpus tpu-vm create "$name" --zone="$zone" \
      --accelerator-type="$accel" ${version_flag[@]+"${version_flag[@]}"} "$@"
    ;;

  setup)
    [ $# -eq 0 ] || die_usage "setup takes no arguments after ZONE, got '$*'"
    archive=${TMPDIR:-/tmp}/rewardjax-$name.tgz
    # Checkpoints are copied once with `checkpoint`, run outputs stay where they were made.
    do_cmd tar czf "$archive" --exclude=.git --exclude=runs --exclude=outputs \
      --exclude=checkpoints --exclude=.venv --exclude=__pycache__ --exclude=.pytest_cache \
      --exclude='*.egg-info' -C "$root" .
    do_cmd "${SCP[@]}" "$archive" "$name:rewardjax.tgz" --zone="$zone" --worker=all
    q_py=$(quote "$py")
    on_all_workers "mkdir -p $REMOTE_DIR && tar xzf rewardjax.tgz -C $REMOTE_DIR \
&& rm rewardjax.tgz && cd $REMOTE_DIR && $q_py -m pip install -q -U pip \
&& $q_py -m pip install -q -U 'jax[tpu]' && $q_py -m pip install -q -e ."
    ;;

  checkpoint)
    [ $# -eq 1 ] || die_usage "checkpoint needs one SRC (a local directory or gs://...)"
    src=$1
    while [ "${src%/}" != "$src" ] && [ "$src" != / ]; do src=${src%/}; done
    dest=$REMOTE_DIR/checkpoints/
    case $src in
      gs://?*)
        on_all_workers "mkdir -p $dest && gcloud storage cp -r $(quote "$src") $dest" ;;
      *)
        [ -d "$src" ] || die_usage "checkpoint SRC '$src' is not a local directory or gs:// URL"
        on_all_workers "mkdir -p $dest"
        do_cmd "${SCP[@]}" --recurse "$src" "$name:$dest" --zone="$zone" --worker=all ;;
    esac
    printf 'checkpoint on every worker: %s%s (presets read checkpoints/%s)\n' \
      "$dest" "${src##*/}" "${src##*/}" >&2
    ;;

  experiment)
    [ $# -ge 1 ] || die_usage "experiment needs an EXPERIMENT name, e.g. grpo_arith"
    experiment=${1#experiments/}
    experiment=${experiment%.py}
    shift
    if [ ! -f "$root/experiments/$experiment.py" ] || [ "$experiment" = __init__ ]; then
      known=""
      for file in "$root"/experiments/*.py; do
        file=${file##*/}
        [ "$file" = __init__.py ] || known="$known ${file%.py}"
      done
      die_usage "no experiment '$experiment' in experiments/; known:$known"
    fi
    preset="" out="" detach=0 sets=()
    while [ $# -gt 0 ]; do
      case $1 in
        --preset) [ $# -ge 2 ] || die_usage "--preset needs a value"; preset=$2; shift 2 ;;
        --preset=*) preset=${1#--preset=}; shift ;;
        --out) [ $# -ge 2 ] || die_usage "--out needs a value"; out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --detach) detach=1; shift ;;
        --set | --set=*)
          # Both `--set a=1 --set b=2` and `--set a=1 b=2` are accepted; each pair is passed
          # on as its own `--set KEY=VALUE`, which the experiment parser reads either way.
          if [ "$1" = --set ]; then
            shift
            [ $# -ge 1 ] && [ "${1#--}" = "$1" ] || die_usage "--set needs KEY=VALUE"
          else
            set -- "${1#--set=}" "${@:2}"
          fi
          while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do
            case $1 in
              [A-Za-z_]*=*) sets+=(--set "$1"); shift ;;
              *) die_usage "--set expects KEY=VALUE, got '$1'" ;;
            esac
          done ;;
        *) die_usage "unknown experiment option '$1' (use 'run' for anything else)" ;;
      esac
    done
    [ -n "$out" ] || out=runs/${RUN_ID:-$experiment-${preset:-default}-$(date -u +%Y%m%d-%H%M%S)}
    argv=("$py" "experiments/$experiment.py")
    [ -z "$preset" ] || argv+=(--preset "$preset")
    # --distributed: each worker is one process of the pod's jax.distributed job.
    argv+=(${sets[@]+"${sets[@]}"} --out "$out" --distributed)
    q_out=$(quote "$out")
    log="$q_out/logs/\"\$(hostname)\".log"
    prefix="cd $REMOTE_DIR && mkdir -p $q_out/logs &&"
    if [ "$detach" = 1 ]; then
      # Only the experiment goes to the background, with nohup and none of the session's
      # file descriptors: a backgrounded `a && b && c` list would keep ssh's stdout open
      # and hold the session until the run ends.
      on_all_workers "$prefix { PYTHONUNBUFFERED=1 nohup $(quote_all "${argv[@]}") \
> $log 2>&1 < /dev/null & }"
    else
      # pipefail: the worker's exit status is the experiment's, not tee's.
      on_all_workers "set -o pipefail; $prefix PYTHONUNBUFFERED=1 $(quote_all "${argv[@]}") \
2>&1 | tee $log"
    fi
    printf 'outputs: %s/%s on worker 0 (logs/<host>.log on every worker); fetch: tpu/launch.sh fetch %s %s %s\n' \
      "$REMOTE_DIR" "$out" "$name" "$zone" "$(quote "$out")" >&2
    ;;

  run)
    [ "${1:-}" != -- ] || shift
    [ $# -ge 1 ] || die_usage "run needs a command, e.g. run NAME ZONE -- ls runs"
    on_all_workers "cd $REMOTE_DIR && $(quote_all "$@")"
    ;;

  fetch)
    [ $# -ge 1 ] && [ $# -le 2 ] || die_usage "fetch needs RUN_DIR [LOCAL_DIR]"
    # scp hands the remote path to the worker's shell, so only plain paths are accepted.
    [[ $1 =~ ^[A-Za-z0-9._/-]+$ ]] || die_usage "RUN_DIR must be a plain relative path, got '$1'"
    local_dir=${2:-runs}
    do_cmd mkdir -p "$local_dir"
    do_cmd "${SCP[@]}" --recurse "$name:$REMOTE_DIR/$1" "$local_dir" --zone="$zone" --worker=0
    ;;

  delete)
    [ $# -eq 0 ] || die_usage "delete takes no arguments after ZONE, got '$*'"
    do_cmd gcloud compute tpus tpu-vm delete "$name" --zone="$zone" --quiet
    ;;

  *) die_usage "unknown command '$cmd'" ;;
esac
