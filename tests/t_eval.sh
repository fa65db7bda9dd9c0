#!/usr/bin/env bash
# t_eval.sh: end-to-end tests of `lola eval` (and `lola pipeline`) on the tiny Euler set
# (tests/lib_tiny.sh, tests/configs/tiny_it_base.yaml):
#  1. `lola pipeline` runs train-ae, cache, train-dm, train-ns and eval in one run directory; a
#     second pipeline run resumes/skips every stage;
#  2. eval/stats.csv: the exact header, rows for autoencoder, persistence, diffusion, surrogate,
#     every (trajectory, field, state t >= c-1, relative) once, lead time = (t - c + 1) * stride,
#     finite metrics; spread == 0 for the autoencoder, persistence and surrogate rows and > 0 for
#     diffusion with 2 members; relative autoencoder rows have rmse 0; the persistence rows
#     (relative = False) recomputed with h5py from the Well test files (m1, m2, rmse, vrmse);
#     figures (PNG), frames.h5 and summary.txt exist;
#  3. eval.samples=1 -> diffusion spread 0; eval.context=2 eval.overlap=2 and eval.start=8 give the
#     expected lead times; 2 ranks write the same rows as 1 rank (speed aside);
#  4. bad input -> exit != 0 with a clear message: a denoiser checkpoint of another shape
#     (denoiser.hid_channels), the surrogate checkpoint in place of the denoiser's, an AE of
#     another shape, a missing test split, eval.start beyond the trajectory, eval.indices out of range.
# Prints PASS/FAIL lines; exits non-zero on a failure.
TAG=eval
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
R=$T/r
A=(-c "$CFG" dataset.root="$DATA" run.dir="$R")

# ------------------------------------------------------------------------------------------------
# 1. the pipeline
lola "$T/pipe.log" pipeline "${A[@]}"
check "pipeline (train-ae, cache, train-dm, train-ns, eval) exits 0" eval '[ $rc -eq 0 ] && grep -q "pipeline complete" "$T/pipe.log"'
[ $rc -eq 0 ] || { grep -v "epoch" "$T/pipe.log" | tail -8; finish; }
check "pipeline: every stage ran" eval 'for s in ae dm ns; do grep -q "$s: training complete" "$T/pipe.log" || exit 1; done &&
    grep -q "cache train: 6 file(s) encoded" "$T/pipe.log" && grep -q "eval: wrote $R/eval/stats.csv" "$T/pipe.log"'
cp "$R/eval/stats.csv" "$T/stats_pipeline.csv"
lola "$T/pipe2.log" pipeline "${A[@]}"
check "pipeline rerun: nothing retrained or re-encoded, eval skipped" \
    eval '[ $rc -eq 0 ] && ! grep -q "^ae epoch\|^dm epoch\|^ns epoch" "$T/pipe2.log" && grep -q "cache train: 0 file(s) encoded, 6 already complete" "$T/pipe2.log" &&
          grep -q "eval skipped" "$T/pipe2.log" && cmp -s "$R/eval/stats.csv" "$T/stats_pipeline.csv"'

# ------------------------------------------------------------------------------------------------
# 2. stats.csv
# csv_check CSV CONTEXT START SAMPLES INDICES: prints PASS/FAIL lines about one stats.csv.
csv_check() {
    python3 - "$@" "$DATA" <<'EOF'
import csv, glob, math, os, sys
import h5py, numpy as np
path, c, start, S, indices, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), [int(i) for i in sys.argv[5].split(",")], sys.argv[6]
tag = "eval: [context %d start %d samples %d] " % (c, start, S)
def check(ok, name):
    print(("PASS " if ok else "FAIL ") + tag + name)
header = ("method,trajectory,field,lead_time,relative,m1,m2,spread,rmse,nrmse,vrmse,re_total,rmse_p_low,rmse_p_mid,"
          "rmse_p_high,rmse_p_sub,rmse_c_low,rmse_c_mid,rmse_c_high,rmse_c_sub,speed")
lines = open(path).read().splitlines()
check(lines[0] == header, "header is `%s`" % lines[0][:60] + "...")
rows = list(csv.DictReader(lines))
methods = ["autoencoder", "persistence", "diffusion", "surrogate"]
fields = ["energy", "density", "pressure", "momentum_x", "momentum_y"]
stride, T_steps = 4, 21
first = max(0, start - (c - 1) * stride)
L_tot = (T_steps - 1 - first) // stride + 1
leads = [(t - c + 1) * stride for t in range(c - 1, L_tot)]
keys = [(r["method"], int(r["trajectory"]), r["field"], int(r["lead_time"]), r["relative"]) for r in rows]
want = {(m, i, f, l, rel) for m in methods for i in indices for f in fields for l in leads for rel in ("False", "True")}
check(len(keys) == len(set(keys)) and set(keys) == want,
      "%d rows = 4 methods x trajectories %s x 5 fields x lead times %s x relative False/True" % (len(rows), indices, leads))
