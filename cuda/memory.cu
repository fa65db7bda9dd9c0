// memory.cu: CUDA backend context (device, stream, cuBLAS/cuDNN handles, switches including nn.h's
// bf16 activation storage switch), the error checks, device memory (nn_alloc & co. with byte
// counters) and the grow-only scratch buffers.
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mutex>
#include <unordered_map>

#include "precision.cuh"

// ---------------------------------------------------------------------------------------------
// Error checks

const char *lcu_cublas_string(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (no device or driver?)";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED (out of device memory)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (bad size or leading dimension)";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

void lcu_cuda_check(cudaError_t e, const char *file, int line, const char *call) {
    if (e == cudaSuccess) return;
    const char *hint = "an earlier asynchronous kernel error can surface here; rerun with "
                       "CUDA_LAUNCH_BLOCKING=1 to locate it";
    if (e == cudaErrorMemoryAllocation) hint = "reduce the batch size or the model size";
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver)
        hint = "no usable NVIDIA GPU/driver: check nvidia-smi, CUDA_VISIBLE_DEVICES, or build with BACKEND=cpu";
    lola_die_hint_at(file, line, hint, "CUDA error %d (%s: %s) in %s", (int)e, cudaGetErrorName(e),
                     cudaGetErrorString(e), call);
}

void lcu_cublas_check(cublasStatus_t s, const char *file, int line, const char *call) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    lola_die_at(file, line, "cuBLAS error %d (%s) in %s", (int)s, lcu_cublas_string(s), call);
}

void lcu_cudnn_check(cudnnStatus_t s, const char *file, int line, const char *call) {
    if (s == CUDNN_STATUS_SUCCESS) return;
    lola_die_at(file, line, "cuDNN error %d (%s) in %s", (int)s, cudnnGetErrorString(s), call);
}

// ---------------------------------------------------------------------------------------------
// Context

static struct {
    int init;
    int device;
    int num_sms;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cudnnHandle_t cudnn; // NULL if unavailable
    int prec, gemm_impl, det, conv_impl, conv_layout, verbose, attn_impl;
    int act_bf16, act_read; // nn_bf16_activations; act_read: LOLA_ACTIVATIONS read (act_get)
    char device_name[256];
    char name[512];
    char hw[384]; // device, runtime and library versions (nn_backend_name without the switches)
} G;

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    if (!s || !s[0]) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end) lola_die("environment variable %s='%s' is not an integer", name, s);
    return (int)v;
}

