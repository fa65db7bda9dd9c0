#!/usr/bin/env bash
# slurm/submit.sh: submits the LoLa pipeline as a chain of Slurm jobs, one per stage:
#
#   train-ae -> cache -> train-dm --> eval
#                    \-> train-ns -/
#
# each with --dependency=afterok:<the jobs it needs> (and --kill-on-invalid-dep=yes, so a failed
# stage cancels what depends on it instead of leaving it pending forever).
#
#   slurm/submit.sh [--stages LIST] [--dry-run] CONFIG [key=value ...]
#
#   CONFIG, key=value   passed to every stage (lola -c CONFIG key=value ...); the config is
#                       checked here first with `lola info`, so a typo fails now, not in the queue.
#   --stages LIST       comma-separated subset of train-ae,cache,train-dm,train-ns,eval (default:
#                       all). A stage whose prerequisite is not in the list does not wait for it
#                       (it is assumed done), e.g. --stages train-dm,train-ns,eval.
#   --dry-run           print the sbatch commands, submit nothing.
#
# Environment:
#   SBATCH_EXTRA            sbatch options for every stage, e.g. "--partition=gpu --account=abc"
#   SBATCH_EXTRA_TRAIN_AE, SBATCH_EXTRA_CACHE, SBATCH_EXTRA_TRAIN_DM, SBATCH_EXTRA_TRAIN_NS,
#   SBATCH_EXTRA_EVAL       options for one stage (they come last, so they win), e.g.
#                           SBATCH_EXTRA_TRAIN_AE="--time=48:00:00 --nodes=2"
#   (Options are split on whitespace; values cannot contain spaces. sbatch's own SBATCH_PARTITION,
#   SBATCH_ACCOUNT, SBATCH_TIMELIMIT... variables work as usual.)
#   LOLA_BIN                the binary (default: build/lola in this repository); must exist now
#   LOLA_HOME               the repository the jobs use (default: this script's repository)
#   LOLA_JOB_PREFIX         job name prefix (default: lola-<run.name>, or lola)
#   LOLA_SUBMIT_NO_CHECK=1  do not run `lola info` here (login nodes that cannot start MPI
#                           programs); run.dir=... must then be one of the overrides
#
# The run directory is run.dir of the resolved configuration (config file + overrides). Job
# logs go to <run.dir>/slurm/<job name>-<job id>.out (appended to across requeues) and the job
# ids to <run.dir>/slurm/jobs.txt. Jobs run in the current directory, so relative paths in the
# config and overrides mean the same in the jobs as here.
set -u

die() { echo "submit.sh: error: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

ALL_STAGES=(train-ae cache train-dm train-ns eval)
stages_arg=
dry=0
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) dry=1; shift ;;
    --stages=*) stages_arg=${1#--stages=}; shift ;;
    --stages) [ $# -ge 2 ] || die "--stages needs a list"; stages_arg=$2; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see slurm/submit.sh --help)" ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
config=$1
shift
for a in "$@"; do
    case $a in *=*) ;; *) die "argument '$a' is not a key=value override" ;; esac
done
[ -f "$config" ] || die "config file '$config' not found"
config=$(cd "$(dirname -- "$config")" && pwd)/$(basename -- "$config")

LOLA_HOME=${LOLA_HOME:-$(cd "$(dirname -- "$0")/.." && pwd)}
[ -f "$LOLA_HOME/slurm/common.sh" ] || die "LOLA_HOME='$LOLA_HOME' does not hold slurm/common.sh"
LOLA_BIN=${LOLA_BIN:-$LOLA_HOME/build/lola}
if [ ! -f "$LOLA_BIN" ] || [ ! -x "$LOLA_BIN" ]; then
    die "LOLA_BIN '$LOLA_BIN' is not an executable file: build it first (make); jobs never compile"
fi
LOLA_BIN=$(cd "$(dirname -- "$LOLA_BIN")" && pwd)/$(basename -- "$LOLA_BIN")
export LOLA_HOME LOLA_BIN # sbatch passes the environment on: the jobs use the same repository and binary

# Which stages, and what each one waits for.
declare -A want=() deps=() ids=()
deps[train-ae]=""
deps[cache]="train-ae"
deps[train-dm]="cache"
deps[train-ns]="cache"
deps[eval]="train-dm train-ns"
if [ -n "$stages_arg" ]; then
    IFS=, read -r -a sel <<<"$stages_arg"
    for s in "${sel[@]}"; do
        [ -n "${deps[$s]+x}" ] || die "--stages: unknown stage '$s' (stages: ${ALL_STAGES[*]})"
        want[$s]=1
    done
else
    for s in "${ALL_STAGES[@]}"; do want[$s]=1; done
