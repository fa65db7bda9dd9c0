// emu_cublas.cpp: column-major reference versions of the cuBLAS routines the emulated files call
// (cuda_emu.h), written from the BLAS definitions: they validate the arguments as cuBLAS documents
// (CUBLAS_STATUS_INVALID_VALUE), check that every operand lies in device memory for its whole
// extent (leading dimensions, batch strides: a wrong ld reads past the buffer) and that the output
// overlaps no input, read only what cuBLAS may read (trsm: only the triangle named by uplo; beta = 0:
// C is not read), and check the handle's math mode at every call. nn_cuda_set_precision is emulated
// and sets the mode as memory.cu does (CUBLAS_TF32_TENSOR_OP_MATH in tf32 / bf16 mode; the handle
// starts in TF32 mode). The products are exact: op(A) and op(B) are materialised in double (after
// the operand rounding below) and multiplied by the host BLAS's DGEMM, so only the mapping of the
// caller (transposes, sizes, leading dimensions, strides, alpha / beta) decides the result.
// Operand rounding: in CUBLAS_TF32_TENSOR_OP_MATH mode (cuBLAS: "allows TF32 tensor cores", not
// restricted to GEMMs) fp32 operands are rounded to TF32 (10 mantissa bits, nearest even), as are
// fp32 operands of cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32 (or COMPUTE_32F in TF32 mode);
// bf16 operands (CUDA_R_16BF) are exact, products accumulate in double, C is fp32. So a product that
// should be fp32 but ran in TF32 shows up in the results too.
// psgd.cu's contract is checked through the counters: only GEMMs (Sgemm, GemmEx, batched) may run
// in TF32 mode, and only while the precision is tf32 / bf16 (the "cublas" report requirement).
#include <vector>

#include "cuda_emu.h"

#include "common.h"
#include "nn_cuda.h"

bool emu_is_device_range(const void *p, size_t bytes);
extern "C" void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *A, int lda,
                            const double *B, int ldb, double beta, double *C, int ldc);

struct EmuCublas {
    cublasMath_t mode;
};
static EmuCublas handle = {CUBLAS_TF32_TENSOR_OP_MATH}; // as memory.cu sets it in tf32 / bf16 mode
static long n_calls = 0, n_bad_mode = 0, n_tf32_gemms = 0, n_gemms = 0, n_bf16_gemms = 0, n_batched = 0;
static int precision = NN_PREC_FP32;

cublasHandle_t emu_cublas_handle(void) { return &handle; }

// nn.h: only the matrix products (nn_gemm, psgd_dense_update, linear, attention, im2col) may use
// TF32, and only in the tf32 and bf16 modes.
static void count_call(cublasHandle_t h, bool gemm) {
    n_calls++;
    bool tf32 = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    if ((h->mode != CUBLAS_DEFAULT_MATH && !tf32) || (tf32 && (!gemm || precision == NN_PREC_FP32))) n_bad_mode++;
    if (tf32 && gemm) n_tf32_gemms++;
}

