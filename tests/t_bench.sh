#!/usr/bin/env bash
# t_bench.sh: the benchmark tool build/bench-lola (tools/bench-lola.c, DESIGN.md 9) at --size tiny:
#  a. every workload of --list runs (one child process each) and prints a table row and a RESULT
#     line with status=ok and finite positive value, TFLOP/s and peak memory; --json holds the same;
#  b. the paper configs' parameter counts are printed and equal lola-spec.md's exact counts, and the
#     FLOP model agrees with the spec (no MISMATCH);
#  c. the reference columns carry the anchor's values (table: 26.5 / 40.5 / 60.3 for ae-euler;
#     RESULT ref_* equal to the JSON numbers), the ratio is marked not comparable at tiny size;
#  d. bad inputs fail with a message naming the problem: missing --anchor file, malformed JSON, a
#     missing key, a negative reference figure, an unwritable --json path (before any workload runs),
#     an unknown --workload, an unknown --size; --no-anchor runs without references;
#  e. --max-seconds too small for one round skips the workload with the reason (exit 0); at paper
#     size a workload that cannot fit in memory (dit-euler) is skipped with both numbers (when it cannot fit);
#  f. the tool finds the configs and the reference from another working directory (fresh clone);
#     --set overrides reach the models (eval.samples -> the window's members); with --set at the
#     paper size the reference is marked not comparable (no ratio) and the JSON lists the overrides.
# Prints PASS/FAIL lines; exits non-zero on a failure.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${LOLA_BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
B=$BUILD/bench-lola
ANCHOR=$(pwd)/tools/anchor-pytorch-h200.json
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
fails=0
pass() { echo "PASS bench: $*"; }
fail() { echo "FAIL bench: $*"; fails=$((fails + 1)); }
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
T=$(mktemp -d /tmp/lola_t_bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
T0=$SECONDS
if [ ! -x "$B" ]; then fail "$B not built (make)"; exit 1; fi

# ------------------------------------------------------------------------------------------------
# a-c. one run of every workload at tiny size
timeout 120 "$B" --size tiny --seconds 0.1 --rounds 2 --warmup 1 --json "$T/b.json" >"$T/out" 2>"$T/err"
rc=$?
check "a: bench-lola --size tiny exits 0 (got $rc)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { tail -20 "$T/out" "$T/err" | sed 's/^/    /'; }
sed -n '/^== bench-lola/,/^backend:/p' "$T/out" # the table, for the log
mapfile -t W < <("$B" --list | awk '{print $1}')
check "a: --list names 9 workloads (got ${#W[@]})" [ ${#W[@]} -eq 9 ]
for w in "${W[@]}"; do
    line=$(grep "^RESULT workload=$w " "$T/out")
    check "a: $w: RESULT status=ok with finite positive value, tflops, peak_gb" python3 - "$line" <<'EOF'
import math, sys
kv = dict(t.split('=', 1) for t in sys.argv[1].split() if '=' in t)
ok = kv.get('status') == 'ok' and kv.get('size') == 'tiny'
for k in ('value', 'tflops', 'peak_gb', 'flops_per_value', 'params'):
    v = float(kv.get(k, 'nan'))
    ok = ok and math.isfinite(v) and v > 0
rounds = [float(x) for x in kv.get('rounds', '').split(',') if x]
ok = ok and len(rounds) == 2 and all(r > 0 for r in rounds)
sys.exit(0 if ok else 1)
EOF
    check "a: $w: table row with status ok" grep -qE "^$w +[^ ]+ +[0-9.e+-]+ .* ok$" "$T/out"
done
check "a: --json lists every workload with status ok and the anchor's values" python3 - "$T/b.json" "$ANCHOR" "${W[@]}" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2])); names = sys.argv[3:]
got = {w['workload']: w for w in d['workloads']}
assert d['size'] == 'tiny' and sorted(got) == sorted(names), (d['size'], sorted(got))
assert all(w['status'] == 'ok' and w['value'] > 0 for w in got.values())
assert abs(got['ae-euler']['ref_tf32'] - a['paper_era']['ae_paper_euler_train_tf32_samples_per_s']) < 1e-6
assert got['ae-euler']['ratio_best'] is None      # not comparable at tiny size
EOF

# b. parameter counts and FLOP model of the paper configs
for n in 237625733 237624580 222888256 222888512 222756928 222756672; do
    check "b: paper parameter count $n printed and equal to the spec" grep -qE "^  .* $n +spec +$n +equal" "$T/out"
