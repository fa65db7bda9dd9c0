#!/usr/bin/env bash
# tests/gpu/run.sh OUTDIR [--dry-run]: the GPU-machine check of lola-c, in one go (issue 8).
#
# Prepare on the build machine: `make gpu-bundle` (build/gpu-bundle/: the CUDA and CPU programs,
# the GPU test programs, bench-lola and the shared libraries the GPU machine lacks; cuda/README.md),
# carry build/gpu-bundle with the working tree, then run `RUN_BUDGET=360 bash tests/gpu/run.sh OUT`.
#
#   step      what                                                      log (in OUTDIR)    limit
#   env       nvidia-smi, nvcc, cuDNN/NCCL versions, bundle manifest, ldd env.log            20 s
#             of every bundled program with the bundle's libraries
#   binaries  the bundle when every program in it resolves its libraries; binaries.log        15 s
#             else test_gpu_ops is built there: tests/gpu/build.sh, then build*.log         200 s
#             `make gpu-tests`, then a carried build/tests/gpu/test_gpu_ops
#   tests     test_gpu_ops --big: every nn.h op on the GPU vs the CPU      tests.log         150 s
#             backend; if it crashes or times out, each section again in its own process with
#             CUDA_LAUNCH_BLOCKING=1 (tests-SECTION.log, 45 s each)
#   models    tests/gpu/models.sh: one training step of each model (AE    models/           120 s
#             AdamW and PSGD, DM, NS), the latent cache, an eval rollout and checkpoint
#             portability, GPU program vs CPU program (bundle's lola vs lola-cpu); a precision
#             smoke (dm tf32, bf16, bf16 + flash attention, ae bf16 vs the GPU's fp32 step)
#   nccl      test_nccl on one rank (with its error and timeout paths in  nccl.log          60 s
#             child processes), then `mpirun -np 1` (if mpirun)           nccl-mpi.log      45 s
#   ops-bench test_gpu_ops --no-tests --bench (--bench-quick under 60 s) bench.log          90 s
#   bench     bench-lola (CUDA) at paper sizes in bf16 mode              bench-lola.log    150 s
#             (BENCH_PRECISION=tf32|fp32 and BENCH_LIMIT override),
#             every workload with --max-seconds = its share of the limit bench-lola.json
#   bench-ab  with >= 100 s left: ae rows with LOLA_CONV_LAYOUT=nhwc,    bench-lola-ab.log  50 s
#             dit rows with LOLA_ATTENTION=flash (bf16), to compare
#   memcheck  compute-sanitizer memcheck on the default test set, only   memcheck.log       90 s
#             with >= 40 s left
# Where the limits come from: each is about 3-5x the step's expected time on the H200 (test_gpu_ops
# --big runs its 624 checks in ~23 s with the CPU backend on both sides on 2 busy cores; models.sh runs
# 22 tiny program runs, ~0.4 s each on a CPU, plus CUDA start-up of ~1-3 s each; test_nccl's
# timeout path alone stalls 2-8 s per run; bench-lola has 11 workloads), and each step also keeps
# back a reserve for the steps after it, so a slow early step cannot starve the later checks. At
# the default budget the reserves are tests 120 s, models 60, nccl 60/45, ops-bench 45 (build 150);
# under 360 s they shrink in proportion (reserve x RUN_BUDGET / 360; e.g. tests keep 50 s of 150,
# 30 s of 90), so a small budget still runs the steps in their order of importance (op tests,
# models, nccl, benchmarks) instead of skipping the first ones to save time for the last; above
# 360 they stay as at 360 (each step's own limit caps it). A step whose limit falls under 10 s is
# skipped and says so. The budget is RUN_BUDGET seconds (default 360, which with the machine's
# start fits the 15 minutes of device time a GPU session has). --dry-run prints each step's limit
# for the full budget and its worst case (every earlier step using its whole limit).
#
# OUTDIR/summary.txt: one result line per step (PASS / FAIL / SKIP with the reason), then the
# details: failed checks, the models summary and timings, NCCL, benchmark rows. Never hangs: every
# command runs under `timeout` (SIGTERM, SIGKILL 10 s later). No CUDA device -> the GPU steps are
# skipped at once and the summary says "no CUDA device". Needs no network. Exit status 0 when every
# step that ran passed. --dry-run prints the steps, commands and limits.
# RUN_STEPS=models,bench (a comma list of tests models nccl ops-bench bench memcheck) runs only
# those (env and binaries always run): for a second, shorter run. FORCE_BUILD=1 builds
# test_gpu_ops with the machine's nvcc even when the bundle's runs.
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
BUDGET=${RUN_BUDGET:-360}
BUNDLE=${GPU_BUNDLE:-$REPO/build/gpu-bundle}
T0=$SECONDS
export PATH="$PATH:/usr/local/cuda/bin"
export LOLA_CUDA_VERBOSE=1
# Open MPI as root in a container (lola calls MPI_Init even on one rank; mpirun for test_nccl).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
NP=$(nproc 2>/dev/null || echo 4)
BIN=""
ROUTE="none"
NODEV="" # the reason, once the GPU is known to be unusable
[ "$DRY" = 1 ] || mkdir -p "$OUT"

