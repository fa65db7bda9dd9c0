// linear.cu: nn.Linear through cuBLAS, and the row-major GEMM helper the other files use.
//
// Row-major <-> column-major: a row-major (r x c) matrix with leading dimension ld is the
// column-major (c x r) matrix with the same ld. So the row-major product C = op(A) op(B) is the
// column-major product C^T = op(B)^T op(A)^T: swap the operands and the sizes, keep the flags.
// Precision: fp32 (CUBLAS_DEFAULT_MATH) unless the TF32 switch is on (nn_cuda.h).
#include "cuda_common.cuh"

// Row-major GEMM: C (M x N, ldc) = alpha op(A) op(B) + beta C, op(A) (M x K), op(B) (K x N).
// ta: A is stored (K x M) and transposed; likewise tb for B stored (N x K).
void lcu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    CUBLAS_CHECK(cublasSgemm(lcu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                             &alpha, B, ldb, A, lda, &beta, C, ldc));
}

// Same, batched with constant strides (elements) between the matrices of consecutive batches.
void lcu_gemm_batched(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
                      const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC,
                      int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    CUBLAS_CHECK(cublasSgemmStridedBatched(lcu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                           N, M, K, &alpha, B, ldb, sB, A, lda, sA, &beta, C, ldc, sC, batch));
}

// out[m, n] += b[n]
__global__ void add_bias_rows_kernel(float *out, const float *b, size_t rows, int N) {
    size_t n = rows * (size_t)N;
    GRID_STRIDE(i, n) out[i] += b[i % N];
}

// out (M, N) = x (M, K) @ w (N, K)^T + b (N)
extern "C" void linear_forward(float *out, const float *x, const float *w, const float *b, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    lcu_ensure_init();
    if (K <= 0) {
        nn_zero(out, (size_t)M * N);
    } else {
        lcu_gemm(0, 1, M, N, K, 1.0f, x, K, w, K, 0.0f, out, N);
    }
    if (b) {
        size_t n = (size_t)M * N;
        add_bias_rows_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, b, (size_t)M, N);
        CUDA_LAUNCH_CHECK();
    }
}

// dx (M, K) = dout (M, N) @ w (N, K); dw (N, K) += dout^T @ x; db (N) += sum_m dout[m, :].
extern "C" void linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                                int M, int K, int N) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    lcu_ensure_init();
    if (dx) lcu_gemm(0, 0, M, K, N, 1.0f, dout, N, w, K, 0.0f, dx, K);
    if (dw) lcu_gemm(1, 0, N, K, M, 1.0f, dout, N, x, K, 1.0f, dw, K);
    if (db) {
        // db += (dout viewed column-major as (N x M)) @ ones(M): a deterministic gemv.
        const float *ones = lcu_ones((size_t)M);
        float one = 1.0f;
        CUBLAS_CHECK(cublasSgemv(lcu_cublas(), CUBLAS_OP_N, N, M, &one, dout, N, ones, 1, &one, db, 1));
    }
}
