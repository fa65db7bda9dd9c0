// norm.c: normalisations (nn.h): channel LayerNorm of the autoencoder (per pixel over C, UNBIASED
// variance), token LayerNorm of the ViT (over D, BIASED variance), and latent saturation.
// Statistics are accumulated in float64, two-pass (mean, then squared deviations).
// Activation gradients are written (=).
#include <math.h>
#include <stdlib.h>

#include "cpu.h"
#include "nn.h"

// Pixels per block for the channel reductions: a block is C x PIX_BLOCK floats, strided by HW.
#define PIX_BLOCK 64

// ---------------------------------------------------------------------------------------------
// Channel LayerNorm (lola-spec.md 2.1, lola.nn.layers.LayerNorm(dim=1)):
//   mean = sum_c x / C, var = sum_c (x - mean)^2 / (C - 1)   (torch.var_mean, correction 1)
//   y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps)
// x, out (B, C, HW); mean, rstd (B, HW) kept for backward. The spec value: [1,2,3,4] ->
// [-1.161892, -0.387297, 0.387297, 1.161892].

// One block of np <= PIX_BLOCK pixels of one image: xb, ob point at channel 0 of the first pixel
// (row stride HW between channels); m, r receive the block's mean and rstd.
CPU_KERNEL static void lnc_fwd_block(float *ob, float *m, float *r, const float *xb, int C, int HW,
                                     int np, float eps) {
    double s[PIX_BLOCK] = {0}, q[PIX_BLOCK] = {0};
    for (int c = 0; c < C; c++) // pass 1: mean
        for (int p = 0; p < np; p++) s[p] += xb[(size_t)c * HW + p];
    for (int p = 0; p < np; p++) m[p] = (float)(s[p] / C);
    for (int c = 0; c < C; c++) // pass 2: squared deviations
        for (int p = 0; p < np; p++) {
            float d = xb[(size_t)c * HW + p] - m[p];
            q[p] += (double)d * d;
        }
    for (int p = 0; p < np; p++) r[p] = (float)(1.0 / sqrt(q[p] / (C - 1) + eps));
    for (int c = 0; c < C; c++) // pass 3: normalise
        for (int p = 0; p < np; p++) ob[(size_t)c * HW + p] = (xb[(size_t)c * HW + p] - m[p]) * r[p];
}

void layernorm_channels_forward(float *out, float *mean, float *rstd, const float *x, int B, int C,
                                int HW, float eps) {
    if (C < 2) lola_die("layernorm_channels_forward: C = %d, the unbiased variance needs C >= 2", C);
    int nblk = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * HW >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int p0 = k * PIX_BLOCK, np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
            size_t off = (size_t)b * C * HW + p0; // seek: image b, channel 0, pixel p0
            lnc_fwd_block(out + off, mean + (size_t)b * HW + p0, rstd + (size_t)b * HW + p0, x + off,
                          C, HW, np, eps);
        }
}

// With y = (x - mean) rstd and g = dout, differentiating the unbiased variance gives
//   dx_i = rstd * (g_i - mean_c(g) - y_i * sum_c(g y) / (C - 1)).
CPU_KERNEL static void lnc_bwd_block(float *db, const float *gb, const float *xb, const float *m,
                                     const float *r, int C, int HW, int np) {
    double sg[PIX_BLOCK] = {0}, sgy[PIX_BLOCK] = {0};
    for (int c = 0; c < C; c++) // the two reductions
        for (int p = 0; p < np; p++) {
            float g = gb[(size_t)c * HW + p], y = (xb[(size_t)c * HW + p] - m[p]) * r[p];
            sg[p] += g;
            sgy[p] += (double)g * y;
        }
    float a[PIX_BLOCK], e[PIX_BLOCK];
    for (int p = 0; p < np; p++) {
        a[p] = (float)(sg[p] / C);        // term 2: mean of g
        e[p] = (float)(sgy[p] / (C - 1)); // term 3 coefficient
    }
    for (int c = 0; c < C; c++)
        for (int p = 0; p < np; p++) {
            size_t i = (size_t)c * HW + p;
            float y = (xb[i] - m[p]) * r[p];
            db[i] = r[p] * (gb[i] - a[p] - y * e[p]); // term 1 - term 2 - term 3
        }
}

