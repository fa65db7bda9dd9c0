// elementwise.c: BLAS-1 style ops, reductions, SiLU, dropout and Gaussian noise (nn.h).
// Conventions (nn.h): activation gradients are written (=). Loops with fewer than CPU_PAR_MIN
// elements stay on one thread. Reductions are deterministic: fixed chunks of CPU_RED_CHUNK
// elements, partial sums combined in index order, so the result does not depend on the number
// of threads.
#include <math.h>
#include <omp.h>

#include "cpu.h"
#include "nn.h"
#include "rng.h"

void nn_fill(float *x, float value, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = value;
}

void nn_scale(float *x, float s, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

void nn_axpy(float *y, float a, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void nn_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// Sum of squares, float64 accumulation. Each chunk is summed in double, then the chunk sums are
// added in order (deterministic, independent of the thread count).
double nn_sum_squares(const float *x, size_t n) {
    size_t nchunks = (n + CPU_RED_CHUNK - 1) / CPU_RED_CHUNK;
    if (nchunks <= 1) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        return s;
    }
    double *part = (double *)cpu_scratch(SCRATCH_RED, 2 * nchunks);
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CPU_RED_CHUNK, i1 = i0 + CPU_RED_CHUNK < n ? i0 + CPU_RED_CHUNK : n;
        double s = 0.0;
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < nchunks; c++) s += part[c];
    return s;
}

int nn_all_finite(const float *x, size_t n) {
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

// SiLU: out = x * s, s = sigmoid(x) = 1 / (1 + exp(-x)).
CPU_KERNEL static void silu_fwd_kernel(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = x[i] * cpu_sigmoidf(x[i]);
}
// d/dx [x s(x)] = s + x s (1 - s) = s (1 + x (1 - s)).
CPU_KERNEL static void silu_bwd_kernel(float *dx, const float *dout, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float s = cpu_sigmoidf(x[i]);
        dx[i] = dout[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void silu_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK) silu_fwd_kernel(out + i, x + i, cpu_min_size(CPU_CHUNK, n - i));
}

void silu_backward(float *dx, const float *dout, const float *x, size_t n) {
    if (!dx) return;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK)
        silu_bwd_kernel(dx + i, dout + i, x + i, cpu_min_size(CPU_CHUNK, n - i));
}

// Inverted dropout on elements first .. first+n-1 of the tensor:
// keep(i) = rng_hash_uniform(seed, i) >= p, the same test on every backend. out may alias x.
CPU_KERNEL static void dropout_kernel(float *out, float *mask, const float *x, size_t n, float p,
                                      uint64_t seed, size_t first) {
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float m = rng_hash_uniform(seed, (uint64_t)(first + i)) >= p ? keep : 0.0f;
        mask[i] = m;
        out[i] = x[i] * m;
    }
}

void dropout_forward(float *out, float *mask, const float *x, size_t n, float p, uint64_t seed) {
    if (!(p >= 0.0f && p < 1.0f)) lola_die("dropout_forward: p = %g, need 0 <= p < 1", p);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK)
        dropout_kernel(out + i, mask + i, x + i, cpu_min_size(CPU_CHUNK, n - i), p, seed, i);
}

void dropout_backward(float *dx, const float *dout, const float *mask, size_t n) {
    if (!dx) return;
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = dout[i] * mask[i];
}

// Fused SiLU + inverted dropout without a mask buffer (nn.h): the keep decision is recomputed from
// the hash in backward. The same float operations as silu_forward then dropout_forward (backward:
// dropout_backward then silu_backward), so the results are bit-identical to that sequence.
CPU_KERNEL static void silu_dropout_fwd_kernel(float *out, const float *x, size_t n, float p, uint64_t seed,
                                               size_t first) {
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float m = rng_hash_uniform(seed, (uint64_t)(first + i)) >= p ? keep : 0.0f;
        out[i] = (x[i] * cpu_sigmoidf(x[i])) * m;
    }
}
CPU_KERNEL static void silu_dropout_bwd_kernel(float *dx, const float *dout, const float *x, size_t n, float p,
                                               uint64_t seed, size_t first) {
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        float m = rng_hash_uniform(seed, (uint64_t)(first + i)) >= p ? keep : 0.0f;
        float g = dout[i] * m, s = cpu_sigmoidf(x[i]);
        dx[i] = g * s * (1.0f + x[i] * (1.0f - s));
    }
}

void silu_dropout_forward(float *out, const float *x, size_t n, float p, uint64_t seed) {
    if (!(p >= 0.0f && p < 1.0f)) lola_die("silu_dropout_forward: p = %g, need 0 <= p < 1", p);
    if (p == 0.0f) { // every element kept with scale 1: plain SiLU (the same bits)
        silu_forward(out, x, n);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK)
        silu_dropout_fwd_kernel(out + i, x + i, cpu_min_size(CPU_CHUNK, n - i), p, seed, i);
}

void silu_dropout_backward(float *dx, const float *dout, const float *x, size_t n, float p, uint64_t seed) {
    if (!dx) return;
    if (!(p >= 0.0f && p < 1.0f)) lola_die("silu_dropout_backward: p = %g, need 0 <= p < 1", p);
    if (p == 0.0f) {
        silu_backward(dx, dout, x, n);
        return;
    }
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK)
        silu_dropout_bwd_kernel(dx + i, dout + i, x + i, cpu_min_size(CPU_CHUNK, n - i), p, seed, i);
}

void nn_randn(float *out, size_t n, uint64_t seed) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) out[i] = rng_hash_normal(seed, (uint64_t)i);
}

// SineEncoding (lola-spec.md 3.5; lola.nn.embedding.SineEncoding): the frequencies are computed in
// float64 and rounded to float32 (numpy linspace then torch float32 buffer), the product x * f
// and sin/cos are float32 like torch.
void sine_encoding_forward(float *out, const float *x, int n, int D, float omega) {
    if (D < 4 || D % 2) lola_die("sine_encoding_forward: D = %d, need an even D >= 4", D);
    int half = D / 2;
    float f[half];
    for (int k = 0; k < half; k++) f[k] = (float)pow((double)omega, -(double)k / (half - 1));
#pragma omp parallel for schedule(static) if ((size_t)n * D >= CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * D;
        for (int k = 0; k < half; k++) {
            float a = x[i] * f[k];
            o[k] = sinf(a);
            o[half + k] = cosf(a);
        }
    }
}
