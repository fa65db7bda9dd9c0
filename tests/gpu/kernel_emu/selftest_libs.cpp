// selftest_libs.cpp: checks of the mock libraries of the emulation (emu_cudnn.cpp,
// emu_cublaslt.cpp, emu_cublas.cpp) against naive loops written here independently (gather form
// for every direction, one double sum per output element), run by run.sh after selftest.cu:
//   cuDNN: forward / backward-data / backward-filter with padding, stride, dilation, both modes
//   (cross-correlation, convolution); NHWC tensors with KRSC filters give the NCHW results bit for
//   bit; bf16 data gives bf16(exact) outputs; TF32 rounding of the operands with tensor-op math
//   (none with FMA math); alpha / beta (beta = 0 ignores NaN in y); non-deterministic algorithms
//   differ between calls; the perf list; misuse (short workspace, math type never set, shapes
//   that disagree, an output overlapping an input, a host pointer) reported.
//   cuBLASLt: D = op(A) op(B) + bias (BIAS), bias gradients (BGRADB: the columns of op(B)), the
//   heuristic's answer to the alignment preferences, a misaligned pointer on the aligned algorithm.
//   cuBLAS: GemmEx with bf16 operands, strided-batched SGEMM, TF32 rounding in TF32 mode.
// PASS / FAIL lines as tests/test.h; exit status 0 when all pass.
#include <cmath>
#include <vector>

#include "cuda_emu.h"
#include "emu_cublaslt.h"
#include "emu_cudnn.h"

#include "common.h"

void *emu_dev_alloc(size_t bytes, int fill, const char *what);
void emu_dev_free(void *p, const char *who);
long emu_api_error_count(void);
void emu_reset_counters(void);
cublasHandle_t emu_cublas_handle(void);
extern bool emu_quiet, emu_report;

static int n_pass = 0, n_fail = 0;
#define EXPECT(cond, ...)                                                                                             \
    do {                                                                                                             \
        bool ok_ = (cond);                                                                                           \
        printf("%s emu selftest: ", ok_ ? "PASS" : "FAIL");                                                          \
        printf(__VA_ARGS__);                                                                                         \
        printf("\n");                                                                                                \
        ok_ ? n_pass++ : n_fail++;                                                                                   \
    } while (0)

static uint64_t seed = 12345;
static float rnd() {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((seed >> 40) * (1.0 / (1ULL << 24)) * 2.0 - 1.0);
}
static float *dev_floats(size_t n, const char *what) { return (float *)emu_dev_alloc(n * sizeof(float), 0, what); }
static long api_delta() {
    static long last = 0;
    long c = emu_api_error_count(), d = c - last;
    last = c;
    return d;
}

