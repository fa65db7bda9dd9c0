// nn_cuda_stub.c: the nn_cuda.h knobs as no-ops, for the harness self-check (make gpu-selfcheck):
// test_gpu_ops linked with the CPU backend in place of the CUDA one, so the comparison harness
// itself (sizes, paired buffers, exactness checks, coverage) is exercised on a machine without a
// GPU. Every check must pass there, the two sides being the same code.
// The CPU backend computes in fp32 only: the precision setters are no-ops and nn_cuda_precision()
// always answers NN_PREC_FP32 (the tests see that the reduced-precision modes are not engaged).
#include "nn_cuda.h"

static int det, impl, attn, layout;
void nn_cuda_set_precision(int prec) { (void)prec; }
int nn_cuda_precision(void) { return NN_PREC_FP32; }
const char *nn_cuda_precision_name(int prec) {
    return prec == NN_PREC_FP32 ? "fp32" : prec == NN_PREC_TF32 ? "tf32" : prec == NN_PREC_BF16 ? "bf16" : "?";
}
void nn_cuda_set_gemm_impl(int i) { (void)i; }
int nn_cuda_gemm_impl(void) { return NN_GEMM_AUTO; }
long nn_cuda_precision_fallback_calls(void) { return 0; }
void nn_cuda_params_changed(void) {}
void nn_cuda_bf16_cache_stats(long *hits, long *misses) {
    if (hits) *hits = 0;
    if (misses) *misses = 0;
}
void nn_cuda_set_tf32(int on) { (void)on; }
void nn_cuda_set_deterministic(int on) { det = on; }
void nn_cuda_set_conv_impl(int i) { impl = i; }
int nn_cuda_tf32(void) { return 0; }
int nn_cuda_deterministic(void) { return det; }
int nn_cuda_conv_impl(void) { return impl; }
void nn_cuda_set_conv_layout(int l) { layout = l; }
int nn_cuda_conv_layout(void) { return layout; }
size_t nn_cuda_scratch_bytes(void) { return 0; }
const char *nn_cuda_device_name(void) { return "none (self-check: CPU backend on both sides)"; }
void nn_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    if (free_bytes) *free_bytes = 0;
    if (total_bytes) *total_bytes = 0;
}
long nn_cuda_conv_fallback_calls(void) { return 0; }
void nn_cuda_set_attention_chunk(size_t floats) { (void)floats; }
void nn_cuda_set_attention_impl(int i) { attn = i; }
int nn_cuda_attention_impl(void) { return attn; }
const char *nn_cuda_attention_impl_name(int i) {
    return i == NN_ATTN_GEMM ? "gemm" : i == NN_ATTN_FLASH ? "flash" : i == NN_ATTN_AUTO ? "auto" : "?";
}
void nn_cuda_flash_attention_stats(long *fwd, long *bwd) { // the CPU backend has no flash kernels
    if (fwd) *fwd = 0;
    if (bwd) *bwd = 0;
}
