#!/usr/bin/env bash
# t_cli.sh: the lola command line: help, info, usage errors, bad configs (exit status 1 and
# "error: file:line: key: ..." on stderr), overrides, LoLa's short stage names, unimplemented
# commands (exit 2), a resolved-config round trip, and one config error under mpirun -np 2.
# Prints PASS/FAIL lines (tests/run.sh counts them). Run from anywhere; uses $LOLA_BUILD/lola
# (or $LOLA_BIN).
set -u
cd "$(dirname "$0")/.." || exit 1
LOLA=${LOLA_BIN:-${LOLA_BUILD:-build}/lola}
if [ ! -x "$LOLA" ]; then echo "FAIL t_cli: $LOLA not built"; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# run NAME WANT_RC WANT_TEXT -- args...: runs lola, checks exit status and that stdout+stderr
# contain WANT_TEXT (fixed string; "" = anything).
run() {
    local name=$1 want_rc=$2 want=$3
    shift 4
    "$LOLA" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    cat "$tmp/out" "$tmp/err" >"$tmp/all"
    if [ "$rc" -eq "$want_rc" ] && { [ -z "$want" ] || grep -qF -- "$want" "$tmp/all"; }; then
        echo "PASS cli: $name"
    else
        echo "FAIL cli: $name: exit $rc (want $want_rc), want text: $want"
        sed 's/^/    | /' "$tmp/all" | head -15
        fails=$((fails + 1))
    fi
}
# Like run, but WANT_TEXT must be on stderr as "error: <text>".
run_err() {
    local name=$1 want=$2
    shift 3
    "$LOLA" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "error: $want" "$tmp/err"; then
        echo "PASS cli: $name"
    else
        echo "FAIL cli: $name: exit $rc (want 1), want on stderr: error: $want"
        sed 's/^/    | /' "$tmp/out" "$tmp/err" | head -15
        fails=$((fails + 1))
    fi
}

# also NAME WANT_TEXT: checks the output of the previous run for more text.
also() {
    if grep -qF -- "$2" "$tmp/all"; then echo "PASS cli: $1"
    else echo "FAIL cli: $1: want text: $2"; fails=$((fails + 1)); fi
}

E=configs/euler.yaml
# --- help ---------------------------------------------------------------------------------------
run "--help" 0 "train-ae" -- --help
run "no arguments: usage, exit 2" 2 "usage: lola <command>" --
run "unknown command" 2 "unknown command 'bogus'" -- bogus
run "train-ae --help lists ae.lat_channels" 0 "ae.lat_channels = 64" -- train-ae --help
also "train-ae --help lists ae.hid_channels" "ae.hid_channels = [64, 128, 256, 512, 768, 1024]"
also "train-ae --help: types and help" "[int in [1, 4096]]"
also "train-ae --help: stage defaults" "ae_optim.learning_rate = 1.0e-05"
also "train-ae --help: short names" "optim.X means ae_optim.X"
run "help eval" 0 "eval.sampling.algorithm = ab" -- help eval
run "train-dm --help: schedule" 0 "denoiser.schedule.sigma_min = 0.001" -- train-dm --help

# --- info ---------------------------------------------------------------------------------------
run "info -c euler: build" 0 "== build ==" -- info -c $E
also "info -c euler: summary" "C_lat 64 -> compression 80"
also "info -c euler: resolved YAML" "attention_heads: {5: 8}"
also "info -c euler: models hook" "== models =="
run "info -c rayleigh_benard" 0 "start: 32" -- info -c configs/rayleigh_benard.yaml
run "info without a config" 0 "no configuration" -- info
run "info with overrides" 0 "lat_channels: 16" -- info -c $E ae.lat_channels=16 'ae.hid_channels=[8,16,32,64,128,256]'

# Round trip: the resolved YAML printed by info is a config that resolves to the same YAML.
"$LOLA" info -c $E 'run.name=a "quoted" name: #1' eval.indices=[1,2] >"$tmp/info1" 2>&1
sed -n '/^== resolved configuration (YAML) ==$/,/^== models ==$/p' "$tmp/info1" | sed '1d;$d' >"$tmp/resolved.yaml"
"$LOLA" info -c "$tmp/resolved.yaml" >"$tmp/info2" 2>&1
sed -n '/^== resolved configuration (YAML) ==$/,/^== models ==$/p' "$tmp/info2" | sed '1d;$d' >"$tmp/resolved2.yaml"
if [ -s "$tmp/resolved.yaml" ] && grep -q 'a \\"quoted\\" name: #1' "$tmp/resolved.yaml" &&
    cmp -s "$tmp/resolved.yaml" "$tmp/resolved2.yaml"; then
    echo "PASS cli: resolved config re-loads to the same config ($(wc -l <"$tmp/resolved.yaml") lines)"
else
    echo "FAIL cli: resolved config round trip"; diff "$tmp/resolved.yaml" "$tmp/resolved2.yaml" | head; fails=$((fails + 1))
fi

# --- usage errors -------------------------------------------------------------------------------
run "train-ae without -c" 2 "-c CONFIG is required" -- train-ae
run "unknown option" 2 "unknown option '--bogus'" -- train-ae -c $E --bogus
run "-c without a file" 2 "-c needs a file name" -- info -c
run "-c twice" 2 "-c given twice" -- info -c $E -c $E

