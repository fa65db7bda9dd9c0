#!/usr/bin/env bash
# t_psgd.sh: `lola train-ae` with the PSGD-Kron optimizer (src/psgd.c, lola-spec.md 6.3) on the
# tiny Euler set (tests/lib_tiny.sh, tests/configs/tiny_it_base.yaml with ae_optim.optimizer=psgd):
#  a. 50 steps run, every step loss is finite and the loss falls (mean of steps 41-50 < 0.85 x the
#     mean of steps 1-10); state.h5 says @optimizer psgd and holds /optim/m (momentum), no /optim/v,
#     and the factors /optim/psgd/<param>/q<a> and caches p<a>;
#  b. stopping with LOLA_STOP_AFTER_STEPS mid-epoch and resuming twice reproduces the uninterrupted
#     18-step run bit for bit (per-step losses and the whole state.h5: params, momentum, Q, P);
#  c. resuming a PSGD checkpoint with optimizer=adamw is refused with a message naming both;
#  d. mpirun -np 2 with the same global batch gives the same state after 3 steps as 1 rank.
# Prints PASS/FAIL lines; exits non-zero on a failure.
TAG=psgd
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
A=(-c "$CFG" dataset.root="$DATA" ae_optim.optimizer=psgd "ae_optim.betas=[0.9]" ae_optim.learning_rate=1e-3)

# ------------------------------------------------------------------------------------------------
# a. 50 steps, the loss falls, the checkpoint layout
lola "$T/a.log" train-ae "${A[@]}" run.dir="$T/a" ae_train.epochs=5 ae_train.epoch_size=40 ae_train.valid.epoch_size=0
check "a: train-ae with psgd, 50 steps, exits 0 (rc $rc)" eval '[ $rc -eq 0 ] && grep -q "training complete: 50 steps" "$T/a.log"'
[ $rc -ne 0 ] && tail -5 "$T/a.log"
step_losses "$T/a/ae/metrics.jsonl" ae >"$T/a.losses"
read -r n first last <<<"$(awk '{ l[NR] = $2 } END { f = 0; s = 0; for (i = 1; i <= 10; i++) { f += l[i]; s += l[NR - 10 + i] }
    printf "%d %.6f %.6f\n", NR, f / 10, s / 10 }' "$T/a.losses")"
check "a: 50 finite step losses" eval '[ "$n" -eq 50 ] && ! grep -qiE "nan|inf|null" "$T/a.losses"'
check "a: loss falls: mean of steps 1-10 $first -> steps 41-50 $last (need < 0.85x)" \
    awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < 0.85 * f) }'
out=$(python3 - "$T/a/ae/state.h5" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
opt = f.attrs["optimizer"]
opt = opt.decode() if isinstance(opt, bytes) else opt
names = list(f["params"].keys())
ok = opt == "psgd" and "m" in f["optim"] and "v" not in f["optim"] and int(f.attrs["optim_t"]) == 50
nq = 0
for n in names:
    shp = f["params"][n].shape
    for a, s in enumerate(shp):
        q, p = f["optim/psgd/%s/q%d" % (n, a)], f["optim/psgd/%s/p%d" % (n, a)]
        dense = len(shp) >= 2 and 1 < s <= 4096
        ok &= q.shape == p.shape == ((s, s) if dense else (s,))
        nq += 1
    ok &= f["optim/m"][n].shape == shp
print("optimizer %s, %d tensors, %d factors" % (opt, len(names), nq))
sys.exit(0 if ok else 1)
EOF
)
c=$?
check "a: state.h5 layout: $out; /optim/m, no /optim/v, q/p per axis with dense n x n or diagonal n" [ $c -eq 0 ]

