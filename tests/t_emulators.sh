#!/usr/bin/env bash
# t_emulators.sh: end-to-end tests of `lola cache`, `lola train-dm` and `lola train-ns` on the tiny
# Euler set (tests/lib_tiny.sh) with a tiny AE and tiny ViTs (tests/configs/tiny_it_base.yaml):
#  1. cache: one file per Well file and split, state (N*repeat, T, C_lat, h, w) and label
#     (N*repeat, D) shapes, labels = (gamma, BC codes) of the source file, @ae_id of the current AE,
#     @complete = 1, repeats that differ, latents inside the softclip2 bound; a second run skips
#     every file; a missing file with a leftover .tmp, and a file without @complete, are rebuilt
#     (bit-identical to the first build); a cache made by another AE (one more epoch) is refused by
#     train-dm and rebuilt by cache;
#  2. train-dm / train-ns: 40 steps, losses finite and falling (first vs last 10 steps);
#  3. train-dm on 2 ranks == 1 rank after 3 steps (same global batch), with dropout 0 and 0.05
#     (per-sample masks keyed by the global stream position);
#  4. train-dm resumed twice mid-epoch (LOLA_STOP_AFTER_STEPS) == uninterrupted, bit for bit
#     (per-step losses, which include the diffusion time and noise draws, and state.h5);
#  4b. train-dm with denoiser.checkpointing=true (blocks recomputed in the backward) == without, bit
#     for bit (state.h5, per-step losses; dropout 0.05), with a smaller activation arena;
#  5. bad input: a cache file of the wrong shape, a cache file without its label dataset, a
#     cache of another AE -> exit != 0 with a message naming the file.
# Prints PASS/FAIL lines; exits non-zero on a failure.
TAG=emulators
. "$(dirname "$0")/lib_tiny.sh"
tiny_data
R=$T/r
A=(-c "$CFG" dataset.root="$DATA" run.dir="$R")
AE=(ae_train.epochs=2 ae_train.epoch_size=40 ae_train.valid.epoch_size=0)
lola "$T/ae.log" train-ae "${A[@]}" "${AE[@]}"
check "train-ae (20 steps) exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || { tail -5 "$T/ae.log"; finish; }