static void apply_cublas_math(void) {
    if (!G.cublas) return;
    CUBLAS_CHECK(cublasSetMathMode(G.cublas, G.prec != NN_PREC_FP32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

static const char *prec_names[] = {"fp32", "tf32", "bf16"};

// LOLA_PRECISION=fp32|tf32|bf16, with LOLA_TF32=1 as an alias of tf32 (nn_cuda.h).
static int env_precision(void) {
    int tf32 = env_int("LOLA_TF32", 0) != 0;
    const char *s = getenv("LOLA_PRECISION");
    if (!s || !s[0]) return tf32 ? NN_PREC_TF32 : NN_PREC_FP32;
    for (int p = 0; p < 3; p++)
        if (!strcasecmp(s, prec_names[p])) {
            if (p == NN_PREC_FP32 && tf32)
                lola_die("LOLA_PRECISION=%s and LOLA_TF32=1 contradict each other: unset one of them", s);
            return p;
        }
    lola_die("LOLA_PRECISION='%s': expected fp32, tf32 or bf16", s);
    return NN_PREC_FP32;
}

static int env_gemm_impl(void) {
    const char *s = getenv("LOLA_GEMM");
    if (!s || !s[0] || !strcmp(s, "auto")) return NN_GEMM_AUTO;
    if (!strcmp(s, "cublas")) return NN_GEMM_CUBLAS;
    if (!strcmp(s, "lt")) return NN_GEMM_LT;
    lola_die("LOLA_GEMM='%s': expected auto, cublas or lt", s);
    return NN_GEMM_AUTO;
}

static const char *attn_names[] = {"gemm", "flash", "auto"};

// LOLA_ATTENTION=gemm|flash|auto (nn_cuda.h; flash_attention.cu).
static int env_attention_impl(void) {
    const char *s = getenv("LOLA_ATTENTION");
    if (!s || !s[0]) return NN_ATTN_GEMM;
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, attn_names[i])) return i;
    lola_die("LOLA_ATTENTION='%s': expected gemm, flash or auto", s);
    return NN_ATTN_GEMM;
}

// LOLA_ACTIVATIONS=fp32|bf16 (case-insensitive; nn.h "bf16 activation storage"): 0 or 1; unset or
// empty: dflt (0 in every precision mode). Read once, by the first nn_init, like the
// other switches; nn_set_bf16_activations overrides it (a later nn_init is a no-op).
static int env_activations(int dflt) {
    static const char *const names[] = {"fp32", "bf16"};
    return lola_env_choice("LOLA_ACTIVATIONS", names, 2, dflt,
                           "the storage of the activations saved for backward; unset: fp32");
}

// The switch, read from the environment on first use (by nn_init at the latest).
static int act_get(void) {
    if (!G.act_read) { // fp32 unless asked: packing costs passes (nn.h)
        G.act_read = 1;
        G.act_bf16 = env_activations(0);
    }
    return G.act_bf16;
}

// nn_backend_name(): the device (G.hw, fixed at init) plus the switches that change results or
// speed; rebuilt by every setter so a run's log line names what it really used.
static void update_name(void) {
    snprintf(G.name, sizeof G.name, "cuda (%s; %s%s%s%s%s%s)", G.hw,
             G.prec == NN_PREC_BF16 ? "bf16 autocast" : prec_names[G.prec],
             G.prec == NN_PREC_BF16 && G.conv_layout == NN_CONV_NHWC ? ", conv nhwc" : "", G.det ? ", deterministic" : "",
             G.attn_impl != NN_ATTN_GEMM ? ", attention " : "",
             G.attn_impl != NN_ATTN_GEMM ? attn_names[G.attn_impl] : "", act_get() ? ", bf16 activations" : "");
}

// Device selection: local_rank mod device count (local_rank < 0: device 0). Prints only with
// LOLA_CUDA_VERBOSE=1. Safe to call more than once (later calls keep the first device).
extern "C" void nn_init(int local_rank) {
    if (G.init) return;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        lola_die_hint("this binary was built with BACKEND=cuda; on a machine without a GPU build with "
                      "BACKEND=cpu (check nvidia-smi and CUDA_VISIBLE_DEVICES)",
                      "no CUDA device found (cudaGetDeviceCount: %s, %d devices)",
                      e == cudaSuccess ? "ok" : cudaGetErrorString(e), count);
    G.device = local_rank < 0 ? 0 : local_rank % count;
    CUDA_CHECK(cudaSetDevice(G.device));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, G.device));
    G.num_sms = prop.multiProcessorCount;
    snprintf(G.device_name, sizeof G.device_name, "%s", prop.name);
    G.stream = 0; // the legacy default stream: ordered with cudaMemcpy and every library call
    G.prec = env_precision();
    act_get(); // a bad LOLA_ACTIVATIONS stops the program here, at start-up
    G.gemm_impl = env_gemm_impl();
    G.attn_impl = env_attention_impl();
    G.det = env_int("LOLA_DETERMINISTIC", 0) != 0;
    G.verbose = env_int("LOLA_CUDA_VERBOSE", 0) != 0;
    const char *conv = getenv("LOLA_CONV");
    G.conv_impl = NN_CONV_CUDNN;
    {
        static const char *const layouts[] = {"nchw", "nhwc"};
        G.conv_layout = lola_env_choice("LOLA_CONV_LAYOUT", layouts, 2, NN_CONV_NCHW,
                                        "tensor layout of the bf16 cuDNN convolutions; unset: nchw");
    }
    if (conv && conv[0]) {
        if (!strcmp(conv, "im2col")) G.conv_impl = NN_CONV_IM2COL;
        else if (strcmp(conv, "cudnn")) lola_die("LOLA_CONV='%s': expected cudnn or im2col", conv);
    }
    CUBLAS_CHECK(cublasCreate(&G.cublas));
    CUBLAS_CHECK(cublasSetStream(G.cublas, G.stream));
    apply_cublas_math();
    cudnnStatus_t ds = cudnnCreate(&G.cudnn);
    if (ds != CUDNN_STATUS_SUCCESS) {
        log_warn("warning: cuDNN unavailable (%s); convolutions use im2col + cuBLAS\n", cudnnGetErrorString(ds));
        G.cudnn = NULL;
    } else {
        CUDNN_CHECK(cudnnSetStream(G.cudnn, G.stream));
    }
    G.init = 1;
    int rt = 0;
    cudaRuntimeGetVersion(&rt);
    int cbv = 0;
    cublasGetVersion(G.cublas, &cbv);
    size_t dnn = G.cudnn ? cudnnGetVersion() : 0;
    snprintf(G.hw, sizeof G.hw, "%s sm_%d%d, %d SMs, %.1f GiB; CUDA %d.%d, cuBLAS %d, cuDNN %s%zu", prop.name,
             prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0, rt / 1000,
             (rt % 1000) / 10, cbv, G.cudnn ? "" : "n/a ", dnn);
    update_name();
    if (G.verbose) fprintf(stderr, "[cuda] device %d of %d: %s\n", G.device, count, G.name);
}

