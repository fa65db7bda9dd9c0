// psgd.cu: the PSGD-Kron ops of nn.h (the AE optimizer of src/psgd.c on the device): the GEMM and
// the triangular solve through cuBLAS, the tensor-axis helpers (batched transpose, per-axis
// scale and float64 sum of squares), the elementwise steps, and heavyball's spectral-norm lower
// bound. Formulas are those of nn.h; the CPU reference is src/cpu/psgd_ops.c.
//
// * Precision (nn.h): fp32 everywhere except the matrix products of nn_gemm and
//   psgd_dense_update, which use TF32 tensor-core products in the tf32 and bf16 modes (as
//   torch.set_float32_matmul_precision("high") makes heavyball's einsums and matmuls in LoLa; never
//   bf16) and plain fp32 in the fp32 mode. memory.cu sets the shared cuBLAS handle to
//   CUBLAS_TF32_TENSOR_OP_MATH in tf32/bf16 mode, which may "accelerate single precision routines
//   using TF32 tensor cores" (cublas_api.h; not restricted to GEMMs, so cublasStrsm and cublasSgemv
//   are affected too). Every cuBLAS call here therefore runs inside a MathScope that sets the mode
//   it needs, CUBLAS_TF32_TENSOR_OP_MATH (the two products in tf32/bf16 mode) or CUBLAS_DEFAULT_MATH
//   (exact fp32, CUDA cores: everything else), and restores the
//   previous mode after. cuBLAS reads the math mode when a call is issued, so switching it between
//   calls on the one stream is safe.
// * Checked without a GPU by tests/gpu/psgd_emu/run.sh: this file's kernels and host code on a host
//   emulation (cuBLAS replaced by column-major reference loops that count calls made outside
//   CUBLAS_DEFAULT_MATH), running the `psgd` section of tests/gpu/test_gpu_ops.c.
// * Exact elementwise arithmetic: nvcc contracts a*b + c into one FMA by default, the CPU backend
//   (C11, no -march) never does. The kernels whose results must equal the CPU bit for bit use the
//   _rn intrinsics (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn), which are never contracted and
//   round exactly as the C expressions of psgd_ops.c (same operation order).
//   tanhf / log1pf (psgd_clip_update) and the double log / cos of rng_hash_normal (psgd_noise) are
//   the device's libm, within an ulp or two of glibc's, so those two ops agree with the CPU to a
//   few ulps rather than always bit for bit (the tests count the differing elements).
// * Deterministic (cuda_common.cuh): no atomics; every reduction has a shape-only grid and sums in
//   a fixed order. Scalar results (nn_max_abs, psgd_norm_lower_bound) synchronise the stream.
// * bf16 weight cache (precision.cu): every op notes its writes (lcu_note_write);
//   psgd_clip_update writes parameters and registers them (lcu_note_params), as adamw_update does.
#include <math.h>

#include "precision.cuh"
#include "rng.h"

// ---------------------------------------------------------------------------------------------
// cuBLAS calls with an explicit math mode

namespace {
// The handle's math mode set to `want` for the lifetime of the object, the previous one restored.
struct MathScope {
    cublasHandle_t h;
    cublasMath_t old;
    explicit MathScope(cublasMath_t want) : h(lcu_cublas()), old(CUBLAS_DEFAULT_MATH) {
        CUBLAS_CHECK(cublasGetMathMode(h, &old));
        if (old != want) CUBLAS_CHECK(cublasSetMathMode(h, want));
        set = old != want;
    }
    ~MathScope() {
        if (set) CUBLAS_CHECK(cublasSetMathMode(h, old));
    }
    MathScope(const MathScope &) = delete;
    MathScope &operator=(const MathScope &) = delete;

  private:
    bool set;
};
// Plain fp32 (no TF32, whatever LOLA_PRECISION set on the handle).
struct Fp32Math : MathScope {
    Fp32Math() : MathScope(CUBLAS_DEFAULT_MATH) {}
};
} // namespace

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// Row-major GEMM on column-major cuBLAS, C (M x N, ldc) = alpha op(A) op(B) + beta C.
//
// Derivation. A row-major r x c matrix X with leading dimension ld (element (i, j) at X[i ld + j])
// is, read column-major with the same ld, the c x r matrix X^T (element (j, i) at X[j + i ld]).
// So cuBLAS, given C with ldc, sees C^T (N x M), and the row-major product is the column-major
//     C^T = op(B)^T op(A)^T      (N x K times K x M).
// First cuBLAS operand, op(B)^T (N x K), from what cuBLAS sees at B:
//   tb = 0: B is stored row-major K x N, cuBLAS sees B^T (N x K) = op(B)^T   -> CUBLAS_OP_N,
//           and cuBLAS requires ldb >= N (= the row-major width);
//   tb = 1: B is stored row-major N x K (op(B) = that^T), cuBLAS sees a K x N matrix whose
//           transpose is op(B)^T                                              -> CUBLAS_OP_T,
//           ldb >= K (= the row-major width).
// Second cuBLAS operand, op(A)^T (K x M):
//   ta = 0: A stored M x K, cuBLAS sees A^T (K x M) = op(A)^T -> CUBLAS_OP_N, lda >= K;
//   ta = 1: A stored K x M, cuBLAS sees M x K = (op(A)^T)^T  -> CUBLAS_OP_T, lda >= M.
// Hence cublasSgemm(transa = tb, transb = ta, m = N, n = M, k = K, B, ldb, A, lda, C, ldc): the
// operands and the sizes swap, the flags stay (the mapping of lcu_gemm in linear.cu).
// The math of PSGD's matrix products (nn.h): TF32 products in the tf32 and bf16 modes (LoLa's
// "high" float32 matmul precision), fp32 in the fp32 mode.
static cublasMath_t matmul_math(void) {
    return nn_cuda_precision() == NN_PREC_FP32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH;
}