left() { echo $((BUDGET - (SECONDS - T0))); }
# rsv SECONDS: a step's reserve for the later steps: SECONDS at a budget of 360 s or more, in
# proportion below (see the header).
rsv() { local b=$BUDGET; [ "$b" -gt 360 ] && b=360; echo $(($1 * b / 360)); }
DRY_USED=0 # --dry-run: seconds used so far when every step takes its whole limit (the worst case)
want() { [ -z "${RUN_STEPS:-}" ] && return 0; case ",$RUN_STEPS," in *",$1,"*) return 0 ;; esac; return 1; }
note() { # message: to stdout and the summary
    echo "$*"
    [ "$DRY" = 1 ] || echo "$*" >>"$OUT/summary.txt"
}
PLAN_SUM=0
RESULTS=() # "name|PASS/FAIL/SKIP/PART|detail", in order (PART: timings cut short, not a failure)
result() { RESULTS+=("$1|$2|$3"); [ "$DRY" = 1 ] || note "   => $1: $2${3:+ ($3)}"; }
# step NAME LIMIT RESERVE LOG CMD...: run CMD with a time limit of min(LIMIT, budget left - RESERVE),
# output to LOG. Returns CMD's status; 124/137 = timed out; 200 = skipped for lack of time.
step() {
    local name=$1 limit=$2 reserve=$3 log=$4 lim0=$2
    shift 4
    local rem cap
    rem=$(left)
    cap=$((rem - reserve))
    [ "$limit" -gt "$cap" ] && limit=$cap
    if [ "$DRY" = 1 ]; then
        local worst=$lim0 wcap=$((BUDGET - DRY_USED - reserve)) wtxt
        [ "$worst" -gt "$wcap" ] && worst=$wcap
        if [ "$worst" -lt 10 ]; then wtxt="skipped"; else wtxt="${worst}s"; DRY_USED=$((DRY_USED + worst)); fi
        printf '[dry-run] %-9s limit %3ss (reserve %3ss; worst case %s)  log %s\n            %s\n' "$name" "$limit" "$reserve" "$wtxt" \
            "${log#"$OUT"/}" "$*"
        PLAN_SUM=$((PLAN_SUM + limit))
        return 0
    fi
    if [ "$limit" -lt 10 ]; then
        note "SKIP $name: only ${rem}s of the ${BUDGET}s budget left (${reserve}s kept for later steps)"
        return 200
    fi
    echo "== $name (limit ${limit}s) $(date +%T)" | tee -a "$OUT/summary.txt"
    local t=$SECONDS rc
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && note "TIMEOUT $name after ${limit}s (partial log: $log)"
    note "   $name: exit $rc in $((SECONDS - t))s"
    return $rc
}
# why RC: the words for a step's exit status
why() { case $1 in 0) echo "exit 0" ;; 124 | 137) echo "timed out" ;; 200) echo "no time left" ;; *) [ "$1" -gt 128 ] && echo "killed by signal $(($1 - 128))" || echo "exit $1" ;; esac; }
nodev_check() { # LOG: sets NODEV when the log says there is no usable device
    [ -n "$NODEV" ] && return
    if grep -aq 'no CUDA device found' "$1" 2>/dev/null; then
        NODEV=$(grep -a -m1 'no CUDA device found' "$1" | sed 's/^error: //' | cut -c1-200)
        note "   NO CUDA DEVICE: the remaining GPU steps are skipped"
    fi
}

