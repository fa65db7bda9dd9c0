#!/usr/bin/env bash
# t_mpi.sh: mpi/dist under a real launcher and in a serial build.
#  - mpirun -np 2 and -np 3: every collective agrees with its closed form (test_dist);
#  - the LOLA_* arithmetic switches differ between ranks: the job refuses to start, naming them;
#  - one rank dies (lola_die) while the other waits in an all-reduce: the job ends quickly and
#    non-zero (MPI_Abort), not a hang (timeout);
#  - an MPI error (bad broadcast root) is decoded with MPI_Error_string and ends the job;
#  - an MPI build started by a launcher it cannot talk to (Slurm step variables, 1 MPI rank)
#    refuses to run;
#  - a build WITHOUT MPI (dist.c compiled without LOLA_MPI) runs single-process and refuses to
#    start when the environment says several tasks were launched (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
#    srun step), but not in a batch script (SLURM_NTASKS>1 without a step).
# Prints PASS/FAIL lines; SKIP lines (not counted) when MPI is not available.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${LOLA_BUILD:-build}
T=$BUILD/tests/test_dist
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs "$@" with a time limit; sets rc, secs and leaves the output in $tmp/out.
run() {
    local t0 t1
    t0=$(date +%s.%N)
    timeout 60 "$@" >"$tmp/out" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

if [ ! -x "$T" ]; then
    fail "t_mpi: $T not built (make $T)"
    exit 1
fi

# ------------------------------------------------------------------------------------------------
# MPI runs
MPIRUN=${MPIRUN:-mpirun}
if ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "SKIP t_mpi: no $MPIRUN on PATH (MPI runs not tested)"
elif ! grep -q 'dist MPI build' <("$T" 2>&1); then
    echo "SKIP t_mpi: $T was built without MPI (MPI runs not tested)"
else
    M=("$MPIRUN" --oversubscribe)
    [ "$(id -u)" = 0 ] && M+=(--allow-run-as-root)
    for np in 2 3; do
        run env LOLA_TEST_ONE_NODE=1 "${M[@]}" -np $np "$T"
        sed -n "s/^PASS /PASS np$np: /p; s/^FAIL /FAIL np$np: /p" "$tmp/out"
        nf=$(grep -c '^FAIL ' "$tmp/out")
        fails=$((fails + nf))
        if [ $rc -eq 0 ] && grep -q "^# [0-9]* passed, 0 failed" "$tmp/out"; then
            pass "mpirun -np $np test_dist exits 0 (${secs}s)"
        else
            fail "mpirun -np $np test_dist: exit $rc"; head -20 "$tmp/out" | sed 's/^/    /'
        fi
    done

    # the arithmetic switches must agree between ranks (dist_init refuses a mix)
    run "${M[@]}" -np 2 bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then export LOLA_ACTIVATIONS=bf16; fi; exec "$@"' x "$T"
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "LOLA_ACTIVATIONS differs between ranks: rank 1 has 'bf16', rank 0 has '(unset)'" "$tmp/out"; then
        pass "LOLA_ACTIVATIONS set on rank 1 only: the job refuses to start, naming the variable and both values (exit $rc)"
    else
        fail "a LOLA_* switch differing between ranks: exit $rc"; head -10 "$tmp/out" | sed 's/^/    /'
    fi
    run env LOLA_PRECISION=fp32 LOLA_TEST_ONE_NODE=1 "${M[@]}" -np 2 -x LOLA_PRECISION "$T"
    [ $rc -eq 0 ] && pass "the same LOLA_PRECISION on every rank starts normally" || { fail "equal switches on 2 ranks: exit $rc"; head -10 "$tmp/out" | sed 's/^/    /'; }

    run "${M[@]}" -np 2 "$T" abort
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'intentional failure on rank 1' "$tmp/out" \
        && ! grep -q 'must not happen' "$tmp/out" && awk -v s="$secs" 'BEGIN { exit !(s < 20) }'; then
        pass "one rank dies -> whole job ends, exit $rc after ${secs}s"
    else
        fail "abort from one rank: exit $rc after ${secs}s (124 = hung until timeout)"; head -20 "$tmp/out" | sed 's/^/    /'
    fi

    run "${M[@]}" -np 2 "$T" mpierr
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'MPI call MPI_Bcast(.*failed (error [0-9]*): .' "$tmp/out" \
        && ! grep -q 'must not happen' "$tmp/out"; then
        pass "MPI error decoded and job ended: $(grep -o 'failed (error.*' "$tmp/out" | head -1)"
    else
        fail "MPI error path: exit $rc"; head -20 "$tmp/out" | sed 's/^/    /'
    fi

    # A task of an srun step whose MPI cannot see the other tasks (srun --mpi=none).
    run env SLURM_PROCID=0 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 "$T" launch
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'MPI sees 1 rank but the launcher started 2 tasks' "$tmp/out"; then
        pass "MPI build refuses a launcher it cannot talk to (srun step, 1 MPI rank)"
    else
        fail "MPI build under a PMI-less srun step: exit $rc"; head -10 "$tmp/out" | sed 's/^/    /'
    fi
fi

# ------------------------------------------------------------------------------------------------
# Serial build of the same code (the other branch of the LOLA_MPI switch).
CC=${CC:-gcc}
S=$tmp/test_dist_serial
if ! $CC -std=c11 -O1 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -Isrc -Impi \
        mpi/dist.c src/common.c tests/test_dist.c -o "$S" -lm >"$tmp/cc" 2>&1; then
    fail "serial build of mpi/dist.c (no LOLA_MPI)"; head -20 "$tmp/cc" | sed 's/^/    /'
else
    pass "serial build of mpi/dist.c compiles (-Werror)"
    run env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u SLURM_STEP_ID -u SLURM_STEPID "$S"
    sed -n "s/^PASS /PASS serial: /p; s/^FAIL /FAIL serial: /p" "$tmp/out"
    fails=$((fails + $(grep -c '^FAIL ' "$tmp/out")))
    [ $rc -eq 0 ] && pass "serial test_dist exits 0" || fail "serial test_dist: exit $rc"

    expect_refuse() { # description, env assignments...
        local what=$1; shift
        run env "$@" "$S" launch
        if [ $rc -ne 0 ] && grep -q 'built WITHOUT MPI but was launched as' "$tmp/out" && ! grep -q '^launch' "$tmp/out"; then
            pass "serial build refuses $what"
        else
            fail "serial build under $what: exit $rc"; head -5 "$tmp/out" | sed 's/^/    /'
        fi
    }
    expect_run() {
        local what=$1; shift
        run env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u SLURM_STEP_ID -u SLURM_STEPID "$@" "$S" launch
        if [ $rc -eq 0 ] && grep -q '^launch rank 0 size 1 local 0/1' "$tmp/out"; then
            pass "serial build runs under $what"
        else
            fail "serial build under $what: exit $rc"; head -5 "$tmp/out" | sed 's/^/    /'
        fi
    }
    expect_refuse "OMPI_COMM_WORLD_SIZE=2" OMPI_COMM_WORLD_SIZE=2
    expect_refuse "PMI_SIZE=4" PMI_SIZE=4
    expect_refuse "an srun step with SLURM_NTASKS=4" SLURM_NTASKS=4 SLURM_PROCID=1 SLURM_STEP_ID=0
    expect_refuse "an srun step with SLURM_STEP_NUM_TASKS=8" SLURM_STEP_NUM_TASKS=8 SLURM_NTASKS=8 SLURM_PROCID=0 SLURM_STEPID=3
    expect_run "a batch script (SLURM_NTASKS=4, SLURM_PROCID=0, no step)" SLURM_NTASKS=4 SLURM_PROCID=0
    expect_run "OMPI_COMM_WORLD_SIZE=1" OMPI_COMM_WORLD_SIZE=1
    expect_run "SLURM_NTASKS=4 without SLURM_PROCID" SLURM_NTASKS=4 SLURM_STEP_ID=0
fi
[ $fails -eq 0 ]