// math: CUBLAS_DEFAULT_MATH (fp32) or CUBLAS_TF32_TENSOR_OP_MATH.
static void gemm_math(cublasMath_t math, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
    MathScope scope(math);
    CUBLAS_CHECK(cublasSgemm(scope.h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha,
                             B, ldb, A, lda, &beta, C, ldc));
}

// C[i, j] = beta C[i, j] over the M x N block (row stride ldc); beta = 0 writes zeros (BLAS: C is
// not read, so NaN in C does not survive).
__global__ void gemm_beta_kernel(float *C, int M, int N, int ldc, float beta) {
    size_t n = (size_t)M * N;
    GRID_STRIDE(k, n) {
        size_t i = k / (size_t)N, j = k % (size_t)N;
        float *c = C + i * (size_t)ldc + j;
        *c = beta == 0.0f ? 0.0f : __fmul_rn(beta, *c);
    }
}

extern "C" void nn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                        int ldb, float beta, float *C, int ldc) {
    if (M < 0 || N < 0 || K < 0) lola_die("nn_gemm: negative size M=%d N=%d K=%d", M, N, K);
    int wa = ta ? M : K, wb = tb ? K : N; // row-major widths of A and B as stored
    if (lda < (wa > 1 ? wa : 1) || ldb < (wb > 1 ? wb : 1) || ldc < (N > 1 ? N : 1))
        lola_die("nn_gemm: leading dimension too small (ta=%d tb=%d M=%d N=%d K=%d: lda=%d needs >= %d, ldb=%d "
                 "needs >= %d, ldc=%d needs >= %d)",
                 ta, tb, M, N, K, lda, wa > 1 ? wa : 1, ldb, wb > 1 ? wb : 1, ldc, N > 1 ? N : 1);
    if (!M || !N) return;
    lcu_ensure_init();
    lcu_note_write(C, (size_t)(M - 1) * ldc + N);
    if (K == 0) { // C = beta C (nn.h), done here rather than relying on cuBLAS's k = 0 handling
        if (beta != 1.0f) {
            size_t n = (size_t)M * N;
            gemm_beta_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(C, M, N, ldc, beta);
            CUDA_LAUNCH_CHECK();
        }
        return;
    }
    gemm_math(matmul_math(), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// In-place triangular solve, Q (n x n) upper triangular row-major.
//
// Derivation. Read column-major (ld n), Q is Qc = Q^T, a lower triangle: Qc(i, j) = Q[j][i] is
// stored at Q + i + j n, and Q[j][i] != 0 only for j <= i, i.e. i >= j. CUBLAS_FILL_MODE_LOWER
// makes cuBLAS read exactly Qc's lower triangle = Q's upper triangle (Q's strict lower triangle is
// never read, as nn.h promises).
//   left != 0: X row-major n x m (ld m) := Q^{-T} X. cuBLAS sees Xc = X^T (m x n, ld m). With
//     Y = Q^{-T} X, Y^T = X^T Q^{-1} = Xc op(Qc)^{-1} with op(Qc) = Qc^T = Q: the right-side solve
//     Z op(Qc) = Xc, CUBLAS_SIDE_RIGHT, CUBLAS_OP_T, cuBLAS sizes m x n, lda n, ldb m.
//     Z (m x n column-major) is Y^T, i.e. Y row-major in place.
//   left == 0: X row-major m x n (ld n) := X Q^{-1}. cuBLAS sees Xc = X^T (n x m, ld n). With
//     Y = X Q^{-1}, Y^T = Q^{-T} X^T = op(Qc)^{-1} Xc with op(Qc) = Qc = Q^T: the left-side solve
//     op(Qc) Z = Xc, CUBLAS_SIDE_LEFT, CUBLAS_OP_N, cuBLAS sizes n x m, lda n, ldb n.
extern "C" void nn_trsm_upper(float *X, const float *Q, int n, int m, int left) {
    if (n < 0 || m < 0) lola_die("nn_trsm_upper: negative size n=%d m=%d", n, m);
    if (!n || !m) return;
    lcu_ensure_init();
    lcu_note_write(X, (size_t)n * m);
    const float one = 1.0f;
    Fp32Math fp32;
    if (left)
        CUBLAS_CHECK(cublasStrsm(fp32.h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT,
                                 m, n, &one, Q, n, X, m));
    else
        CUBLAS_CHECK(cublasStrsm(fp32.h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                                 n, m, &one, Q, n, X, n));
}

// ---------------------------------------------------------------------------------------------
// nn_axis_permute: a batched transpose. Both directions are "src (A, B, R) -> dst (B, A, R)" of
// an A x B grid of R-float fibres: to_front is (A, B) = (L, n), the inverse (A, B) = (n, L).
//
// R <= PERM_W (tiled): a block moves a tile of T x T fibres, T = PERM_W / R (>= 1), through shared
//   memory: each of the T source rows (a fixed, T fibres of consecutive b) is one contiguous run
//   of T R <= PERM_W floats, and so is each of the T destination rows (b fixed, consecutive a):
//   both the reads and the writes are coalesced, whatever R (1, 3, 9, ...). A warp moves one row.
//   The tile is stored with row stride S = T R + pad, S = R (mod 32): the store phase reads
//   fibre a, element r of column b at a S + b R + r, which is (lane + const) mod 32 for the 32
//   lanes of a warp (lane = a R + r), so it has no bank conflicts.
// R > PERM_W (rows): every fibre is a contiguous run of R floats on both sides; blockIdx.y walks
//   the fibres, blockIdx.x the chunks of one fibre (float4 when R % 4 == 0 and both are aligned).

#define PERM_W 64
#define PERM_SMEM (PERM_W * (PERM_W + 1)) // the largest T S: R = 1, T = 64, S = 65 (R >= 2: T <= 32, S <= 95)

__global__ void __launch_bounds__(256) permute_tiled_kernel(float *dst, const float *src, size_t A, size_t B, int R,
                                                            int T, int S, size_t tilesA, size_t tiles) {
    __shared__ float sm[PERM_SMEM];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int dq = 32 / R, dr = 32 % R; // lane steps of 32 in (fibre, element) coordinates
    for (size_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        size_t a0 = (t % tilesA) * (size_t)T, b0 = (t / tilesA) * (size_t)T;
        int na = (int)(A - a0 < (size_t)T ? A - a0 : (size_t)T);
        int nb = (int)(B - b0 < (size_t)T ? B - b0 : (size_t)T);
        int wl = nb * R, ws = na * R; // floats per source row / per destination row of this tile
        // load: source row a = fibres (a0 + a, b0 .. b0 + nb) = wl contiguous floats
        for (int a = warp; a < na; a += nwarps) {
            const float *s = src + ((a0 + (size_t)a) * B + b0) * (size_t)R;
            for (int c = lane; c < wl; c += 32) sm[a * S + c] = s[c];
        }
        __syncthreads();
        // store: destination row b = fibres (b0 + b, a0 .. a0 + na) = ws contiguous floats;
        // element c of it is fibre a = c / R, element r = c % R (kept incrementally)
        for (int b = warp; b < nb; b += nwarps) {
            float *d = dst + ((b0 + (size_t)b) * A + a0) * (size_t)R;
            int a = lane / R, r = lane % R;
            for (int c = lane; c < ws; c += 32) {
                d[c] = sm[a * S + b * R + r];
                a += dq, r += dr;
                if (r >= R) r -= R, a++;
            }
        }
        __syncthreads();
    }
}

__global__ void permute_rows_kernel(float *dst, const float *src, size_t A, size_t B, size_t R) {
    size_t fibres = A * B;
    for (size_t f = blockIdx.y; f < fibres; f += gridDim.y) { // f = b A + a, the destination order
        size_t b = f / A, a = f % A;
        const float *s = src + (a * B + b) * R;
        float *d = dst + f * R;
        for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < R; r += (size_t)gridDim.x * blockDim.x)
            d[r] = s[r];
    }
}
__global__ void permute_rows4_kernel(float4 *dst, const float4 *src, size_t A, size_t B, size_t R4) {
    size_t fibres = A * B;
    for (size_t f = blockIdx.y; f < fibres; f += gridDim.y) {
        size_t b = f / A, a = f % A;
        const float4 *s = src + (a * B + b) * R4;
        float4 *d = dst + f * R4;
        for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < R4; r += (size_t)gridDim.x * blockDim.x)
            d[r] = s[r];
    }
}

