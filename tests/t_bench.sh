#!/usr/bin/env bash
# t_bench.sh: the benchmark tool build/bench-lola (tools/bench-lola.c, DESIGN.md 9) at --size tiny:
#  a. every workload of --list runs (one child process each) and prints a table row and a RESULT
#     line with status=ok and finite positive value, TFLOP/s and peak memory; --json holds the same;
#  b. the paper configs' parameter counts are printed and equal lola-spec.md's exact counts, and the
#     FLOP model agrees with the spec (no MISMATCH);
#  c. the reference columns carry the anchor's values (table: 26.5 / 40.5 / 60.3 for ae-euler;
#     RESULT ref_* equal to the JSON numbers) in the column of their setting: dit-euler's ref-TF32 is
#     the eager TF32 figure (48.4) and the compiled TF32 one (59.8) is ref-other; the eval/window
#     figures (no recorded precision) are ref-other, not TF32; the table prints each row's settings;
#     at tiny size the goal and the ratio are "n/c" (no goal next to "ok"), RESULT goal=nan
#     comparable=0; loss= only on training rows (none on eval/window rows);
#  d. bad inputs fail with a message naming the problem: missing --anchor file, malformed JSON, a
#     missing key, a negative reference figure, an unwritable --json path (before any workload runs),
#     an unknown --workload, an unknown --size; a bad --set exits 2 naming the user's own --set
#     (text and position, not the index among the size preset's overrides); --no-anchor runs
#     without references;
#  e. --max-seconds too small for one round skips the workload with the reason (exit 0); at paper
#     size a workload that cannot fit in memory (dit-euler) is skipped with both numbers (when it cannot fit),
#     and that comparable run shows the goal (>=300) and comparable=1;
#  f. the tool finds the configs and the reference from another working directory (fresh clone);
#     --set overrides reach the models (eval.samples -> the window's members); with --set at the
#     paper size the reference is marked not comparable (no ratio) and the JSON lists the overrides;
#  g. tests/gpu/run.sh --dry-run (the GPU script's plan; no GPU needed): the reserves each step keeps
#     for the later ones are the fixed ones at RUN_BUDGET=360 (tests 120, models 60, nccl 60,
#     ops-bench 45) and shrink in proportion below it (150: 50/25/25/18; 90: 30/15/15/11), so the op
#     tests get a real limit even at 90 s, also in the worst case (every earlier step using its
#     whole limit);
#  h. the PSGD workloads (ae-euler-psgd, ae-rb-psgd; in the default list, so a. runs them): no
#     reference, goal or ratio (RESULT ref_*=nan comparable=0 goal=nan ratio_best=nan, table "-");
#     the memory pre-check counts PSGD's state and scratch instead of AdamW's moments; the lines
#     under the row give the ratio to the AdamW twin (= the two values) and the timed steps k with
#     the preconditioner updates, whose count equals heavyball's schedule recomputed here in Python
#     (random.Random(0x172381 ^ k).random() < max(1/64, 0.999^k)); --psgd-step steady starts at
#     k = 4157 (same checks, no ratio when the AdamW twin did not run); a bad --psgd-step and a
#     config whose ae_optim is not psgd exit 2.
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
check "a: --list names 11 workloads (got ${#W[@]})" [ ${#W[@]} -eq 11 ]
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
check "a: --json lists every workload with status ok, the anchor's values, comparable false, no goal, the settings" python3 - "$T/b.json" "$ANCHOR" "${W[@]}" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2])); names = sys.argv[3:]
got = {w['workload']: w for w in d['workloads']}
assert d['size'] == 'tiny' and sorted(got) == sorted(names), (d['size'], sorted(got))
assert all(w['status'] == 'ok' and w['value'] > 0 for w in got.values())
assert abs(got['ae-euler']['ref_tf32'] - a['paper_era']['ae_paper_euler_train_tf32_samples_per_s']) < 1e-6
assert got['ae-euler']['ratio_best'] is None      # not comparable at tiny size
assert all(w['comparable'] is False and w['goal'] is None for w in got.values())
assert abs(got['dit-euler']['ref_other'] - a['dit_train_compiled_tf32_samples_per_s']) < 1e-6
assert abs(got['dit-euler']['ref_tf32'] - a['dit_train_eager_tf32_samples_per_s']) < 1e-6
assert got['eval-dm']['ref_tf32'] is None and 'precision not recorded' in got['eval-dm']['ref_settings']
assert 'loss' in got['dit-rb'] and 'loss' not in got['window1']
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
check "c: ae-euler row shows the anchor's TF32 / bf16 / best (26.5 40.5 60.3), goal and ratio n/c, memory 39.8/19.6" \
    grep -qE "^ae-euler +samples/s +[^ ]+ +26\.5 +40\.5 +60\.3 +- +n/c +n/c .* 39\.8/19\.6 ok" "$T/out"
