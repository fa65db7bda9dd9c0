#!/usr/bin/env bash
# tests/gpu/models.sh OUTDIR: the whole program on the GPU against the CPU, model by model (issue 8
# item 4). Run by tests/gpu/run.sh on the GPU machine; runs anywhere (LOLA_GPU may be any lola).
#
#   LOLA_CPU  the reference program (default build/gpu-bundle/lola-cpu, else build/lola)
#   LOLA_GPU  the program checked  (default build/gpu-bundle/lola, the CUDA build; here try
#             LOLA_GPU=build/lola (must match bit for bit) or build/fenced/lola)
#   LOLA_GEN  well-euler (default build/gpu-bundle/well-euler, else build/well-euler)
#   MODELS_BUDGET  seconds for everything (default 150); each program run is limited to
#             MODELS_STEP_LIMIT (default 60) and to what is left of the budget; a stage that
#             does not fit is skipped with a SKIP line.
#   MODELS_KEEP=1  keep the work directory (run dirs, data; else removed).
#
# On the tiny Euler set of tests/lib_tiny.sh (16x16, 21 frames) with the tiny models of
# tests/configs/tiny_it_base.yaml, each from the same seed on both programs:
#   data       well-euler (CPU), shared by both
#   ae         train-ae, 1 step: AdamW, no attention, no dropout
#   ae-psgd    train-ae, 2 steps: PSGD (the paper's AE optimizer), attention at level 1, dropout 0.05
#   ae-act     as ae-psgd with ae.checkpointing=true and LOLA_ACTIVATIONS=bf16 on both programs (the
#              bf16-stored, recomputing training layout of src/dcae.c; fp32 arithmetic)
#   cache      `lola cache` with the same (CPU-trained) AE on both: every latent file
#   dm, ns     train-dm / train-ns, 1 step each, on the CPU's latent cache (same input on both)
#   dm-ckpt    train-dm with denoiser.checkpointing=true (blocks rerun in the backward), 1 step
#   precision  the GPU program alone: dm 1 step in tf32, bf16, bf16 + LOLA_ATTENTION=flash, ae 1 step
#              in bf16 and in bf16 + LOLA_ACTIVATIONS=bf16, each against its own fp32 run (finite,
#              loss/grad_norm within rtol)
#   eval       `lola eval` of the same CPU checkpoints (2 trajectories, 2 members, 4 sampler steps,
#              6 states): stats.csv
#   resume     portability: the CPU AE checkpoint resumed for 1 step by the GPU program vs by the
#              CPU program; the GPU AE checkpoint resumed by the CPU program vs by the GPU program;
#              the CPU DM checkpoint resumed by the GPU program vs the CPU program
# Per training run: the per-step loss and gradient norm (metrics.jsonl, 1e-4 relative), then the
# checkpoints per tensor with tests/gpu/compare.py (parameters and optimizer state; its header
# gives the fp32 tolerances: the CUDA backend uses no TF32 unless LOLA_TF32=1).
# Output in OUTDIR: models.log (everything below), one log per program run (NAME-cpu.log,
# NAME-gpu.log), compare-NAME.txt, timings.csv (stage, side, seconds, exit status), summary.txt.
# Prints PASS/FAIL/SKIP lines; exit 0 only when every check passed. Never waits on a hung program
# (timeout, then SIGKILL).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
OUT=${1:?usage: tests/gpu/models.sh OUTDIR}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
mkdir -p "$OUT" || exit 2
# The parity checks are fp32 (the default of the CUDA backend): switches inherited from the caller
# would change the GPU side's arithmetic, so they are cleared here (the precision section sets
# its own).
unset LOLA_PRECISION LOLA_TF32 LOLA_GEMM LOLA_ATTENTION LOLA_BF16_CACHE LOLA_ACTIVATIONS
exec > >(tee "$OUT/models.log") 2>&1

