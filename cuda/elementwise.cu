// elementwise.cu: BLAS-1 style ops, reductions to host scalars, SiLU, dropout, Gaussian noise and
// the AdamW update. Formulas are those of nn.h; comments name only what differs from a plain loop.
#include <math.h>

#include "precision.cuh"
#include "rng.h"

// ---------------------------------------------------------------------------------------------
// Elementwise kernels (grid-stride loops). Where all pointers are 16-byte aligned, the bulk is
// processed as float4 (128-bit loads/stores) and the tail element by element.

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__global__ void fill_kernel(float *x, float v, size_t n) {
    GRID_STRIDE(i, n) x[i] = v;
}
__global__ void fill4_kernel(float4 *x, float v, size_t n4) {
    GRID_STRIDE(i, n4) x[i] = make_float4(v, v, v, v);
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    GRID_STRIDE(i, n) x[i] *= s;
}
__global__ void scale4_kernel(float4 *x, float s, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 v = x[i];
        v.x *= s, v.y *= s, v.z *= s, v.w *= s;
        x[i] = v;
    }
}

__global__ void axpy_kernel(float *y, float a, const float *x, size_t n) {
    GRID_STRIDE(i, n) y[i] += a * x[i];
}
__global__ void axpy4_kernel(float4 *y, float a, const float4 *x, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 v = y[i], u = x[i];
        v.x += a * u.x, v.y += a * u.y, v.z += a * u.z, v.w += a * u.w;
        y[i] = v;
    }
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ void add4_kernel(float4 *out, const float4 *a, const float4 *b, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 u = a[i], v = b[i];
        out[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w);
    }
}

