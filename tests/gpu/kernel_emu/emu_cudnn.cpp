// emu_cudnn.cpp: a mock of cuDNN's legacy convolution API (emu_cudnn.h) for the host emulation, so
// that conv.cu's host code (plans, descriptors, algorithm candidates and their retries, workspace,
// alignment copies, the bf16 and NHWC paths, the fallbacks) runs on a machine without a GPU.
//
// * Descriptors: 4-D tensors with any strides (Set4d NCHW / NHWC, Set4dEx, Nd with 4 dims), filters
//   KCRS (CUDNN_TENSOR_NCHW) and KRSC (CUDNN_TENSOR_NHWC), 2-D convolutions (padding, stride,
//   dilation, cross-correlation or convolution, one group, compute type fp32). Every call checks
//   that its descriptors were created, set and agree (data types, channels, output shape); a
//   violation is an API misuse (emu_api_error: a FAIL line at exit) and returns BAD_PARAM.
// * Heuristics (cudnnGet*_v7) and search (cudnnFind*) return a fixed perf list per direction,
//   best first, deliberately awkward: tensor-op entries (mathType TENSOR_OP_MATH) ahead of FMA /
//   default ones and whatever the descriptor's math type, non-GEMM algorithms (FFT, FFT_TILING,
//   WINOGRAD_NONFUSED) among them, the non-deterministic backward algorithms (data ALGO_0, filter
//   ALGO_0 and ALGO_3) first, entries with status NOT_SUPPORTED in between (Winograd off 3x3, FFT on
//   bf16, DIRECT), and a workspace size per (algorithm, tensor-op or not) that depends on the shape.
//   cudnnFind* returns the same entries in another order.
// * Execution (Forward, BackwardData, BackwardFilter) validates: handle, descriptors, the math
//   type having been set on the convolution descriptor (cuDNN's default, DEFAULT_MATH, allows TF32
//   on Ampere and later), the algorithm, every data pointer (non-NULL, inside one emulated device
//   buffer for the tensor's whole extent), alpha / beta host pointers, no output overlapping an
//   input, the workspace (at least what the perf entry of that algorithm and math type said, inside
//   device memory). Then it computes y = alpha conv + beta y (beta = 0: y not read) with reference
//   loops, accumulating in double:
//     - fp32 data: exact operands with CUDNN_FMA_MATH; rounded to TF32 (10 mantissa bits, nearest
//       even) with TENSOR_OP_MATH, TENSOR_OP_MATH_ALLOW_CONVERSION or DEFAULT_MATH, as the tensor
//       cores may do on the H200;
//     - bf16 data ("pseudo bf16": compute type fp32): bf16 operands, fp32-or-better accumulation,
//       the output rounded to bf16 (nearest even);
//     - a non-GEMM algorithm with rounded operands rounds them to 4 bits fewer (a stand-in for the
//       amplification of the rounding of transformed tiles by the inverse transform, which makes
//       such results fall outside the one-rounding-per-operand error model of the tests);
//     - a non-deterministic algorithm moves a pseudo-random quarter of its results by one ulp,
//       differently at each call (atomics in another order), so determinism checks see it.
// * Failure injection, EMU_CUDNN_FAIL (comma-separated; checked after the validation):
//     first       the first (algorithm, math type) executed per convolution descriptor and direction
//                 returns NOT_SUPPORTED, and so does every later call with that pair (a retry of a
//                 refused pair is an API misuse: the candidate index did not advance);
//     all         every execution returns NOT_SUPPORTED (the im2col / fp32 fallbacks);
//     plan        the heuristics and searches fail (a plan that cannot be built);
//     misaligned  an execution with a data or workspace pointer not 16-byte aligned returns
//                 BAD_PARAM_MISALIGNED_POINTER, as cuDNN 9 may;
//     nohandle    cudnnCreate fails (lcu_cudnn() is NULL).
// * Statistics for the report (emu_core.cpp): executions per direction, refusals, filter pointers
//   that were not 16-byte aligned (conv.cu promises aligned weights), non-deterministic algorithms
//   run while nn_cuda_deterministic() is on, non-GEMM algorithms run with reduced precision.
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "emu_cudnn.h"

#include "common.h"
#include "nn_cuda.h"

bool emu_is_device_range(const void *p, size_t bytes);
// (the test program's knob; weak: the emulation's selftest links without it)
extern "C" int nn_cuda_deterministic(void) __attribute__((weak));

