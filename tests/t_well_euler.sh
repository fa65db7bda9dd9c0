#!/usr/bin/env bash
# t_well_euler.sh: build/well-euler end to end on a small set (32², internal 64², 6 frames to
# t = 0.2, 2 gammas x 4 trajectories per BC family -> 2/1/1 per gamma file):
#  - directory and file names exactly The Well's, same file names in every split, no *.tmp left;
#  - every file passes tests/check_well_format.py (schema + exact HDF5 types + Euler specifics);
#  - n_trajectories per split, time/x coordinates, field shapes;
#  - stats.yaml parses, has The Well's keys (sorted) and equals an independent numpy recomputation
#    over the train files (per-file var_mean, count-weighted mixture; %.4E rounding);
#  - the checker rejects broken files (plain int8 bool, fixed-length string, mask ends False,
#    chunked field data, wrong field shape);
#  - the same seed gives identical data with 2 MPI ranks (when mpirun works) and with OpenMP over
#    grid rows instead of over trajectories; a different seed gives different data;
#  - bad command lines exit non-zero with a message naming the problem.
# Prints PASS/FAIL lines (tests/run.sh counts them).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${LOLA_BUILD:-build}
GEN=$BUILD/well-euler
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
if [ ! -x "$GEN" ]; then fail "t_well_euler: $GEN not built (make $GEN)"; exit 1; fi
W=$(mktemp -d /tmp/lola_t_well_euler.XXXXXX)
trap 'rm -rf "$W"' EXIT
ARGS=(--resolution 32 --internal-resolution 64 --trajectories 8 --frames 6 --t-max 0.2 --seed 5 --gammas 1.4,1.76)

t0=$SECONDS
if OMP_NUM_THREADS=2 "$GEN" --out "$W/a" "${ARGS[@]}" --bc both >"$W/a.log" 2>&1; then
    pass "well-euler small set generated ($((SECONDS - t0)) s)"
else
    fail "well-euler exited non-zero: $(tail -5 "$W/a.log")"; exit 1
fi

# ---- names, splits, coordinates, stats (python) -----------------------------------------------
python3 - "$W/a" <<'EOF' || fails=$((fails + 1))
import os, sys, glob, math
import h5py, numpy as np, yaml
root = sys.argv[1]
bad = 0
def check(ok, msg):
    global bad
    print(("PASS " if ok else "FAIL ") + msg)
    if not ok: bad += 1
gas = {"1.4": "Dry_air_20", "1.76": "Ar_-180"}
dsets = sorted(os.listdir(root))
check(dsets == ["euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC"], f"dataset directories {dsets}")
for ds in dsets:
    check(sorted(os.listdir(os.path.join(root, ds))) == ["data", "stats.yaml"], f"{ds}: holds data/ and stats.yaml")
    check(sorted(os.listdir(os.path.join(root, ds, "data"))) == ["test", "train", "valid"], f"{ds}: splits train/valid/test")
    want = sorted(f"{ds}_gamma_{g}_{n}.hdf5" for g, n in gas.items())
    for split, nt in (("train", 2), ("valid", 1), ("test", 1)):
        d = os.path.join(root, ds, "data", split)
        names = sorted(os.listdir(d))
        check(names == want, f"{ds}/{split}: file names {names}")
        counts = []
        for n in names:
            with h5py.File(os.path.join(d, n), "r") as f:
                counts.append(int(f.attrs["n_trajectories"]))
                t = f["dimensions/time"][...]
                x = f["dimensions/x"][...]
                ok_t = t.dtype == np.float32 and np.allclose(t, np.linspace(0, 0.2, 6), atol=1e-7)
                ok_x = np.allclose(x, (2 * np.arange(32) + 0.5) / 64, atol=1e-7)  # mini-well x[::2] of the 64-grid
                ok_s = f["t0_fields/density"].shape == (nt, 6, 32, 32) and f["t1_fields/momentum"].shape == (nt, 6, 32, 32, 2)
        check(counts == [nt] * 2, f"{ds}/{split}: n_trajectories {counts} (expected {nt} per gamma file)")
        check(ok_t and ok_x and ok_s, f"{ds}/{split}: time = linspace(0, 0.2, 6), x = strided cell centres, field shapes")
    # stats.yaml vs an independent recomputation (The Well: per-file var_mean in float64, mixture)
    with open(os.path.join(root, ds, "stats.yaml")) as fh:
        text = fh.read()
    st = yaml.safe_load(text)
    check(list(st.keys()) == ["mean", "mean_delta", "rms", "rms_delta", "std", "std_delta"], f"{ds}: stats.yaml keys {list(st.keys())}")
    check(all(list(st[k].keys()) == ["density", "energy", "momentum", "pressure"] for k in st), f"{ds}: stats.yaml field keys sorted")
    check(all(isinstance(st[k]["density"], float) and isinstance(st[k]["momentum"], list) and len(st[k]["momentum"]) == 2 for k in st),
          f"{ds}: stats values parse as floats, momentum as a list of 2")
    acc = {}
    for p in sorted(glob.glob(os.path.join(root, ds, "data", "train", "*.hdf5"))):
        with h5py.File(p, "r") as f:
            for grp, order in (("t0_fields", 0), ("t1_fields", 1)):
                for name in f[grp].attrs["field_names"]:
                    a = f[grp][name][...].astype(np.float64)
                    axes = tuple(range(a.ndim - order))
                    d = a[:, 1:] - a[:, :-1]
                    for key, arr in (("", a), ("_delta", d)):
                        n = math.prod(arr.shape[: arr.ndim - order])
                        acc.setdefault((name, key), []).append((n, arr.mean(axis=axes), arr.var(axis=axes)))
    worst = 0.0
    for (name, key), lst in acc.items():
        w = np.array([n for n, _, _ in lst], dtype=np.float64); w /= w.sum()
        mu = np.array([m for _, m, _ in lst]); var = np.array([v for _, _, v in lst])
        m1 = np.tensordot(w, mu, 1); m2 = np.tensordot(w, var + mu ** 2, 1)
        ref = {"mean": m1, "std": np.sqrt(m2 - m1 ** 2), "rms": np.sqrt(m2)}
        for k, v in ref.items():
            got = np.atleast_1d(np.array(st[k + key][name], dtype=np.float64))
            v = np.atleast_1d(v)
            err = np.max(np.abs(got - v) / (np.abs(v) * 6e-5 + 1e-12))
            worst = max(worst, err)
            if err > 1:
                print(f"  {ds} {k}{key} {name}: yaml {got} vs numpy {v}")
    check(worst <= 1, f"{ds}: stats.yaml equals the numpy recomputation to %.4E rounding (worst {worst:.2f} of budget)")
