// cuda_emu.h: host emulation of what the hand-written kernel files of the CUDA backend (cuda/*.cu)
// use from CUDA C++, the CUDA runtime and cuBLAS, so that their kernels AND their host code
// (launch configurations, scratch, copies, reductions to host scalars, cuBLAS operand mappings)
// run on a machine without a GPU (tests/gpu/kernel_emu/run.sh). The stand-in headers in include/
// (cuda_runtime.h, cublas_v2.h, cudnn.h, cublasLt.h, cuda_bf16.h) all lead here, so the backend's
// own cuda/cuda_common.cuh and cuda/precision.cuh compile unchanged (after rewrite.py).
//
// Execution model (emu_core.cpp):
// * rewrite.py turns `kern<<<grid, block, smem, stream>>>(args)` into emu_launch(...): the grid's
//   blocks run one after the other; the threads of a block are fibers (user-level contexts with
//   their own stacks) on the launching thread, each running until it finishes or waits at a
//   barrier. __syncthreads (and _or / _and / _count) is a barrier of the block, __shfl*_sync and
//   __syncwarp a barrier of the lanes named in the mask (which must all call it: a lane outside
//   the mask, a source lane outside it, lanes of one warp waiting with different masks, or a
//   barrier some threads of the block have already left are reported as errors, a wait that can
//   never end as a deadlock). The fibers start in index order in even blocks and in reverse order
//   in odd ones, and the order flips at every barrier, so a missing barrier between a write and a
//   read by another thread shows up in one of the two orders.
// * `__shared__` variables are function statics (rewrite.py), registered at their declaration:
//   they are filled with 0xFF bytes (NaN) before first use and after every block (shared memory
//   starts undefined on the device), and their sizes plus the dynamic shared memory of the launch
//   are checked against the 48 KiB a block gets without an opt-in (cudaFuncSetAttribute is not
//   emulated). Dynamic shared memory (`extern __shared__`) is a separate allocation of exactly the
//   launch's size between guard bands (the one after it as long as a block's shared memory can be).
// * Launch checks: threads per block <= 1024 (x, y <= 1024, z <= 64) and <= __launch_bounds__,
//   grid x < 2^31, y, z <= 65535 (a launch outside them is reported and not run, as the device
//   refuses it); every pointer parameter is passed NULL or a pointer into device memory (emulated
//   nn_alloc buffers and scratch; a host pointer would fault on the device; pointers inside struct
//   arguments are not checked). Device buffers are exact-size allocations between guard bands
//   (checked after every launch and at nn_free; poisoned for AddressSanitizer in ASAN=1 builds),
//   so a write past either end is seen and a read past it returns 3.4e38. cudaMemcpyAsync /
//   cudaMemsetAsync check that their operands are device / host memory as their kind says.
// * Arithmetic: __global__ / __device__ functions are compiled with floating-point contraction
//   (mul + add -> FMA, as nvcc's default --fmad=true) where the host has FMA, host code without;
//   __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn never contract. Inside kernels, the math
//   functions with a documented device error bound (CUDA C++ Programming Guide, maximum ulp
//   errors: expf, tanhf, sinf, cosf, sincosf 2, asinhf 3, logf, log1pf 1; double log, exp 1, sin,
//   cos, pow 2) return glibc's value moved by a pseudo-random -bound..+bound ulps (a fixed function
//   of the argument; EMU_ULP=0 turns it off), so a check cannot rely on the host's libm bits;
//   sqrt, division and fabs are correctly rounded as on the device. (The macros that do this
//   rename expf, log, ... after the standard headers: include those first.)
// * Kernels are launched from one OS thread (not from inside an OpenMP region) and not from
//   kernels (no dynamic parallelism).
// What it cannot show: timing, occupancy, coalescing, register limits, races between blocks (they
// run one after the other) or inside a block that neither thread order exposes, and the device's
// exact libm bits.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <tuple>
#include <type_traits>

// ---------------------------------------------------------------------------------------------
// Language