[ "$DRY" = 1 ] || : >"$OUT/summary.txt"
note "# lola-c GPU check, $(date -u +%FT%TZ) on $(hostname), budget ${BUDGET}s, output $OUT"

# 1. environment -------------------------------------------------------------------------------
step env 20 0 "$OUT/env.log" bash -c '
    set -x
    nvidia-smi || true
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv || true
    command -v nvcc && nvcc --version
    grep -h -E "define CUDNN_(MAJOR|MINOR|PATCHLEVEL)" /usr/include/cudnn_version*.h /usr/include/x86_64-linux-gnu/cudnn_version*.h /usr/local/cuda/include/cudnn_version.h 2>/dev/null
    grep -h -E "define NCCL_(MAJOR|MINOR|PATCH) " /usr/include/nccl.h /usr/local/cuda/include/nccl.h 2>/dev/null
    ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null
    command -v mpirun && mpirun --version | head -2
    gcc --version | head -1; nproc; free -g | head -2; ldd --version | head -1
    python3 -c "import sys, numpy, h5py; print(sys.version.split()[0], numpy.__version__, h5py.__version__)"
    pkg-config --modversion openblas 2>/dev/null || ls /usr/lib/x86_64-linux-gnu/ | grep -i -E "openblas|cblas" | head
    git -C "'"$REPO"'" log -1 --oneline 2>/dev/null; git -C "'"$REPO"'" status --short 2>/dev/null | head -40
    B="'"$BUNDLE"'"
    if [ -d "$B" ]; then
        head -3 "$B/MANIFEST.txt"; cat "$B/lib-fallback/ROOTS"
        ( . "$B/env.sh"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
          for f in "$B"/bin/*; do echo "## ldd $f"; ldd "$f"; done )
    fi
'

# 2. binaries: the bundle, else build test_gpu_ops here -------------------------------------------
# BUNDLED[name]=1 for each bundled program whose libraries all resolve on this machine.
declare -A BUNDLED=()
bundle_check() {
    local f n bad=0
    echo "bundle: $BUNDLE"
    head -3 "$BUNDLE/MANIFEST.txt"
    for f in "$BUNDLE"/bin/*; do
        n=${f##*/}
        if (. "$BUNDLE/env.sh"; ldd "$f") | grep -q 'not found'; then
            echo "NOT RUNNABLE $n: $( (. "$BUNDLE/env.sh"; ldd "$f") | grep 'not found' | awk '{print $1}' | tr '\n' ' ')"
            bad=1
        else
            echo "ok $n"
        fi
    done
    return $bad
}
export -f bundle_check
export BUNDLE
if [ "$DRY" = 1 ]; then
    step binaries 15 0 "$OUT/binaries.log" bash -c bundle_check
    echo "[dry-run]           (bundle $BUNDLE: $([ -d "$BUNDLE" ] && echo "present: $(ls "$BUNDLE/bin" | tr '\n' ' ')" || echo "MISSING: run make gpu-bundle and carry it"))"
    echo "[dry-run]           (if it has no runnable test_gpu_ops: tests/gpu/build.sh $OUT/build (200 s), then make gpu-tests, then a carried build/tests/gpu/test_gpu_ops)"
    BIN=$BUNDLE/test_gpu_ops
    for n in lola lola-cpu well-euler test_gpu_ops test_nccl bench-lola; do BUNDLED[$n]=1; done
elif [ -d "$BUNDLE/bin" ]; then
    step binaries 15 0 "$OUT/binaries.log" bash -c bundle_check
    while read -r st n; do [ "$st" = ok ] && BUNDLED[$n]=1; done < <(grep -E '^ok ' "$OUT/binaries.log")
    grep -E '^NOT RUNNABLE' "$OUT/binaries.log" | tee -a "$OUT/summary.txt"
    note "   bundle: runnable: ${!BUNDLED[*]}"
else
    note "   no bundle at $BUNDLE (make gpu-bundle, and carry it): only the op tests can run (built here)"
fi
if [ -n "${BUNDLED[test_gpu_ops]:-}" ] && [ -z "${FORCE_BUILD:-}" ]; then
    BIN=$BUNDLE/test_gpu_ops
    ROUTE="bundle ($BUNDLE)"
