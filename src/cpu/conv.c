// conv.c: 2-D convolution, stride 1, zero padding K/2, K odd (nn.h), as im2col + GEMM.
//
// The batch is cut into chunks of about CONV_COLS_PER_THREAD pixels per thread: several whole
// images when an image is small (deep DCAE levels, 16x4 or 16x16 pixels), or bands of whole rows of
// one image when it is large (512x512 pixels). So the column scratch stays bounded for any image
// size (one 64-channel 512x512 image would need 600 MB of columns) and every GEMM has enough
// columns per thread.
// For a chunk of n pixels (columns):
//   forward   col (Cin*K*K, n) = im2col(x)                  (parallel over images x channels)
//             out (Cout, n) = w (Cout, Cin*K*K) @ col + b
//   backward  dw (Cout, Cin*K*K) += dout (Cout, n) @ col^T
//             dx (Cin, n) = wf (Cin, Cout*K*K) @ im2col(dout) (Cout*K*K, n)
// where wf[ci, co, ki, kj] = w[co, ci, K-1-ki, K-1-kj]: the input gradient of a stride-1 "same"
// convolution is the same convolution of dout with the flipped, transposed kernel, so it reuses
// im2col + one GEMM instead of a GEMM + col2im scatter. db (Cout) += sum of dout over b, pixels.
// With a single image per chunk the GEMMs read and write the NCHW tensors in place (row stride
// H*W); with several, the (C, images x pixels) matrices are gathered/scattered through the
// SCRATCH_CONVY scratch. K = 1 on a single image needs no im2col at all (a plain GEMM).
// Scratch buffers are module-level: not reentrant (cpu.h).
// Parameter gradients accumulate (+=), dx is overwritten (=).
#include <omp.h>

#include "cpu.h"
#include "nn.h"

// Columns (pixels) per chunk and thread. Measured on one core (bench-ops shapes, 64..1024
// channels): 256-512 columns run at 83-93 GFLOP/s; 2048-4096 lose up to 20% on 64 channels
// (the column panel leaves L2), and fewer than ~64 lose up to 50% on 1024 channels (the weights are
// re-packed for every narrow GEMM). cpu_gemm splits a chunk's columns over the threads, so a
// chunk has CONV_COLS_PER_THREAD x threads columns.
// 256 rather than 512 (tools/bench-train.c, AE 5x64x64 workload, interleaved runs, process CPU
// time): the AE training step is 3-7% faster (1 and 2 threads), bench-ops' 16x16 256-channel
// conv 5-10% faster, its 64x64 64-channel conv within +-3%.
#define CONV_COLS_PER_THREAD 256

// Columns per chunk in total; 0 = automatic (CONV_COLS_PER_THREAD x threads). Tests set it.
size_t cpu_conv_cols = 0;

static void conv_check(const char *who, int B, int Cin, int Cout, int H, int W, int K) {
    if (B < 1 || Cin < 1 || Cout < 1 || H < 1 || W < 1)
        lola_die("%s: bad shape B=%d Cin=%d Cout=%d H=%d W=%d", who, B, Cin, Cout, H, W);
    if (K < 1 || K % 2 == 0) lola_die("%s: kernel size K=%d, need an odd K (1 or 3)", who, K);
}

// How the batch is cut: nb whole images per chunk (rows = H), or one image in bands of `rows` rows.
typedef struct {
    int nb, rows;
} ConvPlan;

// Whole images per chunk while an image has at most the target number of columns, else bands of
// whole rows of one image (at least one row).
static ConvPlan conv_plan(int B, int H, int W) {
    ConvPlan pl = {1, H};
    size_t ntarget = cpu_conv_cols ? cpu_conv_cols : (size_t)CONV_COLS_PER_THREAD * cpu_threads();
    size_t HW = (size_t)H * W;
    if (HW <= ntarget) {
        int nb_max = (int)(ntarget / HW);
        int nchunks = (B + nb_max - 1) / nb_max;
        pl.nb = (B + nchunks - 1) / nchunks; // balanced chunks
    } else {
        pl.rows = (int)(ntarget / W);
        if (pl.rows < 1) pl.rows = 1;
    }
    return pl;
}