num = [k for k in header.split(",")[5:]]
finite = all(math.isfinite(float(r[k])) for r in rows for k in ("m1", "m2", "spread", "rmse", "nrmse", "vrmse", "speed"))
check(finite, "m1, m2, spread, rmse, nrmse, vrmse, speed finite in every row")
zero_spread = all(float(r["spread"]) == 0.0 for r in rows if r["method"] in ("autoencoder", "persistence", "surrogate"))
check(zero_spread, "spread == 0 in every autoencoder, persistence and surrogate row")
dsp = [float(r["spread"]) for r in rows if r["method"] == "diffusion" and int(r["lead_time"]) > 0]
if S == 1:
    check(all(s == 0.0 for s in dsp), "diffusion with 1 member: spread == 0 (max %g)" % max(dsp))
else:
    check(min(dsp) > 0.0, "diffusion with %d members: spread > 0 at every lead time > 0 (min %.3g)" % (S, min(dsp)))
ae_rel = [float(r["rmse"]) for r in rows if r["method"] == "autoencoder" and r["relative"] == "True"]
check(all(v == 0.0 for v in ae_rel), "relative autoencoder rows: rmse == 0 (%d rows)" % len(ae_rel))
p0 = [float(r["rmse"]) for r in rows if r["method"] == "persistence" and r["relative"] == "False" and r["lead_time"] == "0"]
check(all(v == 0.0 for v in p0), "persistence at lead time 0: rmse == 0 vs the truth")
sp = {r["method"]: float(r["speed"]) for r in rows}
check(sp["persistence"] == 0.0 and sp["autoencoder"] > 0 and sp["diffusion"] > 0 and sp["surrogate"] > 0,
      "speed: persistence 0, autoencoder %.3g, diffusion %.3g, surrogate %.3g s/state" % (sp["autoencoder"], sp["diffusion"], sp["surrogate"]))
# Persistence rows recomputed from the Well files (physical units): test split, file-major global
# order (openBC then periodicBC, files sorted), x[first::stride], prediction = x[c - 1].
files = []
for phys in ("euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC"):
    for p in sorted(glob.glob(os.path.join(data, phys, "data", "test", "*.hdf5"))):
        with h5py.File(p, "r") as g:
            files += [(p, i) for i in range(g["t0_fields/density"].shape[0])]
worst = 0.0
for idx in indices:
    p, i = files[idx]
    with h5py.File(p, "r") as g:
        x = {"energy": g["t0_fields/energy"][i], "density": g["t0_fields/density"][i], "pressure": g["t0_fields/pressure"][i],
             "momentum_x": g["t1_fields/momentum"][i, ..., 0], "momentum_y": g["t1_fields/momentum"][i, ..., 1]}
    for f in fields:
        xs = x[f][first::stride].astype(np.float64)
        for t in range(c - 1, L_tot):
            u, v = xs[t], xs[c - 1]
            mse = np.mean((u - v) ** 2)
            ref = {"m1": u.mean(), "m2": (u ** 2).mean(), "rmse": math.sqrt(mse), "vrmse": math.sqrt(mse / (u.var(ddof=1) + 1e-6))}
            r = [r for r in rows if r["method"] == "persistence" and int(r["trajectory"]) == idx and r["field"] == f
                 and int(r["lead_time"]) == (t - c + 1) * stride and r["relative"] == "False"][0]
            for k, val in ref.items():
                worst = max(worst, abs(float(r[k]) - val) / (abs(val) + 1e-6))
check(worst < 1e-4, "persistence m1, m2, rmse, vrmse recomputed from the Well files with h5py (max rel. diff %.2g)" % worst)
EOF
}
pycheck() { # runs a command printing PASS/FAIL lines, counts its FAILs
    local out
    out=$("$@" 2>&1)
    echo "$out"
    fails=$((fails + $(grep -c '^FAIL' <<<"$out")))
    grep -q '^PASS' <<<"$out" || fail "checker printed nothing: $(tail -3 <<<"$out")"
}
pycheck csv_check "$R/eval/stats.csv" 1 0 2 0,4
for fig in frames vrmse spread_skill; do
    check "figure eval/$fig.png is a PNG of $(stat -c %s "$R/eval/$fig.png" 2>/dev/null) bytes" \
        eval '[ "$(head -c 8 "$R/eval/$fig.png" | od -An -c | tr -d " ")" = "211PNG\r\n032\n" ] && [ $(stat -c %s "$R/eval/$fig.png") -gt 1000 ]'