elif [ "$DRY" = 0 ]; then
    if step build 200 "$(rsv 150)" "$OUT/build.log" bash tests/gpu/build.sh "$OUT/build"; then
        BIN=$OUT/build/test_gpu_ops
        ROUTE="tests/gpu/build.sh"
    else
        note "   build.sh failed; last lines:"
        tail -15 "$OUT/build.log" | sed 's/^/     /' | tee -a "$OUT/summary.txt"
        if step build-make 200 "$(rsv 150)" "$OUT/build-make.log" make -j"$NP" gpu-tests BUILD="$OUT/build-make"; then
            BIN=$OUT/build-make/tests/gpu/test_gpu_ops
            ROUTE="make gpu-tests"
        elif [ -x "$REPO/build/tests/gpu/test_gpu_ops" ]; then
            BIN=$REPO/build/tests/gpu/test_gpu_ops
            ROUTE="prebuilt build/tests/gpu/test_gpu_ops (carried)"
            note "   both builds failed; using the carried prebuilt binary"
        fi
    fi
fi
if [ -z "$BIN" ]; then
    result binaries FAIL "no test_gpu_ops: no runnable bundle and no build (see binaries.log, build*.log)"
else
    result binaries PASS "test_gpu_ops from $ROUTE; bundled and runnable: ${!BUNDLED[*]}"
    [ "$DRY" = 1 ] || ldd "$BIN" >"$OUT/ldd.log" 2>&1
fi

# 3. op tests ----------------------------------------------------------------------------------
rc_tests=1
TEST_LOGS=()
if [ -n "$BIN" ] && want tests; then
    step tests 150 "$(rsv 120)" "$OUT/tests.log" env OMP_NUM_THREADS="$NP" "$BIN" --big
    rc_tests=$?
    TEST_LOGS=("$OUT/tests.log")
    # A crash (illegal address, abort) or a timeout ends the run without its "# N passed" line: rerun
    # the sections one process each, with synchronous launches, so one bad op cannot hide the others.
    if [ "$DRY" = 1 ]; then
        echo "[dry-run]           (if the run crashed or timed out: each section of '$BIN --list' again, one process"
        echo "[dry-run]            each, CUDA_LAUNCH_BLOCKING=1, limit 45s, reserve $(rsv 120)s, logs tests-SECTION.log)"
    else
        nodev_check "$OUT/tests.log"
        if [ -n "$NODEV" ] || [ "$rc_tests" = 200 ]; then
            : # no device, or skipped for lack of time (no log): nothing to rerun
        elif ! grep -qE '^# [0-9]+ passed' "$OUT/tests.log"; then
            note "   the full test run ended early (crash or timeout): rerunning each section alone"
            TEST_LOGS=()
            for sec in $("$BIN" --list 2>/dev/null); do
                step "t:$sec" 45 "$(rsv 120)" "$OUT/tests-$sec.log" env CUDA_LAUNCH_BLOCKING=1 OMP_NUM_THREADS="$NP" "$BIN" --big --only "$sec"
                rc=$?
                TEST_LOGS+=("$OUT/tests-$sec.log")
                [ "$rc" = 200 ] && break
                grep -qE '^# [0-9]+ passed' "$OUT/tests-$sec.log" 2>/dev/null || note "   section $sec did not finish ($(why $rc)): $(grep -E '^error|^HINT' "$OUT/tests-$sec.log" | head -2 | tr '\n' ' ')"
            done
            rc_tests=1
        fi
        p=$(cat "${TEST_LOGS[@]}" 2>/dev/null | grep -c '^PASS '); f=$(cat "${TEST_LOGS[@]}" 2>/dev/null | grep -c '^FAIL ')
        if [ -n "$NODEV" ]; then result tests FAIL "no CUDA device ($NODEV)"
        elif [ "$rc_tests" = 200 ]; then TEST_LOGS=(); result tests SKIP "no time left"
        elif [ "$rc_tests" = 0 ] && [ "$f" = 0 ] && [ "$p" -gt 0 ]; then result tests PASS "$p checks passed"
        else result tests FAIL "$p passed, $f failed, $(why "$rc_tests")"; fi
    fi
else
    want tests && result tests SKIP "no test program" || result tests SKIP "not in RUN_STEPS=$RUN_STEPS"
fi

