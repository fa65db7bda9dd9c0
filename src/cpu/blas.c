// blas.c: cpu_gemm, the one GEMM entry point of the CPU backend (see cpu.h for the threading
// model). The output C is cut into one block of rows or columns per OpenMP thread; each thread
// calls single-threaded cblas_sgemm on its block, so no two threads write the same element and
// the reduction order along K is the same as for one big call.
#include <omp.h>

#include <cblas.h>

#include "cpu.h"

// Below this many multiply-adds a single call is faster than a fork/join.
#define GEMM_PAR_MIN_MACS (1 << 18)
// Block edges are multiples of this (the micro-kernel tile sizes divide it).
#define GEMM_ALIGN 16

static void gemm_block(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cpu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // C = beta * C (BLAS semantics with an empty product)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    int nt = cpu_threads();
    double macs = (double)M * N * K;
    int split_rows = M >= N; // cut the longer side of C
    int len = split_rows ? M : N;
    int parts = len / GEMM_ALIGN;
    if (parts > nt) parts = nt;
    if (nt == 1 || omp_in_parallel() || macs < GEMM_PAR_MIN_MACS || parts < 2) {
        gemm_block(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // blocks of `step` rows/columns, a multiple of GEMM_ALIGN
    int step = (len + parts - 1) / parts;
    step = (step + GEMM_ALIGN - 1) / GEMM_ALIGN * GEMM_ALIGN;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int s0 = p * step, s1 = s0 + step < len ? s0 + step : len;
        if (s0 >= s1) continue;
        if (split_rows) {
            // rows s0..s1 of op(A) and C
            const float *Ap = ta ? A + s0 : A + (size_t)s0 * lda;
            gemm_block(ta, tb, s1 - s0, N, K, alpha, Ap, lda, B, ldb, beta, C + (size_t)s0 * ldc, ldc);
        } else {
            // columns s0..s1 of op(B) and C
            const float *Bp = tb ? B + (size_t)s0 * ldb : B + s0;
            gemm_block(ta, tb, M, s1 - s0, K, alpha, A, lda, Bp, ldb, beta, C + s0, ldc);
        }
    }
}