void layernorm_channels_backward(float *dx, const float *dout, const float *x, const float *mean,
                                 const float *rstd, int B, int C, int HW) {
    if (!dx) return;
    int nblk = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * HW >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int p0 = k * PIX_BLOCK, np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
            size_t off = (size_t)b * C * HW + p0;
            lnc_bwd_block(dx + off, dout + off, x + off, mean + (size_t)b * HW + p0,
                          rstd + (size_t)b * HW + p0, C, HW, np);
        }
}

// ---------------------------------------------------------------------------------------------
// Token LayerNorm over D (torch.nn.LayerNorm(D, elementwise_affine=False)): BIASED variance.
//   y = (x - mean) * rstd, rstd = 1 / sqrt(sum (x - mean)^2 / D + eps). x, out (M, D); mean, rstd (M).

// The statistics of one row (shared by layernorm_forward and layernorm_modulate_forward, so the
// two produce the same bits).
static inline void ln_row_stats(const float *xi, int D, float eps, float *mean, float *rstd) {
    double s = 0.0, q = 0.0;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < D; j++) s += xi[j];
    float m = (float)(s / D);
#pragma omp simd reduction(+ : q)
    for (int j = 0; j < D; j++) {
        float d = xi[j] - m;
        q += (double)d * d;
    }
    *mean = m;
    *rstd = (float)(1.0 / sqrt(q / D + eps));
}

CPU_KERNEL static void ln_fwd_rows(float *out, float *mean, float *rstd, const float *x, int rows,
                                   int D, float eps) {
    for (int i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * D;
        float *oi = out + (size_t)i * D;
        float m, r;
        ln_row_stats(xi, D, eps, &m, &r);
        for (int j = 0; j < D; j++) oi[j] = (xi[j] - m) * r;
        mean[i] = m;
        rstd[i] = r;
    }
}

// dx_j = rstd * (g_j - mean(g) - y_j * mean(g y)) for one row (shared by layernorm_backward and
// layernorm_modulate_backward).
static inline void ln_bwd_row(float *di, const float *gi, const float *xi, float m, float r, int D) {
    double sg = 0.0, sgy = 0.0;
#pragma omp simd reduction(+ : sg, sgy)
    for (int j = 0; j < D; j++) {
        sg += gi[j];
        sgy += (double)gi[j] * ((xi[j] - m) * r);
    }
    float a = (float)(sg / D), e = (float)(sgy / D);
    for (int j = 0; j < D; j++) di[j] = r * (gi[j] - a - (xi[j] - m) * r * e);
}

CPU_KERNEL static void ln_bwd_rows(float *dx, const float *dout, const float *x, const float *mean,
                                   const float *rstd, int rows, int D) {
    for (int i = 0; i < rows; i++)
        ln_bwd_row(dx + (size_t)i * D, dout + (size_t)i * D, x + (size_t)i * D, mean[i], rstd[i], D);
}

// Rows per task so that a task holds about CPU_CHUNK elements.
static int ln_rows_per_task(int D) {
    int r = CPU_CHUNK / (D > 0 ? D : 1);
    return r < 1 ? 1 : r;
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, int M, int D, float eps) {
    int rt = ln_rows_per_task(D);
#pragma omp parallel for schedule(static) if ((size_t)M * D >= CPU_PAR_MIN)
    for (int i = 0; i < M; i += rt)
        ln_fwd_rows(out + (size_t)i * D, mean + i, rstd + i, x + (size_t)i * D, M - i < rt ? M - i : rt, D, eps);
}

void layernorm_backward(float *dx, const float *dout, const float *x, const float *mean,
                        const float *rstd, int M, int D) {
    if (!dx) return;
    int rt = ln_rows_per_task(D);
#pragma omp parallel for schedule(static) if ((size_t)M * D >= CPU_PAR_MIN)
    for (int i = 0; i < M; i += rt)
        ln_bwd_rows(dx + (size_t)i * D, dout + (size_t)i * D, x + (size_t)i * D, mean + i, rstd + i,
                    M - i < rt ? M - i : rt, D);
}

// ---------------------------------------------------------------------------------------------
// Fused LayerNorm + adaLN modulation (nn.h): out = (1 + a) LN(x) + c. The same float operations in
// the same order as layernorm_forward then modulate_forward (and, backward, modulate_backward then
// layernorm_backward), so the results are bit-identical to that sequence; LN(x) is never stored.