// im2col of nb images (or of rows [h0, h1) of one image) of x, C channels each, into col with row
// stride ld: col[(c*K + ki)*K + kj][j*npix + (h-h0)*W + w] = x[j][c][h+ki-P][w+kj-P] (0 outside),
// P = K/2, npix = (h1-h0)*W.
// Each column row is the image plane shifted by (ki-P)*W + (kj-P) in the flattened index: one long
// contiguous copy (zeros where the source row is outside the image), then the |kj-P| columns that
// wrapped around from the neighbouring row are zeroed. (Measured 3x faster than copying row by row
// on 16-pixel-wide images.)
static void im2col(float *col, size_t ld, const float *x, int nb, int C, int H, int W, int K, int h0, int h1) {
    int P = K / 2;
    ptrdiff_t npix = (ptrdiff_t)(h1 - h0) * W, HW = (ptrdiff_t)H * W;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * C * K * K * npix >= CPU_PAR_MIN)
    for (int j = 0; j < nb; j++)
        for (int c = 0; c < C; c++) {
            const float *plane = x + ((size_t)j * C + c) * HW;
            for (int ki = 0; ki < K; ki++) {
                // chunk rows whose source row h+ki-P is inside the image
                int ha = h0 > P - ki ? h0 : P - ki, hb = h1 < H + P - ki ? h1 : H + P - ki;
                for (int kj = 0; kj < K; kj++) {
                    float *dst = col + ((size_t)(c * K + ki) * K + kj) * ld + (size_t)j * npix;
                    ptrdiff_t shift = (ptrdiff_t)(ki - P) * W + (kj - P), base = (ptrdiff_t)h0 * W + shift;
                    ptrdiff_t lo = hb > ha ? (ptrdiff_t)(ha - h0) * W : 0, hi = hb > ha ? (ptrdiff_t)(hb - h0) * W : 0;
                    if (lo < -base) lo = -base; // keep the source index inside the plane
                    if (hi > HW - base) hi = HW - base;
                    if (hi < lo) hi = lo;
                    for (ptrdiff_t p = 0; p < lo; p++) dst[p] = 0.0f;
                    for (ptrdiff_t p = lo; p < hi; p++) dst[p] = plane[base + p];
                    for (ptrdiff_t p = hi; p < npix; p++) dst[p] = 0.0f;
                    // columns whose source column w+kj-P is outside the image (wrapped values)
                    int wl = P - kj > 0 ? P - kj : 0, wr = kj - P > 0 ? kj - P : 0;
                    if (wl > W) wl = W;
                    if (wr > W) wr = W;
                    for (int h = ha; h < hb; h++) {
                        float *row = dst + (ptrdiff_t)(h - h0) * W;
                        for (int w = 0; w < wl; w++) row[w] = 0.0f;
                        for (int w = W - wr; w < W; w++) row[w] = 0.0f;
                    }
                }
            }
        }
}

// The column matrix of a chunk of t (C channels): images b0..b0+nb-1, or rows [h0, h1) of image
// b0 when nb = 1. Returns it with its row stride in *ld: the tensor itself for K = 1 and one image,
// else im2col into buf.
static const float *conv_columns(float *buf, size_t *ld, const float *t, int C, int H, int W, int K,
                                 int b0, int nb, int h0, int h1) {
    size_t HW = (size_t)H * W;
    const float *tb = t + (size_t)b0 * C * HW;
    if (K == 1 && nb == 1) {
        *ld = HW;
        return tb + (size_t)h0 * W;
    }
    *ld = (size_t)nb * (h1 - h0) * W;
    im2col(buf, *ld, tb, nb, C, H, W, K, h0, h1);
    return buf;
}

// t[b0 + j][c][:] (+ bias[c]) = Y[c][j*HW : (j+1)*HW] for j < nb: scatter a (C, nb*HW) matrix.
static void scatter_images(float *t, const float *Y, const float *bias, int b0, int nb, int C, size_t HW) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)nb * C * HW >= CPU_PAR_MIN)
    for (int j = 0; j < nb; j++)
        for (int c = 0; c < C; c++) {
            float *dst = t + ((size_t)(b0 + j) * C + c) * HW;
            const float *src = Y + (size_t)c * nb * HW + (size_t)j * HW;
            if (bias)
                for (size_t p = 0; p < HW; p++) dst[p] = src[p] + bias[c];
            else
                memcpy(dst, src, HW * sizeof(float));
        }
}