// Naive 2-D convolution (NCHW, KCRS), one double sum per output element.
struct G {
    int N, C, H, W, K, R, S, ph, pw, u, v, dh, dw;
    bool flip;
    int P() const { return (H + 2 * ph - dh * (R - 1) - 1) / u + 1; }
    int Q() const { return (W + 2 * pw - dw * (S - 1) - 1) / v + 1; }
};
static double wat(const G &g, const float *w, int k, int c, int r, int s) {
    if (g.flip) r = g.R - 1 - r, s = g.S - 1 - s;
    return w[(((size_t)k * g.C + c) * g.R + r) * g.S + s];
}
static std::vector<double> ref_fwd(const G &g, const float *x, const float *w) {
    int P = g.P(), Q = g.Q();
    std::vector<double> y((size_t)g.N * g.K * P * Q);
    for (int n = 0; n < g.N; n++)
        for (int k = 0; k < g.K; k++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++) {
                    double s = 0;
                    for (int c = 0; c < g.C; c++)
                        for (int r = 0; r < g.R; r++)
                            for (int t = 0; t < g.S; t++) {
                                int h = p * g.u - g.ph + r * g.dh, ww = q * g.v - g.pw + t * g.dw;
                                if (h >= 0 && h < g.H && ww >= 0 && ww < g.W)
                                    s += x[(((size_t)n * g.C + c) * g.H + h) * g.W + ww] * wat(g, w, k, c, r, t);
                            }
                    y[(((size_t)n * g.K + k) * P + p) * Q + q] = s;
                }
    return y;
}
static std::vector<double> ref_data(const G &g, const float *dy, const float *w) { // gather form
    int P = g.P(), Q = g.Q();
    std::vector<double> dx((size_t)g.N * g.C * g.H * g.W);
    for (int n = 0; n < g.N; n++)
        for (int c = 0; c < g.C; c++)
            for (int h = 0; h < g.H; h++)
                for (int ww = 0; ww < g.W; ww++) {
                    double s = 0;
                    for (int k = 0; k < g.K; k++)
                        for (int r = 0; r < g.R; r++)
                            for (int t = 0; t < g.S; t++) {
                                int ph = h + g.ph - r * g.dh, pq = ww + g.pw - t * g.dw;
                                if (ph < 0 || pq < 0 || ph % g.u || pq % g.v) continue;
                                int p = ph / g.u, q = pq / g.v;
                                if (p < P && q < Q) s += dy[(((size_t)n * g.K + k) * P + p) * Q + q] * wat(g, w, k, c, r, t);
                            }
                    dx[(((size_t)n * g.C + c) * g.H + h) * g.W + ww] = s;
                }
    return dx;
}
static std::vector<double> ref_filter(const G &g, const float *x, const float *dy) {
    int P = g.P(), Q = g.Q();
    std::vector<double> dw((size_t)g.K * g.C * g.R * g.S);
    for (int k = 0; k < g.K; k++)
        for (int c = 0; c < g.C; c++)
            for (int r = 0; r < g.R; r++)
                for (int t = 0; t < g.S; t++) {
                    double s = 0;
                    for (int n = 0; n < g.N; n++)
                        for (int p = 0; p < P; p++)
                            for (int q = 0; q < Q; q++) {
                                int h = p * g.u - g.ph + r * g.dh, ww = q * g.v - g.pw + t * g.dw;
                                if (h >= 0 && h < g.H && ww >= 0 && ww < g.W)
                                    s += (double)dy[(((size_t)n * g.K + k) * P + p) * Q + q] *
                                         x[(((size_t)n * g.C + c) * g.H + h) * g.W + ww];
                            }
                    int rr = g.flip ? g.R - 1 - r : r, tt = g.flip ? g.S - 1 - t : t;
                    dw[(((size_t)k * g.C + c) * g.R + rr) * g.S + tt] = s;
                }
    return dw;
}
static double max_rel(const float *got, const std::vector<double> &ref) {
    double m = 0, scale = 1e-30;
    for (double r : ref) scale = std::max(scale, std::fabs(r));
    for (size_t i = 0; i < ref.size(); i++) m = std::max(m, std::fabs(got[i] - ref[i]) / scale);
    return m;
}
// NCHW (n, c, h, w) -> NHWC, and KCRS -> KRSC (same function: (B, C, P) -> (B, P, C)).
static void to_last(const float *src, float *dst, int B, int C, int P) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < P; p++) dst[((size_t)b * P + p) * C + c] = src[((size_t)b * C + c) * P + p];
}

