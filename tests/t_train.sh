#!/usr/bin/env bash
# t_train.sh: end-to-end tests of `lola train-ae` and the training loop (src/train.c) on a tiny
# Euler set from build/well-euler (tests/lib_tiny.sh) with a tiny DCAE (tests/configs/tiny_it_base.yaml):
#  a. the training loss falls over 50 steps (mean of the first vs the last 10 per-step losses of
#     metrics.jsonl);
#  b. mpirun -np 2 with the same global batch gives the same parameters after 3 steps as 1 rank
#     (dropout 0; bound max|diff| <= 1e-5 max|param| + 1e-7), also with accumulation 2, and with
#     dropout 0.05 (accumulation 2): masks are per sample, keyed by the global stream position;
#  c. stopping with LOLA_STOP_AFTER_STEPS in the middle of epochs and rerunning reproduces the
#     uninterrupted run bit for bit: per-step losses, validation losses, state.h5 and best.h5
#     (parameters, AdamW moments, step/epoch/samples attributes);
#  d. kill -9 at random moments of a run that checkpoints every step leaves a complete, loadable
#     state.h5 every time, and the next run resumes from it;
#  e. a truncated state.h5, an HDF5 file that is not a checkpoint and a checkpoint of another AE
#     shape are refused with a message naming the file, and left untouched (no silent restart).
# Prints PASS/FAIL lines; exits non-zero on a failure.
TAG=train
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
A=(-c "$CFG" dataset.root="$DATA")

# ------------------------------------------------------------------------------------------------
# a. the loss falls
lola "$T/a.log" train-ae "${A[@]}" run.dir="$T/a" ae_train.epochs=5 ae_train.epoch_size=40 ae_train.valid.epoch_size=0
check "a: train-ae 50 steps exits 0" [ $rc -eq 0 ]
step_losses "$T/a/ae/metrics.jsonl" ae >"$T/a.losses"
read -r n first last <<<"$(awk '{ l[NR] = $2 } END { f = 0; s = 0; for (i = 1; i <= 10; i++) { f += l[i]; s += l[NR - 10 + i] }
    printf "%d %.6f %.6f\n", NR, f / 10, s / 10 }' "$T/a.losses")"
check "a: one metrics record per step (50, got $n)" [ "$n" -eq 50 ]
check "a: every step loss finite" eval '! grep -qiE "nan|inf|null" "$T/a.losses"'
check "a: loss falls: mean of steps 1-10 $first -> steps 41-50 $last (need < 0.85x)" \
    awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < 0.85 * f) }'

# ------------------------------------------------------------------------------------------------
# b. 2 ranks == 1 rank (same global batch, 3 steps)
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: b (no mpirun or no MPI build)"
else
    B=(ae_train.epochs=1 ae_train.epoch_size=12 ae_train.valid.epoch_size=0)
    for case in "0 1" "0 2" "0.05 2"; do
        read -r dp acc <<<"$case"
        bs=$((4 * acc))
        tag=${acc}_dropout$dp # run dirs
        lola "$T/b1_$tag.log" train-ae "${A[@]}" run.dir="$T/b1_$tag" "${B[@]}" ae.dropout=$dp ae_train.batch_size=$bs \
            ae_train.epoch_size=$((3 * bs)) ae_train.accumulation=$acc
        r1=$rc
        timeout 180 "${MPI[@]}" -np 2 "$LOLA" train-ae "${A[@]}" run.dir="$T/b2_$tag" "${B[@]}" ae.dropout=$dp ae_train.batch_size=$bs \
            ae_train.epoch_size=$((3 * bs)) ae_train.accumulation=$acc >"$T/b2_$tag.log" 2>&1
        r2=$?
        check "b: batch $bs accumulation $acc dropout $dp: 1 rank and 2 ranks run (exit $r1, $r2; 2 rank(s) logged)" \
            eval '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && grep -aq "2 rank(s)" "$T/b2_$tag.log" && grep -aq "training complete: 3 steps" "$T/b2_$tag.log"'
        out=$("${H5CMP[@]}" "$T/b1_$tag/ae/state.h5" "$T/b2_$tag/ae/state.h5" --group params --rel 1e-5 --abs 1e-7)
        c=$?
        check "b: batch $bs accumulation $acc dropout $dp: parameters after 3 steps, 2 ranks vs 1: $(summary1 "$out")" [ $c -eq 0 ]
        echo "$out" | tail -n +2
        l1=$(step_losses "$T/b1_$tag/ae/metrics.jsonl" | tr '\n' ' ') l2=$(step_losses "$T/b2_$tag/ae/metrics.jsonl" | tr '\n' ' ')
        echo "  losses 1 rank: $l1| 2 ranks: $l2"
        check "b: batch $bs accumulation $acc dropout $dp: step losses agree to 1e-5 relative" python3 -c '
