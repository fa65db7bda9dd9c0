# slurm/common.sh: the logic shared by the per-stage sbatch scripts (train_ae.sh, cache.sh,
# train_dm.sh, train_ns.sh, eval.sh). Sourced, never run; see slurm/README.md.
#
# A stage script sets LOLA_STAGE (the lola command: train-ae, cache, ...) and
# LOLA_STAGE_CHECKPOINTS (1: the command checkpoints and exits 3 on SIGUSR1/SIGTERM; 0: it does
# not, it is stopped and simply run again), then calls `lola_stage_main "$@"` with its arguments
# CONFIG [key=value ...].
#
# What lola_stage_main does:
#  1. refuses to run outside a Slurm job (no SLURM_JOB_ID) unless LOLA_SLURM_DRYRUN=1 (print the
#     command, run nothing) or LOLA_SLURM_ALLOW_NO_JOB=1 (run it here, e.g. with mpirun);
#  2. checks that LOLA_BIN (default $LOLA_HOME/build/lola, LOLA_HOME = the submit directory) is
#     an executable file and that CONFIG exists. It never builds or copies binaries;
#  3. sets OMP_NUM_THREADS from SLURM_CPUS_PER_TASK (and SRUN_CPUS_PER_TASK, since srun >= 22.05
#     no longer inherits --cpus-per-task from sbatch);
#  4. picks the launcher: `srun --mpi=pmix` when `srun --mpi=list` lists pmix, else
#     `srun --mpi=pmi2` when it lists pmi2, else plain srun (Slurm's MpiDefault); mpirun outside
#     Slurm; LOLA_LAUNCHER=srun|mpirun|none and LOLA_SRUN_MPI=pmix|pmi2|none|... force a choice;
#  5. runs the step in the background and waits for it. SIGUSR1 (sent to this batch shell by
#     `--signal=B:USR1@120` before the time limit) and SIGTERM are forwarded to the step as
#     SIGUSR1 (training stages: "checkpoint at the next step and exit 3") or SIGTERM (cache,
#     eval: they cannot checkpoint; cache skips finished files when run again, eval starts over);
#  6. maps the step's exit status to the job's:
#       0            stage complete                                   -> exit 0
#       3            stopped after a checkpoint (LOLA_EXIT_REQUEUE)   -> scontrol requeue, exit 0
#       >128 after our own forwarded warning signal (cache/eval)     -> scontrol requeue, exit 0
#       anything else (or a failed requeue)                           -> exit with that status
#     Exit 0 after a successful requeue: the job is back in the queue (PENDING), so jobs that
#     depend on it with afterok keep waiting; Slurm ignores the script's status of a requeued
#     job. When the requeue fails (job not requeueable, LOLA_MAX_REQUEUES reached, not in a job)
#     the script exits 3, which is a failure for afterok. A SIGTERM that is not ours (scancel,
#     preemption) is never turned into a requeue: scancel means stop, and preemption in
#     REQUEUE mode requeues the job by itself.
#
# Environment (all optional):
#   LOLA_HOME                repository root (default: $SLURM_SUBMIT_DIR when it holds
#                            slurm/common.sh, else the parent of the stage script's directory)
#   LOLA_BIN                 the lola binary (default $LOLA_HOME/build/lola)
#   LOLA_LAUNCHER            auto (default) | srun | mpirun | none (run the binary directly)
#   LOLA_SRUN_MPI            auto (default) | pmix | pmi2 | none | any srun --mpi value
#   LOLA_SRUN_ARGS           extra srun arguments (whitespace-separated)
#   LOLA_MPIRUN_ARGS         extra mpirun arguments (e.g. "--allow-run-as-root -x OMP_NUM_THREADS")
#   LOLA_NP                  mpirun's -np (default: SLURM_NTASKS, or 1 outside Slurm)
#   LOLA_OMP_NUM_THREADS     overrides the threads per rank
#   LOLA_MAX_REQUEUES        give up after this many requeues (SLURM_RESTART_COUNT; default 100)
#   LOLA_SLURM_DRYRUN=1      print what would run, run nothing (works outside a job)
#   LOLA_SLURM_ALLOW_NO_JOB=1  allow running outside a Slurm job
#
# ---- NCCL (GPU builds; CPU builds ignore these) -------------------------------------------------
# Nothing is hard-coded: export what your site needs before sbatch (sbatch passes the submitting
# environment on by default) or uncomment here. The job log prints every NCCL_* variable it sees.
#   export NCCL_DEBUG=INFO               # NCCL init, topology, chosen transports (very verbose)
#   export NCCL_DEBUG_SUBSYS=INIT,NET    # narrow NCCL_DEBUG down
#   export NCCL_SOCKET_IFNAME=...        # NIC for NCCL's bootstrap/socket traffic when NCCL picks a
#                                        # wrong one: an interface name or prefix (ib0, eth, ^docker,lo)
#   export NCCL_IB_HCA=...               # which InfiniBand HCAs/ports to use (e.g. mlx5)
#   export NCCL_NET_GDR_LEVEL=...        # GPUDirect RDMA distance (default: NCCL decides)
# ---------------------------------------------------------------------------------------------------

