#!/usr/bin/env bash
# tests/gpu/kernel_emu/run.sh [BUILD_DIR]: runs sections of tests/gpu/test_gpu_ops.c with the
# kernel files of the CUDA backend emulated on the host (cuda_emu.h), against the CPU backend, on a
# machine without a GPU. The "GPU" side of the test program is the CPU backend (the self-check's
# objects) except for every function the emulated files define: their kernels and host code,
# compiled as host C++ after rewrite.py (launches -> emu_launch, __shared__ -> checked statics),
# replace the CPU backend's versions, whose symbols are weakened with objcopy. Device memory
# (nn_alloc, scratch) is the emulator's, with guard bands; the libraries are mocks that validate
# their arguments and compute by reference: cuBLAS (emu_cublas.cpp), cuBLASLt (emu_cublaslt.cpp),
# cuDNN (emu_cudnn.cpp); memory.cu's internals and knobs are host versions (emu_lcu.cpp). At exit
# the emulator adds its own PASS / FAIL lines (launch limits, synchronisation errors, host
# pointers, out-of-bounds writes, library API misuse, kernels never launched, EMU_REQUIRE).
#
# Needs the objects of `make build/tests/gpu/selfcheck_gpu_ops` (nvcc present), python3 and a
# C++20 g++. Builds incrementally into BUILD_DIR/kernel_emu (-asan with ASAN=1, -replaced with
# EMU_REPLACE; EMU_OUT=dir overrides). First the emulation's own checks (selftest.cu; EMU_SELFTEST=0
# skips them; selftest_libs.cpp checks the mock libraries), then the test program.
# Environment:
#   EMU_ONLY     sections to run (--only; default: the sections of the hand-written kernel files;
#                the library files' sections run through libs.sh)
#   EMU_CU       the emulated files (default: elementwise.cu bf16.cu image.cu transformer.cu loss.cu
#                psgd.cu precision.cu linear.cu lt.cu attention.cu conv.cu), names in cuda/
#   EMU_BUILD_ONLY=1  build (and run the selftest), do not run the sections
#   EMU_REPLACE  "name.cu=path ..." emulates another version of a file (e.g. a deliberately broken
#                copy, to see the checks fail)
#   EMU_COVER    files every kernel of which must be launched (default: set from EMU_ONLY)
#   EMU_REQUIRE  extra report checks: cublas, tf32, params, gemm, batched, lt, cudnn (emu_core.cpp;
#                default: set from EMU_ONLY)
#   EMU_CUDNN_FAIL, EMU_LT_FAIL  failure injection in the mock cuDNN / cuBLASLt (emu_cudnn.cpp,
#                emu_cublaslt.cpp)
#   EMU_SMS      emulated SM count (default 2: small grids, so that the grid-stride loops wrap)
#   EMU_ULP=0    device math functions without the ulp perturbation (see cuda_emu.h)
#   EMU_FMA=0    device code without floating-point contraction (default: contracted where the host
#                has FMA, as nvcc's --fmad=true)
#   ASAN=1       AddressSanitizer + UBSan on the emulated code (out-of-bounds accesses of kernels
#                on device buffers and shared memory, misaligned vector accesses)
# Exit status 0 when every check passed (2 when the emulation does not build).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${1:-$root/build}
mkdir -p "$B" && B=$(cd "$B" && pwd) # (absolute: the build's flags name it)
G=$B/tests/gpu
CXX=${CXX:-g++}
sections_default=blas1,bf16_storage,silu_dropout_randn,image,layernorm,modulate,fused_block_ops,qk_norm_rope,sine,rows_where,losses,adamw
only=${EMU_ONLY:-$sections_default}
files=${EMU_CU:-elementwise.cu bf16.cu image.cu transformer.cu loss.cu psgd.cu precision.cu linear.cu lt.cu attention.cu conv.cu}
out=$B/kernel_emu
[ -n "${EMU_REPLACE:-}" ] && out+=-replaced # (a modified copy does not disturb the normal build)
[ "${ASAN:-0}" = 1 ] && out+=-asan
out=${EMU_OUT:-$out}
gen=$out/gen

