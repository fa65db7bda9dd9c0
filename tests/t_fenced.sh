#!/usr/bin/env bash
# t_fenced.sh: every lola command on the fenced backend (build/fenced/lola, tests/fenced/: the host
# code of the CUDA build + the CPU ops behind a memory fence; `make fenced`), on the tiny Euler set
# (tests/lib_tiny.sh). Host code that reads or writes backend memory directly, or hands a host
# pointer to an op, dies there with "fenced backend: ..." and a backtrace; on the CPU backend both
# silently work, on CUDA both crash. The ops are the CPU backend's, compiled with the same flags, so
# every result must equal build/lola's bit for bit:
#  0. build/fenced/test_fence: the fence itself (what keeps working, what must die);
#     LOLA_FENCE_SELFTEST=touch|host: a deliberate host access / host pointer inside a real lola
#     run (1 rank, and 2 MPI ranks) dies with the message, the op and parameter, a backtrace;
#  1. stats, train-ae, cache, train-dm, train-ns, eval, each a command of its own, fenced ==
#     build/lola: stats.yaml, state.h5 + best.h5 of ae/dm/ns (parameters,
#     optimizer state, attributes), per-step and validation losses, every cache file, eval's
#     stats.csv (all but the speed column), summary.txt, frames.h5 and the figures;
#  2. a 2-rank MPI `pipeline` (all stages: MPI training, cache, eval) fenced == build/lola's;
#  3. checkpoints move freely between backends: a build/lola train-ae checkpoint resumed by the
#     fenced build, and a fenced train-dm checkpoint resumed by build/lola, end equal to the
#     uninterrupted runs; a PSGD train-ae stopped and resumed across the backends twice (its
#     factors reach the checkpoint through a host mirror) equals build/lola's uninterrupted run;
#  4. code paths the tiny defaults miss: an AE with attention, rmsnorm saturation, 3 losses,
#     checkpointing, dropout, PSGD, cosine warmup, accumulation 2; train-dm with PSGD, dropout,
#     checkpointing, accumulation 2; train-ns with dropout; eval with the ddpm/ddim/pc/eab samplers,
#     3 members, 2 decode chunks;
#  5. export (ae, dm, ns) fenced == build/lola byte for byte; a fenced import re-exported by
#     build/lola is byte-identical; info.
# Prints PASS/FAIL lines and the fence's overhead (wall time of each command in 1., plain vs fenced).
TAG=fenced
. "$(dirname "$0")/lib_tiny.sh"
FEN=$BUILD/fenced/lola
TFENCE=$BUILD/fenced/test_fence
for f in "$FEN" "$TFENCE"; do
    if [ ! -x "$f" ]; then
        fail "$f not built (make fenced)"
        exit 1
    fi
done
tiny_data
A=(-c "$CFG" dataset.root="$DATA")
ALL='run.stages=[stats,train-ae,cache,train-dm,train-ns,eval]'

