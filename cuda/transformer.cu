// transformer.cu: token ops of the ViT (lola-spec.md 4.2): LayerNorm over D (biased variance),
// adaLN modulation, the gated variance-preserving residual, qk-norm + RoPE, and the sine encoding.
// Reductions over tokens (parameter-like gradients da, dc, dg, dangle) run in fixed-size chunks
// whose partial sums are combined in chunk order: deterministic, no atomics.
#include <math.h>

#include "cuda_common.cuh"

// ---------------------------------------------------------------------------------------------
// LayerNorm over the last axis, biased variance: one warp per row.

#define LN_ROWS_PER_BLOCK 8

// Mean and 1/sqrt(biased variance + eps) of one row of D floats, computed by one warp (every lane
// gets the result): the statistics of LayerNorm over the last axis.
__device__ __forceinline__ void warp_row_stats(const float *xr, int D, float eps, int lane, float *mu_out,
                                               float *r_out) {
    float s = 0.0f;
    for (int i = lane; i < D; i += 32) s += xr[i];
    float mu = lcu_warp_sum(s) / D;
    float v = 0.0f;
    for (int i = lane; i < D; i += 32) {
        float d = xr[i] - mu;
        v += d * d;
    }
    *mu_out = mu;
    *r_out = 1.0f / sqrtf(lcu_warp_sum(v) / D + eps);
}

__global__ void ln_fwd_kernel(float *out, float *mean, float *rstd, const float *x, int M, int D, float eps) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= M) return;
    const float *xr = x + (size_t)row * D;
    float mu, r;
    warp_row_stats(xr, D, eps, lane, &mu, &r);
    float *orow = out + (size_t)row * D;
    for (int i = lane; i < D; i += 32) orow[i] = (xr[i] - mu) * r;
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

// dx = r (dy - mean(dy) - y mean(dy y)), y = (x - mean) r
__global__ void ln_bwd_kernel(float *dx, const float *dout, const float *x, const float *mean, const float *rstd,
                              int M, int D) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= M) return;
    const float *xr = x + (size_t)row * D, *gr = dout + (size_t)row * D;
    float mu = mean[row], r = rstd[row];
    float sg = 0.0f, sgy = 0.0f;
    for (int i = lane; i < D; i += 32) {
        float g = gr[i];
        sg += g;
        sgy += g * (xr[i] - mu) * r;
    }
    float mg = lcu_warp_sum(sg) / D, mgy = lcu_warp_sum(sgy) / D;
    float *dr = dx + (size_t)row * D;
    for (int i = lane; i < D; i += 32) dr[i] = r * (gr[i] - mg - (xr[i] - mu) * r * mgy);
}