for o in "$G/test_gpu_ops.o" "$G/common.o" "$G/nn_cuda_stub.o" "$G/selfcheck/memory.o" "$G/cpuref/memory.o"; do
    if [ ! -f "$o" ]; then
        echo "SKIP kernel_emu: $o missing (make build/tests/gpu/selfcheck_gpu_ops builds it)"
        exit 0
    fi
done
if ! command -v python3 >/dev/null; then
    echo "SKIP kernel_emu: no python3"
    exit 0
fi
mkdir -p "$gen" "$out/weak"

flags=(-std=c++20 -O1 -fexpensive-optimizations -g -Wall -Wno-unused-function -Wno-unknown-pragmas
       -Wno-unused-variable -I"$here/include" -I"$gen" -I"$root/src" -I"$root/cuda")
if [ "${EMU_FMA:-1}" = 0 ]; then
    echo "# kernel_emu: EMU_FMA=0: device code runs without floating-point contraction"
elif grep -qw fma /proc/cpuinfo 2>/dev/null; then
    flags+=(-mfma -ffp-contract=off -DEMU_CONTRACT) # device code contracts (cuda_emu.h), host code does not
else
    echo "# kernel_emu: the host has no FMA: device code runs without floating-point contraction"
fi
[ "${ASAN:-0}" = 1 ] && flags+=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)

# Rebuild everything when the flags, the emulator or the backend's headers changed.
sig="${flags[*]} $CXX $(cat "$here"/*.h "$here"/include/*.h "$here/rewrite.py" "$root"/cuda/*.cuh "$root/src/nn.h" \
    "$root/src/common.h" "$root/src/rng.h" "$root/cuda/nn_cuda.h" | cksum)"