sys.exit(1 if bad else 0)
EOF

# ---- format checker on every file ------------------------------------------------------------
files=$(find "$W/a" -name '*.hdf5' | sort)
nfiles=$(wc -w <<<"$files")
out=$(python3 tests/check_well_format.py $files)
npass=$(grep -c '^PASS ' <<<"$out")
if [ "$npass" -eq 12 ] && [ "$nfiles" -eq 12 ]; then
    pass "check_well_format.py: all $nfiles files pass"
else
    fail "check_well_format.py: $npass of $nfiles files pass: $(grep '^FAIL' <<<"$out" | head -3)"
fi
left=$(find "$W/a" -name '*.tmp' | wc -l)
[ "$left" -eq 0 ] && pass "no temporary files left" || fail "$left *.tmp files left"

# ---- the checker rejects broken files --------------------------------------------------------
GOOD=$(find "$W/a/euler_multi_quadrants_openBC/data/valid" -name '*1.4_Dry_air_20.hdf5')
python3 - "$GOOD" "$W/bad" <<'EOF'
import sys, os, shutil, h5py, numpy as np
good, d = sys.argv[1], sys.argv[2]
os.makedirs(d)
def variant(tag, fn):
    p = os.path.join(d, tag, os.path.basename(good))
    os.makedirs(os.path.dirname(p)); shutil.copy(good, p)
    with h5py.File(p, "r+") as f: fn(f)
def int8_bool(f):
    del f["t0_fields/density"].attrs["sample_varying"]
    f["t0_fields/density"].attrs.create("sample_varying", 1, dtype=np.int8)
def fixed_str(f):
    del f.attrs["dataset_name"]
    f.attrs.create("dataset_name", np.bytes_("euler_multi_quadrants_openBC"))
def mask_false(f):
    m = f["boundary_conditions/x_open/mask"]; v = m[...]; v[0] = False; m[...] = v
def chunked(f):
    a = f["t0_fields/pressure"]; data = a[...]; attrs = dict(a.attrs); del f["t0_fields/pressure"]
    b = f["t0_fields"].create_dataset("pressure", data=data, chunks=(1, 1, 32, 32))
    for k, v in attrs.items(): b.attrs[k] = v
def wrong_shape(f):
    a = f["t0_fields/energy"]; data = a[...]; attrs = dict(a.attrs); del f["t0_fields/energy"]
    b = f["t0_fields"].create_dataset("energy", data=data[:, :, :, :16])
    for k, v in attrs.items(): b.attrs[k] = v
for tag, fn in (("int8_bool", int8_bool), ("fixed_str", fixed_str), ("mask_false", mask_false),
                ("chunked", chunked), ("wrong_shape", wrong_shape)):
    variant(tag, fn)