check "c: dit-euler row: ref-TF32 48.4 (eager), ref-bf16 121.4, ref-best 199.4, ref-other 59.8 (compiled TF32)" \
    grep -qE "^dit-euler +samples/s +[^ ]+ +48\.4 +121\.4 +199\.4 +59\.8 +n/c +n/c " "$T/out"
check "c: eval-dm 25.9 ms, window16 1201 ms, window1 148.0 ms in ref-other, TF32/bf16/best empty" \
    eval 'grep -qE "^eval-dm +[^ ]+ +[^ ]+ +- +- +- +25\.9 +n/c +n/c " "$T/out" && grep -qE "^window16 +[^ ]+ +[^ ]+ +- +- +- +1201 +n/c " "$T/out" &&
          grep -qE "^window1 +[^ ]+ +[^ ]+ +- +- +- +148\.0 +n/c " "$T/out"'
check "c: no goal (>= / <=) on any table row at tiny size; every goal column n/c or - (window-ns has none)" python3 - "$T/out" "${W[@]}" <<'EOF'
import sys
names = set(sys.argv[2:]); rows = [l.split() for l in open(sys.argv[1]) if l[:1] != " " and l.split() and l.split()[0] in names and len(l.split()) > 12]
assert len(rows) == len(names), len(rows)
for r in rows:
    assert r[7] in ('n/c', '-') and r[8] == ('-' if r[0].endswith('-psgd') else 'n/c'), r  # goal, x-best (PSGD: no reference)
    assert not any(t.startswith(('>=', '<=')) for t in r), r
assert [r[7] for r in rows if r[0] in ('ae-euler-psgd', 'ae-rb-psgd', 'window-ns')] == ['-'] * 3
EOF
check "c: the settings legend: eager TF32/bf16, compiled bf16, dit-euler's compiled TF32, no precision for eval/window" \
    eval 'grep -q "ref-TF32 = eager, TF32; ref-bf16 = eager, bf16 autocast; ref-best = torch.compile + bf16 autocast" "$T/out" &&
          grep -qE "^  dit-euler +ref-other = torch.compile TF32" "$T/out" && grep -qE "^  eval-dm +ref-other = .*torch.compile.*precision not recorded" "$T/out" &&
          [ "$(grep -cE "^  window(16|1|-ns) +ref-other = .*precision and torch.compile not recorded" "$T/out")" -eq 3 ] &&
          grep -qE "^  ae-euler +ref-GB = eager TF32 / compiled bf16" "$T/out"'
check "c: RESULT: comparable=0 goal=nan ratio_best=nan everywhere; loss= on the 6 training rows only" python3 - "$T/out" <<'EOF'
import sys
res = [dict(t.split('=', 1) for t in l.split() if '=' in t) for l in open(sys.argv[1]) if l.startswith('RESULT ')]
assert len(res) == 11
for kv in res:
    assert kv['comparable'] == '0' and kv['goal'] == 'nan' and kv['ratio_best'] == 'nan', kv
    train = kv['workload'] in ('ae-euler', 'ae-euler-psgd', 'ae-rb', 'ae-rb-psgd', 'dit-euler', 'dit-rb')
    assert ('loss' in kv) == train, kv['workload']
    if train: assert float(kv['loss']) > 0, kv
