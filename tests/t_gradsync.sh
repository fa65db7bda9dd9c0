#!/usr/bin/env bash
# t_gradsync.sh: the bucketed gradient averaging (src/gradsync.c) under a real launcher.
#  a. mpirun -np 1 (MPI transport forced), 2 and 3: test_gradsync mpi (random per-rank buffers,
#     bucket sizes 1 / 7 / 64 / n-1 / n / n+5 / default, six announcement patterns: the result
#     equals the full-buffer MPI average, bit for bit with 1-2 ranks, identical on every rank);
#  b. a rank that joins late beyond dist.timeout: the job ends (exit != 0) within seconds with
#     "did not complete within", no hang;
#  c. train-ae on 2 ranks with accumulation 2 and dist.bucket_size=257 (hundreds of buckets, most
#     averaged during the backward) gives bit for bit the parameters of the same run with one
#     default-size bucket (per element the arithmetic is the same: a + b, then x 0.5).
# Prints PASS/FAIL lines; SKIP lines (not counted) without MPI.
TAG=gradsync
. "$(dirname "$0")/lib_tiny.sh"
TG=$BUILD/tests/test_gradsync
if [ ! -x "$TG" ]; then
    fail "$TG not built (make $TG)"
    finish
fi
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: no mpirun or no MPI build"
    finish
fi

# a. ------------------------------------------------------------------------------------------------
for np in 1 2 3; do
    timeout 120 "${MPI[@]}" -np $np "$TG" mpi >"$T/a$np.log" 2>&1
    rc=$?
    sed -n "s/^PASS /PASS $TAG np$np: /p; s/^FAIL /FAIL $TAG np$np: /p" "$T/a$np.log"
    nf=$(grep -c '^FAIL ' "$T/a$np.log")
    fails=$((fails + nf))
    check "mpirun -np $np test_gradsync mpi exits 0 with every check passed" \
        eval '[ $rc -eq 0 ] && grep -q "^# [0-9]* passed, 0 failed" "$T/a$np.log"'
    [ $rc -ne 0 ] && tail -15 "$T/a$np.log" | sed 's/^/    /'
    grep -a "allowed" "$T/a$np.log" | head -1
done

# b. ------------------------------------------------------------------------------------------------
t0=$(date +%s.%N)
timeout 60 "${MPI[@]}" -np 2 "$TG" timeout >"$T/b.log" 2>&1
rc=$?
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "a rank 6 s late with a 1 s timeout: job ends, exit $rc after ${secs}s (124 = hung), message: $(grep -ao 'did not complete within [0-9.]* s' "$T/b.log" | head -1)" \
    eval '[ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -aq "bucket [0-9]* (elements \[[0-9]*, [0-9]*) of 1000) did not complete within" "$T/b.log" &&
          ! grep -aq "must not happen" "$T/b.log" && awk -v s="$secs" "BEGIN { exit !(s < 30) }"'
[ $rc -eq 0 ] || [ $rc -eq 124 ] && head -20 "$T/b.log" | sed 's/^/    /'

# c. ------------------------------------------------------------------------------------------------
tiny_data
A=(-c "$CFG" dataset.root="$DATA" ae_train.epochs=1 ae_train.epoch_size=24 ae_train.batch_size=8 ae_train.accumulation=2
   ae_train.valid.epoch_size=0 ae.dropout=0.05)
timeout 180 "${MPI[@]}" -np 2 "$LOLA" train-ae "${A[@]}" run.dir="$T/c_small" dist.bucket_size=257 >"$T/c_small.log" 2>&1
r1=$?
timeout 180 "${MPI[@]}" -np 2 "$LOLA" train-ae "${A[@]}" run.dir="$T/c_big" >"$T/c_big.log" 2>&1
r2=$?
nb=$(grep -ao 'gradients: [0-9]* buckets of up to 257 elements averaged over 2 ranks (mpi' "$T/c_small.log" | head -1)
check "train-ae 2 ranks, 3 steps, buckets of 257 and of 2^24 elements: both run (exit $r1, $r2; '$nb')" \
    eval '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -n "$nb" ] && grep -aq "training complete: 3 steps" "$T/c_small.log" &&
          grep -aq "training complete: 3 steps" "$T/c_big.log"'
out=$("${H5CMP[@]}" "$T/c_small/ae/state.h5" "$T/c_big/ae/state.h5" --group params --exact)
c=$?
check "train-ae 2 ranks: parameters after 3 steps bit-identical with 257-element and 2^24-element buckets: $(summary1 "$out")" [ $c -eq 0 ]
check "train-ae 2 ranks: identical per-step losses" \
    eval 'cmp -s <(step_losses "$T/c_small/ae/metrics.jsonl") <(step_losses "$T/c_big/ae/metrics.jsonl")'
finish