void lcu_ensure_init(void) {
    if (!G.init) nn_init(-1);
}

extern "C" const char *nn_backend_name(void) {
    lcu_ensure_init();
    return G.name;
}

cudaStream_t lcu_stream(void) { return G.stream; }
cublasHandle_t lcu_cublas(void) {
    lcu_ensure_init();
    return G.cublas;
}
cudnnHandle_t lcu_cudnn(void) {
    lcu_ensure_init();
    return G.cudnn;
}
int lcu_num_sms(void) {
    lcu_ensure_init();
    return G.num_sms;
}

extern "C" void nn_cuda_set_precision(int prec) {
    lcu_ensure_init();
    if (prec < NN_PREC_FP32 || prec > NN_PREC_BF16) lola_die("nn_cuda_set_precision: bad value %d", prec);
    G.prec = prec;
    apply_cublas_math();
    update_name();
}
extern "C" int nn_cuda_precision(void) {
    lcu_ensure_init();
    return G.prec;
}
extern "C" const char *nn_cuda_precision_name(int prec) {
    return prec >= NN_PREC_FP32 && prec <= NN_PREC_BF16 ? prec_names[prec] : "?";
}
// bf16 activation storage switch (nn.h): LOLA_ACTIVATIONS (default fp32 in every precision mode),
// or the setter. Neither needs the device, so memory planning (`lola info`, dcae_arena_floats) works
// on a machine without a GPU; nn_cuda_set_precision does not change it.
extern "C" int nn_bf16_activations(void) { return act_get(); }
extern "C" void nn_set_bf16_activations(int on) {
    act_get(); // a bad LOLA_ACTIVATIONS is an error even when a setter overrides it
    G.act_bf16 = on != 0;
    if (G.init) update_name();
}
extern "C" void nn_cuda_set_gemm_impl(int impl) {
    lcu_ensure_init();
    if (impl != NN_GEMM_AUTO && impl != NN_GEMM_CUBLAS && impl != NN_GEMM_LT)
        lola_die("nn_cuda_set_gemm_impl: bad value %d", impl);
    G.gemm_impl = impl;
}
extern "C" int nn_cuda_gemm_impl(void) {
    lcu_ensure_init();
    return G.gemm_impl;
}
extern "C" void nn_cuda_set_attention_impl(int impl) {
    lcu_ensure_init();
    if (impl != NN_ATTN_GEMM && impl != NN_ATTN_FLASH && impl != NN_ATTN_AUTO)
        lola_die("nn_cuda_set_attention_impl: bad value %d", impl);
    G.attn_impl = impl;
    update_name();
}
extern "C" int nn_cuda_attention_impl(void) {
    lcu_ensure_init();
    return G.attn_impl;
}
extern "C" const char *nn_cuda_attention_impl_name(int impl) {
    return impl >= NN_ATTN_GEMM && impl <= NN_ATTN_AUTO ? attn_names[impl] : "?";
}
extern "C" void nn_cuda_set_tf32(int on) { nn_cuda_set_precision(on ? NN_PREC_TF32 : NN_PREC_FP32); }
extern "C" void nn_cuda_set_deterministic(int on) {
    lcu_ensure_init();
    G.det = on != 0;
    update_name();
}
extern "C" void nn_cuda_set_conv_impl(int impl) {
    lcu_ensure_init();
    if (impl != NN_CONV_CUDNN && impl != NN_CONV_IM2COL) lola_die("nn_cuda_set_conv_impl: bad value %d", impl);
    G.conv_impl = impl;
}
extern "C" void nn_cuda_set_conv_layout(int layout) {
    lcu_ensure_init();
    if (layout != NN_CONV_NCHW && layout != NN_CONV_NHWC) lola_die("nn_cuda_set_conv_layout: bad value %d", layout);
    G.conv_layout = layout;
    update_name();
}
extern "C" int nn_cuda_conv_layout(void) {
    lcu_ensure_init();
    return G.conv_layout;
}
extern "C" int nn_cuda_tf32(void) {
    lcu_ensure_init();
    return G.prec != NN_PREC_FP32;
}
extern "C" int nn_cuda_deterministic(void) {
    lcu_ensure_init();
    return G.det;
}
extern "C" int nn_cuda_conv_impl(void) {
    lcu_ensure_init();
    return G.conv_impl;
}
extern "C" const char *nn_cuda_device_name(void) {
    lcu_ensure_init();
    return G.device_name;
}
extern "C" void nn_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    lcu_ensure_init();
    size_t f = 0, t = 0;
    CUDA_CHECK(cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
}
int lcu_verbose(void) { return G.verbose; }