# gpu_skip NAME PROGRAM: true (and a SKIP result) when step NAME cannot run: no device, or PROGRAM
# ("" = none needed) is not in the bundle or not runnable here
gpu_skip() {
    local name=$1 prog=$2
    if ! want "$name"; then
        [ "$DRY" = 1 ] && echo "[dry-run] $name: not in RUN_STEPS=$RUN_STEPS" || result "$name" SKIP "not in RUN_STEPS=$RUN_STEPS"
        return 0
    fi
    [ "$DRY" = 1 ] && return 1
    if [ -n "$NODEV" ]; then result "$name" SKIP "no CUDA device"; return 0; fi
    if [ -n "$prog" ] && [ -z "${BUNDLED[$prog]:-}" ]; then
        if [ -d "$BUNDLE/bin" ] && [ ! -e "$BUNDLE/bin/$prog" ]; then result "$name" SKIP "$prog not built (not in the bundle: make gpu-bundle after it exists)"
        else result "$name" SKIP "$prog not runnable here (no bundle, or its libraries are missing: binaries.log)"; fi
        return 0
    fi
    return 1
}

# 4. models: GPU program vs CPU program ------------------------------------------------------------
if ! gpu_skip models lola && { [ "$DRY" = 1 ] || [ -n "${BUNDLED[lola-cpu]:-}" ] || { result models SKIP "lola-cpu not runnable (binaries.log)"; false; }; }; then
    lim=120
    rem=$(($(left) - $(rsv 60)))
    [ "$rem" -lt "$lim" ] && lim=$rem
    # models.sh keeps to its own budget (10 s under the step's limit) and writes its summary.
    step models "$lim" "$(rsv 60)" "$OUT/models.log" env MODELS_BUDGET=$((lim > 20 ? lim - 10 : 10)) \
        LOLA_CPU="$BUNDLE/lola-cpu" LOLA_GPU="$BUNDLE/lola" LOLA_GEN="$BUNDLE/well-euler" \
        bash tests/gpu/models.sh "$OUT/models"
    rc=$?
    if [ "$DRY" = 0 ]; then
        nodev_check "$OUT/models/ae-gpu.log"
        line=$(grep -a '^models: ' "$OUT/models/summary.txt" 2>/dev/null | tail -1)
        if [ "$rc" = 0 ]; then result models PASS "${line:-?}"
        elif [ "$rc" = 200 ]; then result models SKIP "no time left"
        else result models FAIL "$(why $rc); ${line:-no summary}"; fi
    fi
fi

# 5. NCCL on one rank ------------------------------------------------------------------------------
if ! gpu_skip nccl test_nccl; then
    step nccl 60 "$(rsv 60)" "$OUT/nccl.log" "$BUNDLE/test_nccl"
    rc1=$?
    MPIRUN=$(command -v mpirun 2>/dev/null || true)
    rc2=-
    if [ -n "$MPIRUN" ] || [ "$DRY" = 1 ]; then
        # --allow-run-as-root: the GPU machine runs as root (vader's single-copy is off: above).
        step nccl-mpi 45 "$(rsv 45)" "$OUT/nccl-mpi.log" "${MPIRUN:-mpirun}" -np 1 --allow-run-as-root --oversubscribe \
            -x LOLA_CUDA_VERBOSE "$BUNDLE/test_nccl"
        rc2=$?
    fi
    if [ "$DRY" = 0 ]; then
        nodev_check "$OUT/nccl.log"
        nodev_check "$OUT/nccl-mpi.log"
        np=$(cat "$OUT"/nccl*.log 2>/dev/null | grep -c '^PASS '); nf=$(cat "$OUT"/nccl*.log 2>/dev/null | grep -c '^FAIL ')
        if [ "$rc1" = 0 ] && { [ "$rc2" = 0 ] || [ "$rc2" = - ]; } && [ "$nf" = 0 ]; then
            result nccl PASS "$np checks passed (direct: exit 0; mpirun -np 1: $([ "$rc2" = - ] && echo "no mpirun" || echo "exit 0"))"
        else result nccl FAIL "direct: $(why "$rc1"); mpirun -np 1: $([ "$rc2" = - ] && echo "no mpirun" || why "$rc2"); $np passed, $nf failed"; fi
    fi
fi