if [ "$(cat "$out/flags.sig" 2>/dev/null)" != "$sig" ]; then
    rm -f "$out"/*.o
    echo "$sig" >"$out/flags.sig"
fi

# newer TARGET FILE...: TARGET exists and is newer than every FILE.
newer() {
    local t=$1 f
    shift
    [ -f "$t" ] || return 1
    for f in "$@"; do [ "$f" -nt "$t" ] && return 1; done
    return 0
}
fail_build() {
    echo "FAIL kernel_emu: $1 does not build in the host emulation"
    exit 2
}
compile() { # source object
    if [ ! -f "$2" ] || [ "$1" -nt "$2" ]; then
        "$CXX" "${flags[@]}" -c "$1" -o "$2" || fail_build "$1"
    fi
}

for h in cuda_common.cuh precision.cuh; do
    python3 "$here/rewrite.py" "$root/cuda/$h" "$gen/$h" >/dev/null || fail_build "cuda/$h"
done
emu_objs=()
for f in $files; do
    src=$root/cuda/$f
    for r in ${EMU_REPLACE:-}; do
        [ "${r%%=*}" = "$f" ] && src=${r#*=}
    done
    [ -f "$src" ] || fail_build "$src (no such file)"
    python3 "$here/rewrite.py" "$src" "$gen/${f%.cu}.cpp" | sed 's/^/# /' || fail_build "$src"
    compile "$gen/${f%.cu}.cpp" "$out/${f%.cu}.o"
    emu_objs+=("$out/${f%.cu}.o")
done
for f in emu_core emu_cublas emu_lcu emu_cudnn emu_cublaslt; do
    compile "$here/$f.cpp" "$out/$f.o"
    emu_objs+=("$out/$f.o")
done
lib_objs=("${emu_objs[@]: -5}") # the emulation's own objects (the selftest links them)
compile "$here/emu_wrap.cpp" "$out/emu_wrap.o"
blas=${BLAS_LIBS:-$(make -s --no-print-directory -C "$root" print-BLAS_LIBS)}
omp=${OMP_FLAGS:-$(make -s --no-print-directory -C "$root" print-OMP_FLAGS)}

# The emulation's own checks (selftest.cu), unless EMU_SELFTEST=0.
if [ "${EMU_SELFTEST:-1}" != 0 ]; then
    python3 "$here/rewrite.py" "$here/selftest.cu" "$gen/selftest.cpp" >/dev/null || fail_build selftest.cu
    compile "$gen/selftest.cpp" "$out/selftest.o"
    newer "$out/selftest" "$out/selftest.o" "${lib_objs[@]}" "$G/common.o" ||
        "$CXX" "${flags[@]}" "$out/selftest.o" "${lib_objs[@]}" "$G/common.o" -o "$out/selftest" $blas -lm ||
        fail_build "the selftest link"
    "$out/selftest" || selftest_failed=1
    compile "$here/selftest_libs.cpp" "$out/selftest_libs.o"
    newer "$out/selftest_libs" "$out/selftest_libs.o" "${lib_objs[@]}" "$G/common.o" ||
        "$CXX" "${flags[@]}" "$out/selftest_libs.o" "${lib_objs[@]}" "$G/common.o" -o "$out/selftest_libs" $blas -lm ||
        fail_build "the selftest_libs link"
    "$out/selftest_libs" || selftest_failed=1
fi

# The CPU backend minus what the emulated objects define: their strong global symbols are weakened
# in copies of the self-check's objects (and in the knobs' stub: nn_cuda_set_precision is emulated).
nm -g --defined-only "${emu_objs[@]}" | awk 'NF == 3 && $2 ~ /^[TDBR]$/ {print $3}' | sort -u >"$out/emulated.syms.new"
cmp -s "$out/emulated.syms.new" "$out/emulated.syms" || mv "$out/emulated.syms.new" "$out/emulated.syms"
objs=("$G/test_gpu_ops.o" "$G/common.o" "$G"/cpuref/*.o)
for o in "$G"/selfcheck/*.o "$G/nn_cuda_stub.o"; do
    w=$out/weak/$(basename "$o")
    if [ ! -f "$w" ] || [ "$o" -nt "$w" ] || [ "$out/emulated.syms" -nt "$w" ]; then
        objcopy --weaken-symbols="$out/emulated.syms" "$o" "$w" || exit 2
    fi
    objs+=("$w")
done
replaced=$(nm -g --defined-only "$G"/selfcheck/*.o "$G/nn_cuda_stub.o" | awk 'NF == 3 {print $3}' | sort -u |
    comm -12 - "$out/emulated.syms" | wc -l)
# (the bf16 weight-cache bookkeeping is counted through --wrap: emu_wrap.cpp)
wrap=(-Wl,--wrap=_Z15lcu_note_paramsPKfm -Wl,--wrap=_Z14lcu_note_writePKvm)
newer "$out/test_gpu_ops_emu" "${objs[@]}" "${emu_objs[@]}" "$out/emu_wrap.o" ||
    "$CXX" "${flags[@]}" "${objs[@]}" "${emu_objs[@]}" "$out/emu_wrap.o" "${wrap[@]}" -o "$out/test_gpu_ops_emu" \
        $blas $omp -lm || fail_build "the link"

if [ "${EMU_BUILD_ONLY:-0}" = 1 ]; then
    echo "# kernel_emu: built $out/test_gpu_ops_emu"
    [ "${selftest_failed:-0}" = 1 ] && exit 1
    exit 0
fi

# What the report requires: the kernels of the files the sections test, and the PSGD bookkeeping.
cover=${EMU_COVER-}
req=${EMU_REQUIRE-}
if [ -z "${EMU_COVER+x}" ]; then # (only for the standard section lists: a subset launches fewer kernels)
    [ "$only" = "$sections_default" ] && cover=elementwise.cu,bf16.cu,image.cu,transformer.cu,loss.cu
    [ "$only" = psgd ] && cover=psgd.cu
fi
if [ -z "${EMU_REQUIRE+x}" ]; then
    case ",$only," in *,psgd,*) req=cublas,tf32,params ;; *,adamw,*) req=params ;; esac
    case ",$only," in *,conv,*) req+=,cudnn ;; esac
    case ",$only," in *,linear,*) req+=,lt,gemm ;; esac
    case ",$only," in *,attention,*) req+=,gemm,batched ;; esac
fi
echo "# kernel_emu: emulated $files (${replaced} CPU backend symbols replaced); sections $only"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} EMU_COVER=$cover EMU_REQUIRE=$req "$out/test_gpu_ops_emu" --only "$only"
rc=$?
[ "${selftest_failed:-0}" = 1 ] && rc=1
exit $rc
