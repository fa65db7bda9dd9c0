#!/usr/bin/env bash
# The Well reader on h5py-written fixtures: file tests (test_well --fixtures), bit-for-bit
# comparison with an independent h5py reading (well_h5py_compare.py), bad-input cases (each must
# exit non-zero with a message naming the problem), MPI-IO reads under mpirun (when available),
# and a round trip on build/well-euler output (when that generator is built).
# Prints PASS/FAIL lines (tests/run.sh counts them).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${LOLA_BUILD:-build}
BIN=${TEST_WELL_BIN:-$BUILD/tests/test_well}
if [ ! -x "$BIN" ]; then echo "FAIL t_well: $BIN not built"; exit 1; fi
W=$(mktemp -d /tmp/lola_t_well.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail=0

if ! python3 tests/make_well_fixture.py "$W" >/dev/null 2>"$W/fixture.err"; then
    echo "FAIL make_well_fixture.py: $(tail -3 "$W/fixture.err")"; exit 1
fi

"$BIN" --fixtures "$W/good" | grep -E '^(PASS|FAIL)' || fail=1
python3 tests/well_h5py_compare.py "$BIN" "$W/good" "$W/cmp" || fail=1

EU=euler_multi_quadrants_openBC
# expect NAME EXPECTED_REGEX CMD...: the command must fail (non-zero exit) and print the message
expect() {
    local name=$1 re=$2; shift 2
    local out rc
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne 0 ] && grep -qE -- "$re" <<<"$out"; then
        echo "PASS bad input: $name -> exit $rc, message: $(grep -E -m1 -- "$re" <<<"$out" | cut -c1-160)"
    else
        echo "FAIL bad input: $name (exit $rc, expected /$re/): $(head -3 <<<"$out")"; fail=1
    fi
}
expect "missing group" "euler_multi_quadrants_openBC_gamma_1.4_Dry_air_20.hdf5: /: missing group 'boundary_conditions'" \
    "$BIN" open "$W/bad_missing_group" $EU train
expect "missing attribute" "\.hdf5: /t1_fields/momentum: missing attribute 'time_varying'" \
    "$BIN" open "$W/bad_missing_attr" $EU train
expect "field of the wrong rank" "/t0_fields/energy: rank 3 \(shape \(3, 9, 6\)\), expected rank 4 \(3, 9, 6, 6\) for a scalar \(t0\) field" \
    "$BIN" open "$W/bad_wrong_rank" $EU train
expect "n_trajectories disagrees with the data" "/t0_fields/energy: holds 3 trajectories \(shape \(3, 9, 6, 6\)\) but the root attribute n_trajectories = 4" \
    "$BIN" open "$W/bad_ntraj" $EU train
expect "truncated file" "cannot open .*gamma_1.4_Dry_air_20.hdf5 as HDF5 \(truncated, corrupt or not HDF5\): .*(truncated|signature|eof)" \
    "$BIN" open "$W/bad_truncated" $EU train
expect "empty split directory" "no \*.h5 or \*.hdf5 files in .*/bad_empty/$EU/data/train" \
    "$BIN" open "$W/bad_empty" $EU train
expect "missing split directory" "split directory .*/data/nosuchsplit does not exist" \
    "$BIN" open "$W/good" $EU nosuchsplit
expect "mismatched resolution" "gamma_1.5_Other.hdf5: resolution/axes differ: dim 0 is x=8 but .* has x=6" \
    "$BIN" open "$W/bad_resolution" $EU train
expect "mismatched dataset_name" "gamma_1.5_Other.hdf5: dataset_name 'something_else' differs from '$EU'" \
    "$BIN" open "$W/bad_dataset_name" $EU train
expect "stats array of the wrong length" "configs/dataset/test.yaml: stats.mean has 4 values but the dataset has 5 channels" \
    "$BIN" statslen
expect "window longer than the trajectory" "a window of 5 frames at stride 4 needs 17 time steps, but .*gamma_1.13_C3H8_16.hdf5 has only 9" \
    "$BIN" open "$W/good" $EU train 0 5 4
expect "non-finite value (check_finite on)" "non-finite value nan in .*Dry_air_20.hdf5: trajectory 1, time 3, channel pressure, at \(x=2, y=5\)" \
    "$BIN" open "$W/bad_nonfinite" $EU train 1
expect "permute on a non-square grid" "random_axis_permute needs a square grid, but the train split of rayleigh_benard is 8x4" \
    "$BIN" permute "$W/good" rayleigh_benard
out=$("$BIN" open "$W/bad_nonfinite" $EU train 0 2>&1)
if [ $? -eq 0 ]; then echo "PASS non-finite values pass when check_finite is off"; else echo "FAIL non-finite without check: $out"; fail=1; fi

# MPI-IO: 2 ranks open the files collectively with the MPI-IO driver and read independently.
if command -v mpirun >/dev/null 2>&1 && "$BIN" mpio 2>&1 | grep -qv "built without MPI"; then
    out=$(timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$BIN" mpio "$W/good" \
          euler_multi_quadrants_openBC,euler_multi_quadrants_periodicBC train "$W/mpio" 2>&1)
    rc=$?
    n1=$(grep -c "mpio=1" <<<"$out")
    if [ $rc -eq 0 ] && [ "$n1" -eq 2 ]; then
        ok=1
        for r in 0 1; do
            idx=$((r * 7))
            "$BIN" dump "$W/good" euler_multi_quadrants_openBC,euler_multi_quadrants_periodicBC train 3 2 $idx "$W/serial.$r.raw" >/dev/null 2>&1 || ok=0
            cmp -s "$W/serial.$r.raw" "$W/mpio.$r.raw" || ok=0
        done
        if [ $ok -eq 1 ]; then echo "PASS MPI-IO (2 ranks, H5Pset_fapl_mpio, independent reads) == serial reads"; else echo "FAIL MPI-IO samples differ from serial"; fail=1; fi
    else
        echo "FAIL MPI-IO run (exit $rc): $(head -5 <<<"$out")"; fail=1
    fi
fi

# Round trip on the Euler generator's output (a tiny real-physics set), when it is built.
if [ -x "$BUILD/well-euler" ]; then
    if OMP_NUM_THREADS=1 "$BUILD/well-euler" --out "$W/euler" --resolution 16 --trajectories 3 --frames 6 --t-max 0.1 \
         --bc both --gammas 1.4,1.13 >"$W/euler.log" 2>&1; then
        "$BIN" open "$W/euler" euler_multi_quadrants_openBC,euler_multi_quadrants_periodicBC train 1 >/dev/null 2>"$W/euler_open.err" \
            && echo "PASS well-euler output opens, validates and reads with check_finite" \
            || { echo "FAIL well-euler output: $(head -2 "$W/euler_open.err")"; fail=1; }
        python3 tests/well_h5py_compare.py "$BIN" "$W/euler" "$W/euler_cmp" --euler || fail=1
    else
        echo "FAIL well-euler did not run: $(tail -2 "$W/euler.log")"; fail=1
    fi
fi
exit $fail