LOLA_EXIT_REQUEUE=3 # src/train.h

lola_log() { printf '[lola-slurm %s] %s\n' "$(date '+%F %T')" "$*"; }
lola_err() { printf '[lola-slurm %s] error: %s\n' "$(date '+%F %T')" "$*" >&2; }

# True when `srun --mpi=list` output ($1) names the plugin $2 (also as e.g. pmix_v4). Older srun
# prints "srun: pmix", newer a tab-indented list; both to stdout or stderr.
lola_mpi_list_has() {
    printf '%s\n' "$1" | grep -Eq "(^|[[:space:]:])$2(_v[0-9]+)?([[:space:]]|\$)"
}

# Sets the array LOLA_LAUNCH to the launcher command (without the program).
lola_pick_launcher() {
    local launcher=${LOLA_LAUNCHER:-auto} extra
    if [ "$launcher" = auto ]; then
        if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then launcher=srun
        elif [ -z "${SLURM_JOB_ID:-}" ] && command -v mpirun >/dev/null 2>&1; then launcher=mpirun
        else launcher=none; fi
    fi
    LOLA_LAUNCH=()
    case $launcher in
    srun)
        command -v srun >/dev/null 2>&1 || { lola_err "LOLA_LAUNCHER=srun but srun is not on PATH"; return 1; }
        local mpi=${LOLA_SRUN_MPI:-auto} list
        if [ "$mpi" = auto ]; then
            list=$(srun --mpi=list 2>&1)
            if lola_mpi_list_has "$list" pmix; then mpi=pmix
            elif lola_mpi_list_has "$list" pmi2; then
                mpi=pmi2
                lola_log "note: srun has no PMIx plugin; using --mpi=pmi2 (Open MPI must be built with PMI2 support)"
            else
                mpi=none
                lola_log "warning: srun lists neither pmix nor pmi2; launching with plain srun (Slurm's MpiDefault)." \
                    "If every rank reports 1 rank, set LOLA_SRUN_MPI or LOLA_LAUNCHER=mpirun."
            fi
        fi
        LOLA_LAUNCH=(srun --kill-on-bad-exit=1)
        [ "$mpi" != none ] && LOLA_LAUNCH+=("--mpi=$mpi")
        read -r -a extra <<<"${LOLA_SRUN_ARGS:-}"
        LOLA_LAUNCH+=("${extra[@]}")
        ;;
    mpirun)
        command -v mpirun >/dev/null 2>&1 || { lola_err "LOLA_LAUNCHER=mpirun but mpirun is not on PATH"; return 1; }
        local np=${LOLA_NP:-${SLURM_NTASKS:-1}}
        LOLA_LAUNCH=(mpirun -np "$np")
        read -r -a extra <<<"${LOLA_MPIRUN_ARGS:-}"
        LOLA_LAUNCH+=("${extra[@]}")
        ;;
    none) ;;
    *) lola_err "LOLA_LAUNCHER=$launcher: expected auto, srun, mpirun or none"; return 1 ;;
    esac
    LOLA_LAUNCHER_NAME=$launcher
}

# Signal handling state (see lola_stage_main).
lola_nsig=0
lola_got_usr1=0
lola_got_term=0
lola_step_pid=

