// test_ops.c: the CPU backend of every op in nn.h.
//
// * Every backward is checked against central finite differences of its forward:
//   L(x) = sum_i G_i * y_i(x) with a fixed random upstream gradient G (accumulated in float64), and
//   num_i = (L(x + h e_i) - L(x - h e_i)) / (actual float step), for all elements of small inputs
//   or a fixed sample of GC_SAMPLES elements of larger ones.
//   TOLERANCE RULE (all gradient checks): max_i |analytic_i - num_i| <= GC_RTOL * max(max_i |num_i|,
//   GC_FLOOR), i.e. 1% of the largest gradient entry. With fp32 forwards and h = 1e-2 the observed
//   error is ~1e-4 of the largest entry; a wrong term (e.g. C instead of C-1, a missing factor,
//   a sign) moves it by > 10%.
// * Activation-gradient outputs are pre-filled with NaN before every backward, so an op that does
//   not overwrite (=) every element fails; parameter gradients are checked to accumulate (+=).
// * Forward values: the hand-checkable numbers of lola-spec.md 10.3, and float64 reference
//   implementations written here independently (direct convolution, attention, ...), compared with
//   |got - ref| <= atol + rtol |ref| (tolerances next to each check).
// The CPU backend's memory is host memory, so the test reads and writes nn_alloc buffers directly.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "cpu/cpu.h" // cpu_expf (accuracy test), the chunking knobs cpu_conv_cols, cpu_att_scratch_floats
#include "nn.h"
#include "rng.h"
#include "test.h"

#define GC_RTOL 1e-2
#define GC_FLOOR 1e-3
#define GC_SAMPLES 160
#define GC_H 1e-2

static Rng rng;

static float *uni(size_t n, float lo, float hi) {
    float *x = nn_alloc(n);
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rng_uniform(&rng);
    return x;
}
static float *nans(size_t n) {
    float *x = nn_alloc(n);
    nn_fill(x, NAN, n);
    return x;
}
static double dotg(const float *y, const float *G, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)y[i] * G[i];
    return s;
}
static double max_abs_diff(const float *a, const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; // NaN sticks
    }
    return m;
}
static double max_abs(const double *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fabs(b[i]) > m ? fabs(b[i]) : m;
    return m;
}

typedef double (*LossFn)(void *ctx);

// Finite-difference check of `ana` = dL/dx (n floats) where L = loss(ctx) reads x. x is perturbed
// in place and restored.
static void gradcheck(const char *name, LossFn loss, void *ctx, float *x, const float *ana, size_t n) {
    size_t m = n <= GC_SAMPLES ? n : GC_SAMPLES;
    double maxerr = 0.0, maxnum = 0.0;
    size_t worst = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = n <= GC_SAMPLES ? k : (size_t)(((uint64_t)k * 2654435761u + 12345u) % n);
        float v = x[i];
        float xp = (float)(v + GC_H), xm = (float)(v - GC_H);
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = v;
        double num = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs(num - (double)ana[i]);
        if (!(err <= maxerr)) maxerr = err, worst = i;
        if (fabs(num) > maxnum) maxnum = fabs(num);
    }
    double bound = GC_RTOL * (maxnum > GC_FLOOR ? maxnum : GC_FLOOR);
    if (!(maxerr <= bound))
        printf("  %s: worst element %zu analytic %.6g, max |num| %.4g, max err %.3g > %.3g\n", name,
               worst, ana[worst], maxnum, maxerr, bound);
    CHECK(maxerr <= bound, "gradcheck %s (%zu of %zu elements, max err %.2e of max |grad| %.3g)", name,
          m, n, maxerr, maxnum);
}

// ---------------------------------------------------------------------------------------------
// Memory, BLAS-1, reductions

static void test_memory(void) {
    size_t before = nn_bytes_in_use();
    float *x = nn_alloc(1000);
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= x[i] == 0.0f;
    CHECK(zero, "nn_alloc returns zero-filled memory");
    CHECK(((uintptr_t)x & 63) == 0, "nn_alloc is 64-byte aligned");
    CHECK(nn_bytes_in_use() == before + 4000, "nn_bytes_in_use counts 1000 floats = 4000 bytes (%zu -> %zu)",
          before, nn_bytes_in_use());
    CHECK(nn_bytes_peak() >= before + 4000, "nn_bytes_peak >= in use");
    nn_free(x);
    CHECK(nn_bytes_in_use() == before, "nn_free returns the bytes");
    CHECK(strstr(nn_backend_name(), "cpu (") == nn_backend_name(), "backend name '%s'", nn_backend_name());
}

static void test_blas1(void) {
    size_t n = 300001; // several reduction chunks, an odd tail
    float *x = uni(n, -2, 2), *y = uni(n, -1, 1), *z = nn_alloc(n);
    double ref = 0.0;
    for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    double s = nn_sum_squares(x, n);
    CHECK_CLOSE(s, ref, 0, 1e-12, "nn_sum_squares in float64 (n=%zu)", n);
    omp_set_num_threads(1);
    double s1 = nn_sum_squares(x, n);
    omp_set_num_threads(cpu_threads());
    CHECK(s1 == s, "nn_sum_squares is bit-identical with 1 thread and %d threads", cpu_threads());
    nn_add(z, x, y, n);
    nn_axpy(z, -2.0f, y, n); // z = x - y
    nn_scale(z, 0.5f, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= fabsf(z[i] - 0.5f * (x[i] - y[i])) <= 1e-6f;
    CHECK(ok, "nn_add / nn_axpy / nn_scale");
    nn_fill(z, 3.0f, n);
    nn_copy(y, z, n);
    CHECK(y[0] == 3.0f && y[n - 1] == 3.0f && nn_all_finite(y, n), "nn_fill / nn_copy / nn_all_finite");
    y[n / 2] = NAN;
    CHECK(!nn_all_finite(y, n), "nn_all_finite detects NaN");
    y[n / 2] = INFINITY;
    CHECK(!nn_all_finite(y, n), "nn_all_finite detects inf");
    nn_zero(y, n);
    CHECK(nn_sum_squares(y, n) == 0.0, "nn_zero");
    nn_free(x), nn_free(y), nn_free(z);
}

static void test_expf(void) {
    double maxrel = 0.0;
    for (float v = -87.0f; v <= 88.0f; v += 0.00731f) {
        double e = exp((double)v), rel = fabs(cpu_expf(v) - e) / e;
        if (rel > maxrel) maxrel = rel;
    }
    CHECK(maxrel < 4e-7, "cpu_expf relative error %.2e < 4e-7 on [-87, 88]", maxrel);
    CHECK(isnan(cpu_expf(NAN)), "cpu_expf propagates NaN");
    CHECK(cpu_expf(-1000.0f) >= 0.0f && cpu_expf(-1000.0f) < 1e-37f && isfinite(cpu_expf(1000.0f)),
          "cpu_expf clamps far arguments");
}

// ---------------------------------------------------------------------------------------------
// SiLU, dropout, randn

typedef struct {
    float *x, *y, *G, *mask;
    size_t n;
    float p;
    uint64_t seed;
} Elt;

static double silu_loss(void *c) {
    Elt *e = c;
    silu_forward(e->y, e->x, e->n);
    return dotg(e->y, e->G, e->n);
}
static double dropout_loss(void *c) {
    Elt *e = c;
    dropout_forward(e->y, e->mask, e->x, e->n, e->p, e->seed);
    return dotg(e->y, e->G, e->n);
}

static void test_silu_dropout(void) {
    Elt e = {.n = 120};
    e.x = uni(e.n, -6, 6), e.y = nn_alloc(e.n), e.G = uni(e.n, -1, 1), e.mask = nn_alloc(e.n);
    silu_forward(e.y, e.x, e.n);
    double err = 0.0;
    for (size_t i = 0; i < e.n; i++) {
        double ref = e.x[i] / (1.0 + exp(-(double)e.x[i]));
        err = fmax(err, fabs(e.y[i] - ref) / fmax(1e-3, fabs(ref)));
    }
    CHECK(err < 1e-6, "silu forward vs float64 (max rel err %.2e)", err);
    float *dx = nans(e.n);
    silu_backward(dx, e.G, e.x, e.n);
    gradcheck("silu", silu_loss, &e, e.x, dx, e.n);

    // dropout: mask rule, scaling, fraction, gradient with the fixed mask (same seed)
    size_t n = 100000;
    float *x = uni(n, -1, 1), *y = nn_alloc(n), *mask = nn_alloc(n);
    float p = 0.3f;
    dropout_forward(y, mask, x, n, p, 77);
    int rule = 1;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        float want = rng_hash_uniform(77, i) >= p ? 1.0f / (1.0f - p) : 0.0f;
        rule &= mask[i] == want && y[i] == x[i] * want;
        kept += mask[i] != 0.0f;
    }
    CHECK(rule, "dropout mask[i] = (rng_hash_uniform(seed, i) >= p) / (1 - p), out = x * mask");
    CHECK(fabs((double)kept / n - 0.7) < 0.01, "dropout keeps %.4f of elements (1 - p = 0.7)", (double)kept / n);
    dropout_forward(y, mask, x, n, 0.0f, 5);
    CHECK(memcmp(y, x, n * sizeof(float)) == 0, "dropout with p = 0 is the identity");
    e.p = 0.25f, e.seed = 9;
    dropout_forward(e.y, e.mask, e.x, e.n, e.p, e.seed);
    nn_fill(dx, NAN, e.n);
    dropout_backward(dx, e.G, e.mask, e.n);
    gradcheck("dropout (fixed mask)", dropout_loss, &e, e.x, dx, e.n);

    nn_randn(y, n, 1234);
    int same = 1;
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) {
        same &= y[i] == rng_hash_normal(1234, i);
        s += y[i], q += (double)y[i] * y[i];
    }
    CHECK(same, "nn_randn(seed)[i] == rng_hash_normal(seed, i)");
    CHECK(fabs(s / n) < 0.02 && fabs(q / n - 1) < 0.02, "nn_randn mean %.4f var %.4f", s / n, q / n);
    nn_free(x), nn_free(y), nn_free(mask), nn_free(dx);
    nn_free(e.x), nn_free(e.y), nn_free(e.G), nn_free(e.mask);
}