done
check "eval/frames.h5 and eval/summary.txt (VRMSE by lead-time bin for the 4 methods)" \
    eval '[ -s "$R/eval/frames.h5" ] && for m in autoencoder persistence diffusion surrogate; do grep -q "^$m " "$R/eval/summary.txt" || exit 1; done'

# ------------------------------------------------------------------------------------------------
# 3. variants
lola "$T/e_s1.log" eval "${A[@]}" eval.samples=1
check "eval.samples=1 exits 0" [ $rc -eq 0 ]
pycheck csv_check "$R/eval/stats.csv" 1 0 1 0,4
lola "$T/e_c2.log" eval "${A[@]}" eval.context=2 eval.overlap=2
check "eval.context=2 eval.overlap=2 exits 0" [ $rc -eq 0 ]
pycheck csv_check "$R/eval/stats.csv" 2 0 2 0,4
lola "$T/e_st8.log" eval "${A[@]}" eval.start=8 'eval.indices=[1]'
check "eval.start=8 eval.indices=[1] exits 0" [ $rc -eq 0 ]
pycheck csv_check "$R/eval/stats.csv" 1 8 2 1
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: 2-rank eval (no mpirun or no MPI build)"
else
    lola "$T/e_r1.log" eval "${A[@]}" 'eval.indices=[0,2,4]'
    cut -d, -f1-20 "$R/eval/stats.csv" >"$T/r1.csv"
    timeout 180 "${MPI[@]}" -np 2 "$LOLA" eval "${A[@]}" 'eval.indices=[0,2,4]' >"$T/e_r2.log" 2>&1
    r2=$?
    cut -d, -f1-20 "$R/eval/stats.csv" | sort >"$T/r2.csv"
    check "eval on 2 ranks (3 trajectories) writes the same rows as 1 rank, speed aside ($(wc -l <"$T/r1.csv") lines)" \
        eval '[ $rc -eq 0 ] && [ $r2 -eq 0 ] && sort "$T/r1.csv" | cmp -s - "$T/r2.csv"'
fi

# ------------------------------------------------------------------------------------------------
# 4. bad input
refuse() { # NAME EXPECTED_TEXT RUN_DIR [overrides...]: eval must fail with EXPECTED_TEXT in its output
    local en=$1 ew=$2 ed=$3
    shift 3
    lola "$T/bad_$en.log" eval -c "$CFG" dataset.root="$DATA" run.dir="$ed" "$@"
    local msg
    msg=$(grep -m1 "error" "$T/bad_$en.log" | sed "s|$T/||g")
    check "bad input: $en -> exit $rc: $msg" eval '[ $rc -ne 0 ] && grep -qF -- "$ew" "$T/bad_$en.log"'
}
refuse denoiser-shape "$R/dm/state.h5" "$R" denoiser.hid_channels=64
mkdir -p "$T/swap/dm"
cp -r "$R/ae" "$R/ns" "$T/swap/"
cp "$R/ns/state.h5" "$T/swap/dm/state.h5"
refuse surrogate-as-denoiser "$T/swap/dm/state.h5" "$T/swap"
refuse ae-shape "$R/ae/state.h5" "$R" ae.lat_channels=8
mkdir -p "$T/notest"
for p in euler_multi_quadrants_openBC euler_multi_quadrants_periodicBC; do
    mkdir -p "$T/notest/$p/data"
    ln -s "$DATA/$p/data/train" "$T/notest/$p/data/train"
    ln -s "$DATA/$p/data/valid" "$T/notest/$p/data/valid"
done
lola "$T/bad_notest.log" eval -c "$CFG" dataset.root="$T/notest" run.dir="$R"
msg=$(grep -m1 "error" "$T/bad_notest.log" | sed "s|$T/||g")
check "bad input: missing test split -> exit $rc: $msg" eval '[ $rc -ne 0 ] && grep -q "notest/euler_multi_quadrants_openBC/data/test" "$T/bad_notest.log"'
refuse start-beyond-trajectory "eval.start" "$R" eval.start=40
refuse index-out-of-range "eval.indices[0] = 6" "$R" 'eval.indices=[6]'
finish