EOF
check "c: RESULT ref_tf32/ref_bf16/ref_best/ref_other/ref_peak2_gb equal the anchor file's numbers (nan where none)" python3 - "$T/out" "$ANCHOR" <<'EOF'
import json, sys
a = json.load(open(sys.argv[2])); pe = a['paper_era']
nan = float('nan')
want = [('ae-euler', 'ref_tf32', pe['ae_paper_euler_train_tf32_samples_per_s']),
        ('ae-euler', 'ref_peak2_gb', a['best_pytorch']['ae_paper_euler_train_compiled_bf16_peak_GB']),
        ('ae-rb', 'ref_bf16', pe['ae_paper_rb_train_bf16_samples_per_s']),
        ('dit-euler', 'ref_tf32', a['dit_train_eager_tf32_samples_per_s']),
        ('dit-euler', 'ref_other', a['dit_train_compiled_tf32_samples_per_s']),
        ('dit-euler', 'ref_best', a['best_pytorch']['dit_euler_train_compiled_bf16_samples_per_s']),
        ('dit-rb', 'ref_tf32', pe['dit_rb_train_eager_tf32_samples_per_s']),
        ('eval-ns', 'ref_other', pe['euler_eval_lns_ms_per_state']),
        ('eval-ns', 'ref_tf32', nan),
        ('window-ns', 'ref_other', a['lns_window_ens1_ms']),
        ('window-ns', 'ref_tf32', nan)] + [(w, k, nan) for w in ('ae-euler-psgd', 'ae-rb-psgd')
                                            for k in ('ref_tf32', 'ref_bf16', 'ref_best', 'ref_other', 'ref_peak_gb', 'ref_peak2_gb')]
res = {}
for line in open(sys.argv[1]):
    if line.startswith('RESULT '):
        kv = dict(t.split('=', 1) for t in line.split() if '=' in t)
        res[kv['workload']] = kv
for w, k, v in want:
    got = float(res[w][k])
    assert (got != got and v != v) or abs(got - v) <= 1e-5 * abs(v), (w, k, got, v)
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
"$B" --size tiny --set eval.samples=2 --set foo --workload window-ns >"$T/d7" 2>&1
rc=$?
check "d: bad --set 'foo' (the 2nd): exit $rc (want 2), names the text and its position among the --set options" \
    eval '[ $rc -eq 2 ] && grep -q "^error: bench-lola: --set .foo. (--set number 2 of 2): .foo. is not a key=value override" "$T/d7" &&
          ! grep -q "command line:" "$T/d7"'
"$B" --size tiny --set eval.samples=x --workload window-ns >"$T/d8" 2>&1
rc=$?
check "d: bad --set value: exit $rc (want 2), names the key and the value" \
    eval '[ $rc -eq 2 ] && grep -q "^error: bench-lola: --set .eval.samples=x. (--set number 1 of 1): eval.samples: expected an integer" "$T/d8"'
"$B" --size tiny --set denoiser.attention_heads=3 --workload window-ns >"$T/d9" 2>&1
rc=$?
check "d: --set that makes the config invalid (3 heads): exit $rc (want 2), names the --set" \
    eval '[ $rc -eq 2 ] && grep -q "^error: bench-lola: --set .denoiser.attention_heads=3. (--set number 1 of 1): .*heads" "$T/d9"'
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
        eval '[ $rc -eq 0 ] && grep -qE "^dit-euler .*skipped: needs at least [0-9]+\.[0-9]+ GB .*GB free" "$T/e2" &&
              grep -qE "^# dit-euler: memory: needs at least 6[0-9]\.[0-9]+ GB" "$T/e2"'
    check "e: the paper run is comparable: goal >=300 shown, RESULT comparable=1 goal=300" \
        eval 'grep -qE "^dit-euler +samples/s +- +48\.4 +121\.4 +199\.4 +59\.8 +>=300 +- " "$T/e2" &&
              grep -qE "^RESULT workload=dit-euler .*comparable=1 goal=300 ratio_best=nan" "$T/e2"'