// ---------------------------------------------------------------------------------------------
// conv2d

typedef struct {
    float *x, *w, *b, *y, *G;
    int B, Cin, Cout, H, W, K;
} Conv;

static double conv_loss(void *c) {
    Conv *p = c;
    conv2d_forward(p->y, p->x, p->w, p->b, p->B, p->Cin, p->Cout, p->H, p->W, p->K);
    return dotg(p->y, p->G, (size_t)p->B * p->Cout * p->H * p->W);
}

// float64 direct convolution, stride 1, zero padding K/2.
static void conv_ref(double *out, const Conv *p) {
    int P = p->K / 2, H = p->H, W = p->W, K = p->K;
    for (int b = 0; b < p->B; b++)
        for (int co = 0; co < p->Cout; co++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    double s = p->b ? p->b[co] : 0.0;
                    for (int ci = 0; ci < p->Cin; ci++)
                        for (int i = 0; i < K; i++)
                            for (int j = 0; j < K; j++) {
                                int hh = h + i - P, ww = w + j - P;
                                if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
                                s += (double)p->w[((co * p->Cin + ci) * K + i) * K + j] *
                                     p->x[(((size_t)b * p->Cin + ci) * H + hh) * W + ww];
                            }
                    out[(((size_t)b * p->Cout + co) * H + h) * W + w] = s;
                }
}

// float64 direct backward: dx, dw, db of L = sum G * conv(x).
static void conv_ref_backward(double *dx, double *dw, double *db, const Conv *p) {
    int P = p->K / 2, H = p->H, W = p->W, K = p->K;
    memset(dx, 0, sizeof(double) * p->B * p->Cin * H * W);
    memset(dw, 0, sizeof(double) * p->Cout * p->Cin * K * K);
    memset(db, 0, sizeof(double) * p->Cout);
    for (int b = 0; b < p->B; b++)
        for (int co = 0; co < p->Cout; co++)
            for (int h = 0; h < H; h++)
                for (int w = 0; w < W; w++) {
                    double g = p->G[(((size_t)b * p->Cout + co) * H + h) * W + w];
                    db[co] += g;
                    for (int ci = 0; ci < p->Cin; ci++)
                        for (int i = 0; i < K; i++)
                            for (int j = 0; j < K; j++) {
                                int hh = h + i - P, ww = w + j - P;
                                if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
                                size_t xi = (((size_t)b * p->Cin + ci) * H + hh) * W + ww;
                                size_t wi = ((co * p->Cin + ci) * K + i) * K + j;
                                dw[wi] += g * p->x[xi];
                                dx[xi] += g * p->w[wi];
                            }
                }
}

static Conv conv_make(int B, int Cin, int Cout, int H, int W, int K, int bias) {
    Conv p = {.B = B, .Cin = Cin, .Cout = Cout, .H = H, .W = W, .K = K};
    p.x = uni((size_t)B * Cin * H * W, -1, 1);
    p.w = uni((size_t)Cout * Cin * K * K, -0.5f, 0.5f);
    p.b = bias ? uni(Cout, -0.5f, 0.5f) : NULL;
    p.y = nn_alloc((size_t)B * Cout * H * W);
    p.G = uni((size_t)B * Cout * H * W, -1, 1);
    return p;
}
static void conv_free(Conv *p) { nn_free(p->x), nn_free(p->w), nn_free(p->b), nn_free(p->y), nn_free(p->G); }