static long conv_fallback_calls = 0;
void lcu_count_conv_fallback(void) { conv_fallback_calls++; }
extern "C" long nn_cuda_conv_fallback_calls(void) { return conv_fallback_calls; }

// ---------------------------------------------------------------------------------------------
// Device memory with byte counters. The size of every live allocation is kept in a host map.

static std::mutex alloc_mu;
static std::unordered_map<void *, size_t> *allocs;
static size_t bytes_in_use = 0;               // nn_alloc buffers only (for the OOM message)
static size_t device_bytes = 0, device_peak = 0; // every device allocation: buffers, scratch, bf16 cache

void *lcu_device_malloc(size_t bytes, const char *what) {
    lcu_ensure_init();
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 4);
    if (e != cudaSuccess) {
        cudaGetLastError(); // clear the sticky-free allocation error
        size_t f = 0, t = 0;
        cudaMemGetInfo(&f, &t);
        lola_die_hint("reduce the batch size or the model size",
                      "out of device memory allocating %s of %zu bytes (%.3f GiB) on %s: %s; "
                      "%.3f GiB in nn_alloc buffers, %.3f GiB scratch, device free %.3f of %.3f GiB",
                      what, bytes, bytes / 1073741824.0, G.device_name, cudaGetErrorString(e),
                      bytes_in_use / 1073741824.0, nn_cuda_scratch_bytes() / 1073741824.0,
                      f / 1073741824.0, t / 1073741824.0);
    }
    std::lock_guard<std::mutex> lk(alloc_mu);
    device_bytes += bytes;
    if (device_bytes > device_peak) device_peak = device_bytes;
    return p;
}

// The compute stream is synchronised first: ops queued on it may still read or write p (nn_free
// right after the last op using a buffer; a grown scratch slot). cudaFree itself only "may perform
// implicit synchronization" for cudaMalloc'd pointers (cuda_runtime_api.h, CUDA 13), so without
// this the claim "cudaFree synchronises" would rest on driver behaviour, not on the API contract.
void lcu_device_free(void *p, size_t bytes) {
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(G.stream));
    CUDA_CHECK(cudaFree(p));
    std::lock_guard<std::mutex> lk(alloc_mu);
    device_bytes -= bytes;
}

extern "C" float *nn_alloc(size_t n) {
    if (n > SIZE_MAX / sizeof(float)) lola_die("nn_alloc: %zu floats overflow size_t", n);
    size_t bytes = n * sizeof(float);
    float *p = (float *)lcu_device_malloc(bytes, "a buffer");
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 4, G.stream));
    std::lock_guard<std::mutex> lk(alloc_mu);
    if (!allocs) allocs = new std::unordered_map<void *, size_t>();
    (*allocs)[p] = bytes;
    bytes_in_use += bytes;
    return p;
}

