#!/usr/bin/env bash
# tests/gpu/run.sh OUTDIR [--dry-run]: the GPU-machine check of the CUDA backend, in one go.
#
#   1. env     nvidia-smi, nvcc, cuDNN/NCCL headers, compilers, git revision   -> OUTDIR/env.log
#   2. build   tests/gpu/build.sh (plain nvcc + cc, no Makefile); if that fails `make gpu-tests`;
#              if both fail, a prebuilt build/tests/gpu/test_gpu_ops carried with the tree
#                                                                               -> OUTDIR/build*.log
#   3. tests   test_gpu_ops --big: every nn.h op on the GPU vs the CPU backend -> OUTDIR/tests.log
#   4. bench   test_gpu_ops --no-tests --bench: conv/linear/attention/memory-bound timings
#                                                                               -> OUTDIR/bench.log
#   5. memcheck (only if time is left): compute-sanitizer on the default test set -> OUTDIR/memcheck.log
#   OUTDIR/summary.txt: pass/fail counts, failures, timings, which build route was used.
#
# Never hangs: every step runs under `timeout` (SIGTERM, then SIGKILL 10 s later), and the whole
# script keeps to a budget (RUN_BUDGET seconds, default 290): a step that would not fit is skipped
# and says so. Needs no network. Exit status 0 when the build worked and every check passed.
# --dry-run prints the steps with their commands and time limits, runs nothing.
set -u
cd "$(dirname "$0")/../.." || exit 2
REPO=$PWD
OUT=${1:-}
DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done
if [ -z "$OUT" ] || [ "$OUT" = "--dry-run" ]; then
    [ "$DRY" = 1 ] && OUT=${2:-/tmp/lola-gpu-dry} || { echo "usage: tests/gpu/run.sh OUTDIR [--dry-run]" >&2; exit 2; }
