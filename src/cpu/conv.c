// conv.c: 2-D convolution, stride 1, zero padding K/2, K odd (nn.h), as im2col + GEMM.
//
// Forward, per image b and per chunk of whole rows [h0, h1) (n = (h1-h0)*W pixels):
//   col (Cin*K*K, n) = im2col(x[b]) rows h0..h1          (parallel over input channels)
//   out[b][:, chunk] (Cout, n) = w (Cout, Cin*K*K) @ col  (+ bias, preloaded into out)
// Backward, same chunks:
//   dw (Cout, Cin*K*K) += dout[b][:, chunk] (Cout, n) @ col(x)^T (n, Cin*K*K)
//   dx[b][:, chunk] (Cin, n) = wf (Cin, Cout*K*K) @ im2col(dout[b]) (Cout*K*K, n)
// where wf[ci, co, ki, kj] = w[co, ci, K-1-ki, K-1-kj]: the input gradient of a stride-1 "same"
// convolution is the same convolution of dout with the flipped, transposed kernel, so it reuses
// im2col + one GEMM instead of a GEMM + col2im scatter.
// db (Cout) += sum over b and pixels of dout.
// K = 1 skips im2col: the convolution is a plain GEMM on the (C, HW) image matrix.
//
// Chunks hold at most CONV_COL_FLOATS floats of columns (at least one row), so the scratch stays
// bounded for any image size (a 64-channel 512x512 image would need 600 MB of columns at once).
// The column buffer is the module-level scratch SCRATCH_COL: not reentrant (cpu.h).
// Parameter gradients accumulate (+=), dx is overwritten (=).
#include <omp.h>

#include "cpu.h"
#include "nn.h"

#define CONV_COL_FLOATS (1u << 20) // 4 MiB of columns per chunk (fits L3, keeps GEMMs large)

static void conv_check(const char *who, int B, int Cin, int Cout, int H, int W, int K) {
    if (B < 1 || Cin < 1 || Cout < 1 || H < 1 || W < 1)
        lola_die("%s: bad shape B=%d Cin=%d Cout=%d H=%d W=%d", who, B, Cin, Cout, H, W);
    if (K < 1 || K % 2 == 0) lola_die("%s: kernel size K=%d, need an odd K (1 or 3)", who, K);
}

// Rows per chunk so that C*K*K*rows*W <= CONV_COL_FLOATS (at least 1 row).
static int conv_chunk_rows(int C, int H, int W, int K) {
    size_t per_row = (size_t)C * K * K * W;
    int rows = (int)(CONV_COL_FLOATS / per_row);
    if (rows < 1) rows = 1;
    if (rows > H) rows = H;
    return rows;
}

// col (C*K*K, (h1-h0)*W): col[(c*K + ki)*K + kj][(h-h0)*W + w] = x[c][h+ki-P][w+kj-P] (0 outside),
// P = K/2. x is one image (C, H, W).
static void im2col(float *col, const float *x, int C, int H, int W, int K, int h0, int h1) {
    int P = K / 2, n = (h1 - h0) * W;
#pragma omp parallel for schedule(static) if ((size_t)C * K * K * n >= CPU_PAR_MIN)
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int ki = 0; ki < K; ki++) {
            for (int kj = 0; kj < K; kj++) {
                float *dst = col + ((size_t)(c * K + ki) * K + kj) * n;
                int dw = kj - P;                                  // column shift
                int w0 = dw < 0 ? -dw : 0, w1 = dw > 0 ? W - dw : W; // valid output columns
                if (w1 < w0) w1 = w0;
                for (int h = h0; h < h1; h++, dst += W) {
                    int hs = h + ki - P;
                    if (hs < 0 || hs >= H) {
                        memset(dst, 0, (size_t)W * sizeof(float));
                        continue;
                    }
                    const float *src = xc + (size_t)hs * W;
                    for (int w = 0; w < w0; w++) dst[w] = 0.0f;
                    memcpy(dst + w0, src + w0 + dw, (size_t)(w1 - w0) * sizeof(float));
                    for (int w = w1; w < W; w++) dst[w] = 0.0f;
                }
            }
        }
    }
}