else
    echo "SKIP bench: e: memory skip (this machine has ${avail_gb} GB available: paper dit-euler might fit)"
fi

# ------------------------------------------------------------------------------------------------
# f. another working directory
(cd "$T" && "$B" --size tiny --workload window16 --set eval.samples=2 --seconds 0.05 --rounds 1 >"$T/f1" 2>&1)
rc=$?
check "f: run from another directory finds configs/ and the reference, --set applies (exit $rc)" \
    eval '[ $rc -eq 0 ] && grep -q "^RESULT workload=window16 .*status=ok .* batch=2 .*ref_other=1200.8" "$T/f1"'

"$B" --size paper --workload window-ns --set surrogate.hid_blocks=1 --set surrogate.hid_channels=64 --seconds 0.05 --rounds 1 \
    --max-seconds 20 --json "$T/f2.json" >"$T/f2" 2>&1
rc=$?
check "f: --set at the paper size: exit $rc, the reference is marked not comparable (no ratio), the JSON records the --set" \
    eval '[ $rc -eq 0 ] && grep -q "^== bench-lola: size paper (--set changed the paper configs" "$T/f2" &&
          grep -qE "^window-ns .* n/c .* ok$" "$T/f2" && grep -q "^RESULT workload=window-ns .*comparable=0 goal=nan ratio_best=nan" "$T/f2" &&
          python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"sets\"] == [\"surrogate.hid_blocks=1\", \"surrogate.hid_channels=64\"]" "$T/f2.json"'

# ------------------------------------------------------------------------------------------------
# g. the GPU script's time plan at three budgets
for b in 360 150 90; do
    RUN_BUDGET=$b bash tests/gpu/run.sh "$T/gpu-dry" --dry-run >"$T/g$b" 2>&1 || echo "run.sh --dry-run exit $?" >>"$T/g$b"
done
# plan BUDGET STEP: "limit reserve worst" of that step's dry-run line
plan() { sed -nE "s/^\[dry-run\] $2 +limit +(-?[0-9]+)s \(reserve +([0-9]+)s; worst case ([0-9]+s|skipped)\).*/\1 \2 \3/p" "$T/g$1" | head -1; }
check "g: run.sh --dry-run at 360/150/90 exits 0 and plans tests, models, nccl, ops-bench, bench" \
    eval '! grep -q "dry-run exit" "$T/g360" "$T/g150" "$T/g90" && for b in 360 150 90; do for st in tests models nccl ops-bench bench; do [ -n "$(plan $b $st)" ] || exit 1; done; done'
check "g: RUN_BUDGET=360 keeps the fixed reserves (tests 120, models 60, nccl 60, ops-bench 45); tests limit 150" \
    eval '[ "$(plan 360 tests)" = "150 120 150s" ] && [ "$(plan 360 models | cut -d" " -f2)" = 60 ] &&
          [ "$(plan 360 nccl | cut -d" " -f2)" = 60 ] && [ "$(plan 360 ops-bench | cut -d" " -f2)" = 45 ]'
check "g: RUN_BUDGET=150 scales them (tests 50, models 25, nccl 25, ops-bench 18)" \
    eval '[ "$(plan 150 tests | cut -d" " -f2)" = 50 ] && [ "$(plan 150 models | cut -d" " -f2)" = 25 ] &&
          [ "$(plan 150 nccl | cut -d" " -f2)" = 25 ] && [ "$(plan 150 ops-bench | cut -d" " -f2)" = 18 ]'