# ------------------------------------------------------------------------------------------------
# b. resume reproduces the uninterrupted run bit for bit
B=(ae_train.epochs=3 ae_train.epoch_size=24 ae_train.valid.epoch_size=8)
lola "$T/b_full.log" train-ae "${A[@]}" run.dir="$T/b_full" "${B[@]}"
check "b: uninterrupted psgd run (18 steps) exits 0" eval '[ $rc -eq 0 ] && grep -q "training complete: 18 steps" "$T/b_full.log"'
LOLA_STOP_AFTER_STEPS=4 lola "$T/b1.log" train-ae "${A[@]}" run.dir="$T/b_res" "${B[@]}"
check "b: LOLA_STOP_AFTER_STEPS=4 -> checkpoint at step 4, exit 3" eval '[ $rc -eq 3 ] && grep -q "checkpoint written at step 4 " "$T/b1.log"'
LOLA_STOP_AFTER_STEPS=7 lola "$T/b2.log" train-ae "${A[@]}" run.dir="$T/b_res" "${B[@]}"
check "b: rerun resumes at step 4, stops at 11" \
    eval '[ $rc -eq 3 ] && grep -q "at step 4 " "$T/b2.log" && grep -q "checkpoint written at step 11 " "$T/b2.log"'
lola "$T/b3.log" train-ae "${A[@]}" run.dir="$T/b_res" "${B[@]}"
check "b: third run resumes at step 11 and completes" \
    eval '[ $rc -eq 0 ] && grep -q "at step 11 " "$T/b3.log" && grep -q "training complete: 18 steps" "$T/b3.log"'
step_losses "$T/b_full/ae/metrics.jsonl" >"$T/b_full.losses"
step_losses "$T/b_res/ae/metrics.jsonl" >"$T/b_res.losses"
check "b: the 18 per-step losses are identical ($(sed -n 1p "$T/b_full.losses" | cut -d' ' -f2) ... $(sed -n 18p "$T/b_full.losses" | cut -d' ' -f2))" \
    eval '[ "$(wc -l <"$T/b_full.losses")" -eq 18 ] && cmp -s "$T/b_full.losses" "$T/b_res.losses"'
out=$("${H5CMP[@]}" "$T/b_full/ae/state.h5" "$T/b_res/ae/state.h5" --exact --attrs --ignore-attr config)
c=$?
check "b: final state.h5 bit-identical (params, momentum, PSGD factors and caches, attributes): $(head -1 <<<"$out")" [ $c -eq 0 ]

# ------------------------------------------------------------------------------------------------
# c. another optimizer on a PSGD checkpoint is refused
cp -r "$T/b_full" "$T/c"
lola "$T/c.log" train-ae -c "$CFG" dataset.root="$DATA" run.dir="$T/c" "${B[@]}" ae_train.epochs=4
check "c: resuming a psgd checkpoint with adamw is refused naming both (rc $rc)" \
    eval '[ $rc -ne 0 ] && grep -q "optimizer .psgd., the config asks for .adamw." "$T/c.log"'

# ------------------------------------------------------------------------------------------------
# d. 2 ranks == 1 rank (same global batch, 3 steps): the Gaussian draws are a function of (step,
#    tensor), so every rank applies the same update
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: d (no mpirun or no MPI build)"
else
    D=(ae_train.epochs=1 ae_train.epoch_size=12 ae_train.valid.epoch_size=0 ae.dropout=0)
    lola "$T/d1.log" train-ae "${A[@]}" run.dir="$T/d1" "${D[@]}"
    r1=$rc
    timeout 180 "${MPI[@]}" -np 2 "$LOLA" train-ae "${A[@]}" run.dir="$T/d2" "${D[@]}" >"$T/d2.log" 2>&1
    r2=$?
    check "d: 1 rank and 2 ranks run 3 psgd steps (exit $r1, $r2)" \
        eval '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && grep -aq "2 rank(s)" "$T/d2.log" && grep -aq "training complete: 3 steps" "$T/d2.log"'
    out=$("${H5CMP[@]}" "$T/d1/ae/state.h5" "$T/d2/ae/state.h5" --group params --group optim --rel 1e-5 --abs 1e-7)
    c=$?
    check "d: parameters, momentum and PSGD factors after 3 steps, 2 ranks vs 1: $(head -1 <<<"$out")" [ $c -eq 0 ]
fi
finish
