// modulate.c: the per-sample adaLN ops of the ViT block (nn.h, lola-spec.md 4.2):
//   modulate:        out = (1 + a) * x + c
//   gated residual:  out = (x + g * y) / sqrt(1 + g^2)
// a, c, g are per-sample rows (D wide, row stride ld) broadcast over the N tokens. Their
// gradients are sums over tokens and accumulate (+=); token gradients are written (=).
// Parallel over (sample, block of DB features); each task walks its tokens in order, so the
// sums are deterministic.
#include <math.h>

#include "cpu.h"
#include "nn.h"

#define DB 256 // features per task

void modulate_forward(float *out, const float *x, const float *a, const float *c, int B, int N,
                      int D, int ld) {
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            const float *ab = a + (size_t)b * ld, *cb = c + (size_t)b * ld;
            size_t off = ((size_t)b * N + n) * D;
            for (int d = 0; d < D; d++) out[off + d] = (1.0f + ab[d]) * x[off + d] + cb[d];
        }
}

void modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x,
                       const float *a, int B, int N, int D, int ld) {
    int nblk = (D + DB - 1) / DB;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int d0 = k * DB, d1 = d0 + DB < D ? d0 + DB : D;
            const float *ab = a + (size_t)b * ld;
            double sa[DB] = {0}, sc[DB] = {0};
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)b * N + n) * D;
                for (int d = d0; d < d1; d++) {
                    float g = dout[off + d];
                    sa[d - d0] += (double)g * x[off + d];
                    sc[d - d0] += g;
                    if (dx) dx[off + d] = g * (1.0f + ab[d]);
                }
            }
            for (int d = d0; d < d1; d++) {
                if (da) da[(size_t)b * ld + d] += (float)sa[d - d0];
                if (dc) dc[(size_t)b * ld + d] += (float)sc[d - d0];
            }
        }
}

void gated_residual_forward(float *out, const float *x, const float *y, const float *g, int B,
                            int N, int D, int ld) {
#pragma omp parallel for schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++) {
        const float *gb = g + (size_t)b * ld;
        // sqrt(1 + g^2) once per feature (the same float as per element; keeps the token loop
        // free of sqrtf calls so it vectorises)
        for (int d0 = 0; d0 < D; d0 += DB) {
            int d1 = d0 + DB < D ? d0 + DB : D;
            float s[DB];
            for (int d = d0; d < d1; d++) s[d - d0] = sqrtf(1.0f + gb[d] * gb[d]);
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)b * N + n) * D;
                for (int d = d0; d < d1; d++) out[off + d] = (x[off + d] + gb[d] * y[off + d]) / s[d - d0];
            }
        }
    }
}

// With s = sqrt(1 + g^2):  dx = dout / s,  dy = dout g / s,
// dg = sum_n dout * (y / s - (x + g y) g / s^3).  dx may alias dout (read before written).
void gated_residual_backward(float *dx, float *dy, float *dg, const float *dout, const float *x,
                             const float *y, const float *g, int B, int N, int D, int ld) {
    int nblk = (D + DB - 1) / DB;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nblk; k++) {
            int d0 = k * DB, d1 = d0 + DB < D ? d0 + DB : D;
            const float *gb = g + (size_t)b * ld;
            float rs[DB], rs3[DB];
            for (int d = d0; d < d1; d++) {
                float s2 = 1.0f + gb[d] * gb[d];
                rs[d - d0] = 1.0f / sqrtf(s2);
                rs3[d - d0] = rs[d - d0] / s2;
            }
            double sg[DB] = {0};
            for (int n = 0; n < N; n++) {
                size_t off = ((size_t)b * N + n) * D;
                for (int d = d0; d < d1; d++) {
                    float go = dout[off + d], gd = gb[d], r = rs[d - d0];
                    float xv = x[off + d], yv = y[off + d];
                    sg[d - d0] += (double)go * (yv * r - (xv + gd * yv) * gd * rs3[d - d0]);
                    if (dy) dy[off + d] = go * gd * r;
                    if (dx) dx[off + d] = go * r;
                }
            }
            if (dg)
                for (int d = d0; d < d1; d++) dg[(size_t)b * ld + d] += (float)sg[d - d0];
        }
}