struct EmuDnnHandle {
    int unused;
};
struct EmuDnnTensor {
    bool set = false;
    cudnnDataType_t dt = CUDNN_DATA_FLOAT;
    int n = 0, c = 0, h = 0, w = 0;
    long long sn = 0, sc = 0, sh = 0, sw = 0;
};
struct EmuDnnFilter {
    bool set = false;
    cudnnDataType_t dt = CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t fmt = CUDNN_TENSOR_NCHW;
    int k = 0, c = 0, r = 0, s = 0;
};
struct EmuDnnConv {
    bool set = false, math_set = false;
    int ph = 0, pw = 0, u = 1, v = 1, dh = 1, dw = 1, groups = 1;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    cudnnDataType_t ct = CUDNN_DATA_FLOAT;
    cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {
EmuDnnHandle the_handle;
std::set<const void *> &live() {
    static std::set<const void *> &s = *new std::set<const void *>;
    return s;
}

// EMU_CUDNN_FAIL
struct Modes {
    bool first = false, all = false, plan = false, misaligned = false, nohandle = false;
    std::string text;
};
const Modes &modes() {
    static Modes m = [] {
        Modes r;
        const char *s = getenv("EMU_CUDNN_FAIL");
        r.text = s ? s : "";
        for (size_t p = 0; p < r.text.size();) {
            size_t e = r.text.find(',', p);
            if (e == std::string::npos) e = r.text.size();
            std::string t = r.text.substr(p, e - p);
            if (t == "first") r.first = true;
            else if (t == "all") r.all = true;
            else if (t == "plan") r.plan = true;
            else if (t == "misaligned") r.misaligned = true;
            else if (t == "nohandle") r.nohandle = true;
            else if (!t.empty() && t != "none")
                lola_die("EMU_CUDNN_FAIL: unknown mode '%s' (first, all, plan, misaligned, nohandle, none)", t.c_str());
            p = e + 1;
        }
        return r;
    }();
    return m;
}

enum { D_FWD = 0, D_DATA = 1, D_FILTER = 2 };
const char *dir_name[3] = {"cudnnConvolutionForward", "cudnnConvolutionBackwardData", "cudnnConvolutionBackwardFilter"};

// Statistics
long n_runs[3], n_injected, n_unsupported_runs, n_walign, n_nondet_det, n_nongemm_reduced, n_tf32_runs, n_bf16_runs,
    n_nhwc_runs, n_heuristics;
struct Refusal {
    int algo;
    cudnnMathType_t math;
    bool recovered;
    int repeats;
};
std::map<std::pair<const void *, int>, Refusal> &refusals() {
    static std::map<std::pair<const void *, int>, Refusal> &m = *new std::map<std::pair<const void *, int>, Refusal>;
    return m;
}
uint64_t n_calls = 0;

// ---------------------------------------------------------------------------------------------
// Geometry

struct Geo {
    int N, C, H, W, K, R, S, P, Q;
    int ph, pw, u, v, dh, dw;
    bool flip;
    cudnnDataType_t dt;
};

size_t elem_size(cudnnDataType_t dt) { return dt == CUDNN_DATA_BFLOAT16 || dt == CUDNN_DATA_HALF ? 2 : dt == CUDNN_DATA_DOUBLE ? 8 : 4; }
size_t tensor_extent(const EmuDnnTensor &t) { // elements spanned
    return (size_t)(1 + (t.n - 1) * t.sn + (t.c - 1) * t.sc + (t.h - 1) * t.sh + (t.w - 1) * t.sw);
}
size_t filter_count(const EmuDnnFilter &f) { return (size_t)f.k * f.c * f.r * f.s; }

bool known(const void *d, const char *fn, const char *what) {
    if (!d) {
        emu_api_error("%s: %s descriptor is NULL", fn, what);
        return false;
    }
    if (!live().count(d)) {
        emu_api_error("%s: %s descriptor %p was never created (or was destroyed)", fn, what, d);
        return false;
    }
    return true;
}

// Checks that x, w, y (y: the output of the forward direction) form one convolution under cd;
// fills g. API misuse -> reported, BAD_PARAM*.
cudnnStatus_t check_config(const char *fn, const EmuDnnTensor *x, const EmuDnnFilter *w, const EmuDnnConv *cd,
                           const EmuDnnTensor *y, Geo *g) {
    if (!known(x, fn, "input tensor") || !known(w, fn, "filter") || !known(cd, fn, "convolution") ||
        !known(y, fn, "output tensor"))
        return CUDNN_STATUS_BAD_PARAM;
    if (!x->set || !y->set || !w->set || !cd->set) {
        emu_api_error("%s: a descriptor was created but never set (%s%s%s%s)", fn, x->set ? "" : "x ",
                      y->set ? "" : "y ", w->set ? "" : "w ", cd->set ? "" : "conv");
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (x->dt != y->dt || x->dt != w->dt) {
        emu_api_error("%s: data types of x (%d), w (%d) and y (%d) differ", fn, x->dt, w->dt, y->dt);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (x->dt != CUDNN_DATA_FLOAT && x->dt != CUDNN_DATA_BFLOAT16) {
        emu_api_error("%s: data type %d (only fp32 and bf16 are emulated)", fn, x->dt);
        return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    }
    if (cd->ct != CUDNN_DATA_FLOAT) {
        emu_api_error("%s: convolution compute type %d (fp32 accumulation is CUDNN_DATA_FLOAT, also for bf16 data)", fn,
                      cd->ct);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    g->N = x->n, g->C = x->c, g->H = x->h, g->W = x->w, g->K = w->k, g->R = w->r, g->S = w->s;
    g->ph = cd->ph, g->pw = cd->pw, g->u = cd->u, g->v = cd->v, g->dh = cd->dh, g->dw = cd->dw;
    g->flip = cd->mode == CUDNN_CONVOLUTION, g->dt = x->dt;
    g->P = (g->H + 2 * g->ph - g->dh * (g->R - 1) - 1) / g->u + 1;
    g->Q = (g->W + 2 * g->pw - g->dw * (g->S - 1) - 1) / g->v + 1;
    if (w->c != x->c || y->c != w->k || y->n != x->n || y->h != g->P || y->w != g->Q || g->P <= 0 || g->Q <= 0) {
        emu_api_error("%s: shapes do not agree: x (%d, %d, %d, %d), w (%d, %d, %d, %d), y (%d, %d, %d, %d), pad %d %d "
                      "stride %d %d dilation %d %d: expected y (%d, %d, %d, %d)",
                      fn, x->n, x->c, x->h, x->w, w->k, w->c, w->r, w->s, y->n, y->c, y->h, y->w, g->ph, g->pw, g->u,
                      g->v, g->dh, g->dw, x->n, w->k, g->P, g->Q);
        return CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH;
    }
    return CUDNN_STATUS_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Algorithms: the perf lists and what each entry supports / needs

struct Entry {
    int algo;
    cudnnMathType_t math;
    cudnnDeterminism_t det;
};
const Entry fwd_heur[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_TENSOR_OP_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_TENSOR_OP_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
};
const int fwd_find_order[] = {4, 3, 0, 5, 2, 1, 6, 7};
const Entry data_heur[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_DEFAULT_MATH, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_TENSOR_OP_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, CUDNN_TENSOR_OP_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
};
const int data_find_order[] = {4, 1, 0, 2, 3, 5};
const Entry filter_heur[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_TENSOR_OP_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_DEFAULT_MATH, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_DEFAULT_MATH, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, CUDNN_DEFAULT_MATH, CUDNN_DETERMINISTIC},
};
const int filter_find_order[] = {4, 0, 3, 1, 2, 5, 6};

int algo_count(int d) {
    return d == D_FWD ? (int)CUDNN_CONVOLUTION_FWD_ALGO_COUNT
                      : d == D_DATA ? (int)CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT : (int)CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}
enum Kind { K_GEMM, K_FFT, K_FFT_TILING, K_WINOGRAD, K_WINOGRAD_NONFUSED, K_DIRECT };
Kind kind_of(int d, int a) {
    if (d == D_FWD)
        switch (a) {
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return K_FFT;
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return K_FFT_TILING;
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return K_WINOGRAD;
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return K_WINOGRAD_NONFUSED;
        case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return K_DIRECT;
        default: return K_GEMM;
        }
    if (d == D_DATA)
        switch (a) {
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT: return K_FFT;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING: return K_FFT_TILING;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD: return K_WINOGRAD;
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED: return K_WINOGRAD_NONFUSED;
        default: return K_GEMM;
        }
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return K_FFT;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING: return K_FFT_TILING;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD: return K_WINOGRAD;
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return K_WINOGRAD_NONFUSED;
    default: return K_GEMM;
    }
}
bool nondeterministic(int d, int a) {
    return (d == D_DATA && a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) ||
           (d == D_FILTER && (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3));
}
// Whether algorithm a of direction d runs this configuration.
bool supported(int d, int a, const Geo &g) {
    bool unit = g.u == 1 && g.v == 1 && g.dh == 1 && g.dw == 1;
    switch (kind_of(d, a)) {
    case K_DIRECT: return false;
    case K_WINOGRAD: return false; // the fused Winograd kernels: not on Hopper
    case K_WINOGRAD_NONFUSED: return unit && g.R == 3 && g.S == 3;
    case K_FFT:
    case K_FFT_TILING: return unit && g.dt == CUDNN_DATA_FLOAT;
    default: return true;
    }
}
bool tensor_op(cudnnMathType_t m) { return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION; }
// Workspace bytes of algorithm a of direction d with (tensor-op) math on this configuration.
size_t ws_need(int d, int a, bool top, const Geo &g) {
    size_t e = elem_size(g.dt), N = g.N, C = g.C, K = g.K, RS = (size_t)g.R * g.S, PQ = (size_t)g.P * g.Q;
    size_t HW = (size_t)(g.H + 2 * g.ph) * (g.W + 2 * g.pw), tiles = (size_t)((g.P + 1) / 2) * ((g.Q + 1) / 2);
    size_t b = 0;
    switch (kind_of(d, a)) {
    case K_FFT: b = N * (C + K) * HW * 8 + K * C * HW * 8; break;
    case K_FFT_TILING: b = (N * (C + K) + K * C) * 32 * 32 * 8; break;
    case K_WINOGRAD_NONFUSED: b = (N * (C + K) * tiles + K * C) * 16 * 4; break;
    case K_WINOGRAD:
    case K_DIRECT: b = 0; break;
    case K_GEMM:
        if (d == D_FWD && a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM) b = 0;
        else if (d == D_FWD && a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) b = 256 + 4 * C * RS;
        else if (d == D_FWD) b = C * RS * PQ * e; // explicit GEMM: one sample's columns
        else if (d == D_DATA && a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) b = 0;
        else if (d == D_DATA) b = 64 * C + 4 * K * RS;
        else if (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0) b = 0;
        else if (a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3) b = 4 * K * C * RS + 512;
        else b = 4 * K * C * RS; // ALGO_1: fp32 partial weight gradients
        break;
    }
    if (top) b += 1024 + 16 * (K + C); // tensor-op kernels: their own staging (differs from the FMA entry)
    return b;
}

template <typename Perf>
cudnnStatus_t fill_perf(int d, const char *fn, bool find, const Geo &g, int requested, int *returned, Perf *perf) {
    if (!returned || !perf || requested <= 0) {
        emu_api_error("%s: requestedAlgoCount %d, returnedAlgoCount %p, perfResults %p", fn, requested,
                      (void *)returned, (void *)perf);
        return CUDNN_STATUS_BAD_PARAM;
    }
    n_heuristics++;
    if (modes().plan) return CUDNN_STATUS_NOT_SUPPORTED;
    const Entry *tab = d == D_FWD ? fwd_heur : d == D_DATA ? data_heur : filter_heur;
    const int *order = d == D_FWD ? fwd_find_order : d == D_DATA ? data_find_order : filter_find_order;
    int n = d == D_FWD ? (int)(sizeof fwd_heur / sizeof *fwd_heur)
                       : d == D_DATA ? (int)(sizeof data_heur / sizeof *data_heur)
                                     : (int)(sizeof filter_heur / sizeof *filter_heur);
    int out = 0;
    for (int i = 0; i < n && out < requested; i++) {
        const Entry &en = tab[find ? order[i] : i];
        Perf p;
        memset(&p, 0, sizeof p);
        p.algo = (decltype(p.algo))en.algo;
        p.mathType = en.math;
        p.determinism = en.det;
        if (supported(d, en.algo, g)) {
            p.status = CUDNN_STATUS_SUCCESS;
            p.memory = ws_need(d, en.algo, tensor_op(en.math), g);
            p.time = 0.1f * (float)(i + 1);
        } else {
            p.status = CUDNN_STATUS_NOT_SUPPORTED;
            p.memory = 0;
            p.time = -1.0f;
        }
        perf[out++] = p;
    }
    *returned = out;
    return CUDNN_STATUS_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Data: dense NCHW / KCRS float copies of the operands, stores back through the descriptors

float load_elem(const void *p, size_t off, cudnnDataType_t dt) {
    if (dt == CUDNN_DATA_BFLOAT16) return __bfloat162float(((const __nv_bfloat16 *)p)[off]);
    return ((const float *)p)[off];
}
// bits < 23: operands rounded to that many mantissa bits.
std::vector<float> load_tensor(const EmuDnnTensor &t, const void *p, int bits) {
    std::vector<float> v((size_t)t.n * t.c * t.h * t.w);
    size_t i = 0;
    for (int n = 0; n < t.n; n++)
        for (int c = 0; c < t.c; c++)
            for (int h = 0; h < t.h; h++)
                for (int w = 0; w < t.w; w++, i++) {
                    float f = load_elem(p, (size_t)(n * t.sn + c * t.sc + h * t.sh + w * t.sw), t.dt);
                    v[i] = bits < 23 ? emu_round_mantissa(f, bits) : f;
                }
    return v;
}
size_t filter_off(const EmuDnnFilter &f, int k, int c, int r, int s) {
    if (f.fmt == CUDNN_TENSOR_NHWC) return (((size_t)k * f.r + r) * f.s + s) * f.c + c; // KRSC
    return (((size_t)k * f.c + c) * f.r + r) * f.s + s;                                  // KCRS
}
std::vector<float> load_filter(const EmuDnnFilter &f, const void *p, int bits, bool flip) {
    std::vector<float> v(filter_count(f));
    size_t i = 0;
    for (int k = 0; k < f.k; k++)
        for (int c = 0; c < f.c; c++)
            for (int r = 0; r < f.r; r++)
                for (int s = 0; s < f.s; s++, i++) {
                    int rr = flip ? f.r - 1 - r : r, ss = flip ? f.s - 1 - s : s;
                    float x = load_elem(p, filter_off(f, k, c, rr, ss), f.dt);
                    v[i] = bits < 23 ? emu_round_mantissa(x, bits) : x;
                }
    return v;
}
// out = alpha acc + beta out (beta = 0: out not read), converted to the data type; a
// non-deterministic algorithm moves a pseudo-random quarter of the results by one ulp.
float finish(double acc, float alpha, float beta, const void *p, size_t off, cudnnDataType_t dt, bool nondet,
             size_t idx) {
    double r = (double)alpha * acc;
    if (beta != 0.0f) r += (double)beta * load_elem(p, off, dt);
    float f = (float)r;
    if (nondet && f != 0.0f) {
        uint64_t hsh = emu_hash64(n_calls * 0x9e3779b97f4a7c15ULL + idx);
        if ((hsh & 3) == 0) f = std::nextafter(f, (hsh & 4) ? INFINITY : -INFINITY);
    }
    return f;
}
void store_elem(void *p, size_t off, cudnnDataType_t dt, float f) {
    if (dt == CUDNN_DATA_BFLOAT16) ((__nv_bfloat16 *)p)[off] = __float2bfloat16_rn(f);
    else ((float *)p)[off] = f;
}
void store_tensor(const EmuDnnTensor &t, void *p, const std::vector<double> &acc, float alpha, float beta, bool nondet) {
    size_t i = 0;
    for (int n = 0; n < t.n; n++)
        for (int c = 0; c < t.c; c++)
            for (int h = 0; h < t.h; h++)
                for (int w = 0; w < t.w; w++, i++) {
                    size_t off = (size_t)(n * t.sn + c * t.sc + h * t.sh + w * t.sw);
                    store_elem(p, off, t.dt, finish(acc[i], alpha, beta, p, off, t.dt, nondet, i));
                }
}
void store_filter(const EmuDnnFilter &f, void *p, const std::vector<double> &acc, float alpha, float beta, bool nondet,
                  bool flip) {
    size_t i = 0;
    for (int k = 0; k < f.k; k++)
        for (int c = 0; c < f.c; c++)
            for (int r = 0; r < f.r; r++)
                for (int s = 0; s < f.s; s++, i++) {
                    int rr = flip ? f.r - 1 - r : r, ss = flip ? f.s - 1 - s : s;
                    size_t off = filter_off(f, k, c, rr, ss);
                    store_elem(p, off, f.dt, finish(acc[i], alpha, beta, p, off, f.dt, nondet, i));
                }
}

// Output positions q in [q0, q1) whose input column q*v - pw + s*dw lies in [0, W).
void col_range(int Q, int W, int v, int pw, int off, int *q0, int *q1) {
    // q*v >= pw - off  and  q*v <= W - 1 + pw - off
    int lo = pw - off, hi = W - 1 + pw - off;
    int a = lo <= 0 ? 0 : (lo + v - 1) / v;
    int b = hi < 0 ? -1 : hi / v;
    *q0 = a, *q1 = std::min(Q, b + 1);
    if (*q1 < *q0) *q1 = *q0;
}

// The three directions on dense arrays (X: N C H W, Wt: K C R S (flipped already for CUDNN_CONVOLUTION),
// Y: N K P Q), double accumulation.
void conv_fwd(const Geo &g, const std::vector<float> &X, const std::vector<float> &Wt, std::vector<double> &Y) {
    Y.assign((size_t)g.N * g.K * g.P * g.Q, 0.0);
    for (int n = 0; n < g.N; n++)
        for (int k = 0; k < g.K; k++) {
            double *y = &Y[((size_t)n * g.K + k) * g.P * g.Q];
            for (int c = 0; c < g.C; c++)
                for (int r = 0; r < g.R; r++)
                    for (int s = 0; s < g.S; s++) {
                        double wv = Wt[(((size_t)k * g.C + c) * g.R + r) * g.S + s];
                        int q0, q1;
                        col_range(g.Q, g.W, g.v, g.pw, s * g.dw, &q0, &q1);
                        for (int p = 0; p < g.P; p++) {
                            int h = p * g.u - g.ph + r * g.dh;
                            if (h < 0 || h >= g.H) continue;
                            const float *x = &X[(((size_t)n * g.C + c) * g.H + h) * g.W];
                            double *yr = y + (size_t)p * g.Q;
                            for (int q = q0; q < q1; q++) yr[q] += wv * x[q * g.v - g.pw + s * g.dw];
                        }
                    }
        }
}
void conv_data(const Geo &g, const std::vector<float> &DY, const std::vector<float> &Wt, std::vector<double> &DX) {
    DX.assign((size_t)g.N * g.C * g.H * g.W, 0.0);
    for (int n = 0; n < g.N; n++)
        for (int c = 0; c < g.C; c++) {
            double *dx = &DX[((size_t)n * g.C + c) * g.H * g.W];
            for (int k = 0; k < g.K; k++)
                for (int r = 0; r < g.R; r++)
                    for (int s = 0; s < g.S; s++) {
                        double wv = Wt[(((size_t)k * g.C + c) * g.R + r) * g.S + s];
                        int q0, q1;
                        col_range(g.Q, g.W, g.v, g.pw, s * g.dw, &q0, &q1);
                        for (int p = 0; p < g.P; p++) {
                            int h = p * g.u - g.ph + r * g.dh;
                            if (h < 0 || h >= g.H) continue;
                            const float *dy = &DY[(((size_t)n * g.K + k) * g.P + p) * g.Q];
                            double *row = dx + (size_t)h * g.W;
                            for (int q = q0; q < q1; q++) row[q * g.v - g.pw + s * g.dw] += wv * dy[q];
                        }
                    }
        }
}
void conv_filter(const Geo &g, const std::vector<float> &X, const std::vector<float> &DY, std::vector<double> &DW) {
    DW.assign((size_t)g.K * g.C * g.R * g.S, 0.0);
    for (int k = 0; k < g.K; k++)
        for (int c = 0; c < g.C; c++)
            for (int r = 0; r < g.R; r++)
                for (int s = 0; s < g.S; s++) {
                    int q0, q1;
                    col_range(g.Q, g.W, g.v, g.pw, s * g.dw, &q0, &q1);
                    double a0 = 0.0, a1 = 0.0;
                    for (int n = 0; n < g.N; n++)
                        for (int p = 0; p < g.P; p++) {
                            int h = p * g.u - g.ph + r * g.dh;
                            if (h < 0 || h >= g.H) continue;
                            const float *x = &X[(((size_t)n * g.C + c) * g.H + h) * g.W];
                            const float *dy = &DY[(((size_t)n * g.K + k) * g.P + p) * g.Q];
                            int q = q0;
                            for (; q + 1 < q1; q += 2) {
                                a0 += (double)dy[q] * x[q * g.v - g.pw + s * g.dw];
                                a1 += (double)dy[q + 1] * x[(q + 1) * g.v - g.pw + s * g.dw];
                            }
                            if (q < q1) a0 += (double)dy[q] * x[q * g.v - g.pw + s * g.dw];
                        }
                    DW[(((size_t)k * g.C + c) * g.R + r) * g.S + s] = a0 + a1;
                }
}

// ---------------------------------------------------------------------------------------------
// One execution (the three directions share the checks)

struct Operand {
    const void *p;
    size_t bytes;
    const char *name;
    bool output, filter;
};

cudnnStatus_t execute(int d, cudnnHandle_t h, const void *alpha, const void *beta, const EmuDnnTensor *xd,
                      const EmuDnnFilter *wd, const EmuDnnConv *cd, const EmuDnnTensor *yd, const void *x,
                      const void *w, const void *y, int algo, void *ws, size_t wsb) {
    const char *fn = dir_name[d];
    n_calls++;
    if (h != &the_handle) {
        emu_api_error("%s: handle %p is not the one cudnnCreate returned", fn, (void *)h);
        return CUDNN_STATUS_BAD_PARAM;
    }
    Geo g;
    cudnnStatus_t st = check_config(fn, xd, wd, cd, yd, &g);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    if (algo < 0 || algo >= algo_count(d)) {
        emu_api_error("%s: algorithm %d out of range", fn, algo);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!cd->math_set)
        emu_api_error("%s: the convolution descriptor's math type was never set (cuDNN's default, "
                      "CUDNN_DEFAULT_MATH, lets fp32 convolutions run in TF32 on the H200)", fn);
    if (!alpha || !beta || emu_is_device_range(alpha, 4) || emu_is_device_range(beta, 4)) {
        emu_api_error("%s: alpha %p / beta %p must be host pointers to the scaling factors", fn, alpha, beta);
        return CUDNN_STATUS_BAD_PARAM;
    }
    size_t e = elem_size(g.dt);
    Operand ops[3] = {
        {x, tensor_extent(*xd) * e, d == D_DATA ? "dx" : "x", d == D_DATA, false},
        {w, filter_count(*wd) * e, d == D_FILTER ? "dw" : "w", d == D_FILTER, true},
        {y, tensor_extent(*yd) * e, d == D_FWD ? "y" : "dy", d == D_FWD, false},
    };
    for (const Operand &o : ops) {
        if (!o.p) {
            emu_api_error("%s: %s is NULL", fn, o.name);
            return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
        }
        if (!emu_is_device_range(o.p, o.bytes)) {
            emu_api_error("%s: %s [%p, +%zu bytes) is not inside one device buffer (the descriptor's extent)", fn,
                          o.name, o.p, o.bytes);
            return CUDNN_STATUS_BAD_PARAM;
        }
    }
    for (const Operand &o : ops)
        for (const Operand &i : ops)
            if (o.output && !i.output && emu_overlap(o.p, o.bytes, i.p, i.bytes)) {
                emu_api_error("%s: the output %s overlaps the input %s", fn, o.name, i.name);
                return CUDNN_STATUS_BAD_PARAM;
            }
    if (!supported(d, algo, g)) {
        n_unsupported_runs++;
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    bool top = tensor_op(cd->math);
    size_t need = ws_need(d, algo, top, g);
    if (wsb < need) {
        emu_api_error("%s: algorithm %d with math type %d needs %zu workspace bytes (its perf entry says so), got %zu",
                      fn, algo, cd->math, need, wsb);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (need && (!ws || !emu_is_device_range(ws, need))) {
        emu_api_error("%s: workspace [%p, +%zu bytes) is not device memory", fn, ws, need);
        return CUDNN_STATUS_BAD_PARAM;
    }
    for (const Operand &o : ops)
        if (need && emu_overlap(ws, need, o.p, o.bytes)) {
            emu_api_error("%s: the workspace overlaps %s", fn, o.name);
            return CUDNN_STATUS_BAD_PARAM;
        }
    // Injected refusals (EMU_CUDNN_FAIL)
    const Modes &M = modes();
    if (M.all) {
        n_injected++;
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    if (M.misaligned) {
        bool mis = need && ((uintptr_t)ws & 15);
        for (const Operand &o : ops) mis |= ((uintptr_t)o.p & 15) != 0;
        if (mis) {
            n_injected++;
            return CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
        }
    }
    if (M.first) {
        auto key = std::make_pair((const void *)cd, d);
        auto it = refusals().find(key);
        if (it == refusals().end()) {
            refusals()[key] = Refusal{algo, cd->math, false, 0};
            n_injected++;
            return CUDNN_STATUS_NOT_SUPPORTED;
        }
        if (it->second.algo == algo && it->second.math == cd->math) {
            emu_api_error("%s: algorithm %d (math type %d) again, after cuDNN refused it for this convolution "
                          "descriptor (the candidate did not advance)", fn, algo, cd->math);
            if (++it->second.repeats > 20) lola_die("emu cuDNN: %s retried a refused algorithm 20 times", fn);
            return CUDNN_STATUS_NOT_SUPPORTED;
        }
        it->second.recovered = true;
    }
    // Statistics
    n_runs[d]++;
    if (((uintptr_t)w & 15) != 0) n_walign++;
    bool nondet = nondeterministic(d, algo);
    if (nondet && nn_cuda_deterministic && nn_cuda_deterministic()) n_nondet_det++;
    bool reduced = g.dt == CUDNN_DATA_BFLOAT16 || cd->math != CUDNN_FMA_MATH;
    bool gemm = kind_of(d, algo) == K_GEMM;
    if (reduced && !gemm) n_nongemm_reduced++;
    if (g.dt == CUDNN_DATA_BFLOAT16) n_bf16_runs++;
    else if (reduced) n_tf32_runs++;
    if (xd->sc == 1 && xd->c > 1) n_nhwc_runs++;
    // The workspace is the algorithm's: garbage after the call.
    if (need) memset(ws, 0xA5, need);
    int bits = !reduced ? 23 : g.dt == CUDNN_DATA_BFLOAT16 ? 7 : 10;
    if (reduced && !gemm) bits -= 4;
    float a = *(const float *)alpha, b = *(const float *)beta;
    std::vector<double> acc;
    if (d == D_FWD) {
        conv_fwd(g, load_tensor(*xd, x, bits), load_filter(*wd, w, bits, g.flip), acc);
        store_tensor(*yd, (void *)y, acc, a, b, nondet);
    } else if (d == D_DATA) {
        conv_data(g, load_tensor(*yd, y, bits), load_filter(*wd, w, bits, g.flip), acc);
        store_tensor(*xd, (void *)x, acc, a, b, nondet);
    } else {
        conv_filter(g, load_tensor(*xd, x, bits), load_tensor(*yd, y, bits), acc);
        store_filter(*wd, (void *)w, acc, a, b, nondet, g.flip);
    }
    return CUDNN_STATUS_SUCCESS;
}

template <typename T> T *create_desc() {
    T *t = new T();
    live().insert(t);
    return t;
}
template <typename T> cudnnStatus_t destroy_desc(T *t, const char *fn) {
    if (!t) return CUDNN_STATUS_SUCCESS;
    if (!live().erase(t)) {
        emu_api_error("%s: %p was not created (or was destroyed twice)", fn, (void *)t);
        return CUDNN_STATUS_BAD_PARAM;
    }
    delete t;
    return CUDNN_STATUS_SUCCESS;
}
bool dims_ok(const char *fn, int n, int c, int h, int w) {
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) {
        emu_api_error("%s: dimensions (%d, %d, %d, %d) must be positive", fn, n, c, h, w);
        return false;
    }
    return true;
}
} // namespace

// ---------------------------------------------------------------------------------------------
// API

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }
const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER: return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT: return "CUDNN_STATUS_BAD_PARAM_SIZE_INSUFFICIENT";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_(emulated, other)";
    }
}
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    if (!h) return CUDNN_STATUS_BAD_PARAM;
    if (modes().nohandle) {
        *h = nullptr;
        return CUDNN_STATUS_NOT_INITIALIZED;
    }
    *h = &the_handle;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t) { return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_SUCCESS; }
cudnnHandle_t emu_cudnn_handle(void) {
    static cudnnHandle_t h = [] {
        cudnnHandle_t r = nullptr;
        return cudnnCreate(&r) == CUDNN_STATUS_SUCCESS ? r : nullptr;
    }();
    return h;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = create_desc<EmuDnnTensor>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
    return destroy_desc(d, "cudnnDestroyTensorDescriptor");
}
cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int n, int c, int h, int w,
                                           int sn, int sc, int sh, int sw) {
    const char *fn = "cudnnSetTensor4dDescriptorEx";
    if (!known(d, fn, "tensor") || !dims_ok(fn, n, c, h, w)) return CUDNN_STATUS_BAD_PARAM;
    if (sn <= 0 || sc <= 0 || sh <= 0 || sw <= 0) {
        emu_api_error("%s: strides (%d, %d, %d, %d) must be positive", fn, sn, sc, sh, sw);
        return CUDNN_STATUS_BAD_PARAM;
    }
    d->set = true, d->dt = dt, d->n = n, d->c = c, d->h = h, d->w = w;
    d->sn = sn, d->sc = sc, d->sh = sh, d->sw = sw;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format, cudnnDataType_t dt,
                                         int n, int c, int h, int w) {
    const char *fn = "cudnnSetTensor4dDescriptor";
    if (!known(d, fn, "tensor") || !dims_ok(fn, n, c, h, w)) return CUDNN_STATUS_BAD_PARAM;
    if ((long long)n * c * h * w >= (1LL << 31)) {
        emu_api_error("%s: (%d, %d, %d, %d) has 2^31 elements or more (int strides)", fn, n, c, h, w);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (format == CUDNN_TENSOR_NCHW) return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, c * h * w, h * w, w, 1);
    if (format == CUDNN_TENSOR_NHWC) return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, h * w * c, 1, w * c, c);
    emu_api_error("%s: format %d is not emulated (NCHW, NHWC)", fn, format);
    return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t d, cudnnDataType_t *dt, int *n, int *c, int *h,
                                         int *w, int *sn, int *sc, int *sh, int *sw) {
    if (!known(d, "cudnnGetTensor4dDescriptor", "tensor")) return CUDNN_STATUS_BAD_PARAM;
    *dt = d->dt, *n = d->n, *c = d->c, *h = d->h, *w = d->w;
    *sn = (int)d->sn, *sc = (int)d->sc, *sh = (int)d->sh, *sw = (int)d->sw;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensorNdDescriptor(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int nbDims, const int dimA[],
                                         const int strideA[]) {
    if (nbDims != 4) {
        emu_api_error("cudnnSetTensorNdDescriptor: %d dimensions (only 4 are emulated)", nbDims);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return cudnnSetTensor4dDescriptorEx(d, dt, dimA[0], dimA[1], dimA[2], dimA[3], strideA[0], strideA[1], strideA[2],
                                        strideA[3]);
}
cudnnStatus_t cudnnGetTensorSizeInBytes(const cudnnTensorDescriptor_t d, size_t *size) {
    if (!known(d, "cudnnGetTensorSizeInBytes", "tensor") || !d->set) return CUDNN_STATUS_BAD_PARAM;
    *size = tensor_extent(*d) * elem_size(d->dt);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = create_desc<EmuDnnFilter>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
    return destroy_desc(d, "cudnnDestroyFilterDescriptor");
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
    const char *fn = "cudnnSetFilter4dDescriptor";
    if (!known(d, fn, "filter") || !dims_ok(fn, k, c, h, w)) return CUDNN_STATUS_BAD_PARAM;
    if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) {
        emu_api_error("%s: format %d is not emulated (NCHW = KCRS, NHWC = KRSC)", fn, format);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    d->set = true, d->dt = dt, d->fmt = format, d->k = k, d->c = c, d->r = h, d->s = w;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t d, cudnnDataType_t *dt,
                                         cudnnTensorFormat_t *format, int *k, int *c, int *h, int *w) {
    if (!known(d, "cudnnGetFilter4dDescriptor", "filter")) return CUDNN_STATUS_BAD_PARAM;
    *dt = d->dt, *format = d->fmt, *k = d->k, *c = d->c, *h = d->r, *w = d->s;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilterNdDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt, cudnnTensorFormat_t format,
                                         int nbDims, const int a[]) {
    if (nbDims != 4) {
        emu_api_error("cudnnSetFilterNdDescriptor: %d dimensions (only 4 are emulated)", nbDims);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return cudnnSetFilter4dDescriptor(d, dt, format, a[0], a[1], a[2], a[3]);
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = create_desc<EmuDnnConv>();
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
    refusals().erase(std::make_pair((const void *)d, (int)D_FWD));
    refusals().erase(std::make_pair((const void *)d, (int)D_DATA));
    refusals().erase(std::make_pair((const void *)d, (int)D_FILTER));
    return destroy_desc(d, "cudnnDestroyConvolutionDescriptor");
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int u, int v, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t ct) {
    const char *fn = "cudnnSetConvolution2dDescriptor";
    if (!known(d, fn, "convolution")) return CUDNN_STATUS_BAD_PARAM;
    if (ph < 0 || pw < 0 || u <= 0 || v <= 0 || dh <= 0 || dw <= 0 ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)) {
        emu_api_error("%s: pad %d %d, stride %d %d, dilation %d %d, mode %d", fn, ph, pw, u, v, dh, dw, mode);
        return CUDNN_STATUS_BAD_PARAM;
    }
    d->set = true, d->ph = ph, d->pw = pw, d->u = u, d->v = v, d->dh = dh, d->dw = dw, d->mode = mode, d->ct = ct;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t d, int *ph, int *pw, int *u, int *v,
                                              int *dh, int *dw, cudnnConvolutionMode_t *mode, cudnnDataType_t *ct) {
    if (!known(d, "cudnnGetConvolution2dDescriptor", "convolution")) return CUDNN_STATUS_BAD_PARAM;
    *ph = d->ph, *pw = d->pw, *u = d->u, *v = d->v, *dh = d->dh, *dw = d->dw, *mode = d->mode, *ct = d->ct;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    if (!known(d, "cudnnSetConvolutionMathType", "convolution")) return CUDNN_STATUS_BAD_PARAM;
    if (m != CUDNN_DEFAULT_MATH && m != CUDNN_TENSOR_OP_MATH && m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION &&
        m != CUDNN_FMA_MATH) {
        emu_api_error("cudnnSetConvolutionMathType: math type %d", m);
        return CUDNN_STATUS_BAD_PARAM;
    }
    d->math = m, d->math_set = true;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t *m) {
    if (!known(d, "cudnnGetConvolutionMathType", "convolution")) return CUDNN_STATUS_BAD_PARAM;
    *m = d->math;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
    if (!known(d, "cudnnSetConvolutionGroupCount", "convolution")) return CUDNN_STATUS_BAD_PARAM;
    if (groups != 1) {
        emu_api_error("cudnnSetConvolutionGroupCount: %d groups (only 1 is emulated)", groups);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    d->groups = groups;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd,
                                                    const cudnnTensorDescriptor_t xd, const cudnnFilterDescriptor_t wd,
                                                    int *n, int *c, int *h, int *w) {
    const char *fn = "cudnnGetConvolution2dForwardOutputDim";
    if (!known(cd, fn, "convolution") || !known(xd, fn, "input tensor") || !known(wd, fn, "filter"))
        return CUDNN_STATUS_BAD_PARAM;
    if (!cd->set || !xd->set || !wd->set || wd->c != xd->c) {
        emu_api_error("%s: descriptors not set, or filter channels %d != input channels %d", fn, wd->c, xd->c);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *n = xd->n, *c = wd->k;
    *h = (xd->h + 2 * cd->ph - cd->dh * (wd->r - 1) - 1) / cd->u + 1;
    *w = (xd->w + 2 * cd->pw - cd->dw * (wd->s - 1) - 1) / cd->v + 1;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t, int *count) {
    *count = (int)(sizeof fwd_heur / sizeof *fwd_heur);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t, int *count) {
    *count = (int)(sizeof data_heur / sizeof *data_heur);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t, int *count) {
    *count = (int)(sizeof filter_heur / sizeof *filter_heur);
    return CUDNN_STATUS_SUCCESS;
}

#define EMU_DNN_QUERY(fn, dir, find, x, w, y, perf_t)                                                                \
    do {                                                                                                            \
        if (h != &the_handle) {                                                                                     \
            emu_api_error("%s: handle %p is not the one cudnnCreate returned", fn, (void *)h);                      \
            return CUDNN_STATUS_BAD_PARAM;                                                                          \
        }                                                                                                           \
        Geo g;                                                                                                      \
        cudnnStatus_t st = check_config(fn, x, w, cd, y, &g);                                                       \
        if (st != CUDNN_STATUS_SUCCESS) return st;                                                                  \
        return fill_perf<perf_t>(dir, fn, find, g, requested, returned, perf);                                      \
    } while (0)

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                     const cudnnFilterDescriptor_t wd,
                                                     const cudnnConvolutionDescriptor_t cd,
                                                     const cudnnTensorDescriptor_t yd, int requested, int *returned,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnGetConvolutionForwardAlgorithm_v7", D_FWD, false, xd, wd, yd, cudnnConvolutionFwdAlgoPerf_t);
}
cudnnStatus_t cudnnFindConvolutionForwardAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                   const cudnnFilterDescriptor_t wd,
                                                   const cudnnConvolutionDescriptor_t cd,
                                                   const cudnnTensorDescriptor_t yd, int requested, int *returned,
                                                   cudnnConvolutionFwdAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnFindConvolutionForwardAlgorithm", D_FWD, true, xd, wd, yd, cudnnConvolutionFwdAlgoPerf_t);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t wd,
                                                          const cudnnTensorDescriptor_t dyd,
                                                          const cudnnConvolutionDescriptor_t cd,
                                                          const cudnnTensorDescriptor_t dxd, int requested,
                                                          int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnGetConvolutionBackwardDataAlgorithm_v7", D_DATA, false, dxd, wd, dyd,
                  cudnnConvolutionBwdDataAlgoPerf_t);
}
cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithm(cudnnHandle_t h, const cudnnFilterDescriptor_t wd,
                                                        const cudnnTensorDescriptor_t dyd,
                                                        const cudnnConvolutionDescriptor_t cd,
                                                        const cudnnTensorDescriptor_t dxd, int requested,
                                                        int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnFindConvolutionBackwardDataAlgorithm", D_DATA, true, dxd, wd, dyd,
                  cudnnConvolutionBwdDataAlgoPerf_t);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                            const cudnnTensorDescriptor_t dyd,
                                                            const cudnnConvolutionDescriptor_t cd,
                                                            const cudnnFilterDescriptor_t dwd, int requested,
                                                            int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnGetConvolutionBackwardFilterAlgorithm_v7", D_FILTER, false, xd, dwd, dyd,
                  cudnnConvolutionBwdFilterAlgoPerf_t);
}
cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithm(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                          const cudnnTensorDescriptor_t dyd,
                                                          const cudnnConvolutionDescriptor_t cd,
                                                          const cudnnFilterDescriptor_t dwd, int requested,
                                                          int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    EMU_DNN_QUERY("cudnnFindConvolutionBackwardFilterAlgorithm", D_FILTER, true, xd, dwd, dyd,
                  cudnnConvolutionBwdFilterAlgoPerf_t);
}