done
check "b: 6 parameter counts and 6 FLOP figures checked, no MISMATCH" \
    eval '[ "$(grep -cE " equal  \(" "$T/out")" -eq 6 ] && [ "$(grep -cE "%  ok \(" "$T/out")" -ge 6 ] && ! grep -q MISMATCH "$T/out"'
check "b: FLOP model AE encoder Euler 700.8 GFLOP and vit_large Euler ~631 GFLOP printed" \
    eval 'grep -qE "AE encoder, Euler .* 700\.8 GF +spec +700\.8 GF" "$T/out" && grep -qE "DM vit_large, Euler .* 631\.[0-9] GF +spec +631\.3 GF" "$T/out"'

# c. reference columns
check "c: ae-euler row shows the anchor's TF32 / bf16 / best (26.5 40.5 60.3) and memory 39.8/19.6" \
    grep -qE "^ae-euler +samples/s +[^ ]+ +26\.5 +40\.5 +60\.3 +>=100 +n/c .* 39\.8/19\.6 ok" "$T/out"
check "c: eval-dm row shows 25.9 ms, window16 1201 ms, window1 148.0 ms" \
    eval 'grep -qE "^eval-dm .* 25\.9 " "$T/out" && grep -qE "^window16 .* 1201 " "$T/out" && grep -qE "^window1 .* 148\.0 " "$T/out"'
check "c: RESULT ref_tf32/ref_best equal the anchor file's numbers" python3 - "$T/out" "$ANCHOR" <<'EOF'
import json, sys
a = json.load(open(sys.argv[2])); pe = a['paper_era']
want = {'ae-euler': ('ref_tf32', pe['ae_paper_euler_train_tf32_samples_per_s']),
        'ae-rb': ('ref_bf16', pe['ae_paper_rb_train_bf16_samples_per_s']),
        'dit-euler': ('ref_best', a['best_pytorch']['dit_euler_train_compiled_bf16_samples_per_s']),
        'dit-rb': ('ref_tf32', pe['dit_rb_train_eager_tf32_samples_per_s']),
        'eval-ns': ('ref_tf32', pe['euler_eval_lns_ms_per_state']),
        'window-ns': ('ref_tf32', a['lns_window_ens1_ms'])}
res = {}
for line in open(sys.argv[1]):
    if line.startswith('RESULT '):
        kv = dict(t.split('=', 1) for t in line.split() if '=' in t)
        res[kv['workload']] = kv
for w, (k, v) in want.items():
    got = float(res[w][k])
    assert abs(got - v) <= 1e-5 * abs(v), (w, k, got, v)
EOF

# ------------------------------------------------------------------------------------------------
# d. bad inputs
"$B" --size tiny --anchor "$T/missing.json" --workload window-ns >"$T/d1" 2>&1
rc=$?
check "d: missing --anchor file: exit $rc, message names the file" eval '[ $rc -ne 0 ] && grep -q "cannot read the reference file .*missing.json" "$T/d1"'
printf '{"paper_era": {"x": 1,}}\n' >"$T/bad.json"
"$B" --size tiny --anchor "$T/bad.json" --workload window-ns >"$T/d2" 2>&1
rc=$?
check "d: malformed anchor JSON: exit $rc, message names file, line/column" \
    eval '[ $rc -ne 0 ] && grep -q "bad.json.* is not valid JSON: line 1 column" "$T/d2"'
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); del d["lns_window_ens1_ms"]; json.dump(d, open(sys.argv[2], "w"))' \
    "$ANCHOR" "$T/miss.json"
"$B" --size tiny --anchor "$T/miss.json" --workload window-ns >"$T/d3" 2>&1
rc=$?
check "d: anchor without a needed key: exit $rc, message names the key" \
    eval '[ $rc -ne 0 ] && grep -q "miss.json.*key .lns_window_ens1_ms. not found" "$T/d3"'
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["lns_window_ens1_ms"]=-3; json.dump(d, open(sys.argv[2], "w"))' \
    "$ANCHOR" "$T/neg.json"
"$B" --size tiny --anchor "$T/neg.json" --workload window-ns >"$T/d3b" 2>&1
rc=$?
check "d: anchor with a negative figure: exit $rc, message names the key" \
    eval '[ $rc -ne 0 ] && grep -q "neg.json.*key .lns_window_ens1_ms. is -3, expected a positive number" "$T/d3b"'
"$B" --size tiny --workload window-ns --json "$T/no/such/dir/x.json" >"$T/d3c" 2>&1
rc=$?
check "d: unwritable --json: exit $rc before any workload runs, message names the file" \
    eval '[ $rc -ne 0 ] && grep -q "cannot write --json .*no/such/dir/x.json" "$T/d3c" && ! grep -q "^# window-ns" "$T/d3c"'