# 6. op timings --------------------------------------------------------------------------------
rc_bench=-
if [ -n "$BIN" ] && ! gpu_skip ops-bench ""; then
    mode=--bench
    [ "$DRY" = 0 ] && [ "$(($(left) - $(rsv 45)))" -lt 60 ] && mode=--bench-quick
    step ops-bench 90 "$(rsv 45)" "$OUT/bench.log" "$BIN" --no-tests "$mode"
    rc_bench=$?
    if [ "$DRY" = 0 ]; then
        nodev_check "$OUT/bench.log"
        if [ "$rc_bench" = 0 ]; then result ops-bench PASS "$mode: $(grep -c '^BENCH' "$OUT/bench.log") timings"
        elif [ "$rc_bench" = 200 ]; then result ops-bench SKIP "no time left"
        elif [ "$rc_bench" = 124 ] || [ "$rc_bench" = 137 ]; then
            result ops-bench PART "timed out: $(grep -c '^BENCH' "$OUT/bench.log") timings before the limit (timings only: not a failure)"
        else result ops-bench FAIL "$(why $rc_bench)"; fi
    fi
fi

# 7. the benchmark (bench-lola, CUDA, paper sizes) ----------------------------------------------------
if ! gpu_skip bench bench-lola; then
    lim=${BENCH_LIMIT:-150}
    [ "$(left)" -lt "$lim" ] && lim=$(left)
    nw=$("$BUNDLE/bench-lola" --list 2>/dev/null | grep -c .)
    [ "${nw:-0}" -gt 0 ] || nw=11
    per=$(((lim - 10) / nw))
    [ "$per" -lt 5 ] && per=5
    # in the bf16 mode (autocast semantics: the reference's bf16 / best columns are the comparison);
    # BENCH_PRECISION=tf32 for LoLa's own training precision, fp32 for the exact path
    step bench "$lim" 0 "$OUT/bench-lola.log" env LOLA_PRECISION="${BENCH_PRECISION:-bf16}" "$BUNDLE/bench-lola" \
        --size paper --seconds 2 --rounds 3 --max-seconds "$per" --json "$OUT/bench-lola.json"
    rc=$?
    if [ "$DRY" = 0 ]; then
        nodev_check "$OUT/bench-lola.log"
        ok=$(grep -c '^RESULT .*status=ok' "$OUT/bench-lola.log"); all=$(grep -c '^RESULT ' "$OUT/bench-lola.log")
        if [ "$rc" = 0 ]; then result bench PASS "$ok of $all workloads measured (LOLA_PRECISION=${BENCH_PRECISION:-bf16}), --max-seconds $per each"
        elif [ "$rc" = 200 ]; then result bench SKIP "no time left"
        else result bench FAIL "$(why $rc); $ok of $all workloads measured"; fi
    fi
    # A/B of the switches not yet default, when time is left after the reserve of memcheck: the AE
    # rows with cuDNN's NHWC layout (LOLA_CONV_LAYOUT=nhwc) and the DiT rows with the flash
    # attention (LOLA_ATTENTION=flash), both in bf16; compare with the same rows above.
    if [ "$DRY" = 1 ] || [ "$(left)" -ge 100 ]; then
        step bench-ab 50 45 "$OUT/bench-lola-ab.log" bash -c "LOLA_PRECISION=bf16 LOLA_CONV_LAYOUT=nhwc '$BUNDLE/bench-lola' \
            --size paper --seconds 2 --rounds 2 --max-seconds 12 --workload ae-euler,ae-rb; LOLA_PRECISION=bf16 \
            LOLA_ATTENTION=flash '$BUNDLE/bench-lola' --size paper --seconds 2 --rounds 2 --max-seconds 12 --workload dit-euler,dit-rb"
        [ "$DRY" = 0 ] && result bench-ab INFO "$(grep -c '^RESULT .*status=ok' "$OUT/bench-lola-ab.log") A/B rows (nhwc AE, flash DiT) in bench-lola-ab.log"
    fi
fi

