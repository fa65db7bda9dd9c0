// precision.cuh: internals of the reduced-precision paths of the CUDA backend (LOLA_PRECISION,
// nn_cuda.h), shared by linear.cu, attention.cu, conv.cu and the memory writers:
//   precision.cu  fp32 <-> bf16 cast kernels into scratch, the bf16 weight cache and the
//                 bookkeeping that keeps it current (parameter ranges, a write version)
//   lt.cu         cuBLASLt GEMMs with epilogues, one cached plan per shape
//   linear.cu     the row-major cuBLAS GEMM helpers (fp32 SGEMM, bf16 GemmEx)
// Storage is fp32 everywhere; the bf16 values of these paths exist only in scratch and in the
// weight cache. (The activations models save for backward may be stored as bf16 in their own
// buffers: nn.h "bf16 activation storage", cuda/bf16.cu.)
#ifndef LOLA_PRECISION_CUH
#define LOLA_PRECISION_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>

#include "cuda_common.cuh"

typedef __nv_bfloat16 lcu_bf16;

// ---------------------------------------------------------------------------------------------
// Casts (precision.cu). All on lcu_stream(); round to nearest even (__float2bfloat16_rn), the
// rounding of torch's .to(torch.bfloat16).

// dst (n bf16) = bf16(src).
void lcu_to_bf16(lcu_bf16 *dst, const float *src, size_t n);
// bf16(src) in the grow-only scratch slot `slot` (LCU_SCR_BF16_*); valid until that slot is reused.
lcu_bf16 *lcu_bf16_of(int slot, const float *src, size_t n);
// bf16 copy of the weight w (n floats): from the weight cache when w lies in a parameter range and
// no parameter was written since it was cast, else cast now (into the cache or LCU_SCR_BF16_W).
const lcu_bf16 *lcu_bf16_weight(const float *w, size_t n);
// dst = float(src) (accumulate = 0) or dst += float(src) (accumulate = 1).
void lcu_from_bf16(float *dst, const lcu_bf16 *src, size_t n, int accumulate);
// out[b, c, p] = float(y[b, c, p]) + (bias ? bias[c] : 0), n = B*C*HW.
void lcu_from_bf16_bias(float *out, const lcu_bf16 *y, const float *bias, size_t n, int C, int HW);
// Device vector of at least n bf16 ones.
const lcu_bf16 *lcu_bf16_ones(size_t n);

// ---------------------------------------------------------------------------------------------
// Weight-cache bookkeeping (precision.cu), called by the ops that write memory.

// adamw_update(p, n): [p, p + n) holds parameters; they change now.
void lcu_note_params(const float *p, size_t n);
// An op writes n floats at p: invalidates the cache when that overlaps a parameter range.
void lcu_note_write(const void *p, size_t n_floats);
// nn_free(p) of `bytes`: forgets parameter ranges and cached copies inside it.
void lcu_note_free(const void *p, size_t bytes);
// Device bytes held by the weight cache (reported with the scratch).
size_t lcu_bf16_cache_bytes(void);
// One call took a fallback path (nn_cuda_precision_fallback_calls).
void lcu_count_precision_fallback(void);

// ---------------------------------------------------------------------------------------------
// Row-major GEMMs through cuBLAS (linear.cu). C (M x N, ldc, fp32) = alpha op(A) op(B) + beta C,
// op(A) (M x K), op(B) (K x N); ta: A stored (K x M) and transposed, tb: B stored (N x K).
// dt is the type of A and B: CUDA_R_32F (cublasSgemm, TF32 per the handle's math mode) or
// CUDA_R_16BF (cublasGemmEx, fp32 C, CUBLAS_COMPUTE_32F). Strides are in elements.

void lcu_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);
void lcu_gemm_batched(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, long long sA,
                      const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC, int batch);
void lcu_gemm_dt(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B, int ldb,
                 cudaDataType_t dt, float beta, float *C, int ldc);
void lcu_gemm_batched_dt(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, long long sA,
                         const void *B, int ldb, long long sB, cudaDataType_t dt, float beta, float *C, int ldc,
                         long long sC, int batch);

// ---------------------------------------------------------------------------------------------
// cuBLASLt (lt.cu): the same row-major GEMM with an epilogue, fp32 C, in one cublasLtMatmul.
//   LCU_EPI_BIAS     C[i, j] = ... + bias[j] (bias: N floats)
//   LCU_EPI_BGRAD_A  bias[i] = sum_k op(A)[i, k] (bias: M floats, overwritten): the bias gradient
//                    of a weight-gradient GEMM whose A operand is dout^T
// ct: CUBLAS_COMPUTE_32F (exact fp32 for fp32 operands; the only choice for bf16 operands) or
// CUBLAS_COMPUTE_32F_FAST_TF32. Returns 1 when done; 0 when cuBLASLt cannot do this shape (one
// warning per run): nothing was written and the caller uses the cuBLAS path instead.
enum { LCU_EPI_NONE = 0, LCU_EPI_BIAS = 1, LCU_EPI_BGRAD_A = 2 };
int lcu_lt_gemm(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B, int ldb,
                cudaDataType_t dt, cublasComputeType_t ct, float beta, float *C, int ldc, int epi, float *bias);

#endif