# fen LOG ARGS...: the fenced build with a time limit; rc = exit status.
fen() {
    local log=$1
    shift
    timeout 180 "$FEN" "$@" >"$log" 2>&1
    rc=$?
}
# ok LOG: exit 0 and no fence report in LOG; else shows the report (message + backtrace).
ok() {
    if [ "$rc" -eq 0 ] && ! grep -q "fenced backend:" "$1"; then return 0; fi
    echo "  exit $rc; $1:"
    { grep -A14 -m1 "fenced backend:" "$1" || tail -6 "$1"; } | sed 's/^/    | /'
    return 1
}
same_h5() { # NAME A B: exact, root attributes too (but the resolved config, which holds run.dir)
    local out c
    out=$("${H5CMP[@]}" "$2" "$3" --exact --attrs --ignore-attr config 2>&1)
    c=$?
    check "$1: $(summary1 "$out")" [ $c -eq 0 ]
    [ $c -eq 0 ] || echo "$out" | head -5
}
same_losses() { # NAME A.jsonl B.jsonl: per-step losses and per-epoch validation losses identical
    local a b
    a=$(losses "$2") b=$(losses "$3")
    check "$1: $(wc -l <<<"$a") per-step and validation losses identical" eval '[ -n "$a" ] && [ "$a" = "$b" ]'
}
losses() {
    python3 -c '
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    if r.get("event") == "step": print("step", r["step"], repr(r["loss"]))
    elif r.get("event") == "epoch": print("epoch", r.get("epoch"), repr(r.get("valid_loss_mean")))' "$1"
}
same_eval() { # NAME DIR_A DIR_B: stats.csv without the speed column, summary.txt
    local ea=$2 eb=$3 nl
    nl=$(wc -l <"$ea/eval/stats.csv")
    check "$1: stats.csv ($nl lines) identical but the speed column" \
        eval '[ "$nl" -gt 1 ] && cmp -s <(cut -d, -f1-20 "$ea/eval/stats.csv") <(cut -d, -f1-20 "$eb/eval/stats.csv")'
    check "$1: summary.txt identical" cmp -s "$ea/eval/summary.txt" "$eb/eval/summary.txt"
}
same_cache() { # NAME DIR_A DIR_B: every cache file, every dataset and root attribute, exactly
    local out
    out=$(python3 - "$2/ae/cache" "$3/ae/cache" <<'EOF'
import os, sys
import h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
fa = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
fb = sorted(os.path.relpath(os.path.join(d, f), b) for d, _, fs in os.walk(b) for f in fs)
if fa != fb or not fa:
    print("file lists differ: %s vs %s" % (fa, fb)); sys.exit(1)
bad = []
for rel in fa:
    with h5py.File(os.path.join(a, rel), "r") as x, h5py.File(os.path.join(b, rel), "r") as y:
        names = []
        x.visit(names.append)
        for n in names:
            if isinstance(x[n], h5py.Dataset) and (n not in y or not np.array_equal(x[n][()], y[n][()])):
                bad.append(rel + ":" + n)
        if {k: str(v) for k, v in x.attrs.items()} != {k: str(v) for k, v in y.attrs.items()}:
            bad.append(rel + ": attributes")
print("%d files, %d differ %s" % (len(fa), len(bad), bad[:3]))
sys.exit(1 if bad else 0)
EOF
)
    check "$1: $out" [ $? -eq 0 ]
}

# ------------------------------------------------------------------------------------------------
# 0. the fence itself
"$TFENCE" >"$T/test_fence.log" 2>&1
c=$?
grep -E '^(PASS|FAIL)' "$T/test_fence.log"
check "0: test_fence exits 0 (rc $c)" [ $c -eq 0 ]
# (in a subshell with stderr dropped: the shell's own "Aborted" job message)
(LOLA_FENCE_SELFTEST=touch timeout 180 "$FEN" train-ae "${A[@]}" run.dir="$T/st" >"$T/st_touch.log" 2>&1; exit $?) 2>/dev/null
rc=$?
check "0: LOLA_FENCE_SELFTEST=touch in train-ae: dies (rc $rc) with 'host code touched backend memory', the buffer, a backtrace naming stage_train_ae" \
    eval '[ $rc -ne 0 ] && grep -q "host code touched backend memory at .* (inside an allocation of" "$T/st_touch.log" &&
          grep -q "(stage_train_ae+" "$T/st_touch.log" && ! grep -q "DID NOT FIRE" "$T/st_touch.log"'
grep -m1 "host code touched" "$T/st_touch.log" | sed 's/^/  /'
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: 0. 2-rank selftest (no mpirun or no MPI build)"
else
    LOLA_FENCE_SELFTEST=host timeout 120 "${MPI[@]}" -x LOLA_FENCE_SELFTEST -np 2 "$FEN" train-ae "${A[@]}" run.dir="$T/st2" >"$T/st_host.log" 2>&1
    rc=$?
    # (the first rank to die takes the job down: the other one may or may not get to report)
    nrep=$(grep -c "\[rank [01] .*nn_fill: parameter x = .* is not backend memory" "$T/st_host.log")
    check "0: LOLA_FENCE_SELFTEST=host on 2 MPI ranks: the job dies (rc $rc), $nrep rank(s) report 'nn_fill: parameter x = ... is not backend memory'" \
        eval '[ $rc -ne 0 ] && [ "$nrep" -ge 1 ] && ! grep -q "DID NOT FIRE" "$T/st_host.log"'