extern "C" void layernorm_forward(float *out, float *mean, float *rstd, const float *x, int M, int D, float eps) {
    if (M <= 0 || D <= 0) return;
    lcu_ensure_init();
    ln_fwd_kernel<<<lcu_cdiv(M, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, lcu_stream()>>>(out, mean, rstd, x, M, D,
                                                                                            eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void layernorm_backward(float *dx, const float *dout, const float *x, const float *mean, const float *rstd,
                                   int M, int D) {
    if (M <= 0 || D <= 0 || !dx) return;
    lcu_ensure_init();
    ln_bwd_kernel<<<lcu_cdiv(M, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, lcu_stream()>>>(dx, dout, x, mean, rstd,
                                                                                            M, D);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Chunked reductions over the token axis: grid (D/256, B, nch); each (b, d, chunk) thread walks its
// tokens and writes partials part[k][chunk][b][d] (k = 0, 1); finish_kernel adds sum over chunks.

static int token_chunks(int B, int N, int D) {
    long want = (2L * 65536) / ((long)B * D > 0 ? (long)B * D : 1);
    if (want < 1) want = 1;
    if (want > 64) want = 64;
    if (want > N) want = N;
    return (int)want;
}

__global__ void finish_chunks_kernel(float *acc0, float *acc1, const float *part, int B, int D, int ld, int nch) {
    size_t n = (size_t)B * D;
    GRID_STRIDE(i, n) {
        int d = (int)(i % D);
        size_t b = i / D;
        float s0 = 0.0f, s1 = 0.0f;
        for (int j = 0; j < nch; j++) {
            s0 += part[(size_t)j * n + i];
            if (acc1) s1 += part[(size_t)(nch + j) * n + i];
        }
        if (acc0) acc0[b * ld + d] += s0;
        if (acc1) acc1[b * ld + d] += s1;
    }
}

// ---------------------------------------------------------------------------------------------
// adaLN modulation: out = (1 + a) x + c, a and c rows of stride ld.

__global__ void modulate_fwd_kernel(float *out, const float *x, const float *a, const float *c, int N, int D, int ld,
                                    size_t n) {
    GRID_STRIDE(i, n) {
        int d = (int)(i % D);
        size_t b = i / ((size_t)N * D);
        out[i] = (1.0f + a[b * ld + d]) * x[i] + c[b * ld + d];
    }
}

__global__ void modulate_bwd_kernel(float *dx, float *part, const float *dout, const float *x, const float *a, int B,
                                    int N, int D, int ld, int nch) {
    int d = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y, j = blockIdx.z;
    if (d >= D) return;
    int n0 = (int)((long)N * j / nch), n1 = (int)((long)N * (j + 1) / nch);
    float ga = 1.0f + a[(size_t)b * ld + d];
    float sa = 0.0f, sc = 0.0f;
    for (int t = n0; t < n1; t++) {
        size_t i = ((size_t)b * N + t) * D + d;
        float g = dout[i];
        sa += g * x[i];
        sc += g;
        if (dx) dx[i] = g * ga;
    }
    size_t BD = (size_t)B * D;
    part[(size_t)j * BD + (size_t)b * D + d] = sa;
    part[(size_t)(nch + j) * BD + (size_t)b * D + d] = sc;
}

extern "C" void modulate_forward(float *out, const float *x, const float *a, const float *c, int B, int N, int D,
                                 int ld) {
    size_t n = (size_t)B * N * D;
    if (!n) return;
    lcu_ensure_init();
    modulate_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, a, c, N, D, ld, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x, const float *a,
                                  int B, int N, int D, int ld) {
    if (B <= 0 || N <= 0 || D <= 0) return;
    if (B > 65535) lola_die("modulate_backward: B=%d exceeds the grid limit 65535", B);
    lcu_ensure_init();
    int nch = token_chunks(B, N, D);
    float *part = (float *)lcu_scratch(LCU_SCR_PART, 2 * (size_t)nch * B * D * sizeof(float));
    dim3 grid(lcu_cdiv(D, 128), B, nch);
    modulate_bwd_kernel<<<grid, 128, 0, lcu_stream()>>>(dx, part, dout, x, a, B, N, D, ld, nch);
    CUDA_LAUNCH_CHECK();
    if (da || dc) {
        finish_chunks_kernel<<<lcu_grid((size_t)B * D), LCU_THREADS, 0, lcu_stream()>>>(da, dc, part, B, D, ld, nch);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// Fused LayerNorm + adaLN modulation (nn.h): out = (1 + a) LN(x) + c without storing LN(x).

// One warp per row, as ln_fwd_kernel; mean, rstd may be NULL.
__global__ void lnmod_fwd_kernel(float *out, float *mean, float *rstd, const float *x, const float *a,
                                 const float *c, int M, int N, int D, int ld, float eps) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= M) return;
    const float *xr = x + (size_t)row * D;
    const float *ab = a + (size_t)(row / N) * ld, *cb = c + (size_t)(row / N) * ld;
    float mu, r;
    warp_row_stats(xr, D, eps, lane, &mu, &r);
    float *orow = out + (size_t)row * D;
    for (int i = lane; i < D; i += 32) orow[i] = (1.0f + ab[i]) * ((xr[i] - mu) * r) + cb[i];
    if (lane == 0) {
        if (mean) mean[row] = mu;
        if (rstd) rstd[row] = r;
    }
}

// Backward: block (b, chunk j) walks tokens n0..n1-1 of sample b in order. Per token: the row
// reductions of ln_bwd_kernel (block sums) on dln = dout (1 + a) give dx; the token sums of
// modulate_bwd_kernel (da: dout LN(x), dc: dout) accumulate per feature in shared memory (feature d
// owned by thread d % blockDim, so no races) and land in part[k][j][b][d] for finish_chunks_kernel.
// Deterministic: fixed chunks, fixed order, no atomics.
#define LNMOD_THREADS 256
__global__ void lnmod_bwd_kernel(float *dx, float *part, const float *dout, const float *x, const float *mean,
                                 const float *rstd, const float *a, int B, int N, int D, int ld, int nch) {
    extern __shared__ float acc[]; // [2][D]: da, dc partial sums
    int b = blockIdx.x, j = blockIdx.y, tid = threadIdx.x;
    int n0 = (int)((long)N * j / nch), n1 = (int)((long)N * (j + 1) / nch);
    const float *ab = a + (size_t)b * ld;
    for (int d = tid; d < D; d += blockDim.x) acc[d] = 0.0f, acc[D + d] = 0.0f;
    for (int t = n0; t < n1; t++) {
        size_t row = (size_t)b * N + t;
        const float *gr = dout + row * D, *xr = x + row * D;
        float mu = mean[row], r = rstd[row];
        float sg = 0.0f, sgy = 0.0f;
        for (int d = tid; d < D; d += blockDim.x) {
            float g = gr[d], y = (xr[d] - mu) * r, gl = g * (1.0f + ab[d]);
            acc[d] += g * y;
            acc[D + d] += g;
            sg += gl;
            sgy += gl * y;
        }
        if (dx) { // uniform over the block (the block sums synchronise)
            float mg = lcu_block_sum(sg) / D, mgy = lcu_block_sum(sgy) / D;
            float *dr = dx + row * D;
            for (int d = tid; d < D; d += blockDim.x) {
                float gl = gr[d] * (1.0f + ab[d]);
                dr[d] = r * (gl - mg - (xr[d] - mu) * r * mgy);
            }
        }
    }
    size_t BD = (size_t)B * D;
    for (int d = tid; d < D; d += blockDim.x) {
        part[(size_t)j * BD + (size_t)b * D + d] = acc[d];
        part[(size_t)(nch + j) * BD + (size_t)b * D + d] = acc[D + d];
    }
}

extern "C" void layernorm_modulate_forward(float *out, float *mean, float *rstd, const float *x, const float *a,
                                           const float *c, int B, int N, int D, int ld, float eps) {
    int M = B * N;
    if (M <= 0 || D <= 0) return;
    lcu_ensure_init();
    lnmod_fwd_kernel<<<lcu_cdiv(M, LN_ROWS_PER_BLOCK), 32 * LN_ROWS_PER_BLOCK, 0, lcu_stream()>>>(
        out, mean, rstd, x, a, c, M, N, D, ld, eps);
    CUDA_LAUNCH_CHECK();
}

extern "C" void layernorm_modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x,
                                            const float *mean, const float *rstd, const float *a, int B, int N,
                                            int D, int ld) {
    if (B <= 0 || N <= 0 || D <= 0 || (!dx && !da && !dc)) return;
    size_t shmem = 2 * (size_t)D * sizeof(float);
    if (shmem > 48 * 1024)
        lola_die("layernorm_modulate_backward: D=%d needs %zu bytes of shared memory (at most 48 KiB: D <= 6144)", D,
                 shmem);
    lcu_ensure_init();
    // chunks: about 4 blocks per SM over the whole grid, at most one per token, at most 65535
    long want = ((long)lcu_num_sms() * 4 + B - 1) / B;
    if (want > N) want = N;
    if (want > 65535) want = 65535;
    int nch = want < 1 ? 1 : (int)want;
    float *part = (float *)lcu_scratch(LCU_SCR_PART, 2 * (size_t)nch * B * D * sizeof(float));
    dim3 grid(B, nch);
    lnmod_bwd_kernel<<<grid, LNMOD_THREADS, shmem, lcu_stream()>>>(dx, part, dout, x, mean, rstd, a, B, N, D, ld,
                                                                    nch);
    CUDA_LAUNCH_CHECK();
    if (da || dc) {
        finish_chunks_kernel<<<lcu_grid((size_t)B * D), LCU_THREADS, 0, lcu_stream()>>>(da, dc, part, B, D, ld, nch);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// Gated residual: out = (x + g y) / sqrt(1 + g^2).

__global__ void gated_fwd_kernel(float *out, const float *x, const float *y, const float *g, int N, int D, int ld,
                                 size_t n) {
    GRID_STRIDE(i, n) {
        int d = (int)(i % D);
        size_t b = i / ((size_t)N * D);
        float gg = g[b * ld + d];
        out[i] = (x[i] + gg * y[i]) / sqrtf(1.0f + gg * gg);
    }
}

// dx = dout k, dy = dout g k, dg += sum_n dout (y k - (x + g y) g k^3), k = 1 / sqrt(1 + g^2).
// dx may alias dout: each element is read before it is written, by the same thread.
__global__ void gated_bwd_kernel(float *dx, float *dy, float *part, const float *dout, const float *x,
                                 const float *y, const float *g, int B, int N, int D, int ld, int nch) {
    int d = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y, j = blockIdx.z;
    if (d >= D) return;
    int n0 = (int)((long)N * j / nch), n1 = (int)((long)N * (j + 1) / nch);
    float gg = g[(size_t)b * ld + d];
    float k = 1.0f / sqrtf(1.0f + gg * gg);
    float k3 = k * k * k;
    float s = 0.0f;
    for (int t = n0; t < n1; t++) {
        size_t i = ((size_t)b * N + t) * D + d;
        float go = dout[i], xv = x[i], yv = y[i];
        s += go * (yv * k - (xv + gg * yv) * gg * k3);
        if (dx) dx[i] = go * k;
        if (dy) dy[i] = go * gg * k;
    }
    part[(size_t)j * B * D + (size_t)b * D + d] = s;
}

extern "C" void gated_residual_forward(float *out, const float *x, const float *y, const float *g, int B, int N, int D,
                                       int ld) {
    size_t n = (size_t)B * N * D;
    if (!n) return;
    lcu_ensure_init();
    gated_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, y, g, N, D, ld, n);
    CUDA_LAUNCH_CHECK();
}

extern "C" void gated_residual_backward(float *dx, float *dy, float *dg, const float *dout, const float *x,
                                        const float *y, const float *g, int B, int N, int D, int ld) {
    if (B <= 0 || N <= 0 || D <= 0) return;
    if (B > 65535) lola_die("gated_residual_backward: B=%d exceeds the grid limit 65535", B);
    lcu_ensure_init();
    int nch = token_chunks(B, N, D);
    size_t BD = (size_t)B * D;
    float *part = (float *)lcu_scratch(LCU_SCR_PART, (size_t)nch * BD * sizeof(float));
    dim3 grid(lcu_cdiv(D, 128), B, nch);
    gated_bwd_kernel<<<grid, 128, 0, lcu_stream()>>>(dx, dy, part, dout, x, y, g, B, N, D, ld, nch);
    CUDA_LAUNCH_CHECK();
    if (dg) {
        finish_chunks_kernel<<<lcu_grid(BD), LCU_THREADS, 0, lcu_stream()>>>(dg, NULL, part, B, D, ld, nch);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// qk-norm + RoPE on packed qkv (B, N, 3D). One warp per (b, n, part, head) row of dh values;
// part 0 = q, 1 = k (normalised and rotated), 2 = v (copied).

#define QK_EPS 1e-5f
#define QK_WARPS 8

__global__ void qk_fwd_kernel(float *out, float *rstd, const float *qkv, const float *angle, int B, int N, int H,
                              int dh, int qknorm, int rope) {
    size_t row = (size_t)blockIdx.x * QK_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (size_t)B * N * 3 * H) return;
    int h = (int)(row % H), part = (int)((row / H) % 3);
    size_t bn = row / (3 * (size_t)H);
    int n = (int)(bn % N);
    int D = H * dh;
    size_t base = bn * 3 * D + (size_t)part * D + (size_t)h * dh;
    const float *xr = qkv + base;
    float *orow = out + base;
    if (part == 2) {
        for (int i = lane; i < dh; i += 32) orow[i] = xr[i];
        return;
    }
    float r = 1.0f;
    if (qknorm) {
        float ss = 0.0f;
        for (int i = lane; i < dh; i += 32) ss += xr[i] * xr[i];
        r = 1.0f / sqrtf(lcu_warp_sum(ss) / dh + QK_EPS);
    }
    if (lane == 0) rstd[bn * 2 * H + (size_t)part * H + h] = r;
    if (rope) {
        const float *ang = angle + (size_t)n * (D / 2) + (size_t)h * (dh / 2);
        for (int m = lane; m < dh / 2; m += 32) {
            float y0 = xr[2 * m] * r, y1 = xr[2 * m + 1] * r;
            float s, c;
            sincosf(ang[m], &s, &c);
            orow[2 * m] = y0 * c - y1 * s;
            orow[2 * m + 1] = y0 * s + y1 * c;
        }
    } else {
        for (int i = lane; i < dh; i += 32) orow[i] = xr[i] * r;
    }
}

// Unrotate the gradient (du = R(-phi) dout), then RMS-norm backward dx = r (du - y mean(du y)).
__global__ void qk_bwd_kernel(float *dqkv, const float *dout, const float *qkv, const float *rstd,
                              const float *angle, int B, int N, int H, int dh, int qknorm, int rope) {
    size_t row = (size_t)blockIdx.x * QK_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (size_t)B * N * 3 * H) return;
    int h = (int)(row % H), part = (int)((row / H) % 3);
    size_t bn = row / (3 * (size_t)H);
    int n = (int)(bn % N);
    int D = H * dh;
    size_t base = bn * 3 * D + (size_t)part * D + (size_t)h * dh;
    const float *xr = qkv + base, *gr = dout + base;
    float *dr = dqkv + base;
    if (part == 2) {
        for (int i = lane; i < dh; i += 32) dr[i] = gr[i];
        return;
    }
    float r = qknorm ? rstd[bn * 2 * H + (size_t)part * H + h] : 1.0f;
    const float *ang = angle + (size_t)n * (D / 2) + (size_t)h * (dh / 2);
    // pass 1: du . y
    float dot = 0.0f;
    if (qknorm) {
        if (rope) {
            for (int m = lane; m < dh / 2; m += 32) {
                float s, c;
                sincosf(ang[m], &s, &c);
                float d0 = gr[2 * m], d1 = gr[2 * m + 1];
                float du0 = d0 * c + d1 * s, du1 = -d0 * s + d1 * c;
                dot += du0 * xr[2 * m] * r + du1 * xr[2 * m + 1] * r;
            }
        } else {
            for (int i = lane; i < dh; i += 32) dot += gr[i] * xr[i] * r;
        }
        dot = lcu_warp_sum(dot) / dh;
    }
    // pass 2: write dx
    if (rope) {
        for (int m = lane; m < dh / 2; m += 32) {
            float s, c;
            sincosf(ang[m], &s, &c);
            float d0 = gr[2 * m], d1 = gr[2 * m + 1];
            float du0 = d0 * c + d1 * s, du1 = -d0 * s + d1 * c;
            dr[2 * m] = r * (du0 - xr[2 * m] * r * dot);
            dr[2 * m + 1] = r * (du1 - xr[2 * m + 1] * r * dot);
        }
    } else {
        for (int i = lane; i < dh; i += 32) dr[i] = r * (gr[i] - xr[i] * r * dot);
    }
}

// dangle[n, j] += sum_{b, q/k} (-dout0 o1 + dout1 o0), (o0, o1) the rotated pair. Thread per (n, j).
__global__ void qk_dangle_kernel(float *dangle, const float *dout, const float *qkv, const float *rstd,
                                 const float *angle, int B, int N, int H, int dh, int qknorm) {
    int D = H * dh, half = D / 2;
    size_t n_items = (size_t)N * half;
    GRID_STRIDE(t, n_items) {
        int j = (int)(t % half);
        size_t n = t / half;
        int h = j / (dh / 2), m = j % (dh / 2);
        float s, c;
        sincosf(angle[t], &s, &c);
        float acc = 0.0f;
        for (int b = 0; b < B; b++) {
            size_t bn = (size_t)b * N + n;
            for (int part = 0; part < 2; part++) {
                size_t off = bn * 3 * D + (size_t)part * D + (size_t)h * dh + 2 * m;
                float r = qknorm ? rstd[bn * 2 * H + (size_t)part * H + h] : 1.0f;
                float y0 = qkv[off] * r, y1 = qkv[off + 1] * r;
                float o0 = y0 * c - y1 * s, o1 = y0 * s + y1 * c;
                acc += -dout[off] * o1 + dout[off + 1] * o0;
            }
        }
        dangle[t] += acc;
    }
}

static void check_qk_args(const char *fn, int B, int N, int H, int dh, int rope) {
    if (B <= 0 || N <= 0 || H <= 0 || dh <= 0) lola_die("%s: bad shape B=%d N=%d H=%d dh=%d", fn, B, N, H, dh);
    if (rope && dh % 2) lola_die("%s: RoPE needs an even head size, got dh=%d", fn, dh);
}

extern "C" void qk_norm_rope_forward(float *out, float *rstd, const float *qkv, const float *angle, int B, int N,
                                     int H, int dh, int qknorm, int rope) {
    check_qk_args("qk_norm_rope_forward", B, N, H, dh, rope);
    lcu_ensure_init();
    size_t rows = (size_t)B * N * 3 * H;
    qk_fwd_kernel<<<lcu_cdiv(rows, QK_WARPS), 32 * QK_WARPS, 0, lcu_stream()>>>(out, rstd, qkv, angle, B, N, H, dh,
                                                                              qknorm, rope);
    CUDA_LAUNCH_CHECK();
}

extern "C" void qk_norm_rope_backward(float *dqkv, float *dangle, const float *dout, const float *qkv,
                                      const float *rstd, const float *angle, int B, int N, int H, int dh, int qknorm,
                                      int rope) {
    check_qk_args("qk_norm_rope_backward", B, N, H, dh, rope);
    lcu_ensure_init();
    // dangle first: it reads dout, which dqkv may not alias by contract, but keep the order safe.
    if (dangle && rope) {
        size_t n = (size_t)N * (H * dh / 2);
        qk_dangle_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dangle, dout, qkv, rstd, angle, B, N, H, dh,
                                                                        qknorm);
        CUDA_LAUNCH_CHECK();
    }
    if (dqkv) {
        size_t rows = (size_t)B * N * 3 * H;
        qk_bwd_kernel<<<lcu_cdiv(rows, QK_WARPS), 32 * QK_WARPS, 0, lcu_stream()>>>(dqkv, dout, qkv, rstd, angle, B, N,
                                                                                  H, dh, qknorm, rope);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// Sine encoding (lola-spec.md 3.5): out[i, k] = sin(x_i f_k), out[i, D/2 + k] = cos(x_i f_k),
// f_k = omega^(-k / (D/2 - 1)). Frequencies in double, rounded to float, like the CPU backend.

__global__ void sine_kernel(float *out, const float *x, int n, int D, float omega) {
    int half = D / 2;
    size_t items = (size_t)n * half;
    GRID_STRIDE(t, items) {
        int k = (int)(t % half);
        size_t i = t / half;
        float f = (float)pow((double)omega, -(double)k / (double)(half - 1));
        float s, c;
        sincosf(x[i] * f, &s, &c);
        out[i * D + k] = s;
        out[i * D + half + k] = c;
    }
}

extern "C" void sine_encoding_forward(float *out, const float *x, int n, int D, float omega) {
    if (n <= 0) return;
    if (D < 4 || D % 2) lola_die("sine_encoding_forward: D=%d must be even and >= 4", D);
    lcu_ensure_init();
    size_t items = (size_t)n * (D / 2);
    sine_kernel<<<lcu_grid(items), LCU_THREADS, 0, lcu_stream()>>>(out, x, n, D, omega);
    CUDA_LAUNCH_CHECK();
}
