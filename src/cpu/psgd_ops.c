// psgd_ops.c: the PSGD-Kron ops of nn.h on the CPU (general GEMM, triangular solve, tensor-axis
// helpers, the PSGD elementwise steps and heavyball's spectral-norm lower bound). Formulas:
// lola-spec.md 6.3, checked against heavyball 1.4.3 (utils.py psgd_update_precond, psgd_lb,
// trust_region_clip_, _lerp32); our own code. Plain fp32; float64 where nn.h says so.
//
// Threading: the BLAS calls are cut into one block per OpenMP thread over independent rows or
// columns of the result (cpu_gemm; trsm here), so every element is computed exactly as in one
// call and the bits do not depend on the thread count. Reductions are per output element in a
// fixed order.
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>

#include "cpu.h"
#include "nn.h"
#include "rng.h"

// Below this many multiply-adds a triangular solve is not split over threads.
#define TRSM_PAR_MIN_MACS (1 << 18)
// Blocks of the trsm split are multiples of this many right-hand sides.
#define TRSM_ALIGN 16

void nn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
             int ldb, float beta, float *C, int ldc) {
    cpu_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nn_trsm_upper(float *X, const float *Q, int n, int m, int left) {
    if (n <= 0 || m <= 0) return;
    int nt = omp_in_parallel() ? 1 : cpu_threads(), parts = m / TRSM_ALIGN;
    if (parts > nt) parts = nt;
    if (parts < 2 || (double)n * n * m < TRSM_PAR_MIN_MACS) parts = 1;
    int step = ((m + parts - 1) / parts + TRSM_ALIGN - 1) / TRSM_ALIGN * TRSM_ALIGN;
    // left: the m columns of X (n x m) are independent; right: the m rows of X (m x n) are.
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        int s0 = p * step, s1 = s0 + step < m ? s0 + step : m;
        if (s0 >= s1) continue;
        if (left)
            cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, n, s1 - s0, 1.0f, Q, n,
                        X + s0, m);
        else
            cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, s1 - s0, n, 1.0f, Q, n,
                        X + (size_t)s0 * n, n);
    }
}

void nn_axis_permute(float *dst, const float *src, size_t L, int n, size_t R, int to_front) {
    size_t total = L * (size_t)n * R;
    // One (i, l) fibre of R contiguous floats per iteration, in both directions.
#pragma omp parallel for schedule(static) if (total >= CPU_PAR_MIN)
    for (int i = 0; i < n; i++)
        for (size_t l = 0; l < L; l++) {
            size_t front = ((size_t)i * L + l) * R, mid = (l * (size_t)n + i) * R;
            if (to_front)
                memcpy(dst + front, src + mid, R * sizeof(float));
            else
                memcpy(dst + mid, src + front, R * sizeof(float));
        }
}

void nn_axis_scale(float *X, const float *d, size_t L, int n, size_t R, int divide) {
    size_t rows = L * (size_t)n;
#pragma omp parallel for schedule(static) if (rows * R >= CPU_PAR_MIN)
    for (size_t li = 0; li < rows; li++) {
        float s = d[li % (size_t)n], *x = X + li * R;
        if (divide)
            for (size_t r = 0; r < R; r++) x[r] /= s;
        else
            for (size_t r = 0; r < R; r++) x[r] *= s;
    }
}

void nn_axis_sum_squares(float *g, const float *X, size_t L, int n, size_t R) {
#pragma omp parallel for schedule(static) if (L * (size_t)n * R >= CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t l = 0; l < L; l++) {
            const float *x = X + (l * (size_t)n + i) * R;
            for (size_t r = 0; r < R; r++) s += (double)x[r] * x[r];
        }
        g[i] = (float)s;
    }
}

float nn_max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (isnan(a)) return a;
        if (a > m) m = a;
    }
    return m;
}

void psgd_momentum(float *m, const float *g, size_t n, float w) {
    // torch.lerp's two forms (exact at both ends: w = 0 keeps m, w = 1 gives g).
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float a = m[i], d = g[i] - a;
        m[i] = w < 0.5f ? a + w * d : g[i] - d * (1.0f - w);
    }
}

void psgd_noise(float *a, float *b, const float *u, size_t n, float eps, uint64_t seed_a, uint64_t seed_b) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        a[i] = u[i] + rng_hash_normal(seed_a, i) * eps;
        b[i] = rng_hash_normal(seed_b, i);
    }
}

void psgd_clip_update(float *p, float *x, size_t n, float decay, float lr) {
    // heavyball trust_region_clip_(lerp = 0.9, scale = 1.5) and update_param_ (p * decay + x * -lr).
    const float lerp = 0.9f, scale = 1.5f, one_m_lerp = 1.0f - lerp, nlr = -lr;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / scale, t = tanhf(v);
        float y = copysignf(log1pf(fabsf(v)), t) * one_m_lerp + t * lerp;
        y = y * scale;
        y = y < -2.0f ? -2.0f : y > 2.0f ? 2.0f : y;
        x[i] = y;
        p[i] = p[i] * decay + y * nlr;
    }
}

void psgd_precond_terms(float *t1, float *t2, size_t n, float plr) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float x = t1[i], y = t2[i];
        t1[i] = (x - y) * plr;
        t2[i] = x + y;
    }
}

void psgd_dense_update(float *Q, float *T1, float *work, int n, float den) {
    const size_t nn_ = (size_t)n * n;
#pragma omp parallel for schedule(static) if (nn_ >= CPU_PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float *e = &T1[(size_t)i * n + j];
            *e = j < i ? 0.0f : *e / den;
        }
    // The product of two upper triangles is upper triangular: only that part of Q changes.
    cpu_gemm(0, 0, n, n, n, 1.0f, T1, n, Q, n, 0.0f, work, n);
#pragma omp parallel for schedule(static) if (nn_ >= CPU_PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) Q[(size_t)i * n + j] -= work[(size_t)i * n + j];
}

void psgd_diag_update(float *q, const float *t1, size_t n, float den) {
    for (size_t i = 0; i < n; i++) q[i] -= t1[i] * (q[i] / den);
}

void psgd_square(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = x[i] * x[i];
}

float psgd_norm_lower_bound(float *A, float *work, int n, float mx) {
    size_t nn_ = (size_t)n * n;
    for (size_t i = 0; i < nn_; i++) A[i] /= mx;
    float *col = work, *x = work + n, *y = work + 2 * (size_t)n;
    for (int j = 0; j < n; j++) col[j] = 0.0f;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) col[j] += A[(size_t)i * n + j] * A[(size_t)i * n + j];
    int best = 0; // the first maximum (torch.argmax)
    for (int j = 1; j < n; j++)
        if (col[j] > col[best]) best = j;
    for (int i = 0; i < n; i++) x[i] = A[(size_t)i * n + best];
    cblas_sgemv(CblasRowMajor, CblasTrans, n, n, 1.0f, A, n, x, 1, 0.0f, y, 1); // y = x^T A
    float ny = cblas_snrm2(n, y, 1);
    for (int j = 0; j < n; j++) y[j] /= ny;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0f, A, n, y, 1, 0.0f, x, 1); // x = A y
    return cblas_snrm2(n, x, 1) * mx;
}