#define EMU_DNN_WS(fn, dir, x, w, y)                                                                                \
    do {                                                                                                            \
        Geo g;                                                                                                      \
        cudnnStatus_t st = check_config(fn, x, w, cd, y, &g);                                                       \
        if (st != CUDNN_STATUS_SUCCESS) return st;                                                                  \
        if ((int)algo < 0 || (int)algo >= algo_count(dir)) return CUDNN_STATUS_BAD_PARAM;                          \
        if (!supported(dir, (int)algo, g)) return CUDNN_STATUS_NOT_SUPPORTED;                                       \
        *bytes = ws_need(dir, (int)algo, tensor_op(cd->math), g);                                                   \
        return CUDNN_STATUS_SUCCESS;                                                                                \
    } while (0)
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t xd,
                                                      const cudnnFilterDescriptor_t wd,
                                                      const cudnnConvolutionDescriptor_t cd,
                                                      const cudnnTensorDescriptor_t yd, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t *bytes) {
    EMU_DNN_WS("cudnnGetConvolutionForwardWorkspaceSize", D_FWD, xd, wd, yd);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, const cudnnFilterDescriptor_t wd,
                                                           const cudnnTensorDescriptor_t dyd,
                                                           const cudnnConvolutionDescriptor_t cd,
                                                           const cudnnTensorDescriptor_t dxd,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes) {
    EMU_DNN_WS("cudnnGetConvolutionBackwardDataWorkspaceSize", D_DATA, dxd, wd, dyd);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, const cudnnTensorDescriptor_t xd,
                                                             const cudnnTensorDescriptor_t dyd,
                                                             const cudnnConvolutionDescriptor_t cd,
                                                             const cudnnFilterDescriptor_t dwd,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes) {
    EMU_DNN_WS("cudnnGetConvolutionBackwardFilterWorkspaceSize", D_FILTER, xd, dwd, dyd);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cd, cudnnConvolutionFwdAlgo_t algo, void *ws,
                                      size_t wsb, const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
    return execute(D_FWD, h, alpha, beta, xd, wd, cd, yd, x, w, y, (int)algo, ws, wsb);
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
                                           const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cd, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *ws, size_t wsb, const void *beta, const cudnnTensorDescriptor_t dxd,
                                           void *dx) {
    return execute(D_DATA, h, alpha, beta, dxd, wd, cd, dyd, dx, w, dy, (int)algo, ws, wsb);
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                             const void *x, const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws, size_t wsb,
                                             const void *beta, const cudnnFilterDescriptor_t dwd, void *dw) {
    return execute(D_FILTER, h, alpha, beta, xd, dwd, cd, dyd, x, dw, dy, (int)algo, ws, wsb);
}

