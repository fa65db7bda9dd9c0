// linear.c: fully connected layer out = x @ w^T + b, w (N, K) like torch.nn.Linear (nn.h).
// All three products are cpu_gemm calls; dw and db accumulate (+=), dx is written (=).
// Any of dx, dw, db may be NULL (frozen weights skip their GEMM).
#include "cpu.h"
#include "nn.h"

// out (M, N) = x (M, K) @ w (N, K)^T + b (N).
void linear_forward(float *out, const float *x, const float *w, const float *b, int M, int K, int N) {
    if (M < 1 || K < 1 || N < 1) lola_die("linear_forward: bad shape M=%d K=%d N=%d", M, K, N);
    if (b) { // preload the bias rows, then accumulate the product on top (beta = 1)
#pragma omp parallel for schedule(static) if ((size_t)M * N >= CPU_PAR_MIN)
        for (int i = 0; i < M; i++) memcpy(out + (size_t)i * N, b, (size_t)N * sizeof(float));
    }
    cpu_gemm(0, 1, M, N, K, 1.0f, x, K, w, K, b ? 1.0f : 0.0f, out, N);
}

// dx (M, K) = dout (M, N) @ w (N, K); dw (N, K) += dout^T (N, M) @ x (M, K); db (N) += column sums.
void linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int M, int K, int N) {
    if (M < 1 || K < 1 || N < 1) lola_die("linear_backward: bad shape M=%d K=%d N=%d", M, K, N);
    if (dx) cpu_gemm(0, 0, M, K, N, 1.0f, dout, N, w, K, 0.0f, dx, K);
    if (dw) cpu_gemm(1, 0, N, K, M, 1.0f, dout, N, x, K, 1.0f, dw, K);
    if (db) {
        // column sums, in blocks of 64 columns per task (rows in order: deterministic)
        enum { CB = 64 };
        int nb = (N + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((size_t)M * N >= CPU_PAR_MIN)
        for (int k = 0; k < nb; k++) {
            int j0 = k * CB, j1 = j0 + CB < N ? j0 + CB : N;
            double s[CB] = {0};
            for (int i = 0; i < M; i++) {
                const float *g = dout + (size_t)i * N;
                for (int j = j0; j < j1; j++) s[j - j0] += g[j];
            }
            for (int j = j0; j < j1; j++) db[j] += (float)s[j - j0];
        }
    }
}