EOF
for v in int8_bool:"should be a boolean|bool enum" fixed_str:"dataset_name: must read back as a Python str" \
         mask_false:"first and last entries must be True" chunked:"not CONTIGUOUS" \
         wrong_shape:"t0_fields/energy: shape"; do
    tag=${v%%:*}; re=${v#*:}
    out=$(python3 tests/check_well_format.py "$W/bad/$tag/$(basename "$GOOD")" 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -qE "^FAIL .*($re)" <<<"$out"; then
        pass "checker rejects $tag"
    else
        fail "checker did not reject $tag (rc $rc): $(cut -c1-300 <<<"$out")"
    fi
done

# ---- determinism: MPI ranks, seeds ---------------------------------------------------------
same_data() { # dirA dirB -> 0 if every field of every file is identical
    python3 - "$1" "$2" <<'EOF'
import sys, os, glob, h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
fa = sorted(os.path.relpath(p, a) for p in glob.glob(os.path.join(a, "**/*.hdf5"), recursive=True))
fb = sorted(os.path.relpath(p, b) for p in glob.glob(os.path.join(b, "**/*.hdf5"), recursive=True))
if fa != fb: sys.exit(2)
for r in fa:
    with h5py.File(os.path.join(a, r), "r") as x, h5py.File(os.path.join(b, r), "r") as y:
        for g in ("t0_fields", "t1_fields"):
            for n in x[g].attrs["field_names"]:
                if x[g][n][...].tobytes() != y[g][n][...].tobytes(): sys.exit(1)
sys.exit(0)
EOF
}
M=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && M+=(--allow-run-as-root)
if command -v mpirun >/dev/null 2>&1 && timeout 120 env OMP_NUM_THREADS=1 "${M[@]}" -np 2 "$GEN" --out "$W/m" "${ARGS[@]}" --bc open >"$W/m.log" 2>&1; then
    grep -q "2 rank(s)" "$W/m.log" && r2=1 || r2=0
    if [ $r2 -eq 1 ] && same_data "$W/a/euler_multi_quadrants_openBC" "$W/m/euler_multi_quadrants_openBC"; then
        pass "mpirun -np 2 (1 thread each, openBC) gives identical data to 1 rank x 2 threads"
        cmp -s "$W/a/euler_multi_quadrants_openBC/stats.yaml" "$W/m/euler_multi_quadrants_openBC/stats.yaml" &&
            pass "mpirun -np 2: identical stats.yaml" || fail "mpirun -np 2: stats.yaml differs"
    else
        fail "mpirun -np 2 data differ from the 1-rank run (ranks seen: $r2)"
    fi
else
    echo "SKIP t_well_euler: mpirun -np 2 not available or failed: $(tail -2 "$W/m.log" 2>/dev/null)"
fi
if OMP_NUM_THREADS=2 "$GEN" --out "$W/r" "${ARGS[@]}" --bc open --parallel rows >"$W/r.log" 2>&1 &&
   grep -q "parallel over grid rows" "$W/r.log" &&
   same_data "$W/a/euler_multi_quadrants_openBC" "$W/r/euler_multi_quadrants_openBC"; then
    pass "--parallel rows (OpenMP over grid rows) gives identical data to --parallel traj"
else
    fail "--parallel rows differs from the trajectory-parallel run (or failed): $(tail -2 "$W/r.log")"
fi
if OMP_NUM_THREADS=2 "$GEN" --out "$W/s" --resolution 32 --internal-resolution 64 --trajectories 2 --frames 6 \
       --t-max 0.2 --seed 6 --bc open --gammas 1.4 >"$W/s.log" 2>&1 &&
   ! python3 -c "
import h5py, numpy as np, sys
a = h5py.File(sys.argv[1] + '/euler_multi_quadrants_openBC/data/train/euler_multi_quadrants_openBC_gamma_1.4_Dry_air_20.hdf5')
b = h5py.File(sys.argv[2] + '/euler_multi_quadrants_openBC/data/train/euler_multi_quadrants_openBC_gamma_1.4_Dry_air_20.hdf5')
sys.exit(0 if np.array_equal(a['t0_fields/density'][...], b['t0_fields/density'][...]) else 1)" "$W/a" "$W/s"; then
    pass "a different --seed gives different data"
else
    fail "a different --seed gave identical data (or failed)"
fi

# ---- bad command lines -------------------------------------------------------------------------
expect() { # name regex args...
    local name=$1 re=$2; shift 2
    local out rc
    out=$("$GEN" "$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -qE -- "$re" <<<"$out"; then pass "bad input: $name -> exit $rc"
    else fail "bad input: $name (exit $rc, expected /$re/): $(head -2 <<<"$out")"; fi
}
expect "no --out" "--out ROOT is required" --resolution 8
expect "unknown gamma" "1.5 is not one of The Well's ten gamma values" --out "$W/x" --gammas 1.4,1.5
expect "internal not a multiple" "--internal-resolution 50 must be a multiple of --resolution 32" --out "$W/x" --resolution 32 --internal-resolution 50
expect "bad bc" "--bc: 'closed'" --out "$W/x" --bc closed
expect "unknown option" "unknown option --frobnicate" --out "$W/x" --frobnicate 1
expect "bad number" "--frames: 'ten' is not an integer" --out "$W/x" --frames ten

[ $fails -eq 0 ]