extern "C" void nn_fill(float *x, float value, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(x, n); // bf16 weight cache (precision.cu)
    size_t n4 = aligned16(x) ? n / 4 : 0;
    if (n4) {
        fill4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((float4 *)x, value, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n - 4 * n4) {
        fill_kernel<<<lcu_grid(n - 4 * n4), LCU_THREADS, 0, lcu_stream()>>>(x + 4 * n4, value, n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void nn_scale(float *x, float s, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(x, n);
    size_t n4 = aligned16(x) ? n / 4 : 0;
    if (n4) {
        scale4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((float4 *)x, s, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n - 4 * n4) {
        scale_kernel<<<lcu_grid(n - 4 * n4), LCU_THREADS, 0, lcu_stream()>>>(x + 4 * n4, s, n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void nn_axpy(float *y, float a, const float *x, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(y, n);
    size_t n4 = aligned16(x) && aligned16(y) ? n / 4 : 0;
    if (n4) {
        axpy4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((float4 *)y, a, (const float4 *)x, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n - 4 * n4) {
        axpy_kernel<<<lcu_grid(n - 4 * n4), LCU_THREADS, 0, lcu_stream()>>>(y + 4 * n4, a, x + 4 * n4, n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}

// out may alias a or b (each element is read before it is written by the same thread).
extern "C" void nn_add(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(out, n);
    size_t n4 = aligned16(out) && aligned16(a) && aligned16(b) ? n / 4 : 0;
    if (n4) {
        add4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((float4 *)out, (const float4 *)a,
                                                                    (const float4 *)b, n4);
        CUDA_LAUNCH_CHECK();
    }
    if (n - 4 * n4) {
        add_kernel<<<lcu_grid(n - 4 * n4), LCU_THREADS, 0, lcu_stream()>>>(out + 4 * n4, a + 4 * n4, b + 4 * n4,
                                                                           n - 4 * n4);
        CUDA_LAUNCH_CHECK();
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions. The grid depends only on n, each block writes one double partial, the host sums
// the partials in order: the result is bit-identical from run to run.

#define RED_MAX_BLOCKS 1024

static unsigned red_grid(size_t n) {
    size_t b = (n + LCU_THREADS - 1) / LCU_THREADS;
    if (b > RED_MAX_BLOCKS) b = RED_MAX_BLOCKS;
    return b ? (unsigned)b : 1;
}

__global__ void sum_squares_kernel(double *partials, const float *x, size_t n) {
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        double v = (double)x[i];
        acc += v * v;
    }
    acc = lcu_block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" double nn_sum_squares(const float *x, size_t n) {
    if (!n) return 0.0;
    lcu_ensure_init();
    unsigned g = red_grid(n);
    double *part = (double *)lcu_scratch(LCU_SCR_RED, RED_MAX_BLOCKS * sizeof(double));
    sum_squares_kernel<<<g, LCU_THREADS, 0, lcu_stream()>>>(part, x, n);
    CUDA_LAUNCH_CHECK();
    return lcu_sum_partials(part, (int)g);
}

__global__ void all_finite_kernel(int *bad, const float *x, size_t n) {
    int b = 0;
    GRID_STRIDE(i, n) b |= !isfinite(x[i]);
    if (__syncthreads_or(b) && threadIdx.x == 0) *bad = 1; // same value from every writer
}

extern "C" int nn_all_finite(const float *x, size_t n) {
    if (!n) return 1;
    lcu_ensure_init();
    int *bad = (int *)lcu_scratch(LCU_SCR_RED, RED_MAX_BLOCKS * sizeof(double));
    CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), lcu_stream()));
    all_finite_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(bad, x, n);
    CUDA_LAUNCH_CHECK();
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, bad, sizeof(int), cudaMemcpyDeviceToHost, lcu_stream()));
    CUDA_CHECK(cudaStreamSynchronize(lcu_stream()));
    return !h;
}

// ---------------------------------------------------------------------------------------------
// SiLU

__global__ void silu_fwd_kernel(float *out, const float *x, size_t n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        out[i] = v / (1.0f + expf(-v));
    }
}
__global__ void silu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n) {
    GRID_STRIDE(i, n) {
        float v = x[i];
        float s = 1.0f / (1.0f + expf(-v));
        dx[i] = dout[i] * s * (1.0f + v * (1.0f - s));
    }
}

extern "C" void silu_forward(float *out, const float *x, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    silu_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, n);
    CUDA_LAUNCH_CHECK();
}
extern "C" void silu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!n || !dx) return;
    lcu_ensure_init();
    silu_bwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, x, n);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Dropout and noise: counter-based (rng.h), element i depends only on (seed, i), so the masks and
// the noise equal the CPU backend's.

__global__ void dropout_fwd_kernel(float *out, float *mask, const float *x, size_t n, float p, float scale,
                                   uint64_t seed) {
    GRID_STRIDE(i, n) {
        float m = rng_hash_uniform(seed, (uint64_t)i) >= p ? scale : 0.0f;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}
__global__ void mul_kernel(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}

extern "C" void dropout_forward(float *out, float *mask, const float *x, size_t n, float p, uint64_t seed) {
    if (!n) return;
    if (!(p >= 0.0f && p < 1.0f)) lola_die("dropout_forward: probability p = %g must be in [0, 1)", p);
    lcu_ensure_init();
    float scale = 1.0f / (1.0f - p);
    dropout_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, mask, x, n, p, scale, seed);
    CUDA_LAUNCH_CHECK();
}
extern "C" void dropout_backward(float *dx, const float *dout, const float *mask, size_t n) {
    if (!n || !dx) return;
    lcu_ensure_init();
    mul_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, mask, n);
    CUDA_LAUNCH_CHECK();
}

// Fused SiLU + dropout without a mask (nn.h): the keep decision is rehashed in backward.
__global__ void silu_dropout_fwd_kernel(float *out, const float *x, size_t n, float p, float scale, uint64_t seed) {
    GRID_STRIDE(i, n) {
        float m = rng_hash_uniform(seed, (uint64_t)i) >= p ? scale : 0.0f;
        float v = x[i];
        out[i] = (v / (1.0f + expf(-v))) * m;
    }
}
__global__ void silu_dropout_bwd_kernel(float *dx, const float *dout, const float *x, size_t n, float p, float scale,
                                        uint64_t seed) {
    GRID_STRIDE(i, n) {
        float m = rng_hash_uniform(seed, (uint64_t)i) >= p ? scale : 0.0f;
        float v = x[i];
        float s = 1.0f / (1.0f + expf(-v));
        dx[i] = (dout[i] * m) * s * (1.0f + v * (1.0f - s));
    }
}

extern "C" void silu_dropout_forward(float *out, const float *x, size_t n, float p, uint64_t seed) {
    if (!(p >= 0.0f && p < 1.0f)) lola_die("silu_dropout_forward: probability p = %g must be in [0, 1)", p);
    if (!n) return;
    if (p == 0.0f) { // plain SiLU
        silu_forward(out, x, n);
        return;
    }
    lcu_ensure_init();
    silu_dropout_fwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, x, n, p, 1.0f / (1.0f - p), seed);
    CUDA_LAUNCH_CHECK();
}
extern "C" void silu_dropout_backward(float *dx, const float *dout, const float *x, size_t n, float p, uint64_t seed) {
    if (!(p >= 0.0f && p < 1.0f)) lola_die("silu_dropout_backward: probability p = %g must be in [0, 1)", p);
    if (!n || !dx) return;
    if (p == 0.0f) {
        silu_backward(dx, dout, x, n);
        return;
    }
    lcu_ensure_init();
    silu_dropout_bwd_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dx, dout, x, n, p, 1.0f / (1.0f - p),
                                                                           seed);
    CUDA_LAUNCH_CHECK();
}

