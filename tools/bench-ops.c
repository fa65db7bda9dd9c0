// bench-ops.c: times the main ops of nn.h at DCAE- and ViT-like shapes and prints ms per call
// and GFLOP/s (GB/s for the memory-bound ops). Works with whichever backend is linked.
//
// Usage: build/bench-ops [--reps N] [--quick] [--only NAME] [--cputime]
//   --reps N    timed repetitions per op after one warm-up call (default 5); the median is shown
//   --quick     smaller batch sizes (a smoke run, about a second)
//   --only NAME run only the ops whose name contains NAME (e.g. conv, linear, attention)
//   --cputime   measure process CPU time instead of wall time (for OMP_NUM_THREADS=1 runs on a
//               shared, oversubscribed machine: the time this process actually ran)
// Threads: OMP_NUM_THREADS (see nn_init).
//
// FLOP counts (multiply-add = 2): conv forward 2 B HW Cout Cin K^2, backward twice that (dw and dx);
// linear forward 2 M K N, backward 4 M K N; attention forward 4 B H N^2 dh (Q K^T and P V),
// backward 8 B H N^2 dh (dP, dQ, dK, dV). Softmax/exp work is not counted.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "nn.h"
#include "rng.h"

static int reps = 5, use_cputime = 0;
static const char *only = NULL;