lola_on_signal() { # $1 = USR1 | TERM, received by this batch shell
    lola_nsig=$((lola_nsig + 1))
    local fwd=USR1
    [ "$1" = USR1 ] && lola_got_usr1=1
    [ "$1" = TERM ] && lola_got_term=1
    [ "${LOLA_STAGE_CHECKPOINTS:-0}" = 1 ] || fwd=TERM
    if [ -n "$lola_step_pid" ]; then
        lola_log "received SIG$1: sending SIG$fwd to the job step (pid $lola_step_pid)" \
            "$([ "$fwd" = USR1 ] && echo "to checkpoint and stop" || echo "to stop it")"
        kill -s "$fwd" "$lola_step_pid" 2>/dev/null || true
    else
        lola_log "received SIG$1 before the step started: passing it on once it has started"
    fi
}

# Puts the job back in the queue. Returns 0 on success.
lola_requeue() {
    if [ -z "${SLURM_JOB_ID:-}" ]; then
        lola_log "not in a Slurm job: nothing to requeue; run the same command again to resume"
        return 1
    fi
    local n=${SLURM_RESTART_COUNT:-0} max=${LOLA_MAX_REQUEUES:-100}
    if [ "$n" -ge "$max" ]; then
        lola_err "job $SLURM_JOB_ID was already requeued $n times (LOLA_MAX_REQUEUES=$max): not requeueing again"
        return 1
    fi
    lola_log "requeueing job $SLURM_JOB_ID (restart $((n + 1))): scontrol requeue $SLURM_JOB_ID"
    if scontrol requeue "$SLURM_JOB_ID"; then return 0; fi
    lola_err "scontrol requeue $SLURM_JOB_ID failed (was the job submitted with --requeue? is JobRequeue allowed?);" \
        "resubmit the same script to resume"
    return 1
}