cudnnStatus_t cudnnTransformTensor(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd, const void *x,
                                   const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
    const char *fn = "cudnnTransformTensor";
    if (h != &the_handle || !known(xd, fn, "input") || !known(yd, fn, "output") || !xd->set || !yd->set) {
        emu_api_error("%s: bad handle or descriptors", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (xd->n != yd->n || xd->c != yd->c || xd->h != yd->h || xd->w != yd->w) {
        emu_api_error("%s: dimensions differ", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    size_t bx = tensor_extent(*xd) * elem_size(xd->dt), by = tensor_extent(*yd) * elem_size(yd->dt);
    if (!x || !y || !emu_is_device_range(x, bx) || !emu_is_device_range(y, by) || emu_overlap(x, bx, y, by)) {
        emu_api_error("%s: operands outside device memory or overlapping", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    std::vector<float> v = load_tensor(*xd, x, 23);
    std::vector<double> acc(v.begin(), v.end());
    store_tensor(*yd, y, acc, *(const float *)alpha, *(const float *)beta, false);
    return CUDNN_STATUS_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// For the report (emu_core.cpp)

struct EmuDnnStats {
    long runs[3], injected, unsupported, walign, nondet_det, nongemm_reduced, tf32, bf16, nhwc, heuristics;
    long refused_keys, recovered_keys;
    const char *mode;
};
void emu_cudnn_stats(EmuDnnStats *s) {
    for (int i = 0; i < 3; i++) s->runs[i] = n_runs[i];
    s->injected = n_injected, s->unsupported = n_unsupported_runs, s->walign = n_walign;
    s->nondet_det = n_nondet_det, s->nongemm_reduced = n_nongemm_reduced, s->tf32 = n_tf32_runs;
    s->bf16 = n_bf16_runs, s->nhwc = n_nhwc_runs, s->heuristics = n_heuristics;
    s->refused_keys = s->recovered_keys = 0;
    for (auto &kv : refusals()) s->refused_keys++, s->recovered_keys += kv.second.recovered;
    s->mode = modes().text.empty() ? "none" : modes().text.c_str();
}
