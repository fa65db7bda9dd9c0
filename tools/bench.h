// bench.h: pieces shared by the benchmark tools (tools/bench-train.c, tools/bench-lola.c), kept
// header-only (static inline) because the Makefile turns every tools/NAME.c into a program.
//
//   TrainBench   one training step of the DCAE or of a latent emulator on synthetic tensors of
//                the real shapes, exactly what src/train.c does per optimizer step without data
//                loading: zero grads, forward, loss, backward, global-norm clip, the optimizer
//                (optim_step: AdamW; the DCAE also PSGD-Kron). Every tensor is backend memory
//                (nn_alloc / nn_to_backend), so the same code measures the CPU or the GPU
//                depending on the linked backend.
//   bench_median, bench_cpu_time   timing helpers.
//
// Losses: the AE uses VRMSE (eps 1e-2, lola-spec.md 2.5, LoLa's default); the DM the
// DenoiserLoss with a fresh t ~ U(0, 1) per sample and step (sigma = schedule(t)), fresh noise;
// the NS mean((x - y_hat)^2). Dropout is on (training mode), with per-step seeds. Masks are LoLa's
// random context masks drawn once per sample. Training FLOPs per sample = 3 x the analytic forward
// (forward + backward at twice the forward): dcae_encoder_flops + dcae_decoder_flops /
// emu_forward_flops (2 x MACs of matmuls and convolutions; norms and activations not counted).
#ifndef LOLA_TOOLS_BENCH_H
#define LOLA_TOOLS_BENCH_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dcae.h"
#include "denoiser.h"
#include "diffusion.h"
#include "nn.h"
#include "optim.h"
#include "rng.h"

typedef struct {
    int ae;             // 1: DCAE; 0: emulator (emu.cfg.kind)
    Dcae dcae;
    Emulator emu;
    float *params, *grads;
    size_t nparams;
    Optim opt;
    int B, pix, H, W;   // AE input (B, pix, H, W)
    float *x, *mask, *label, *dy; // backend; mask/label emulators only (label NULL without labels)
    double *sigma;      // host (B), DM noise levels of the step
    Schedule sched;
    Rng rng;
    uint64_t seed;
    int64_t step;
    double flops_per_sample; // training FLOPs per sample (3 x forward)
    double last_loss;
} TrainBench;

// Zero-filled backend buffer of n floats holding N(0, 1) noise from seed.
static inline float *bench_randn(size_t n, uint64_t seed) {
    float *d = nn_alloc(n);
    nn_randn(d, n, seed);
    return d;
}

// DCAE training on (B, c->pix_channels, H, W) inputs; params initialised from seed; oc: AdamW or
// PSGD-Kron (optim_init_table).
static inline void train_bench_ae(TrainBench *b, const DcaeConfig *c, int B, int H, int W, const OptimConfig *oc,
                                  uint64_t seed) {
    memset(b, 0, sizeof *b);
    b->ae = 1, b->B = B, b->pix = c->pix_channels, b->H = H, b->W = W, b->seed = seed;
    b->rng = rng_seed(seed);
    dcae_create(&b->dcae, c);
    dcae_init_params(&b->dcae, seed);
    dcae_reserve(&b->dcae, B, H, W);
    b->params = b->dcae.params, b->grads = b->dcae.grads, b->nparams = b->dcae.table.total;
    size_t n = (size_t)B * c->pix_channels * H * W;
    b->x = bench_randn(n, seed ^ 0x1111);
    b->dy = nn_alloc(n);
    b->flops_per_sample = 3.0 * (dcae_encoder_flops(c, H, W) + dcae_decoder_flops(c, H, W));
    optim_init_table(&b->opt, oc, &b->dcae.table); // AdamW, or PSGD-Kron (needs the shapes)
}