fi

sec="0: $((SECONDS - T_START)) s; "

# ------------------------------------------------------------------------------------------------
# 1. every stage as its own command, fenced == build/lola (`pipeline` differs: its stats stage
#    replaces dataset.stats for the stages after it; the pipeline is compared in 2.)
now() { date +%s.%N; }
times="" # "stage plain fenced" wall seconds
for s in stats train-ae cache train-dm train-ns eval; do
    ta=$(now)
    lola "$T/cpu_$s.log" "$s" "${A[@]}" run.dir="$T/cpu"
    c1=$rc
    tb=$(now)
    fen "$T/fen_$s.log" "$s" "${A[@]}" run.dir="$T/fen"
    tc=$(now)
    times="$times$s $(awk -v a="$ta" -v b="$tb" -v c="$tc" 'BEGIN { printf "%.2f %.2f", b - a, c - b }')"$'\n'
    check "1: $s: build/lola exits $c1, fenced exits 0, no fence report" eval '[ $c1 -eq 0 ] && ok "$T/fen_$s.log"'
done
check "1: stats.yaml identical" cmp -s "$T/cpu/stats.yaml" "$T/fen/stats.yaml"
for st in ae dm ns; do
    same_h5 "1: $st/state.h5 fenced == build/lola" "$T/cpu/$st/state.h5" "$T/fen/$st/state.h5"
    same_h5 "1: $st/best.h5 fenced == build/lola" "$T/cpu/$st/best.h5" "$T/fen/$st/best.h5"
    same_losses "1: $st/metrics.jsonl" "$T/cpu/$st/metrics.jsonl" "$T/fen/$st/metrics.jsonl"
done
same_cache "1: latent cache" "$T/cpu" "$T/fen"
same_eval "1: eval" "$T/cpu" "$T/fen"
same_h5 "1: eval/frames.h5" "$T/cpu/eval/frames.h5" "$T/fen/eval/frames.h5"
if grep -q "report: wrote" "$T/cpu_eval.log"; then
    for p in frames vrmse spread_skill; do
        check "1: eval/$p.png written and identical" eval '[ -s "$T/fen/eval/$p.png" ] && cmp -s "$T/cpu/eval/$p.png" "$T/fen/eval/$p.png"'
    done
fi

sec="${sec}1: $((SECONDS - T_START)) s; "