void conv2d_forward(float *out, const float *x, const float *w, const float *b, int B, int Cin,
                    int Cout, int H, int W, int K) {
    conv_check("conv2d_forward", B, Cin, Cout, H, W, K);
    size_t HW = (size_t)H * W;
    int CKK = Cin * K * K;
    int rows = conv_chunk_rows(Cin, H, W, K);
    float *col = K > 1 ? cpu_scratch(SCRATCH_COL, (size_t)CKK * rows * W) : NULL;
    for (int bi = 0; bi < B; bi++) {
        const float *xb = x + (size_t)bi * Cin * HW;
        float *ob = out + (size_t)bi * Cout * HW;
        // preload the bias (the GEMMs then accumulate with beta = 1)
        if (b) {
#pragma omp parallel for schedule(static) if ((size_t)Cout * HW >= CPU_PAR_MIN)
            for (int co = 0; co < Cout; co++)
                for (size_t p = 0; p < HW; p++) ob[(size_t)co * HW + p] = b[co];
        }
        float beta = b ? 1.0f : 0.0f;
        if (K == 1) { // out[b] (Cout, HW) = w (Cout, Cin) @ x[b] (Cin, HW)
            cpu_gemm(0, 0, Cout, (int)HW, Cin, 1.0f, w, Cin, xb, (int)HW, beta, ob, (int)HW);
            continue;
        }
        for (int h0 = 0; h0 < H; h0 += rows) {
            int h1 = h0 + rows < H ? h0 + rows : H, n = (h1 - h0) * W;
            im2col(col, xb, Cin, H, W, K, h0, h1);
            cpu_gemm(0, 0, Cout, n, CKK, 1.0f, w, CKK, col, n, beta, ob + (size_t)h0 * W, (int)HW);
        }
    }
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int B, int Cin, int Cout, int H, int W, int K) {
    conv_check("conv2d_backward", B, Cin, Cout, H, W, K);
    size_t HW = (size_t)H * W;
    int CKK = Cin * K * K, OKK = Cout * K * K;

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

    if (K == 1) {
        for (int bi = 0; bi < B; bi++) {
            const float *xb = x + (size_t)bi * Cin * HW, *gb = dout + (size_t)bi * Cout * HW;
            // dw (Cout, Cin) += dout[b] (Cout, HW) @ x[b]^T (HW, Cin)
            cpu_gemm(0, 1, Cout, Cin, (int)HW, 1.0f, gb, (int)HW, xb, (int)HW, 1.0f, dw, Cin);
            // dx[b] (Cin, HW) = w^T (Cin, Cout) @ dout[b] (Cout, HW)
            if (dx)
                cpu_gemm(1, 0, Cin, (int)HW, Cout, 1.0f, w, Cin, gb, (int)HW, 0.0f,
                         dx + (size_t)bi * Cin * HW, (int)HW);
        }
        return;
    }

    // wf (Cin, Cout*K*K): flipped, transposed kernel for the input gradient
    float *wf = NULL;
    if (dx) {
        wf = cpu_scratch(SCRATCH_WFLIP, (size_t)Cin * OKK);
        int KK = K * K;
#pragma omp parallel for schedule(static) if ((size_t)Cin * OKK >= CPU_PAR_MIN)
        for (int ci = 0; ci < Cin; ci++)
            for (int co = 0; co < Cout; co++)
                for (int k = 0; k < KK; k++)
                    wf[(size_t)ci * OKK + (size_t)co * KK + k] = w[((size_t)co * Cin + ci) * KK + (KK - 1 - k)];
    }

    int rows_x = conv_chunk_rows(Cin, H, W, K), rows_g = conv_chunk_rows(Cout, H, W, K);
    int rows = rows_x < rows_g ? rows_x : rows_g;
    int Cmax = Cin > Cout ? Cin : Cout;
    float *col = cpu_scratch(SCRATCH_COL, (size_t)Cmax * K * K * rows * W);
    for (int bi = 0; bi < B; bi++) {
        const float *xb = x + (size_t)bi * Cin * HW, *gb = dout + (size_t)bi * Cout * HW;
        for (int h0 = 0; h0 < H; h0 += rows) {
            int h1 = h0 + rows < H ? h0 + rows : H, n = (h1 - h0) * W;
            // dw (Cout, CKK) += dout[b][:, chunk] (Cout, n) @ col(x)^T (n, CKK)
            im2col(col, xb, Cin, H, W, K, h0, h1);
            cpu_gemm(0, 1, Cout, CKK, n, 1.0f, gb + (size_t)h0 * W, (int)HW, col, n, 1.0f, dw, CKK);
            // dx[b][:, chunk] (Cin, n) = wf (Cin, OKK) @ col(dout)  (OKK, n)
            if (dx) {
                im2col(col, gb, Cout, H, W, K, h0, h1);
                cpu_gemm(0, 0, Cin, n, OKK, 1.0f, wf, OKK, col, n, 0.0f,
                         dx + (size_t)bi * Cin * HW + (size_t)h0 * W, (int)HW);
            }
        }
    }
}