__global__ void randn_kernel(float *out, size_t n, uint64_t seed) {
    GRID_STRIDE(i, n) out[i] = rng_hash_normal(seed, (uint64_t)i);
}
extern "C" void nn_randn(float *out, size_t n, uint64_t seed) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(out, n);
    randn_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, n, seed);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// Per-sample coefficient ops of the diffusion wrappers.

// out[b, i] = a[b] x[b, i] (+ c[b] y[b, i]); out may alias x or y.
__global__ void rows_axpby_kernel(float *out, const float *a, const float *x, const float *c, const float *y,
                                  size_t n, size_t total) {
    GRID_STRIDE(i, total) {
        size_t b = i / n;
        out[i] = y ? a[b] * x[i] + c[b] * y[i] : a[b] * x[i];
    }
}
extern "C" void nn_rows_axpby(float *out, const float *a, const float *x, const float *c, const float *y, int B,
                              size_t n) {
    if ((c == NULL) != (y == NULL)) lola_die("nn_rows_axpby: c and y must both be set or both be NULL");
    size_t total = (size_t)(B > 0 ? B : 0) * n;
    if (!total) return;
    lcu_ensure_init();
    lcu_note_write(out, total);
    rows_axpby_kernel<<<lcu_grid(total), LCU_THREADS, 0, lcu_stream()>>>(out, a, x, c, y, n, total);
    CUDA_LAUNCH_CHECK();
}

// out[i] = m[i] != 0 ? x[i] : (y ? y[i] : 0); out may alias x or y.
__global__ void where_kernel(float *out, const float *m, const float *x, const float *y, size_t n) {
    GRID_STRIDE(i, n) out[i] = m[i] != 0.0f ? x[i] : (y ? y[i] : 0.0f);
}
extern "C" void nn_where(float *out, const float *m, const float *x, const float *y, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(out, n);
    where_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, m, x, y, n);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------
// AdamW with torch.optim.AdamW's arithmetic order (as the CPU backend, src/cpu/adamw.c):
//   p *= 1 - lr wd; m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2;
//   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps), bc1 = 1 - b1^t, bc2 = 1 - b2^t (host, double).

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                             float decay, float step, float sqrt_bc2) {
    GRID_STRIDE(i, n) {
        float gi = g[i], m0 = m[i];
        float mi = m0 + (1.0f - b1) * (gi - m0);
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * (mi / (sqrtf(vi) / sqrt_bc2 + eps)); // torch: addcdiv_(m, denom, -step)
    }
}

extern "C" void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                             float b2, float eps, float wd, int t) {
    if (t < 1) lola_die("adamw_update: step count t = %d must be >= 1", t);
    if (!n) return;
    lcu_ensure_init();
    lcu_note_params(p, n); // p is a parameter range; it changes now (precision.cu)
    double bc1 = 1.0 - pow((double)b1, (double)t), bc2 = 1.0 - pow((double)b2, (double)t);
    float step = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * wd); // as src/cpu/adamw.c (torch: 1 - lr wd in double)
    adamw_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(p, g, m, v, n, b1, b2, eps, decay, step, sqrt_bc2);
    CUDA_LAUNCH_CHECK();
}