# ------------------------------------------------------------------------------------------------
# 2. 2 MPI ranks: the pipeline (MPI training with gradient averaging, cache and eval split over ranks)
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: 2. (no mpirun or no MPI build)"
else
    P2=(pipeline "${A[@]}" "$ALL" ae_train.epochs=2 dm_train.epochs=2 ns_train.epochs=2 eval.samples=3)
    timeout 240 "${MPI[@]}" -np 2 "$LOLA" "${P2[@]}" run.dir="$T/cpu2" >"$T/cpu2.log" 2>&1
    c1=$?
    timeout 240 "${MPI[@]}" -np 2 "$FEN" "${P2[@]}" run.dir="$T/fen2" >"$T/fen2.log" 2>&1
    rc=$?
    check "2: 2-rank pipeline: build/lola exits $c1, fenced exits 0 with no fence report, both on 2 ranks" \
        eval '[ $c1 -eq 0 ] && ok "$T/fen2.log" && grep -q "\"ranks\":2" "$T/fen2/ae/metrics.jsonl" && grep -q "pipeline complete" "$T/fen2.log"'
    grep -m1 "^gradients:" "$T/fen2.log" | sed 's/^/  fenced: /'
    for st in ae dm ns; do
        same_h5 "2: 2 ranks: $st/state.h5 fenced == build/lola" "$T/cpu2/$st/state.h5" "$T/fen2/$st/state.h5"
    done
    same_cache "2: 2 ranks: latent cache" "$T/cpu2" "$T/fen2"
    same_eval "2: 2 ranks: eval, 3 members split over the ranks" "$T/cpu2" "$T/fen2"
    # one member: the trajectories are split over the ranks instead
    E1=(eval "${A[@]}" eval.samples=1 'eval.indices=[0,2,4]')
    timeout 120 "${MPI[@]}" -np 2 "$LOLA" "${E1[@]}" run.dir="$T/cpu2" >"$T/cpu2e.log" 2>&1
    c1=$?
    timeout 120 "${MPI[@]}" -np 2 "$FEN" "${E1[@]}" run.dir="$T/fen2" >"$T/fen2e.log" 2>&1
    rc=$?
    check "2: 2-rank eval, 1 member (trajectories split): build/lola exits $c1, fenced exits 0, no fence report" \
        eval '[ $c1 -eq 0 ] && ok "$T/fen2e.log" && grep -q "trajectories split over 2 ranks" "$T/fen2e.log"'
    same_eval "2: 2 ranks: eval, trajectories split over the ranks" "$T/cpu2" "$T/fen2"
fi
sec="${sec}2: $((SECONDS - T_START)) s; "

# ------------------------------------------------------------------------------------------------
# 3. checkpoints move between backends
LOLA_STOP_AFTER_STEPS=20 lola "$T/x1a.log" train-ae "${A[@]}" run.dir="$T/x1"
c1=$rc
fen "$T/x1b.log" train-ae "${A[@]}" run.dir="$T/x1"
check "3: build/lola train-ae stopped at step 20 (rc $c1), the fenced build resumes it and completes" \
    eval '[ $c1 -eq 3 ] && ok "$T/x1b.log" && grep -q "resumed from $T/x1/ae/state.h5 at step 20 " "$T/x1b.log"'
same_h5 "3: ae resumed across backends == uninterrupted" "$T/cpu/ae/state.h5" "$T/x1/ae/state.h5"
same_losses "3: ae resumed across backends" "$T/cpu/ae/metrics.jsonl" "$T/x1/ae/metrics.jsonl"
mkdir -p "$T/x2"
cp -r "$T/cpu/ae" "$T/cpu/stats.yaml" "$T/x2/"
LOLA_STOP_AFTER_STEPS=15 fen "$T/x2a.log" train-dm "${A[@]}" run.dir="$T/x2"
c1=$rc
grep -q "fenced backend:" "$T/x2a.log" && c1=fence-report
lola "$T/x2b.log" train-dm "${A[@]}" run.dir="$T/x2"
check "3: fenced train-dm stopped at step 15 (rc $c1), build/lola resumes it and completes" \
    eval '[ "$c1" = 3 ] && [ $rc -eq 0 ] && grep -q "resumed from $T/x2/dm/state.h5 at step 15 " "$T/x2b.log"'
same_h5 "3: dm resumed across backends == uninterrupted" "$T/cpu/dm/state.h5" "$T/x2/dm/state.h5"
# PSGD: the factors and caches live in backend memory and reach the checkpoint through their host
# mirror (save: to_host; resume: from_host): a fenced run stopped mid-way, resumed by build/lola,
# stopped again and finished by the fenced build equals build/lola's uninterrupted run.
P=("${A[@]}" ae_optim.optimizer=psgd 'ae_optim.betas=[0.9]' ae_optim.precondition_frequency=2 ae_train.epochs=2
    ae_train.epoch_size=24 ae_train.valid.epoch_size=0)
