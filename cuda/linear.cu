// linear.cu: nn.Linear (linear_forward / linear_backward), and the row-major cuBLAS GEMM helpers
// the other files use.
//
// Row-major <-> column-major: a row-major (r x c) matrix with leading dimension ld is the
// column-major (c x r) matrix with the same ld. So the row-major product C = op(A) op(B) is the
// column-major product C^T = op(B)^T op(A)^T: swap the operands and the sizes, keep the flags.
//
// Precision (LOLA_PRECISION, nn_cuda.h) and engine (LOLA_GEMM):
//   fp32 (engine auto or cublas): cublasSgemm with CUBLAS_DEFAULT_MATH, the bias added by a kernel,
//        the bias gradient a GEMV with ones: exactly the first version of this file.
//   tf32: cuBLASLt (lt.cu) with CUBLAS_COMPUTE_32F_FAST_TF32 on the fp32 operands; the bias is the
//        CUBLASLT_EPILOGUE_BIAS epilogue, the bias gradient the BGRADB epilogue of the dw GEMM.
//   bf16: x, dout (cast every call, scratch) and w (bf16 weight cache, precision.cu) as bf16,
//        cuBLASLt with CUBLAS_COMPUTE_32F (fp32 accumulation), fp32 outputs, the same epilogues;
//        the bias gradient is the fp32 sum of the bf16 dout (what autocast computes).
//   A shape cuBLASLt cannot do (or LOLA_GEMM=cublas) runs the same math through cuBLAS: SGEMM
//   (TF32 per the handle's math mode) or cublasGemmEx on the bf16 operands, bias by kernel and
//   bias gradient by GEMV / GemmEx with a vector of ones.
#include "precision.cuh"

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