fi
case "$OUT" in /*) ;; *) OUT=$REPO/$OUT ;; esac
BUDGET=${RUN_BUDGET:-290}
T0=$SECONDS
export PATH="$PATH:/usr/local/cuda/bin"
export LOLA_CUDA_VERBOSE=1
BIN=""
ROUTE="none"
[ "$DRY" = 1 ] || mkdir -p "$OUT"

left() { echo $((BUDGET - (SECONDS - T0))); }
note() { # message: to stdout and the summary
    echo "$*"
    [ "$DRY" = 1 ] || echo "$*" >>"$OUT/summary.txt"
}
# step NAME LIMIT LOG CMD...: run CMD with a time limit (capped by the budget left), log to LOG.
# Returns CMD's status; 124/137 = timed out; 200 = skipped for lack of time.
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local rem
    rem=$(left)
    [ "$limit" -gt "$rem" ] && limit=$rem
    if [ "$DRY" = 1 ]; then
        printf '[dry-run] %-9s limit %3ss  log %s\n            %s\n' "$name" "$limit" "${log#$OUT/}" "$*"
        return 0
    fi
    if [ "$limit" -lt 10 ]; then
        note "SKIP $name: only ${rem}s of the ${BUDGET}s budget left"
        return 200
    fi
    echo "== $name (limit ${limit}s) $(date +%T)" | tee -a "$OUT/summary.txt"
    local t=$SECONDS rc
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && note "TIMEOUT $name after ${limit}s (partial log: $log)"
    note "   $name: exit $rc in $((SECONDS - t))s"
    return $rc
}

[ "$DRY" = 1 ] || : >"$OUT/summary.txt"
note "# lola-c GPU check, $(date -u +%FT%TZ) on $(hostname), budget ${BUDGET}s, output $OUT"

# 1. environment -------------------------------------------------------------------------------
step env 30 "$OUT/env.log" bash -c '
    set -x
    nvidia-smi || true
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv || true
    command -v nvcc && nvcc --version
    grep -h -E "define CUDNN_(MAJOR|MINOR|PATCHLEVEL)" /usr/include/cudnn_version*.h /usr/local/cuda/include/cudnn_version.h 2>/dev/null
    grep -h -E "define NCCL_(MAJOR|MINOR|PATCH) " /usr/include/nccl.h /usr/local/cuda/include/nccl.h 2>/dev/null
    ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null
    gcc --version | head -1; nproc; free -g | head -2
    pkg-config --modversion openblas 2>/dev/null || ls /usr/lib/x86_64-linux-gnu/ | grep -i -E "openblas|cblas" | head
    git -C "'"$REPO"'" log -1 --oneline 2>/dev/null; git -C "'"$REPO"'" status --short 2>/dev/null | head -40
'

# 2. build -------------------------------------------------------------------------------------
if step build 200 "$OUT/build.log" bash tests/gpu/build.sh "$OUT/build"; then
    BIN=$OUT/build/test_gpu_ops
    ROUTE="tests/gpu/build.sh"
else
    [ "$DRY" = 1 ] || { note "   build.sh failed; last lines:"; tail -15 "$OUT/build.log" | sed 's/^/     /' | tee -a "$OUT/summary.txt"; }
    if step build-make 200 "$OUT/build-make.log" make -j"$(nproc)" gpu-tests BUILD="$OUT/build-make"; then
        BIN=$OUT/build-make/tests/gpu/test_gpu_ops
        ROUTE="make gpu-tests"
    elif [ -x "$REPO/build/tests/gpu/test_gpu_ops" ]; then
        BIN=$REPO/build/tests/gpu/test_gpu_ops
        ROUTE="prebuilt build/tests/gpu/test_gpu_ops (carried)"
        note "   both builds failed; using the carried prebuilt binary"
    fi
fi
if [ "$DRY" = 1 ]; then
    BIN=$OUT/build/test_gpu_ops
    echo "[dry-run]           (if build.sh fails: make gpu-tests BUILD=$OUT/build-make; if that fails: build/tests/gpu/test_gpu_ops if carried)"
fi
if [ -z "$BIN" ]; then
    note "FAIL build: no test binary (see $OUT/build.log, $OUT/build-make.log)"
    exit 1
fi
note "   binary: $BIN (route: $ROUTE)"
[ "$DRY" = 1 ] || ldd "$BIN" >"$OUT/ldd.log" 2>&1

# 3. op tests ----------------------------------------------------------------------------------
step tests 150 "$OUT/tests.log" env OMP_NUM_THREADS="$(nproc)" "$BIN" --big
rc_tests=$?
TEST_LOGS=("$OUT/tests.log")
# A crash (illegal address, abort) or a timeout ends the run without its "# N passed" line: rerun
# the sections one process each, with synchronous launches, so one bad op cannot hide the others.
if [ "$DRY" = 1 ]; then
    echo "[dry-run]           (if the run crashed or timed out: each section of '$BIN --list' again, one process"
    echo "[dry-run]            each, CUDA_LAUNCH_BLOCKING=1, limit 45s, logs tests-SECTION.log)"
elif grep -q 'no CUDA device found' "$OUT/tests.log"; then
    note "   no usable GPU: not rerunning the sections"
elif ! grep -qE '^# [0-9]+ passed' "$OUT/tests.log"; then
    note "   the full test run ended early (crash or timeout): rerunning each section alone"
    TEST_LOGS=()
    for sec in $("$BIN" --list 2>/dev/null); do
        step "t:$sec" 45 "$OUT/tests-$sec.log" env CUDA_LAUNCH_BLOCKING=1 OMP_NUM_THREADS="$(nproc)" "$BIN" --big --only "$sec"
        rc=$?
        TEST_LOGS+=("$OUT/tests-$sec.log")
        [ "$rc" = 200 ] && break
        grep -qE '^# [0-9]+ passed' "$OUT/tests-$sec.log" 2>/dev/null || note "   section $sec did not finish (exit $rc): $(grep -E '^error|^HINT' "$OUT/tests-$sec.log" | head -2 | tr '\n' ' ')"
    done
    rc_tests=1
fi

# 4. timings -----------------------------------------------------------------------------------
step bench 120 "$OUT/bench.log" "$BIN" --no-tests --bench
rc_bench=$?

# 5. memcheck (whatever time is left, at most 90 s) ---------------------------------------------
SAN=$(command -v compute-sanitizer 2>/dev/null || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ] || [ "$DRY" = 1 ]; then
    if [ "$(left)" -ge 40 ] || [ "$DRY" = 1 ]; then
        step memcheck 90 "$OUT/memcheck.log" "${SAN:-compute-sanitizer}" --tool memcheck --leak-check no \
            --print-limit 50 "$BIN"
    else
        note "SKIP memcheck: $(left)s left"
    fi
else
    note "SKIP memcheck: compute-sanitizer not installed"
fi

# summary --------------------------------------------------------------------------------------
[ "$DRY" = 1 ] && { echo "[dry-run] summary -> $OUT/summary.txt"; exit 0; }
p=$(cat "${TEST_LOGS[@]}" 2>/dev/null | grep -c '^PASS '); f=$(cat "${TEST_LOGS[@]}" 2>/dev/null | grep -c '^FAIL ')
note ""
note "tests: $p passed, $f failed (exit $rc_tests; logs: ${TEST_LOGS[*]##*/})"
cat "${TEST_LOGS[@]}" 2>/dev/null | grep -E '^FAIL |^  .*worst element|^  .*first mismatch|^  not exercised|^error|^HINT|warning' | awk '!seen[$0]++' | head -60 | tee -a "$OUT/summary.txt"
cat "${TEST_LOGS[@]}" 2>/dev/null | grep -E '^# ' | tee -a "$OUT/summary.txt"
note "bench (exit $rc_bench):"
grep -E '^BENCH|^error|^# timings' "$OUT/bench.log" 2>/dev/null | tee -a "$OUT/summary.txt"
if [ -f "$OUT/memcheck.log" ]; then
    note "memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
    grep -E '^=+ (Invalid|Program hit|Address|  at )' "$OUT/memcheck.log" | head -20 | tee -a "$OUT/summary.txt"
fi
note "total $((SECONDS - T0))s"
[ "$rc_tests" = 0 ] && [ "$f" = 0 ] && [ "$p" -gt 0 ]
