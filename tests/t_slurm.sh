#!/usr/bin/env bash
# t_slurm.sh: the Slurm scripts (slurm/) against stand-in sbatch/srun/scontrol (tests/stubs/,
# which record their arguments in $LOLA_STUB_LOG):
#  A. slurm/submit.sh: five sbatch --parsable calls with the afterok dependency chain
#     train-ae -> cache -> {train-dm, train-ns} -> eval, job ids parsed (also "id;cluster"),
#     SBATCH_EXTRA / SBATCH_EXTRA_<STAGE>, --stages subsets, run.dir from the config or an
#     override, a failing sbatch, a bad config (nothing submitted), --dry-run;
#  B. slurm/common.sh with a fake binary: the SLURM_JOB_ID guard, LOLA_SLURM_DRYRUN, missing
#     binary/config, bad arguments, OMP_NUM_THREADS from SLURM_CPUS_PER_TASK, srun --mpi=pmix /
#     pmi2 / plain fallback, exit status mapping (0 complete, 3 -> scontrol requeue + exit 0,
#     other failures propagated, failed requeue, LOLA_MAX_REQUEUES), the warning signal on a stage
#     that cannot checkpoint (cache: SIGTERM to the step, then requeue), and a SIGTERM from
#     Slurm (scancel) that must not requeue;
#  C. the real signal path with build/lola: a tiny Euler set from build/well-euler, then
#     slurm/train_ae.sh under the stubs; SIGUSR1 to the batch script while it trains -> the
#     program checkpoints (<run>/ae/state.h5) and exits 3 -> `scontrol requeue <job>` and exit 0;
#     the requeued job (same script again) resumes at the same step and completes;
#  D. outside Slurm with LOLA_SLURM_ALLOW_NO_JOB=1: the mpirun fallback with 2 real ranks, the
#     signal forwarded by mpirun, exit 3 without a requeue, LOLA_STOP_AFTER_STEPS passed through.
# Prints PASS/FAIL lines (tests/run.sh counts them).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
BUILD=${LOLA_BUILD:-build}
LOLA=${LOLA_BIN:-$BUILD/lola}
GEN=$BUILD/well-euler
fails=0
pass() { echo "PASS slurm: $*"; }
fail() { echo "FAIL slurm: $*"; fails=$((fails + 1)); }
check() { # NAME COMMAND...: PASS when the command succeeds
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
if [ ! -x "$LOLA" ]; then fail "$LOLA not built (make)"; exit 1; fi
LOLA=$(cd "$(dirname "$LOLA")" && pwd)/$(basename "$LOLA")

T=$(mktemp -d /tmp/lola_t_slurm.XXXXXX)
bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT

# A clean environment: no real Slurm/MPI launcher variables, no LOLA_* knobs from the caller.
for v in $(compgen -e); do
    case $v in
    SLURM_* | SRUN_* | SBATCH_* | OMPI_COMM_WORLD_* | PMI_* | PMIX_* | LOLA_*) unset "$v" ;;
    esac
done
mkdir -p "$T/bin"
cp tests/stubs/sbatch tests/stubs/srun tests/stubs/scontrol "$T/bin/"
chmod +x "$T/bin/"*
export PATH=$T/bin:$PATH
export LOLA_STUB_LOG=$T/calls.log
CFG=$ROOT/tests/configs/tiny_slurm_ae.yaml

reset_log() { rm -f "$LOLA_STUB_LOG" "$LOLA_STUB_LOG.next"; : >"$LOLA_STUB_LOG"; }
calls() { grep -c "^$1 " "$LOLA_STUB_LOG"; }        # number of recorded calls of a command
call_line() { grep "^$1 " "$LOLA_STUB_LOG" | sed -n "${2}p"; } # the N-th call's line
has() { grep -qF -- "$2" <<<"$1"; }                  # has TEXT NEEDLE
hasnt() { ! grep -qF -- "$2" <<<"$1"; }