static void test_conv(void) {
    const int shapes[][7] = {
        // B Cin Cout H W K bias
        {2, 3, 4, 5, 7, 3, 1},
        {2, 3, 4, 6, 4, 1, 1},
        {1, 3, 4, 6, 4, 1, 0},
        {2, 2, 3, 1, 5, 3, 0},
        {1, 1, 1, 3, 3, 3, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int *d = shapes[s];
        Conv p = conv_make(d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
        char tag[96];
        snprintf(tag, sizeof tag, "B%d Cin%d Cout%d %dx%d K%d%s", d[0], d[1], d[2], d[3], d[4], d[5],
                 d[6] ? " bias" : "");
        size_t nx = (size_t)p.B * p.Cin * p.H * p.W, ny = (size_t)p.B * p.Cout * p.H * p.W,
               nw = (size_t)p.Cout * p.Cin * p.K * p.K;
        double *ref = malloc(sizeof(double) * ny);
        conv_ref(ref, &p);
        conv2d_forward(p.y, p.x, p.w, p.b, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        double e = max_abs_diff(p.y, ref, ny) / max_abs(ref, ny);
        CHECK(e <= 5e-6, "conv2d forward vs direct float64 convolution, %s (max err / max |out| %.1e)", tag, e);
        float *dx = nans(nx), *dw = nn_alloc(nw), *db = p.b ? nn_alloc(p.Cout) : NULL;
        conv2d_backward(dx, dw, db, p.G, p.x, p.w, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        char name[128];
        snprintf(name, sizeof name, "conv2d dx %s", tag);
        gradcheck(name, conv_loss, &p, p.x, dx, nx);
        snprintf(name, sizeof name, "conv2d dw %s", tag);
        gradcheck(name, conv_loss, &p, p.w, dw, nw);
        if (p.b) {
            snprintf(name, sizeof name, "conv2d db %s", tag);
            gradcheck(name, conv_loss, &p, p.b, db, p.Cout);
        }
        // accumulation: a second call adds to dw/db and overwrites dx
        float *dw1 = nn_alloc(nw), *dx2 = uni(nx, 5, 6);
        nn_copy(dw1, dw, nw);
        conv2d_backward(dx2, dw, db, p.G, p.x, p.w, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        int acc = 1;
        for (size_t i = 0; i < nw; i++) acc &= fabsf(dw[i] - 2 * dw1[i]) <= 1e-6f * (1 + fabsf(dw1[i]));
        CHECK(acc && memcmp(dx2, dx, nx * sizeof(float)) == 0,
              "conv2d backward twice: dw doubles (+=), dx is overwritten (=), %s", tag);
        conv2d_backward(NULL, dw, NULL, p.G, p.x, p.w, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        CHECK(fabsf(dw[0] - 3 * dw1[0]) <= 1e-5f * (1 + fabsf(dw1[0])), "conv2d backward with dx = db = NULL, %s", tag);
        free(ref);
        nn_free(dx), nn_free(dw), nn_free(db), nn_free(dw1), nn_free(dx2);
        conv_free(&p);
    }

    // Shapes that exercise the chunking of conv.c, with chunks of 1000 pixel columns: one image in
    // bands of one row (600 columns each), 5 images of 20x20 as chunks of 2 + 2 + 1 images, and a
    // 1x1 conv read in place in bands of 3 rows of 300.
    const int big[][6] = {{1, 64, 4, 26, 600, 3}, {5, 64, 4, 20, 20, 3}, {1, 64, 4, 300, 300, 1}};
    size_t saved_cols = cpu_conv_cols;
    cpu_conv_cols = 1000;
    for (int s = 0; s < 3; s++) {
        const int *d = big[s];
        Conv p = conv_make(d[0], d[1], d[2], d[3], d[4], d[5], 1);
        size_t nx = (size_t)p.B * p.Cin * p.H * p.W, ny = (size_t)p.B * p.Cout * p.H * p.W,
               nw = (size_t)p.Cout * p.Cin * p.K * p.K;
        double *ref = malloc(sizeof(double) * ny), *rdx = malloc(sizeof(double) * nx),
               *rdw = malloc(sizeof(double) * nw), *rdb = malloc(sizeof(double) * p.Cout);
        conv_ref(ref, &p);
        conv2d_forward(p.y, p.x, p.w, p.b, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        double e = max_abs_diff(p.y, ref, ny) / max_abs(ref, ny);
        char tag[64];
        snprintf(tag, sizeof tag, "B%d %d->%d %dx%d K%d", p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        CHECK(e <= 5e-6, "conv2d forward, chunked, %s (max err / max |out| %.1e)", tag, e);
        float *dx = nans(nx), *dw = nn_alloc(nw), *db = nn_alloc(p.Cout);
        conv2d_backward(dx, dw, db, p.G, p.x, p.w, p.B, p.Cin, p.Cout, p.H, p.W, p.K);
        conv_ref_backward(rdx, rdw, rdb, &p);
        double ex = max_abs_diff(dx, rdx, nx) / max_abs(rdx, nx), ew = max_abs_diff(dw, rdw, nw) / max_abs(rdw, nw),
               eb = max_abs_diff(db, rdb, p.Cout) / max_abs(rdb, p.Cout);
        CHECK(ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
              "conv2d backward, chunked, %s, vs float64 (rel err dx %.1e dw %.1e db %.1e)", tag, ex, ew, eb);
        free(ref), free(rdx), free(rdw), free(rdb);
        nn_free(dx), nn_free(dw), nn_free(db);
        conv_free(&p);
    }
    cpu_conv_cols = saved_cols;
}

// ---------------------------------------------------------------------------------------------
// Pixel shuffle, transpose

typedef struct {
    float *x, *y, *G;
    int B, C, H, W, s;
} Shuf;
static double unshuffle_loss(void *c) {
    Shuf *p = c;
    pixel_unshuffle(p->y, p->x, p->B, p->C, p->H, p->W, p->s);
    return dotg(p->y, p->G, (size_t)p->B * p->C * p->H * p->W);
}
static double shuffle_loss(void *c) { // x (B, C s s, H/s, W/s) -> y (B, C, H, W)
    Shuf *p = c;
    pixel_shuffle(p->y, p->x, p->B, p->C, p->H / p->s, p->W / p->s, p->s);
    return dotg(p->y, p->G, (size_t)p->B * p->C * p->H * p->W);
}
static double transpose_loss(void *c) {
    Shuf *p = c;
    transpose_bcn(p->y, p->x, p->B, p->C, p->H);
    return dotg(p->y, p->G, (size_t)p->B * p->C * p->H);
}

static void test_shuffle(void) {
    // hand-made example: x (1, 2, 4, 4) = 0..31, s = 2. Output channel c*4 + i*2 + j holds
    // x[c, 2h + i, 2w + j] (torch.nn.PixelUnshuffle).
    float x[32], y[32], z[32];
    for (int i = 0; i < 32; i++) x[i] = (float)i;
    pixel_unshuffle(y, x, 1, 2, 4, 4, 2);
    const float want[32] = {0,  2,  8,  10, 1,  3,  9,  11, 4,  6,  12, 14, 5,  7,  13, 15,
                            16, 18, 24, 26, 17, 19, 25, 27, 20, 22, 28, 30, 21, 23, 29, 31};
    CHECK(memcmp(y, want, sizeof want) == 0, "pixel_unshuffle torch channel order c*s*s + i*s + j (hand example)");
    pixel_shuffle(z, y, 1, 2, 2, 2, 2);
    CHECK(memcmp(z, x, sizeof x) == 0, "pixel_shuffle inverts the hand example");

    int B = 2, C = 3, H = 6, W = 9, s = 3;
    size_t n = (size_t)B * C * H * W;
    float *a = uni(n, -1, 1), *b = nn_alloc(n), *c = nn_alloc(n);
    pixel_unshuffle(b, a, B, C, H, W, s);
    pixel_shuffle(c, b, B, C, H / s, W / s, s);
    CHECK(memcmp(a, c, n * sizeof(float)) == 0, "pixel_shuffle(pixel_unshuffle(x)) == x (s=3, 6x9)");
    pixel_shuffle(b, a, B, C / 1, H / s, W / s, s); // a read as (B, C*9, 2, 3)
    pixel_unshuffle(c, b, B, C, H, W, s);
    CHECK(memcmp(a, c, n * sizeof(float)) == 0, "pixel_unshuffle(pixel_shuffle(x)) == x");

    Shuf p = {.B = 2, .C = 3, .H = 4, .W = 6, .s = 2};
    n = (size_t)p.B * p.C * p.H * p.W;
    p.x = uni(n, -1, 1), p.y = nn_alloc(n), p.G = uni(n, -1, 1);
    float *dx = nans(n);
    pixel_shuffle(dx, p.G, p.B, p.C, p.H / 2, p.W / 2, 2); // gradient of unshuffle = shuffle
    gradcheck("pixel_unshuffle (gradient = pixel_shuffle)", unshuffle_loss, &p, p.x, dx, n);
    pixel_unshuffle(dx, p.G, p.B, p.C, p.H, p.W, 2);
    gradcheck("pixel_shuffle (gradient = pixel_unshuffle)", shuffle_loss, &p, p.x, dx, n);

    Shuf t = {.B = 2, .C = 5, .H = 37}; // (B, C, N) with N = H
    n = (size_t)t.B * t.C * t.H;
    t.x = uni(n, -1, 1), t.y = nn_alloc(n), t.G = uni(n, -1, 1);
    transpose_bcn(t.y, t.x, t.B, t.C, t.H);
    CHECK(t.y[(size_t)1 * 37 * 5 + 7 * 5 + 3] == t.x[(size_t)1 * 5 * 37 + 3 * 37 + 7], "transpose_bcn value");
    float *dt = nans(n);
    transpose_bcn(dt, t.G, t.B, t.H, t.C);
    gradcheck("transpose_bcn (gradient = transpose back)", transpose_loss, &t, t.x, dt, n);
    nn_free(a), nn_free(b), nn_free(c), nn_free(dx), nn_free(dt);
    nn_free(p.x), nn_free(p.y), nn_free(p.G), nn_free(t.x), nn_free(t.y), nn_free(t.G);
}

// ---------------------------------------------------------------------------------------------
// Norms and saturation

typedef struct {
    float *x, *y, *G, *mean, *rstd;
    int B, C, HW, kind;
} Norm;
static double lnc_loss(void *c) {
    Norm *p = c;
    layernorm_channels_forward(p->y, p->mean, p->rstd, p->x, p->B, p->C, p->HW, 1e-5f);
    return dotg(p->y, p->G, (size_t)p->B * p->C * p->HW);
}
static double ln_loss(void *c) { // token LayerNorm: M = B rows of D = C
    Norm *p = c;
    layernorm_forward(p->y, p->mean, p->rstd, p->x, p->B, p->C, 1e-5f);
    return dotg(p->y, p->G, (size_t)p->B * p->C);
}
static double sat_loss(void *c) {
    Norm *p = c;
    saturation_forward(p->y, p->x, p->B, p->C, p->HW, p->kind);
    return dotg(p->y, p->G, (size_t)p->B * p->C * p->HW);
}

static Norm norm_make(int B, int C, int HW, float lo, float hi) {
    Norm p = {.B = B, .C = C, .HW = HW};
    size_t n = (size_t)B * C * HW;
    p.x = uni(n, lo, hi), p.y = nn_alloc(n), p.G = uni(n, -1, 1);
    p.mean = nn_alloc((size_t)B * HW), p.rstd = nn_alloc((size_t)B * HW);
    return p;
}
static void norm_free(Norm *p) { nn_free(p->x), nn_free(p->y), nn_free(p->G), nn_free(p->mean), nn_free(p->rstd); }

static void test_norms(void) {
    // lola-spec.md 10.3: channel LayerNorm (unbiased, eps 1e-5) of [1, 2, 3, 4]; 2 pixels, the
    // second one [4, 3, 2, 1].
    float x[8] = {1, 4, 2, 3, 3, 2, 4, 1}, y[8], m[2], r[2];
    layernorm_channels_forward(y, m, r, x, 1, 4, 2, 1e-5f);
    const float want[4] = {-1.161892f, -0.387297f, 0.387297f, 1.161892f};
    for (int c = 0; c < 4; c++) {
        CHECK_CLOSE(y[2 * c], want[c], 2e-6, 0, "channel LayerNorm [1,2,3,4][%d] = %.6f (spec 10.3)", c, want[c]);
        CHECK_CLOSE(y[2 * c + 1], want[3 - c], 2e-6, 0, "channel LayerNorm second pixel [%d]", c);
    }
    CHECK(fabsf(y[0] + 1.341635f) > 0.1f, "channel LayerNorm is NOT the biased-variance -1.341635");
    CHECK_CLOSE(m[0], 2.5, 0, 1e-7, "channel LayerNorm saved mean");

    // token LayerNorm, biased: [1, 2, 3, 4] -> +-1.341635, +-0.447212
    layernorm_forward(y, m, r, x + 0, 1, 4, 1e-5f); // row [1, 4, 2, 3]
    CHECK_CLOSE(y[1], 1.341635, 2e-6, 0, "token LayerNorm uses the biased variance (4 -> 1.341635)");
    CHECK_CLOSE(y[2], -0.447212, 2e-6, 0, "token LayerNorm (2 -> -0.447212)");

    // gradient checks (HW = 70 crosses the 64-pixel block edge)
    const int sh[][3] = {{2, 5, 7}, {2, 4, 70}, {1, 3, 3}};
    for (int s = 0; s < 3; s++) {
        Norm p = norm_make(sh[s][0], sh[s][1], sh[s][2], -2, 3);
        size_t n = (size_t)p.B * p.C * p.HW;
        lnc_loss(&p);
        float *dx = nans(n);
        layernorm_channels_backward(dx, p.G, p.x, p.mean, p.rstd, p.B, p.C, p.HW);
        char name[96];
        snprintf(name, sizeof name, "layernorm_channels B%d C%d HW%d", p.B, p.C, p.HW);
        gradcheck(name, lnc_loss, &p, p.x, dx, n);
        nn_free(dx);
        norm_free(&p);
    }
    {
        Norm p = norm_make(6, 9, 1, -2, 3); // token LN: M = 6 rows, D = 9
        size_t n = 54;
        ln_loss(&p);
        float *dx = nans(n);
        layernorm_backward(dx, p.G, p.x, p.mean, p.rstd, 6, 9);
        gradcheck("layernorm (tokens) M6 D9", ln_loss, &p, p.x, dx, n);
        nn_free(dx);
        norm_free(&p);
    }

    // saturation: spec values of softclip2, then every kind's gradient
    float z[4] = {1, 5, 10, 100}, sz[4];
    saturation_forward(sz, z, 1, 4, 1, SAT_SOFTCLIP2);
    const float sw[4] = {0.980581f, 3.535534f, 4.472136f, 4.993762f};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(sz[i], sw[i], 2e-6, 0, "softclip2(%g) = %.6f (spec 10.3)", z[i], sw[i]);
    float q[3] = {-2, 0.5f, 7}, sq[3];
    saturation_forward(sq, q, 1, 3, 1, SAT_SOFTCLIP);
    CHECK_CLOSE(sq[2], 7.0 / (1 + 7.0 / 5), 1e-6, 0, "softclip(7)");
    saturation_forward(sq, q, 1, 3, 1, SAT_TANH);
    CHECK_CLOSE(sq[0], 5 * tanh(-0.4), 1e-6, 0, "tanh saturation(-2)");
    saturation_forward(sq, q, 1, 3, 1, SAT_ARCSINH);
    CHECK_CLOSE(sq[2], asinh(7.0), 1e-6, 0, "arcsinh(7)");
    saturation_forward(sq, q, 1, 3, 1, SAT_RMSNORM);
    CHECK_CLOSE(sq[2], 7 / sqrt((4 + 0.25 + 49) / 3.0 + 1e-5), 1e-6, 0, "rmsnorm saturation over channels");
    saturation_forward(sq, q, 1, 3, 1, SAT_NONE);
    CHECK(sq[1] == 0.5f, "saturation none is the identity");
    const char *names[] = {"none", "softclip2", "softclip", "tanh", "arcsinh", "rmsnorm"};
    for (int k = SAT_NONE; k <= SAT_RMSNORM; k++) {
        Norm p = norm_make(2, 3, 5, -12, 12);
        p.kind = k;
        size_t n = 30;
        float *dx = nans(n);
        saturation_backward(dx, p.G, p.x, p.B, p.C, p.HW, k);
        char name[64];
        snprintf(name, sizeof name, "saturation %s", names[k]);
        gradcheck(name, sat_loss, &p, p.x, dx, n);
        nn_free(dx);
        norm_free(&p);
    }
}

// ---------------------------------------------------------------------------------------------
// linear, modulate, gated residual

typedef struct {
    float *x, *w, *b, *y, *G;
    int M, K, N;
} Lin;
static double lin_loss(void *c) {
    Lin *p = c;
    linear_forward(p->y, p->x, p->w, p->b, p->M, p->K, p->N);
    return dotg(p->y, p->G, (size_t)p->M * p->N);
}

static void test_linear(void) {
    const int sh[][3] = {{5, 7, 3}, {70, 33, 40}}; // the second one is split over threads
    for (int s = 0; s < 2; s++) {
        Lin p = {.M = sh[s][0], .K = sh[s][1], .N = sh[s][2]};
        size_t nx = (size_t)p.M * p.K, nw = (size_t)p.N * p.K, ny = (size_t)p.M * p.N;
        p.x = uni(nx, -1, 1), p.w = uni(nw, -1, 1), p.b = uni(p.N, -1, 1), p.y = nn_alloc(ny), p.G = uni(ny, -1, 1);
        lin_loss(&p);
        double *ref = malloc(sizeof(double) * ny);
        for (int i = 0; i < p.M; i++)
            for (int j = 0; j < p.N; j++) {
                double a = p.b[j];
                for (int k = 0; k < p.K; k++) a += (double)p.x[i * p.K + k] * p.w[j * p.K + k];
                ref[i * p.N + j] = a;
            }
        double e = max_abs_diff(p.y, ref, ny);
        CHECK(e < 1e-5, "linear forward vs float64 M%d K%d N%d (max err %.1e)", p.M, p.K, p.N, e);
        float *dx = nans(nx), *dw = nn_alloc(nw), *db = nn_alloc(p.N);
        linear_backward(dx, dw, db, p.G, p.x, p.w, p.M, p.K, p.N);
        char name[64];
        snprintf(name, sizeof name, "linear dx M%d K%d N%d", p.M, p.K, p.N);
        gradcheck(name, lin_loss, &p, p.x, dx, nx);
        snprintf(name, sizeof name, "linear dw M%d K%d N%d", p.M, p.K, p.N);
        gradcheck(name, lin_loss, &p, p.w, dw, nw);
        snprintf(name, sizeof name, "linear db M%d K%d N%d", p.M, p.K, p.N);
        gradcheck(name, lin_loss, &p, p.b, db, p.N);
        float *dw1 = nn_alloc(nw), *db1 = nn_alloc(p.N), *dx2 = uni(nx, 5, 6);
        nn_copy(dw1, dw, nw), nn_copy(db1, db, p.N);
        linear_backward(dx2, dw, db, p.G, p.x, p.w, p.M, p.K, p.N);
        int acc = 1;
        for (size_t i = 0; i < nw; i++) acc &= fabsf(dw[i] - 2 * dw1[i]) <= 1e-6f * (1 + fabsf(dw1[i]));
        for (int i = 0; i < p.N; i++) acc &= fabsf(db[i] - 2 * db1[i]) <= 1e-6f * (1 + fabsf(db1[i]));
        CHECK(acc && memcmp(dx2, dx, nx * sizeof(float)) == 0, "linear backward twice: dw, db += ; dx =");
        linear_forward(p.y, p.x, p.w, NULL, p.M, p.K, p.N);
        CHECK_CLOSE(p.y[0], ref[0] - p.b[0], 1e-5, 0, "linear forward without bias");
        free(ref);
        nn_free(dx), nn_free(dw), nn_free(db), nn_free(dw1), nn_free(db1), nn_free(dx2);
        nn_free(p.x), nn_free(p.w), nn_free(p.b), nn_free(p.y), nn_free(p.G);
    }
}

typedef struct {
    float *x, *y, *mod, *out, *G;
    int B, N, D, ld;
} Mod;
static double mod_loss(void *c) {
    Mod *p = c;
    modulate_forward(p->out, p->x, p->mod, p->mod + p->D, p->B, p->N, p->D, p->ld);
    return dotg(p->out, p->G, (size_t)p->B * p->N * p->D);
}
static double gate_loss(void *c) {
    Mod *p = c;
    gated_residual_forward(p->out, p->x, p->y, p->mod + 2 * p->D, p->B, p->N, p->D, p->ld);
    return dotg(p->out, p->G, (size_t)p->B * p->N * p->D);
}

static void test_modulate(void) {
    Mod p = {.B = 2, .N = 5, .D = 6};
    p.ld = 4 * p.D; // a, c, g are rows of a (B, 4D) modulation buffer
    size_t n = (size_t)p.B * p.N * p.D, nm = (size_t)p.B * p.ld;
    p.x = uni(n, -1, 1), p.y = uni(n, -1, 1), p.mod = uni(nm, -1, 1), p.out = nn_alloc(n), p.G = uni(n, -1, 1);
    mod_loss(&p);
    float a = p.mod[p.ld + 2], c = p.mod[p.ld + p.D + 2];
    size_t i = (size_t)(1 * p.N + 3) * p.D + 2; // b = 1, n = 3, d = 2
    CHECK_CLOSE(p.out[i], (1 + a) * p.x[i] + c, 1e-6, 0, "modulate value (1 + a) x + c");
    float *dx = nans(n), *dmod = nn_alloc(nm);
    modulate_backward(dx, dmod, dmod + p.D, p.G, p.x, p.mod, p.B, p.N, p.D, p.ld);
    gradcheck("modulate dx", mod_loss, &p, p.x, dx, n);
    gradcheck("modulate da, dc (stride ld)", mod_loss, &p, p.mod, dmod, nm); // includes the untouched b, d columns (0)

    gate_loss(&p);
    float g = p.mod[p.ld + 2 * p.D + 2];
    CHECK_CLOSE(p.out[i], (p.x[i] + g * p.y[i]) / sqrt(1 + g * g), 1e-6, 0, "gated residual value");
    float *dy = nans(n);
    nn_fill(dx, NAN, n), nn_zero(dmod, nm);
    gated_residual_backward(dx, dy, dmod + 2 * p.D, p.G, p.x, p.y, p.mod + 2 * p.D, p.B, p.N, p.D, p.ld);
    gradcheck("gated_residual dx", gate_loss, &p, p.x, dx, n);
    gradcheck("gated_residual dy", gate_loss, &p, p.y, dy, n);
    gradcheck("gated_residual dg (stride ld)", gate_loss, &p, p.mod, dmod, nm);
    // aliasing allowed by nn.h: out = x in forward, dx = dout in backward
    float *xa = nn_alloc(n), *ga = nn_alloc(n), *dy2 = nn_alloc(n), *dg2 = nn_alloc(nm);
    nn_copy(xa, p.x, n), nn_copy(ga, p.G, n);
    gated_residual_forward(xa, xa, p.y, p.mod + 2 * p.D, p.B, p.N, p.D, p.ld);
    gate_loss(&p);
    CHECK(memcmp(xa, p.out, n * sizeof(float)) == 0, "gated_residual_forward with out == x");
    gated_residual_backward(ga, dy2, dg2 + 2 * p.D, ga, p.x, p.y, p.mod + 2 * p.D, p.B, p.N, p.D, p.ld);
    CHECK(memcmp(ga, dx, n * sizeof(float)) == 0 && memcmp(dy2, dy, n * sizeof(float)) == 0,
          "gated_residual_backward with dx == dout");
    nn_free(xa), nn_free(ga), nn_free(dy2), nn_free(dg2), nn_free(dx), nn_free(dy), nn_free(dmod);
    nn_free(p.x), nn_free(p.y), nn_free(p.mod), nn_free(p.out), nn_free(p.G);
}

// ---------------------------------------------------------------------------------------------
// Fused ops of the ViT block: layernorm_modulate_* and silu_dropout_* must give the same bits as
// the op sequences they replace, and their own finite-difference gradients.

typedef struct {
    float *x, *mod, *out, *mean, *rstd, *G;
    int B, N, D, ld;
} LnMod;
static double lnmod_loss(void *c) {
    LnMod *p = c;
    layernorm_modulate_forward(p->out, p->mean, p->rstd, p->x, p->mod, p->mod + p->D, p->B, p->N, p->D, p->ld,
                               1e-5f);
    return dotg(p->out, p->G, (size_t)p->B * p->N * p->D);
}
static double silu_dropout_loss(void *c) {
    Elt *e = c;
    silu_dropout_forward(e->y, e->x, e->n, e->p, e->seed);
    return dotg(e->y, e->G, e->n);
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_fused(void) {
    // layernorm_modulate vs layernorm + modulate: a small case, one over CPU_PAR_MIN with D > 256
    // (several feature blocks, several threads), and an odd one.
    int cases[][3] = {{2, 5, 6}, {3, 100, 300}, {1, 37, 1024}};
    for (int k = 0; k < 3; k++) {
        int B = cases[k][0], N = cases[k][1], D = cases[k][2], ld = 4 * D, M = B * N;
        size_t n = (size_t)M * D, nm = (size_t)B * ld;
        float *x = uni(n, -2, 3), *mod = uni(nm, -0.5f, 0.5f), *G = uni(n, -1, 1);
        float *ln = nn_alloc(n), *o1 = nn_alloc(n), *o2 = nn_alloc(n), *m1 = nn_alloc(M), *r1 = nn_alloc(M);
        float *m2 = nn_alloc(M), *r2 = nn_alloc(M), *dln = nn_alloc(n), *dx1 = nans(n), *dx2 = nans(n);
        float *dm1 = uni(nm, -1, 1), *dm2 = nn_alloc(nm);
        nn_copy(dm2, dm1, nm);
        layernorm_forward(ln, m1, r1, x, M, D, 1e-5f);
        modulate_forward(o1, ln, mod, mod + D, B, N, D, ld);
        layernorm_modulate_forward(o2, m2, r2, x, mod, mod + D, B, N, D, ld, 1e-5f);
        CHECK(same_bits(o1, o2, n) && same_bits(m1, m2, M) && same_bits(r1, r2, M),
              "layernorm_modulate_forward == layernorm_forward + modulate_forward bit for bit (B%d N%d D%d)", B, N, D);
        modulate_backward(dln, dm1, dm1 + D, G, ln, mod, B, N, D, ld);
        layernorm_backward(dx1, dln, x, m1, r1, M, D);
        layernorm_modulate_backward(dx2, dm2, dm2 + D, G, x, m2, r2, mod, B, N, D, ld);
        CHECK(same_bits(dx1, dx2, n) && same_bits(dm1, dm2, nm),
              "layernorm_modulate_backward == modulate_backward + layernorm_backward bit for bit, da/dc += "
              "(B%d N%d D%d)", B, N, D);
        nn_fill(dx2, NAN, n);
        layernorm_modulate_backward(dx2, NULL, NULL, G, x, m2, r2, mod, B, N, D, ld);
        layernorm_modulate_backward(NULL, dm2, NULL, G, x, m2, r2, mod, B, N, D, ld);
        CHECK(same_bits(dx1, dx2, n), "layernorm_modulate_backward dx alone (da, dc NULL) (B%d N%d D%d)", B, N, D);
        nn_free(x), nn_free(mod), nn_free(G), nn_free(ln), nn_free(o1), nn_free(o2), nn_free(m1), nn_free(r1);
        nn_free(m2), nn_free(r2), nn_free(dln), nn_free(dx1), nn_free(dx2), nn_free(dm1), nn_free(dm2);
    }
    { // gradients and the value
        LnMod p = {.B = 2, .N = 5, .D = 7};
        p.ld = 4 * p.D;
        size_t n = (size_t)p.B * p.N * p.D, nm = (size_t)p.B * p.ld;
        p.x = uni(n, -1, 2), p.mod = uni(nm, -1, 1), p.out = nn_alloc(n), p.G = uni(n, -1, 1);
        p.mean = nn_alloc((size_t)p.B * p.N), p.rstd = nn_alloc((size_t)p.B * p.N);
        lnmod_loss(&p);
        // value at b = 1, n = 2, d = 3 in float64
        const float *row = p.x + (size_t)(1 * p.N + 2) * p.D;
        double mu = 0, var = 0;
        for (int j = 0; j < p.D; j++) mu += row[j];
        mu /= p.D;
        for (int j = 0; j < p.D; j++) var += (row[j] - mu) * (row[j] - mu);
        var /= p.D;
        double want = (1 + p.mod[p.ld + 3]) * (row[3] - mu) / sqrt(var + 1e-5) + p.mod[p.ld + p.D + 3];
        CHECK_CLOSE(p.out[(size_t)(1 * p.N + 2) * p.D + 3], want, 1e-5, 1e-5, "layernorm_modulate value (1 + a) LN(x) + c");
        float *dx = nans(n), *dmod = nn_alloc(nm);
        layernorm_modulate_backward(dx, dmod, dmod + p.D, p.G, p.x, p.mean, p.rstd, p.mod, p.B, p.N, p.D, p.ld);
        gradcheck("layernorm_modulate dx", lnmod_loss, &p, p.x, dx, n);
        gradcheck("layernorm_modulate da, dc (stride ld)", lnmod_loss, &p, p.mod, dmod, nm);
        nn_free(dx), nn_free(dmod), nn_free(p.x), nn_free(p.mod), nn_free(p.out), nn_free(p.G), nn_free(p.mean),
            nn_free(p.rstd);
    }

    // silu_dropout vs silu + dropout (n over CPU_PAR_MIN and not a multiple of the chunk)
    size_t n = 100003;
    float *x = uni(n, -8, 8), *G = uni(n, -1, 1), *s = nn_alloc(n), *mask = nn_alloc(n), *o1 = nn_alloc(n);
    float *o2 = nn_alloc(n), *d1 = nans(n), *d2 = nans(n);
    float ps[3] = {0.3f, 0.05f, 0.0f};
    for (int k = 0; k < 3; k++) {
        uint64_t seed = 4242 + k;
        silu_forward(s, x, n);
        dropout_forward(o1, mask, s, n, ps[k], seed);
        silu_dropout_forward(o2, x, n, ps[k], seed);
        CHECK(same_bits(o1, o2, n), "silu_dropout_forward == silu_forward + dropout_forward bit for bit (p = %.2f)",
              ps[k]);
        dropout_backward(s, G, mask, n);
        silu_backward(d1, s, x, n);
        silu_dropout_backward(d2, G, x, n, ps[k], seed);
        CHECK(same_bits(d1, d2, n), "silu_dropout_backward == dropout_backward + silu_backward bit for bit (p = %.2f)",
              ps[k]);
    }
    silu_forward(o1, x, n);
    silu_dropout_forward(o2, x, n, 0.0f, 99);
    CHECK(same_bits(o1, o2, n), "silu_dropout with p = 0 is plain SiLU");
    nn_free(x), nn_free(G), nn_free(s), nn_free(mask), nn_free(o1), nn_free(o2), nn_free(d1), nn_free(d2);
    Elt e = {.n = 120, .p = 0.25f, .seed = 17};
    e.x = uni(e.n, -6, 6), e.y = nn_alloc(e.n), e.G = uni(e.n, -1, 1);
    float *dx = nans(e.n);
    silu_dropout_backward(dx, e.G, e.x, e.n, e.p, e.seed);
    gradcheck("silu_dropout (p = 0.25)", silu_dropout_loss, &e, e.x, dx, e.n);
    nn_free(dx), nn_free(e.x), nn_free(e.y), nn_free(e.G);
}

// ---------------------------------------------------------------------------------------------
// qk-norm + RoPE, attention

typedef struct {
    float *qkv, *angle, *out, *rstd, *save, *G;
    int B, N, H, dh, qknorm, rope;
} Att;
static double qk_loss(void *c) {
    Att *p = c;
    qk_norm_rope_forward(p->out, p->rstd, p->qkv, p->angle, p->B, p->N, p->H, p->dh, p->qknorm, p->rope);
    return dotg(p->out, p->G, (size_t)p->B * p->N * 3 * p->H * p->dh);
}
static double att_loss(void *c) {
    Att *p = c;
    attention_forward(p->out, p->save, p->qkv, p->B, p->N, p->H, p->dh);
    return dotg(p->out, p->G, (size_t)p->B * p->N * p->H * p->dh);
}

static void test_qk_norm_rope(void) {
    for (int mode = 0; mode < 4; mode++) {
        Att p = {.B = 2, .N = 3, .H = 2, .dh = 4, .qknorm = mode & 1, .rope = mode >> 1};
        int D = p.H * p.dh;
        size_t n = (size_t)p.B * p.N * 3 * D, na = (size_t)p.N * D / 2;
        p.qkv = uni(n, -2, 2), p.angle = uni(na, -3, 3), p.out = nn_alloc(n), p.G = uni(n, -1, 1);
        p.rstd = nn_alloc((size_t)p.B * p.N * 2 * p.H);
        qk_loss(&p);
        // float64 reference of the forward
        double err = 0.0;
        for (int b = 0; b < p.B; b++)
            for (int t = 0; t < p.N; t++)
                for (int part = 0; part < 3; part++)
                    for (int h = 0; h < p.H; h++) {
                        const float *v = p.qkv + ((size_t)b * p.N + t) * 3 * D + part * D + h * p.dh;
                        const float *o = p.out + ((size_t)b * p.N + t) * 3 * D + part * D + h * p.dh;
                        double ms = 0, r = 1;
                        for (int j = 0; j < p.dh; j++) ms += (double)v[j] * v[j] / p.dh;
                        if (part < 2 && p.qknorm) r = 1 / sqrt(ms + 1e-5);
                        for (int m = 0; m < p.dh / 2; m++) {
                            double a = v[2 * m] * r, bb = v[2 * m + 1] * r, th = 0;
                            if (part < 2 && p.rope) th = p.angle[(size_t)t * D / 2 + h * p.dh / 2 + m];
                            err = fmax(err, fabs(o[2 * m] - (a * cos(th) - bb * sin(th))));
                            err = fmax(err, fabs(o[2 * m + 1] - (a * sin(th) + bb * cos(th))));
                        }
                    }
        CHECK(err < 1e-5, "qk_norm_rope forward vs float64 (qknorm %d rope %d, max err %.1e)", p.qknorm, p.rope, err);
        float *dq = nans(n), *da = nn_alloc(na);
        qk_norm_rope_backward(dq, da, p.G, p.qkv, p.rstd, p.angle, p.B, p.N, p.H, p.dh, p.qknorm, p.rope);
        char name[80];
        snprintf(name, sizeof name, "qk_norm_rope dqkv (qknorm %d rope %d)", p.qknorm, p.rope);
        gradcheck(name, qk_loss, &p, p.qkv, dq, n);
        if (p.rope) {
            snprintf(name, sizeof name, "qk_norm_rope dangle (qknorm %d)", p.qknorm);
            gradcheck(name, qk_loss, &p, p.angle, da, na);
            float a0 = da[0], *da1 = nn_alloc(na);
            qk_norm_rope_backward(NULL, da1, p.G, p.qkv, p.rstd, p.angle, p.B, p.N, p.H, p.dh, p.qknorm, p.rope);
            CHECK(memcmp(da1, da, na * sizeof(float)) == 0, "qk_norm_rope dangle alone (dqkv = NULL)");
            qk_norm_rope_backward(dq, da, p.G, p.qkv, p.rstd, p.angle, p.B, p.N, p.H, p.dh, p.qknorm, p.rope);
            CHECK_CLOSE(da[0], 2 * a0, 1e-6, 1e-6, "qk_norm_rope dangle accumulates (+=)");
            nn_free(da1);
        }
        nn_free(dq), nn_free(da);
        nn_free(p.qkv), nn_free(p.angle), nn_free(p.out), nn_free(p.G), nn_free(p.rstd);
    }
}

// float64 reference attention forward (out) and backward (dqkv) for L = sum G * out.
static void att_ref(double *out, double *dqkv, const Att *p) {
    int N = p->N, H = p->H, dh = p->dh, D = H * dh, ld = 3 * D;
    double sc = 1.0 / sqrt((double)dh);
    double *P = malloc(sizeof(double) * N * N), *dP = malloc(sizeof(double) * N * N);
    memset(dqkv, 0, sizeof(double) * p->B * N * ld);
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = p->qkv + (size_t)b * N * ld + h * dh, *k = q + D, *v = q + 2 * D;
            const float *g = p->G + (size_t)b * N * D + h * dh;
            double *dq = dqkv + (size_t)b * N * ld + h * dh, *dk = dq + D, *dv = dq + 2 * D;
            for (int i = 0; i < N; i++) {
                double mx = -1e300, s = 0;
                for (int j = 0; j < N; j++) {
                    double a = 0;
                    for (int c = 0; c < dh; c++) a += (double)q[(size_t)i * ld + c] * k[(size_t)j * ld + c];
                    P[i * N + j] = a * sc;
                    mx = fmax(mx, a * sc);
                }
                for (int j = 0; j < N; j++) s += (P[i * N + j] = exp(P[i * N + j] - mx));
                for (int j = 0; j < N; j++) P[i * N + j] /= s;
                for (int c = 0; c < dh; c++) {
                    double o = 0;
                    for (int j = 0; j < N; j++) o += P[i * N + j] * v[(size_t)j * ld + c];
                    out[((size_t)b * N + i) * D + h * dh + c] = o;
                }
                double rs = 0;
                for (int j = 0; j < N; j++) {
                    double a = 0;
                    for (int c = 0; c < dh; c++) a += (double)g[(size_t)i * D + c] * v[(size_t)j * ld + c];
                    dP[i * N + j] = a;
                    rs += a * P[i * N + j];
                }
                for (int j = 0; j < N; j++) dP[i * N + j] = P[i * N + j] * (dP[i * N + j] - rs) * sc; // dS
            }
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++)
                    for (int c = 0; c < dh; c++) {
                        dq[(size_t)i * ld + c] += dP[i * N + j] * k[(size_t)j * ld + c];
                        dk[(size_t)j * ld + c] += dP[i * N + j] * q[(size_t)i * ld + c];
                        dv[(size_t)j * ld + c] += P[i * N + j] * g[(size_t)i * D + c];
                    }
        }
    free(P), free(dP);
}

static Att att_make(int B, int N, int H, int dh) {
    Att p = {.B = B, .N = N, .H = H, .dh = dh};
    size_t n = (size_t)B * N * 3 * H * dh, no = (size_t)B * N * H * dh;
    p.qkv = uni(n, -1.5f, 1.5f), p.out = nn_alloc(no), p.G = uni(no, -1, 1);
    p.save = nn_alloc(attention_save_floats(B, N, H));
    return p;
}
static void att_free(Att *p) { nn_free(p->qkv), nn_free(p->out), nn_free(p->G), nn_free(p->save); }

static void test_attention(void) {
    // (B, N, H, dh): all-element gradient check; several 64-row blocks with a tail; several
    // groups of heads in the backward (scratch limit lowered to 2 heads).
    const int sh[][4] = {{2, 5, 2, 3}, {2, 70, 3, 8}, {1, 150, 5, 4}};
    size_t saved_limit = cpu_att_scratch_floats;
    for (int s = 0; s < 3; s++) {
        Att p = att_make(sh[s][0], sh[s][1], sh[s][2], sh[s][3]);
        if (s == 2) cpu_att_scratch_floats = 2 * 150 * 150 + 7;
        int D = p.H * p.dh;
        size_t n = (size_t)p.B * p.N * 3 * D, no = (size_t)p.B * p.N * D;
        double *rout = malloc(sizeof(double) * no), *rd = malloc(sizeof(double) * n);
        att_ref(rout, rd, &p);
        att_loss(&p);
        double eo = max_abs_diff(p.out, rout, no);
        float *dq = nans(n);
        attention_backward(dq, p.G, p.qkv, p.out, p.save, p.B, p.N, p.H, p.dh);
        double ed = max_abs_diff(dq, rd, n) / max_abs(rd, n);
        char tag[64];
        snprintf(tag, sizeof tag, "B%d N%d H%d dh%d", p.B, p.N, p.H, p.dh);
        CHECK(eo < 2e-6, "attention forward vs float64, %s (max err %.1e)", tag, eo);
        CHECK(ed < 1e-5, "attention backward vs float64, %s (rel err %.1e)", tag, ed);
        char name[80];
        snprintf(name, sizeof name, "attention dqkv %s", tag);
        gradcheck(name, att_loss, &p, p.qkv, dq, n);
        free(rout), free(rd);
        nn_free(dq);
        att_free(&p);
        cpu_att_scratch_floats = saved_limit;
    }
    // stability: huge logits do not overflow the softmax
    Att p = att_make(1, 4, 1, 2);
    for (int i = 0; i < 4 * 6; i++) p.qkv[i] *= 300.0f;
    attention_forward(p.out, p.save, p.qkv, 1, 4, 1, 2);
    CHECK(nn_all_finite(p.out, 8) && nn_all_finite(p.save, 16), "attention softmax stable for logits ~1e5");
    att_free(&p);
}

// ---------------------------------------------------------------------------------------------
// Sine encoding, losses, AdamW

static void test_sine(void) {
    float x = 1.0f, e[4];
    sine_encoding_forward(e, &x, 1, 4, 1e3f);
    const float want[4] = {0.841471f, 0.0010000f, 0.540302f, 0.9999995f};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(e[i], want[i], 1e-6, 0, "SineEncoding(4, 1e3)(1)[%d] = %.7f (spec 10.3)", i, want[i]);
    float xs[2] = {0.0f, 3.0f}, o[2 * 256];
    sine_encoding_forward(o, xs, 2, 256, 1e3f);
    CHECK(o[0] == 0.0f && o[128] == 1.0f, "SineEncoding(0) = [0.., 1..]");
    CHECK_CLOSE(o[256 + 127], sin(3.0 * 1e-3), 1e-7, 1e-5, "SineEncoding D=256 last frequency 1e-3");
    CHECK_CLOSE(o[256 + 1], sin(3.0 * pow(10, -3.0 / 127)), 1e-6, 0, "SineEncoding D=256 f_1 = 10^(-3/127)");
}

typedef struct {
    float *p, *t;
    int B, C, HW, kind;
} Loss;
static double loss_of(void *c) {
    Loss *l = c;
    size_t n = (size_t)l->B * l->C * l->HW;
    if (l->kind == 0) return mse_loss(NULL, l->p, l->t, n, 1.0f);
    if (l->kind == 1) return mae_loss(NULL, l->p, l->t, n, 1.0f);
    return vrmse_loss(NULL, l->p, l->t, l->B, l->C, l->HW, 0.01f, 1.0f);
}

static void test_losses(void) {
    Loss l = {.B = 2, .C = 3, .HW = 10};
    size_t n = 60;
    l.p = uni(n, -1, 1), l.t = uni(n, -1, 1);
    for (size_t i = 0; i < n; i++) // keep |p - t| away from the |.| kink for the MAE check
        if (fabsf(l.p[i] - l.t[i]) < 0.05f) l.p[i] += 0.1f;
    double mse = 0, mae = 0, vr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)l.p[i] - l.t[i];
        mse += d * d / n, mae += fabs(d) / n;
    }
    for (int r = 0; r < 6; r++) {
        double mt = 0, v = 0, se = 0;
        for (int i = 0; i < 10; i++) mt += l.t[r * 10 + i] / 10.0;
        for (int i = 0; i < 10; i++) {
            double dt = l.t[r * 10 + i] - mt, d = (double)l.p[r * 10 + i] - l.t[r * 10 + i];
            v += dt * dt / 9, se += d * d / 10;
        }
        vr += sqrt(se / (v + 0.01)) / 6;
    }
    float *g = nans(n);
    const char *names[] = {"mse", "mae", "vrmse"};
    const double refs[] = {mse, mae, vr};
    for (int k = 0; k < 3; k++) {
        l.kind = k;
        nn_fill(g, NAN, n);
        double v = k == 0 ? mse_loss(g, l.p, l.t, n, 1.0f)
                 : k == 1 ? mae_loss(g, l.p, l.t, n, 1.0f)
                          : vrmse_loss(g, l.p, l.t, l.B, l.C, l.HW, 0.01f, 1.0f);
        CHECK_CLOSE(v, refs[k], 0, 1e-6, "%s_loss value vs float64 (unbiased target variance for vrmse)", names[k]);
        char name[32];
        snprintf(name, sizeof name, "%s_loss dpred", names[k]);
        gradcheck(name, loss_of, &l, l.p, g, n);
    }
    float g2[60];
    vrmse_loss(g2, l.p, l.t, l.B, l.C, l.HW, 0.01f, 0.5f);
    CHECK_CLOSE(g2[7], 0.5 * g[7], 1e-9, 1e-6, "loss grad_scale multiplies dpred");
    // hand example: pred = [1, 2], target = [0, 4]: mse = (1 + 4) / 2, mae = 1.5,
    // vrmse = sqrt(2.5 / (var([0, 4]) = 8, + 0.01))
    float pp[2] = {1, 2}, tt[2] = {0, 4};
    CHECK_CLOSE(mse_loss(NULL, pp, tt, 2, 1), 2.5, 0, 1e-12, "mse hand example");
    CHECK_CLOSE(mae_loss(NULL, pp, tt, 2, 1), 1.5, 0, 1e-12, "mae hand example");
    CHECK_CLOSE(vrmse_loss(NULL, pp, tt, 1, 1, 2, 0.01f, 1), sqrt(2.5 / 8.01), 0, 1e-7, "vrmse hand example");
    nn_free(g), nn_free(l.p), nn_free(l.t);
}

static void test_adamw(void) {
    // Two steps by hand, lr 0.1, b1 0.9, b2 0.999, eps 1e-8, wd 0.01, p0 = 1 (second element p0 = -2,
    // g = 0 both steps: pure decay).
    // step 1, g = 0.5:  p = 1 * (1 - 0.001) = 0.999; m = 0.05; v = 0.00025;
    //   m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001 = 0.25 -> p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002
    // step 2, g = -0.25: p = 0.899000002 * 0.999; m = 0.045 - 0.025 = 0.02;
    //   v = 0.000249750 + 0.0000625 = 0.00031225; m^ = 0.02 / 0.19 = 0.1052632, v^ = 0.00031225 / 0.001999
    //   = 0.1562031 -> p = 0.898101002 - 0.1 * 0.1052632 / (0.3952253 + 1e-8) = 0.871467299
    float p[2] = {1, -2}, m[2] = {0, 0}, v[2] = {0, 0}, g[2] = {0.5f, 0};
    adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
    CHECK_CLOSE(p[0], 0.899000002, 1e-7, 0, "adamw step 1");
    // m and v carry the float32 rounding of 1 - b1 and 1 - b2 (0.999f = 0.99900001287): 1e-5 relative
    CHECK_CLOSE(m[0], 0.05, 0, 1e-6, "adamw m after step 1");
    CHECK_CLOSE(v[0], 0.00025, 0, 2e-5, "adamw v after step 1");
    g[0] = -0.25f;
    adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 2);
    CHECK_CLOSE(p[0], 0.871467299, 2e-7, 0, "adamw step 2");
    CHECK_CLOSE(m[0], 0.02, 0, 1e-6, "adamw m after step 2");
    CHECK_CLOSE(v[0], 0.00031225, 0, 2e-5, "adamw v after step 2");
    CHECK_CLOSE(p[1], -2 * 0.999 * 0.999, 1e-6, 0, "adamw decoupled weight decay with zero gradient");
}

int main(void) {
    nn_init(-1);
    rng = rng_seed(20250702);
    printf("# backend: %s\n", nn_backend_name());
    double t0 = lola_time();
    test_memory();
    test_blas1();
    test_expf();
    test_silu_dropout();
    test_conv();
    test_shuffle();
    test_norms();
    test_linear();
    test_modulate();
    test_fused();
    test_qk_norm_rope();
    test_attention();
    test_sine();
    test_losses();
    test_adamw();
    printf("# %.2f s\n", lola_time() - t0);
    return test_summary();
}