lola "$T/x3.log" train-ae "${P[@]}" run.dir="$T/x3"
c0=$rc
LOLA_STOP_AFTER_STEPS=2 fen "$T/x4a.log" train-ae "${P[@]}" run.dir="$T/x4"
c1=$rc
grep -q "fenced backend:" "$T/x4a.log" && c1=fence-report
LOLA_STOP_AFTER_STEPS=2 lola "$T/x4b.log" train-ae "${P[@]}" run.dir="$T/x4"
c2=$rc
fen "$T/x4c.log" train-ae "${P[@]}" run.dir="$T/x4"
check "3: psgd: uninterrupted build/lola (rc $c0); fenced stops at 2 (rc $c1), build/lola resumes and stops at 4 (rc $c2), fenced completes" \
    eval '[ $c0 -eq 0 ] && [ "$c1" = 3 ] && [ $c2 -eq 3 ] && ok "$T/x4c.log" && grep -q "at step 2 " "$T/x4b.log" && grep -q "resumed from $T/x4/ae/state.h5 at step 4 " "$T/x4c.log"'
same_h5 "3: psgd ae resumed across backends twice == uninterrupted (params, momentum, Q, P)" "$T/x3/ae/state.h5" "$T/x4/ae/state.h5"

sec="${sec}3: $((SECONDS - T_START)) s; "

