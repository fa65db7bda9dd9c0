// conv.cu: 2-D convolution, stride 1, zero padding K/2 (nn.h), NCHW fp32.
//
// Main path: cuDNN (legacy convolution API, still part of cuDNN 9). One plan per shape holds the
// descriptors and, per direction (forward / backward-data / backward-filter), the usable algorithms:
//   * algorithms come from the cuDNN heuristics (cudnnGet*_v7) or, with LOLA_CUDNN_FIND=1, from
//     benchmarking (cudnnFind*), best first, within the workspace limit; the first is used, and a
//     call cuDNN refuses moves that direction to the next one (run_dir); a direction falls back only
//     when none is left;
//   * weights and weight gradients that are not 16-byte aligned go through an aligned scratch copy;
//   * LOLA_DETERMINISTIC=1 restricts the choice to CUDNN_DETERMINISTIC algorithms (cuDNN's fastest
//     backward algorithms are often not);
//   * math: CUDNN_FMA_MATH (true fp32) unless TF32 is on, then CUDNN_TENSOR_OP_MATH.
// LOLA_CONV_LAYOUT=nhwc (bf16 mode only): the bf16 plan uses NHWC x / y and a KRSC filter (cuDNN's
// tensor-core native layout, no internal transposes); the casts of x and dout to bf16 transpose in
// the same pass, the weight is transposed per call (K > 1; 1x1 filters are the same in both
// layouts), and the results come back to NCHW fp32 in the pass that converts them anyway. Same
// roundings as nchw.
// bf16 mode (LOLA_PRECISION=bf16, autocast semantics): a second plan per shape with bf16 x, w and y
// descriptors and fp32 compute (cuDNN's "pseudo bf16" configuration, tensor-op math): x and dout
// are cast to bf16 per call (scratch), w comes from the bf16 weight cache (precision.cu); the bf16
// output is converted back to fp32 (the forward adds the fp32 bias in the same pass; the weight
// gradient, computed with beta = 0 into a bf16 scratch, is added to the fp32 dw). The legacy API
// has no fp32 output for bf16 inputs, so outputs are rounded to bf16 once, as torch's are. A shape
// whose bf16 plan cuDNN refuses runs the fp32 path below (TF32 allowed), counted in
// nn_cuda_precision_fallback_calls, with one warning.
// Fallback path (LOLA_CONV=im2col, or automatically for a plan whenever cuDNN fails, with one
// warning): im2col + cuBLAS GEMM per sample and row band; the data gradient is the forward
// convolution of dout with the spatially flipped, in/out-transposed weights (stride 1 and 'same'
// padding make this exact), so it needs no scatter and stays deterministic.
// Bias forward/backward use our own kernels in both paths (fixed-order reductions).
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "precision.cuh"

// ---------------------------------------------------------------------------------------------
// Bias kernels

// out[b, c, p] += bias[c]
__global__ void conv_bias_fwd_kernel(float *out, const float *bias, size_t n, int C, int HW) {
    GRID_STRIDE(i, n) out[i] += bias[(i / HW) % C];
}

// db[c] += sum_{b, p} dout[b, c, p]: grid (C, NPART) partial sums, then one pass in fixed order.
#define BIAS_NPART 16
__global__ void conv_bias_part_kernel(float *part, const float *dout, int B, int C, int HW) {
    int c = blockIdx.x, j = blockIdx.y;
    size_t per = (size_t)B * HW;
    size_t lo = per * j / BIAS_NPART, hi = per * (j + 1) / BIAS_NPART;
    float s = 0.0f;
    for (size_t t = lo + threadIdx.x; t < hi; t += blockDim.x) {
        size_t b = t / HW, p = t % HW;
        s += dout[(b * C + c) * HW + p];
    }
    s = lcu_block_sum(s);
    if (threadIdx.x == 0) part[(size_t)c * BIAS_NPART + j] = s;
}
__global__ void conv_bias_sum_kernel(float *db, const float *part, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int j = 0; j < BIAS_NPART; j++) s += part[(size_t)c * BIAS_NPART + j];
    db[c] += s;
}