static void batched_transpose(float *dst, const float *src, size_t A, size_t B, size_t R) {
    if (A == 1 || B == 1) { // the same layout on both sides
        CUDA_CHECK(cudaMemcpyAsync(dst, src, A * B * R * sizeof(float), cudaMemcpyDeviceToDevice, lcu_stream()));
        return;
    }
    if (R <= PERM_W) {
        int r = (int)R, T = PERM_W / r, W = T * r;
        int S = W + (((r - W) % 32) + 32) % 32; // S = R (mod 32), W <= S < W + 32
        size_t tilesA = (A + T - 1) / T, tiles = tilesA * ((B + T - 1) / T);
        size_t cap = (size_t)lcu_num_sms() * 16;
        unsigned grid = (unsigned)(tiles < cap ? tiles : cap);
        permute_tiled_kernel<<<grid, 256, 0, lcu_stream()>>>(dst, src, A, B, r, T, S, tilesA, tiles);
        CUDA_LAUNCH_CHECK();
        return;
    }
    int vec = R % 4 == 0 && aligned16(dst) && aligned16(src);
    size_t Rv = vec ? R / 4 : R, fibres = A * B;
    unsigned bt = (unsigned)(Rv >= 256 ? 256 : (Rv + 31) / 32 * 32);
    size_t gx = (Rv + bt - 1) / bt;
    dim3 grid((unsigned)(gx < 1024 ? gx : 1024), (unsigned)(fibres < 65535 ? fibres : 65535));
    if (vec)
        permute_rows4_kernel<<<grid, bt, 0, lcu_stream()>>>((float4 *)dst, (const float4 *)src, A, B, Rv);
    else
        permute_rows_kernel<<<grid, bt, 0, lcu_stream()>>>(dst, src, A, B, R);
    CUDA_LAUNCH_CHECK();
}