# lola_stage_main CONFIG [key=value ...]: see the top of this file.
lola_stage_main() {
    local stage=${LOLA_STAGE:?LOLA_STAGE is not set (slurm/common.sh is sourced by a stage script)}
    local dry=${LOLA_SLURM_DRYRUN:-0}

    # 1. Inside a job?
    if [ -z "${SLURM_JOB_ID:-}" ] && [ "$dry" != 1 ] && [ "${LOLA_SLURM_ALLOW_NO_JOB:-0}" != 1 ]; then
        lola_err "not inside a Slurm job (SLURM_JOB_ID is unset). Submit it: sbatch slurm/${stage//-/_}.sh CONFIG" \
            "[key=value ...], or slurm/submit.sh CONFIG for the whole chain. LOLA_SLURM_DRYRUN=1 prints the" \
            "command; LOLA_SLURM_ALLOW_NO_JOB=1 runs it here (with mpirun when available)."
        return 2
    fi

    # Take the warning signal from here on (a signal before the step starts is passed on to it).
    trap 'lola_on_signal USR1' USR1
    trap 'lola_on_signal TERM' TERM

    # 2. Arguments, binary, config.
    if [ $# -lt 1 ] || [ -z "$1" ]; then
        lola_err "usage: ${stage//-/_}.sh CONFIG [key=value ...]   (e.g. configs/euler.yaml run.dir=runs/euler)"
        return 2
    fi
    local config=$1 a
    shift
    for a in "$@"; do
        case $a in
        *=*) ;;
        *) lola_err "argument '$a' is not a key=value override (usage: ${stage//-/_}.sh CONFIG [key=value ...])"; return 2 ;;
        esac
    done
    if [ ! -f "$config" ]; then
        lola_err "config file '$config' not found (working directory $(pwd))"
        return 2
    fi
    local bin=${LOLA_BIN:-$LOLA_HOME/build/lola}
    if [ ! -e "$bin" ]; then
        lola_err "LOLA_BIN '$bin' does not exist: build it before submitting (make), or point LOLA_BIN at" \
            "the binary. Jobs never compile or copy binaries."
        return 2
    fi
    if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
        lola_err "LOLA_BIN '$bin' is not an executable file"
        return 2
    fi

    # 3. Threads per rank.
    if [ -n "${LOLA_OMP_NUM_THREADS:-}" ]; then export OMP_NUM_THREADS=$LOLA_OMP_NUM_THREADS
    elif [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
    elif [ -z "${OMP_NUM_THREADS:-}" ]; then export OMP_NUM_THREADS=1; fi
    [ -n "${SLURM_CPUS_PER_TASK:-}" ] && export SRUN_CPUS_PER_TASK=${SRUN_CPUS_PER_TASK:-$SLURM_CPUS_PER_TASK}

    # 4. Launcher.
    lola_pick_launcher || return 2
    local cmd=("${LOLA_LAUNCH[@]}" "$bin" "$stage" -c "$config" "$@")

    lola_log "stage $stage: job ${SLURM_JOB_ID:-none} (restart ${SLURM_RESTART_COUNT:-0})," \
        "nodes ${SLURM_JOB_NUM_NODES:-?} [${SLURM_JOB_NODELIST:-$(hostname)}], tasks ${SLURM_NTASKS:-?}," \
        "GPUs on this node ${SLURM_GPUS_ON_NODE:-none}, OMP_NUM_THREADS $OMP_NUM_THREADS, launcher $LOLA_LAUNCHER_NAME"
    if [ -n "${SLURM_GPUS_ON_NODE:-}" ] && [ -n "${SLURM_NTASKS_PER_NODE:-}" ] &&
        [[ $SLURM_NTASKS_PER_NODE =~ ^[0-9]+$ ]] && [ "$SLURM_NTASKS_PER_NODE" -gt "$SLURM_GPUS_ON_NODE" ]; then
        lola_log "warning: $SLURM_NTASKS_PER_NODE tasks per node but $SLURM_GPUS_ON_NODE GPU(s): ranks will share GPUs"
    fi
    local nccl
    nccl=$(env | grep '^NCCL_' | sort | tr '\n' ' ')
    [ -n "$nccl" ] && lola_log "NCCL environment: $nccl"
    lola_log "run: ${cmd[*]}"
    if [ "$dry" = 1 ]; then
        lola_log "LOLA_SLURM_DRYRUN=1: not running it"
        return 0
    fi

    # 5. Run the step in the background so that this shell can take the warning signal (bash runs
    # traps only between commands; `wait` is interruptible, a foreground command is not).
    "${cmd[@]}" &
    lola_step_pid=$!
    if [ "$lola_nsig" -gt 0 ]; then # the warning came while we were starting: pass it on now
        kill -s "$([ "${LOLA_STAGE_CHECKPOINTS:-0}" = 1 ] && echo USR1 || echo TERM)" "$lola_step_pid" 2>/dev/null || true
    fi
    local rc prev_rc='' n0
    while :; do
        n0=$lola_nsig
        wait "$lola_step_pid"
        rc=$?
        # An old bash forgets a status that was already collected: keep the interrupted one.
        if [ "$rc" -eq 127 ] && [ -n "$prev_rc" ]; then rc=$prev_rc; break; fi
        # wait returns 128+signal when a trapped signal interrupted it: wait again for the step.
        if [ "$lola_nsig" != "$n0" ] && [ "$rc" -gt 128 ]; then prev_rc=$rc; continue; fi
        break
    done
    trap - USR1 TERM
    lola_step_pid=

    # 6. Exit status.
    if [ "$rc" -eq 0 ]; then
        lola_log "stage $stage complete"
        return 0
    fi
    local want_requeue=0
    if [ "$rc" -eq "$LOLA_EXIT_REQUEUE" ]; then
        lola_log "stage $stage stopped after writing a checkpoint (exit $rc)"
        want_requeue=1
    elif [ "$lola_got_usr1" = 1 ] && [ "$rc" -gt 128 ]; then
        lola_log "stage $stage was stopped by the time-limit warning (exit $rc); it resumes when run again"
        want_requeue=1
    fi
    if [ "$want_requeue" = 1 ] && [ "$lola_got_term" = 1 ] && [ "$lola_got_usr1" = 0 ]; then
        lola_log "SIGTERM came from Slurm (scancel or preemption): not requeueing here; rerun or let Slurm requeue"
        return "$LOLA_EXIT_REQUEUE"
    fi
    if [ "$want_requeue" = 1 ]; then
        if lola_requeue; then return 0; fi
        return "$LOLA_EXIT_REQUEUE"
    fi
    lola_err "stage $stage failed: ${cmd[0]} exited with status $rc"
    return "$rc"
}