// Rows row0 .. row0+rows-1 of the (B*N, D) token matrix; a, c rows of stride ld per sample.
CPU_KERNEL static void lnmod_fwd_rows(float *out, float *mean, float *rstd, const float *x, const float *a,
                                      const float *c, int row0, int rows, int N, int D, int ld, float eps) {
    for (int i = 0; i < rows; i++) {
        const float *xi = x + (size_t)i * D;
        const float *ab = a + (size_t)((row0 + i) / N) * ld, *cb = c + (size_t)((row0 + i) / N) * ld;
        float *oi = out + (size_t)i * D;
        float m, r;
        ln_row_stats(xi, D, eps, &m, &r);
        for (int j = 0; j < D; j++) oi[j] = (1.0f + ab[j]) * ((xi[j] - m) * r) + cb[j];
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = r;
    }
}

// dx rows: dln = dout (1 + a) into the row buffer g (D floats), then the LayerNorm row backward.
CPU_KERNEL static void lnmod_bwd_rows(float *dx, float *g, const float *dout, const float *x, const float *mean,
                                      const float *rstd, const float *a, int row0, int rows, int N, int D,
                                      int ld) {
    for (int i = 0; i < rows; i++) {
        const float *gi = dout + (size_t)i * D, *ab = a + (size_t)((row0 + i) / N) * ld;
        for (int j = 0; j < D; j++) g[j] = gi[j] * (1.0f + ab[j]);
        ln_bwd_row(dx + (size_t)i * D, g, x + (size_t)i * D, mean[i], rstd[i], D);
    }
}

// Features per task of the da/dc token sums (modulate.c's block size, the same per-feature order).
#define LNMOD_DB 256

void layernorm_modulate_forward(float *out, float *mean, float *rstd, const float *x, const float *a,
                                const float *c, int B, int N, int D, int ld, float eps) {
    int M = B * N, rt = ln_rows_per_task(D);
#pragma omp parallel for schedule(static) if ((size_t)M * D >= CPU_PAR_MIN)
    for (int i = 0; i < M; i += rt)
        lnmod_fwd_rows(out + (size_t)i * D, mean ? mean + i : NULL, rstd ? rstd + i : NULL, x + (size_t)i * D, a,
                       c, i, M - i < rt ? M - i : rt, N, D, ld, eps);
}

void layernorm_modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x,
                                 const float *mean, const float *rstd, const float *a, int B, int N, int D,
                                 int ld) {
    int M = B * N;
    if (da || dc) { // pass 1: da += sum_n dout LN(x), dc += sum_n dout (float64, tokens in order)
        int nblk = (D + LNMOD_DB - 1) / LNMOD_DB;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)M * D >= CPU_PAR_MIN)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < nblk; k++) {
                int d0 = k * LNMOD_DB, d1 = d0 + LNMOD_DB < D ? d0 + LNMOD_DB : D;
                double sa[LNMOD_DB] = {0}, sc[LNMOD_DB] = {0};
                for (int n = 0; n < N; n++) {
                    size_t row = (size_t)b * N + n, off = row * D;
                    float m = mean[row], r = rstd[row];
                    for (int d = d0; d < d1; d++) {
                        float g = dout[off + d], y = (x[off + d] - m) * r;
                        sa[d - d0] += (double)g * y;
                        sc[d - d0] += g;
                    }
                }
                for (int d = d0; d < d1; d++) {
                    if (da) da[(size_t)b * ld + d] += (float)sa[d - d0];
                    if (dc) dc[(size_t)b * ld + d] += (float)sc[d - d0];
                }
            }
    }
    if (!dx) return;
    int rt = ln_rows_per_task(D); // pass 2: dx, row by row
#pragma omp parallel if ((size_t)M * D >= CPU_PAR_MIN)
    {
        float *g = lola_calloc((size_t)D, sizeof(float));
#pragma omp for schedule(static)
        for (int i = 0; i < M; i += rt)
            lnmod_bwd_rows(dx + (size_t)i * D, g, dout + (size_t)i * D, x + (size_t)i * D, mean + i, rstd + i, a, i,
                           M - i < rt ? M - i : rt, N, D, ld);
        free(g);
    }
}

// ---------------------------------------------------------------------------------------------
// Latent saturation (lola-spec.md 2.4; lola.autoencoder.AutoEncoder.saturate), bound 5.

#define SAT_BOUND 5.0f
#define SAT_RMS_EPS 1e-5f

