// emu_cublas.cpp: column-major reference versions of the cuBLAS routines the emulated files call
// (cuda_emu.h), written from the BLAS definitions: they validate the arguments as cuBLAS documents
// (CUBLAS_STATUS_INVALID_VALUE), read only what cuBLAS may read (trsm: only the triangle named by
// uplo), and check the handle's math mode at every call. nn_cuda_set_precision is emulated and sets
// the mode as memory.cu does (CUBLAS_TF32_TENSOR_OP_MATH in tf32 / bf16 mode); only cublasSgemm may
// run in TF32 mode, and only while the precision is tf32 / bf16 (nn.h: nn_gemm); the handle starts
// in TF32 mode. cublasSgemm in TF32 mode rounds its operands to TF32 (10 mantissa bits, nearest
// even), so the checks see TF32 errors where TF32 runs. Operands must be device memory.
#include <vector>

#include "cuda_emu.h"

#include "common.h"
#include "nn_cuda.h"

struct EmuCublas {
    cublasMath_t mode;
};
static EmuCublas handle = {CUBLAS_TF32_TENSOR_OP_MATH}; // as memory.cu sets it in tf32 / bf16 mode
static long n_calls = 0, n_bad_mode = 0, n_tf32_gemms = 0;
static int precision = NN_PREC_FP32;

cublasHandle_t emu_cublas_handle(void) { return &handle; }

// nn.h: only the matrix products (cublasSgemm: nn_gemm, psgd_dense_update) may use TF32, and only in
// the tf32 and bf16 modes.
static void count_call(cublasHandle_t h, bool gemm) {
    n_calls++;
    bool tf32 = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    if ((h->mode != CUBLAS_DEFAULT_MATH && !tf32) || (tf32 && (!gemm || precision == NN_PREC_FP32))) n_bad_mode++;
    if (tf32 && gemm) n_tf32_gemms++;
}

// The precision switch, as memory.cu: the handle's math mode follows it (the self-check stub's
// versions are weakened by run.sh so that these win).
extern "C" void nn_cuda_set_precision(int prec) {
    precision = prec;
    handle.mode = prec != NN_PREC_FP32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}
extern "C" int nn_cuda_precision(void) { return precision; }
static int mx1(int a) { return a > 1 ? a : 1; }

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode) {
    *mode = h->mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

// v with 10 stored mantissa bits (TF32), round to nearest even: the operands of a TF32 tensor-core
// product (finite values).
static float tf32(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&v, &u, 4);
    return v;
}