# ================================================================================================
# A. submit.sh
reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA "$ROOT/slurm/submit.sh" "$CFG" dataset.root=/nowhere 2>&1)
rc=$?
check "submit: exit 0" [ $rc -eq 0 ]
check "submit: five sbatch calls" [ "$(calls sbatch)" -eq 5 ]
l1=$(call_line sbatch 1) l2=$(call_line sbatch 2) l3=$(call_line sbatch 3) l4=$(call_line sbatch 4) l5=$(call_line sbatch 5)
ok=1
for l in "$l1" "$l2" "$l3" "$l4" "$l5"; do has "$l" "--parsable" || ok=0; has "$l" " $CFG dataset.root=/nowhere" || ok=0; done
check "submit: every call --parsable, absolute config, overrides passed" [ $ok -eq 1 ]
check "submit: order and scripts" eval 'has "$l1" "$ROOT/slurm/train_ae.sh" && has "$l2" "$ROOT/slurm/cache.sh" &&
    has "$l3" "$ROOT/slurm/train_dm.sh" && has "$l4" "$ROOT/slurm/train_ns.sh" && has "$l5" "$ROOT/slurm/eval.sh"'
check "submit: train-ae has no dependency" eval 'hasnt "$l1" "--dependency"'
check "submit: cache afterok:train-ae" eval 'has "$l2" "--dependency=afterok:1001 "'
check "submit: train-dm afterok:cache" eval 'has "$l3" "--dependency=afterok:1002 "'
check "submit: train-ns afterok:cache" eval 'has "$l4" "--dependency=afterok:1002 "'
check "submit: eval afterok:train-dm:train-ns" eval 'has "$l5" "--dependency=afterok:1003:1004 "'
check "submit: --kill-on-invalid-dep with dependencies" eval 'has "$l5" "--kill-on-invalid-dep=yes"'
check "submit: job names from run.name" eval 'has "$l1" "--job-name=lola-tiny_slurm-train-ae" && has "$l5" "--job-name=lola-tiny_slurm-eval"'
check "submit: logs in <run.dir>/slurm (run.dir of the config, relative to the submit dir)" \
    eval 'has "$l1" "--output=$T/runs/tiny_slurm/slurm/%x-%j.out" && [ -d "$T/runs/tiny_slurm/slurm" ]'
check "submit: prints the job ids" eval 'has "$out" "train-ae  1001" && has "$out" "eval      1005  (after 1003:1004)"'
check "submit: jobs.txt records the ids" grep -q 'train-ae=1001 cache=1002 train-dm=1003 train-ns=1004 eval=1005' \
    "$T/runs/tiny_slurm/slurm/jobs.txt"

reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA SBATCH_EXTRA="--partition=p1 --time=1:00:00" SBATCH_EXTRA_TRAIN_AE="--time=9:00:00 --nodes=2" \
    LOLA_STUB_SBATCH_CLUSTER=c1 "$ROOT/slurm/submit.sh" "$CFG" run.dir="$T/other" 2>&1)
rc=$?
l1=$(call_line sbatch 1) l2=$(call_line sbatch 2) l5=$(call_line sbatch 5)
check "submit: SBATCH_EXTRA on every stage" eval '[ $rc -eq 0 ] && has "$l1" "--partition=p1" && has "$l5" "--partition=p1 --time=1:00:00"'
check "submit: SBATCH_EXTRA_TRAIN_AE after SBATCH_EXTRA, train-ae only" \
    eval 'has "$l1" "--time=1:00:00 --time=9:00:00 --nodes=2" && hasnt "$l2" "9:00:00"'
check "submit: id;cluster parsed" eval 'has "$l2" "--dependency=afterok:1001 " && has "$l5" "afterok:1003:1004 "'
check "submit: run.dir override" eval 'has "$l1" "--output=$T/other/slurm/" && [ -d "$T/other/slurm" ]'

reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA "$ROOT/slurm/submit.sh" --stages train-dm,train-ns,eval "$CFG" 2>&1)
rc=$?
check "submit --stages: three calls" eval '[ $rc -eq 0 ] && [ "$(calls sbatch)" -eq 3 ]'
l1=$(call_line sbatch 1) l3=$(call_line sbatch 3)
check "submit --stages: train-dm without dependency, eval after both" \
    eval 'has "$l1" "train_dm.sh" && hasnt "$l1" "--dependency" && has "$l3" "eval.sh" && has "$l3" "afterok:1001:1002 "'
out=$(cd "$T" && LOLA_BIN=$LOLA "$ROOT/slurm/submit.sh" --stages train-ae,bogus "$CFG" 2>&1)
rc=$?
check "submit --stages: unknown stage refused" eval '[ $rc -ne 0 ] && has "$out" "unknown stage '"'bogus'"'"'

reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA LOLA_STUB_SBATCH_FAIL_AT=3 "$ROOT/slurm/submit.sh" "$CFG" 2>&1)
rc=$?
check "submit: a failing sbatch stops the chain (exit != 0, says what to cancel)" \
    eval '[ $rc -ne 0 ] && [ "$(calls sbatch)" -eq 3 ] && has "$out" "scancel 1001 1002"'

reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA "$ROOT/slurm/submit.sh" "$CFG" ae.lat_chanels=3 2>&1)
rc=$?
check "submit: bad override -> error, nothing submitted" \
    eval '[ $rc -ne 0 ] && [ "$(calls sbatch)" -eq 0 ] && has "$out" "ae.lat_chanels"'
reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA LOLA_SUBMIT_NO_CHECK=1 "$ROOT/slurm/submit.sh" --stages cache "$CFG" run.dir=nc 'a=b c' 2>&1)
rc=$?
check "submit: LOLA_SUBMIT_NO_CHECK=1 takes run.dir from the overrides" \
    eval '[ $rc -eq 0 ] && [ "$(calls sbatch)" -eq 1 ] && has "$(call_line sbatch 1)" "--job-name=lola-cache --output=$T/nc/slurm/%x-%j.out" &&
          has "$(call_line sbatch 1)" "run.dir=nc a=b\\ c"'
out=$(cd "$T" && LOLA_BIN=$LOLA LOLA_SUBMIT_NO_CHECK=1 "$ROOT/slurm/submit.sh" "$CFG" 2>&1)
rc=$?
check "submit: LOLA_SUBMIT_NO_CHECK=1 without run.dir= -> error" eval '[ $rc -ne 0 ] && has "$out" "needs run.dir="'
out=$(cd "$T" && LOLA_BIN=$T/nothing "$ROOT/slurm/submit.sh" "$CFG" 2>&1)
rc=$?
check "submit: missing binary -> error" eval '[ $rc -ne 0 ] && has "$out" "not an executable file"'
reset_log
out=$(cd "$T" && LOLA_BIN=$LOLA "$ROOT/slurm/submit.sh" --dry-run "$CFG" 2>&1)
rc=$?
check "submit --dry-run: prints sbatch commands, submits nothing" \
    eval '[ $rc -eq 0 ] && [ "$(calls sbatch)" -eq 0 ] && has "$out" "--dependency=afterok:\<train-dm\>:\<train-ns\>"'

# ================================================================================================
# B. the stage scripts with a fake binary. It records its arguments and OMP_NUM_THREADS, exits
# with $FAKE_RC, or with FAKE_WAIT=1 runs until a signal: USR1 -> exit 3 (checkpointed), TERM ->
# exit 143.
FAKE=$T/fake-lola
cat >"$FAKE" <<'EOF'
#!/usr/bin/env bash
echo "args: $* | OMP_NUM_THREADS=$OMP_NUM_THREADS" >>"$FAKE_LOG"
if [ "${FAKE_WAIT:-0}" = 1 ]; then
    trap 'echo "got USR1" >>"$FAKE_LOG"; exit 3' USR1
    trap 'echo "got TERM" >>"$FAKE_LOG"; exit 143' TERM
    echo started >>"$FAKE_LOG"
    for i in $(seq 600); do sleep 0.05; done
    exit 9
fi
exit "${FAKE_RC:-0}"
EOF
chmod +x "$FAKE"
export FAKE_LOG=$T/fake.log
# job SCRIPT ARGS...: runs a stage script as job 77 with the fake binary, output in $T/job.out
job() {
    exec_job env SLURM_JOB_ID=77 SLURM_SUBMIT_DIR="$ROOT" SLURM_CPUS_PER_TASK=3 SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 \
        LOLA_BIN="${JOB_BIN:-$FAKE}" bash "$ROOT/slurm/$1" "${@:2}" >"$T/job.out" 2>&1
}
jout() { cat "$T/job.out"; }
# In a background subshell (`job ... &`) exec replaces the subshell, so $! is the batch shell.
exec_job() { if [ "${JOB_EXEC:-0}" = 1 ]; then exec "$@"; else "$@"; fi; }

reset_log; rm -f "$FAKE_LOG"
env LOLA_BIN="$FAKE" bash slurm/train_ae.sh "$CFG" >"$T/job.out" 2>&1
rc=$?
check "guard: refuses outside a job (exit 2, says why), runs nothing" \
    eval '[ $rc -eq 2 ] && has "$(jout)" "not inside a Slurm job" && [ ! -e "$FAKE_LOG" ] && [ "$(calls srun)" -eq 0 ]'
