// cuda_emu.h: host emulation of what cuda/psgd.cu uses from CUDA, the CUDA runtime and cuBLAS, so
// that its kernels AND its host code (launch configurations, cuBLAS operand mappings, scratch,
// reductions to host scalars) run on a machine without a GPU (tests/gpu/psgd_emu/run.sh):
// * a kernel launch (rewritten to emu_launch by launch_rewrite.py) runs the grid's blocks one
//   after the other on blockDim.x persistent host threads (one per CUDA thread); __syncthreads is a
//   barrier of the block, shuffles go through an exchange array between two barriers of the warp;
//   `__shared__` variables are function statics, shared by the block's threads (blocks never
//   overlap: each ends with a block barrier);
// * the cuBLAS calls (cublasSgemm, cublasStrsm, cublasSgemv) are column-major reference loops
//   written from the BLAS definitions, which validate the arguments as cuBLAS documents
//   (CUBLAS_STATUS_INVALID_VALUE) and read only what cuBLAS may read (trsm: only the triangle
//   named by uplo), and which check the handle's math mode at every call: nn_cuda_set_precision
//   is emulated and sets the mode as memory.cu does (CUBLAS_TF32_TENSOR_OP_MATH in tf32 / bf16
//   mode), and only cublasSgemm may run in TF32 mode, and only while the precision is tf32 / bf16
//   (nn.h: nn_gemm); the handle starts in TF32 mode; cublasSgemm in TF32 mode rounds its operands
//   to TF32 (10 mantissa bits, nearest even), so the checks see TF32 errors where TF32 runs;
// * the backend internals psgd.cu uses (lcu_*) are small host versions (emu_runtime.cpp).
// What it cannot show: timing, occupancy, real memory-access coalescing, the device's libm,
// races that another interleaving would expose, and cuBLAS's own numerics.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>

// ---------------------------------------------------------------------------------------------
// Language

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};
extern thread_local uint3 threadIdx, blockIdx;
extern dim3 gridDim, blockDim;

struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

// The host compiler (x86-64, no -mfma) never contracts: these are the plain operations.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
using std::fmaxf;

void emu_syncthreads();
void emu_syncwarp();
inline void __syncthreads() { emu_syncthreads(); }
// Exchange slot of every thread of the block (8 bytes: float, int, double).
uint64_t *emu_xch();
template <typename T> T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    (void)mask;
    static_assert(sizeof(T) <= 8, "shuffle of a value wider than 8 bytes");
    uint64_t *x = emu_xch();
    unsigned t = threadIdx.x, src = (t & ~31u) | ((t & 31u) ^ (unsigned)lane_mask);
    memcpy(&x[t], &v, sizeof(T));
    emu_syncwarp();
    T r;
    memcpy(&r, &x[src], sizeof(T));
    emu_syncwarp();
    return r;
}

// Runs fn() for every block of the grid on blockDim.x threads (see above).
void emu_launch_fn(dim3 grid, dim3 block, const std::function<void()> &fn);
template <typename Fn> inline void emu_launch(dim3 grid, dim3 block, size_t smem, int stream, Fn fn) {
    (void)smem, (void)stream;
    emu_launch_fn(grid, block, std::function<void()>(fn));
}

// ---------------------------------------------------------------------------------------------
// CUDA runtime

typedef int cudaError_t;
typedef int cudaStream_t;
enum { cudaSuccess = 0 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t bytes, cudaMemcpyKind, cudaStream_t) {
    memmove(d, s, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t bytes, cudaStream_t) {
    memset(d, v, bytes);
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }

// ---------------------------------------------------------------------------------------------
// cuBLAS (the subset psgd.cu calls; column-major reference implementations in emu_runtime.cpp)

typedef struct EmuCublas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_INVALID_VALUE = 7,
} cublasStatus_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_SIDE_LEFT = 0, CUBLAS_SIDE_RIGHT = 1 } cublasSideMode_t;
typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;
typedef enum { CUBLAS_DIAG_NON_UNIT = 0, CUBLAS_DIAG_UNIT = 1 } cublasDiagType_t;

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc);
cublasStatus_t cublasStrsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float *alpha, const float *A, int lda, float *B,
                           int ldb);
cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t trans, int m, int n, const float *alpha, const float *A,
                           int lda, const float *x, int incx, const float *beta, float *y, int incy);
// cuBLAS calls in a math mode nn.h does not allow, SGEMM calls in TF32 mode, all calls.
void emu_cublas_stats(long *bad_mode, long *tf32_gemms, long *calls);
