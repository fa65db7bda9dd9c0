#!/usr/bin/env bash
# tests/gpu/build.sh BUILDDIR: builds BUILDDIR/test_gpu_ops (the CUDA backend checked against the
# CPU backend) with plain nvcc + cc commands: no Makefile, no libyaml/HDF5/MPI, only CUDA, cuBLAS,
# cuDNN, a CBLAS (OpenBLAS) and OpenMP. The GPU-machine script (run.sh) uses it first and
# `make gpu-tests` as the second route. Run from anywhere; paths are relative to the repository.
#
# Environment: NVCC, CUDA_HOME, CUDA_ARCH (default sm_90a), CC (default gcc), JOBS (default nproc),
# BLAS_CFLAGS / BLAS_LIBS (default: pkg-config openblas, else a search of the usual places, else
# the headers in .deps/blas/include with the first libopenblas.so* found).
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:?usage: tests/gpu/build.sh BUILDDIR}
mkdir -p "$B/cuda" "$B/cpuref" "$B/gen"

NVCC=${NVCC:-$(command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)}
[ -x "$NVCC" ] || { echo "build.sh: nvcc not found (set NVCC or CUDA_HOME)" >&2; exit 1; }
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$NVCC")")")}
CUDA_ARCH=${CUDA_ARCH:-sm_90a}
CC=${CC:-gcc}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 4)}
CUDA_LIBDIR=$(for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME/targets/x86_64-linux/lib"; do [ -d "$d" ] && echo "$d" && break; done || true)

# CBLAS: pkg-config, else look for cblas.h and libopenblas.
if [ -z "${BLAS_LIBS:-}" ]; then
    if pkg-config --exists openblas 2>/dev/null; then
        BLAS_CFLAGS=$(pkg-config --cflags openblas)
        BLAS_LIBS=$(pkg-config --libs openblas)
    else
        inc=""
        for d in /usr/include /usr/include/openblas /usr/include/x86_64-linux-gnu /usr/include/x86_64-linux-gnu/openblas-pthread \
                 /usr/include/x86_64-linux-gnu/openblas-openmp /usr/local/include "$PWD/.deps/blas/include"; do
            if [ -f "$d/cblas.h" ] && grep -q openblas_set_num_threads "$d/cblas.h" 2>/dev/null; then inc=$d; break; fi
        done
        lib=$(ls /usr/lib/x86_64-linux-gnu/libopenblas.so /usr/lib/x86_64-linux-gnu/libopenblas.so.0 \
                 /usr/lib/x86_64-linux-gnu/openblas-*/libopenblas.so.0 /usr/lib64/libopenblas.so* /usr/local/lib/libopenblas.so* \
                 2>/dev/null | head -1 || true)
        [ -n "$inc" ] && [ -n "$lib" ] || { echo "build.sh: OpenBLAS not found (cblas.h: '${inc}', library: '${lib}'); set BLAS_CFLAGS/BLAS_LIBS" >&2; exit 1; }
        BLAS_CFLAGS="-I$inc"
        BLAS_LIBS="$lib -Wl,-rpath,$(dirname "$lib")"
    fi
fi
BLAS_CFLAGS=${BLAS_CFLAGS:-}

NVCCFLAGS="-O3 -lineinfo -std=c++17 -arch=$CUDA_ARCH -Isrc -Icuda ${NVCC_EXTRA:-}"
CFLAGS="-O3 -g -std=c11 -Wall -Wno-unused-parameter -D_GNU_SOURCE -fopenmp -DLOLA_BLAS_OPENBLAS -Isrc $BLAS_CFLAGS"
echo "build.sh: nvcc $NVCC ($("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')), arch $CUDA_ARCH, CUDA_HOME $CUDA_HOME"
echo "build.sh: cc $CC, BLAS_CFLAGS '$BLAS_CFLAGS', BLAS_LIBS '$BLAS_LIBS', $JOBS jobs"

bash tests/gpu/gen_cpu_ref.sh src/nn.h "$B/gen"

# Compile commands, one per line, run $JOBS at a time; the first failure stops the build.
cmds=$B/compile.cmds
: >"$cmds"
for f in cuda/*.cu; do
    echo "$NVCC $NVCCFLAGS -c $f -o $B/cuda/$(basename "$f" .cu).o" >>"$cmds"
done
for f in src/cpu/*.c; do
    echo "$CC $CFLAGS -include $B/gen/cpu_rename.h -c $f -o $B/cpuref/$(basename "$f" .c).o" >>"$cmds"
done
echo "$CC -O3 -g -std=c11 -D_GNU_SOURCE -Isrc -c src/common.c -o $B/common.o" >>"$cmds"
echo "$CC $CFLAGS -Icuda -Itests -I$B/gen -c tests/gpu/test_gpu_ops.c -o $B/test_gpu_ops.o" >>"$cmds"
t0=$SECONDS
if ! xargs -P "$JOBS" -I{} -d '\n' sh -c 'echo "  $1" | cut -c1-160; eval "$1" || exit 255' _ {} <"$cmds"; then
    echo "build.sh: compilation failed (commands in $cmds)" >&2
    exit 1
fi
rp=""
[ -n "$CUDA_LIBDIR" ] && rp="-L$CUDA_LIBDIR -Wl,-rpath,$CUDA_LIBDIR"
set -x
$CC -fopenmp "$B"/test_gpu_ops.o "$B"/cpuref/*.o "$B"/common.o "$B"/cuda/*.o -o "$B/test_gpu_ops" \
    $BLAS_LIBS $rp -lcudnn -lcublas -lcublasLt -lcudart -lstdc++ -lm
{ set +x; } 2>/dev/null
echo "build.sh: built $B/test_gpu_ops in $((SECONDS - t0)) s"
