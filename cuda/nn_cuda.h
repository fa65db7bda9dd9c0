// nn_cuda.h: knobs of the CUDA backend that are not part of the op contract (nn.h).
// Plain C, so C programs (tests, tools, the main program) can include it when BACKEND=cuda.
// Every knob also has an environment variable read once by nn_init(); the setters override it.
//
//   LOLA_TF32=1           allow TF32 tensor cores in cuBLAS GEMMs and cuDNN convolutions
//                         (default 0: exact fp32, for parity with the CPU backend)
//   LOLA_DETERMINISTIC=1  only deterministic cuDNN convolution algorithms (default 0; every other
//                         op of this backend is deterministic anyway: fixed-order reductions, no
//                         atomics on floats)
//   LOLA_CONV=im2col      convolutions through im2col + cuBLAS instead of cuDNN (default cudnn;
//                         cuDNN failures fall back to im2col automatically, with one warning)
//   LOLA_CUDNN_FIND=1     pick cuDNN algorithms by benchmarking (cudnnFind*) instead of heuristics
//   LOLA_CONV_WS_MB=N     largest cuDNN workspace in MiB (default 1024)
//   LOLA_CUDA_VERBOSE=1   print the device and the chosen conv algorithms
#ifndef LOLA_NN_CUDA_H
#define LOLA_NN_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { NN_CONV_CUDNN = 0, NN_CONV_IM2COL = 1 };

void nn_cuda_set_tf32(int on);          // takes effect for the next GEMM / new conv plans
void nn_cuda_set_deterministic(int on); // cuDNN algorithm choice for new conv plans
void nn_cuda_set_conv_impl(int impl);   // NN_CONV_CUDNN or NN_CONV_IM2COL
int nn_cuda_tf32(void);
int nn_cuda_deterministic(void);
int nn_cuda_conv_impl(void);
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

#ifdef __cplusplus
}
#endif
#endif