# ------------------------------------------------------------------------------------------------
# 4. more code paths, fenced == build/lola
# both NAME ARGS...: runs ARGS with build/lola into $T/v_NAME_cpu and fenced into $T/v_NAME_fen
# (each run dir first gets a copy of $SEED, a run directory to start from, when set)
both() {
    local vn=$1
    shift
    for b in cpu fen; do
        rm -rf "$T/v_${vn}_$b"
        mkdir -p "$T/v_${vn}_$b"
        [ -n "${SEED:-}" ] && cp -r "$SEED"/* "$T/v_${vn}_$b/" && rm -rf "$T/v_${vn}_$b/eval"
    done
    lola "$T/v_${vn}_cpu.log" "$@" run.dir="$T/v_${vn}_cpu"
    c1=$rc
    fen "$T/v_${vn}_fen.log" "$@" run.dir="$T/v_${vn}_fen"
    check "4: $vn: build/lola exits $c1, fenced exits 0, no fence report" eval '[ $c1 -eq 0 ] && ok "$T/v_${vn}_fen.log"'
}
SEED=
both ae_variant train-ae "${A[@]}" ae.attention_heads='{1: 2}' ae.saturation=rmsnorm 'ae.loss.losses=[mse,mae,vrmse]' \
    'ae.loss.weights=[1,0.5,1]' ae.checkpointing=true ae.dropout=0.05 ae_optim.optimizer=psgd 'ae_optim.betas=[0.9]' \
    ae_optim.scheduler=cosine ae_optim.warmup=2 ae_optim.precondition_frequency=2 ae_train.accumulation=2 \
    ae_train.epochs=2 ae_train.epoch_size=24
same_h5 "4: ae_variant state.h5 (PSGD factors too)" "$T/v_ae_variant_cpu/ae/state.h5" "$T/v_ae_variant_fen/ae/state.h5"
# bf16 activation storage (nn_pack_bf16 / nn_unpack_bf16 on carved arena slices) with attention and
# dropout, default and checkpointed layouts
export LOLA_ACTIVATIONS=bf16
both ae_bf16 train-ae "${A[@]}" ae.attention_heads='{1: 2}' ae.dropout=0.05 ae_train.epochs=1 ae_train.epoch_size=24
same_h5 "4: ae_bf16 state.h5" "$T/v_ae_bf16_cpu/ae/state.h5" "$T/v_ae_bf16_fen/ae/state.h5"
check "4: ae_bf16: both logs name the bf16 activation storage" \
    eval 'grep -q "bf16 activations" "$T/v_ae_bf16_cpu.log" && grep -q "bf16 activations" "$T/v_ae_bf16_fen.log"'
both ae_bf16_ckpt train-ae "${A[@]}" ae.attention_heads='{1: 2}' ae.dropout=0.05 ae.checkpointing=true ae_train.epochs=1 \
    ae_train.epoch_size=24
same_h5 "4: ae_bf16_ckpt state.h5" "$T/v_ae_bf16_ckpt_cpu/ae/state.h5" "$T/v_ae_bf16_ckpt_fen/ae/state.h5"
unset LOLA_ACTIVATIONS
mkdir -p "$T/seed"
cp -r "$T/cpu/ae" "$T/cpu/stats.yaml" "$T/seed/"
SEED=$T/seed
both dm_variant train-dm "${A[@]}" dm_optim.optimizer=psgd 'dm_optim.betas=[0.9]' dm_optim.precondition_frequency=2 \
    denoiser.dropout=0.05 denoiser.checkpointing=true dm_train.accumulation=2 dm_train.epochs=2 dm_train.epoch_size=16 \
    denoiser.schedule.name=log_linear
same_h5 "4: dm_variant state.h5" "$T/v_dm_variant_cpu/dm/state.h5" "$T/v_dm_variant_fen/dm/state.h5"
both ns_variant train-ns "${A[@]}" surrogate.dropout=0.05 ns_train.accumulation=2 ns_train.epochs=2 ns_train.epoch_size=16 \
    ns_optim.scheduler=cosine
same_h5 "4: ns_variant state.h5" "$T/v_ns_variant_cpu/ns/state.h5" "$T/v_ns_variant_fen/ns/state.h5"
SEED=$T/cpu
for alg in ddpm ddim pc eab; do
    both "eval_$alg" eval "${A[@]}" eval.sampling.algorithm=$alg eval.samples=3 eval.decode_chunks=2 eval.sampling.steps=3
    check "4: eval $alg: both logs say 'sampler $alg x 3'" \
        eval 'grep -q "sampler $alg x 3" "$T/v_eval_${alg}_cpu.log" && grep -q "sampler $alg x 3" "$T/v_eval_${alg}_fen.log"'
    same_eval "4: eval $alg" "$T/v_eval_${alg}_cpu" "$T/v_eval_${alg}_fen"
done
SEED=

sec="${sec}4: $((SECONDS - T_START)) s; "

# ------------------------------------------------------------------------------------------------
# 5. export, import, info
for st in ae dm ns; do
    lola "$T/ex_$st.log" export "${A[@]}" run.dir="$T/cpu" $st "$T/cpu_$st.safetensors"
    c1=$rc
    fen "$T/fex_$st.log" export "${A[@]}" run.dir="$T/fen" $st "$T/fen_$st.safetensors"
    check "5: export $st: fenced exits 0, the file equals build/lola's byte for byte" \
        eval '[ $c1 -eq 0 ] && ok "$T/fex_$st.log" && [ -s "$T/fen_$st.safetensors" ] && cmp -s "$T/cpu_$st.safetensors" "$T/fen_$st.safetensors"'
    fen "$T/fim_$st.log" import "${A[@]}" $st "$T/cpu_$st.safetensors" "$T/imp"
    c1=$rc
    lola "$T/im_ex_$st.log" export "${A[@]}" run.dir="$T/imp" $st "$T/imp_$st.safetensors"
    check "5: import $st with the fenced build (rc $c1), exported by build/lola: byte-identical" \
        eval '[ $c1 -eq 0 ] && ! grep -q "fenced backend:" "$T/fim_$st.log" && [ $rc -eq 0 ] && cmp -s "$T/cpu_$st.safetensors" "$T/imp_$st.safetensors"'
done
fen "$T/info.log" info "${A[@]}"
check "5: fenced info exits 0 and says the backend is fenced" eval 'ok "$T/info.log" && grep -q "^ *backend .*fenced" "$T/info.log"'

echo "  fence overhead, wall seconds per command (1.), build/lola vs fenced:"
awk 'NF == 3 { printf "    %-9s %6.2f %6.2f\n", $1, $2, $3; p += $2; f += $3 } END { printf "    %-9s %6.2f %6.2f (x%.2f)\n", "all", p, f, f / p }' <<<"$times"
echo "  elapsed after sections ${sec}5: $((SECONDS - T_START)) s"
finish
