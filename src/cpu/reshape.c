// reshape.c: pure data movement ops (nn.h): pixel (un)shuffle and the (B, C, N) -> (B, N, C)
// transpose. Each is a permutation, so its gradient is the inverse permutation (the other op).
#include "cpu.h"
#include "nn.h"

// x (B, C, H, W) -> out (B, C*s*s, H/s, W/s); out[c*s*s + i*s + j][h][w] = x[c][h*s + i][w*s + j]
// (torch.nn.PixelUnshuffle order, lola-spec.md 2.1).
void pixel_unshuffle(float *out, const float *x, int B, int C, int H, int W, int s) {
    if (s < 1 || H % s || W % s)
        lola_die("pixel_unshuffle: H=%d W=%d not divisible by the factor s=%d", H, W, s);
    int Ho = H / s, Wo = W / s;
    size_t plane = (size_t)Ho * Wo;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * H * W >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *xc = x + ((size_t)b * C + c) * H * W;
            float *oc = out + ((size_t)b * C + c) * s * s * plane;
            for (int i = 0; i < s; i++)
                for (int j = 0; j < s; j++) {
                    float *o = oc + (size_t)(i * s + j) * plane;
                    for (int h = 0; h < Ho; h++) {
                        const float *xr = xc + (size_t)(h * s + i) * W + j;
                        float *or_ = o + (size_t)h * Wo;
                        for (int w = 0; w < Wo; w++) or_[w] = xr[(size_t)w * s];
                    }
                }
        }
}

// The exact inverse: x (B, C*s*s, H, W) -> out (B, C, H*s, W*s); C is the output channel count,
// H and W the input sizes.
void pixel_shuffle(float *out, const float *x, int B, int C, int H, int W, int s) {
    if (s < 1) lola_die("pixel_shuffle: factor s=%d, need s >= 1", s);
    int Wo = W * s;
    size_t plane = (size_t)H * W;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * C * s * s * plane >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *xc = x + ((size_t)b * C + c) * s * s * plane;
            float *oc = out + ((size_t)b * C + c) * s * s * plane;
            for (int i = 0; i < s; i++)
                for (int j = 0; j < s; j++) {
                    const float *xi = xc + (size_t)(i * s + j) * plane;
                    for (int h = 0; h < H; h++) {
                        const float *xr = xi + (size_t)h * W;
                        float *or_ = oc + (size_t)(h * s + i) * Wo + j;
                        for (int w = 0; w < W; w++) or_[(size_t)w * s] = xr[w];
                    }
                }
        }
}

// (B, C, N) -> (B, N, C), in 32x32 tiles for cache locality.
void transpose_bcn(float *out, const float *x, int B, int C, int N) {
    enum { T = 32 };
    int tc = (C + T - 1) / T, tn = (N + T - 1) / T;
#pragma omp parallel for collapse(3) schedule(static) if ((size_t)B * C * N >= CPU_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int cb = 0; cb < tc; cb++)
            for (int nb = 0; nb < tn; nb++) {
                const float *xb = x + (size_t)b * C * N;
                float *ob = out + (size_t)b * C * N;
                int c1 = (cb + 1) * T < C ? (cb + 1) * T : C, n1 = (nb + 1) * T < N ? (nb + 1) * T : N;
                for (int c = cb * T; c < c1; c++)
                    for (int n = nb * T; n < n1; n++) ob[(size_t)n * C + c] = xb[(size_t)c * N + n];
            }
}