env LOLA_BIN="$FAKE" LOLA_SLURM_DRYRUN=1 bash slurm/train_ae.sh "$CFG" a.b=1 >"$T/job.out" 2>&1
rc=$?
check "LOLA_SLURM_DRYRUN=1: prints the command, runs nothing" \
    eval '[ $rc -eq 0 ] && has "$(jout)" "$FAKE train-ae -c $CFG a.b=1" && has "$(jout)" "not running it" && [ ! -e "$FAKE_LOG" ]'
JOB_BIN=$T/nothing job train_ae.sh "$CFG"
rc=$?
check "missing LOLA_BIN: exit 2, clear message" eval '[ $rc -eq 2 ] && has "$(jout)" "does not exist: build it before submitting"'
: >"$T/noexec"
JOB_BIN=$T/noexec job train_ae.sh "$CFG"
rc=$?
check "non-executable LOLA_BIN: exit 2" eval '[ $rc -eq 2 ] && has "$(jout)" "is not an executable file"'
job train_ae.sh "$T/missing.yaml"
rc=$?
check "missing config: exit 2" eval '[ $rc -eq 2 ] && has "$(jout)" "missing.yaml'"'"' not found"'
job train_ae.sh "$CFG" oops
rc=$?
check "argument that is not key=value: exit 2" eval '[ $rc -eq 2 ] && has "$(jout)" "'"'oops'"' is not a key=value override"'
job train_ae.sh
rc=$?
check "no config: usage, exit 2" eval '[ $rc -eq 2 ] && has "$(jout)" "usage: train_ae.sh CONFIG"'

reset_log; rm -f "$FAKE_LOG"
FAKE_RC=0 job train_dm.sh "$CFG" dm_train.epochs=2 'run.dir=a b'
rc=$?
check "exit 0 -> stage complete, exit 0, no requeue" eval '[ $rc -eq 0 ] && has "$(jout)" "stage train-dm complete" && [ "$(calls scontrol)" -eq 0 ]'
check "srun --mpi=pmix when srun lists pmix" eval 'has "$(call_line srun 2)" "srun --kill-on-bad-exit=1 --mpi=pmix $FAKE train-dm"'
check "arguments reach the binary (quoted override kept whole)" grep -qF "args: train-dm -c $CFG dm_train.epochs=2 run.dir=a b |" "$FAKE_LOG"
check "OMP_NUM_THREADS from SLURM_CPUS_PER_TASK" grep -qF "OMP_NUM_THREADS=3" "$FAKE_LOG"
reset_log
FAKE_RC=0 LOLA_STUB_MPI_LIST="pmi2" job train_ns.sh "$CFG"
rc=$?
check "srun --mpi=pmi2 when srun lists pmi2 but not pmix" eval '[ $rc -eq 0 ] && has "$(call_line srun 2)" "--mpi=pmi2 $FAKE train-ns"'
reset_log
FAKE_RC=0 LOLA_STUB_MPI_LIST="" job eval.sh "$CFG"
rc=$?
check "plain srun (with a warning) when srun lists neither" \
    eval '[ $rc -eq 0 ] && has "$(call_line srun 2)" "srun --kill-on-bad-exit=1 $FAKE eval" && has "$(jout)" "lists neither pmix nor pmi2"'
reset_log
FAKE_RC=0 LOLA_SRUN_MPI=pmi2 job cache.sh "$CFG"
rc=$?
check "LOLA_SRUN_MPI forces the plugin" eval '[ $rc -eq 0 ] && [ "$(calls srun)" -eq 1 ] && has "$(call_line srun 1)" "--mpi=pmi2 $FAKE cache"'