# ------------------------------------------------------------------------------------------------
# 1. cache
lola "$T/cache1.log" cache "${A[@]}"
check "cache exits 0" [ $rc -eq 0 ]
ae_id=$(sed -n 's/^cache: autoencoder .* (\(ae step .*\))$/\1/p' "$T/cache1.log")
check "cache logs the AE identity ($ae_id)" eval 'has "$ae_id" "ae step 20 params "'
# cache_check ROOT AE_ID REPEAT_TRAIN REPEAT_VALID: checks every cache file against its Well file.
cache_check() {
    python3 - "$@" <<'EOF'
import glob, os, sys
import h5py, numpy as np
data, cache, ae_id, rep_train, rep_valid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ok, n_files, bc_codes = True, 0, {}
def bad(msg):
    global ok
    ok = False
    print("  cache: " + msg)
for phys in ("euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC"):
    for split, rep in (("train", rep_train), ("valid", rep_valid)):
        wells = sorted(glob.glob(os.path.join(data, phys, "data", split, "*.hdf5")))
        caches = sorted(glob.glob(os.path.join(cache, phys, split, "*")))
        if [os.path.basename(p) for p in wells] != [os.path.basename(p) for p in caches]:
            bad("%s/%s: cache files %s != Well files %s" % (phys, split, [os.path.basename(p) for p in caches], len(wells)))
            continue
        for w, c in zip(wells, caches):
            n_files += 1
            g, f = h5py.File(w, "r"), h5py.File(c, "r")
            N, T, H, W = g["t0_fields/density"].shape
            st, lb = f["state"], f["label"]
            if st.shape != (N * rep, T, 4, H // 2, W // 2) or st.dtype != np.float32:
                bad("%s: state %s %s, expected %s" % (c, st.shape, st.dtype, (N * rep, T, 4, H // 2, W // 2)))
                continue
            if lb.shape != (N * rep, 5):
                bad("%s: label %s, expected %s" % (c, lb.shape, (N * rep, 5)))
                continue
            if f.attrs.get("ae_id") != ae_id or int(f.attrs.get("complete", 0)) != 1 or int(f.attrs.get("repeat", 0)) != rep:
                bad("%s: attributes %s" % (c, dict(f.attrs)))
            if os.path.realpath(f.attrs.get("source", "")) != os.path.realpath(w):
                bad("%s: @source %s" % (c, f.attrs.get("source")))
            z, y = st[()], lb[()]
            if not np.isfinite(z).all() or np.abs(z).max() >= 5.0 or z.std() < 1e-3:
                bad("%s: latents not finite, outside softclip2's (-5, 5) or constant (max %g, std %g)" % (c, np.abs(z).max(), z.std()))
            gamma = np.float32(g["scalars/gamma"][()])
            if not (y[:, 0] == gamma).all():
                bad("%s: label[:, 0] %s != gamma %s" % (c, y[:, 0], gamma))
            codes = set(map(float, y[:, 1:].ravel()))
            if len(codes) != 1:
                bad("%s: BC codes %s not one value" % (c, codes))
            bc_codes.setdefault(phys, set()).update(codes)
            for i in range(N):
                for j in range(rep):
                    for k in range(j):
                        if np.allclose(z[i * rep + j], z[i * rep + k]):
                            bad("%s: trajectory %d repeats %d and %d are equal" % (c, i, k, j))
if bc_codes.get("euler_multi_quadrants_openBC") == bc_codes.get("euler_multi_quadrants_periodicBC"):
    bad("open and periodic files share BC codes %s" % bc_codes)
print("  cache: %d files checked, BC codes %s" % (n_files, {k[22:]: sorted(v) for k, v in bc_codes.items()}))
sys.exit(0 if ok and n_files == 12 else 1)
EOF
}
out=$(cache_check "$DATA" "$R/ae/cache" "$ae_id" 2 1)
c=$?
echo "$out"
check "cache: 12 files (2 BC x 2 splits x 3 gammas): shapes (N*repeat, 21, 4, 8, 8) / (N*repeat, 5), labels, @ae_id, @complete, @source, distinct repeats" [ $c -eq 0 ]

lola "$T/cache2.log" cache "${A[@]}"
check "cache rerun: every file already complete, none encoded" \
    eval '[ $rc -eq 0 ] && grep -q "cache train: 0 file(s) encoded, 6 already complete" "$T/cache2.log" &&
          grep -q "cache valid: 0 file(s) encoded, 6 already complete" "$T/cache2.log"'

victim=$(ls "$R/ae/cache/euler_multi_quadrants_openBC/train/"* | head -1)
cp "$victim" "$T/victim.h5"
mv "$victim" "$victim.tmp"
head -c 3000 "$T/victim.h5" >"$victim.tmp" # a killed job's half-written .tmp
victim2=$(ls "$R/ae/cache/euler_multi_quadrants_periodicBC/valid/"* | tail -1)
cp "$victim2" "$T/victim2.h5"
python3 -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r+"); del f.attrs["complete"]' "$victim2"
lola "$T/cache3.log" cache "${A[@]}"
check "cache: a missing file with a leftover .tmp and a file without @complete are rebuilt, the rest skipped" \
    eval '[ $rc -eq 0 ] && grep -q "cache train: 1 file(s) encoded, 5 already complete" "$T/cache3.log" &&
          grep -q "cache valid: 1 file(s) encoded, 5 already complete" "$T/cache3.log" && grep -q "rebuilding $victim2" "$T/cache3.log"'
check "cache: no .tmp left behind" eval '[ -z "$(find "$R/ae/cache" -name "*.tmp")" ]'
out1=$("${H5CMP[@]}" "$T/victim.h5" "$victim" --exact --attrs) && out2=$("${H5CMP[@]}" "$T/victim2.h5" "$victim2" --exact --attrs)
c=$?
check "cache: both rebuilt files are bit-identical to the first build ($(summary1 "$out1"))" [ $c -eq 0 ]

# ------------------------------------------------------------------------------------------------
# 2. train-dm / train-ns: 40 steps each, losses fall
E=(dm_train.epochs=4 dm_train.epoch_size=40 dm_train.valid.epoch_size=8 ns_train.epochs=4 ns_train.epoch_size=40 ns_train.valid.epoch_size=8)
for st in dm ns; do
    lola "$T/$st.log" train-$st "${A[@]}" "${E[@]}"
    step_losses "$R/$st/metrics.jsonl" "$st" >"$T/$st.losses"
    read -r n first last <<<"$(awk '{ l[NR] = $2 } END { f = 0; s = 0; for (i = 1; i <= 10; i++) { f += l[i]; s += l[NR - 10 + i] }
        printf "%d %.6f %.6f\n", NR, f / 10, s / 10 }' "$T/$st.losses")"
    check "train-$st: 40 steps, exit 0, every loss finite" \
        eval '[ $rc -eq 0 ] && [ "$n" -eq 40 ] && ! grep -qiE "nan|inf|null" "$T/$st.losses" && grep -q "training complete: 40 steps" "$T/$st.log"'
    check "train-$st: loss falls: mean of steps 1-10 $first -> steps 31-40 $last (need < 0.8x)" \
        awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < 0.8 * f) }'
done

# ------------------------------------------------------------------------------------------------
# 3. train-dm: 2 ranks == 1 rank after 3 steps
S3=(dm_train.epochs=1 dm_train.epoch_size=12 dm_train.valid.epoch_size=0)
if [ ${#MPI[@]} -eq 0 ]; then
    echo "SKIP $TAG: 2-rank train-dm (no mpirun or no MPI build)"
else
  for dp in 0 0.05; do
    d1="$T/dm1_$dp" d2="$T/dm2_$dp"
    lola "$d1.log" train-dm "${A[@]}" run.dir="$d1" run.ae_run="$R/ae" "${S3[@]}" denoiser.dropout=$dp
    r1=$rc
    timeout 180 "${MPI[@]}" -np 2 "$LOLA" train-dm "${A[@]}" run.dir="$d2" run.ae_run="$R/ae" "${S3[@]}" denoiser.dropout=$dp >"$d2.log" 2>&1
    r2=$?
    check "train-dm dropout $dp, 3 steps: 1 rank and 2 ranks run (exit $r1, $r2)" \
        eval '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && grep -aq "2 rank(s)" "$d2.log" && grep -aq "training complete: 3 steps" "$d2.log"'
    out=$("${H5CMP[@]}" "$d1/dm/state.h5" "$d2/dm/state.h5" --group params --rel 1e-5 --abs 1e-7)
    c=$?
    check "train-dm dropout $dp: parameters after 3 steps, 2 ranks vs 1: $(summary1 "$out")" [ $c -eq 0 ]
    echo "$out" | tail -n +2
    echo "  losses 1 rank: $(step_losses "$d1/dm/metrics.jsonl" | tr '\n' ' ')| 2 ranks: $(step_losses "$d2/dm/metrics.jsonl" | tr '\n' ' ')"
  done
fi

# ------------------------------------------------------------------------------------------------
# 4. train-dm: bit-exact resume (2 epochs of 6 steps, validation on; stops at 4 and 9)
C=(dm_train.epochs=2 dm_train.epoch_size=24 dm_train.valid.epoch_size=8)
lola "$T/c_full.log" train-dm "${A[@]}" run.dir="$T/c_full" run.ae_run="$R/ae" "${C[@]}"
check "train-dm uninterrupted (12 steps) exits 0" [ $rc -eq 0 ]
LOLA_STOP_AFTER_STEPS=4 lola "$T/c1.log" train-dm "${A[@]}" run.dir="$T/c_res" run.ae_run="$R/ae" "${C[@]}"
r1=$rc
LOLA_STOP_AFTER_STEPS=5 lola "$T/c2.log" train-dm "${A[@]}" run.dir="$T/c_res" run.ae_run="$R/ae" "${C[@]}"
r2=$rc
lola "$T/c3.log" train-dm "${A[@]}" run.dir="$T/c_res" run.ae_run="$R/ae" "${C[@]}"
check "train-dm: stop at 4 (exit $r1), resume at 4 and stop at 9 (exit $r2), resume at 9 and complete (exit $rc)" \
    eval '[ $r1 -eq 3 ] && [ $r2 -eq 3 ] && [ $rc -eq 0 ] && grep -q "dm: resumed from $T/c_res/dm/state.h5 at step 4 " "$T/c2.log" &&
          grep -q "at step 9 " "$T/c3.log" && grep -q "training complete: 12 steps" "$T/c3.log"'
step_losses "$T/c_full/dm/metrics.jsonl" >"$T/c_full.losses"
step_losses "$T/c_res/dm/metrics.jsonl" >"$T/c_res.losses"
check "train-dm: the 12 per-step losses (noise levels and noise included) are identical after resuming" \
    eval '[ "$(wc -l <"$T/c_full.losses")" -eq 12 ] && cmp -s "$T/c_full.losses" "$T/c_res.losses"'
out=$("${H5CMP[@]}" "$T/c_full/dm/state.h5" "$T/c_res/dm/state.h5" --exact --attrs --ignore-attr config)
c=$?
check "train-dm: final state.h5 bit-identical (params, AdamW m/v, attributes): $(summary1 "$out")" [ $c -eq 0 ]
[ $c -ne 0 ] && echo "$out" | head -5

# ------------------------------------------------------------------------------------------------
# 4b. train-dm: denoiser.checkpointing changes memory only (3 steps, dropout 0.05)
K=(dm_train.epochs=1 dm_train.epoch_size=12 dm_train.valid.epoch_size=0 denoiser.dropout=0.05)
lola "$T/ck0.log" train-dm "${A[@]}" run.dir="$T/ck0" run.ae_run="$R/ae" "${K[@]}"
r1=$rc
lola "$T/ck1.log" train-dm "${A[@]}" run.dir="$T/ck1" run.ae_run="$R/ae" "${K[@]}" denoiser.checkpointing=true
m0=$(sed -n 's/.*train-dm: activations \([0-9.]*\) MiB per rank at batch 4 (all blocks kept).*/\1/p' "$T/ck0.log")
m1=$(sed -n 's/.*train-dm: activations \([0-9.]*\) MiB per rank at batch 4 (checkpointing: .*/\1/p' "$T/ck1.log")
check "train-dm with and without denoiser.checkpointing: 3 steps each (exit $r1, $rc), activations $m1 MiB < $m0 MiB" \
    eval '[ $r1 -eq 0 ] && [ $rc -eq 0 ] && grep -q "training complete: 3 steps" "$T/ck1.log" &&
          [ -n "$m0" ] && [ -n "$m1" ] && awk -v a="$m1" -v b="$m0" "BEGIN { exit !(a < b) }"'
out=$("${H5CMP[@]}" "$T/ck0/dm/state.h5" "$T/ck1/dm/state.h5" --exact --attrs --ignore-attr config)
c=$?
check "train-dm: state.h5 with denoiser.checkpointing=true bit-identical to without (params, AdamW m/v, attributes): $(summary1 "$out")" \
    eval '[ $c -eq 0 ] && cmp -s <(step_losses "$T/ck0/dm/metrics.jsonl") <(step_losses "$T/ck1/dm/metrics.jsonl")'
[ $c -ne 0 ] && echo "$out" | head -5

# ------------------------------------------------------------------------------------------------
# 5. bad input (each on a copy of the AE directory)
bad_cache() { # NAME EXPECTED_TEXT PYTHON_EDIT [all]: edits one (or every) cache file of a copy; train-dm must refuse naming it
    local bn=$1 bw=$2 edit=$3 every=${4:-}
    local bd=$T/bad_$bn
    mkdir -p "$bd"
    cp -r "$R/ae" "$bd/ae"
    local bf g
    bf=$(ls "$bd/ae/cache/euler_multi_quadrants_periodicBC/train/"* | head -1)
    [ -n "$every" ] && bf=$(ls "$bd/ae/cache/euler_multi_quadrants_openBC/train/"* | head -1)
    for g in $([ -n "$every" ] && find "$bd/ae/cache" -name '*.hdf5' || echo "$bf"); do
        python3 -c "import h5py, numpy as np, sys; f = h5py.File(sys.argv[1], 'r+'); $edit" "$g"
    done
    lola "$T/bad_$bn.log" train-dm -c "$CFG" dataset.root="$DATA" run.dir="$bd" dm_train.epochs=1 dm_train.epoch_size=8
    local msg
    msg=$(grep -m1 "error" "$T/bad_$bn.log" | sed "s|$T/||g")
    check "bad input: $bn -> exit $rc, message names the file and says '$bw': $msg" \
        eval '[ $rc -ne 0 ] && [ $rc -ne 3 ] && grep -qF "$bf" "$T/bad_$bn.log" && grep -qiF -- "$bw" "$T/bad_$bn.log" &&
              [ ! -e "$bd/dm/state.h5" ]'
}
bad_cache wrong-shape "shape" 'z = f["state"][()]; del f["state"]; f["state"] = z[..., :7]'
bad_cache wrong-channels "shape" 'z = f["state"][()]; del f["state"]; f["state"] = z[:, :, :3]'
bad_cache all-files-3-channels "the autoencoder makes 4 x 8 x 8" 'z = f["state"][()]; del f["state"]; f["state"] = z[:, :, :3]' all
bad_cache missing-label "label" 'del f["label"]'
bad_cache short-label "label" 'y = f["label"][()]; del f["label"]; f["label"] = y[:-1]'

# Another AE: one more epoch changes the weights -> the cache is stale.
lola "$T/ae2.log" train-ae "${A[@]}" "${AE[@]}" ae_train.epochs=3
lola "$T/stale.log" train-dm "${A[@]}" run.dir="$T/stale" run.ae_run="$R/ae" dm_train.epochs=1 dm_train.epoch_size=8
msg=$(grep -m1 "error" "$T/stale.log" | sed "s|$T/||g")
check "cache of another AE: train-dm refuses (exit $rc) naming a cache file: $msg" \
    eval '[ $rc -ne 0 ] && [ $rc -ne 3 ] && grep -q "$R/ae/cache/.*hdf5" "$T/stale.log" && grep -qiE "autoencoder|ae_id" "$T/stale.log"'
lola "$T/cache4.log" cache "${A[@]}"
ae_id2=$(sed -n 's/^cache: autoencoder .* (\(ae step .*\))$/\1/p' "$T/cache4.log")
out=$(cache_check "$DATA" "$R/ae/cache" "$ae_id2" 2 1)
check "cache of another AE: cache rebuilds all 12 files for the new AE ($ae_id2)" \
    eval '[ $rc -eq 0 ] && [ $(grep -c "rebuilding" "$T/cache4.log") -eq 12 ] && has "$ae_id2" "ae step 30 " && [ "$ae_id2" != "$ae_id" ] &&
          grep -q "cache train: 6 file(s) encoded, 0 already complete" "$T/cache4.log"'
check "cache of another AE: rebuilt files check out" eval 'echo "$out" | tail -1 | grep -q "12 files checked"'
finish
