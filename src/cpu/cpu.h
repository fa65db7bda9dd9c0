// cpu.h: internal helpers shared by the CPU backend (src/cpu/*.c). Not part of the op contract.
//
// Threading model (one thread pool, no oversubscription):
//   * All parallelism is OpenMP. OpenBLAS is told to use ONE thread (openblas_set_num_threads(1)
//     in cpu_ensure_init), and every GEMM goes through cpu_gemm, which cuts the output matrix
//     into one block per OpenMP thread and calls single-threaded cblas_sgemm on each block.
//     So OpenMP threads and OpenBLAS's own pthread pool never compete for cores (the pthread
//     build of OpenBLAS would otherwise spin its own threads next to OpenMP's spinning ones).
//   * The thread count is OpenMP's (OMP_NUM_THREADS honoured; see nn_init).
//
// Reentrancy: the ops use module-level, grow-only scratch buffers (cpu_scratch) and are NOT
// reentrant: call them from one host thread at a time, never from inside an OpenMP region of the
// caller (they detect omp_in_parallel() and fall back to serial BLAS, but scratch is shared).
//
// Determinism: no atomics and no dynamic reductions, so every result is bit-identical from run to
// run with the same thread count. The reductions of the elementwise ops, norms and losses (fixed
// chunks, partial sums combined in order) and the GEMM row/column splits also give the same bits
// for any thread count; conv2d's dw does not (its pixel chunks scale with the thread count, which
// regroups the float sums).
#ifndef LOLA_CPU_H
#define LOLA_CPU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common.h"

// The backend never reads floating-point exception flags. Telling GCC so (-fno-trapping-math) lets
// it if-convert float comparisons, which is what makes the exp / sigmoid / softmax / clamp loops
// vectorise (with the default -ftrapping-math every `x < c ? c : x` stays a branch). Applies to
// every src/cpu/*.c file (they all include this header first). Clang does not trap by default.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

// CPU_KERNEL marks the hot inner loops (exp, sqrt, division, hashing). The build has no -march
// flag, so these few functions are compiled three times, for AVX-512 (x86-64-v4), AVX2 (v3) and the
// SSE2 baseline, and the loader picks the best one for the machine (GCC target_clones / ifunc);
// measured 4-6x faster than the baseline on silu and dropout. Kernels are plain loops over a
// contiguous range or one block; the OpenMP drivers call them. -std=c11 keeps FP contraction off,
// so the clones round elementwise results identically (vector reductions may sum in another order).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(LOLA_NO_CLONES)
#define CPU_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), noinline))
#else
#define CPU_KERNEL
#endif

// Elementwise loops with fewer elements than this run on one thread (fork/join costs ~us).
#define CPU_PAR_MIN 32768
// Elementwise drivers hand the kernels chunks of this many elements.
#define CPU_CHUNK 16384

static inline size_t cpu_min_size(size_t a, size_t b) { return a < b ? a : b; }
// Fixed chunk of the deterministic reductions (elements); partial sums are combined in order.
#define CPU_RED_CHUNK 65536

// OpenBLAS single-threaded, OpenMP threads recorded; idempotent, cheap after the first call.
void cpu_ensure_init(void);
// OpenMP threads the ops use.
int cpu_threads(void);

// Row-major GEMM: C (M x N) = alpha * op(A) (M x K) @ op(B) (K x N) + beta * C, where
// op(A) = A (lda >= K) if !ta, else A^T with A stored (K x M) (lda >= M); same for B (ldb).
// Splits C into one block per OpenMP thread (rows or columns, whichever is longer) and runs
// single-threaded cblas_sgemm on each block. Serial when called inside a parallel region or
// when the product is small.
void cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

// Grow-only scratch buffers, one per slot, kept for the whole program and counted in
// nn_bytes_in_use. Contents are undefined on return. Not reentrant (see above).
enum { SCRATCH_COL = 0, SCRATCH_WFLIP, SCRATCH_CONVY, SCRATCH_ATTN, SCRATCH_RED, SCRATCH_N };
float *cpu_scratch(int slot, size_t n);

// Backward attention keeps dS for a group of heads in scratch: at most this many floats (but one
// head at least). Default 16 Mi floats; tests lower it to exercise several groups.
extern size_t cpu_att_scratch_floats;

// conv2d works on chunks of this many pixel columns; 0 (default) = 512 x threads. Tests set it to
// exercise every chunking path (row bands, several images per chunk) on any machine.
extern size_t cpu_conv_cols;

// Counts bytes obtained outside nn_alloc (scratch) in the nn_bytes_* statistics.
void cpu_account_bytes(ptrdiff_t delta);

// exp(x) in float, vectorisable (no libm call), relative error < 2e-7 on [-87, 88].
// x < -87.3 returns exp(-87.3) ~ 1.2e-38 (instead of a denormal or 0), x > 88.3 returns
// exp(88.3) ~ 2.2e38 (instead of inf); NaN propagates. Used by softmax and sigmoid, where the
// clamping is harmless. Range reduction x = n ln2 + r, |r| <= ln2/2, degree-6 Taylor in r.
static inline float cpu_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    // round to nearest with the 1.5*2^23 trick (vectorises on plain SSE2, unlike nearbyintf)
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f; // ln2 split into a high part exact in float ...
    r = r - n * 1.42860682030941723e-6f;  // ... and the remainder
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union {
        uint32_t u;
        float f;
    } s;
    s.u = (uint32_t)((int32_t)n + 127) << 23;
    return p * s.f;
}

static inline float cpu_sigmoidf(float x) { return 1.0f / (1.0f + cpu_expf(-x)); }

#endif