reset_log
FAKE_RC=1 job train_ae.sh "$CFG"
rc=$?
check "failure propagates (exit 1, no requeue)" eval '[ $rc -eq 1 ] && [ "$(calls scontrol)" -eq 0 ] && has "$(jout)" "exited with status 1"'
FAKE_RC=3 job train_ae.sh "$CFG"
rc=$?
check "exit 3 -> scontrol requeue <job>, exit 0" eval '[ $rc -eq 0 ] && [ "$(call_line scontrol 1)" = "scontrol requeue 77" ]'
reset_log
FAKE_RC=3 LOLA_STUB_SCONTROL_FAIL=1 job train_ae.sh "$CFG"
rc=$?
check "exit 3 and a failing requeue -> exit 3" eval '[ $rc -eq 3 ] && [ "$(calls scontrol)" -eq 1 ] && has "$(jout)" "resubmit"'
reset_log
FAKE_RC=3 SLURM_RESTART_COUNT=5 LOLA_MAX_REQUEUES=5 job train_ae.sh "$CFG"
rc=$?
check "LOLA_MAX_REQUEUES reached -> no requeue, exit 3" eval '[ $rc -eq 3 ] && [ "$(calls scontrol)" -eq 0 ]'

# signal_job SCRIPT SIGNAL: starts the script with the waiting fake, sends SIGNAL to the batch
# shell once the step runs, waits; rc in $rc.
signal_job() {
    rm -f "$FAKE_LOG"
    FAKE_WAIT=1 JOB_EXEC=1 job "$1" "$CFG" &
    local pid=$!
    bg+=("$pid")
    for _ in $(seq 200); do grep -q started "$FAKE_LOG" 2>/dev/null && break; sleep 0.05; done
    kill -s "$2" "$pid"
    wait "$pid"
    rc=$?
}
reset_log
signal_job cache.sh USR1
check "cache: warning signal -> SIGTERM to the step, then requeue, exit 0" \
    eval '[ $rc -eq 0 ] && grep -q "got TERM" "$FAKE_LOG" && [ "$(call_line scontrol 1)" = "scontrol requeue 77" ]'
reset_log
signal_job train_ns.sh TERM
check "training stage: SIGTERM (scancel) -> SIGUSR1 to the step, no requeue, exit 3" \
    eval '[ $rc -eq 3 ] && grep -q "got USR1" "$FAKE_LOG" && [ "$(calls scontrol)" -eq 0 ]'

# ================================================================================================
# C. the real signal path: build/lola train-ae under slurm/train_ae.sh.
if [ ! -x "$GEN" ]; then fail "$GEN not built (make $GEN)"; echo "$fails failure(s)"; exit 1; fi
t0=$SECONDS
if ! OMP_NUM_THREADS=1 "$GEN" --out "$T/data" --resolution 16 --trajectories 6 --frames 11 --t-max 0.3 --seed 3 \
    --bc open --gammas 1.4 >"$T/gen.log" 2>&1; then
    fail "well-euler: $(tail -3 "$T/gen.log")"
    exit 1
fi
RUN=$T/run
real_job() { # LOG [env...]: slurm/train_ae.sh as job 4242 with the real binary
    local log=$1
    shift
    exec_job env SLURM_JOB_ID=4242 SLURM_SUBMIT_DIR="$ROOT" SLURM_CPUS_PER_TASK=1 SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 \
        LOLA_BIN="$LOLA" "$@" bash "$ROOT/slurm/train_ae.sh" "$CFG" dataset.root="$T/data" run.dir="$RUN" >"$log" 2>&1
}
reset_log
JOB_EXEC=1 real_job "$T/run1.log" &
pid=$!
bg+=("$pid")
started=0
for _ in $(seq 1200); do # up to 60 s for the first epoch
    if grep -q '^ae epoch 1/60' "$T/run1.log" 2>/dev/null; then started=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
