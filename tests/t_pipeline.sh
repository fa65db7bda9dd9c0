#!/usr/bin/env bash
# t_pipeline.sh: the main job (issue 7 item 5): `lola pipeline` with 2 MPI ranks on the tiny
# Euler set runs stats, train-ae, cache, train-dm, train-ns and eval into one run directory and
# ends in the same report as the demo (eval/stats.csv, eval/summary.txt with every method, the
# figures); a second run skips every completed stage.
TAG=pipeline
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
RUN=$T/run
if [ ${#MPI[@]} -eq 0 ]; then
    fail "mpirun or an MPI build is missing: the 2-rank pipeline cannot run"
    finish
fi
OVR=(dataset.root="$DATA" run.dir="$RUN" 'run.stages=[stats,train-ae,cache,train-dm,train-ns,eval]')
timeout 300 "${MPI[@]}" -np 2 "$LOLA" pipeline -c "$CFG" "${OVR[@]}" >"$T/p1.log" 2>&1
rc=$?
check "2-rank pipeline exits 0 (rc $rc)" test "$rc" -eq 0
for s in stats train-ae cache train-dm train-ns eval; do
    check "stage $s ran" grep -q "==== $s done" "$T/p1.log"
done
check "pipeline complete" grep -q "pipeline complete" "$T/p1.log"
check "stats.yaml written" test -s "$RUN/stats.yaml"
for f in ae/state.h5 dm/state.h5 ns/state.h5 eval/stats.csv eval/summary.txt; do
    check "$f exists" test -s "$RUN/$f"
done
for m in autoencoder persistence diffusion surrogate; do
    check "summary has a $m row" grep -q "^$m " "$RUN/eval/summary.txt"
    check "stats.csv has $m rows" grep -q "^$m," "$RUN/eval/stats.csv"
done
if grep -q "LOLA_HAVE_PNG\|libpng" <("$LOLA" info 2>&1); then
    check "figures written" test -s "$RUN/eval/vrmse.png"
fi
check "metrics.jsonl says 2 ranks" grep -q '"ranks":2' "$RUN/ae/metrics.jsonl"
# Second run: everything is complete.
timeout 120 "${MPI[@]}" -np 2 "$LOLA" pipeline -c "$CFG" "${OVR[@]}" >"$T/p2.log" 2>&1
rc=$?
check "second run exits 0 (rc $rc)" test "$rc" -eq 0
check "second run skips eval" grep -q "eval skipped" "$T/p2.log"
check "second run trains nothing (no epoch lines)" bash -c "! grep -q ' epoch 1/' '$T/p2.log'"
finish