static inline float sat_value(float z, int kind) {
    switch (kind) {
    case SAT_SOFTCLIP2: return z / sqrtf(1.0f + (z / SAT_BOUND) * (z / SAT_BOUND));
    case SAT_SOFTCLIP: return z / (1.0f + fabsf(z) / SAT_BOUND);
    case SAT_TANH: return SAT_BOUND * tanhf(z / SAT_BOUND);
    case SAT_ARCSINH: return asinhf(z);
    default: return z;
    }
}

// d sat / dz for the elementwise kinds.
static inline float sat_slope(float z, int kind) {
    switch (kind) {
    case SAT_SOFTCLIP2: { // (1 + u)^(-3/2), u = (z/5)^2
        float u = 1.0f + (z / SAT_BOUND) * (z / SAT_BOUND);
        return 1.0f / (u * sqrtf(u));
    }
    case SAT_SOFTCLIP: {
        float u = 1.0f + fabsf(z) / SAT_BOUND;
        return 1.0f / (u * u);
    }
    case SAT_TANH: {
        float t = tanhf(z / SAT_BOUND);
        return 1.0f - t * t;
    }
    case SAT_ARCSINH: return 1.0f / sqrtf(1.0f + z * z);
    default: return 1.0f;
    }
}

static void sat_check(const char *who, int kind) {
    if (kind < SAT_NONE || kind > SAT_RMSNORM) lola_die("%s: unknown saturation kind %d (0..5)", who, kind);
}

// rms over channels: y = z * r, r = 1 / sqrt(mean_c z^2 + 1e-5); per pixel like the channel LN.
static void sat_rms_rstd(float *r, const float *xb, int C, int HW, int np) {
    double q[PIX_BLOCK] = {0};
    for (int c = 0; c < C; c++)
        for (int p = 0; p < np; p++) q[p] += (double)xb[(size_t)c * HW + p] * xb[(size_t)c * HW + p];
    for (int p = 0; p < np; p++) r[p] = (float)(1.0 / sqrt(q[p] / C + SAT_RMS_EPS));
}

void saturation_forward(float *out, const float *x, int B, int C, int HW, int kind) {
    sat_check("saturation_forward", kind);
    size_t n = (size_t)B * C * HW;
    if (kind != SAT_RMSNORM) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) out[i] = sat_value(x[i], kind);
        return;
    }
    int nblk = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
#pragma omp parallel for collapse(2) schedule(static) if (n >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int p0 = k * PIX_BLOCK, np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
            const float *xb = x + (size_t)b * C * HW + p0;
            float *ob = out + (size_t)b * C * HW + p0;
            float r[PIX_BLOCK];
            sat_rms_rstd(r, xb, C, HW, np);
            for (int c = 0; c < C; c++)
                for (int p = 0; p < np; p++) ob[(size_t)c * HW + p] = xb[(size_t)c * HW + p] * r[p];
        }
}

// rmsnorm: dx_i = r * (g_i - y_i * mean_c(g y)).
void saturation_backward(float *dx, const float *dout, const float *x, int B, int C, int HW, int kind) {
    sat_check("saturation_backward", kind);
    if (!dx) return;
    size_t n = (size_t)B * C * HW;
    if (kind != SAT_RMSNORM) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = dout[i] * sat_slope(x[i], kind);
        return;
    }
    int nblk = (HW + PIX_BLOCK - 1) / PIX_BLOCK;
#pragma omp parallel for collapse(2) schedule(static) if (n >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int p0 = k * PIX_BLOCK, np = HW - p0 < PIX_BLOCK ? HW - p0 : PIX_BLOCK;
            size_t off = (size_t)b * C * HW + p0;
            const float *xb = x + off, *gb = dout + off;
            float *db = dx + off;
            float r[PIX_BLOCK], e[PIX_BLOCK];
            double sgy[PIX_BLOCK] = {0};
            sat_rms_rstd(r, xb, C, HW, np);
            for (int c = 0; c < C; c++)
                for (int p = 0; p < np; p++) sgy[p] += (double)gb[(size_t)c * HW + p] * xb[(size_t)c * HW + p] * r[p];
            for (int p = 0; p < np; p++) e[p] = (float)(sgy[p] / C);
            for (int c = 0; c < C; c++)
                for (int p = 0; p < np; p++) {
                    size_t i = (size_t)c * HW + p;
                    db[i] = r[p] * (gb[i] - xb[i] * r[p] * e[p]);
                }
        }
}