check "g: RUN_BUDGET=90: tests reserve 30 and a limit >= 50 s, models reserve 15, the op tests not skipped in the worst case" \
    eval 'set -- $(plan 90 tests); [ "$2" = 30 ] && [ "$1" -ge 50 ] && [ "$3" != skipped ] && [ "$(plan 90 models | cut -d" " -f2)" = 15 ]'
[ $fails -eq 0 ] || for b in 360 90; do grep -E "^\[dry-run\] [a-z-]+ +limit" "$T/g$b" | sed "s/^/    $b: /"; done

# ------------------------------------------------------------------------------------------------
# h. the PSGD workloads (their default run, --psgd-step 1, is part of a.)
# psgd_check OUT WORKLOAD START TWIN_RAN: the RESULT line's PSGD fields and the lines under the
# table row, against heavyball's schedule recomputed here.
psgd_check() {
    python3 - "$@" <<'EOF'
import math, random, sys
out, w, start, twin = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1'
lines = open(out).read().splitlines()
res = {}
for l in lines:
    if l.startswith('RESULT '):
        kv = dict(t.split('=', 1) for t in l.split() if '=' in t)
        res[kv['workload']] = kv
kv = res[w]
assert kv['status'] == 'ok' and kv['comparable'] == '0' and kv['goal'] == 'nan' and kv['ratio_best'] == 'nan', kv
assert all(kv[k] == 'nan' for k in ('ref_tf32', 'ref_bf16', 'ref_best', 'ref_other', 'ref_peak_gb', 'ref_peak2_gb')), kv
k0, k1, n, u = (int(kv[k]) for k in ('psgd_step_first', 'psgd_step_last', 'psgd_steps', 'psgd_updates'))
assert int(kv['psgd_step_start']) == start and k0 == start + 1, (start, k0)   # --warmup 1: one step before the timed ones
assert n >= 1 and int(kv['psgd_skipped']) == 0 and k1 - k0 + 1 == n, (k0, k1, n)
p = [max(1 / 64, 0.999 ** k) for k in range(k0, k1 + 1)]
want = sum(random.Random(0x172381 ^ k).random() < p[k - k0] for k in range(k0, k1 + 1))
assert u == want, ('updates', u, 'schedule', want, k0, k1)
assert abs(float(kv['psgd_update_share']) - u / n) < 1e-5 and abs(float(kv['psgd_p_mean']) - sum(p) / n) < 1e-5, kv
assert int(kv['psgd_steady_step']) == 4157 and float(kv['psgd_state_gb']) > 0, kv
mu, mp, sv = float(kv['psgd_ms_update']), float(kv['psgd_ms_plain']), float(kv['psgd_steady_value'])
assert math.isfinite(mu) == (u > 0) and math.isfinite(mp) == (u < n) and math.isfinite(sv) == (0 < u < n), kv
if 0 < u < n:   # the speed expected at p = 1/64 from the two kinds of steps
    want_sv = int(kv['batch']) * 1e3 / ((1 - 1 / 64) * mp + mu / 64)
    assert abs(sv - want_sv) < 1e-4 * want_sv, (sv, want_sv)
twin_name, vs = w[:-len('-psgd')], float(kv['vs_adamw'])
if twin: assert abs(vs - float(kv['value']) / float(res[twin_name]['value'])) < 1e-4 * vs, (vs, kv['value'], res[twin_name]['value'])
else: assert vs != vs, vs
i = next(j for j, l in enumerate(lines) if l.split()[:1] == [w] and len(l.split()) > 12)
row, under = lines[i].split(), lines[i + 1:i + 4]
assert row[3:9] == ['-'] * 6 and row[-1] == 'ok', row         # reference columns, goal, x-best
assert all(l.startswith('  -> ') for l in under), under
assert (' x the speed of %s (AdamW) in this run' if twin else 'no %s (AdamW) result in this run') % twin_name in under[0], under[0]
assert 'timed optimizer steps k = %d..%d' % (k0, k1) in under[1] and 'updated on %d of %d' % (u, n) in under[1], under[1]
assert ' ms with an update, ' in under[2] and (('expected at p = 1/64: ' in under[2]) == (0 < u < n)), under[2]
EOF
}
for w in ae-euler-psgd ae-rb-psgd; do
    check "h: $w (default run): no reference/goal/ratio; the AdamW ratio; updates on the timed steps = the schedule's" psgd_check "$T/out" $w 1 1