fi

# Resolve and check the configuration; take run.dir and run.name from it. (LOLA_SUBMIT_NO_CHECK=1
# skips this, for login nodes where even a 1-process MPI program may not start; then run.dir must
# be given as an override.)
if [ "${LOLA_SUBMIT_NO_CHECK:-0}" = 1 ]; then
    info=""
    for a in "$@"; do
        case $a in run.dir=*) info="== resolved configuration (YAML) ==
run:
  dir: ${a#run.dir=}" ;; esac
    done
    [ -n "$info" ] || die "LOLA_SUBMIT_NO_CHECK=1 needs run.dir=... among the overrides"
else
    info=$(OMP_NUM_THREADS=1 "$LOLA_BIN" info -c "$config" "$@" 2>&1) || {
        printf '%s\n' "$info" | tail -20 >&2
        die "the configuration does not load (lola info -c $config $*)"
    }
fi
yaml_value() { # KEY under the run: section of the resolved YAML, quotes removed
    printf '%s\n' "$info" | awk -v key="$1" '
        /^== resolved configuration/ { y = 1; next }
        /^== / { y = 0 }
        y && /^run:/ { r = 1; next }
        y && /^[^ #]/ { r = 0 }
        y && r && index($0, "  " key ": ") == 1 { print substr($0, length(key) + 5); exit }'
}
unquote() {
    local v=$1
    if [[ $v == \"*\" ]]; then
        v=${v:1:${#v}-2}
        v=${v//\\\"/\"}
        v=${v//\\\\/\\}
    fi
    printf '%s' "$v"
}
run_dir=$(unquote "$(yaml_value dir)")
run_name=$(unquote "$(yaml_value name)")
[ -n "$run_dir" ] || die "could not read run.dir from \`lola info\` (set run.dir in the config or as run.dir=...)"
case $run_dir in /*) abs_run=$run_dir ;; *) abs_run=$(pwd)/$run_dir ;; esac
prefix=${LOLA_JOB_PREFIX:-lola${run_name:+-$run_name}}
logdir=$abs_run/slurm
[ $dry = 1 ] || mkdir -p "$logdir" || die "cannot create $logdir"

read -r -a extra_all <<<"${SBATCH_EXTRA:-}"
submitted=()
echo "run directory: $abs_run (job logs in $logdir)"
for s in "${ALL_STAGES[@]}"; do
    [ -n "${want[$s]:-}" ] || continue
    var=SBATCH_EXTRA_$(echo "${s//-/_}" | tr '[:lower:]' '[:upper:]')
    read -r -a extra_stage <<<"${!var:-}"
    dep=""
    for d in ${deps[$s]}; do
        [ -n "${ids[$d]:-}" ] && dep="$dep:${ids[$d]}"
    done
    args=(--parsable "--job-name=$prefix-$s" "--output=$logdir/%x-%j.out")
    [ -n "$dep" ] && args+=("--dependency=afterok$dep" --kill-on-invalid-dep=yes)
    # ${a[@]+"${a[@]}"}: an empty array under set -u on bash < 4.4
    args+=(${extra_all[@]+"${extra_all[@]}"} ${extra_stage[@]+"${extra_stage[@]}"} "$LOLA_HOME/slurm/${s//-/_}.sh" "$config" "$@")
    if [ $dry = 1 ]; then
        ids[$s]="<$s>"
        printf 'sbatch'; printf ' %q' "${args[@]}"; printf '\n'
        continue
    fi
    out=$(sbatch "${args[@]}")
    rc=$?
    id=${out%%;*} # --parsable prints "id" or "id;cluster"
    if [ $rc -ne 0 ] || ! [[ $id =~ ^[0-9]+$ ]]; then
        echo "submit.sh: error: sbatch for stage $s failed (exit $rc): $out" >&2
        if [ ${#submitted[@]} -gt 0 ]; then
            echo "submit.sh: already submitted: ${submitted[*]}; cancel them with: scancel ${submitted[*]//*=/}" >&2
        fi
        exit 1
    fi
    ids[$s]=$id
    submitted+=("$s=$id")
    printf '%-9s %s%s\n' "$s" "$id" "${dep:+  (after ${dep#:})}"
done
if [ $dry = 0 ] && [ ${#submitted[@]} -gt 0 ]; then
    { printf '%s %s' "$(date '+%F %T')" "$config"; printf ' %q' "$@"; printf ' :'; printf ' %s' "${submitted[@]}"; printf '\n'; } >>"$logdir/jobs.txt"
    echo "watch: squeue -j $(IFS=,; echo "${submitted[*]//*=/}")   cancel: scancel ${submitted[*]//*=/}"
fi
exit 0