void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin,
                    int Cout, int H, int W, int K) {
    conv_check("conv2d_forward", B, Cin, Cout, H, W, K);
    size_t HW = (size_t)H * W;
    int CKK = Cin * K * K;
    ConvPlan pl = conv_plan(B, H, W);
    size_t nmax = (size_t)pl.nb * pl.rows * W; // columns of the largest chunk
    int copies = K > 1 || pl.nb > 1; // K = 1 on single images reads x in place
    float *col = copies ? cpu_scratch(SCRATCH_COL, (size_t)CKK * nmax) : NULL;
    float *Y = pl.nb > 1 ? cpu_scratch(SCRATCH_CONVY, (size_t)Cout * nmax) : NULL;
    for (int b0 = 0; b0 < B; b0 += pl.nb) {
        int nb = B - b0 < pl.nb ? B - b0 : pl.nb;
        for (int h0 = 0; h0 < H; h0 += pl.rows) {
            int h1 = h0 + pl.rows < H ? h0 + pl.rows : H;
            size_t ldc;
            const float *cm = conv_columns(col, &ldc, x, Cin, H, W, K, b0, nb, h0, h1);
            int n = nb * (h1 - h0) * W;
            if (nb == 1) { // straight into out[b0] rows h0..h1, bias preloaded
                float *ob = out + (size_t)b0 * Cout * HW + (size_t)h0 * W;
                if (b) {
#pragma omp parallel for schedule(static) if ((size_t)Cout * n >= CPU_PAR_MIN)
                    for (int co = 0; co < Cout; co++)
                        for (int p = 0; p < n; p++) ob[(size_t)co * HW + p] = b[co];
                }
                cpu_gemm(0, 0, Cout, n, CKK, 1.0f, w, CKK, cm, (int)ldc, b ? 1.0f : 0.0f, ob, (int)HW);
            } else { // (Cout, nb*HW) product, then scattered into the nb images with the bias
                cpu_gemm(0, 0, Cout, n, CKK, 1.0f, w, CKK, cm, (int)ldc, 0.0f, Y, n);
                scatter_images(out, Y, b, b0, nb, Cout, HW);
            }
        }
    }
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int B, int Cin, int Cout, int H, int W, int K) {
    conv_check("conv2d_backward", B, Cin, Cout, H, W, K);
    size_t HW = (size_t)H * W;
    int KK = K * K, CKK = Cin * KK, OKK = Cout * KK;

    // db += sum over images and pixels (per output channel; fixed order)
    if (db) {
#pragma omp parallel for schedule(static) if ((size_t)B * Cout * HW >= CPU_PAR_MIN)
        for (int co = 0; co < Cout; co++) {
            double s = 0.0;
            for (int bi = 0; bi < B; bi++) {
                const float *g = dout + ((size_t)bi * Cout + co) * HW;
#pragma omp simd reduction(+ : s)
                for (size_t p = 0; p < HW; p++) s += g[p];
            }
            db[co] += (float)s;
        }
    }

    // wf (Cin, Cout*K*K): flipped, transposed kernel for the input gradient (K = 1: w^T)
    float *wf = NULL;
    if (dx) {
        wf = cpu_scratch(SCRATCH_WFLIP, (size_t)Cin * OKK);
#pragma omp parallel for schedule(static) if ((size_t)Cin * OKK >= CPU_PAR_MIN)
        for (int ci = 0; ci < Cin; ci++)
            for (int co = 0; co < Cout; co++)
                for (int k = 0; k < KK; k++)
                    wf[(size_t)ci * OKK + (size_t)co * KK + k] = w[((size_t)co * Cin + ci) * KK + (KK - 1 - k)];
    }

    int Cmax = Cin > Cout ? Cin : Cout;
    ConvPlan pl = conv_plan(B, H, W);
    size_t nmax = (size_t)pl.nb * pl.rows * W;
    float *col = K > 1 || pl.nb > 1 ? cpu_scratch(SCRATCH_COL, (size_t)Cmax * KK * nmax) : NULL;
    float *Y = pl.nb > 1 ? cpu_scratch(SCRATCH_CONVY, (size_t)Cmax * nmax) : NULL;
    for (int b0 = 0; b0 < B; b0 += pl.nb) {
        int nb = B - b0 < pl.nb ? B - b0 : pl.nb;
        for (int h0 = 0; h0 < H; h0 += pl.rows) {
            int h1 = h0 + pl.rows < H ? h0 + pl.rows : H;
            int n = nb * (h1 - h0) * W;
            // dw (Cout, CKK) += dout (Cout, n) @ col(x)^T (n, CKK)
            size_t ldg, ldc;
            if (dw) {
                const float *G = conv_columns(Y, &ldg, dout, Cout, H, W, 1, b0, nb, h0, h1); // gather
                const float *cm = conv_columns(col, &ldc, x, Cin, H, W, K, b0, nb, h0, h1);
                cpu_gemm(0, 1, Cout, CKK, n, 1.0f, G, (int)ldg, cm, (int)ldc, 1.0f, dw, CKK);
            }
            if (!dx) continue;
            // dx (Cin, n) = wf (Cin, OKK) @ col(dout) (OKK, n)
            const float *cg = conv_columns(col, &ldc, dout, Cout, H, W, K, b0, nb, h0, h1);
            if (nb == 1) {
                cpu_gemm(0, 0, Cin, n, OKK, 1.0f, wf, OKK, cg, (int)ldc, 0.0f,
                         dx + (size_t)b0 * Cin * HW + (size_t)h0 * W, (int)HW);
            } else {
                cpu_gemm(0, 0, Cin, n, OKK, 1.0f, wf, OKK, cg, (int)ldc, 0.0f, Y, n);
                scatter_images(dx, Y, NULL, b0, nb, Cin, HW);
            }
        }
    }
}