import sys
a = [float(x) for x in sys.argv[1].split()[1::2]]; b = [float(x) for x in sys.argv[2].split()[1::2]]
sys.exit(not (len(a) == len(b) == 3 and all(abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b))))' "$l1" "$l2"
    done
fi

# ------------------------------------------------------------------------------------------------
# c. resume reproduces the uninterrupted run bit for bit (6 steps per epoch, validation on)
C=(ae_train.epochs=3 ae_train.epoch_size=24 ae_train.valid.epoch_size=8)
lola "$T/c_full.log" train-ae "${A[@]}" run.dir="$T/c_full" "${C[@]}"
check "c: uninterrupted run (18 steps) exits 0" eval '[ $rc -eq 0 ] && grep -q "training complete: 18 steps" "$T/c_full.log"'
LOLA_STOP_AFTER_STEPS=4 lola "$T/c1.log" train-ae "${A[@]}" run.dir="$T/c_res" "${C[@]}"
check "c: LOLA_STOP_AFTER_STEPS=4 -> checkpoint at step 4, exit 3" eval '[ $rc -eq 3 ] && grep -q "checkpoint written at step 4 " "$T/c1.log"'
LOLA_STOP_AFTER_STEPS=7 lola "$T/c2.log" train-ae "${A[@]}" run.dir="$T/c_res" "${C[@]}"
check "c: rerun resumes at step 4 (mid epoch 1), stops at 11 (mid epoch 2)" \
    eval '[ $rc -eq 3 ] && grep -q "resumed from $T/c_res/ae/state.h5 at step 4 " "$T/c2.log" && grep -q "checkpoint written at step 11 " "$T/c2.log"'
lola "$T/c3.log" train-ae "${A[@]}" run.dir="$T/c_res" "${C[@]}"
check "c: third run resumes at step 11 and completes" \
    eval '[ $rc -eq 0 ] && grep -q "at step 11 " "$T/c3.log" && grep -q "training complete: 18 steps" "$T/c3.log"'
step_losses "$T/c_full/ae/metrics.jsonl" >"$T/c_full.losses"
step_losses "$T/c_res/ae/metrics.jsonl" >"$T/c_res.losses"
check "c: the 18 per-step losses are identical ($(sed -n 1p "$T/c_full.losses" | cut -d' ' -f2) ... $(sed -n 18p "$T/c_full.losses" | cut -d' ' -f2))" \
    eval '[ "$(wc -l <"$T/c_full.losses")" -eq 18 ] && cmp -s "$T/c_full.losses" "$T/c_res.losses"'
vl() { python3 -c 'import json, sys; print(" ".join(repr(r["valid_loss_mean"]) for r in map(json.loads, open(sys.argv[1])) if r["event"] == "epoch"))' "$1"; }
v_full=$(vl "$T/c_full/ae/metrics.jsonl") v_res=$(vl "$T/c_res/ae/metrics.jsonl")
check "c: validation losses per epoch identical ($v_full)" [ "$v_full" = "$v_res" ]
out=$("${H5CMP[@]}" "$T/c_full/ae/state.h5" "$T/c_res/ae/state.h5" --exact --attrs --ignore-attr config)
c=$?
check "c: final state.h5 bit-identical (params, AdamW m/v, step/epoch/samples/optim_t/best_valid): $(summary1 "$out")" [ $c -eq 0 ]
[ $c -ne 0 ] && echo "$out" | head -5
out=$("${H5CMP[@]}" "$T/c_full/ae/best.h5" "$T/c_res/ae/best.h5" --exact --attrs --ignore-attr config)
c=$?
check "c: best.h5 bit-identical" [ $c -eq 0 ]