extern "C" void nn_axis_permute(float *dst, const float *src, size_t L, int n, size_t R, int to_front) {
    if (n < 0) lola_die("nn_axis_permute: negative axis size n=%d", n);
    size_t total = L * (size_t)n * R;
    if (!total) return;
    if (dst < src + total && src < dst + total) lola_die("nn_axis_permute: dst overlaps src (nn.h forbids it)");
    lcu_ensure_init();
    lcu_note_write(dst, total);
    if (to_front)
        batched_transpose(dst, src, L, (size_t)n, R); // (L, n, R) -> (n, L, R)
    else
        batched_transpose(dst, src, (size_t)n, L, R); // (n, L, R) -> (L, n, R)
}

// ---------------------------------------------------------------------------------------------
// nn_axis_scale: X[l, i, r] *= d[i] or /= d[i] (IEEE, as the CPU: bit-identical).
// R >= 32: blockIdx.y walks the rows (l, i), blockIdx.x the chunks of a row (float4 when R % 4 == 0
// and X is aligned). Smaller R: one flat loop, i = (k / R) % n in 32-bit arithmetic when the
// tensor has fewer than 2^32 elements.

__device__ __forceinline__ float scale_op(float x, float s, int divide) {
    return divide ? __fdiv_rn(x, s) : __fmul_rn(x, s);
}

__global__ void axis_scale_rows_kernel(float *X, const float *d, size_t rows, int n, size_t R, int divide) {
    for (size_t row = blockIdx.y; row < rows; row += gridDim.y) {
        float s = d[row % (size_t)n], *x = X + row * R;
        for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < R; r += (size_t)gridDim.x * blockDim.x)
            x[r] = scale_op(x[r], s, divide);
    }
}
__global__ void axis_scale_rows4_kernel(float4 *X, const float *d, size_t rows, int n, size_t R4, int divide) {
    for (size_t row = blockIdx.y; row < rows; row += gridDim.y) {
        float s = d[row % (size_t)n];
        float4 *x = X + row * R4;
        for (size_t r = (size_t)blockIdx.x * blockDim.x + threadIdx.x; r < R4; r += (size_t)gridDim.x * blockDim.x) {
            float4 v = x[r];
            v.x = scale_op(v.x, s, divide), v.y = scale_op(v.y, s, divide);
            v.z = scale_op(v.z, s, divide), v.w = scale_op(v.w, s, divide);
            x[r] = v;
        }
    }
}
template <typename I>
__global__ void axis_scale_flat_kernel(float *X, const float *d, I total, I n, I R, int divide) {
    for (I k = (I)blockIdx.x * blockDim.x + threadIdx.x; k < total; k += (I)gridDim.x * blockDim.x)
        X[k] = scale_op(X[k], d[(k / R) % n], divide);
}

