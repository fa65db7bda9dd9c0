// image.cu: NCHW ops of the autoencoder besides convolution: pixel (un)shuffle, channel LayerNorm
// (unbiased variance), (B, C, N) -> (B, N, C) transpose and the latent saturations.
// Per-pixel reductions over channels use one thread per (b, pixel): neighbouring threads read
// neighbouring pixels, so every channel step is a coalesced row read.
#include <math.h>

#include "cuda_common.cuh"

// ---------------------------------------------------------------------------------------------
// Pixel unshuffle / shuffle (torch.nn.PixelUnshuffle / PixelShuffle channel order c*s*s + i*s + j)

// x (B, C, H, W) -> out (B, C*s*s, H/s, W/s); one thread per output element.
__global__ void unshuffle_kernel(float *out, const float *x, int B, int C, int H, int W, int s) {
    int Ho = H / s, Wo = W / s;
    size_t n = (size_t)B * C * H * W;
    GRID_STRIDE(o, n) {
        int w = (int)(o % Wo);
        size_t r = o / Wo;
        int h = (int)(r % Ho);
        r /= Ho;
        int co = (int)(r % ((size_t)C * s * s));
        size_t b = r / ((size_t)C * s * s);
        int c = co / (s * s), i = (co / s) % s, j = co % s;
        out[o] = x[((b * C + c) * H + (size_t)h * s + i) * W + (size_t)w * s + j];
    }
}

// x (B, C*s*s, H, W) -> out (B, C, H*s, W*s); one thread per output element.
__global__ void shuffle_kernel(float *out, const float *x, int B, int C, int H, int W, int s) {
    int Ho = H * s, Wo = W * s;
    size_t n = (size_t)B * C * Ho * Wo;
    GRID_STRIDE(o, n) {
        int wo = (int)(o % Wo);
        size_t r = o / Wo;
        int ho = (int)(r % Ho);
        r /= Ho;
        int c = (int)(r % C);
        size_t b = r / C;
        int i = ho % s, j = wo % s;
        size_t ci = (size_t)c * s * s + (size_t)i * s + j;
        out[o] = x[((b * C * s * s + ci) * H + ho / s) * W + wo / s];
    }
}

extern "C" void pixel_unshuffle(float *out, const float *x, int B, int C, int H, int W, int s) {
    if (s < 1 || H % s || W % s) lola_die("pixel_unshuffle: H=%d, W=%d not divisible by s=%d", H, W, s);
    size_t n = (size_t)B * C * H * W;
    if (!n) return;
    lcu_ensure_init();
    unshuffle_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, B, C, H, W, s);
    CUDA_LAUNCH_CHECK();
}

extern "C" void pixel_shuffle(float *out, const float *x, int B, int C, int H, int W, int s) {
    if (s < 1) lola_die("pixel_shuffle: bad factor s=%d", s);
    size_t n = (size_t)B * C * H * W * s * s;
    if (!n) return;
    lcu_ensure_init();
    shuffle_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, B, C, H, W, s);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// LayerNorm over channels, unbiased variance (lola-spec.md 2.1). Thread per (b, pixel).

__global__ void ln_channels_fwd_kernel(float *out, float *mean, float *rstd, const float *x, int B, int C,
                                       int HW, float eps) {
    size_t n = (size_t)B * HW;
    GRID_STRIDE(t, n) {
        size_t b = t / HW, p = t % HW;
        const float *xp = x + b * C * HW + p;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += xp[(size_t)c * HW];
        float mu = s / C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = xp[(size_t)c * HW] - mu;
            v += d * d;
        }
        float r = 1.0f / sqrtf(v / (C - 1) + eps);
        float *op = out + b * C * HW + p;
        for (int c = 0; c < C; c++) op[(size_t)c * HW] = (xp[(size_t)c * HW] - mu) * r;
        mean[t] = mu;
        rstd[t] = r;
    }
}

