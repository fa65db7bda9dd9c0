// nn_cuda.h: knobs of the CUDA backend that are not part of the op contract (nn.h).
// Plain C, so C programs (tests, tools, the main program) can include it when BACKEND=cuda.
// Every knob also has an environment variable read once by nn_init(); the setters override it.
//
//   LOLA_PRECISION=fp32|tf32|bf16  math of the GEMMs and convolutions (default fp32):
//                         fp32  exact fp32 (CUDA-core SGEMM, cuDNN FMA math): parity with the CPU
//                               backend, bit for bit the path of the first CUDA version;
//                         tf32  TF32 tensor cores for every fp32 GEMM/convolution (10-bit mantissa
//                               inputs, fp32 accumulation); linear_* through cuBLASLt epilogues;
//                         bf16  autocast semantics (torch.autocast(dtype=bfloat16)): the fp32
//                               operands of each linear, attention GEMM and convolution are cast
//                               to bf16 (round to nearest even), multiplied on tensor cores with
//                               fp32 accumulation, and the result is returned as fp32. Storage
//                               stays fp32 (parameters, gradients, the activations a forward
//                               computes); only the activations saved for backward may be bf16,
//                               see LOLA_ACTIVATIONS. The fp32 math that remains (fallbacks) may
//                               use TF32.
//   LOLA_ACTIVATIONS=fp32|bf16  storage of the activations models save for backward (nn.h "bf16
//                         activation storage": nn_bf16_activations, setter nn_set_bf16_activations;
//                         case-insensitive, any other value is an error). Unset: fp32 in every
//                         precision mode (the pack / unpack passes cost time; autocast would keep
//                         bf16 activations). Fixed by nn_init: nn_cuda_set_precision does not
//                         change it. The CPU backend reads it too (same default).
//   LOLA_TF32=1           alias of LOLA_PRECISION=tf32 (LOLA_PRECISION wins when both are set;
//                         LOLA_TF32=1 with LOLA_PRECISION=fp32 is an error)
//   LOLA_GEMM=auto|cublas|lt  engine of linear_forward/backward (default auto: cuBLAS SGEMM in
//                         fp32, cuBLASLt with bias / bias-gradient epilogues in tf32 and bf16;
//                         any cuBLASLt failure falls back to cuBLAS for that shape, one warning)
//   LOLA_BF16_CACHE=0     do not keep bf16 copies of parameters between calls (default 1; see
//                         nn_cuda_params_changed below)
//   LOLA_DETERMINISTIC=1  only deterministic cuDNN convolution algorithms (default 0; every other
//                         op of this backend is deterministic anyway: fixed-order reductions, no
//                         atomics on floats)
//   LOLA_CONV=im2col      convolutions through im2col + cuBLAS instead of cuDNN (default cudnn;
//                         cuDNN failures fall back to im2col automatically, with one warning)
//   LOLA_CONV_LAYOUT=nchw|nhwc  tensor layout of the bf16 cuDNN convolutions (default nchw). nhwc:
//                         the per-call bf16 casts of x and dout also transpose them to NHWC (one
//                         pass either way), weights go to KRSC, cuDNN runs its NHWC (tensor-core
//                         native) kernels, and the outputs come back to NCHW fp32 in the pass that
//                         converts them anyway; the same roundings as nchw. Other modes: no effect.
//   LOLA_CUDNN_FIND=1     pick cuDNN algorithms by benchmarking (cudnnFind*) instead of heuristics
//   LOLA_CONV_WS_MB=N     largest cuDNN workspace in MiB (default 1024)
//   LOLA_CUDA_VERBOSE=1   print the device and the chosen conv algorithms
//   LOLA_ATTENTION=gemm|flash|auto  engine of attention_forward/backward (default gemm):
//                         gemm   strided-batched GEMMs + softmax kernels (attention.cu), every mode;
//                         flash  fused FlashAttention-2 style kernels on tensor cores (WMMA,
//                                flash_attention.cu) in tf32 and bf16 mode for head sizes 16, 32,
//                                64, 128; fp32 mode, other head sizes and devices below compute
//                                capability 8.0 use the GEMM path (one note/warning each);
//                         auto   flash where it applies, silently the GEMM path elsewhere.
//                         Both engines save the same log-sum-exp, so forward and backward may
//                         differ.
#ifndef LOLA_NN_CUDA_H
#define LOLA_NN_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { NN_CONV_CUDNN = 0, NN_CONV_IM2COL = 1 };
enum { NN_CONV_NCHW = 0, NN_CONV_NHWC = 1 };
enum { NN_PREC_FP32 = 0, NN_PREC_TF32 = 1, NN_PREC_BF16 = 2 };
enum { NN_GEMM_AUTO = 0, NN_GEMM_CUBLAS = 1, NN_GEMM_LT = 2 };
enum { NN_ATTN_GEMM = 0, NN_ATTN_FLASH = 1, NN_ATTN_AUTO = 2 };