extern "C" void nn_axis_scale(float *X, const float *d, size_t L, int n, size_t R, int divide) {
    if (n < 0) lola_die("nn_axis_scale: negative axis size n=%d", n);
    size_t rows = L * (size_t)n, total = rows * R;
    if (!total) return;
    lcu_ensure_init();
    lcu_note_write(X, total);
    divide = divide != 0;
    if (R >= 32) {
        int vec = R % 4 == 0 && aligned16(X);
        size_t Rv = vec ? R / 4 : R, gx = (Rv + LCU_THREADS - 1) / LCU_THREADS;
        dim3 grid((unsigned)(gx < 1024 ? gx : 1024), (unsigned)(rows < 65535 ? rows : 65535));
        if (vec)
            axis_scale_rows4_kernel<<<grid, LCU_THREADS, 0, lcu_stream()>>>((float4 *)X, d, rows, n, Rv, divide);
        else
            axis_scale_rows_kernel<<<grid, LCU_THREADS, 0, lcu_stream()>>>(X, d, rows, n, R, divide);
    } else if (total < (1ull << 31)) { // 32-bit index arithmetic (k + the grid stride stays below 2^32)
        axis_scale_flat_kernel<unsigned><<<lcu_grid(total), LCU_THREADS, 0, lcu_stream()>>>(
            X, d, (unsigned)total, (unsigned)n, (unsigned)R, divide);
    } else {
        axis_scale_flat_kernel<size_t><<<lcu_grid(total), LCU_THREADS, 0, lcu_stream()>>>(X, d, total, (size_t)n, R,
                                                                                           divide);
    }
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// nn_axis_sum_squares: g[i] = sum_{l, r} X[l, i, r]^2 in float64, in a fixed order, split over P
// chunks of l (P from the shape only, so the bits never change between runs) whose float64
// partials are added in chunk order by a second kernel.
//   R >= 32: block (i, p) sums its chunk of rows, threads striding the contiguous R floats.
//   R < 32: thread (i, p) sums its chunk of rows over r; neighbouring threads read neighbouring i.

#define SUMSQ_ROWS_BLOCKS 2048    // R >= 32: aim for this many blocks (n P)
#define SUMSQ_COLS_THREADS 65536  // R < 32: aim for this many threads (n P)
#define SUMSQ_MAX_P_ROWS 64
#define SUMSQ_MAX_P_COLS 256

__global__ void sumsq_rows_kernel(double *part, float *g, const float *X, size_t L, int n, size_t R, int P,
                                  size_t chunk) {
    int i = blockIdx.x, p = blockIdx.y;
    size_t l0 = (size_t)p * chunk, l1 = l0 + chunk < L ? l0 + chunk : L;
    double acc = 0.0;
    for (size_t l = l0; l < l1; l++) {
        const float *x = X + (l * (size_t)n + i) * R;
        for (size_t r = threadIdx.x; r < R; r += blockDim.x) {
            double v = (double)x[r];
            acc += v * v;
        }
    }
    acc = lcu_block_sum(acc);
    if (threadIdx.x == 0) {
        if (P == 1) g[i] = (float)acc;
        else part[(size_t)i * P + p] = acc;
    }
}

__global__ void sumsq_cols_kernel(double *part, float *g, const float *X, size_t L, int n, size_t R, int P,
                                  size_t chunk) {
    size_t total = (size_t)n * P;
    GRID_STRIDE(t, total) {
        size_t i = t % (size_t)n, p = t / (size_t)n;
        size_t l0 = p * chunk, l1 = l0 + chunk < L ? l0 + chunk : L;
        double acc = 0.0;
        for (size_t l = l0; l < l1; l++) {
            const float *x = X + (l * (size_t)n + i) * R;
            for (size_t r = 0; r < R; r++) {
                double v = (double)x[r];
                acc += v * v;
            }
        }
        if (P == 1) g[i] = (float)acc;
        else part[p * (size_t)n + i] = acc;
    }
}

// g[i] = sum_p part[i si + p sp], p = 0 .. P-1 in order.
__global__ void sumsq_finish_kernel(float *g, const double *part, int n, int P, size_t si, size_t sp) {
    GRID_STRIDE(i, (size_t)n) {
        double s = 0.0;
        for (int p = 0; p < P; p++) s += part[i * si + (size_t)p * sp];
        g[i] = (float)s;
    }
}

extern "C" void nn_axis_sum_squares(float *g, const float *X, size_t L, int n, size_t R) {
    if (n < 0) lola_die("nn_axis_sum_squares: negative axis size n=%d", n);
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(g, (size_t)n);
    if (!L || !R) {
        CUDA_CHECK(cudaMemsetAsync(g, 0, (size_t)n * sizeof(float), lcu_stream()));
        return;
    }
    int rows = R >= 32;
    size_t aim = rows ? SUMSQ_ROWS_BLOCKS : SUMSQ_COLS_THREADS, maxp = rows ? SUMSQ_MAX_P_ROWS : SUMSQ_MAX_P_COLS;
    size_t P = (aim + (size_t)n - 1) / (size_t)n;
    if (P > maxp) P = maxp;
    if (P > L) P = L;
    if (P < 1) P = 1;
    size_t chunk = (L + P - 1) / P;
    double *part = P > 1 ? (double *)lcu_scratch(LCU_SCR_RED, (size_t)n * P * sizeof(double)) : NULL;
    if (rows) {
        dim3 grid((unsigned)n, (unsigned)P);
        sumsq_rows_kernel<<<grid, LCU_THREADS, 0, lcu_stream()>>>(part, g, X, L, n, R, (int)P, chunk);
    } else {
        sumsq_cols_kernel<<<lcu_grid((size_t)n * P), LCU_THREADS, 0, lcu_stream()>>>(part, g, X, L, n, R, (int)P,
                                                                                     chunk);
    }
    CUDA_LAUNCH_CHECK();
    if (P > 1) {
        sumsq_finish_kernel<<<lcu_grid((size_t)n), LCU_THREADS, 0, lcu_stream()>>>(
            g, part, n, (int)P, rows ? P : 1, rows ? 1 : (size_t)n);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// nn_max_abs: NaN-propagating maximum (fmaxf would drop NaN). Per-block maxima (fixed grid from
// n), combined on the host.

#define MAXABS_MAX_BLOCKS 1024

__device__ __forceinline__ float nan_max(float a, float b) { return a != a ? a : (b != b ? b : fmaxf(a, b)); }

// Block maximum (blockDim.x a multiple of 32, at most 1024); the result is valid in thread 0.
__device__ float block_nan_max(float v) {
    __shared__ float sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    if (wid == 0)
        for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__global__ void max_abs_kernel(float *part, const float *x, size_t n) {
    float m = 0.0f;
    GRID_STRIDE(i, n) m = nan_max(m, fabsf(x[i]));
    m = block_nan_max(m);
    if (threadIdx.x == 0) part[blockIdx.x] = m;
}

extern "C" float nn_max_abs(const float *x, size_t n) {
    if (!n) return 0.0f;
    lcu_ensure_init();
    size_t b = (n + LCU_THREADS - 1) / LCU_THREADS;
    unsigned g = (unsigned)(b < MAXABS_MAX_BLOCKS ? b : MAXABS_MAX_BLOCKS);
    float *part = (float *)lcu_scratch(LCU_SCR_RED, MAXABS_MAX_BLOCKS * sizeof(float));
    max_abs_kernel<<<g, LCU_THREADS, 0, lcu_stream()>>>(part, x, n);
    CUDA_LAUNCH_CHECK();
    float host[MAXABS_MAX_BLOCKS];
    CUDA_CHECK(cudaMemcpyAsync(host, part, g * sizeof(float), cudaMemcpyDeviceToHost, lcu_stream()));
    CUDA_CHECK(cudaStreamSynchronize(lcu_stream()));
    float m = 0.0f;
    for (unsigned i = 0; i < g; i++) {
        if (isnan(host[i])) return host[i];
        if (host[i] > m) m = host[i];
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// Elementwise steps. Each op is a functor with one(i) (element i) and vec(j) (elements 4j..4j+3
// through float4 loads/stores, used when every pointer is 16-byte aligned); ew_launch runs the
// float4 bulk and the scalar tail as grid-stride kernels. Arithmetic in psgd_ops.c's order with
// the _rn intrinsics (no FMA contraction): bit-identical to the CPU except where noted.

template <class F> __global__ void ew4_kernel(F f, size_t n4) {
    GRID_STRIDE(j, n4) f.vec(j);
}
template <class F> __global__ void ew1_kernel(F f, size_t start, size_t n) {
    GRID_STRIDE(k, n) f.one(start + k);
}
template <class F> static void ew_launch(const F &f, size_t n, bool vec) {
    size_t n4 = vec ? n / 4 : 0;
    if (n4) {
        ew4_kernel<F><<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>(f, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n > 4 * n4) {
        ew1_kernel<F><<<lcu_grid(n - 4 * n4), LCU_THREADS, 0, lcu_stream()>>>(f, 4 * n4, n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}
// torch.lerp(m, g, w): w < 0.5 ? m + w (g - m) : g - (g - m)(1 - w)
__device__ __forceinline__ float lerp_op(float m, float g, float w) {
    float d = __fsub_rn(g, m);
    return w < 0.5f ? __fadd_rn(m, __fmul_rn(w, d)) : __fsub_rn(g, __fmul_rn(d, __fsub_rn(1.0f, w)));
}
struct MomentumOp {
    float *m;
    const float *g;
    float w;
    __device__ void one(size_t i) const { m[i] = lerp_op(m[i], g[i], w); }
    __device__ void vec(size_t j) const {
        float4 a = ((float4 *)m)[j], b = ((const float4 *)g)[j];
        a.x = lerp_op(a.x, b.x, w), a.y = lerp_op(a.y, b.y, w), a.z = lerp_op(a.z, b.z, w), a.w = lerp_op(a.w, b.w, w);
        ((float4 *)m)[j] = a;
    }
};

extern "C" void psgd_momentum(float *m, const float *g, size_t n, float w) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(m, n);
    ew_launch(MomentumOp{m, g, w}, n, aligned16(m) && aligned16(g));
}

// a = u + z1 eps (psgd_ops.c's order), b = z2; z from rng_hash_normal (rng.h, double Box-Muller).
struct NoiseOp {
    float *a, *b;
    const float *u;
    float eps;
    uint64_t sa, sb;
    __device__ void one(size_t i) const {
        a[i] = __fadd_rn(u[i], __fmul_rn(rng_hash_normal(sa, (uint64_t)i), eps));
        b[i] = rng_hash_normal(sb, (uint64_t)i);
    }
    __device__ void vec(size_t j) const {
        size_t i = 4 * j;
        float4 x = ((const float4 *)u)[j], y;
        x.x = __fadd_rn(x.x, __fmul_rn(rng_hash_normal(sa, (uint64_t)i), eps));
        x.y = __fadd_rn(x.y, __fmul_rn(rng_hash_normal(sa, (uint64_t)i + 1), eps));
        x.z = __fadd_rn(x.z, __fmul_rn(rng_hash_normal(sa, (uint64_t)i + 2), eps));
        x.w = __fadd_rn(x.w, __fmul_rn(rng_hash_normal(sa, (uint64_t)i + 3), eps));
        y.x = rng_hash_normal(sb, (uint64_t)i), y.y = rng_hash_normal(sb, (uint64_t)i + 1);
        y.z = rng_hash_normal(sb, (uint64_t)i + 2), y.w = rng_hash_normal(sb, (uint64_t)i + 3);
        ((float4 *)a)[j] = x;
        ((float4 *)b)[j] = y;
    }
};

extern "C" void psgd_noise(float *a, float *b, const float *u, size_t n, float eps, uint64_t seed_a,
                           uint64_t seed_b) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(a, n);
    lcu_note_write(b, n);
    ew_launch(NoiseOp{a, b, u, eps, seed_a, seed_b}, n, aligned16(a) && aligned16(b) && aligned16(u));
}

// heavyball trust_region_clip_ (lerp 0.9, scale 1.5) then update_param_ (p decay + x (-lr)), in
// psgd_ops.c's order: v = x / 1.5, t = tanh v, y = copysign(log1p|v|, t) (1 - 0.9) + t 0.9,
// y = clamp(y 1.5, -2, 2) (NaN passes through the clamp), x = y, p = p decay + y (-lr).
__device__ __forceinline__ float clip_op(float x) {
    const float lerp = 0.9f, scale = 1.5f, one_m_lerp = 1.0f - 0.9f; // 1 - 0.9 in float, as the CPU
    float v = __fdiv_rn(x, scale), t = tanhf(v);
    float y = __fadd_rn(__fmul_rn(copysignf(log1pf(fabsf(v)), t), one_m_lerp), __fmul_rn(t, lerp));
    y = __fmul_rn(y, scale);
    return y < -2.0f ? -2.0f : y > 2.0f ? 2.0f : y;
}
struct ClipUpdateOp {
    float *p, *x;
    float decay, nlr;
    __device__ float upd(float p0, float y) const { return __fadd_rn(__fmul_rn(p0, decay), __fmul_rn(y, nlr)); }
    __device__ void one(size_t i) const {
        float y = clip_op(x[i]);
        x[i] = y;
        p[i] = upd(p[i], y);
    }
    __device__ void vec(size_t j) const {
        float4 y = ((float4 *)x)[j], q = ((float4 *)p)[j];
        y.x = clip_op(y.x), y.y = clip_op(y.y), y.z = clip_op(y.z), y.w = clip_op(y.w);
        q.x = upd(q.x, y.x), q.y = upd(q.y, y.y), q.z = upd(q.z, y.z), q.w = upd(q.w, y.w);
        ((float4 *)x)[j] = y;
        ((float4 *)p)[j] = q;
    }
};

extern "C" void psgd_clip_update(float *p, float *x, size_t n, float decay, float lr) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(x, n);
    lcu_note_params(p, n); // p is a parameter range; it changes now (precision.cu), as in adamw_update
    ew_launch(ClipUpdateOp{p, x, decay, -lr}, n, aligned16(p) && aligned16(x));
}

// (t1, t2) <- ((t1 - t2) plr, t1 + t2)
struct PrecondTermsOp {
    float *t1, *t2;
    float plr;
    __device__ void pair(float &x, float &y) const {
        float a = x, b = y;
        x = __fmul_rn(__fsub_rn(a, b), plr);
        y = __fadd_rn(a, b);
    }
    __device__ void one(size_t i) const { pair(t1[i], t2[i]); }
    __device__ void vec(size_t j) const {
        float4 a = ((float4 *)t1)[j], b = ((float4 *)t2)[j];
        pair(a.x, b.x), pair(a.y, b.y), pair(a.z, b.z), pair(a.w, b.w);
        ((float4 *)t1)[j] = a;
        ((float4 *)t2)[j] = b;
    }
};

extern "C" void psgd_precond_terms(float *t1, float *t2, size_t n, float plr) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(t1, n);
    lcu_note_write(t2, n);
    ew_launch(PrecondTermsOp{t1, t2, plr}, n, aligned16(t1) && aligned16(t2));
}

// q <- q - t1 (q / den)
struct DiagUpdateOp {
    float *q;
    const float *t1;
    float den;
    __device__ float f(float a, float t) const { return __fsub_rn(a, __fmul_rn(t, __fdiv_rn(a, den))); }
    __device__ void one(size_t i) const { q[i] = f(q[i], t1[i]); }
    __device__ void vec(size_t j) const {
        float4 a = ((float4 *)q)[j], t = ((const float4 *)t1)[j];
        a.x = f(a.x, t.x), a.y = f(a.y, t.y), a.z = f(a.z, t.z), a.w = f(a.w, t.w);
        ((float4 *)q)[j] = a;
    }
};

extern "C" void psgd_diag_update(float *q, const float *t1, size_t n, float den) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(q, n);
    ew_launch(DiagUpdateOp{q, t1, den}, n, aligned16(q) && aligned16(t1));
}

// out = x^2 (out may alias x: each element is read before the same thread writes it)
struct SquareOp {
    float *out;
    const float *x;
    __device__ void one(size_t i) const {
        float v = x[i];
        out[i] = __fmul_rn(v, v);
    }
    __device__ void vec(size_t j) const {
        float4 v = ((const float4 *)x)[j];
        v.x = __fmul_rn(v.x, v.x), v.y = __fmul_rn(v.y, v.y), v.z = __fmul_rn(v.z, v.z), v.w = __fmul_rn(v.w, v.w);
        ((float4 *)out)[j] = v;
    }
};

extern "C" void psgd_square(float *out, const float *x, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(out, n);
    ew_launch(SquareOp{out, x}, n, aligned16(out) && aligned16(x));
}

// x /= s (IEEE division, as the CPU)
struct DivScalarOp {
    float *x;
    float s;
    __device__ void one(size_t i) const { x[i] = __fdiv_rn(x[i], s); }
    __device__ void vec(size_t j) const {
        float4 v = ((float4 *)x)[j];
        v.x = __fdiv_rn(v.x, s), v.y = __fdiv_rn(v.y, s), v.z = __fdiv_rn(v.z, s), v.w = __fdiv_rn(v.w, s);
        ((float4 *)x)[j] = v;
    }
};

// ---------------------------------------------------------------------------------------------
// psgd_dense_update: T1 <- triu(T1 / den); work = T1 Q (fp32 GEMM); Q[i, j] -= work[i, j], j >= i.

__global__ void triu_div_kernel(float *T, int n, float den) {
    size_t nn = (size_t)n * n;
    GRID_STRIDE(k, nn) {
        size_t i = k / (size_t)n, j = k % (size_t)n;
        T[k] = j < i ? 0.0f : __fdiv_rn(T[k], den);
    }
}
__global__ void sub_upper_kernel(float *Q, const float *W, int n) {
    size_t nn = (size_t)n * n;
    GRID_STRIDE(k, nn) {
        size_t i = k / (size_t)n, j = k % (size_t)n;
        if (j >= i) Q[k] = __fsub_rn(Q[k], W[k]);
    }
}

extern "C" void psgd_dense_update(float *Q, float *T1, float *work, int n, float den) {
    if (n < 0) lola_die("psgd_dense_update: negative size n=%d", n);
    if (!n) return;
    lcu_ensure_init();
    size_t nn = (size_t)n * n;
    lcu_note_write(Q, nn);
    lcu_note_write(T1, nn);
    lcu_note_write(work, nn);
    triu_div_kernel<<<lcu_grid(nn), LCU_THREADS, 0, lcu_stream()>>>(T1, n, den);
    CUDA_LAUNCH_CHECK();
    // the product of two upper triangles (heavyball's triu(...) @ q: a torch matmul, so TF32 under
    // LoLa's "high" precision, as nn_gemm)
    gemm_math(matmul_math(), 0, 0, n, n, n, 1.0f, T1, n, Q, n, 0.0f, work, n);
    sub_upper_kernel<<<lcu_grid(nn), LCU_THREADS, 0, lcu_stream()>>>(Q, work, n);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// psgd_norm_lower_bound (heavyball psgd_lb), every step on the device:
//   A /= max_abs                       (IEEE division: the CPU's bits)
//   col[j] = sum_i A[i, j]^2           (one thread per column, float, i in order, no FMA: the CPU's
//                                       bits, hence the CPU's choice of column below)
//   best = first argmax col; x = A[:, best]          (one block)
//   y = A^T x (= x^T A); y /= ||y||                  (cuBLAS SGEMV; norm in float64, one block)
//   x = A y; return ||x|| max_abs                    (cuBLAS SGEMV; norm in float64, host scalar)
// work = [col | x | y] (3 n floats, nn.h). GEMV on the row-major A: cuBLAS sees Ac = A^T
// (column-major, ld n), so A^T x = Ac x (CUBLAS_OP_N) and A y = Ac^T y (CUBLAS_OP_T).

#define LB_THREADS 1024

__global__ void col_sumsq_kernel(float *col, const float *A, int n) {
    GRID_STRIDE(j, (size_t)n) {
        float s = 0.0f;
#pragma unroll 8
        for (int i = 0; i < n; i++) { // (unrolled: several independent loads in flight per thread)
            float a = A[(size_t)i * n + j];
            s = __fadd_rn(s, __fmul_rn(a, a));
        }
        col[j] = s;
    }
}

// One block: best = the first index of the maximum of col (as the CPU's sequential scan with a
// strict >, for values without NaN), then x[i] = A[i, best].
__global__ void argmax_copy_kernel(float *x, const float *col, const float *A, int n) {
    __shared__ float sv[LB_THREADS / 32];
    __shared__ int si[LB_THREADS / 32];
    __shared__ int sbest;
    float bv = -INFINITY;
    int bi = n; // "none yet": loses every comparison below
    for (int j = threadIdx.x; j < n; j += blockDim.x) // j increasing: keeps the first maximum
        if (bi == n || col[j] > bv) bv = col[j], bi = j;
    // (value, index) pairs: the larger value wins, on equal values the smaller index
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != n && (bi == n || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sv[wid] = bv, si[wid] = bi;
    __syncthreads();
    if (wid == 0) {
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : n;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi != n && (bi == n || ov > bv || (ov == bv && oi < bi))) bv = ov, bi = oi;
        }
        if (lane == 0) sbest = bi < n ? bi : 0;
    }
    __syncthreads();
    int best = sbest;
    for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = A[(size_t)i * n + best];
}

// One block: s = sum v^2 in float64 (fixed order). normalise: v /= float(sqrt(s)); else out[0] = s.
__global__ void norm_kernel(float *v, int n, int normalise, double *out) {
    double acc = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
        double a = (double)v[j];
        acc += a * a;
    }
    acc = lcu_block_sum(acc);
    if (normalise) {
        float nv = (float)sqrt(acc);
        for (int j = threadIdx.x; j < n; j += blockDim.x) v[j] = __fdiv_rn(v[j], nv);
    } else if (threadIdx.x == 0) {
        *out = acc;
    }
}

extern "C" float psgd_norm_lower_bound(float *A, float *work, int n, float max_abs) {
    if (n <= 0) lola_die("psgd_norm_lower_bound: matrix size n=%d must be >= 1", n);
    lcu_ensure_init();
    size_t nn = (size_t)n * n;
    lcu_note_write(A, nn);
    lcu_note_write(work, 3 * (size_t)n);
    float *col = work, *x = work + n, *y = work + 2 * (size_t)n;
    ew_launch(DivScalarOp{A, max_abs}, nn, aligned16(A));
    col_sumsq_kernel<<<lcu_grid((size_t)n), LCU_THREADS, 0, lcu_stream()>>>(col, A, n);
    CUDA_LAUNCH_CHECK();
    argmax_copy_kernel<<<1, LB_THREADS, 0, lcu_stream()>>>(x, col, A, n);
    CUDA_LAUNCH_CHECK();
    const float one = 1.0f, zero = 0.0f;
    {
        Fp32Math fp32;
        CUBLAS_CHECK(cublasSgemv(fp32.h, CUBLAS_OP_N, n, n, &one, A, n, x, 1, &zero, y, 1)); // y = A^T x
    }
    norm_kernel<<<1, LB_THREADS, 0, lcu_stream()>>>(y, n, 1, NULL);
    CUDA_LAUNCH_CHECK();
    {
        Fp32Math fp32;
        CUBLAS_CHECK(cublasSgemv(fp32.h, CUBLAS_OP_T, n, n, &one, A, n, y, 1, &zero, x, 1)); // x = A y
    }
    double *s = (double *)lcu_scratch(LCU_SCR_RED, sizeof(double));
    norm_kernel<<<1, LB_THREADS, 0, lcu_stream()>>>(x, n, 0, s);
    CUDA_LAUNCH_CHECK();
    double h = lcu_sum_partials(s, 1); // synchronises the stream
    return (float)sqrt(h) * max_abs;
}