# --- bad configs: exit 1, "error: file:line: key: what" -------------------------------------------
C=tests/configs
run_err "unknown key" "$C/unknown_key.yaml:4: ae.lat_chanels: unknown key (did you mean 'ae.lat_channels'?)" -- info -c $C/unknown_key.yaml
run_err "wrong type" "$C/wrong_type.yaml:4: ae_train.batch_size: expected an integer, got 'sixty-four'" -- info -c $C/wrong_type.yaml
run_err "out of range" "$C/out_of_range.yaml:4: ae.dropout: 1.5 is out of range [0, 1)" -- info -c $C/out_of_range.yaml
run_err "not an allowed value" "$C/bad_enum.yaml:4: ae_optim.optimizer: 'adam' is not one of: adamw, psgd, soap (did you mean 'adamw'?)" -- info -c $C/bad_enum.yaml
run_err "duplicate key" "$C/duplicate_key.yaml:6: ae.lat_channels: duplicate key in one mapping (first given on line 4)" -- info -c $C/duplicate_key.yaml
run_err "yes is not a boolean" "$C/yes_bool.yaml:4: ae.identity_init: 'yes' is not a boolean: use true or false" -- info -c $C/yes_bool.yaml
run_err "quoted float" "$C/quoted_float.yaml:4: dm_optim.learning_rate: expected a number, got the quoted string \"1e-4\"" -- info -c $C/quoted_float.yaml
run_err ".nan" "$C/nan.yaml:4: ae.latent_noise: .nan is not allowed" -- info -c $C/nan.yaml
run_err "stats count" "$C/stats_count.yaml:5: dataset.stats.mean: has 4 values but dataset.fields has 5 channels" -- info -c $C/stats_count.yaml
run_err "missing required key" "$C/missing_required.yaml: run.dir: missing required key" -- info -c $C/missing_required.yaml
run_err "include cycle" "$C/cycle_b.yaml:3: defaults: include cycle: $C/cycle_a.yaml -> $C/cycle_b.yaml -> $C/cycle_a.yaml" -- info -c $C/cycle_a.yaml
run_err "not YAML" "$C/not_yaml.yaml:5: YAML syntax error at column" -- info -c $C/not_yaml.yaml
t0=$(date +%s%N)
run_err "billion laughs" "$C/laughs.yaml:" -- info -c $C/laughs.yaml
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
if grep -qF "alias bomb" "$tmp/err" && [ "$ms" -lt 5000 ]; then echo "PASS cli: billion laughs refused (whole run ${ms} ms)"
else echo "FAIL cli: billion laughs: ${ms} ms"; fails=$((fails + 1)); fi
run_err "unreadable file" "$tmp/nope.yaml: cannot open config file: No such file or directory" -- info -c "$tmp/nope.yaml"
head -c 300 /dev/urandom >"$tmp/random.bin"
printf '\x89PNG' | cat - "$tmp/random.bin" >"$tmp/binary.yaml"
run_err "binary file" "$tmp/binary.yaml:1: not a valid YAML text" -- info -c "$tmp/binary.yaml"
run_err "bad override" "command line:2: ae.lat_chanels: unknown key" -- info -c $E ae.lat_channels=16 ae.lat_chanels=3
run_err "bad override value" "command line:1: ae.hid_channels[1]: expected an integer, got 'x'" -- info -c $E 'ae.hid_channels=[1,x]'
run_err "short stage name (train-ae optim.)" "command line:1: ae_optim.learning_rate: expected a number, got 'fast'" -- train-ae -c $E optim.learning_rate=fast
run_err "short stage name (train-dm valid.)" "command line:1: dm_train.valid.batch_size: 0 is out of range" -- train-dm -c $E valid.batch_size=0

# --- unimplemented commands exit 2 ----------------------------------------------------------------
# A command whose cmd_* symbol is still the weak stub (nm: W) must say so and exit 2.
if command -v nm >/dev/null; then
    weak=$(nm "$LOLA" 2>/dev/null | awk '$2 == "W" && $3 ~ /^cmd_/ {print $3}' | head -1)
    if [ -n "$weak" ]; then
        cmd=${weak#cmd_}; cmd=${cmd//_/-}
        run "unimplemented '$cmd' exits 2" 2 "lola $cmd: not implemented yet in this build" -- "$cmd" -c $E
    else
        echo "PASS cli: every command is implemented (no weak cmd_* stub left in $LOLA)"
    fi
fi

# --- MPI: a config error under 2 ranks: exit non-zero, one message, no hang ------------------------
if command -v mpirun >/dev/null && [ -z "${LOLA_NO_MPI_TEST:-}" ]; then
    timeout 60 mpirun --allow-run-as-root --oversubscribe -np 2 "$LOLA" info -c $C/unknown_key.yaml >"$tmp/mpi" 2>&1
    rc=$?
    n=$(grep -c "error: $C/unknown_key.yaml:4: ae.lat_chanels" "$tmp/mpi")
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$n" -eq 1 ]; then echo "PASS cli: mpirun -np 2 bad config: exit $rc, one error line"
    else echo "FAIL cli: mpirun -np 2 bad config: exit $rc, $n error lines"; sed 's/^/    | /' "$tmp/mpi" | head; fails=$((fails + 1)); fi
fi
[ "$fails" -eq 0 ]
