#!/usr/bin/env bash
# tests/gpu/psgd_emu/run.sh [BUILD_DIR]: runs the `psgd` section of tests/gpu/test_gpu_ops.c with
# cuda/psgd.cu emulated on the host (cuda_emu.h): the PSGD-Kron ops of the CUDA backend, kernels
# and host code, against the CPU backend, on a machine without a GPU. The "GPU" side is the CPU
# backend (the self-check's objects) except for the PSGD ops, which come from psgd.cu with every
# kernel launch rewritten to the emulator (launch_rewrite.py) and cuBLAS replaced by column-major
# reference loops (emu_runtime.cpp), which also check CUDA's launch limits and that every cuBLAS
# call ran in CUBLAS_DEFAULT_MATH. Needs the objects of `make build/tests/gpu/selfcheck_gpu_ops`,
# python3 and g++ >= 11 (C++20 <barrier>); EMU_SMS=N sets the emulated SM count (default 2: small
# grids, so that the grid-stride loops wrap); PSGD_CU=file emulates another version of psgd.cu
# (e.g. a deliberately broken copy, to see the checks fail); ASAN=1 builds the emulated file with
# AddressSanitizer + UBSan (out-of-bounds accesses of the kernels on nn_alloc'd host buffers).
# Exit status 0 when every check passed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${1:-$root/build}
G=$B/tests/gpu
out=$B/psgd_emu
CXX=${CXX:-g++}
objs=("$G/test_gpu_ops.o" "$G/common.o")
for o in "${objs[@]}" "$G/nn_cuda_stub.o" "$G/cpuref/psgd_ops.o" "$G/selfcheck/memory.o"; do
    if [ ! -f "$o" ]; then
        echo "SKIP psgd_emu: $o missing (make build/tests/gpu/selfcheck_gpu_ops builds it)"
        exit 0
    fi
done
if ! command -v python3 >/dev/null; then
    echo "SKIP psgd_emu: no python3"
    exit 0
fi
mkdir -p "$out"
# The CPU reference (cpu_*) and the CPU backend standing in for the GPU, minus its PSGD ops.
objs+=("$G"/cpuref/*.o)
for o in "$G"/selfcheck/*.o; do
    [ "$(basename "$o")" = psgd_ops.o ] || objs+=("$o")
done
blas=${BLAS_LIBS:-$(make -s --no-print-directory -C "$root" print-BLAS_LIBS)}
omp=${OMP_FLAGS:-$(make -s --no-print-directory -C "$root" print-OMP_FLAGS)}
# The knobs of the self-check, with the precision switch weakened: emu_runtime.cpp emulates it.
objcopy --weaken-symbol=nn_cuda_precision --weaken-symbol=nn_cuda_set_precision "$G/nn_cuda_stub.o" \
    "$out/nn_cuda_stub.o" || exit 1
objs+=("$out/nn_cuda_stub.o")
python3 "$here/launch_rewrite.py" "${PSGD_CU:-$root/cuda/psgd.cu}" "$out/psgd_emu.cpp" >/dev/null || exit 1
flags=(-std=c++20 -O1 -g -pthread -Wall -Wno-unused-function -Wno-unknown-pragmas -I"$here" -I"$root/src" -I"$root/cuda")
[ "${ASAN:-0}" = 1 ] && flags+=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
if ! "$CXX" "${flags[@]}" -c "$out/psgd_emu.cpp" -o "$out/psgd_emu.o" ||
    ! "$CXX" "${flags[@]}" -c "$here/emu_runtime.cpp" -o "$out/emu_runtime.o" ||
    ! "$CXX" "${flags[@]}" "${objs[@]}" "$out/psgd_emu.o" "$out/emu_runtime.o" -o "$out/psgd_emu" $blas $omp -lm; then
    echo "FAIL psgd_emu: cuda/psgd.cu does not build in the host emulation"
    exit 1
fi
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$out/psgd_emu" --only psgd
