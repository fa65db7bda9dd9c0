#!/usr/bin/env bash
# Runs every test: the C test programs build/tests/test_*, then the shell tests tests/t_*.sh.
# Each prints "PASS name" / "FAIL name" lines; a program that exits non-zero without printing a
# FAIL line counts as one failure. Ends with "N passed, N failed"; exit status 1 on any failure.
# Usage: tests/run.sh [BUILD_DIR] [FILTER]
set -u
BUILD=${1:-build}
FILTER=${2:-}
export LOLA_BUILD=$BUILD
# OpenMP threads sleep instead of spinning while they wait: on a loaded or small machine spinning
# threads steal the cores the working threads need (measured 4-6x slower convolutions at load 8).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0
log=$(mktemp -d)
# The Python helpers of the tests need numpy and h5py. When the first python3 on PATH lacks them
# (e.g. a pyenv interpreter) but the system one has them (Debian's python3-h5py), put the system
# one first for the tests.
if ! python3 -c 'import numpy, h5py' >/dev/null 2>&1; then
    for cand in /usr/bin/python3 /usr/local/bin/python3; do
        if [ -x "$cand" ] && "$cand" -c 'import numpy, h5py' >/dev/null 2>&1; then
            mkdir -p "$log/pybin" && ln -sf "$cand" "$log/pybin/python3" && export PATH="$log/pybin:$PATH"
            echo "tests: using $cand (numpy + h5py) for the Python helpers"
            break
        fi
    done
fi
run_one() { # name, command...
    local name=$1; shift
    [ -n "$FILTER" ] && [[ "$name" != *$FILTER* ]] && return
    local out="$log/$(basename "$name").log"
    local t0=$SECONDS
    "$@" >"$out" 2>&1
    local rc=$?
    local p f
    p=$(grep -c '^PASS ' "$out"); f=$(grep -c '^FAIL ' "$out")
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "FAIL $name: exit status $rc" >>"$out"; fi
    pass=$((pass + p)); fail=$((fail + f))
    printf '%-40s %4d passed %3d failed  %3ds\n' "$name" "$p" "$f" $((SECONDS - t0))
    if [ "$f" -gt 0 ]; then grep -E '^FAIL|error|got ' "$out" | head -20 | sed 's/^/    /'; echo "    (log: $out)"; fi
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for s in tests/t_*.sh; do
    [ -f "$s" ] || continue
    run_one "$(basename "$s" .sh)" bash "$s"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