# 8. memcheck (whatever time is left, at most 90 s) ---------------------------------------------
SAN=$(command -v compute-sanitizer 2>/dev/null || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if gpu_skip memcheck ""; then
    :
elif [ -z "$BIN" ]; then
    result memcheck SKIP "no test program"
elif [ -z "$SAN" ] && [ "$DRY" = 0 ]; then
    result memcheck SKIP "compute-sanitizer not installed"
elif [ "$(left)" -lt 40 ] && [ "$DRY" = 0 ]; then
    result memcheck SKIP "$(left)s left"
else
    # The program itself, not the bundle's wrapper script (the sanitizer follows the process it starts).
    MBIN=$BIN
    MENV=()
    if [ "$BIN" = "$BUNDLE/test_gpu_ops" ]; then
        MBIN=$BUNDLE/bin/test_gpu_ops
        MENV=(env LD_LIBRARY_PATH="$(LOLA_BUNDLE_SELF=$BUNDLE/env.sh; . "$BUNDLE/env.sh" 2>/dev/null; echo "${LD_LIBRARY_PATH:-}")")
    fi
    step memcheck 90 0 "$OUT/memcheck.log" "${MENV[@]}" "${SAN:-compute-sanitizer}" --tool memcheck --leak-check no --print-limit 50 "$MBIN"
    rc=$?
    if [ "$DRY" = 0 ]; then
        es=$(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)
        if [ "$rc" = 0 ] && echo "$es" | grep -q ' 0 errors'; then result memcheck PASS "$es"
        else result memcheck FAIL "$(why $rc); ${es:-no ERROR SUMMARY line}"; fi
    fi
fi

# summary --------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    echo "[dry-run] the limits above add up to ${PLAN_SUM}s for a ${BUDGET}s budget: at run time each is also"
    echo "[dry-run] capped by the budget left minus its reserve, so the run ends within ${BUDGET}s (+ up to 10s"
    echo "[dry-run] for a SIGKILL after a timeout, + the summary). \"worst case\": the limit when every earlier step"
    echo "[dry-run] used its whole limit (${DRY_USED}s in all); a real run's steps mostly end far below their limits."
    echo "[dry-run] summary -> $OUT/summary.txt (one PASS/FAIL/SKIP line per step, then details)"
    exit 0
fi
note ""
note "== results ($((SECONDS - T0))s of ${BUDGET}s)"
[ -n "$NODEV" ] && note "NO CUDA DEVICE: $NODEV"
status=0
for r in "${RESULTS[@]}"; do
    IFS='|' read -r n s d <<<"$r"
    note "$(printf '%-4s %-9s %s' "$s" "$n" "$d")"
    [ "$s" = FAIL ] && status=1
done
[ -n "$NODEV" ] && status=1
note ""
if [ ${#TEST_LOGS[@]} -gt 0 ]; then
    note "== op tests (logs: ${TEST_LOGS[*]##*/})"
    cat "${TEST_LOGS[@]}" 2>/dev/null | grep -E '^FAIL |^  .*worst element|^  .*first mismatch|^  not exercised|^error|^HINT|warning' | awk '!seen[$0]++' | head -60 | tee -a "$OUT/summary.txt"
    cat "${TEST_LOGS[@]}" 2>/dev/null | grep -E '^# ' | tee -a "$OUT/summary.txt"
fi
if [ -f "$OUT/models/summary.txt" ]; then
    note "== models (models/summary.txt)"
    grep -vE '^PASS ' "$OUT/models/summary.txt" | tee -a "$OUT/summary.txt"
fi
for l in "$OUT"/nccl*.log; do
    [ -f "$l" ] || continue
    note "== ${l##*/}"
    grep -E '^FAIL |^PASS |^# |^error|^HINT' "$l" | awk '!seen[$0]++' | head -20 | tee -a "$OUT/summary.txt"
done
if [ -f "$OUT/bench.log" ]; then
    note "== op timings (bench.log)"
    grep -E '^BENCH|^error|^# timings' "$OUT/bench.log" | tee -a "$OUT/summary.txt"
fi
if [ -f "$OUT/bench-lola.log" ]; then
    note "== bench-lola (bench-lola.log, bench-lola.json)"
    grep -E '^RESULT|^error|^HINT' "$OUT/bench-lola.log" | awk '!seen[$0]++' | tee -a "$OUT/summary.txt"
fi
if [ -f "$OUT/bench-lola-ab.log" ]; then
    note "== bench-lola A/B: LOLA_CONV_LAYOUT=nhwc (ae rows), LOLA_ATTENTION=flash (dit rows), bf16"
    grep -E '^RESULT|^error|^HINT' "$OUT/bench-lola-ab.log" | awk '!seen[$0]++' | tee -a "$OUT/summary.txt"
fi
if [ -f "$OUT/memcheck.log" ]; then
    note "== memcheck: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
    grep -E '^=+ (Invalid|Program hit|Address|  at )' "$OUT/memcheck.log" | head -20 | tee -a "$OUT/summary.txt"
fi
note "total $((SECONDS - T0))s"
exit $status