// The precision switch, as memory.cu: the handle's math mode follows it (the self-check stub's
// versions are weakened by run.sh so that these win).
extern "C" void nn_cuda_set_precision(int prec) {
    if (prec < NN_PREC_FP32 || prec > NN_PREC_BF16) lola_die("nn_cuda_set_precision: bad value %d", prec);
    precision = prec;
    handle.mode = prec != NN_PREC_FP32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH;
}
extern "C" int nn_cuda_precision(void) { return precision; }
extern "C" void nn_cuda_set_tf32(int on) { nn_cuda_set_precision(on ? NN_PREC_TF32 : NN_PREC_FP32); }
extern "C" int nn_cuda_tf32(void) { return precision != NN_PREC_FP32; }
static int mx1(int a) { return a > 1 ? a : 1; }

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode) {
    *mode = h->mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

static float tf32(float v) { return emu_round_mantissa(v, 10); }

static size_t type_size(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_16F ? 2 : t == CUDA_R_64F ? 8 : 4; }
static float load(const void *p, cudaDataType_t t, size_t i) {
    return t == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}
// Elements spanned by a column-major (rows x cols, ld) matrix.
static size_t span(int rows, int cols, long long ld) { return rows && cols ? (size_t)(cols - 1) * ld + rows : 0; }

// C (m x n, ldc, fp32, column-major) = alpha op(A) op(B) + beta Cin, with A, B of type at / bt;
// operands rounded to `bits` mantissa bits when bits < 23. Cin may be C (beta = 0: not read).
void emu_gemm_ref(bool ta, bool tb, int m, int n, int k, double alpha, const void *A, cudaDataType_t at, long long lda,
                  const void *B, cudaDataType_t bt, long long ldb, double beta, const float *Cin, long long ldcin,
                  float *C, long long ldc, int bits) {
    if (!m || !n) return;
    std::vector<double> a((size_t)m * (k ? k : 1)), b((size_t)(k ? k : 1) * n), c((size_t)m * n, 0.0);
    for (int i = 0; i < m; i++)
        for (int l = 0; l < k; l++) {
            float v = ta ? load(A, at, l + (size_t)i * lda) : load(A, at, i + (size_t)l * lda);
            a[(size_t)i * k + l] = bits < 23 ? emu_round_mantissa(v, bits) : v;
        }
    for (int l = 0; l < k; l++)
        for (int j = 0; j < n; j++) {
            float v = tb ? load(B, bt, j + (size_t)l * ldb) : load(B, bt, l + (size_t)j * ldb);
            b[(size_t)l * n + j] = bits < 23 ? emu_round_mantissa(v, bits) : v;
        }
    if (k) cblas_dgemm(101 /* row-major */, 111, 111, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, c.data(), n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double r = alpha * c[(size_t)i * n + j];
            if (beta != 0.0) r += beta * (double)Cin[i + (size_t)j * ldcin];
            C[i + (size_t)j * ldc] = (float)r;
        }
}

// The checks shared by the GEMMs: sizes and leading dimensions as cuBLAS documents them (->
// INVALID_VALUE), then operands inside device memory for their extents (batch strides included)
// and the output overlapping no input (API misuse, reported).
static cublasStatus_t gemm_checks(const char *fn, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const void *A, size_t as, int lda, long long sA, const void *B, size_t bs, int ldb,
                                  long long sB, const void *C, int ldc, long long sC, int batch) {
    if (m < 0 || n < 0 || k < 0 || batch < 0 || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T) || lda < mx1(ta == CUBLAS_OP_N ? m : k) ||
        ldb < mx1(tb == CUBLAS_OP_N ? k : n) || ldc < mx1(m)) {
        emu_api_error("%s: m %d n %d k %d, lda %d ldb %d ldc %d (transa %d transb %d): invalid sizes or leading "
                      "dimensions", fn, m, n, k, lda, ldb, ldc, ta, tb);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!m || !n || !batch) return CUBLAS_STATUS_SUCCESS;
    int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
    int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
    size_t ea = k ? span(ar, ac, lda) + (size_t)(batch - 1) * sA : 0;
    size_t eb = k ? span(br, bc, ldb) + (size_t)(batch - 1) * sB : 0;
    size_t ec = span(m, n, ldc) + (size_t)(batch - 1) * sC;
    if ((ea && !emu_is_device_range(A, ea * as)) || (eb && !emu_is_device_range(B, eb * bs)) ||
        !emu_is_device_range(C, ec * 4)) {
        emu_api_error("%s: m %d n %d k %d lda %d ldb %d ldc %d, strides %lld %lld %lld, %d batches: an operand "
                      "(A %p: %zu elements, B %p: %zu, C %p: %zu) is not inside one device buffer",
                      fn, m, n, k, lda, ldb, ldc, sA, sB, sC, batch, A, ea, B, eb, C, ec);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (emu_overlap(C, ec * 4, A, ea * as) || emu_overlap(C, ec * 4, B, eb * bs)) {
        emu_api_error("%s: the output C overlaps an input", fn);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    // batches of C: one after the other, or interleaved within the columns (attention's heads)
    bool apart = sC >= (long long)span(m, n, ldc) || (sC >= m && (long long)(batch - 1) * sC + m <= ldc);
    if (batch > 1 && !apart) {
        emu_api_error("%s: the %d batches of C overlap (m %d n %d ldc %d strideC %lld)", fn, batch, m, n, ldc, sC);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sA,
                                         const float *B, int ldb, long long sB, const float *beta, float *C, int ldc,
                                         long long sC, int batch) {
    count_call(h, true);
    n_gemms++;
    n_batched += batch > 1;
    cublasStatus_t s = gemm_checks(batch > 1 ? "cublasSgemmStridedBatched" : "cublasSgemm", ta, tb, m, n, k, A, 4, lda,
                                   sA, B, 4, ldb, sB, C, ldc, sC, batch);
    if (s != CUBLAS_STATUS_SUCCESS || !m || !n) return s;
    int bits = h->mode == CUBLAS_TF32_TENSOR_OP_MATH ? 10 : 23;
    for (int q = 0; q < batch; q++)
        emu_gemm_ref(ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, *alpha, A + q * sA, CUDA_R_32F, lda, B + q * sB,
                     CUDA_R_32F, ldb, *beta, C + q * sC, ldc, C + q * sC, ldc, bits);
    return CUBLAS_STATUS_SUCCESS;
}

// cublasGemmEx / cublasGemmStridedBatchedEx with fp32 scaling factors, A and B of one type (fp32 or
// bf16), C fp32, compute type 32F (TF32 per the handle's mode for fp32 operands), 32F_PEDANTIC
// (exact) or 32F_FAST_TF32 (TF32 for fp32 operands).
static cublasStatus_t gemm_ex(const char *fn, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                              int n, int k, const void *alpha, const void *A, cudaDataType_t at, int lda, long long sA,
                              const void *B, cudaDataType_t bt, int ldb, long long sB, const void *beta, void *C,
                              cudaDataType_t ct, int ldc, long long sC, int batch, cublasComputeType_t comp) {
    count_call(h, true);
    n_gemms++;
    n_batched += batch > 1;
    if (at != bt || (at != CUDA_R_32F && at != CUDA_R_16BF) || ct != CUDA_R_32F ||
        (comp != CUBLAS_COMPUTE_32F && comp != CUBLAS_COMPUTE_32F_PEDANTIC && comp != CUBLAS_COMPUTE_32F_FAST_TF32)) {
        emu_api_error("%s: A type %d, B type %d, C type %d, compute type %d: not a combination the backend uses "
                      "(fp32 or bf16 A/B, fp32 C, COMPUTE_32F*)", fn, at, bt, ct, comp);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (at == CUDA_R_16BF && comp == CUBLAS_COMPUTE_32F_FAST_TF32) {
        emu_api_error("%s: bf16 operands with CUBLAS_COMPUTE_32F_FAST_TF32", fn);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (emu_is_device_range(alpha, 4) || emu_is_device_range(beta, 4)) {
        emu_api_error("%s: alpha / beta in device memory while the pointer mode is host", fn);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    size_t es = type_size(at);
    cublasStatus_t s = gemm_checks(fn, ta, tb, m, n, k, A, es, lda, sA, B, es, ldb, sB, C, ldc, sC, batch);
    if (s != CUBLAS_STATUS_SUCCESS || !m || !n) return s;
    int bits = 23;
    if (at == CUDA_R_32F && (comp == CUBLAS_COMPUTE_32F_FAST_TF32 ||
                             (comp == CUBLAS_COMPUTE_32F && h->mode == CUBLAS_TF32_TENSOR_OP_MATH)))
        bits = 10;
    if (at == CUDA_R_16BF) n_bf16_gemms++;
    float a = *(const float *)alpha, b = *(const float *)beta;
    for (int q = 0; q < batch; q++)
        emu_gemm_ref(ta == CUBLAS_OP_T, tb == CUBLAS_OP_T, m, n, k, a, (const char *)A + q * sA * es, at, lda,
                     (const char *)B + q * sB * es, bt, ldb, b, (float *)C + q * sC, ldc, (float *)C + q * sC, ldc,
                     bits);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t ct, cublasGemmAlgo_t) {
    return gemm_ex("cublasGemmEx", h, ta, tb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0, beta, C, Ctype, ldc,
                   0, 1, ct);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t ct, cublasGemmAlgo_t) {
    return gemm_ex("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k, alpha, A, Atype, lda, sA, B, Btype, ldb, sB, beta,
                   C, Ctype, ldc, sC, batch, ct);
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
    if (!emu_is_device_range(A, span(ka, ka, lda) * 4) || !emu_is_device_range(B, span(m, n, ldb) * 4)) {
        emu_api_error("cublasStrsm: m %d n %d lda %d ldb %d: A %p or B %p not inside one device buffer", m, n, lda,
                      ldb, (const void *)A, (void *)B);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    bool round = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    // T = op(A) as a dense matrix (r, c), built from the allowed triangle only
    std::vector<double> T((size_t)ka * ka, 0.0);
    for (int r = 0; r < ka; r++)
        for (int c = 0; c < ka; c++) {
            int i = trans == CUBLAS_OP_N ? r : c, j = trans == CUBLAS_OP_N ? c : r; // A(i, j)
            float v = 0.0f;
            if (i == j) v = diag == CUBLAS_DIAG_UNIT ? 1.0f : A[i + (size_t)j * lda];
            else if (uplo == CUBLAS_FILL_MODE_LOWER ? i > j : i < j) v = A[i + (size_t)j * lda];
            T[(size_t)r * ka + c] = round ? tf32(v) : v;
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

// y = alpha op(A) x + beta y, A (m x n); operands rounded to TF32 in TF32 mode.
cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t trans, int m, int n, const float *alpha, const float *A,
                           int lda, const float *x, int incx, const float *beta, float *y, int incy) {
    count_call(h, false);
    if (m < 0 || n < 0 || lda < mx1(m) || incx == 0 || incy == 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (incx != 1 || incy != 1) lola_die("emu: cublasSgemv with increments != 1 is not emulated");
    int ny = trans == CUBLAS_OP_N ? m : n, nx = trans == CUBLAS_OP_N ? n : m;
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    if (!emu_is_device_range(A, span(m, n, lda) * 4) || !emu_is_device_range(x, (size_t)nx * 4) ||
        !emu_is_device_range(y, (size_t)ny * 4) || emu_overlap(y, (size_t)ny * 4, A, span(m, n, lda) * 4) ||
        emu_overlap(y, (size_t)ny * 4, x, (size_t)nx * 4)) {
        emu_api_error("cublasSgemv: m %d n %d lda %d: A %p, x %p or y %p not inside one device buffer, or y overlaps "
                      "an input", m, n, lda, (const void *)A, (const void *)x, (void *)y);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    bool round = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    std::vector<float> out(ny);
    for (int i = 0; i < ny; i++) {
        double s = 0.0;
        for (int j = 0; j < nx; j++) {
            float a = trans == CUBLAS_OP_N ? A[i + (size_t)j * lda] : A[j + (size_t)i * lda], v = x[j];
            if (round) a = tf32(a), v = tf32(v);
            s += (double)a * v;
        }
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
void emu_cublas_gemm_stats(long *gemms, long *bf16_gemms, long *batched) {
    *gemms = n_gemms;
    *bf16_gemms = n_bf16_gemms;
    *batched = n_batched;
}