check "real: training started under slurm/train_ae.sh" [ $started -eq 1 ]
kill -USR1 "$pid" 2>/dev/null
wait "$pid"
rc=$?
stop_line=$(grep -o 'stop requested: checkpoint written at step [0-9]*' "$T/run1.log")
N=${stop_line##* }
check "real: SIGUSR1 to the batch script reached the program (checkpoint at step ${N:-?} of 240)" \
    eval '[ -n "$N" ] && [ "$N" -gt 0 ] && [ "$N" -lt 240 ] && has "$(cat "$T/run1.log")" "received SIGUSR1"'
check "real: checkpoint written ($RUN/ae/state.h5)" [ -s "$RUN/ae/state.h5" ]
check "real: exit 3 -> scontrol requeue 4242, batch script exit 0" \
    eval '[ $rc -eq 0 ] && [ "$(calls scontrol)" -eq 1 ] && [ "$(call_line scontrol 1)" = "scontrol requeue 4242" ] &&
          has "$(cat "$T/run1.log")" "stopped after writing a checkpoint (exit 3)"'
check "real: launched with srun --mpi=pmix" eval 'has "$(call_line srun 2)" "--mpi=pmix $LOLA train-ae -c $CFG"'
if [ $rc -ne 0 ] || [ -z "$N" ]; then sed 's/^/    | /' "$T/run1.log" | tail -15; fi

# The requeued job: the same script again (Slurm sets SLURM_RESTART_COUNT).
real_job "$T/run2.log" SLURM_RESTART_COUNT=1
rc=$?
check "real: requeued job resumes at step $N" grep -qF "ae: resumed from $RUN/ae/state.h5 at step $N " "$T/run2.log"
check "real: requeued job completes (240 steps, exit 0, no second requeue)" \
    eval '[ $rc -eq 0 ] && grep -q "training complete: 240 steps" "$T/run2.log" && grep -q "stage train-ae complete" "$T/run2.log" &&
          [ "$(calls scontrol)" -eq 1 ]'
if [ $rc -ne 0 ]; then sed 's/^/    | /' "$T/run2.log" | tail -15; fi

# ================================================================================================
# D. outside Slurm (LOLA_SLURM_ALLOW_NO_JOB=1): the launcher falls back to mpirun; 2 real ranks,
# SIGUSR1 to the script -> mpirun forwards it -> both ranks agree, checkpoint, exit 3 (no job to
# requeue: the script exits 3). Then LOLA_STOP_AFTER_STEPS=2 passes through to the ranks: resume
# at the same step, stop again 2 steps later.
if ! command -v mpirun >/dev/null 2>&1 || "$LOLA" info 2>&1 | grep -qE '^ *MPI +not'; then
    echo "SKIP t_slurm: no mpirun or no MPI build (mpirun fallback not tested)"
else
    margs="--oversubscribe"
    [ "$(id -u)" = 0 ] && margs="$margs --allow-run-as-root"
    RUNM=$T/run_mpi
    mpi_job() { # LOG [env...]
        local log=$1
        shift
        exec_job env LOLA_SLURM_ALLOW_NO_JOB=1 LOLA_NP=2 LOLA_MPIRUN_ARGS="$margs" LOLA_OMP_NUM_THREADS=1 LOLA_BIN="$LOLA" "$@" \
            bash "$ROOT/slurm/train_ae.sh" "$CFG" dataset.root="$T/data" run.dir="$RUNM" >"$log" 2>&1
    }
    reset_log
    JOB_EXEC=1 mpi_job "$T/mpi1.log" &
    pid=$!
    bg+=("$pid")
    started=0
    for _ in $(seq 1200); do
        if grep -aq '^ae epoch 1/60' "$T/mpi1.log" 2>/dev/null; then started=1; break; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -USR1 "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    M=$(grep -ao 'stop requested: checkpoint written at step [0-9]*' "$T/mpi1.log")
    M=${M##* }
    check "mpirun fallback: auto launcher is mpirun -np 2 outside Slurm, 2 ranks train" \
        eval '[ $started -eq 1 ] && grep -aq "run: mpirun -np 2 $margs $LOLA train-ae" "$T/mpi1.log" && grep -aq "2 rank(s)" "$T/mpi1.log"'
    check "mpirun fallback: SIGUSR1 forwarded, checkpoint at step ${M:-?}, exit 3, no scontrol outside a job" \
        eval '[ $rc -eq 3 ] && [ -n "$M" ] && [ "$M" -gt 0 ] && [ "$M" -lt 240 ] && [ "$(calls scontrol)" -eq 0 ] &&
              grep -aq "not in a Slurm job: nothing to requeue" "$T/mpi1.log"'
    if [ $rc -ne 3 ] || [ -z "$M" ]; then grep -av '^ae epoch' "$T/mpi1.log" | sed 's/^/    | /' | tail -15; fi
    mpi_job "$T/mpi2.log" LOLA_STOP_AFTER_STEPS=2
    rc=$?
    check "mpirun fallback: rerun resumes at step $M, LOLA_STOP_AFTER_STEPS=2 reaches the ranks" \
        eval '[ $rc -eq 3 ] && grep -aqF "ae: resumed from $RUNM/ae/state.h5 at step $M " "$T/mpi2.log" &&
              grep -aq "checkpoint written at step $((M + 2)) " "$T/mpi2.log"'
fi
echo "real signal path: $((SECONDS - t0)) s"
[ $fails -eq 0 ]