static void test_cudnn(void) {
    cudnnHandle_t h;
    EXPECT(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS && h, "cudnnCreate");
    const G cases[2] = {{2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, false}, {2, 5, 9, 8, 3, 3, 2, 2, 1, 2, 2, 2, 1, true}};
    float one = 1.0f, zero = 0.0f;
    for (int ci = 0; ci < 2; ci++) {
        const G &g = cases[ci];
        int P = g.P(), Q = g.Q();
        size_t nx = (size_t)g.N * g.C * g.H * g.W, nw = (size_t)g.K * g.C * g.R * g.S, ny = (size_t)g.N * g.K * P * Q;
        float *x = dev_floats(nx, "x"), *w = dev_floats(nw, "w"), *y = dev_floats(ny, "y"), *dx = dev_floats(nx, "dx");
        float *dw = dev_floats(nw, "dw"), *dy = dev_floats(ny, "dy");
        for (size_t i = 0; i < nx; i++) x[i] = rnd();
        for (size_t i = 0; i < nw; i++) w[i] = rnd();
        for (size_t i = 0; i < ny; i++) dy[i] = rnd();
        cudnnTensorDescriptor_t xd, yd;
        cudnnFilterDescriptor_t wd;
        cudnnConvolutionDescriptor_t cd;
        cudnnCreateTensorDescriptor(&xd), cudnnCreateTensorDescriptor(&yd), cudnnCreateFilterDescriptor(&wd);
        cudnnCreateConvolutionDescriptor(&cd);
        cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.N, g.C, g.H, g.W);
        cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g.N, g.K, P, Q);
        cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, g.K, g.C, g.R, g.S);
        cudnnSetConvolution2dDescriptor(cd, g.ph, g.pw, g.u, g.v, g.dh, g.dw,
                                        g.flip ? CUDNN_CONVOLUTION : CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
        cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);
        int on, oc, oh, ow;
        cudnnGetConvolution2dForwardOutputDim(cd, xd, wd, &on, &oc, &oh, &ow);
        char tag[96];
        snprintf(tag, sizeof tag, "pad %d %d stride %d %d dilation %d %d%s", g.ph, g.pw, g.u, g.v, g.dh, g.dw,
                 g.flip ? ", convolution mode" : "");
        EXPECT(on == g.N && oc == g.K && oh == P && ow == Q, "cuDNN output dims (%d, %d, %d, %d) [%s]", on, oc, oh, ow, tag);
        cudnnStatus_t s1 = cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                                   NULL, 0, &zero, yd, y);
        void *ws = emu_dev_alloc(1 << 20, 0, "ws");
        cudnnStatus_t s2 = cudnnConvolutionBackwardData(h, &one, wd, w, yd, dy, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                        ws, 1 << 20, &zero, xd, dx);
        cudnnStatus_t s3 = cudnnConvolutionBackwardFilter(h, &one, xd, x, yd, dy, cd,
                                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0, &zero, wd, dw);
        double e1 = max_rel(y, ref_fwd(g, x, w)), e2 = max_rel(dx, ref_data(g, dy, w)), e3 = max_rel(dw, ref_filter(g, x, dy));
        EXPECT(!s1 && !s2 && !s3 && e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6,
               "cuDNN fp32 forward / backward-data / backward-filter = naive loops (rel. err %.1e %.1e %.1e) [%s]", e1, e2,
               e3, tag);
        // NHWC tensors and a KRSC filter: the same numbers
        float *xh = dev_floats(nx, "x nhwc"), *wh = dev_floats(nw, "w krsc"), *yh = dev_floats(ny, "y nhwc");
        float *dyh = dev_floats(ny, "dy nhwc"), *dxh = dev_floats(nx, "dx nhwc"), *dwh = dev_floats(nw, "dw krsc");
        to_last(x, xh, g.N, g.C, g.H * g.W), to_last(w, wh, g.K, g.C, g.R * g.S), to_last(dy, dyh, g.N, g.K, P * Q);
        cudnnTensorDescriptor_t xn, yn;
        cudnnFilterDescriptor_t wn;
        cudnnCreateTensorDescriptor(&xn), cudnnCreateTensorDescriptor(&yn), cudnnCreateFilterDescriptor(&wn);
        cudnnSetTensor4dDescriptor(xn, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.N, g.C, g.H, g.W);
        cudnnSetTensor4dDescriptor(yn, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, g.N, g.K, P, Q);
        cudnnSetFilter4dDescriptor(wn, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, g.K, g.C, g.R, g.S);
        size_t need = 0;
        cudnnGetConvolutionBackwardDataWorkspaceSize(h, wn, yn, cd, xn, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &need);
        s1 = cudnnConvolutionForward(h, &one, xn, xh, wn, wh, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0,
                                     &zero, yn, yh);
        s2 = cudnnConvolutionBackwardData(h, &one, wn, wh, yn, dyh, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ws, need,
                                          &zero, xn, dxh);
        s3 = cudnnConvolutionBackwardFilter(h, &one, xn, xh, yn, dyh, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ws, 1 << 20,
                                            &zero, wn, dwh);
        std::vector<float> t1(ny), t2(nx), t3(nw);
        to_last(y, t1.data(), g.N, g.K, P * Q), to_last(dx, t2.data(), g.N, g.C, g.H * g.W);
        to_last(dw, t3.data(), g.K, g.C, g.R * g.S);
        // (dw came from the non-deterministic ALGO_0: compare the KRSC result with the reference instead)
        std::vector<float> dwk(nw);
        for (int k = 0; k < g.K; k++)
            for (int c = 0; c < g.C; c++)
                for (int r = 0; r < g.R * g.S; r++)
                    dwk[((size_t)k * g.C + c) * g.R * g.S + r] = dwh[((size_t)k * g.R * g.S + r) * g.C + c];
        bool same = !memcmp(t1.data(), yh, ny * 4) && !memcmp(t2.data(), dxh, nx * 4) && need > 0;
        double ew = max_rel(dwk.data(), ref_filter(g, x, dy));
        EXPECT(s1 == 0 && s2 == 0 && s3 == 0 && same && ew < 1e-6, "cuDNN NHWC tensors + KRSC filter give the NCHW / KCRS "
               "results bit for bit (forward, backward data), the same weight gradient (%.1e) [%s]", ew, tag);
        // alpha / beta
        std::vector<float> y0(y, y + ny);
        float two = 2.0f;
        cudnnConvolutionForward(h, &two, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &one, yd, y);
        double e = 0;
        for (size_t i = 0; i < ny; i++) e = std::max(e, (double)std::fabs(y[i] - 3.0f * y0[i]));
        for (size_t i = 0; i < ny; i++) y[i] = NAN;
        cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, yd, y);
        size_t nan = 0;
        for (size_t i = 0; i < ny; i++) nan += std::isnan(y[i]);
        EXPECT(e < 1e-5 && nan == 0, "cuDNN alpha = 2, beta = 1 accumulates (err %.1e); beta = 0 never reads y (%zu NaN)", e,
               nan);
        // TF32 rounding with tensor-op math, none with FMA math
        cudnnSetConvolutionMathType(cd, CUDNN_TENSOR_OP_MATH);
        cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, ws, 1 << 20, &zero,
                                yd, y);
        std::vector<float> xr(x, x + nx), wr(w, w + nw);
        for (float &f : xr) f = emu_round_mantissa(f, 10);
        for (float &f : wr) f = emu_round_mantissa(f, 10);
        double et = max_rel(y, ref_fwd(g, xr.data(), wr.data())), ex = max_rel(y, ref_fwd(g, x, w));
        EXPECT(et < 1e-6 && ex > 1e-5, "cuDNN TENSOR_OP_MATH on fp32 data = naive loops on TF32-rounded operands (%.1e; "
               "%.1e from the exact result)", et, ex);
        cudnnSetConvolutionMathType(cd, CUDNN_FMA_MATH);
        // non-deterministic algorithm: two calls differ, a deterministic one does not
        std::vector<float> a(nw), b(nw);
        cudnnConvolutionBackwardFilter(h, &one, xd, x, yd, dy, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0, &zero, wd, dw);
        memcpy(a.data(), dw, nw * 4);
        cudnnConvolutionBackwardFilter(h, &one, xd, x, yd, dy, cd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0, &zero, wd, dw);
        memcpy(b.data(), dw, nw * 4);
        EXPECT(memcmp(a.data(), b.data(), nw * 4) != 0 && max_rel(dw, ref_filter(g, x, dy)) < 1e-6,
               "cuDNN non-deterministic algorithm: two calls differ in the last bits, both correct");
        for (auto d : {xn, yn}) cudnnDestroyTensorDescriptor(d);
        cudnnDestroyFilterDescriptor(wn);
        for (float *p : {xh, wh, yh, dyh, dxh, dwh}) emu_dev_free(p, "st");
        if (ci == 0) {
            // bf16 data: bf16(exact) outputs
            __nv_bfloat16 *xb = (__nv_bfloat16 *)emu_dev_alloc(nx * 2, 0, "xb"), *wb = (__nv_bfloat16 *)emu_dev_alloc(nw * 2, 0, "wb");
            __nv_bfloat16 *yb = (__nv_bfloat16 *)emu_dev_alloc(ny * 2, 0, "yb");
            std::vector<float> xf(nx), wf(nw);
            for (size_t i = 0; i < nx; i++) xb[i] = __float2bfloat16_rn(x[i]), xf[i] = __bfloat162float(xb[i]);
            for (size_t i = 0; i < nw; i++) wb[i] = __float2bfloat16_rn(w[i]), wf[i] = __bfloat162float(wb[i]);
            cudnnTensorDescriptor_t xbd, ybd;
            cudnnFilterDescriptor_t wbd;
            cudnnCreateTensorDescriptor(&xbd), cudnnCreateTensorDescriptor(&ybd), cudnnCreateFilterDescriptor(&wbd);
            cudnnSetTensor4dDescriptor(xbd, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, g.N, g.C, g.H, g.W);
            cudnnSetTensor4dDescriptor(ybd, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, g.N, g.K, P, Q);
            cudnnSetFilter4dDescriptor(wbd, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NCHW, g.K, g.C, g.R, g.S);
            cudnnStatus_t sb = cudnnConvolutionForward(h, &one, xbd, xb, wbd, wb, cd,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, ybd, yb);
            std::vector<double> r = ref_fwd(g, xf.data(), wf.data());
            size_t off = 0;
            for (size_t i = 0; i < ny; i++) off += yb[i].x != __float2bfloat16_rn((float)r[i]).x;
            EXPECT(sb == 0 && off <= ny / 100, "cuDNN bf16 data: outputs are bf16(exact sum) (%zu of %zu differ: double "
                   "rounding through fp32 only)", off, ny);
            // misuse: mixed data types
            emu_quiet = true;
            api_delta();
            sb = cudnnConvolutionForward(h, &one, xbd, xb, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0,
                                         &zero, ybd, yb);
            EXPECT(sb != 0 && api_delta() == 1, "reported: cuDNN descriptors with different data types");
            emu_quiet = false;
            cudnnDestroyTensorDescriptor(xbd), cudnnDestroyTensorDescriptor(ybd), cudnnDestroyFilterDescriptor(wbd);
            emu_dev_free(xb, "st"), emu_dev_free(wb, "st"), emu_dev_free(yb, "st");
            // perf list
            cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
            int got = 0;
            cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd, yd, cd, wd, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf);
            int top = 0, nondet = 0, unsup = 0, wsn = 0;
            for (int i = 0; i < got; i++) {
                top += perf[i].mathType == CUDNN_TENSOR_OP_MATH, nondet += perf[i].determinism == CUDNN_NON_DETERMINISTIC;
                unsup += perf[i].status != CUDNN_STATUS_SUCCESS, wsn += perf[i].memory > 0;
            }
            EXPECT(got == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT && top > 0 && nondet > 0 && wsn > 0,
                   "cuDNN backward-filter heuristics: %d entries, %d tensor-op, %d non-deterministic, %d not supported, "
                   "%d with a workspace", got, top, nondet, unsup, wsn);
            // misuse
            emu_quiet = true;
            api_delta();
            cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, NULL, 0, &zero, yd, y);
            long a1 = api_delta();
            cudnnConvolutionBackwardData(h, &one, wd, w, yd, dy, cd, CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, NULL, 0, &zero, xd,
                                         dy); // dx inside dy
            long a2 = api_delta();
            float hostx[4];
            cudnnConvolutionForward(h, &one, xd, hostx, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero,
                                    yd, y);
            long a3 = api_delta();
            cudnnConvolutionForward(h, &one, yd, y, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, xd, x);
            long a4 = api_delta();
            cudnnConvolutionDescriptor_t cu;
            cudnnCreateConvolutionDescriptor(&cu);
            cudnnSetConvolution2dDescriptor(cu, g.ph, g.pw, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
            cudnnConvolutionForward(h, &one, xd, x, wd, w, cu, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, yd, y);
            long a5 = api_delta();
            cudnnDestroyConvolutionDescriptor(cu);
            emu_quiet = false;
            EXPECT(a1 == 1 && a2 == 1 && a3 == 1 && a4 == 1 && a5 == 1, "reported: cuDNN workspace below the algorithm's "
                   "(%ld), output overlapping an input (%ld), a host pointer (%ld), shapes that disagree (%ld), math type "
                   "never set (%ld)", a1, a2, a3, a4, a5);
        }
        cudnnDestroyTensorDescriptor(xd), cudnnDestroyTensorDescriptor(yd), cudnnDestroyFilterDescriptor(wd);
        cudnnDestroyConvolutionDescriptor(cd);
        for (float *p : {x, w, y, dx, dw, dy}) emu_dev_free(p, "st");
        emu_dev_free(ws, "st");
    }
}