// Device code is compiled with FMA contraction (run.sh passes -DEMU_CONTRACT when the host has
// FMA and compiles the file with -ffp-contract=off): the attribute applies to device functions only.
#ifdef EMU_CONTRACT
#define EMU_DEVICE_ATTR __attribute__((optimize("fp-contract=fast")))
#else
#define EMU_DEVICE_ATTR
#endif
#define __global__ EMU_DEVICE_ATTR
#define __device__ EMU_DEVICE_ATTR
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...) // rewrite.py records the bound and checks it at each launch
#define __align__(n) alignas(n)
// (`__shared__` declarations are rewritten by rewrite.py; one left over is an error)
#define __shared__ __shared___is_rewritten_by_rewrite_py

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};
// Set by the scheduler for the fiber that runs (one OS thread runs every fiber).
extern uint3 threadIdx, blockIdx;
extern dim3 gridDim, blockDim;
enum { warpSize = 32 };

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) int2 {
    int x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
inline float2 make_float2(float a, float b) { return float2{a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
inline int2 make_int2(int a, int b) { return int2{a, b}; }

// Correctly rounded single operations that never contract into an FMA (the value passes through
// a volatile, which the compiler cannot fuse across).
inline float emu_rounded(float v) {
    volatile float r = v;
    return r;
}
inline float __fmul_rn(float a, float b) { return emu_rounded(a * b); }
inline float __fadd_rn(float a, float b) { return emu_rounded(a + b); }
inline float __fsub_rn(float a, float b) { return emu_rounded(a - b); }
inline float __fdiv_rn(float a, float b) { return emu_rounded(a / b); }
inline float __frcp_rn(float a) { return emu_rounded(1.0f / a); }
inline float __fsqrt_rn(float a) { return emu_rounded(std::sqrt(a)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dmul_rn(double a, double b) {
    volatile double r = a * b;
    return r;
}
inline double __dadd_rn(double a, double b) {
    volatile double r = a + b;
    return r;
}
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline int __float_as_int(float f) { return (int)__float_as_uint(f); }
inline float __int_as_float(int i) { return __uint_as_float((unsigned)i); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v ? __builtin_clz((unsigned)v) : 32; }
inline int __ffs(int v) { return __builtin_ffs(v); }
template <typename T> inline T __ldg(const T *p) { return *p; }
using std::fmaxf;
using std::fminf;

// Atomics: the fibers of a block run on one OS thread and blocks run one after the other, so a
// plain read-modify-write is atomic here.
template <typename T> inline T atomicAdd(T *p, T v) {
    T o = *p;
    *p = o + v;
    return o;
}
template <typename T> inline T atomicMax(T *p, T v) {
    T o = *p;
    if (v > o) *p = v;
    return o;
}
template <typename T> inline T atomicMin(T *p, T v) {
    T o = *p;
    if (v < o) *p = v;
    return o;
}
template <typename T> inline T atomicOr(T *p, T v) {
    T o = *p;
    *p = o | v;
    return o;
}
template <typename T> inline T atomicExch(T *p, T v) {
    T o = *p;
    *p = v;
    return o;
}
template <typename T> inline T atomicCAS(T *p, T cmp, T v) {
    T o = *p;
    if (o == cmp) *p = v;
    return o;
}

// Barriers and warp exchanges (emu_core.cpp). kind: 0 plain, 1 or, 2 and, 3 count.
int emu_block_barrier(int pred, int kind);
inline void __syncthreads() { emu_block_barrier(0, 0); }
inline int __syncthreads_or(int p) { return emu_block_barrier(p, 1); }
inline int __syncthreads_and(int p) { return emu_block_barrier(p, 2); }
inline int __syncthreads_count(int p) { return emu_block_barrier(p, 3); }
inline void __threadfence() {}
inline void __threadfence_block() {}
// The value of the calling lane goes to the others of `mask`; returns the value of lane src_lane
// (lane index in the warp; -1: the caller's own value, as out-of-range shuffles return).
uint64_t emu_warp_exchange(unsigned mask, uint64_t bits, int src_lane, const char *what);
inline void __syncwarp(unsigned mask = 0xffffffffu) { emu_warp_exchange(mask, 0, -1, "__syncwarp"); }
inline unsigned emu_lane() {
    return ((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) & 31u;
}
template <typename T> inline T emu_shfl(unsigned mask, T v, int src, const char *what) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a value wider than 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    b = emu_warp_exchange(mask, b, src, what);
    T r;
    memcpy(&r, &b, sizeof(T));
    return r;
}
// width: a power of two <= 32; the lanes form segments of `width` (CUDA's semantics: idx wraps
// within the segment; up / down past the segment's edge return the caller's own value; xor may
// read an earlier segment, a later one returns the caller's own value).
template <typename T> inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = (int)emu_lane();
    return emu_shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)), "__shfl_sync");
}
template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)emu_lane(), s = (lane ^ lane_mask) & 31;
    return emu_shfl(mask, v, (s & ~(width - 1)) <= (lane & ~(width - 1)) ? s : -1, "__shfl_xor_sync");
}
template <typename T> inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)emu_lane(), s = lane + (int)delta;
    return emu_shfl(mask, v, (lane & (width - 1)) + (int)delta < width ? s : -1, "__shfl_down_sync");
}
template <typename T> inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)emu_lane(), s = lane - (int)delta;
    return emu_shfl(mask, v, (lane & (width - 1)) >= (int)delta ? s : -1, "__shfl_up_sync");
}

