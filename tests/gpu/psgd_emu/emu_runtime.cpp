// emu_runtime.cpp: the host side of the CUDA emulation of cuda/psgd.cu (see cuda_emu.h): the
// thread pool that runs kernel grids, barriers and shuffles, column-major reference versions of
// the cuBLAS routines psgd.cu calls, and host versions of the backend internals (lcu_*).
#include <barrier>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "precision.cuh"

thread_local uint3 threadIdx, blockIdx;
dim3 gridDim, blockDim;

// ---------------------------------------------------------------------------------------------
// Kernel launches

namespace {
struct Launch {
    dim3 grid, block;
    const std::function<void()> *fn;
    std::unique_ptr<std::barrier<>> blk;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<uint64_t> xch;
};
Launch *cur = nullptr;
// Never destroyed: the pool's threads wait on them until the process ends (destroying a condition
// variable that has waiters blocks in glibc, which would hang the exit).
std::mutex &mu = *new std::mutex;
std::condition_variable &cv = *new std::condition_variable, &done_cv = *new std::condition_variable;
uint64_t gen = 0;
unsigned active = 0, remaining = 0, pool_size = 0;
long n_launches = 0, n_bad_launches = 0;

void run_thread(Launch *L, unsigned tid) {
    threadIdx = {tid, 0, 0};
    for (unsigned bz = 0; bz < L->grid.z; bz++)
        for (unsigned by = 0; by < L->grid.y; by++)
            for (unsigned bx = 0; bx < L->grid.x; bx++) {
                blockIdx = {bx, by, bz};
                (*L->fn)();
                L->blk->arrive_and_wait(); // the block ends before the next one starts
            }
}

void worker(unsigned tid) {
    uint64_t seen = 0;
    for (;;) {
        Launch *L;
        {
            std::unique_lock<std::mutex> lk(mu);
            cv.wait(lk, [&] { return gen != seen; });
            seen = gen;
            if (tid >= active) continue;
            L = cur;
        }
        run_thread(L, tid);
        std::lock_guard<std::mutex> lk(mu);
        if (--remaining == 0) done_cv.notify_all();
    }
}
} // namespace

void emu_launch_fn(dim3 grid, dim3 block, const std::function<void()> &fn) {
    n_launches++;
    // CUDA's limits (compute capability 9.0): a launch outside them fails on the device.
    if (block.x < 1 || block.x > 1024 || block.y != 1 || block.z != 1 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
        grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: invalid launch grid (%u, %u, %u) block (%u, %u, %u)\n", grid.x, grid.y, grid.z, block.x,
                block.y, block.z);
        n_bad_launches++;
        return;
    }
    Launch L;
    L.grid = grid, L.block = block, L.fn = &fn;
    L.blk = std::make_unique<std::barrier<>>(block.x);
    for (unsigned w = 0; w * 32 < block.x; w++)
        L.warps.push_back(std::make_unique<std::barrier<>>(block.x - w * 32 < 32 ? block.x - w * 32 : 32));
    L.xch.assign(block.x, 0);
    gridDim = grid, blockDim = block;
    std::unique_lock<std::mutex> lk(mu);
    while (pool_size < block.x) std::thread(worker, pool_size++).detach();
    cur = &L;
    active = block.x, remaining = block.x;
    gen++;
    cv.notify_all();
    done_cv.wait(lk, [&] { return remaining == 0; });
    cur = nullptr;
}

void emu_syncthreads() { cur->blk->arrive_and_wait(); }
void emu_syncwarp() { cur->warps[threadIdx.x >> 5]->arrive_and_wait(); }
uint64_t *emu_xch() { return cur->xch.data(); }

// ---------------------------------------------------------------------------------------------
// cuBLAS reference (column-major, BLAS definitions; float64 accumulation)

struct EmuCublas {
    cublasMath_t mode;
};
static EmuCublas handle = {CUBLAS_TF32_TENSOR_OP_MATH}; // as memory.cu sets it in tf32 / bf16 mode
static long n_calls = 0, n_bad_mode = 0, n_tf32_gemms = 0;
static int precision = NN_PREC_FP32;

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
    if (incx != 1 || incy != 1) {
        fprintf(stderr, "emu: cublasSgemv with increments != 1 is not emulated\n");
        abort();
    }
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

// ---------------------------------------------------------------------------------------------
// Backend internals

void lcu_cuda_check(cudaError_t e, const char *file, int line, const char *call) {
    if (e != cudaSuccess) lola_die_at(file, line, "CUDA error %d in %s", e, call);
}
void lcu_cublas_check(cublasStatus_t s, const char *file, int line, const char *call) {
    if (s != CUBLAS_STATUS_SUCCESS) lola_die_at(file, line, "cuBLAS error %d in %s", (int)s, call);
}
void lcu_ensure_init(void) {}
cudaStream_t lcu_stream(void) { return 0; }
cublasHandle_t lcu_cublas(void) { return &handle; }
int lcu_num_sms(void) {
    const char *s = getenv("EMU_SMS");
    return s && atoi(s) > 0 ? atoi(s) : 2;
}

static void *scr[LCU_SCR_N];
static size_t scr_cap[LCU_SCR_N];
void *lcu_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= LCU_SCR_N) lola_die("lcu_scratch: bad slot %d", slot);
    if (bytes > scr_cap[slot]) {
        free(scr[slot]);
        size_t cap = (bytes + 255) & ~(size_t)255;
        scr[slot] = aligned_alloc(256, cap);
        memset(scr[slot], 0xff, cap); // NaN: reading what no kernel wrote shows up
        scr_cap[slot] = cap;
    }
    return scr[slot];
}
double lcu_sum_partials(const double *d, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += d[i];
    return s;
}

static long n_params = 0, n_writes = 0;
void lcu_note_params(const float *p, size_t n) { (void)p, (void)n, n_params++; }
void lcu_note_write(const void *p, size_t n) { (void)p, (void)n, n_writes++; }
void emu_note_stats(long *params_calls, long *write_calls) {
    *params_calls = n_params;
    *write_calls = n_writes;
}

// The emulation's own checks, printed when the test program ends (PASS / FAIL lines as test.h).
static void report(void) {
    int bad = 0;
    printf("%s psgd_emu: %ld kernel launches, %ld outside CUDA's grid/block limits\n",
           n_bad_launches ? "FAIL" : "PASS", n_launches, n_bad_launches);
    bad |= n_bad_launches != 0;
    printf("%s psgd_emu: %ld cuBLAS calls, %ld in a math mode nn.h does not allow (TF32 only for SGEMM in tf32 / "
           "bf16 mode)\n", n_bad_mode || !n_calls ? "FAIL" : "PASS", n_calls, n_bad_mode);
    bad |= n_bad_mode != 0 || !n_calls;
    printf("%s psgd_emu: %ld SGEMM calls in TF32 mode (nn_gemm / psgd_dense_update in the tf32 / bf16 checks)\n",
           n_tf32_gemms ? "PASS" : "FAIL", n_tf32_gemms);
    bad |= !n_tf32_gemms;
    printf("%s psgd_emu: psgd_clip_update registered parameter ranges %ld times, %ld noted writes\n",
           n_params && n_writes ? "PASS" : "FAIL", n_params, n_writes);
    bad |= !n_params || !n_writes;
    fflush(stdout);
    if (bad) _exit(1);
}
static int registered = (atexit(report), 0);