static void test_lt(void) {
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    const int m = 7, n = 5, k = 9, lda = 12, ldb = 10, ldd = 10; // A stored (k x m), transposed; B (k x n)
    float *A = dev_floats((size_t)lda * m + 1, "A"), *B = dev_floats((size_t)ldb * n, "B");
    float *D = dev_floats((size_t)ldd * n, "D"), *bias = dev_floats(m, "bias"), *g = dev_floats(n, "bgrad");
    for (int i = 0; i < lda * m + 1; i++) A[i] = rnd();
    for (int i = 0; i < ldb * n; i++) B[i] = rnd();
    for (int i = 0; i < m; i++) bias[i] = rnd();
    for (int i = 0; i < ldd * n; i++) D[i] = rnd();
    std::vector<float> D0(D, D + ldd * n);
    cublasLtMatmulDesc_t op;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, k, m, lda);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, k, n, ldb);
    cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, ldd);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    uint64_t wsb = 1 << 20;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t res[4];
    int got = 0;
    cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 4, res, &got);
    size_t fast_ws = got ? res[0].workspaceSize : 0;
    EXPECT(got == 2 && res[0].workspaceSize > 0 && res[1].workspaceSize == 0,
           "cuBLASLt heuristic with the default alignment promise: 2 algorithms, the first with a workspace (%d)", got);
    void *ws = emu_dev_alloc(fast_ws ? fast_ws : 4, 0, "ws");
    float one = 1.0f, half = 0.5f;
    cublasStatus_t s = cublasLtMatmul(lt, op, &one, A, la, B, lb, &half, D, ld, D, ld, &res[0].algo, ws, fast_ws, 0);
    double e = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double r = 0.5 * D0[i + j * ldd] + bias[i];
            for (int l = 0; l < k; l++) r += (double)A[l + i * lda] * B[l + j * ldb];
            e = std::max(e, std::fabs(r - D[i + j * ldd]));
        }
    EXPECT(s == 0 && e < 1e-5, "cuBLASLt D = op(A) op(B) + 0.5 C + bias (transa T, padded leading dimensions): err %.1e", e);
    // a misaligned A on the 16-byte algorithm
    emu_quiet = true;
    api_delta();
    cublasLtMatrixLayout_t la1;
    cublasLtMatrixLayoutCreate(&la1, CUDA_R_32F, k, m, lda);
    s = cublasLtMatmul(lt, op, &one, A + 1, la, B, lb, &half, D, ld, D, ld, &res[0].algo, ws, fast_ws, 0);
    long a1 = api_delta();
    s = cublasLtMatmul(lt, op, &one, A, la, B, lb, &half, D, ld, D, ld, &res[0].algo, ws, 0, 0);
    long a2 = api_delta();
    emu_quiet = false;
    EXPECT(a1 == 1 && a2 == 1, "reported: cuBLASLt pointer less aligned than the algorithm needs (%ld), workspace too "
           "small (%ld)", a1, a2);
    uint32_t al4 = 4;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al4, sizeof al4);
    cublasLtMatmulAlgoGetHeuristic(lt, op, la1, lb, ld, ld, pref, 4, res, &got);
    s = cublasLtMatmul(lt, op, &one, A + 1, la1, B, lb, &half, D, ld, D, ld, &res[0].algo, NULL, 0, 0);
    EXPECT(got == 1 && s == 0 && api_delta() == 0, "cuBLASLt heuristic told A is 4-byte aligned: only the element-aligned "
           "algorithm, which runs on A + 1");
    // bias gradient of B: g[j] = sum_k op(B)[k, j]
    epi = CUBLASLT_EPILOGUE_BGRADB;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g, sizeof g);
    cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 4, res, &got);
    s = cublasLtMatmul(lt, op, &one, A, la, B, lb, &half, D, ld, D, ld, &res[0].algo, NULL, 0, 0);
    e = 0;
    for (int j = 0; j < n; j++) {
        double r = 0;
        for (int l = 0; l < k; l++) r += B[l + j * ldb];
        e = std::max(e, std::fabs(r - g[j]));
    }
    EXPECT(s == 0 && e < 1e-5, "cuBLASLt BGRADB: bias[j] = sum_k op(B)[k, j] over the n columns of D (err %.1e)", e);
    emu_quiet = true;
    api_delta();
    size_t bad = 3;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, bad);
    EXPECT(api_delta() == 1, "reported: a cuBLASLt attribute of the wrong size");
    emu_quiet = false;
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(la1), cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(ld), cublasLtMatmulPreferenceDestroy(pref), cublasLtMatmulDescDestroy(op);
    for (float *p : {A, B, D, bias, g}) emu_dev_free(p, "st");
    emu_dev_free(ws, "st");
}