static void bias_forward(float *out, const float *b, int B, int C, int HW) {
    size_t n = (size_t)B * C * HW;
    conv_bias_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, b, n, C, HW);
    CUDA_LAUNCH_CHECK();
}
static void bias_backward(float *db, const float *dout, int B, int C, int HW) {
    float *part = (float *)lcu_scratch(LCU_SCR_PART, (size_t)C * BIAS_NPART * sizeof(float));
    conv_bias_part_kernel<<<dim3(C, BIAS_NPART), LCU_THREADS, 0, lcu_stream()>>>(part, dout, B, C, HW);
    CUDA_LAUNCH_CHECK();
    conv_bias_sum_kernel<<<lcu_cdiv(C, 128), 128, 0, lcu_stream()>>>(db, part, C);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// im2col fallback

// col (Cin*K*K, rows*W) for output rows [h0, h0 + rows) of one sample xb (Cin, H, W).
__global__ void im2col_kernel(float *col, const float *xb, int Cin, int H, int W, int K, int h0, int rows) {
    int pad = K / 2;
    size_t RW = (size_t)rows * W;
    size_t n = (size_t)Cin * K * K * RW;
    GRID_STRIDE(i, n) {
        size_t q = i % RW, row = i / RW;
        int kx = (int)(row % K), ky = (int)((row / K) % K), c = (int)(row / ((size_t)K * K));
        int h = h0 + (int)(q / W) + ky - pad, w = (int)(q % W) + kx - pad;
        col[i] = (h >= 0 && h < H && w >= 0 && w < W) ? xb[((size_t)c * H + h) * W + w] : 0.0f;
    }
}

// wt (Cin, Cout, K, K) = w (Cout, Cin, K, K) with in/out swapped and the kernel rotated by 180 deg.
__global__ void flip_weights_kernel(float *wt, const float *w, int Cout, int Cin, int K) {
    size_t n = (size_t)Cout * Cin * K * K;
    GRID_STRIDE(i, n) {
        int kx = (int)(i % K), ky = (int)((i / K) % K);
        size_t ci = (i / ((size_t)K * K)) % Cin, co = i / ((size_t)K * K * Cin);
        wt[((ci * Cout + co) * K + (K - 1 - ky)) * K + (K - 1 - kx)] = w[i];
    }
}

// Rows per band so that one im2col buffer stays under ~256 MiB.
static int band_rows(int Cin, int H, int W, int K) {
    size_t per_row = (size_t)Cin * K * K * W;
    size_t rows = ((size_t)64 << 20) / (per_row ? per_row : 1);
    if (rows < 1) rows = 1;
    if (rows > (size_t)H) rows = H;
    return (int)rows;
}

// out (B, Cout, H, W) = conv(x, w) without bias (beta = 0).
static void im2col_forward(float *out, const float *x, const float *w, int B, int Cin, int Cout, int H, int W,
                           int K) {
    int HW = H * W, CKK = Cin * K * K, R = band_rows(Cin, H, W, K);
    float *col = (float *)lcu_scratch(LCU_SCR_COL, (size_t)CKK * R * W * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * Cin * HW;
        float *ob = out + (size_t)b * Cout * HW;
        for (int h0 = 0; h0 < H; h0 += R) {
            int rows = H - h0 < R ? H - h0 : R;
            size_t n = (size_t)CKK * rows * W;
            im2col_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(col, xb, Cin, H, W, K, h0, rows);
            CUDA_LAUNCH_CHECK();
            // out_b[:, band] (Cout x rows*W, ld HW) = w (Cout x CKK) @ col (CKK x rows*W)
            lcu_gemm(0, 0, Cout, rows * W, CKK, 1.0f, w, CKK, col, rows * W, 0.0f, ob + (size_t)h0 * W, HW);
        }
    }
}

// dw (Cout, Cin*K*K) += sum_b dout_b (Cout x HW) @ col_b^T.
static void im2col_backward_filter(float *dw, const float *dout, const float *x, int B, int Cin, int Cout, int H,
                                   int W, int K) {
    int HW = H * W, CKK = Cin * K * K, R = band_rows(Cin, H, W, K);
    float *col = (float *)lcu_scratch(LCU_SCR_COL, (size_t)CKK * R * W * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * Cin * HW;
        const float *gb = dout + (size_t)b * Cout * HW;
        for (int h0 = 0; h0 < H; h0 += R) {
            int rows = H - h0 < R ? H - h0 : R;
            size_t n = (size_t)CKK * rows * W;
            im2col_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(col, xb, Cin, H, W, K, h0, rows);
            CUDA_LAUNCH_CHECK();
            lcu_gemm(0, 1, Cout, CKK, rows * W, 1.0f, gb + (size_t)h0 * W, HW, col, rows * W, 1.0f, dw, CKK);
        }
    }
}

static void im2col_backward_data(float *dx, const float *dout, const float *w, int B, int Cin, int Cout, int H,
                                 int W, int K) {
    size_t nw = (size_t)Cout * Cin * K * K;
    float *wt = (float *)lcu_scratch(LCU_SCR_WFLIP, nw * sizeof(float));
    flip_weights_kernel<<<lcu_grid(nw), LCU_THREADS, 0, lcu_stream()>>>(wt, w, Cout, Cin, K);
    CUDA_LAUNCH_CHECK();
    im2col_forward(dx, dout, wt, B, Cout, Cin, H, W, K);
}

// ---------------------------------------------------------------------------------------------
// cuDNN plans

// One usable (algorithm, workspace, math type) entry of cuDNN's perf list. The math type is set on
// the descriptor before each call: cuDNN's perf results are (algorithm, math type) pairs and the
// workspace size is that pair's (cudnnConvolutionFwdAlgoPerf_t.mathType). fp32 plans keep
// FMA_MATH (no TF32) whatever the entry says.
struct ConvCand {
    int algo; // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t of the direction
    size_t ws;
    cudnnMathType_t math;
};
#define CONV_MAX_CAND 8
enum { DIR_FWD = 0, DIR_DATA, DIR_FILTER, DIR_N };
// The usable candidates of one direction, best first (cuDNN's order), and the one in use: a call
// that cuDNN refuses at run time (e.g. a pointer alignment its kernel needs, an unsupported
// configuration the heuristics still listed) moves the direction to the next candidate and retries;
// only when none is left does the direction fall back (im2col, or the fp32 path for bf16 plans).
struct ConvDir {
    ConvCand c[CONV_MAX_CAND];
    int n, cur; // cur == n: exhausted
};

struct ConvPlan {
    int B, Cin, Cout, H, W, K, tf32, det, find, bf16;
    int nhwc; // bf16 plans with LOLA_CONV_LAYOUT=nhwc: x, y NHWC and the filter KRSC
    int failed; // cuDNN could not build this shape's plan at all: every direction falls back
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    ConvDir dir[DIR_N];
};

static std::vector<ConvPlan *> plans;
static int warned_fallback = 0, warned_bf16 = 0;

static size_t ws_limit(void) {
    const char *s = getenv("LOLA_CONV_WS_MB");
    long mb = s && s[0] ? atol(s) : 1024;
    if (mb < 0) mb = 0;
    return (size_t)mb << 20;
}

static void plan_warn(const ConvPlan *p, const char *what, cudnnStatus_t s) {
    if (p->bf16) {
        if (!warned_bf16)
            log_warn("warning: cuDNN bf16 %s failed for conv B=%d Cin=%d Cout=%d %dx%d K=%d (%s); using the fp32 path "
                     "for this shape (further bf16 fallbacks are silent)\n",
                     what, p->B, p->Cin, p->Cout, p->H, p->W, p->K, cudnnGetErrorString(s));
        warned_bf16 = 1;
        return;
    }
    if (!warned_fallback) {
        log_warn("warning: cuDNN %s failed for conv B=%d Cin=%d Cout=%d %dx%d K=%d (%s); using im2col + cuBLAS "
                 "for this shape (further fallbacks are silent)\n",
                 what, p->B, p->Cin, p->Cout, p->H, p->W, p->K, cudnnGetErrorString(s));
        warned_fallback = 1;
    }
}
// The whole plan failed (descriptors, heuristics, no usable algorithm): every direction falls back.
static void plan_fail(ConvPlan *p, const char *what, cudnnStatus_t s) {
    p->failed = 1;
    plan_warn(p, what, s);
}
// Every candidate of one direction failed at run time: that direction falls back from now on.
static void plan_fail_dir(ConvPlan *p, const char *what, cudnnStatus_t s) { plan_warn(p, what, s); }

#define TRY_DNN(p, what, call)                                                                       \
    do {                                                                                             \
        cudnnStatus_t s_ = (call);                                                                   \
        if (s_ != CUDNN_STATUS_SUCCESS) {                                                            \
            plan_fail(p, what, s_);                                                                  \
            return;                                                                                  \
        }                                                                                            \
    } while (0)

// GEMM-type algorithms: each output is a plain sum of products of (rounded) input and weight
// values. Winograd and FFT algorithms multiply *transformed* tiles instead; with TF32 or bf16
// operands the rounding then hits the transformed values and is amplified by the inverse
// transform, which breaks the error model of reduced precision (one rounding per operand,
// tests/gpu/test_gpu_ops.c). So tf32 and bf16 plans take GEMM-type algorithms only (cuDNN's
// tensor-core kernels are of this type); exact fp32 plans take any algorithm, as before.
static bool gemm_type(cudnnConvolutionFwdAlgo_t a) {
    return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}
static bool gemm_type(cudnnConvolutionBwdDataAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
static bool gemm_type(cudnnConvolutionBwdFilterAlgo_t a) {
    return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
           a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

// Collects the usable algorithms of a perf list (sorted best first by cuDNN) into d; returns how
// many. Without TF32, entries that would run on tensor cores (TF32 for fp32 data) are skipped;
// with reduced precision (tf32 / bf16) only GEMM-type algorithms are taken, and never an entry
// that lets cuDNN down-convert fp32 data (ALLOW_CONVERSION: fp16 rounding, outside the error model).
template <typename Perf>
static int collect_algos(const Perf *perf, int n, int det, int tf32, int bf16, size_t limit, ConvDir *d) {
    d->n = d->cur = 0;
    for (int i = 0; i < n && d->n < CONV_MAX_CAND; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (perf[i].memory > limit) continue;
        if (det && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
        if (tf32 && !gemm_type(perf[i].algo)) continue;
        if (!tf32 && (perf[i].mathType == CUDNN_TENSOR_OP_MATH ||
                      perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
            continue;
        if (tf32 && !bf16 && perf[i].mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
        ConvCand *c = &d->c[d->n++];
        c->algo = (int)perf[i].algo;
        c->ws = perf[i].memory;
        c->math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;
    }
    return d->n;
}

// The workspace of each candidate under the math type it will run with: cuDNN's perf entries give
// the size for the entry's own math type, and fp32 plans run every entry with FMA_MATH. Takes the
// larger of the two; drops candidates that then exceed the limit. Returns how many are left.
template <typename Q>
static int requery_workspace(ConvPlan *p, ConvDir *d, size_t limit, Q query) {
    int k = 0;
    for (int i = 0; i < d->n; i++) {
        ConvCand c = d->c[i];
        size_t sz = 0;
        if (cudnnSetConvolutionMathType(p->cd, c.math) == CUDNN_STATUS_SUCCESS && query(c.algo, &sz) == CUDNN_STATUS_SUCCESS &&
            sz > c.ws)
            c.ws = sz;
        if (c.ws <= limit) d->c[k++] = c;
    }
    d->n = k;
    d->cur = 0;
    // back to the plan's math type: the next direction's heuristics query runs with it
    cudnnSetConvolutionMathType(p->cd, p->tf32 || p->bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH);
    return k;
}

static void plan_build(ConvPlan *p) {
    cudnnHandle_t h = lcu_cudnn();
    if (!h) {
        p->failed = 1;
        return;
    }
    int pad = p->K / 2;
    cudnnDataType_t dt = p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    cudnnTensorFormat_t fmt = p->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW; // dims stay (N, C, H, W)
    int tensor_ops = p->tf32 || p->bf16;
    TRY_DNN(p, "descriptor", cudnnCreateTensorDescriptor(&p->xd));
    TRY_DNN(p, "descriptor", cudnnCreateTensorDescriptor(&p->yd));
    TRY_DNN(p, "descriptor", cudnnCreateFilterDescriptor(&p->wd));
    TRY_DNN(p, "descriptor", cudnnCreateConvolutionDescriptor(&p->cd));
    TRY_DNN(p, "descriptor",
            cudnnSetTensor4dDescriptor(p->xd, fmt, dt, p->B, p->Cin, p->H, p->W));
    TRY_DNN(p, "descriptor", cudnnSetTensor4dDescriptor(p->yd, fmt, dt, p->B, p->Cout, p->H, p->W));
    TRY_DNN(p, "descriptor", cudnnSetFilter4dDescriptor(p->wd, dt, fmt, p->Cout, p->Cin, p->K, p->K));
    TRY_DNN(p, "descriptor",
            cudnnSetConvolution2dDescriptor(p->cd, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // compute type CUDNN_DATA_FLOAT above: fp32 accumulation also for bf16 data
    TRY_DNN(p, "math type", cudnnSetConvolutionMathType(p->cd, tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    // output shape sanity (stride 1, same padding)
    int on, oc, oh, ow;
    TRY_DNN(p, "output shape", cudnnGetConvolution2dForwardOutputDim(p->cd, p->xd, p->wd, &on, &oc, &oh, &ow));
    if (on != p->B || oc != p->Cout || oh != p->H || ow != p->W) {
        plan_fail(p, "output shape", CUDNN_STATUS_BAD_PARAM);
        return;
    }
    size_t limit = ws_limit();
    int got;
    {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        if (p->find)
            TRY_DNN(p, "forward algorithm search",
                    cudnnFindConvolutionForwardAlgorithm(h, p->xd, p->wd, p->cd, p->yd,
                                                         CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
        else
            TRY_DNN(p, "forward algorithm heuristics",
                    cudnnGetConvolutionForwardAlgorithm_v7(h, p->xd, p->wd, p->cd, p->yd,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
        if (!collect_algos(perf, got, p->det, tensor_ops, p->bf16, limit, &p->dir[DIR_FWD]) ||
            !requery_workspace(p, &p->dir[DIR_FWD], limit, [&](int a, size_t *sz) {
                return cudnnGetConvolutionForwardWorkspaceSize(h, p->xd, p->wd, p->cd, p->yd, (cudnnConvolutionFwdAlgo_t)a, sz);
            })) {
            plan_fail(p, "forward algorithm choice", CUDNN_STATUS_NOT_SUPPORTED);
            return;
        }
    }
    {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        if (p->find)
            TRY_DNN(p, "backward-data algorithm search",
                    cudnnFindConvolutionBackwardDataAlgorithm(h, p->wd, p->yd, p->cd, p->xd,
                                                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
        else
            TRY_DNN(p, "backward-data algorithm heuristics",
                    cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->wd, p->yd, p->cd, p->xd,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
        if (!collect_algos(perf, got, p->det, tensor_ops, p->bf16, limit, &p->dir[DIR_DATA]) ||
            !requery_workspace(p, &p->dir[DIR_DATA], limit, [&](int a, size_t *sz) {
                return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->wd, p->yd, p->cd, p->xd,
                                                                    (cudnnConvolutionBwdDataAlgo_t)a, sz);
            })) {
            plan_fail(p, "backward-data algorithm choice", CUDNN_STATUS_NOT_SUPPORTED);
            return;
        }
    }
    {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        if (p->find)
            TRY_DNN(p, "backward-filter algorithm search",
                    cudnnFindConvolutionBackwardFilterAlgorithm(h, p->xd, p->yd, p->cd, p->wd,
                                                                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
        else
            TRY_DNN(p, "backward-filter algorithm heuristics",
                    cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->xd, p->yd, p->cd, p->wd,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
        if (!collect_algos(perf, got, p->det, tensor_ops, p->bf16, limit, &p->dir[DIR_FILTER]) ||
            !requery_workspace(p, &p->dir[DIR_FILTER], limit, [&](int a, size_t *sz) {
                return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->xd, p->yd, p->cd, p->wd,
                                                                      (cudnnConvolutionBwdFilterAlgo_t)a, sz);
            })) {
            plan_fail(p, "backward-filter algorithm choice", CUDNN_STATUS_NOT_SUPPORTED);
            return;
        }
    }
    if (lcu_verbose()) {
        const ConvCand *f = &p->dir[DIR_FWD].c[0], *d = &p->dir[DIR_DATA].c[0], *g = &p->dir[DIR_FILTER].c[0];
        fprintf(stderr,
                "[cuda] conv plan B=%d Cin=%d Cout=%d %dx%d K=%d%s%s%s: fwd algo %d (%zu B, math %d; %d candidates), "
                "bwd-data %d (%zu B, math %d; %d), bwd-filter %d (%zu B, math %d; %d)\n",
                p->B, p->Cin, p->Cout, p->H, p->W, p->K, p->bf16 ? " bf16" : p->tf32 ? " tf32" : "",
                p->nhwc ? " nhwc" : "", p->det ? " det" : "", f->algo, f->ws, (int)f->math, p->dir[DIR_FWD].n, d->algo, d->ws, (int)d->math,
                p->dir[DIR_DATA].n, g->algo, g->ws, (int)g->math, p->dir[DIR_FILTER].n);
    }
}

// bf16: the plan with bf16 data (bf16 mode); 0: the fp32 plan (TF32 per nn_cuda_tf32()).
static ConvPlan *get_plan(int B, int Cin, int Cout, int H, int W, int K, int bf16) {
    int tf32 = nn_cuda_tf32(), det = nn_cuda_deterministic();
    const char *fs = getenv("LOLA_CUDNN_FIND");
    int find = fs && fs[0] == '1';
    int nhwc = bf16 && nn_cuda_conv_layout() == NN_CONV_NHWC;
    for (ConvPlan *p : plans)
        if (p->B == B && p->Cin == Cin && p->Cout == Cout && p->H == H && p->W == W && p->K == K && p->tf32 == tf32 &&
            p->det == det && p->find == find && p->bf16 == bf16 && p->nhwc == nhwc)
            return p;
    ConvPlan *p = (ConvPlan *)calloc(1, sizeof(ConvPlan));
    if (!p) lola_die("out of host memory for a conv plan");
    p->B = B, p->Cin = Cin, p->Cout = Cout, p->H = H, p->W = W, p->K = K, p->tf32 = tf32, p->det = det;
    p->find = find, p->bf16 = bf16, p->nhwc = nhwc;
    // cuDNN 4-D descriptors take int strides: tensors of 2^31 elements or more go to im2col.
    if ((size_t)B * (Cin > Cout ? Cin : Cout) * H * W >= ((size_t)1 << 31)) p->failed = 1;
    else plan_build(p);
    plans.push_back(p);
    return p;
}

static int dir_ok(const ConvPlan *p, int d) { return !p->failed && p->dir[d].cur < p->dir[d].n; }

static int warned_retry = 0;
// Runs direction d of plan p with its current candidate: call(algo, workspace, bytes) issues the
// cuDNN call. On an error status the next candidate is tried (one warning per process); returns 1
// when a candidate succeeded, 0 when none is left (the caller falls back; plan_fail warns once).
// A retried call starts again from the same inputs: the statuses cuDNN returns for a refused
// configuration (BAD_PARAM*, NOT_SUPPORTED*) come before any kernel runs, so beta = 1 (the filter
// gradient's accumulation) sees dw unchanged.
template <typename F>
static int run_dir(ConvPlan *p, int d, const char *what, F call) {
    ConvDir *D = &p->dir[d];
    while (D->cur < D->n) {
        const ConvCand *c = &D->c[D->cur];
        void *ws = c->ws ? lcu_scratch(LCU_SCR_CONV_WS, c->ws) : NULL;
        cudnnStatus_t s = cudnnSetConvolutionMathType(p->cd, c->math);
        if (s == CUDNN_STATUS_SUCCESS) s = call(c->algo, ws, c->ws);
        if (s == CUDNN_STATUS_SUCCESS) return 1;
        D->cur++;
        if (D->cur == D->n) {
            plan_fail_dir(p, what, s);
            return 0;
        }
        if (!warned_retry)
            log_warn("warning: cuDNN %s%s algorithm %d failed for conv B=%d Cin=%d Cout=%d %dx%d K=%d (%s); trying the "
                     "next of %d candidates (further retries are silent)\n",
                     p->bf16 ? "bf16 " : "", what, c->algo, p->B, p->Cin, p->Cout, p->H, p->W, p->K,
                     cudnnGetErrorString(s), D->n);
        warned_retry = 1;
    }
    return 0;
}

// cuDNN's kernels may need 16-byte aligned operands, and parameter tensors sit at any float offset
// of the parameter buffer (params.h: no padding), unlike the activations (arena tensors are aligned).
// A misaligned weight is copied to an aligned scratch slot (weights are small next to the
// activations); a misaligned weight gradient is computed there and added to dw.
static int aligned16(const void *q) { return ((uintptr_t)q & 15) == 0; }
static const float *aligned_weight(const float *w, size_t nw) {
    if (aligned16(w)) return w;
    float *a = (float *)lcu_scratch(LCU_SCR_CONV_W, nw * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(a, w, nw * sizeof(float), cudaMemcpyDeviceToDevice, lcu_stream()));
    return a;
}
__global__ void conv_add_kernel(float *dst, const float *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}

static void check_conv_args(const char *fn, int B, int Cin, int Cout, int H, int W, int K) {
    if (B <= 0 || Cin <= 0 || Cout <= 0 || H <= 0 || W <= 0 || K <= 0 || K % 2 == 0)
        lola_die("%s: bad shape B=%d Cin=%d Cout=%d H=%d W=%d K=%d (K must be odd)", fn, B, Cin, Cout, H, W, K);
}

// ---------------------------------------------------------------------------------------------
// bf16 mode (cuDNN with bf16 data). Each returns 1 when done, 0 when the caller must use the fp32
// path (the bf16 plan failed: one warning, counted).

// NCHW fp32 <-> NHWC bf16 (LOLA_CONV_LAYOUT=nhwc): per sample a (C, P) <-> (P, C) transpose through
// 32 x 33 shared tiles (reads and writes coalesced, no bank conflicts), fused with the cast to bf16
// (round to nearest even, as lcu_to_bf16) or with the conversion back (as lcu_from_bf16[_bias]).
// The same kernels turn a KCRS weight into KRSC (B = Cout, C = Cin, P = K*K) and a KRSC weight
// gradient back. Grid (ceil(P / 32), ceil(C / 32), B), block (32, 8).
#define NHWC_TILE 32
__global__ void nchw_to_nhwc_bf16_kernel(lcu_bf16 *dst, const float *src, int C, int P) {
    __shared__ float tile[NHWC_TILE][NHWC_TILE + 1];
    const int p0 = blockIdx.x * NHWC_TILE, c0 = blockIdx.y * NHWC_TILE;
    const float *s = src + (size_t)blockIdx.z * C * P;
    lcu_bf16 *d = dst + (size_t)blockIdx.z * C * P;
    for (int j = threadIdx.y; j < NHWC_TILE; j += blockDim.y) { // tile[c - c0][p - p0]
        int c = c0 + j, q = p0 + threadIdx.x;
        if (c < C && q < P) tile[j][threadIdx.x] = s[(size_t)c * P + q];
    }
    __syncthreads();
    for (int j = threadIdx.y; j < NHWC_TILE; j += blockDim.y) {
        int q = p0 + j, c = c0 + threadIdx.x;
        if (c < C && q < P) d[(size_t)q * C + c] = __float2bfloat16_rn(tile[threadIdx.x][j]);
    }
}
// dst (B, C, P) = (accumulate: dst +) fp32(src (B, P, C)) (+ bias[c] when bias != NULL)
__global__ void nhwc_bf16_to_nchw_kernel(float *dst, const lcu_bf16 *src, const float *bias, int C, int P,
                                         int accumulate) {
    __shared__ float tile[NHWC_TILE][NHWC_TILE + 1];
    const int p0 = blockIdx.x * NHWC_TILE, c0 = blockIdx.y * NHWC_TILE;
    const lcu_bf16 *s = src + (size_t)blockIdx.z * C * P;
    float *d = dst + (size_t)blockIdx.z * C * P;
    for (int j = threadIdx.y; j < NHWC_TILE; j += blockDim.y) { // tile[c - c0][p - p0]
        int q = p0 + j, c = c0 + threadIdx.x;
        if (c < C && q < P) tile[threadIdx.x][j] = __bfloat162float(s[(size_t)q * C + c]);
    }
    __syncthreads();
    for (int j = threadIdx.y; j < NHWC_TILE; j += blockDim.y) {
        int c = c0 + j, q = p0 + threadIdx.x;
        if (c < C && q < P) {
            float v = tile[j][threadIdx.x];
            if (bias) v = __fadd_rn(v, bias[c]);
            size_t o = (size_t)c * P + q;
            d[o] = accumulate ? __fadd_rn(d[o], v) : v;
        }
    }
}
static dim3 nhwc_grid(int B, int C, int P) {
    if (B > 65535 || (C + NHWC_TILE - 1) / NHWC_TILE > 65535)
        lola_die("conv (nhwc): B = %d or C = %d too large for the transpose grid", B, C);
    return dim3((unsigned)((P + NHWC_TILE - 1) / NHWC_TILE), (unsigned)((C + NHWC_TILE - 1) / NHWC_TILE), (unsigned)B);
}

// The bf16 operand of an activation (B, C, H*W) fp32 for plan p: NCHW cast, or NHWC cast+transpose.
static const lcu_bf16 *bf16_act(const ConvPlan *p, int slot, const float *src, int C) {
    size_t n = (size_t)p->B * C * p->H * p->W;
    if (!p->nhwc) return lcu_bf16_of(slot, src, n);
    lcu_bf16 *d = (lcu_bf16 *)lcu_scratch(slot, (n ? n : 1) * sizeof(lcu_bf16));
    nchw_to_nhwc_bf16_kernel<<<nhwc_grid(p->B, C, p->H * p->W), dim3(NHWC_TILE, 8), 0, lcu_stream()>>>(d, src, C,
                                                                                                      p->H * p->W);
    CUDA_LAUNCH_CHECK();
    return d;
}
// The bf16 weight for plan p: the cached KCRS copy, or (nhwc, K > 1) a KRSC copy in scratch (for
// K = 1 the two layouts coincide).
static const lcu_bf16 *bf16_w(const ConvPlan *p, const float *w) {
    size_t nw = (size_t)p->Cout * p->Cin * p->K * p->K;
    if (!p->nhwc || p->K == 1) return lcu_bf16_weight(w, nw);
    lcu_bf16 *d = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_W, nw * sizeof(lcu_bf16));
    nchw_to_nhwc_bf16_kernel<<<nhwc_grid(p->Cout, p->Cin, p->K * p->K), dim3(NHWC_TILE, 8), 0, lcu_stream()>>>(
        d, w, p->Cin, p->K * p->K);
    CUDA_LAUNCH_CHECK();
    return d;
}
// dst (Bn, C, P) fp32 (=, or += with accumulate; + bias) from the bf16 result src of plan p (NCHW
// or, nhwc, (Bn, P, C)).
static void from_bf16_out(const ConvPlan *p, float *dst, const lcu_bf16 *src, const float *bias, int Bn, int C, int P,
                          int accumulate) {
    size_t n = (size_t)Bn * C * P;
    if (!p->nhwc || (P == 1 && !bias)) {
        if (bias) lcu_from_bf16_bias(dst, src, bias, n, C, P);
        else lcu_from_bf16(dst, src, n, accumulate);
        return;
    }
    nhwc_bf16_to_nchw_kernel<<<nhwc_grid(Bn, C, P), dim3(NHWC_TILE, 8), 0, lcu_stream()>>>(dst, src, bias, C, P,
                                                                                           accumulate);
    CUDA_LAUNCH_CHECK();
}

// The bf16 plan of this shape when bf16 mode and cuDNN are selected and the plan was built, else
// NULL (a refused plan counts one fallback call). Each direction may still be exhausted (dir_ok).
static ConvPlan *bf16_plan(int B, int Cin, int Cout, int H, int W, int K) {
    if (nn_cuda_precision() != NN_PREC_BF16 || nn_cuda_conv_impl() != NN_CONV_CUDNN) return NULL;
    ConvPlan *p = get_plan(B, Cin, Cout, H, W, K, 1);
    if (p->failed) {
        lcu_count_precision_fallback();
        return NULL;
    }
    return p;
}

static int bf16_forward(ConvPlan *p, float *out, const float *x, const float *w, const float *b) {
    if (!dir_ok(p, DIR_FWD)) {
        lcu_count_precision_fallback();
        return 0;
    }
    size_t ny = (size_t)p->B * p->Cout * p->H * p->W;
    const lcu_bf16 *xb = bf16_act(p, LCU_SCR_BF16_A, x, p->Cin), *wb = bf16_w(p, w);
    lcu_bf16 *yb = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_B, ny * sizeof(lcu_bf16));
    float one = 1.0f, zero = 0.0f;
    if (!run_dir(p, DIR_FWD, "forward", [&](int algo, void *ws, size_t wsb) {
            return cudnnConvolutionForward(lcu_cudnn(), &one, p->xd, xb, p->wd, wb, p->cd, (cudnnConvolutionFwdAlgo_t)algo,
                                           ws, wsb, &zero, p->yd, yb);
        })) {
        lcu_count_precision_fallback();
        return 0;
    }
    from_bf16_out(p, out, yb, b, p->B, p->Cout, p->H * p->W, 0); // out = fp32(y) + b
    return 1;
}

// dw += (through a bf16 scratch) and/or dx = ; *dw_done / *dx_done say which parts are done.
static void bf16_backward(ConvPlan *p, float *dx, float *dw, const float *dout, const float *x, const float *w,
                          int *dx_done, int *dw_done) {
    size_t nx = (size_t)p->B * p->Cin * p->H * p->W, nw = (size_t)p->Cout * p->Cin * p->K * p->K;
    float one = 1.0f, zero = 0.0f;
    const lcu_bf16 *gb = bf16_act(p, LCU_SCR_BF16_B, dout, p->Cout);
    if (dw) {
        const lcu_bf16 *xb = bf16_act(p, LCU_SCR_BF16_A, x, p->Cin);
        lcu_bf16 *dwb = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_P, nw * sizeof(lcu_bf16));
        if (dir_ok(p, DIR_FILTER) && run_dir(p, DIR_FILTER, "backward filter", [&](int algo, void *ws, size_t wsb) {
                return cudnnConvolutionBackwardFilter(lcu_cudnn(), &one, p->xd, xb, p->yd, gb, p->cd,
                                                      (cudnnConvolutionBwdFilterAlgo_t)algo, ws, wsb, &zero, p->wd, dwb);
            })) {
            from_bf16_out(p, dw, dwb, NULL, p->Cout, p->Cin, p->K * p->K, 1); // dw += (KRSC -> KCRS when nhwc)
            *dw_done = 1;
        } else {
            lcu_count_precision_fallback();
        }
    }
    if (dx) {
        const lcu_bf16 *wb = bf16_w(p, w);
        // dx in bf16 reuses the x slot: the filter gradient above, queued first, has read x already.
        lcu_bf16 *dxb = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_A, nx * sizeof(lcu_bf16));
        if (dir_ok(p, DIR_DATA) && run_dir(p, DIR_DATA, "backward data", [&](int algo, void *ws, size_t wsb) {
                return cudnnConvolutionBackwardData(lcu_cudnn(), &one, p->wd, wb, p->yd, gb, p->cd,
                                                    (cudnnConvolutionBwdDataAlgo_t)algo, ws, wsb, &zero, p->xd, dxb);
            })) {
            from_bf16_out(p, dx, dxb, NULL, p->B, p->Cin, p->H * p->W, 0);
            *dx_done = 1;
        } else {
            lcu_count_precision_fallback();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ops

extern "C" void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin, int Cout,
                               int H, int W, int K) {
    check_conv_args("conv2d_forward", B, Cin, Cout, H, W, K);
    lcu_ensure_init();
    ConvPlan *pb = bf16_plan(B, Cin, Cout, H, W, K);
    if (pb && bf16_forward(pb, out, x, w, b)) return;
    ConvPlan *p = nn_cuda_conv_impl() == NN_CONV_CUDNN ? get_plan(B, Cin, Cout, H, W, K, 0) : NULL;
    int done = 0;
    if (p && dir_ok(p, DIR_FWD)) {
        const float *wa = aligned_weight(w, (size_t)Cout * Cin * K * K);
        float one = 1.0f, zero = 0.0f;
        done = run_dir(p, DIR_FWD, "forward", [&](int algo, void *ws, size_t wsb) {
            return cudnnConvolutionForward(lcu_cudnn(), &one, p->xd, x, p->wd, wa, p->cd, (cudnnConvolutionFwdAlgo_t)algo,
                                           ws, wsb, &zero, p->yd, out);
        });
    }
    if (!done) {
        if (p) lcu_count_conv_fallback();
        im2col_forward(out, x, w, B, Cin, Cout, H, W, K);
    }
    if (b) bias_forward(out, b, B, Cout, H * W);
}

extern "C" void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                                int B, int Cin, int Cout, int H, int W, int K) {
    check_conv_args("conv2d_backward", B, Cin, Cout, H, W, K);
    lcu_ensure_init();
    if (db) bias_backward(db, dout, B, Cout, H * W);
    ConvPlan *pb = dx || dw ? bf16_plan(B, Cin, Cout, H, W, K) : NULL;
    if (pb) {
        int dx_done = 0, dw_done = 0;
        bf16_backward(pb, dx, dw, dout, x, w, &dx_done, &dw_done);
        if (dx_done) dx = NULL; // what is left goes through the fp32 path
        if (dw_done) dw = NULL;
        if (!dx && !dw) return;
    }
    ConvPlan *p = nn_cuda_conv_impl() == NN_CONV_CUDNN ? get_plan(B, Cin, Cout, H, W, K, 0) : NULL;
    const size_t nw = (size_t)Cout * Cin * K * K;
    float one = 1.0f, zero = 0.0f;
    if (dw) {
        int done = 0;
        if (p && dir_ok(p, DIR_FILTER)) {
            // dw += grad, in place when dw is aligned; else grad (beta = 0) in an aligned slot, then added
            int direct = aligned16(dw);
            float *dst = direct ? dw : (float *)lcu_scratch(LCU_SCR_CONV_W, nw * sizeof(float));
            done = run_dir(p, DIR_FILTER, "backward filter", [&](int algo, void *ws, size_t wsb) {
                return cudnnConvolutionBackwardFilter(lcu_cudnn(), &one, p->xd, x, p->yd, dout, p->cd,
                                                      (cudnnConvolutionBwdFilterAlgo_t)algo, ws, wsb, direct ? &one : &zero,
                                                      p->wd, dst);
            });
            if (done && !direct) {
                conv_add_kernel<<<lcu_grid(nw), LCU_THREADS, 0, lcu_stream()>>>(dw, dst, nw);
                CUDA_LAUNCH_CHECK();
            }
        }
        if (!done) {
            if (p) lcu_count_conv_fallback();
            im2col_backward_filter(dw, dout, x, B, Cin, Cout, H, W, K);
        }
    }
    if (dx) {
        int done = 0;
        if (p && dir_ok(p, DIR_DATA)) {
            const float *wa = aligned_weight(w, nw); // after the filter gradient: the slot is free again
            done = run_dir(p, DIR_DATA, "backward data", [&](int algo, void *ws, size_t wsb) {
                return cudnnConvolutionBackwardData(lcu_cudnn(), &one, p->wd, wa, p->yd, dout, p->cd,
                                                    (cudnnConvolutionBwdDataAlgo_t)algo, ws, wsb, &zero, p->xd, dx);
            });
        }
        if (!done) {
            if (p) lcu_count_conv_fallback();
            im2col_backward_data(dx, dout, w, B, Cin, Cout, H, W, K);
        }
    }
}