extern "C" void nn_free(float *p) {
    if (!p) return;
    size_t bytes = 0;
    {
        std::lock_guard<std::mutex> lk(alloc_mu);
        if (!allocs || allocs->find(p) == allocs->end())
            lola_die("nn_free: %p was not returned by nn_alloc (or was freed twice)", (void *)p);
        auto it = allocs->find(p);
        bytes = it->second;
        bytes_in_use -= bytes;
        allocs->erase(it);
    }
    lcu_note_free(p, bytes); // bf16 weight cache (precision.cu); outside the lock (it frees too)
    lcu_device_free(p, bytes);
}

// The contract (nn.h) counts the backend's whole footprint: nn_alloc buffers plus op scratch
// and the bf16 weight cache, i.e. every lcu_device_malloc.
extern "C" size_t nn_bytes_in_use(void) {
    std::lock_guard<std::mutex> lk(alloc_mu);
    return device_bytes;
}
extern "C" size_t nn_bytes_peak(void) {
    std::lock_guard<std::mutex> lk(alloc_mu);
    return device_peak;
}

extern "C" void nn_zero(float *x, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(x, n);
    CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), G.stream));
}

// backend -> backend; overlapping ranges behave like memmove (staged through scratch).
extern "C" void nn_copy(float *dst, const float *src, size_t n) {
    if (dst == src || !n) return;
    lcu_ensure_init();
    lcu_note_write(dst, n);
    size_t bytes = n * sizeof(float);
    if (dst < src + n && src < dst + n) {
        float *tmp = (float *)lcu_scratch(LCU_SCR_COPY, bytes);
        CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, G.stream));
        src = tmp;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, G.stream));
}

// host -> device; returns when the host buffer may be reused.
extern "C" void nn_to_backend(float *dst, const float *host_src, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(dst, n);
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n * sizeof(float), cudaMemcpyHostToDevice, G.stream));
    CUDA_CHECK(cudaStreamSynchronize(G.stream));
}

// device -> host; returns when the data is on the host.
extern "C" void nn_to_host(float *host_dst, const float *src, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, G.stream));
    CUDA_CHECK(cudaStreamSynchronize(G.stream));
}

extern "C" void nn_sync(void) {
    lcu_ensure_init();
    CUDA_CHECK(cudaStreamSynchronize(G.stream));
    CUDA_CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------------------------------------
// Scratch

static void *scratch_ptr[LCU_SCR_N];
static size_t scratch_cap[LCU_SCR_N];
static size_t ones_len = 0;

void *lcu_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= LCU_SCR_N) lola_die("lcu_scratch: bad slot %d", slot);
    if (bytes > scratch_cap[slot]) {
        lcu_device_free(scratch_ptr[slot], scratch_cap[slot]); // synchronises the stream first
        size_t cap = bytes + bytes / 8;
        cap = (cap + 255) & ~(size_t)255;
        scratch_ptr[slot] = lcu_device_malloc(cap, "an op scratch buffer");
        scratch_cap[slot] = cap;
        if (slot == LCU_SCR_ONES) ones_len = 0;
    }
    return scratch_ptr[slot];
}

extern "C" size_t nn_cuda_scratch_bytes(void) {
    size_t s = 0;
    for (int i = 0; i < LCU_SCR_N; i++) s += scratch_cap[i];
    return s + lcu_bf16_cache_bytes();
}

__global__ void fill_kernel_ones(float *x, size_t n) {
    GRID_STRIDE(i, n) x[i] = 1.0f;
}

const float *lcu_ones(size_t n) {
    float *p = (float *)lcu_scratch(LCU_SCR_ONES, (n ? n : 1) * sizeof(float));
    if (n > ones_len) {
        size_t len = scratch_cap[LCU_SCR_ONES] / sizeof(float);
        fill_kernel_ones<<<lcu_grid(len), LCU_THREADS, 0, G.stream>>>(p, len);
        CUDA_LAUNCH_CHECK();
        ones_len = len;
    }
    return p;
}

double lcu_sum_partials(const double *d_partials, int n) {
    double host[4096];
    if (n > 4096) lola_die("lcu_sum_partials: %d partials (max 4096)", n);
    CUDA_CHECK(cudaMemcpyAsync(host, d_partials, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, G.stream));
    CUDA_CHECK(cudaStreamSynchronize(G.stream));
    double s = 0.0;
    for (int i = 0; i < n; i++) s += host[i];
    return s;
}