static double now(void) {
    if (!use_cputime) return lola_time();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

typedef void (*OpFn)(void *ctx);

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median seconds per call of fn(ctx) over `reps` timed calls after one warm-up.
static double time_op(OpFn fn, void *ctx) {
    fn(ctx);
    nn_sync();
    double t[64];
    int n = reps < 64 ? reps : 64;
    for (int i = 0; i < n; i++) {
        double t0 = now();
        fn(ctx);
        nn_sync();
        t[i] = now() - t0;
    }
    qsort(t, n, sizeof(double), cmp_double);
    return t[n / 2];
}

static void report(const char *name, const char *shape, double sec, double flops, double bytes) {
    printf("%-22s %-34s %9.3f ms", name, shape, sec * 1e3);
    if (flops > 0) printf("  %8.1f GFLOP/s", flops / sec * 1e-9);
    if (bytes > 0) printf("  %8.1f GB/s", bytes / sec * 1e-9);
    printf("\n");
    fflush(stdout);
}

static int wanted(const char *name) { return !only || strstr(name, only); }

static float *randbuf(size_t n, uint64_t seed, float scale) {
    float *d = nn_alloc(n);
    nn_randn(d, n, seed);
    nn_scale(d, scale, n);
    return d;
}

// ---------------------------------------------------------------------------------------------

typedef struct {
    int B, Cin, Cout, H, W, K;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} ConvB;
static void conv_f(void *c) {
    ConvB *p = c;
    conv2d_forward(p->y, p->x, p->w, p->b, p->B, p->Cin, p->Cout, p->H, p->W, p->K);
}
static void conv_b(void *c) {
    ConvB *p = c;
    conv2d_backward(p->dx, p->dw, p->db, p->dy, p->x, p->w, p->B, p->Cin, p->Cout, p->H, p->W, p->K);
}
static void bench_conv(int B, int Cin, int Cout, int H, int W, int K) {
    if (!wanted("conv")) return;
    ConvB p = {.B = B, .Cin = Cin, .Cout = Cout, .H = H, .W = W, .K = K};
    size_t nx = (size_t)B * Cin * H * W, ny = (size_t)B * Cout * H * W, nw = (size_t)Cout * Cin * K * K;
    p.x = randbuf(nx, 1, 1), p.w = randbuf(nw, 2, 0.05f), p.b = randbuf(Cout, 3, 0.1f), p.y = nn_alloc(ny);
    p.dy = randbuf(ny, 4, 1), p.dx = nn_alloc(nx), p.dw = nn_alloc(nw), p.db = nn_alloc(Cout);
    char shape[64];
    snprintf(shape, sizeof shape, "B%d %d->%d %dx%d K%d", B, Cin, Cout, H, W, K);
    double fl = 2.0 * B * H * W * Cout * Cin * K * K;
    report("conv2d forward", shape, time_op(conv_f, &p), fl, 0);
    report("conv2d backward", shape, time_op(conv_b, &p), 2 * fl, 0);
    nn_free(p.x), nn_free(p.w), nn_free(p.b), nn_free(p.y), nn_free(p.dy), nn_free(p.dx), nn_free(p.dw), nn_free(p.db);
}

typedef struct {
    int M, K, N;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} LinB;
static void lin_f(void *c) {
    LinB *p = c;
    linear_forward(p->y, p->x, p->w, p->b, p->M, p->K, p->N);
}
static void lin_b(void *c) {
    LinB *p = c;
    linear_backward(p->dx, p->dw, p->db, p->dy, p->x, p->w, p->M, p->K, p->N);
}
static void bench_linear(int M, int K, int N) {
    if (!wanted("linear")) return;
    LinB p = {.M = M, .K = K, .N = N};
    size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    p.x = randbuf(nx, 1, 1), p.w = randbuf(nw, 2, 0.03f), p.b = randbuf(N, 3, 0.1f), p.y = nn_alloc(ny);
    p.dy = randbuf(ny, 4, 1), p.dx = nn_alloc(nx), p.dw = nn_alloc(nw), p.db = nn_alloc(N);
    char shape[64];
    snprintf(shape, sizeof shape, "M%d %d->%d", M, K, N);
    double fl = 2.0 * M * K * N;
    report("linear forward", shape, time_op(lin_f, &p), fl, 0);
    report("linear backward", shape, time_op(lin_b, &p), 2 * fl, 0);
    nn_free(p.x), nn_free(p.w), nn_free(p.b), nn_free(p.y), nn_free(p.dy), nn_free(p.dx), nn_free(p.dw), nn_free(p.db);
}

typedef struct {
    int B, N, H, dh;
    float *qkv, *out, *save, *dout, *dqkv;
} AttB;
static void att_f(void *c) {
    AttB *p = c;
    attention_forward(p->out, p->save, p->qkv, p->B, p->N, p->H, p->dh);
}
static void att_b(void *c) {
    AttB *p = c;
    attention_backward(p->dqkv, p->dout, p->qkv, p->out, p->save, p->B, p->N, p->H, p->dh);
}
static void bench_attention(int B, int N, int H, int dh) {
    if (!wanted("attention")) return;
    AttB p = {.B = B, .N = N, .H = H, .dh = dh};
    size_t D = (size_t)H * dh, nq = (size_t)B * N * 3 * D, no = (size_t)B * N * D;
    p.qkv = randbuf(nq, 1, 1), p.out = nn_alloc(no), p.save = nn_alloc(attention_save_floats(B, N, H));
    p.dout = randbuf(no, 2, 1), p.dqkv = nn_alloc(nq);
    char shape[64];
    snprintf(shape, sizeof shape, "B%d N%d D%zu H%d", B, N, D, H);
    double fl = 4.0 * B * H * (double)N * N * dh;
    report("attention forward", shape, time_op(att_f, &p), fl, 0);
    report("attention backward", shape, time_op(att_b, &p), 2 * fl, 0);
    nn_free(p.qkv), nn_free(p.out), nn_free(p.save), nn_free(p.dout), nn_free(p.dqkv);
}

typedef struct {
    int B, C, HW;
    size_t n;
    float *x, *y, *dy, *dx, *mean, *rstd;
} EltB;
static void lnc_f(void *c) {
    EltB *p = c;
    layernorm_channels_forward(p->y, p->mean, p->rstd, p->x, p->B, p->C, p->HW, 1e-5f);
}
static void lnc_b(void *c) {
    EltB *p = c;
    layernorm_channels_backward(p->dx, p->dy, p->x, p->mean, p->rstd, p->B, p->C, p->HW);
}
static void ln_f(void *c) { // tokens: M = B*HW rows of D = C
    EltB *p = c;
    layernorm_forward(p->y, p->mean, p->rstd, p->x, p->B * p->HW, p->C, 1e-5f);
}
static void ln_b(void *c) {
    EltB *p = c;
    layernorm_backward(p->dx, p->dy, p->x, p->mean, p->rstd, p->B * p->HW, p->C);
}
static void silu_f(void *c) {
    EltB *p = c;
    silu_forward(p->y, p->x, p->n);
}
static void silu_b(void *c) {
    EltB *p = c;
    silu_backward(p->dx, p->dy, p->x, p->n);
}
static void bench_eltwise(int B, int C, int HW) {
    EltB p = {.B = B, .C = C, .HW = HW, .n = (size_t)B * C * HW};
    p.x = randbuf(p.n, 1, 1), p.y = nn_alloc(p.n), p.dy = randbuf(p.n, 2, 1), p.dx = nn_alloc(p.n);
    p.mean = nn_alloc((size_t)B * HW), p.rstd = nn_alloc((size_t)B * HW);
    char shape[64];
    snprintf(shape, sizeof shape, "B%d C%d HW%d", B, C, HW);
    double b2 = 8.0 * p.n, b3 = 12.0 * p.n; // bytes moved: read x (+dy), write y/dx, once each
    if (wanted("layernorm_channels")) {
        report("layernorm_channels fwd", shape, time_op(lnc_f, &p), 0, b2);
        report("layernorm_channels bwd", shape, time_op(lnc_b, &p), 0, b3);
    }
    snprintf(shape, sizeof shape, "M%d D%d", B * HW, C);
    if (wanted("layernorm_tokens")) {
        report("layernorm_tokens fwd", shape, time_op(ln_f, &p), 0, b2);
        report("layernorm_tokens bwd", shape, time_op(ln_b, &p), 0, b3);
    }
    snprintf(shape, sizeof shape, "n=%zu", p.n);
    if (wanted("silu")) {
        report("silu forward", shape, time_op(silu_f, &p), 0, b2);
        report("silu backward", shape, time_op(silu_b, &p), 0, b3);
    }
    nn_free(p.x), nn_free(p.y), nn_free(p.dy), nn_free(p.dx), nn_free(p.mean), nn_free(p.rstd);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--cputime")) use_cputime = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--reps N] [--quick] [--only NAME] [--cputime]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    nn_init(-1);
    int B = quick ? 2 : 8;
    printf("# bench-ops: backend %s, median of %d calls, %s time\n", nn_backend_name(), reps,
           use_cputime ? "process CPU" : "wall");
    // DCAE: level-0-like 3x3 conv, a deep level (small image, many channels), 1x1 conv
    bench_conv(B, 64, 64, 64, 64, 3);
    bench_conv(B, 256, 256, 16, 16, 3);
    bench_conv(B, 512, 512, 16, 16, 1);
    // ViT: FFN linear (tokens x 1024 -> 4096), attention at the RB and Euler token counts
    bench_linear(quick ? 320 : 1280, 1024, 4096);
    bench_attention(quick ? 1 : 2, 320, 8, 64);
    bench_attention(1, quick ? 320 : 1280, 8, 64);
    // memory-bound ops on a (B, 64, 64x64) activation
    bench_eltwise(B, 64, 64 * 64);
    printf("# peak memory %.1f MiB\n", nn_bytes_peak() / 1048576.0);
    return 0;
}