"$B" --size tiny --workload ae-euler,bogus >"$T/d4" 2>&1
rc=$?
check "d: unknown --workload: exit $rc, names it and lists the workloads" \
    eval '[ $rc -ne 0 ] && grep -q "unknown workload .bogus." "$T/d4" && grep -q "window-ns" "$T/d4"'
"$B" --size huge >"$T/d5" 2>&1
rc=$?
check "d: unknown --size: exit $rc" eval '[ $rc -ne 0 ] && grep -q "size .huge." "$T/d5"'
"$B" --size tiny --no-anchor --workload window-ns --seconds 0.05 --rounds 1 >"$T/d6" 2>&1
rc=$?
check "d: --no-anchor runs (exit $rc) with empty reference columns" \
    eval '[ $rc -eq 0 ] && grep -qE "^window-ns +ms/window +[0-9.e+-]+ +- +- +- " "$T/d6" && grep -q "ref_tf32=nan" "$T/d6"'

# ------------------------------------------------------------------------------------------------
# e. time and memory limits
"$B" --size tiny --workload eval-dm --seconds 5 --rounds 3 --max-seconds 0.01 >"$T/e1" 2>&1
rc=$?
check "e: --max-seconds below one round: exit $rc, eval-dm skipped with the reason" \
    eval '[ $rc -eq 0 ] && grep -q "^RESULT workload=eval-dm .*status=skipped" "$T/e1" && grep -q "skipped: one round needs at least one unit" "$T/e1"'
"$B" --size tiny --workload window-ns --seconds 1 --rounds 5 --max-seconds 2 >"$T/e3" 2>&1
rc=$?
check "e: --max-seconds 2 with 5 rounds of 1 s: exit $rc, status ok with fewer rounds and the reason" \
    eval '[ $rc -eq 0 ] && grep -qE "^RESULT workload=window-ns .*status=ok .*rounds=[0-9.e+-]+ " "$T/e3" && grep -q "rounds reduced from 5 to 1" "$T/e3"'
avail_gb=$(awk '/^MemAvailable/ {printf "%d", $2 / 1048576}' /proc/meminfo)
# dit-euler: the largest paper workload (~63 GB on the CPU backend, whose attention keeps the
# probabilities; paper ae-euler needs ~22 GB since the activation recomputation and may fit).
if [ "${avail_gb:-999}" -lt 55 ]; then
    timeout 60 "$B" --size paper --workload dit-euler --max-seconds 20 >"$T/e2" 2>&1
    rc=$?
    check "e: paper dit-euler on a ${avail_gb} GB machine: exit $rc, skipped naming the need (~63 GB) and the free memory" \
        eval '[ $rc -eq 0 ] && grep -qE "^dit-euler .*skipped: needs at least [0-9]+\.[0-9]+ GB .*GB free" "$T/e2"'
else
    echo "SKIP bench: e: memory skip (this machine has ${avail_gb} GB available: paper dit-euler might fit)"
fi

# ------------------------------------------------------------------------------------------------
# f. another working directory
(cd "$T" && "$B" --size tiny --workload window16 --set eval.samples=2 --seconds 0.05 --rounds 1 >"$T/f1" 2>&1)
rc=$?
check "f: run from another directory finds configs/ and the reference, --set applies (exit $rc)" \
    eval '[ $rc -eq 0 ] && grep -q "^RESULT workload=window16 .*status=ok .* batch=2 .*ref_tf32=1200.8" "$T/f1"'

"$B" --size paper --workload window-ns --set surrogate.hid_blocks=1 --set surrogate.hid_channels=64 --seconds 0.05 --rounds 1 \
    --max-seconds 20 --json "$T/f2.json" >"$T/f2" 2>&1
rc=$?
check "f: --set at the paper size: exit $rc, the reference is marked not comparable (no ratio), the JSON records the --set" \
    eval '[ $rc -eq 0 ] && grep -q "^== bench-lola: size paper (--set changed the paper configs" "$T/f2" &&
          grep -qE "^window-ns .* n/c .* ok$" "$T/f2" && grep -q "^RESULT workload=window-ns .*ratio_best=nan" "$T/f2" &&
          python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"sets\"] == [\"surrogate.hid_blocks=1\", \"surrogate.hid_channels=64\"]" "$T/f2.json"'

echo "bench: $fails failure(s), $((SECONDS - T0)) s"
[ "$fails" -eq 0 ]