// Precision (NN_PREC_*), takes effect for the next GEMM / convolution call.
void nn_cuda_set_precision(int prec);
int nn_cuda_precision(void);
const char *nn_cuda_precision_name(int prec); // "fp32", "tf32", "bf16"
// Engine of linear_* (NN_GEMM_*). NN_GEMM_LT in fp32 mode runs cuBLASLt with exact fp32 compute
// (tests use it to check the cuBLASLt layouts and epilogues at fp32 tolerance).
void nn_cuda_set_gemm_impl(int impl);
int nn_cuda_gemm_impl(void);
// GEMM / convolution calls in tf32 or bf16 mode that took a fallback path: cuBLASLt -> cuBLAS
// (same precision), or a cuDNN bf16 convolution -> the fp32 convolution path (TF32 allowed).
long nn_cuda_precision_fallback_calls(void);
// bf16 weight cache. In bf16 mode the bf16 copy of a weight (linear w, conv w) is kept and reused
// while it is known to be current: only weights inside a range passed to adamw_update or
// psgd_clip_update (the parameters) are cached, and every write into such a range through
// nn_to_backend, nn_copy, nn_zero, nn_fill, nn_scale, nn_axpy, nn_add, nn_randn, nn_rows_axpby,
// nn_where, adamw_update or any op of nn.h's PSGD section (and nn_free of it) invalidates every
// cached copy. Code that writes parameters any other way
// (NCCL broadcast, cudaMemcpy from outside the backend) must call nn_cuda_params_changed().
void nn_cuda_params_changed(void);
// Weight casts served from the cache (hits) and done (misses, cached or not).
void nn_cuda_bf16_cache_stats(long *hits, long *misses);

// TF32: nn_cuda_set_tf32(1) = nn_cuda_set_precision(NN_PREC_TF32), (0) = NN_PREC_FP32.
// nn_cuda_tf32() is 1 when fp32 GEMMs/convolutions may use TF32 (tf32 and bf16 modes).
void nn_cuda_set_tf32(int on);          // takes effect for the next GEMM / new conv plans
void nn_cuda_set_deterministic(int on); // cuDNN algorithm choice for new conv plans
void nn_cuda_set_conv_impl(int impl);   // NN_CONV_CUDNN or NN_CONV_IM2COL
int nn_cuda_tf32(void);
int nn_cuda_deterministic(void);
int nn_cuda_conv_impl(void);
// Layout of the bf16 cuDNN convolutions (NN_CONV_NCHW / NN_CONV_NHWC; LOLA_CONV_LAYOUT above), for
// new conv plans.
void nn_cuda_set_conv_layout(int layout);
int nn_cuda_conv_layout(void);
// Bytes held in the backend's grow-only scratch buffers (workspaces, attention scores, im2col),
// which nn_bytes_in_use does not count.
size_t nn_cuda_scratch_bytes(void);
// Device name ("NVIDIA H200"), and peak device memory reserved by cudaMalloc in total
// (free/total from cudaMemGetInfo) for reports.
const char *nn_cuda_device_name(void);
void nn_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);
// Number of convolution calls (forward, backward-data, backward-filter counted separately) that
// went to im2col because cuDNN failed while cuDNN was the selected implementation.
long nn_cuda_conv_fallback_calls(void);
// Largest attention score buffer per head chunk, in floats (0 = default 64 Mi). Smaller values
// force more, smaller chunks (tests use it to exercise the chunking).
void nn_cuda_set_attention_chunk(size_t floats);
// Attention engine (NN_ATTN_*, LOLA_ATTENTION above), takes effect for the next attention call.
void nn_cuda_set_attention_impl(int impl);
int nn_cuda_attention_impl(void);
const char *nn_cuda_attention_impl_name(int impl); // "gemm", "flash", "auto"
// Number of attention_forward / attention_backward calls that ran the flash kernels.
void nn_cuda_flash_attention_stats(long *fwd, long *bwd);

#ifdef __cplusplus
}
#endif
#endif