// Shared memory (rewrite.py): a static `__shared__` variable is registered at its declaration
// (poisoned before its first use, counted in the launch's shared memory); dynamic shared memory
// is the launch's own buffer.
void emu_shared_decl(void *p, size_t bytes, const char *name);
void *emu_dyn_shared(void);

// ---------------------------------------------------------------------------------------------
// Device math: glibc's value, moved by up to the device's documented error bound inside kernels.

extern bool emu_in_kernel; // a fiber is running
extern int emu_ulp_mode;   // EMU_ULP (default 1)
uint64_t emu_hash64(uint64_t x);
template <typename T> inline T emu_ulp(T r, T x, int bound, unsigned fn) {
    if (!emu_in_kernel || !emu_ulp_mode || !bound || !std::isfinite(r) || r == 0) return r;
    uint64_t xb = 0;
    memcpy(&xb, &x, sizeof(T));
    int k = (int)(emu_hash64(xb * 0x9e3779b97f4a7c15ULL + fn) % (uint64_t)(2 * bound + 1)) - bound;
    T to = k > 0 ? (T)INFINITY : (T)-INFINITY;
    for (int i = 0; i < (k < 0 ? -k : k); i++) r = std::nextafter(r, to);
    return r;
}
inline float emu_dev_expf(float x) { return emu_ulp(::expf(x), x, 2, 1); }
inline float emu_dev_tanhf(float x) { return emu_ulp(::tanhf(x), x, 2, 2); }
inline float emu_dev_asinhf(float x) { return emu_ulp(::asinhf(x), x, 3, 3); }
inline float emu_dev_log1pf(float x) { return emu_ulp(::log1pf(x), x, 1, 4); }
inline float emu_dev_sinf(float x) { return emu_ulp(::sinf(x), x, 2, 5); }
inline float emu_dev_cosf(float x) { return emu_ulp(::cosf(x), x, 2, 6); }
inline void emu_dev_sincosf(float x, float *s, float *c) {
    *s = emu_dev_sinf(x);
    *c = emu_dev_cosf(x);
}
inline float emu_dev_logf(float x) { return emu_ulp(::logf(x), x, 1, 7); }
inline double emu_dev_log(double x) { return emu_ulp(::log(x), x, 1, 8); }
inline double emu_dev_exp(double x) { return emu_ulp(::exp(x), x, 1, 9); }
inline double emu_dev_cos(double x) { return emu_ulp(::cos(x), x, 2, 10); }
inline double emu_dev_sin(double x) { return emu_ulp(::sin(x), x, 2, 11); }
inline double emu_dev_pow(double x, double y) { return emu_ulp(::pow(x, y), x * 1.6180339887498949 + y, 2, 12); }
#define expf(x) emu_dev_expf(x)
#define tanhf(x) emu_dev_tanhf(x)
#define asinhf(x) emu_dev_asinhf(x)
#define log1pf(x) emu_dev_log1pf(x)
#define sinf(x) emu_dev_sinf(x)
#define cosf(x) emu_dev_cosf(x)
#define sincosf(x, s, c) emu_dev_sincosf(x, s, c)
#define logf(x) emu_dev_logf(x)
#define log(x) emu_dev_log(x)
#define exp(x) emu_dev_exp(x)
#define cos(x) emu_dev_cos(x)
#define sin(x) emu_dev_sin(x)
#define pow(x, y) emu_dev_pow(x, y)

// ---------------------------------------------------------------------------------------------
// Launches (emu_core.cpp; rewrite.py writes the calls)

typedef struct CUstream_st *cudaStream_t;
// Validates the configuration (an invalid one is reported and not run, as the device refuses it),
// runs `check` (the argument checks) once, then the grid.
void emu_launch_fn(dim3 grid, dim3 block, size_t smem, const char *name, unsigned bound,
                   const std::function<void()> &check, const std::function<void()> &fn);
// p (a kernel argument, a copy's operand) must be NULL or point into device memory.
void emu_check_device_ptr(const void *p, const char *kernel, int arg);
// [p, p + bytes) must lie in one device buffer / in host memory.
void emu_check_device_range(const void *p, size_t bytes, const char *what);
void emu_check_host_range(const void *p, size_t bytes, const char *what);

