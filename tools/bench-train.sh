#!/usr/bin/env bash
# bench-train.sh: CPU training throughput of the small models, lola-c (build/bench-train) beside
# PyTorch (tools/bench_train_torch.py, the mirror modules of tests/), same shapes, batch and thread
# count, printed as one table.
#
# Usage: tools/bench-train.sh [--threads "1 2"] [--reps N] [--seconds S] [--rounds R]
#                             [--workloads "ae dm ns"] [--keep DIR] [-- extra args for both sides]
#   --threads   thread counts to measure (default "1 2"); each run gets OMP_NUM_THREADS=T (and the
#               PyTorch side torch.set_num_threads(T))
#   --reps      process runs per (workload, threads, side), alternating lola / torch so machine load
#               hits both alike (default 3); the table shows the median over runs of each run's
#               median round
#   --seconds   wall seconds per timed round (default 2); --rounds rounds per run (default 3)
#   --keep DIR  keep every run's full output in DIR (default: a temporary directory, removed)
#   --no-torch  lola-c only (as when no interpreter with torch is found)
# Environment: OMP_WAIT_POLICY defaults to passive (idle OpenMP threads sleep instead of spinning:
# on a shared, oversubscribed machine spinning threads steal the cores the working ones need).
# PYTHON selects the interpreter with torch (default: python3, else /tmp/torchvenv/bin/python).
#
# Workloads (defaults of both programs): ae = DCAE hid [32,64,128,256], 1 block per level,
# attention (4 heads) at the last level, 5 x 64 x 64 -> 16 x 8 x 8, batch 8, VRMSE;
# dm / ns = ViT D 128, 4 blocks, 4 heads, emb 64, label 5, latents 16 x 5 x 8 x 8, batch 16.
# Every step: forward + loss + backward + grad clip 1 + AdamW. GFLOP/s columns use lola-c's analytic
# training FLOPs per sample (3 x forward) for both sides.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THREADS="1 2"
REPS=3
SECONDS_PER_ROUND=2
ROUNDS=3
WORKLOADS="ae dm ns"
KEEP=""
NO_TORCH=0
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --threads) THREADS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --seconds) SECONDS_PER_ROUND="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --no-torch) NO_TORCH=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-train.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

BIN="$ROOT/build/bench-train"
if [[ ! -x "$BIN" ]]; then
    echo "# building build/bench-train" >&2
    make -C "$ROOT" -s build/bench-train >&2
fi

PY=""
[[ $NO_TORCH == 1 ]] && PYTHON_CANDIDATES=() || PYTHON_CANDIDATES=("${PYTHON:-}" python3 /tmp/torchvenv/bin/python)
for cand in "${PYTHON_CANDIDATES[@]}"; do
    [[ -n "$cand" ]] || continue
    if "$cand" -c "import torch" >/dev/null 2>&1; then PY="$cand"; break; fi
done

if [[ -n "$KEEP" ]]; then
    mkdir -p "$KEEP"; OUTDIR="$KEEP"
else
    OUTDIR=$(mktemp -d); trap 'rm -rf "$OUTDIR"' EXIT
fi

echo "# bench-train: $(date '+%F %T'), $(nproc) cores, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, reps $REPS x rounds $ROUNDS x ${SECONDS_PER_ROUND}s"
echo "# load before: $(uptime | sed 's/.*load average/load average/')"
if [[ -n "$PY" ]]; then
    echo "# PyTorch: $("$PY" -c 'import torch; print(torch.__version__)') ($PY)"
else
    echo "# PyTorch: not installed (tried \$PYTHON, python3, /tmp/torchvenv/bin/python; or --no-torch)"
fi

# field NAME FILE: value of NAME=... on the RESULT line of FILE (empty when absent)
field() { grep '^RESULT' "$2" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | tail -1; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR == 0) print ""; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

common=(--seconds "$SECONDS_PER_ROUND" --rounds "$ROUNDS")
rows=()
for T in $THREADS; do
    for w in $WORKLOADS; do
        ours="" theirs="" ours_cpu="" theirs_cpu=""
        for ((r = 0; r < REPS; r++)); do
            f="$OUTDIR/lola-$w-t$T-$r.txt"
            if ! OMP_NUM_THREADS=$T "$BIN" --workload "$w" "${common[@]}" "${EXTRA[@]}" >"$f" 2>&1; then
                echo "bench-train.sh: build/bench-train --workload $w failed (threads $T):" >&2; tail -5 "$f" >&2; exit 1
            fi
            ours+=" $(field samples_per_s "$f")"
            ours_cpu+=" $(field cpu_samples_per_s "$f")"
            if [[ -n "$PY" ]]; then
                g="$OUTDIR/torch-$w-t$T-$r.txt"
                if ! OMP_NUM_THREADS=$T "$PY" "$ROOT/tools/bench_train_torch.py" --workload "$w" --threads "$T" "${common[@]}" "${EXTRA[@]}" >"$g" 2>&1; then
                    echo "bench-train.sh: bench_train_torch.py --workload $w failed (threads $T):" >&2; tail -5 "$g" >&2; exit 1
                fi
                theirs+=" $(field samples_per_s "$g")"
                theirs_cpu+=" $(field cpu_samples_per_s "$g")"
            fi
        done
        f="$OUTDIR/lola-$w-t$T-0.txt"
        g="$OUTDIR/torch-$w-t$T-0.txt"
        mt="" ct="" rt=""
        if [[ -n "$PY" ]]; then
            mt=$(echo "$theirs" | median); ct=$(echo "$theirs_cpu" | median); rt=$(field maxrss_mib "$g")
        fi
        rows+=("$(awk -v w="$w" -v T="$T" -v o="$(echo "$ours" | median)" -v t="$mt" \
            -v co="$(echo "$ours_cpu" | median)" -v ct="$ct" -v f="$(field flops_per_sample "$f")" \
            -v p="$(field peak_nn_mib "$f")" -v ro="$(field maxrss_mib "$f")" -v rt="$rt" -v ao="$ours" -v at="$theirs" '
            function num(x, fmt) { return x == "" ? "-" : sprintf(fmt, x) }
            BEGIN {
                printf "%-4s %3d %9.2f %9s %6s %9.2f %9s %6s %10.1f %10s %10.0f %9.0f %9s   lola:%s | torch:%s",
                    w, T, o, num(t, "%.2f"), t == "" ? "-" : sprintf("%.2f", o / t),
                    co, num(ct, "%.2f"), ct == "" ? "-" : sprintf("%.2f", co / ct),
                    o * f * 1e-9, t == "" ? "-" : sprintf("%.1f", t * f * 1e-9), p, ro, num(rt, "%.0f"),
                    ao, at == "" ? " -" : at
            }')")
    done
done

echo "# load after:  $(uptime | sed 's/.*load average/load average/')"
echo "# s/s: samples per wall second, median over runs of each run's median round; s/cpu-s: samples per"
echo "# second of process CPU time (all threads); GF/s: wall rate x lola-c's analytic training FLOPs/sample;"
echo "# nnMiB: nn_bytes_peak (lola-c backend buffers); RSS: peak resident set of the process (MiB)"
printf '%-4s %3s %9s %9s %6s %9s %9s %6s %10s %10s %10s %9s %9s   %s\n' work thr "lola s/s" "torch s/s" ratio \
    "lola s/c" "torch s/c" "ratio" "lola GF/s" "torch GF/s" "lola nnMiB" "lola RSS" "torch RSS" "per-run wall samples/s"
for row in "${rows[@]}"; do echo "$row"; done
[[ -n "$PY" ]] || echo "PyTorch: not installed"
