#!/usr/bin/env bash
# tests/t_gpu_host.sh: the GPU test code, checked on a machine without a GPU (part of make test).
#   1. build/tests/gpu/selfcheck_gpu_ops: tests/gpu/test_gpu_ops.c (every nn.h op against the CPU
#      backend, the harness of the GPU run) linked with the CPU backend on both sides (cuda/cuda.mk,
#      built by `make test` when nvcc exists): every check must pass and every nn.h function be
#      exercised, so a new op without a GPU test, or a broken check, fails here and not on the
#      GPU machine.
#   2. The flash-attention kernels (cuda/flash_attention.cu) run on the host by
#      tests/gpu/flash_emu/flash_emu.cpp in exact mode (threads and barriers emulate a block, WMMA
#      emulated with its alignment rules) against a double-precision reference; the rounded and
#      sanitizer modes are left to `bash tests/gpu/flash_emu/run.sh` (about 1.5 min).
#   3. The hand-written kernel files of the CUDA backend (cuda/elementwise.cu, bf16.cu, image.cu,
#      transformer.cu, loss.cu, psgd.cu), kernels and host code, run on the host by
#      tests/gpu/kernel_emu/run.sh (launches rewritten to a fiber emulation of blocks and warps
#      with CUDA's launch limits, shared memory, warp-mask and barrier rules, FMA contraction and
#      the device's math error bounds; see kernel_emu/cuda_emu.h): first the emulation's own
#      checks (selftest.cu), then the sections of test_gpu_ops.c for those files against the CPU
#      backend (a few seconds once built; ASAN=1 there for the sanitizer build).
#   4. The PSGD-Kron ops (cuda/psgd.cu) the same way through the `psgd` section (cuBLAS by reference
#      loops that also check each call's math mode): tests/gpu/psgd_emu/run.sh.
#   5. The files that call the libraries (conv.cu, linear.cu, lt.cu, attention.cu, precision.cu),
#      host code and kernels, against mock cuDNN / cuBLAS / cuBLASLt that validate every call and
#      compute by reference (NCHW and NHWC, fp32 / TF32 / bf16): sections conv (under each cuDNN
#      failure-injection mode: none, first candidate refused, all refused, misaligned pointers
#      refused, heuristics failing), linear, attention, bf16_cache, determinism (and linear with no
#      cuBLASLt algorithm): tests/gpu/kernel_emu/libs.sh (~35 s).
# Skips (with a line saying why) what this machine cannot build: no nvcc (no selfcheck binary), no
# C++20 (<barrier> for flash_emu) in the host compiler.
cd "$(dirname "$0")/.." || exit 2
B=${1:-build}
T=$(mktemp -d "${TMPDIR:-/tmp}/lola_t_gpu_host.XXXXXX")
trap 'rm -rf "$T"' EXIT
rc=0

S=$B/tests/gpu/selfcheck_gpu_ops
if [ -x "$S" ]; then
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive "$S" >"$T/self.log" 2>&1
    src=$?
    grep -E '^(PASS|FAIL) ' "$T/self.log"
    cov=$(grep -E 'nn.h functions exercised' "$T/self.log" | tail -1)
    sum=$(grep -E '^# [0-9]+ passed' "$T/self.log" | tail -1)
    if [ $src -eq 0 ] && grep -qE '^# [0-9]+ passed, 0 failed' <<<"$sum"; then
        echo "PASS gpu_host: selfcheck of the GPU op tests: $sum; $cov"
    else
        echo "FAIL gpu_host: selfcheck of the GPU op tests: exit $src, '${sum:-no summary}'; $cov"
        tail -5 "$T/self.log" | sed 's/^/    /'
        rc=1
    fi
else
    echo "SKIP gpu_host: $S not built (needs nvcc: cuda/cuda.mk)"
fi

CXX=${CXX:-g++}
if echo '#include <barrier>
int main() { std::barrier<> b(1); b.arrive_and_wait(); }' | "$CXX" -std=c++20 -pthread -x c++ - -o "$T/probe" 2>/dev/null; then
    if "$CXX" -std=c++20 -O1 -pthread -Wall -Wno-unknown-pragmas -Itests/gpu/flash_emu -DEMU_EXACT \
        tests/gpu/flash_emu/flash_emu.cpp -o "$T/flash_emu" 2>"$T/emu-build.log"; then
        "$T/flash_emu" >"$T/emu.log" 2>&1
        erc=$?
        grep -E '^(PASS|FAIL) ' "$T/emu.log" | sed 's/^PASS /PASS flash_emu: /; s/^FAIL /FAIL flash_emu: /'
        if [ $erc -ne 0 ] || ! grep -q '^0 failures' "$T/emu.log"; then
            echo "FAIL flash_emu: exit $erc ($(tail -1 "$T/emu.log"))"
            rc=1
        fi
    else
        echo "FAIL flash_emu: cuda/flash_attention.cu no longer builds in the host emulation"
        head -20 "$T/emu-build.log" | sed 's/^/    /'
        rc=1
    fi
else
    echo "SKIP flash_emu: $CXX has no C++20 <barrier>"
fi
# Steps 3 to 5: test lines get the step's name unless they carry one.
emu_step() { # name script log
    local name=$1 script=$2 log=$3 erc sum
    bash "$script" "$B" >"$log" 2>&1
    erc=$?
    grep -E '^(PASS|FAIL) ' "$log" | sed -E "/^(PASS|FAIL) ($name|emu selftest):/! s/^(PASS|FAIL) /\1 $name: /"
    sum=$(grep -E '^# [0-9]+ passed' "$log" | tail -1)
    if [ $erc -ne 0 ] || ! grep -qE '^# [0-9]+ passed, 0 failed' <<<"$sum"; then
        echo "FAIL $name: exit $erc, '${sum:-no summary}'"
        grep -E '^(FAIL|  emu:)' "$log" | head -8 | sed 's/^/    /'
        tail -3 "$log" | sed 's/^/    /'
        rc=1
    else
        echo "PASS $name: $4 on the host emulation: $sum"
    fi
}
if [ -x "$S" ] && echo 'int main() { return [&]<int N>() { return N; }.template operator()<0>(); }' |
    "$CXX" -std=c++20 -x c++ - -o "$T/probe20" 2>/dev/null; then
    emu_step kernel_emu tests/gpu/kernel_emu/run.sh "$T/kernel_emu.log" "the kernel files (elementwise, bf16, image, transformer, loss)"
    emu_step psgd_emu tests/gpu/psgd_emu/run.sh "$T/psgd_emu.log" "cuda/psgd.cu"
    emu_step lib_emu tests/gpu/kernel_emu/libs.sh "$T/lib_emu.log" \
        "conv.cu, linear.cu, lt.cu, attention.cu, precision.cu with mock cuDNN / cuBLAS / cuBLASLt"
else
    echo "SKIP kernel_emu: no selfcheck objects (nvcc) or no C++20 in $CXX"
    echo "SKIP psgd_emu: no selfcheck objects (nvcc) or no C++20 in $CXX"
    echo "SKIP lib_emu: no selfcheck objects (nvcc) or no C++20 in $CXX"
fi
exit $rc