template <size_t I, typename Tup, typename... P> inline void emu_check_arg(const char *name, Tup &t) {
    using A = std::remove_cv_t<std::remove_reference_t<std::tuple_element_t<I, Tup>>>;
    if constexpr (I < sizeof...(P)) {
        using Par = std::tuple_element_t<I, std::tuple<P...>>;
        if constexpr (std::is_pointer_v<Par> && std::is_pointer_v<std::decay_t<A>>)
            emu_check_device_ptr((const void *)std::get<I>(t), name, (int)I);
        // (an integer for a pointer parameter is a null pointer constant: nothing to check)
    }
}
template <typename... P, typename... A> inline void emu_check_args(const char *name, void (*)(P...), A &&...a) {
    auto t = std::forward_as_tuple(a...);
    [&]<size_t... I>(std::index_sequence<I...>) {
        (emu_check_arg<I, decltype(t), P...>(name, t), ...);
    }(std::index_sequence_for<A...>{});
}
template <typename K, typename C>
inline void emu_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, const char *name, unsigned bound,
                       K &&kern, C &&check) {
    (void)stream;
    emu_launch_fn(grid, block, smem, name, bound, std::function<void()>(check), std::function<void()>(kern));
}
// Every kernel of an emulated file, registered at start-up (rewrite.py): the report names the
// ones no launch reached.
int emu_register_kernels(const char *file, const char *names);

// ---------------------------------------------------------------------------------------------
// CUDA runtime

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t bytes, cudaMemcpyKind kind, cudaStream_t st);
cudaError_t cudaMemsetAsync(void *d, int v, size_t bytes, cudaStream_t st);
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t bytes, cudaMemcpyKind kind) {
    return cudaMemcpyAsync(d, s, bytes, kind, 0);
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError(void) { return cudaSuccess; }
inline const char *cudaGetErrorString(cudaError_t) { return "emulated"; }
inline const char *cudaGetErrorName(cudaError_t) { return "emulated"; }

// ---------------------------------------------------------------------------------------------
// bf16 (cuda_bf16.h): the storage type and the conversions the backend uses. Round to nearest
// even as cvt.rn.bf16.f32; a NaN becomes the canonical 0x7FFF.

typedef enum { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef struct __nv_bfloat16 {
    unsigned short x;
} __nv_bfloat16;
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
inline unsigned short emu_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{emu_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162{__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __floats2bfloat162_rn(a, a); }

// ---------------------------------------------------------------------------------------------
// cuBLAS (the subset the backend calls; column-major reference implementations in emu_cublas.cpp,
// enum values as cublas_api.h / library_types.h of CUDA 13)

typedef struct EmuCublas *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
    CUBLAS_STATUS_LICENSE_ERROR = 16,
} cublasStatus_t;
typedef enum {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TENSOR_OP_MATH = 1,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
} cublasMath_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUBLAS_SIDE_LEFT = 0, CUBLAS_SIDE_RIGHT = 1 } cublasSideMode_t;
typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;
typedef enum { CUBLAS_DIAG_NON_UNIT = 0, CUBLAS_DIAG_UNIT = 1 } cublasDiagType_t;
typedef enum {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_16F_PEDANTIC = 65,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_PEDANTIC = 69,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    CUBLAS_COMPUTE_64F = 70,
} cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 } cublasGemmAlgo_t;

cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long sA,
                                         const float *B, int ldb, long long sB, const float *beta, float *C, int ldc,
                                         long long sC, int batch);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t ct, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda,
                                          long long sA, const void *B, cudaDataType_t Btype, int ldb, long long sB,
                                          const void *beta, void *C, cudaDataType_t Ctype, int ldc, long long sC,
                                          int batch, cublasComputeType_t ct, cublasGemmAlgo_t algo);
cublasStatus_t cublasStrsm(cublasHandle_t h, cublasSideMode_t side, cublasFillMode_t uplo, cublasOperation_t trans,
                           cublasDiagType_t diag, int m, int n, const float *alpha, const float *A, int lda, float *B,
                           int ldb);
cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t trans, int m, int n, const float *alpha, const float *A,
                           int lda, const float *x, int incx, const float *beta, float *y, int incy);

// ---------------------------------------------------------------------------------------------
// Misuse of a library API (cuBLAS, cuDNN, cuBLASLt mocks: an argument the library documents as
// invalid, an operand outside device memory, a workspace smaller than promised, ...): counted and
// reported at exit (emu_core.cpp), the first few printed.
__attribute__((format(printf, 1, 2))) void emu_api_error(const char *fmt, ...);
// Operand rounding of reduced-precision math (finite values): v with `bits` stored mantissa bits,
// round to nearest even (tf32: 10, bf16: 7).
inline float emu_round_mantissa(float v, int bits) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) return v;
    int drop = 23 - bits;
    uint32_t lsb = (u >> drop) & 1u;
    u = (u + ((1u << (drop - 1)) - 1u) + lsb) & ~((1u << drop) - 1u);
    memcpy(&v, &u, 4);
    return v;
}
// 1 when [a, a + na) and [b, b + nb) overlap (bytes).
inline bool emu_overlap(const void *a, size_t na, const void *b, size_t nb) {
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}
