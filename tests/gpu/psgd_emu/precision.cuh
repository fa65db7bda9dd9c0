// precision.cuh (emulation): stands in for cuda/precision.cuh + cuda/cuda_common.cuh when
// tests/gpu/psgd_emu/run.sh compiles cuda/psgd.cu on the host. It declares the backend internals
// psgd.cu uses, with the same names and meanings; the device helpers below mirror those of
// cuda/cuda_common.cuh (grid-stride loop, launch sizes, warp and block sums).
#pragma once
#include "cuda_emu.h"

#include "common.h"
#include "nn.h"
#include "nn_cuda.h" // nn_cuda_precision: emulated in emu_runtime.cpp (the handle's math mode follows it)

void lcu_cuda_check(cudaError_t e, const char *file, int line, const char *call);
void lcu_cublas_check(cublasStatus_t s, const char *file, int line, const char *call);
#define CUDA_CHECK(call) lcu_cuda_check((call), __FILE__, __LINE__, #call)
#define CUBLAS_CHECK(call) lcu_cublas_check((call), __FILE__, __LINE__, #call)
#define CUDA_LAUNCH_CHECK() lcu_cuda_check(cudaGetLastError(), __FILE__, __LINE__, "kernel launch")

void lcu_ensure_init(void);
cudaStream_t lcu_stream(void);
cublasHandle_t lcu_cublas(void);
int lcu_num_sms(void);
enum { LCU_SCR_RED = 0, LCU_SCR_N = 16 };
void *lcu_scratch(int slot, size_t bytes);
double lcu_sum_partials(const double *d_partials, int n);
void lcu_note_params(const float *p, size_t n);
void lcu_note_write(const void *p, size_t n_floats);

#define LCU_THREADS 256
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

template <typename T> inline T lcu_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T> inline T lcu_block_sum(T v) {
    __shared__ T sh[32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = lcu_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    T t = lane < nw ? sh[lane] : (T)0;
    return lcu_warp_sum(t);
}

// Emulation records: lcu_note_params calls (pointer, floats) and lcu_note_write calls.
void emu_note_stats(long *params_calls, long *write_calls);