pick() { # first executable of the arguments (else the first argument)
    local f
    for f in "$@"; do [ -x "$f" ] && { echo "$f"; return; }; done
    echo "$1"
}
LOLA_CPU=${LOLA_CPU:-$(pick build/gpu-bundle/lola-cpu build/lola)}
LOLA_GPU=${LOLA_GPU:-build/gpu-bundle/lola}
LOLA_GEN=${LOLA_GEN:-$(pick build/gpu-bundle/well-euler build/well-euler)}
BUDGET=${MODELS_BUDGET:-150}
STEP_LIMIT=${MODELS_STEP_LIMIT:-60}
CFG=$ROOT/tests/configs/tiny_it_base.yaml
CMP=(python3 "$ROOT/tests/gpu/compare.py")
TINY_ARGS="--resolution 16 --trajectories 30 --frames 21 --seed 1 --bc both --gammas 1.4,1.13,1.76"
LR_AE=3e-3 LR_DM=1e-3 LR_NS=1e-3 # tiny_it_base.yaml's learning rates (the step size in compare.py)
T0=$SECONDS

# Nothing from the caller's environment steers the runs (as in tests/lib_tiny.sh).
for v in $(compgen -e); do
    case $v in SLURM_* | OMPI_COMM_WORLD_* | PMI_* | PMIX_* | LOLA_STOP_AFTER_STEPS | LOLA_BIN | LOLA_NP) unset "$v" ;; esac
done
# One thread: the CPU program then reduces in one fixed order (CPU vs CPU is bit-exact) and the
# tiny models gain nothing from more.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive

: >"$OUT/summary.txt"
echo "stage,side,seconds,exit" >"$OUT/timings.csv"
npass=0 nfail=0 nskip=0
say() { echo "$*" | tee -a "$OUT/summary.txt" >/dev/null; echo "$*"; }
pass() { npass=$((npass + 1)); say "PASS models: $*"; }
fail() { nfail=$((nfail + 1)); say "FAIL models: $*"; }
skip() { nskip=$((nskip + 1)); say "SKIP models: $*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }
finish() {
    say "models: $npass passed, $nfail failed, $nskip skipped in $((SECONDS - T0)) s (cpu: $LOLA_CPU, gpu: $LOLA_GPU)"
    {
        echo "timings (s)               cpu      gpu"
        awk -F, 'NR > 1 { t[$1 "," $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
            END { for (i = 1; i <= n; i++) { s = order[i]; printf "  %-20s %8s %8s\n", s, (s ",cpu") in t ? t[s ",cpu"] : "-", (s ",gpu") in t ? t[s ",gpu"] : "-" } }' "$OUT/timings.csv"
    } | tee -a "$OUT/summary.txt"
    if [ -n "${MODELS_KEEP:-}" ]; then echo "work directory kept: $W"; else rm -rf "$W"; fi
    [ "$nfail" -eq 0 ] && [ "$npass" -gt 0 ]
    exit $?
}

say "# models.sh $(date -u +%FT%TZ): cpu $LOLA_CPU, gpu $LOLA_GPU, budget ${BUDGET}s"
for p in "$LOLA_CPU:LOLA_CPU" "$LOLA_GPU:LOLA_GPU" "$LOLA_GEN:LOLA_GEN"; do
    if [ ! -x "${p%%:*}" ]; then
        fail "${p##*:}=${p%%:*} not found or not executable (make gpu-bundle, or set ${p##*:})"
        W=/nonexistent
        finish
    fi
done
python3 -c 'import h5py, numpy' 2>/dev/null || { fail "python3 with h5py and numpy is needed for the comparisons"; W=/nonexistent; finish; }
W=$(mktemp -d "${TMPDIR:-/tmp}/lola-models.XXXXXX")
GPU_DEAD="" # set when the GPU program cannot run at all: the remaining GPU runs are not attempted

# run NAME SIDE RUNDIR [STOP] -- ARGS...: one program run (SIDE cpu|gpu) with run.dir=RUNDIR and
# LOLA_STOP_AFTER_STEPS=STOP ("" = none), log OUT/NAME-SIDE.log, time in timings.csv. Returns 0
# when the program ended normally (exit 0, or 3 = stopped on request), else 1 (with a FAIL line).
run() {
    local name=$1 side=$2 dir=$3 stop=$4
    shift 5
    local bin=$LOLA_CPU log=$OUT/$name-$side.log lim rc t
    [ "$side" = gpu ] && bin=$LOLA_GPU
    if [ "$side" = gpu ] && [ -n "$GPU_DEAD" ]; then
        skip "$name on gpu: not run ($GPU_DEAD)"
        return 1
    fi
    lim=$(left)
    [ "$lim" -gt "$STEP_LIMIT" ] && lim=$STEP_LIMIT
    if [ "$lim" -lt 5 ]; then
        skip "$name on $side: out of time (budget ${BUDGET}s)"
        return 1
    fi
    t=$(date +%s.%N)
    if [ -n "$stop" ]; then
        LOLA_STOP_AFTER_STEPS=$stop timeout -k 5 "$lim" "$bin" "$@" run.dir="$dir" >"$log" 2>&1
    else
        timeout -k 5 "$lim" "$bin" "$@" run.dir="$dir" >"$log" 2>&1
    fi
    rc=$?
    t=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    echo "$name,$side,$t,$rc" >>"$OUT/timings.csv"
    [ "$rc" = 0 ] || [ "$rc" = 3 ] && return 0
    local why="exit $rc"
    [ "$rc" = 124 ] || [ "$rc" = 137 ] && why="timed out after ${lim}s"
    [ "$rc" -gt 128 ] && [ "$rc" != 137 ] && why="killed by signal $((rc - 128))"
    fail "$name on $side: $why ($bin $1; log $name-$side.log): $(grep -aE '^error|^HINT|rror|Abort|Segmentation' "$log" | head -3 | tr '\n' ' ' | cut -c1-400)"
    tail -5 "$log" | sed 's/^/    | /'
    if [ "$side" = gpu ]; then
        if grep -aq 'no CUDA device' "$log"; then
            GPU_DEAD="no CUDA device (see $name-gpu.log)"
        elif grep -aqE 'error while loading shared libraries|cannot open shared object' "$log"; then
            GPU_DEAD="a shared library is missing (see $name-gpu.log)"
        fi
    fi
    return 1
}

# ckpt_check NAME A B LR: compare two checkpoints (compare.py ckpt) -> PASS/FAIL line.
ckpt_check() {
    local name=$1 a=$2 b=$3 lr=$4 out c
    out=$("${CMP[@]}" ckpt "$a" "$b" --lr "$lr" 2>&1)
    c=$?
    echo "$out" >"$OUT/compare-$name.txt"
    echo "$out" | grep -v '^compare:' | sed 's/^/    /'
    if [ $c -eq 0 ]; then pass "$name: $(echo "$out" | grep '^compare:' | tail -1 | sed 's/^compare: //')"
    else fail "$name: $(echo "$out" | grep '^compare:' | tail -3 | tr '\n' ' ' | sed 's/compare: //g')"; fi
}
# both NAME STOP LR RUNDIR_CPU RUNDIR_GPU CKPT_SUBPATH -- ARGS: run on both, compare the checkpoints.
both() {
    local name=$1 stop=$2 lr=$3 dc=$4 dg=$5 sub=$6
    shift 7
    local okc=0 okg=0
    run "$name" cpu "$dc" "$stop" -- "$@" && okc=1
    run "$name" gpu "$dg" "$stop" -- "$@" && okg=1
    if [ $okc = 1 ] && [ $okg = 1 ]; then
        # the step records first (loss = forward, grad_norm = backward, in one number each)
        local m=${sub%/*}/metrics.jsonl out c
        out=$("${CMP[@]}" steps "$dc/$m" "$dg/$m" 2>&1)
        c=$?
        echo "$out" >"$OUT/compare-$name-steps.txt"
        if [ $c -eq 0 ]; then pass "$name loss/grad_norm: $(echo "$out" | grep '^compare:' | sed 's/^compare: //')"
        else fail "$name loss/grad_norm: $(echo "$out" | tail -2 | tr '\n' ' ' | sed 's/compare: //')"; fi
        ckpt_check "$name" "$dc/$sub" "$dg/$sub" "$lr"
    else
        skip "$name: checkpoints not compared (a run failed)"
    fi
}

# ------------------------------------------------------------------------------------------------
# data
t=$(date +%s.%N)
# shellcheck disable=SC2086
timeout -k 5 60 "$LOLA_GEN" --out "$W/data" $TINY_ARGS >"$OUT/data.log" 2>&1
rc=$?
echo "data,cpu,$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'),$rc" >>"$OUT/timings.csv"
if [ $rc -ne 0 ]; then
    fail "well-euler $TINY_ARGS: exit $rc: $(tail -3 "$OUT/data.log" | tr '\n' ' ')"
    finish
fi
A=(-c "$CFG" dataset.root="$W/data")

# ------------------------------------------------------------------------------------------------
# ae: AdamW, 1 step; ae-psgd: PSGD + attention + dropout, 2 steps
both ae 1 $LR_AE "$W/c" "$W/g" ae/state.h5 -- train-ae "${A[@]}"
PSGD=('ae.attention_heads={1: 2}' ae.dropout=0.05 ae_optim.optimizer=psgd 'ae_optim.betas=[0.9]')
both ae-psgd 2 $LR_AE "$W/cp" "$W/gp" ae/state.h5 -- train-ae "${A[@]}" "${PSGD[@]}"
# The same with the smallest training layout: both sides round the kept tensors to bf16 the same way
# (nn_pack_bf16 is bit-identical across backends); a 1-ulp fp32 difference next to a bf16 rounding
# boundary moves one stored value by 2^-8 (expected to stay inside compare.py's tolerances for 2 steps;
# not yet seen on a GPU).
export LOLA_ACTIVATIONS=bf16
both ae-act 2 $LR_AE "$W/ca" "$W/ga" ae/state.h5 -- train-ae "${A[@]}" "${PSGD[@]}" ae.checkpointing=true
unset LOLA_ACTIVATIONS

# ------------------------------------------------------------------------------------------------
# cache: the CPU AE (W/c/ae, 1 step) on both
if [ -f "$W/c/ae/state.h5" ]; then
    mkdir -p "$W/gc"
    cp -r "$W/c/ae" "$W/gc/ae"
    okc=0 okg=0
    run cache cpu "$W/c" "" -- cache "${A[@]}" && okc=1
    run cache gpu "$W/gc" "" -- cache "${A[@]}" && okg=1
    if [ $okc = 1 ] && [ $okg = 1 ]; then
        nf=0 nbad=0
        : >"$OUT/compare-cache.txt"
        while IFS= read -r f; do
            rel=${f#"$W/c/ae/cache/"}
            nf=$((nf + 1))
            out=$("${CMP[@]}" h5 "$f" "$W/gc/ae/cache/$rel" 2>&1) || nbad=$((nbad + 1))
            echo "$out" >>"$OUT/compare-cache.txt"
        done < <(find "$W/c/ae/cache" -type f | sort)
        worst=$(grep -h '^compare:' "$OUT/compare-cache.txt" | grep -v 'bit-identical' | awk '{ for (i = 1; i <= NF; i++) if ($i == "max|d|") d = $(i + 1); if (d + 0 >= m + 0) { m = d; l = $0 } } END { print l }' | sed "s|$W/gc/ae/cache/||; s/^compare: //")
        [ -n "$worst" ] && worst="worst $worst" || worst="all bit-identical"
        if [ $nf -gt 0 ] && [ $nbad -eq 0 ]; then pass "cache: $nf latent files within 1e-4 max|A| per dataset; $worst"
        else fail "cache: $nbad of $nf latent files differ (or none written); see compare-cache.txt; $worst"; fi
    else
        skip "cache: not compared (a run failed)"
    fi
else
    skip "cache: no CPU AE checkpoint (stage ae failed)"
fi

# ------------------------------------------------------------------------------------------------
# dm, ns: 1 step each on the CPU's cache (W/c/ae holds it); the GPU runs in W/gd with copies
if [ -d "$W/c/ae/cache" ]; then
    mkdir -p "$W/gd"
    cp -r "$W/c/ae" "$W/gd/ae"
    both dm 1 $LR_DM "$W/c" "$W/gd" dm/state.h5 -- train-dm "${A[@]}"
    both ns 1 $LR_NS "$W/c" "$W/gd" ns/state.h5 -- train-ns "${A[@]}"
    # the checkpointed ViT layout (blocks rerun in the backward) on both programs
    mkdir -p "$W/ck" "$W/gk"
    cp -r "$W/c/ae" "$W/ck/ae"
    cp -r "$W/c/ae" "$W/gk/ae"
    both dm-ckpt 1 $LR_DM "$W/ck" "$W/gk" dm/state.h5 -- train-dm "${A[@]}" denoiser.checkpointing=true
else
    skip "dm, ns: no CPU latent cache"
fi

# ------------------------------------------------------------------------------------------------
# precision: the GPU program in its reduced-precision modes (cuda/README.md switches) against its
# own fp32 run of the same step: tf32, bf16 autocast, and bf16 + the flash attention. No CPU
# reference exists for these roundings; the check is that the step runs, the loss and gradient
# norm are finite and close to fp32 (rtol: tf32 1e-2, bf16 5e-2: one step of a tiny model; the
# op-level tolerances are derived in tests/gpu/test_gpu_ops.c), and which fallbacks were taken.
# With a CPU stand-in for LOLA_GPU the switches are ignored (warned) and the losses are equal.
prec_smoke() { # NAME REF_RUNDIR STAGE RTOL ENV=VAL... -- CMD ARGS...
    local name=$1 ref=$2 st=$3 rtol=$4
    shift 4
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    if [ ! -f "$ref/$st/metrics.jsonl" ]; then
        skip "$name: no fp32 GPU run to compare with ($ref/$st)"
        return
    fi
    local d=$W/$name
    mkdir -p "$d"
    [ "$st" = ae ] || cp -r "$W/c/ae" "$d/" # dm: the CPU AE and its latent cache; ae: from scratch
    local okg=0 v
    for v in "${envs[@]}"; do export "${v?}"; done
    run "$name" gpu "$d" 1 -- "$@" && okg=1
    for v in "${envs[@]}"; do unset "${v%%=*}"; done
    [ $okg = 1 ] || return
    local out c
    out=$(python3 - "$ref/$st/metrics.jsonl" "$d/$st/metrics.jsonl" "$rtol" <<'PY'
import json, math, sys
def steps(p):
    return [r for r in map(json.loads, open(p)) if r.get("event") == "step"]
a, b, rt = steps(sys.argv[1]), steps(sys.argv[2]), float(sys.argv[3])
if not a or not b:
    print("compare: no step records"); sys.exit(1)
bad = []
for k in ("loss", "grad_norm"):
    x, y = float(a[0][k]), float(b[0][k])
    r = abs(x - y) / max(abs(x), 1e-30)
    ok = math.isfinite(y) and r <= rt
    print(f"compare: {k} fp32 {x:.7g} vs {y:.7g} (rel {r:.2e}, rtol {rt:g}){'' if ok else '  <-- beyond'}")
    if not ok: bad.append(k)
sys.exit(1 if bad else 0)
PY
)
    c=$?
    echo "$out" >"$OUT/compare-$name.txt"
    local fb
    fb=$(grep -aiE 'fell back|fallback|falls back|using the fp32 path|using im2col|GEMM path' "$OUT/$name-gpu.log" | sort | uniq -c | head -5 | tr -s ' ' | tr '\n' ';')
    [ -n "$fb" ] && say "    $name fallbacks: $fb"
    if [ $c -eq 0 ]; then pass "$name (${envs[*]}): $(echo "$out" | sed 's/^compare: //' | tr '\n' ' ')"
    else fail "$name (${envs[*]}): $(echo "$out" | sed 's/^compare: //' | tr '\n' ' ')"; fi
}
if [ -z "$GPU_DEAD" ] && [ -f "$W/gd/dm/metrics.jsonl" ]; then
    prec_smoke prec-dm-tf32 "$W/gd" dm 1e-2 LOLA_PRECISION=tf32 -- train-dm "${A[@]}"
    prec_smoke prec-dm-bf16 "$W/gd" dm 5e-2 LOLA_PRECISION=bf16 -- train-dm "${A[@]}"
    prec_smoke prec-dm-bf16-flash "$W/gd" dm 5e-2 LOLA_PRECISION=bf16 LOLA_ATTENTION=flash -- train-dm "${A[@]}"
    prec_smoke prec-ae-bf16 "$W/g" ae 5e-2 LOLA_PRECISION=bf16 -- train-ae "${A[@]}"
    prec_smoke prec-ae-bf16-act "$W/g" ae 5e-2 LOLA_PRECISION=bf16 LOLA_ACTIVATIONS=bf16 -- train-ae "${A[@]}"
else
    skip "precision: no fp32 GPU dm run (or no usable GPU)"
fi

# ------------------------------------------------------------------------------------------------
# eval: the same CPU checkpoints (ae, dm, ns) on both
if [ -f "$W/c/dm/state.h5" ] && [ -f "$W/c/ns/state.h5" ]; then
    mkdir -p "$W/ge"
    cp -r "$W/c/ae" "$W/c/dm" "$W/c/ns" "$W/ge/"
    EV=(eval.indices=[0,2] eval.samples=2 eval.sampling.steps=4)
    okc=0 okg=0
    run eval cpu "$W/c" "" -- eval "${A[@]}" "${EV[@]}" && okc=1
    run eval gpu "$W/ge" "" -- eval "${A[@]}" "${EV[@]}" && okg=1
    if [ $okc = 1 ] && [ $okg = 1 ]; then
        out=$("${CMP[@]}" csv "$W/c/eval/stats.csv" "$W/ge/eval/stats.csv" 2>&1)
        c=$?
        echo "$out" >"$OUT/compare-eval.txt"
        echo "$out" | grep -v '^compare:' | sed 's/^/    /'
        cp "$W/c/eval/stats.csv" "$OUT/eval-stats-cpu.csv" 2>/dev/null
        cp "$W/ge/eval/stats.csv" "$OUT/eval-stats-gpu.csv" 2>/dev/null
        if [ $c -eq 0 ]; then pass "eval: $(echo "$out" | grep '^compare:' | sed 's/^compare: //')"
        else fail "eval: $(echo "$out" | grep '^compare:' | sed 's/^compare: //')"; fi
    else
        skip "eval: not compared (a run failed)"
    fi
else
    skip "eval: the CPU dm/ns checkpoints are missing"
fi

# ------------------------------------------------------------------------------------------------
# resume: checkpoints move between the programs
resume() { # NAME SRC_RUN_DIR STAGE(ae|dm) CMD LR: SRC's checkpoint resumed 1 step on both
    local name=$1 src=$2 st=$3 cmd=$4 lr=$5
    if [ ! -f "$src/$st/state.h5" ]; then
        skip "$name: no source checkpoint $st/state.h5"
        return
    fi
    local d
    for d in "$W/$name-c" "$W/$name-g"; do
        mkdir -p "$d"
        cp -r "$src/ae" "$d/"
        [ "$st" = ae ] || cp -r "$src/$st" "$d/"
    done
    local step
    step=$(python3 -c 'import h5py, sys; print(int(h5py.File(sys.argv[1], "r").attrs["step"]))' "$src/$st/state.h5" 2>/dev/null)
    both "$name" 1 "$lr" "$W/$name-c" "$W/$name-g" "$st/state.h5" -- "$cmd" "${A[@]}"
    for s in cpu gpu; do
        [ -f "$OUT/$name-$s.log" ] && ! grep -aq "resumed from .* at step $step " "$OUT/$name-$s.log" &&
            fail "$name: the $s run did not log 'resumed from ... at step $step'"
    done
}
resume resume-ae-cpu2gpu "$W/c" ae train-ae $LR_AE
resume resume-ae-gpu2cpu "$W/g" ae train-ae $LR_AE
resume resume-dm-cpu2gpu "$W/c" dm train-dm $LR_DM

finish