// The same with A and B of type dt: CUDA_R_32F is lcu_gemm; CUDA_R_16BF is cublasGemmEx with an
// fp32 C and CUBLAS_COMPUTE_32F (bf16 products, fp32 accumulation, on tensor cores).
void lcu_gemm_dt(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B, int ldb,
                 cudaDataType_t dt, float beta, float *C, int ldc) {
    if (dt == CUDA_R_32F) {
        lcu_gemm(ta, tb, M, N, K, alpha, (const float *)A, lda, (const float *)B, ldb, beta, C, ldc);
        return;
    }
    if (M <= 0 || N <= 0) return;
    CUBLAS_CHECK(cublasGemmEx(lcu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, dt, ldb, A, dt, lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
}

void lcu_gemm_batched_dt(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, long long sA,
                         const void *B, int ldb, long long sB, cudaDataType_t dt, float beta, float *C, int ldc,
                         long long sC, int batch) {
    if (dt == CUDA_R_32F) {
        lcu_gemm_batched(ta, tb, M, N, K, alpha, (const float *)A, lda, sA, (const float *)B, ldb, sB, beta, C, ldc,
                         sC, batch);
        return;
    }
    if (M <= 0 || N <= 0 || batch <= 0) return;
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(lcu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                            N, M, K, &alpha, B, dt, ldb, sB, A, dt, lda, sA, &beta, C, CUDA_R_32F, ldc,
                                            sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out[m, n] += b[n]
__global__ void add_bias_rows_kernel(float *out, const float *b, size_t rows, int N) {
    size_t n = rows * (size_t)N;
    GRID_STRIDE(i, n) out[i] += b[i % N];
}

// db[n] += t[n]
__global__ void add_vec_kernel(float *db, const float *t, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) db[i] += t[i];
}

// How linear_* runs now: operand type, cuBLASLt or not, its compute type.
struct LinearMode {
    int bf16, lt;
    cublasComputeType_t ct;
};
static LinearMode linear_mode(void) {
    int prec = nn_cuda_precision(), impl = nn_cuda_gemm_impl();
    LinearMode m;
    m.bf16 = prec == NN_PREC_BF16;
    m.lt = impl == NN_GEMM_LT || (impl == NN_GEMM_AUTO && prec != NN_PREC_FP32);
    m.ct = prec == NN_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    return m;
}

// out (M, N) = x (M, K) @ w (N, K)^T + b (N)
extern "C" void linear_forward(float *out, const float *x, const float *w, const float *b, int M, int K, int N) {
    if (M <= 0 || N <= 0) return;
    lcu_ensure_init();
    LinearMode m = linear_mode();
    int done = 0; // the bias is in too
    if (K <= 0) {
        nn_zero(out, (size_t)M * N);
    } else {
        const void *A = x, *B = w;
        cudaDataType_t dt = CUDA_R_32F;
        if (m.bf16) {
            A = lcu_bf16_of(LCU_SCR_BF16_A, x, (size_t)M * K);
            B = lcu_bf16_weight(w, (size_t)N * K);
            dt = CUDA_R_16BF;
        }
        if (m.lt) {
            // Parameters sit at any float offset; the epilogue gets a 16-byte aligned bias (a copy
            // of N floats) so that its alignment never rules out the fast kernels.
            float *bias = (float *)b;
            if (b && (uintptr_t)b % 16) {
                bias = (float *)lcu_scratch(LCU_SCR_LT_BIAS, (size_t)N * sizeof(float));
                CUDA_CHECK(cudaMemcpyAsync(bias, b, (size_t)N * sizeof(float), cudaMemcpyDeviceToDevice, lcu_stream()));
            }
            done = lcu_lt_gemm(0, 1, M, N, K, 1.0f, A, K, B, K, dt, m.ct, 0.0f, out, N, b ? LCU_EPI_BIAS : LCU_EPI_NONE,
                               bias);
        }
        if (!done) lcu_gemm_dt(0, 1, M, N, K, 1.0f, A, K, B, K, dt, 0.0f, out, N);
    }
    if (b && !done) {
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
    LinearMode m = linear_mode();
    const void *G = dout; // dout as the GEMMs see it
    cudaDataType_t dt = CUDA_R_32F;
    if (m.bf16 && (dx || dw || db)) {
        G = lcu_bf16_of(LCU_SCR_BF16_B, dout, (size_t)M * N);
        dt = CUDA_R_16BF;
    }
    if (dx) {
        const void *W = m.bf16 ? (const void *)lcu_bf16_weight(w, (size_t)N * K) : (const void *)w;
        if (!(m.lt && lcu_lt_gemm(0, 0, M, K, N, 1.0f, G, N, W, K, dt, m.ct, 0.0f, dx, K, LCU_EPI_NONE, NULL)))
            lcu_gemm_dt(0, 0, M, K, N, 1.0f, G, N, W, K, dt, 0.0f, dx, K);
    }
    int db_done = 0;
    if (dw) {
        const void *X = m.bf16 ? (const void *)lcu_bf16_of(LCU_SCR_BF16_A, x, (size_t)M * K) : (const void *)x;
        float *t = db && m.lt ? (float *)lcu_scratch(LCU_SCR_LT_BIAS, (size_t)N * sizeof(float)) : NULL;
        int done = m.lt && lcu_lt_gemm(1, 0, N, K, M, 1.0f, G, N, X, K, dt, m.ct, 1.0f, dw, K,
                                       db ? LCU_EPI_BGRAD_A : LCU_EPI_NONE, t);
        if (!done) lcu_gemm_dt(1, 0, N, K, M, 1.0f, G, N, X, K, dt, 1.0f, dw, K);
        if (done && db) { // the epilogue wrote (=) the bias gradient into t
            add_vec_kernel<<<lcu_cdiv(N, 256), 256, 0, lcu_stream()>>>(db, t, N);
            CUDA_LAUNCH_CHECK();
            db_done = 1;
        }
    }
    if (db && !db_done) {
        // db += (dout viewed column-major as (N x M)) @ ones(M): a deterministic GEMV (fp32), or
        // in bf16 mode the same product on the bf16 dout through GemmEx (fp32 accumulation).
        float one = 1.0f;
        if (dt == CUDA_R_32F) {
            const float *ones = lcu_ones((size_t)M);
            CUBLAS_CHECK(cublasSgemv(lcu_cublas(), CUBLAS_OP_N, N, M, &one, dout, N, ones, 1, &one, db, 1));
        } else {
            // row-major db (1 x N) += ones (1 x M) @ dout (M x N)
            lcu_gemm_dt(0, 0, 1, N, M, 1.0f, lcu_bf16_ones((size_t)M), M, G, N, dt, 1.0f, db, N);
        }
    }
}