done
check "h: the memory pre-check adds the PSGD state + scratch instead of AdamW's moments (need difference = psgd_state_gb - 8 P)" \
    python3 - "$T/out" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
need = {m.group(1): (float(m.group(2)), m.group(3)) for m in re.finditer(r'^# (\S+): memory: needs at least ([0-9.e+-]+) GB \(([^)]*)\)', t, re.M)}
res = {kv['workload']: kv for kv in (dict(x.split('=', 1) for x in l.split() if '=' in x) for l in t.splitlines() if l.startswith('RESULT '))}
for w in ('ae-euler', 'ae-rb'):
    ps = res[w + '-psgd']
    assert 'PSGD state and scratch' in need[w + '-psgd'][1] and 'PSGD' not in need[w][1], need
    d, want = need[w + '-psgd'][0] - need[w][0], float(ps['psgd_state_gb']) - 8 * float(ps['params']) / 1e9
    assert want > 0 and abs(d - want) < 2e-6, (w, d, want)
EOF
"$B" --size tiny --workload ae-rb-psgd --psgd-step steady --seconds 0.1 --rounds 1 --warmup 1 >"$T/h1" 2>&1
rc=$?
check "h: --psgd-step steady (exit $rc): starts at k = 4157, updates = the schedule's, no AdamW ratio without ae-rb" \
    eval '[ $rc -eq 0 ] && psgd_check "$T/h1" ae-rb-psgd 4157 0 && grep -q "(--psgd-step 4157 = steady; p = 1/64 from k = 4157)" "$T/h1"'
"$B" --size tiny --workload ae-rb-psgd --psgd-step 0 >"$T/h2" 2>&1
rc1=$?
"$B" --size tiny --workload ae-rb-psgd --set ae_optim.optimizer=adamw --set 'ae_optim.betas=[0.9,0.999]' >"$T/h3" 2>&1
rc2=$?
# k = 699 updates, k = 700 does not (the schedule above): two rounds time at least both
"$B" --size tiny --workload ae-euler-psgd --psgd-step 698 --seconds 0.05 --rounds 2 --warmup 1 >"$T/h4" 2>&1
rc=$?
check "h: --psgd-step 698 (exit $rc): steps with and without an update timed apart, the speed expected at p = 1/64" \
    eval '[ $rc -eq 0 ] && psgd_check "$T/h4" ae-euler-psgd 698 0 && grep -qE "^RESULT workload=ae-euler-psgd .*psgd_ms_plain=[0-9.]+ .*psgd_steady_value=[0-9.]+ " "$T/h4"'
check "h: --psgd-step 0 (exit $rc1) and ae_optim.optimizer=adamw (exit $rc2) exit 2 naming the problem" \
    eval '[ $rc1 -eq 2 ] && grep -q "psgd-step .0.: expected an optimizer step k >= 1 or .steady." "$T/h2" &&
          [ $rc2 -eq 2 ] && grep -q "workload ae-rb-psgd measures the config.s PSGD-Kron, but ae_optim.optimizer of .*rayleigh_benard.yaml is not psgd" "$T/h3"'

echo "bench: $fails failure(s), $((SECONDS - T0)) s"
[ "$fails" -eq 0 ]