// Emulator (DM or NS, c->kind) training on windows of c->vit.shape with batch B; the context
// masks are LoLa's random_context_mask(lambda, rho, atleast), one per sample.
static inline void train_bench_emu(TrainBench *b, const EmuConfig *c, int B, double lambda, double rho, int atleast,
                                   const OptimConfig *oc, uint64_t seed) {
    memset(b, 0, sizeof *b);
    b->ae = 0, b->B = B, b->seed = seed;
    b->rng = rng_seed(seed);
    emu_create(&b->emu, c);
    emu_init_params(&b->emu, seed);
    emu_reserve(&b->emu, B, 1);
    b->params = b->emu.params, b->grads = b->emu.grads, b->nparams = b->emu.table.total;
    b->sched = c->schedule;
    const ViTConfig *v = &c->vit;
    int L = v->shape[0];
    size_t S = 1;
    for (int i = 1; i < v->spatial; i++) S *= (size_t)v->shape[i];
    size_t n = (size_t)B * v->in_channels * L * S;
    b->x = bench_randn(n, seed ^ 0x2222);
    if (c->label_features > 0) b->label = bench_randn((size_t)B * c->label_features, seed ^ 0x3333);
    float *frames = LOLA_NEW(float, (size_t)B * L), *full = LOLA_NEW(float, n);
    for (int i = 0; i < B; i++) context_mask_sample(frames + (size_t)i * L, L, lambda, rho, atleast, &b->rng, NULL);
    context_mask_expand(full, frames, B, v->in_channels, L, S);
    b->mask = nn_alloc(n);
    nn_to_backend(b->mask, full, n);
    free(frames), free(full);
    b->sigma = LOLA_NEW(double, B);
    b->flops_per_sample = 3.0 * emu_forward_flops(c);
    optim_init(&b->opt, oc, b->nparams);
}

// One optimizer step (src/train.c per batch, one rank, no accumulation).
static inline void train_bench_step(TrainBench *b) {
    int B = b->B;
    uint64_t dseed = rng_hash(b->seed ^ 0xd20900ULL, (uint64_t)b->step);
    nn_zero(b->grads, b->nparams);
    if (b->ae) {
        dcae_forward(&b->dcae, b->x, B, b->H, b->W, DCAE_TRAIN, dseed, 0);
        b->last_loss = vrmse_loss(b->dy, dcae_output(&b->dcae), b->x, B, b->pix, b->H * b->W, 1e-2f, 1.0f);
        dcae_backward(&b->dcae, b->dy, NULL, NULL);
    } else if (b->emu.cfg.kind == EMU_DM) {
        for (int i = 0; i < B; i++) b->sigma[i] = schedule_sigma(&b->sched, rng_uniform(&b->rng));
        b->last_loss = emu_dm_loss(&b->emu, b->x, b->mask, b->label, b->sigma, NULL, rng_next(&b->rng), B, 1, dseed, 0);
        emu_dm_backward(&b->emu, 1.0f);
    } else {
        b->last_loss = emu_ns_loss(&b->emu, b->x, b->mask, b->label, B, 1, dseed, 0);
        emu_ns_backward(&b->emu, 1.0f);
    }
    double norm;
    optim_step(&b->opt, b->params, b->grads, b->opt.cfg.lr, &norm);
    b->step++;
}

static inline void train_bench_free(TrainBench *b) {
    optim_free(&b->opt);
    if (b->ae) dcae_destroy(&b->dcae);
    else emu_destroy(&b->emu);
    nn_free(b->x);
    if (b->dy) nn_free(b->dy);
    if (b->mask) nn_free(b->mask);
    if (b->label) nn_free(b->label);
    free(b->sigma);
    memset(b, 0, sizeof *b);
}

// Process CPU seconds (all threads).
static inline double bench_cpu_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median of v[0..n-1], n <= 64 (mean of the two middle values for even n, like Python's
// statistics.median); NAN for n = 0.
static inline double bench_median(const double *v, int n) {
    if (n <= 0) return 0.0 / 0.0;
    double s[64];
    if (n > 64) n = 64;
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), bench_cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

#endif