# ------------------------------------------------------------------------------------------------
# d. kill -9 while it checkpoints after every step (epochs of one step, no validation)
D=(ae_train.epochs=100000 ae_train.epoch_size=4 ae_train.valid.epoch_size=0)
REF=$T/c_full/ae/state.h5
attr_step() { python3 -c 'import h5py, sys; print(int(h5py.File(sys.argv[1], "r").attrs["step"]))' "$1" 2>/dev/null; }
prev=0 ok_load=1 ok_resume=1 ok_grow=1 in_write=0 kills=0 moments=""
# At least 6 kills, and more (up to 12) until one of them has hit a checkpoint write (a state.h5.tmp
# left behind; about 90% of a step is the checkpoint's write + fsync here).
for i in $(seq 12); do
    [ $i -gt 6 ] && [ $in_write -gt 0 ] && break
    "$LOLA" train-ae "${A[@]}" run.dir="$T/d" "${D[@]}" >"$T/d$i.log" 2>&1 & # no wrapper: kill must hit lola
    pid=$!
    bg+=("$pid")
    # wait until this run has written a checkpoint (its second epoch line: the line comes before
    # the epoch's checkpoint), then a random 20-400 ms
    for _ in $(seq 1000); do
        [ "$(grep -c '^ae epoch' "$T/d$i.log" 2>/dev/null)" -ge 2 ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.02
    done
    ms=$((20 + RANDOM % 380))
    sleep "$(awk -v m=$ms 'BEGIN { printf "%.3f", m / 1000 }')"
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null
    [ -e "$T/d/ae/state.h5.tmp" ] && in_write=$((in_write + 1))
    moments="$moments ${ms}ms"
    if [ $i -gt 1 ] && ! grep -q "resumed from $T/d/ae/state.h5 at step $prev " "$T/d$i.log"; then
        ok_resume=0
        echo "  run $i did not resume at step $prev:"
        grep -v '^ae epoch' "$T/d$i.log" | tail -3 | sed 's/^/    | /'
    fi
    out=$("${H5CMP[@]}" "$REF" "$T/d/ae/state.h5" --structure)
    if [ $? -ne 0 ]; then
        ok_load=0
        echo "  after kill $i: $out"
    fi
    s=$(attr_step "$T/d/ae/state.h5")
    [ -n "$s" ] && [ "$s" -gt "$prev" ] || ok_grow=0
    prev=${s:-$prev}
done
echo "  kill -9 moments:$moments; state.h5.tmp present after $in_write of $kills kills; last checkpoint step $prev"
check "d: at least one kill landed inside a checkpoint write ($in_write of $kills)" [ $in_write -gt 0 ]
check "d: after each of $kills kills -9, state.h5 opens and holds every tensor (params, m, v)" [ $ok_load -eq 1 ]
check "d: each run resumed from the step of the previous run's last checkpoint" [ $ok_resume -eq 1 ]
check "d: every run made progress (checkpoint step grows, now $prev)" [ $ok_grow -eq 1 ]
LOLA_STOP_AFTER_STEPS=2 lola "$T/d_last.log" train-ae "${A[@]}" run.dir="$T/d" "${D[@]}"
check "d: a following run resumes at step $prev (a leftover .tmp is overwritten) and checkpoints 2 steps later" \
    eval '[ $rc -eq 3 ] && grep -q "resumed from $T/d/ae/state.h5 at step $prev " "$T/d_last.log" &&
          grep -q "checkpoint written at step $((prev + 2)) " "$T/d_last.log"'

# ------------------------------------------------------------------------------------------------
# e. a bad state.h5 is refused, not replaced
refuse() { # NAME FILE EXPECTED_TEXT [overrides...]: FILE placed as <run>/ae/state.h5 must be refused
    local rn=$1 rf=$2 rw=$3
    shift 3
    local rd=$T/e_$rn
    mkdir -p "$rd/ae"
    cp "$rf" "$rd/ae/state.h5"
    lola "$T/e_$rn.log" train-ae "${A[@]}" run.dir="$rd" ae_train.epochs=1 ae_train.epoch_size=8 "$@"
    local msg
    msg=$(grep -m1 -iE "error|refus|cannot|mismatch|not a" "$T/e_$rn.log" | sed "s|$T/||g")
    check "e: $rn state.h5 refused (exit $rc, names the file, mentions '$rw', file untouched, no training): $msg" \
        eval '[ $rc -ne 0 ] && [ $rc -ne 3 ] && grep -qF "$rd/ae/state.h5" "$T/e_$rn.log" && grep -qiF -- "$rw" "$T/e_$rn.log" &&
              cmp -s "$rf" "$rd/ae/state.h5" && ! grep -q "training complete" "$T/e_$rn.log" && [ ! -e "$rd/ae/metrics.jsonl" ]'
}
head -c $(($(stat -c %s "$REF") / 2)) "$REF" >"$T/truncated.h5"
refuse truncated "$T/truncated.h5" "truncated"
: >"$T/empty.h5"
refuse empty "$T/empty.h5" "truncated"
well_file=$(find "$DATA" -name '*.hdf5' | sort | head -1)
refuse not-a-checkpoint "$well_file" "checkpoint"
LOLA_STOP_AFTER_STEPS=1 lola "$T/e_other.log" train-ae "${A[@]}" run.dir="$T/e_other_src" ae.lat_channels=8 ae_train.epoch_size=8
refuse other-ae-shape "$T/e_other_src/ae/state.h5" "shape"
finish