// C (m x n) = alpha op(A) op(B) + beta C; beta = 0: C is not read. In TF32 mode the operands are
// rounded to TF32 first, as the tensor cores do, so that a product that should be fp32 but ran in
// TF32 shows up in the results too.
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    count_call(h, true);
    if (m < 0 || n < 0 || k < 0 || lda < mx1(ta == CUBLAS_OP_N ? m : k) || ldb < mx1(tb == CUBLAS_OP_N ? k : n) ||
        ldc < mx1(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    emu_check_device_ptr(A, "cublasSgemm", 7), emu_check_device_ptr(B, "cublasSgemm", 9);
    emu_check_device_ptr(C, "cublasSgemm", 12);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0.0;
            for (int l = 0; l < k; l++) {
                float a = ta == CUBLAS_OP_N ? A[i + (size_t)l * lda] : A[l + (size_t)i * lda];
                float b = tb == CUBLAS_OP_N ? B[l + (size_t)j * ldb] : B[j + (size_t)l * ldb];
                if (h->mode == CUBLAS_TF32_TENSOR_OP_MATH) a = tf32(a), b = tf32(b);
                s += (double)a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = (float)(*alpha * s + (*beta != 0.0f ? (double)*beta * *c : 0.0));
        }
    return CUBLAS_STATUS_SUCCESS;
}

// op(A) X = alpha B (left) or X op(A) = alpha B (right), B (m x n) overwritten by X. Only the
// triangle of A named by uplo is read (the diagonal too unless diag is unit).
cublasStatus_t cublasStrsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float *alpha, const float *A, int lda, float *B,
                           int ldb) {
    count_call(h, false);
    int ka = side == CUBLAS_SIDE_LEFT ? m : n;
    if (m < 0 || n < 0 || lda < mx1(ka) || ldb < mx1(m)) return CUBLAS_STATUS_INVALID_VALUE;
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    emu_check_device_ptr(A, "cublasStrsm", 8), emu_check_device_ptr(B, "cublasStrsm", 10);
    // T = op(A) as a dense matrix (r, c), built from the allowed triangle only
    std::vector<double> T((size_t)ka * ka, 0.0);
    for (int r = 0; r < ka; r++)
        for (int c = 0; c < ka; c++) {
            int i = trans == CUBLAS_OP_N ? r : c, j = trans == CUBLAS_OP_N ? c : r; // A(i, j)
            if (i == j) T[(size_t)r * ka + c] = diag == CUBLAS_DIAG_UNIT ? 1.0 : A[i + (size_t)j * lda];
            else if (uplo == CUBLAS_FILL_MODE_LOWER ? i > j : i < j) T[(size_t)r * ka + c] = A[i + (size_t)j * lda];
        }
    bool lower = (uplo == CUBLAS_FILL_MODE_LOWER) == (trans == CUBLAS_OP_N); // T is lower triangular
    std::vector<double> b(ka), x(ka);
    int systems = side == CUBLAS_SIDE_LEFT ? n : m;
    for (int s = 0; s < systems; s++) {
        // left: T x = alpha B(:, s); right: x^T T = alpha B(s, :), i.e. T^T x = alpha B(s, :)^T
        for (int q = 0; q < ka; q++)
            b[q] = *alpha * (double)(side == CUBLAS_SIDE_LEFT ? B[q + (size_t)s * ldb] : B[s + (size_t)q * ldb]);
        auto M = [&](int r, int c) { return side == CUBLAS_SIDE_LEFT ? T[(size_t)r * ka + c] : T[(size_t)c * ka + r]; };
        bool fwd = side == CUBLAS_SIDE_LEFT ? lower : !lower; // the system matrix is lower: forward substitution
        for (int t = 0; t < ka; t++) {
            int r = fwd ? t : ka - 1 - t;
            double v = b[r];
            if (fwd)
                for (int c = 0; c < r; c++) v -= M(r, c) * x[c];
            else
                for (int c = r + 1; c < ka; c++) v -= M(r, c) * x[c];
            x[r] = v / M(r, r);
        }
        for (int q = 0; q < ka; q++)
            (side == CUBLAS_SIDE_LEFT ? B[q + (size_t)s * ldb] : B[s + (size_t)q * ldb]) = (float)x[q];
    }
    return CUBLAS_STATUS_SUCCESS;
}

// y = alpha op(A) x + beta y, A (m x n).
cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t trans, int m, int n, const float *alpha, const float *A,
                           int lda, const float *x, int incx, const float *beta, float *y, int incy) {
    count_call(h, false);
    if (m < 0 || n < 0 || lda < mx1(m) || incx == 0 || incy == 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (incx != 1 || incy != 1) lola_die("emu: cublasSgemv with increments != 1 is not emulated");
    emu_check_device_ptr(A, "cublasSgemv", 5), emu_check_device_ptr(x, "cublasSgemv", 7);
    emu_check_device_ptr(y, "cublasSgemv", 10);
    int ny = trans == CUBLAS_OP_N ? m : n, nx = trans == CUBLAS_OP_N ? n : m;
    std::vector<float> out(ny);
    for (int i = 0; i < ny; i++) {
        double s = 0.0;
        for (int j = 0; j < nx; j++)
            s += (double)(trans == CUBLAS_OP_N ? A[i + (size_t)j * lda] : A[j + (size_t)i * lda]) * x[j];
        out[i] = (float)(*alpha * s + (*beta != 0.0f ? (double)*beta * y[i] : 0.0));
    }
    memcpy(y, out.data(), ny * sizeof(float));
    return CUBLAS_STATUS_SUCCESS;
}

void emu_cublas_stats(long *bad_mode, long *tf32_gemms, long *calls) {
    *bad_mode = n_bad_mode;
    *tf32_gemms = n_tf32_gemms;
    *calls = n_calls;
}