static void test_cublas(void) {
    cublasHandle_t h = emu_cublas_handle();
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    const int m = 6, n = 4, k = 11, batch = 3;
    __nv_bfloat16 *A = (__nv_bfloat16 *)emu_dev_alloc((size_t)k * m * 2, 0, "A"), *B = (__nv_bfloat16 *)emu_dev_alloc((size_t)k * n * 2, 0, "B");
    float *C = dev_floats((size_t)m * n, "C");
    for (int i = 0; i < k * m; i++) A[i] = __float2bfloat16_rn(rnd());
    for (int i = 0; i < k * n; i++) B[i] = __float2bfloat16_rn(rnd());
    float one = 1.0f, zero = 0.0f;
    // C (m x n) = A^T (A stored k x m) B (k x n)
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, A, CUDA_R_16BF, k, B, CUDA_R_16BF, k,
                                    &zero, C, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    double e = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double r = 0;
            for (int l = 0; l < k; l++) r += (double)__bfloat162float(A[l + i * k]) * __bfloat162float(B[l + j * k]);
            e = std::max(e, std::fabs(r - C[i + j * m]));
        }
    EXPECT(s == 0 && e < 1e-6, "cublasGemmEx bf16 A^T B, fp32 C: exact products (err %.1e)", e);
    float *X = dev_floats((size_t)batch * m * k, "X"), *Y = dev_floats((size_t)batch * k * n, "Y");
    float *Z = dev_floats((size_t)batch * m * n, "Z");
    for (int i = 0; i < batch * m * k; i++) X[i] = rnd() * (1.0f + 0x1p-15f);
    for (int i = 0; i < batch * k * n; i++) Y[i] = rnd();
    s = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, X, m, (long long)m * k, Y, k,
                                  (long long)k * n, &zero, Z, m, (long long)m * n, batch);
    double e32 = 0, e32t = 0;
    std::vector<float> z0(Z, Z + batch * m * n);
    cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH);
    s = (cublasStatus_t)(s | cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, X, m, (long long)m * k,
                                                       Y, k, (long long)k * n, &zero, Z, m, (long long)m * n, batch));
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    for (int q = 0; q < batch; q++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double r = 0, rt = 0;
                for (int l = 0; l < k; l++) {
                    float a = X[q * m * k + i + l * m], b = Y[q * k * n + l + j * k];
                    r += (double)a * b, rt += (double)emu_round_mantissa(a, 10) * emu_round_mantissa(b, 10);
                }
                e32 = std::max(e32, std::fabs(r - z0[q * m * n + i + j * m]));
                e32t = std::max(e32t, std::fabs(rt - Z[q * m * n + i + j * m]));
            }
    EXPECT(s == 0 && e32 < 1e-6 && e32t < 1e-6, "cublasSgemmStridedBatched, 3 batches: exact in default math (%.1e), TF32 "
           "operands in TF32 mode (%.1e)", e32, e32t);
    emu_quiet = true;
    api_delta();
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, X + batch * m * k - 4, m, Y, k, &zero, Z, m);
    EXPECT(api_delta() == 1, "reported: an SGEMM operand extending past its device buffer (leading dimension / size)");
    emu_quiet = false;
    for (void *p : {(void *)A, (void *)B, (void *)C, (void *)X, (void *)Y, (void *)Z}) emu_dev_free(p, "st");
}

int main(void) {
    emu_report = false;
    test_cudnn();
    test_lt();
    test_cublas();
    emu_reset_counters();
    printf("# emu selftest (libraries): %d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
