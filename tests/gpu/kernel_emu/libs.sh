#!/usr/bin/env bash
# tests/gpu/kernel_emu/libs.sh [BUILD_DIR]: the files of the CUDA backend that call the libraries
# (conv.cu: cuDNN; linear.cu, attention.cu: cuBLAS; lt.cu: cuBLASLt; precision.cu: bf16 casts and
# the weight cache) run on the host against the mock libraries of the emulation (emu_cudnn.cpp,
# emu_cublas.cpp, emu_cublaslt.cpp; their kernels on the fiber emulation of cuda_emu.h), through
# the sections of tests/gpu/test_gpu_ops.c, once per failure-injection mode:
#   conv          cuDNN's heuristic choices (NCHW and NHWC, fp32 / TF32 / bf16, deterministic, the
#                 im2col path, every pointer misaligned)
#   conv-first    EMU_CUDNN_FAIL=first, LOLA_CUDNN_FIND=1: the first algorithm of every plan and
#                 direction is refused, conv.cu must move on to its next candidate (cudnnFind order)
#   conv-all      every cuDNN execution refused: im2col for fp32 / TF32, the fp32 path for bf16
#   conv-misaligned  pointers that are not 16-byte aligned refused, as cuDNN 9 may
#   conv-plan     the heuristics fail: plans that cannot be built
#   gemm          sections linear, attention, bf16_cache, determinism (cuBLASLt epilogues, cuBLAS
#                 SGEMM / GemmEx / strided-batched, the bf16 weight cache)
#   gemm-lt-noalgo  EMU_LT_FAIL=noalgo: cuBLASLt offers no algorithm, linear.cu falls back to cuBLAS
# In the fallback modes some checks of test_gpu_ops.c must fail (they assert that cuDNN ran): those
# FAIL lines are expected, turned into PASS lines here, and required to appear. Prints PASS / FAIL
# lines "lib_emu: [run] ..." and a summary; exit status 0 when every check passed (2 when the
# emulation does not build). LIBS_RUNS=name,name selects runs. ASAN=1 as in run.sh.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${1:-$root/build}
T=$(mktemp -d "${TMPDIR:-/tmp}/kemu_libs.XXXXXX")
trap 'rm -rf "$T"' EXIT

EMU_BUILD_ONLY=1 EMU_SELFTEST=${EMU_SELFTEST:-0} bash "$here/run.sh" "$B" >"$T/build.log" 2>&1
brc=$?
if grep -q '^SKIP' "$T/build.log"; then
    grep '^SKIP' "$T/build.log" | sed 's/kernel_emu/lib_emu/'
    exit 0
fi
bin=$(sed -n 's/^# kernel_emu: built //p' "$T/build.log")
if [ $brc -ne 0 ] || [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "FAIL lib_emu: the emulation does not build (exit $brc)"
    grep -v '^# rewrite.py' "$T/build.log" | tail -20 | sed 's/^/    /'
    exit 2
fi

# name | sections | environment | EMU_REQUIRE | EMU_COVER | expected FAIL lines (regexes, ';'-separated)
# (between them, the two full runs launch every kernel of conv.cu, linear.cu, attention.cu, precision.cu)
bf16_casts=to_bf16_kernel,to_bf16_x4_kernel
xfail_dnn='conv with misaligned parameters \[fp32\]: cuDNN ran every call;cuDNN ran bf16 convolutions;cuDNN ran NHWC bf16 convolutions'
runs=(
    "conv|conv|EMU_CUDNN_FAIL=none|cudnn|conv.cu,$bf16_casts,from_bf16_kernel,from_bf16_bias_kernel|"
    "conv-first|conv|EMU_CUDNN_FAIL=first LOLA_CUDNN_FIND=1|cudnn|conv.cu|"
    "conv-all|conv|EMU_CUDNN_FAIL=all|cudnn||$xfail_dnn"
    "conv-misaligned|conv|EMU_CUDNN_FAIL=misaligned|cudnn||"
    "conv-plan|conv|EMU_CUDNN_FAIL=plan|cudnn||$xfail_dnn"
    "gemm|linear,attention,bf16_cache,determinism|EMU_LT_FAIL=none|lt,gemm,batched,params|linear.cu,attention.cu,$bf16_casts,bf16_fill_kernel|"
    "gemm-lt-noalgo|linear,bf16_cache|EMU_LT_FAIL=noalgo|lt,gemm||"
)

# ASAN=1: the plan caches of conv.cu / lt.cu (and their descriptors) live until the process ends by
# design; their std::vector holders are destroyed before LeakSanitizer looks, so it calls them leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
tot_pass=0
tot_fail=0
for r in "${runs[@]}"; do
    IFS='|' read -r name sections envs req cover xfail <<<"$r"
    if [ -n "${LIBS_RUNS:-}" ] && ! tr ',' '\n' <<<"$LIBS_RUNS" | grep -qx "$name"; then continue; fi
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    env $envs EMU_NAME=lib_emu EMU_REQUIRE="$req" EMU_COVER="$cover" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} \
        "$bin" --only "$sections" >"$T/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "# lib_emu: run $name ($envs; sections $sections): exit $rc, $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
    NAME=$name XFAIL=$xfail RC=$rc python3 - "$T/$name.log" >"$T/$name.out" <<'EOF'
import os, re, sys
name, rc = os.environ["NAME"], int(os.environ["RC"])
pats = [p for p in os.environ["XFAIL"].split(";") if p]
seen = {p: 0 for p in pats}
lines = open(sys.argv[1], errors="replace").read().splitlines()
out, fails, summary = [], 0, None
for ln in lines:
    m = re.match(r"^(PASS|FAIL) (?:lib_emu: )?(.*)$", ln)
    if ln.startswith("# ") and re.match(r"^# \d+ passed, \d+ failed", ln):
        summary = ln
    if not m:
        continue
    verdict, text = m.group(1), m.group(2)
    if verdict == "FAIL":
        hit = [p for p in pats if re.search(p, text)]
        if hit:
            seen[hit[0]] += 1
            out.append("PASS lib_emu: [%s] expected failure (the fallback ran): %s" % (name, text))
            continue
        fails += 1
    out.append("%s lib_emu: [%s] %s" % (verdict, name, text))
for p, n in seen.items():
    if not n:
        out.append("FAIL lib_emu: [%s] an expected failure did not occur: /%s/" % (name, p))
        fails += 1
if summary is None:
    out.append("FAIL lib_emu: [%s] the test program did not finish (exit %d)" % (name, rc))
    fails += 1
elif rc != 0 and fails == 0 and not pats:
    out.append("FAIL lib_emu: [%s] exit status %d without a failed check" % (name, rc))
    fails += 1
print("\n".join(out))
if fails:  # the diagnostics of a failing run
    diag = [ln for ln in lines if ln.startswith("  emu:") or "worst element" in ln or "warning" in ln or
            "error" in ln.lower()]
    for ln in diag[:30] + lines[-3:]:
        print("    | " + ln)
EOF
    cat "$T/$name.out"
    np=$(grep -c '^PASS ' "$T/$name.out")
    nf=$(grep -c '^FAIL ' "$T/$name.out")
    tot_pass=$((tot_pass + np))
    tot_fail=$((tot_fail + nf))
done
echo "# $tot_pass passed, $tot_fail failed"
[ $tot_fail -eq 0 ]
