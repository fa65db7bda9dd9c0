#!/usr/bin/env bash
# t_export.sh: weights interop with the PyTorch reference (src/stage_export.c, tools/pth2safetensors.py).
#   1. build/tests/test_safetensors --emit: tiny AE / DM / NS checkpoints with random weights, their
#      exports, and forward passes of our models on fixed inputs
#   2. the CLI: `lola export` gives the same bytes as the library call; `lola import` then
#      `lola export` reproduces the export byte for byte (ae, dm, ns); a wrong stage and bad usage
#      are refused (exit 1 / 2) and write nothing
#   3. only when `python3 -c "import torch"` works: tests/torch_load_export.py (strict
#      load_state_dict into LoLa-named mirror models, buffers, forward parity, .pth conversion);
#      then the .pth-converted files (F32, and F64 kept as F64) go through `lola import` +
#      `lola export` and must reproduce the original export byte for byte, and so must a file
#      written by the reference safetensors package (save_file) when it is installed
# Prints PASS/FAIL lines (tests/run.sh counts them) and a SKIP line (not counted) without torch.
set -u
cd "$(dirname "$0")/.." || exit 1
B=${LOLA_BUILD:-build}
LOLA=${LOLA_BIN:-$B/lola}
EMIT=$B/tests/test_safetensors
fails=0
for f in "$LOLA" "$EMIT"; do
    if [ ! -x "$f" ]; then echo "FAIL t_export: $f not built"; exit 1; fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass() { echo "PASS export: $1"; }
fail() { echo "FAIL export: $1"; fails=$((fails + 1)); }

# 1. fixtures
if "$EMIT" --emit "$tmp" >"$tmp/emit.log" 2>&1; then
    grep '^PASS' "$tmp/emit.log"
else
    grep -E '^FAIL|error' "$tmp/emit.log"
    fail "test_safetensors --emit failed"
    exit 1
fi
CFG=$tmp/config.yaml

# 2. CLI
for s in ae dm ns; do
    if "$LOLA" export -c "$CFG" "$s" "$tmp/cli_$s.safetensors" >"$tmp/out" 2>&1 && cmp -s "$tmp/cli_$s.safetensors" "$tmp/$s.safetensors"; then
        pass "lola export -c CONFIG $s FILE equals the library export byte for byte"
    else
        fail "lola export $s"; sed 's/^/    | /' "$tmp/out" | head -5
    fi
    if "$LOLA" import -c "$CFG" "$s" "$tmp/$s.safetensors" "$tmp/cli_run" >"$tmp/out" 2>&1 &&
        [ -f "$tmp/cli_run/$s/state.h5" ] &&
        "$LOLA" export -c "$CFG" run.dir="$tmp/cli_run" "$s" "$tmp/back_$s.safetensors" >>"$tmp/out" 2>&1 &&
        cmp -s "$tmp/back_$s.safetensors" "$tmp/$s.safetensors"; then
        pass "lola import $s into a new run dir, then lola export: byte-identical to the original export"
    else
        fail "lola import/export round trip $s"; sed 's/^/    | /' "$tmp/out" | head -8
    fi
done
"$LOLA" import -c "$CFG" dm "$tmp/ae.safetensors" "$tmp/bad_run" >"$tmp/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "holds the 'ae' stage" "$tmp/out" && grep -q "nothing written" "$tmp/out" && [ ! -e "$tmp/bad_run/dm/state.h5" ]; then
    pass "lola import of an AE file as dm: exit 1, problems listed, nothing written"
else
    fail "wrong-stage import: exit $rc"; sed 's/^/    | /' "$tmp/out" | head -8
fi
"$LOLA" export -c "$CFG" ae >"$tmp/out" 2>&1
rc=$?
if [ $rc -eq 2 ] && grep -q "usage: lola export" "$tmp/out"; then pass "lola export without a file: usage, exit 2"; else fail "export usage: exit $rc"; fi
"$LOLA" import -c "$CFG" ae "$tmp/missing.safetensors" "$tmp/bad_run" >"$tmp/out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "missing.safetensors': cannot open" "$tmp/out"; then pass "lola import of a missing file: exit 1, names the file"; else fail "missing file import: exit $rc"; fi

# 3. PyTorch
if ! python3 -c "import torch" >/dev/null 2>&1; then
    echo "SKIP export: tests/torch_load_export.py (python3 cannot import torch; the PyTorch load/forward checks did not run)"
    [ $fails -eq 0 ]
    exit
fi
# LOLA_REPO=/path/to/PolymathicAI/lola adds the strict load into LoLa's own modules (needs einops).
if python3 tests/torch_load_export.py "$tmp" ${LOLA_REPO:+--lola "$LOLA_REPO"} >"$tmp/py.log" 2>&1; then
    grep -E '^(PASS|note)' "$tmp/py.log"
else
    grep -E '^(PASS|FAIL|note)' "$tmp/py.log"
    tail -5 "$tmp/py.log" | sed 's/^/    | /'
    fail "tests/torch_load_export.py exited non-zero"
fi
for s in ae dm ns; do
    for v in pth pth64 ref; do
        f=$tmp/${s}_from_$v.safetensors
        if [ ! -f "$f" ]; then
            [ $v = ref ] && continue # written only when the safetensors package is installed
            fail "$f was not written"; continue
        fi
        if "$LOLA" import -c "$CFG" "$s" "$f" "$tmp/run_$v" >"$tmp/out" 2>&1 &&
            "$LOLA" export -c "$CFG" run.dir="$tmp/run_$v" "$s" "$tmp/${s}_via_$v.safetensors" >>"$tmp/out" 2>&1 &&
            cmp -s "$tmp/${s}_via_$v.safetensors" "$tmp/$s.safetensors"; then
            conv=$(grep -o 'converted [0-9]* tensor(s) from F64' "$tmp/out" | head -1)
            how=".pth ($v) -> pth2safetensors"; [ $v = ref ] && how="safetensors.torch.save_file"
            pass "$s: PyTorch state_dict -> $how -> lola import -> lola export is byte-identical${conv:+ ($conv)}"
        else
            fail "$s: .pth ($v) import"; sed 's/^/    | /' "$tmp/out" | head -8
        fi
    done
done
[ $fails -eq 0 ]
