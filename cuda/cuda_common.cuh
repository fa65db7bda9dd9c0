// cuda_common.cuh: shared internals of the CUDA backend (cuda/*.cu). Not part of the op contract.
//
// * Check macros: every CUDA runtime / cuBLAS / cuDNN call goes through CUDA_CHECK, CUBLAS_CHECK
//   or CUDNN_CHECK, which end the job through lola_die (file:line, the call text and the decoded
//   error string). Kernel launches are followed by CUDA_LAUNCH_CHECK().
// * One stream (lcu_stream()) carries every kernel, copy and library call, so ops are ordered
//   without explicit synchronisation; host results (losses, norms) synchronise that stream.
// * Scratch: grow-only device buffers per slot (lcu_scratch), not reentrant, same model as the
//   CPU backend's cpu_scratch. Growing one synchronises the stream (lcu_device_free).
// * Reductions are deterministic: fixed grid for a given size, per-block partials summed on the
//   host (or by one block) in index order; no floating-point atomics anywhere.
#ifndef LOLA_CUDA_COMMON_CUH
#define LOLA_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>

#include "common.h"
#include "nn.h"
#include "nn_cuda.h"

// ---------------------------------------------------------------------------------------------
// Checks

void lcu_cuda_check(cudaError_t e, const char *file, int line, const char *call);
void lcu_cublas_check(cublasStatus_t s, const char *file, int line, const char *call);
void lcu_cudnn_check(cudnnStatus_t s, const char *file, int line, const char *call);
const char *lcu_cublas_string(cublasStatus_t s);
#define CUDA_CHECK(call) lcu_cuda_check((call), __FILE__, __LINE__, #call)
#define CUBLAS_CHECK(call) lcu_cublas_check((call), __FILE__, __LINE__, #call)
#define CUDNN_CHECK(call) lcu_cudnn_check((call), __FILE__, __LINE__, #call)
#define CUDA_LAUNCH_CHECK() lcu_cuda_check(cudaGetLastError(), __FILE__, __LINE__, "kernel launch")

// ---------------------------------------------------------------------------------------------
// Context (memory.cu)

void lcu_ensure_init(void);
cudaStream_t lcu_stream(void);
cublasHandle_t lcu_cublas(void); // math mode already set from the precision (TF32 unless fp32)
cudnnHandle_t lcu_cudnn(void);   // NULL when cuDNN could not be initialised
int lcu_num_sms(void);
int lcu_verbose(void);

enum {
    LCU_SCR_RED = 0,   // reduction partials (doubles), flags
    LCU_SCR_ONES,      // a vector of ones (bias gradients through gemv)
    LCU_SCR_CONV_WS,   // cuDNN workspace
    LCU_SCR_COL,       // im2col columns
    LCU_SCR_WFLIP,     // flipped/transposed conv weights (im2col backward data)
    LCU_SCR_CONV_W,    // 16-byte aligned copy of a conv weight / weight gradient (conv.cu, cuDNN)
    LCU_SCR_ATTN_S,    // attention scores / probabilities
    LCU_SCR_ATTN_DP,   // attention dP
    LCU_SCR_PART,      // float partial sums of chunked reductions (modulate, gated residual)
    LCU_SCR_COPY,      // staging for overlapping nn_copy
    LCU_SCR_BF16_A,    // bf16 operands (precision.cu): activations x / conv input / attention qkv
    LCU_SCR_BF16_B,    //   output gradients dout / conv output / attention dO
    LCU_SCR_BF16_W,    //   weights that are not cached
    LCU_SCR_BF16_P,    //   attention probabilities and dS; conv bf16 weight gradient
    LCU_SCR_BF16_ONES, //   a vector of bf16 ones (bias gradient of the cuBLAS fallback)
    LCU_SCR_LT_WS,     // cuBLASLt workspace (lt.cu)
    LCU_SCR_LT_BIAS,   // cuBLASLt epilogue vectors: an aligned bias copy; the bias gradient before db +=
    LCU_SCR_N
};
// Grow-only device scratch of at least `bytes` bytes (contents undefined).
void *lcu_scratch(int slot, size_t bytes);
// cudaMalloc with the backend's out-of-memory report (dies on failure), counted in
// nn_bytes_in_use / nn_bytes_peak; free with lcu_device_free(p, the same bytes).
void *lcu_device_malloc(size_t bytes, const char *what);
void lcu_device_free(void *p, size_t bytes);
// Device vector of at least n ones (float).
const float *lcu_ones(size_t n);
// Host copy of n doubles from device partials, summed in index order (synchronises the stream).
double lcu_sum_partials(const double *d_partials, int n);
void lcu_count_conv_fallback(void);

// ---------------------------------------------------------------------------------------------
// Launch helpers

#define LCU_THREADS 256
// Blocks for a grid-stride loop over n items (at least 1, at most ~32 waves of blocks).
static inline unsigned lcu_grid(size_t n, int threads = LCU_THREADS) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    size_t cap = (size_t)lcu_num_sms() * 32;
    if (b > cap) b = cap;
    if (b < 1) b = 1;
    return (unsigned)b;
}
static inline unsigned lcu_cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }

#define GRID_STRIDE(i, n)                                                                        \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                    \
         i += (size_t)gridDim.x * blockDim.x)

// ---------------------------------------------------------------------------------------------
// Warp / block reductions (every thread of the block gets the result; blockDim.x multiple of 32)

template <typename T> __device__ __forceinline__ T lcu_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float lcu_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename T> __device__ __forceinline__ T lcu_block_sum(T v) {
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = lcu_warp_sum(v);
    __syncthreads(); // protect sh from a previous call
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    T t = lane < nw ? sh[lane] : (T)0;
    return lcu_warp_sum(t);
}

#endif
