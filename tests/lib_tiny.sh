# shellcheck shell=bash
# tests/lib_tiny.sh: shared by the end-to-end stage tests (tests/t_train.sh, t_emulators.sh,
# t_eval.sh). Source it after setting TAG (the prefix of the PASS/FAIL lines):
#   TAG=train; . "$(dirname "$0")/lib_tiny.sh"
# It cds to the repository root and provides:
#   LOLA, H5CMP, CFG (tests/configs/tiny_it_base.yaml), T (a private temp dir, removed on exit,
#   background jobs in bg[] killed), pass/fail/check/finish (PASS/FAIL lines like tests/test.h),
#   tiny_data (sets DATA: the tiny Euler set, generated once and reused), lola LOG ARGS... (runs
#   build/lola with a time limit, sets rc), step_losses FILE (the per-step losses of a
#   metrics.jsonl), MPI (mpirun command array, empty when MPI is unavailable).
# Determinism: OMP_NUM_THREADS=1 (reductions then run in one fixed order).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$(pwd)
BUILD=${LOLA_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
LOLA=${LOLA_BIN:-$BUILD/lola}
GEN=$BUILD/well-euler
H5CMP=(python3 "$ROOT/tests/h5compare.py")
CFG=$ROOT/tests/configs/tiny_it_base.yaml
# Nothing from the caller's environment steers the runs.
for v in $(compgen -e); do
    case $v in
    SLURM_* | OMPI_COMM_WORLD_* | PMI_* | PMIX_* | LOLA_STOP_AFTER_STEPS | LOLA_BIN | LOLA_NP | LOLA_ACTIVATIONS) unset "$v" ;;
    esac
done
export OMP_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

fails=0
pass() { echo "PASS $TAG: $*"; }
fail() { echo "FAIL $TAG: $*"; fails=$((fails + 1)); }
check() { # NAME COMMAND...: PASS when the command succeeds
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
has() { grep -qF -- "$2" <<<"$1"; } # has TEXT NEEDLE
summary1() { local l=${1%%$'\n'*}; printf '%s' "${l#h5compare: }"; } # first line of an h5compare output
finish() {
    echo "$TAG: $fails failure(s), $((SECONDS - T_START)) s"
    [ "$fails" -eq 0 ]
    exit $?
}
T_START=$SECONDS

T=$(mktemp -d "/tmp/lola_t_$TAG.XXXXXX")
bg=()
tiny_cleanup() {
    local p
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${LOLA_TEST_KEEP:-}" ] && { echo "kept $T"; return; }
    rm -rf "$T"
}
trap tiny_cleanup EXIT

if [ ! -x "$LOLA" ]; then
    fail "$LOLA not built (make)"
    exit 1
fi

# MPI launcher (empty array when mpirun or an MPI build is missing).
MPI=()
if command -v mpirun >/dev/null 2>&1 && ! "$LOLA" info 2>&1 | grep -qE '^ *MPI +not'; then
    MPI=(mpirun --oversubscribe -x OMP_NUM_THREADS -x OMP_WAIT_POLICY)
    [ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)
fi

# lola LOG ARGS...: build/lola ARGS with a 180 s limit, output to LOG; rc = exit status.
lola() {
    local log=$1
    shift
    timeout 180 "$LOLA" "$@" >"$log" 2>&1
    rc=$?
}

# step_losses METRICS_JSONL [STAGE]: "step loss" per line from the per-step records, in file order.
step_losses() {
    python3 - "$1" "${2:-}" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "step" and (not sys.argv[2] or r.get("stage") == sys.argv[2]):
        print(r["step"], repr(r["loss"]))
EOF
}

# The tiny Euler set: both BC families, 3 gamma files each, 16x16, 21 frames, 30 trajectories per
# family -> per family 24 train / 3 valid / 3 test trajectories in 3 files per split. Generated once
# into build/tiny_euler/<key> (key: the arguments and the generator binary) and reused; the
# generator writes to a temporary directory that is renamed into place, so concurrent test runs
# never see a half-written set.
TINY_ARGS="--resolution 16 --trajectories 30 --frames 21 --seed 1 --bc both --gammas 1.4,1.13,1.76"
tiny_data() {
    if [ ! -x "$GEN" ]; then
        fail "$GEN not built (make $GEN)"
        exit 1
    fi
    local key
    key=$( (echo "$TINY_ARGS"; md5sum <"$GEN") | md5sum | cut -c1-12)
    DATA=$BUILD/tiny_euler/$key
    if [ -f "$DATA/complete" ]; then
        touch "$DATA/complete" # last use (see the clean-up below)
        return 0
    fi
    mkdir -p "$BUILD/tiny_euler"
    local tmp
    tmp=$(mktemp -d "$BUILD/tiny_euler/.gen.XXXXXX")
    # shellcheck disable=SC2086
    if ! "$GEN" --out "$tmp" $TINY_ARGS >"$tmp/gen.log" 2>&1; then
        fail "well-euler $TINY_ARGS: $(tail -3 "$tmp/gen.log")"
        rm -rf "$tmp"
        exit 1
    fi
    echo "$TINY_ARGS" >"$tmp/complete"
    mv -T "$tmp" "$DATA" 2>/dev/null || rm -rf "$tmp" # another run won the race: use its copy
    # Sets made by older generators or arguments and unused for an hour go.
    local d
    for d in "$BUILD"/tiny_euler/*/; do
        d=${d%/}
        [ "$d" = "$DATA" ] && continue
        [ -n "$(find "$d" -maxdepth 1 -name complete -mmin -60)" ] || rm -rf "$d"
    done
    [ -f "$DATA/complete" ] || { fail "tiny data set $DATA incomplete"; exit 1; }
}