// dx_c = r (dy_c - mean_c dy) - r y_c sum_k(dy_k y_k) / (C - 1), y = (x - mean) r.
__global__ void ln_channels_bwd_kernel(float *dx, const float *dout, const float *x, const float *mean,
                                       const float *rstd, int B, int C, int HW) {
    size_t n = (size_t)B * HW;
    GRID_STRIDE(t, n) {
        size_t b = t / HW, p = t % HW;
        size_t off = b * C * HW + p;
        const float *xp = x + off, *gp = dout + off;
        float mu = mean[t], r = rstd[t];
        float sg = 0.0f, sgy = 0.0f;
        for (int c = 0; c < C; c++) {
            float g = gp[(size_t)c * HW];
            sg += g;
            sgy += g * (xp[(size_t)c * HW] - mu) * r;
        }
        float mg = sg / C, k = sgy / (C - 1);
        float *dp = dx + off;
        for (int c = 0; c < C; c++) {
            float y = (xp[(size_t)c * HW] - mu) * r;
            dp[(size_t)c * HW] = r * (gp[(size_t)c * HW] - mg - y * k);
        }
    }
}

extern "C" void layernorm_channels_forward(float *out, float *mean, float *rstd, const float *x, int B, int C,
                                           int HW, float eps) {
    if (C < 2) lola_die("layernorm_channels_forward: C=%d (unbiased variance needs C >= 2)", C);
    size_t n = (size_t)B * HW;
    if (!n) return;
    lcu_ensure_init();
    ln_channels_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, mean, rstd, x, B, C, HW, eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void layernorm_channels_backward(float *dx, const float *dout, const float *x, const float *mean,
                                            const float *rstd, int B, int C, int HW) {
    size_t n = (size_t)B * HW;
    if (!n || !dx) return;
    lcu_ensure_init();
    ln_channels_bwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, x, mean, rstd, B, C, HW);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Transpose (B, C, N) -> (B, N, C): 32x32 tiles through shared memory (padded against bank
// conflicts), grid (N/32, C/32, B).

#define TT 32
__global__ void transpose_kernel(float *out, const float *x, int C, int N) {
    __shared__ float tile[TT][TT + 1];
    size_t b = blockIdx.z;
    const float *xb = x + b * C * N;
    float *ob = out + b * C * N;
    int n0 = blockIdx.x * TT, c0 = blockIdx.y * TT;
    for (int dy = threadIdx.y; dy < TT; dy += blockDim.y) {
        int c = c0 + dy, n = n0 + threadIdx.x;
        if (c < C && n < N) tile[dy][threadIdx.x] = xb[(size_t)c * N + n];
    }
    __syncthreads();
    for (int dy = threadIdx.y; dy < TT; dy += blockDim.y) {
        int n = n0 + dy, c = c0 + threadIdx.x;
        if (c < C && n < N) ob[(size_t)n * C + c] = tile[threadIdx.x][dy];
    }
}

extern "C" void transpose_bcn(float *out, const float *x, int B, int C, int N) {
    if (!B || !C || !N) return;
    if (B > 65535) lola_die("transpose_bcn: B=%d exceeds the grid limit 65535", B);
    lcu_ensure_init();
    dim3 grid(lcu_cdiv(N, TT), lcu_cdiv(C, TT), B), block(TT, 8);
    transpose_kernel<<<grid, block, 0, lcu_stream()>>>(out, x, C, N);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Saturations (lola-spec.md 2.4), bound 5.

__device__ __forceinline__ float sat_f(float z, int kind) {
    switch (kind) {
    case SAT_SOFTCLIP2: {
        float q = z / 5.0f;
        return z / sqrtf(1.0f + q * q);
    }
    case SAT_SOFTCLIP: return z / (1.0f + fabsf(z) / 5.0f);
    case SAT_TANH: return 5.0f * tanhf(z / 5.0f);
    case SAT_ARCSINH: return asinhf(z);
    default: return z;
    }
}
// derivative d sat / d z
__device__ __forceinline__ float sat_df(float z, int kind) {
    switch (kind) {
    case SAT_SOFTCLIP2: {
        float q = z / 5.0f, u = 1.0f + q * q;
        return 1.0f / (u * sqrtf(u));
    }
    case SAT_SOFTCLIP: {
        float u = 1.0f + fabsf(z) / 5.0f;
        return 1.0f / (u * u);
    }
    case SAT_TANH: {
        float t = tanhf(z / 5.0f);
        return 1.0f - t * t;
    }
    case SAT_ARCSINH: return 1.0f / sqrtf(1.0f + z * z);
    default: return 1.0f;
    }
}

__global__ void sat_fwd_kernel(float *out, const float *x, size_t n, int kind) {
    GRID_STRIDE(i, n) out[i] = sat_f(x[i], kind);
}
__global__ void sat_bwd_kernel(float *dx, const float *dout, const float *x, size_t n, int kind) {
    GRID_STRIDE(i, n) dx[i] = dout[i] * sat_df(x[i], kind);
}

#define RMS_EPS 1e-5f
// rmsnorm over channels: y = z r, r = 1 / sqrt(mean_c z^2 + 1e-5). Thread per (b, pixel).
__global__ void sat_rms_fwd_kernel(float *out, const float *x, int B, int C, int HW) {
    size_t n = (size_t)B * HW;
    GRID_STRIDE(t, n) {
        size_t off = (t / HW) * C * HW + t % HW;
        float s = 0.0f;
        for (int c = 0; c < C; c++) {
            float z = x[off + (size_t)c * HW];
            s += z * z;
        }
        float r = 1.0f / sqrtf(s / C + RMS_EPS);
        for (int c = 0; c < C; c++) out[off + (size_t)c * HW] = x[off + (size_t)c * HW] * r;
    }
}
// dx_c = r dy_c - r^3 z_c sum_k(dy_k z_k) / C
__global__ void sat_rms_bwd_kernel(float *dx, const float *dout, const float *x, int B, int C, int HW) {
    size_t n = (size_t)B * HW;
    GRID_STRIDE(t, n) {
        size_t off = (t / HW) * C * HW + t % HW;
        float s = 0.0f, sg = 0.0f;
        for (int c = 0; c < C; c++) {
            float z = x[off + (size_t)c * HW];
            s += z * z;
            sg += dout[off + (size_t)c * HW] * z;
        }
        float r = 1.0f / sqrtf(s / C + RMS_EPS);
        float k = r * r * r * sg / C;
        for (int c = 0; c < C; c++) {
            size_t i = off + (size_t)c * HW;
            dx[i] = r * dout[i] - k * x[i];
        }
    }
}

static void check_sat_kind(int kind, const char *fn) {
    if (kind < SAT_NONE || kind > SAT_RMSNORM) lola_die("%s: unknown saturation kind %d (0..5)", fn, kind);
}

extern "C" void saturation_forward(float *out, const float *x, int B, int C, int HW, int kind) {
    check_sat_kind(kind, "saturation_forward");
    size_t n = (size_t)B * C * HW;
    if (!n) return;
    lcu_ensure_init();
    if (kind == SAT_RMSNORM) {
        sat_rms_fwd_kernel<<<lcu_grid((size_t)B * HW), LCU_THREADS, 0, lcu_stream()>>>(out, x, B, C, HW);
    } else if (kind == SAT_NONE) {
        nn_copy(out, x, n);
        return;
    } else {
        sat_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, n, kind);
    }
    CUDA_LAUNCH_CHECK();
}

extern "C" void saturation_backward(float *dx, const float *dout, const float *x, int B, int C, int HW, int kind) {
    check_sat_kind(kind, "saturation_backward");
    size_t n = (size_t)B * C * HW;
    if (!n || !dx) return;
    lcu_ensure_init();
    if (kind == SAT_RMSNORM) {
        sat_rms_bwd_kernel<<<lcu_grid((size_t)B * HW), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, x, B, C, HW);
    } else if (kind == SAT_NONE) {
        nn_copy(dx, dout, n);
        return;
    } else {
        sat_bwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, x, n, kind);
    }
    CUDA_LAUNCH_CHECK();
}
