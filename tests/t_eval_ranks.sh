#!/usr/bin/env bash
# t_eval_ranks.sh: `lola eval` over several MPI ranks gives the rows of a 1-rank run (issue 6 item 2),
# on the tiny Euler set (tests/lib_tiny.sh, tests/configs/tiny_it_base.yaml), 3 test trajectories
# (0, 2, 4: not a multiple of the rank count):
#  1. eval.samples=4 on 2 ranks: the log says the diffusion members are split (rank 0 members
#     [0, 2), rank 1 [2, 4)); stats.csv equals the 1-rank stats.csv byte for byte in every column
#     but speed, in the same row order (trajectory order), and the speed column is finite, > 0;
#  2. eval.samples=1 on 2 ranks: trajectories are split (round-robin); same rows as 1 rank;
#  3. eval.samples=5 with the stochastic ddpm sampler on 3 ranks (members 1/2/2): same rows as 1 rank
#     (the sampler noise is drawn per member, sampler_run_members);
#  4. member 0's frames (eval/frames.h5 /diffusion, trajectory 0) are the same with 1 or 4 members
#     and on 1 or 2 ranks: a member's noise depends on its global index only, not on the batch.
# The comparison is exact: every rank runs the same code on the same members and rank 0 scores the
# gathered ensemble in member order, so no float tolerance is needed.
# Prints PASS/FAIL lines; exits non-zero on a failure.
TAG=eval_ranks
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: no mpirun or no MPI build"
    finish
fi
R=$T/r
A=(-c "$CFG" dataset.root="$DATA" run.dir="$R" 'eval.indices=[0,2,4]')
# The tiny run directory: AE, cache, DM and NS trained in seconds (the pipeline also evaluates).
lola "$T/pipe.log" pipeline -c "$CFG" dataset.root="$DATA" run.dir="$R"
check "pipeline (train-ae, cache, train-dm, train-ns, eval) exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { tail -8 "$T/pipe.log"; finish; }

# run NAME NP OVERRIDES...: eval on NP ranks; keeps the log, stats.csv without its speed column
# (NAME.csv), the speed column (NAME.speed) and frames.h5 (NAME.h5); sets rc.
run() {
    local name=$1 np=$2
    shift 2
    if [ "$np" -eq 1 ]; then
        lola "$T/$name.log" eval "${A[@]}" "$@"
    else
        timeout 180 "${MPI[@]}" -np "$np" "$LOLA" eval "${A[@]}" "$@" >"$T/$name.log" 2>&1
        rc=$?
    fi
    cut -d, -f1-20 "$R/eval/stats.csv" >"$T/$name.csv"
    cut -d, -f1,21 "$R/eval/stats.csv" | tail -n +2 >"$T/$name.speed"
    cp "$R/eval/frames.h5" "$T/$name.h5"
}
same_rows() { # A B: identical files with more than the header
    [ "$(wc -l <"$T/$1.csv")" -gt 1 ] && cmp -s "$T/$1.csv" "$T/$2.csv"
}

# 1. members over ranks
run s4_r1 1 eval.samples=4
check "1 rank, 4 members exits 0" [ $rc -eq 0 ]
run s4_r2 2 eval.samples=4
check "2 ranks, 4 members exits 0 (rc $rc)" [ $rc -eq 0 ]
check "2 ranks, 4 members: the log says the members are split over 2 ranks" grep -q "eval: members split over 2 ranks" "$T/s4_r2.log"
check "2 ranks, 4 members: rank 0 rolls out members [0, 2), rank 1 [2, 4)" \
    eval 'grep -q "rank 0 rolls out diffusion members \[0, 2)" "$T/s4_r2.log" && grep -q "rank 1 rolls out diffusion members \[2, 4)" "$T/s4_r2.log"'
check "2 ranks, 4 members: stats.csv = the 1-rank stats.csv in every column but speed, same row order ($(wc -l <"$T/s4_r1.csv") lines)" \
    same_rows s4_r1 s4_r2
check "2 ranks, 4 members: speed finite and > 0 for autoencoder, diffusion, surrogate ($(grep -m1 '^diffusion' "$T/s4_r2.speed"))" \
    python3 -c '
import math, sys
rows = [l.strip().split(",") for l in open(sys.argv[1]) if l.strip()]
ok = all(math.isfinite(float(s)) and float(s) > 0 for m, s in rows if m in ("autoencoder", "diffusion", "surrogate"))
ok &= any(m == "diffusion" for m, s in rows)
sys.exit(0 if ok else 1)' "$T/s4_r2.speed"

# 2. trajectories over ranks
run s1_r1 1 eval.samples=1
run s1_r2 2 eval.samples=1
check "2 ranks, 1 member exits 0 (rc $rc) and the log says the trajectories are split" \
    eval '[ $rc -eq 0 ] && grep -q "eval: trajectories split over 2 ranks" "$T/s1_r2.log" && ! grep -q "members split" "$T/s1_r2.log"'
check "2 ranks, 1 member: stats.csv = the 1-rank stats.csv in every column but speed, same row order" same_rows s1_r1 s1_r2

# 3. a stochastic sampler, uneven split
run p5_r1 1 eval.samples=5 eval.sampling.algorithm=ddpm
run p5_r3 3 eval.samples=5 eval.sampling.algorithm=ddpm
check "3 ranks, 5 members, ddpm exits 0 (rc $rc), members [0, 1) [1, 3) [3, 5)" \
    eval '[ $rc -eq 0 ] && grep -q "rank 0 rolls out diffusion members \[0, 1)" "$T/p5_r3.log" && grep -q "rank 1 rolls out diffusion members \[1, 3)" "$T/p5_r3.log" &&
          grep -q "rank 2 rolls out diffusion members \[3, 5)" "$T/p5_r3.log"'
check "3 ranks, 5 members, ddpm: stats.csv = the 1-rank stats.csv in every column but speed" same_rows p5_r1 p5_r3
check "the ddpm runs used the ddpm sampler (log)" eval 'grep -q "sampler ddpm x" "$T/p5_r1.log" && grep -q "sampler ddpm x" "$T/p5_r3.log"'

# 4. member 0 does not depend on the batch
check "member 0's diffusion frames equal with 1 and 4 members, on 1 and 2 ranks (frames.h5)" python3 -c '
import sys, h5py, numpy as np
a, b, c = (h5py.File(p, "r")["diffusion"][...] for p in sys.argv[1:4])
sys.exit(0 if np.array_equal(a, b) and np.array_equal(a, c) and np.all(np.isfinite(a)) else 1)' "$T/s1_r1.h5" "$T/s4_r1.h5" "$T/s4_r2.h5"
finish
