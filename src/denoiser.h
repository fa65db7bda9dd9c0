// denoiser.h: LoLa's two latent emulators around the ViT backbone (vit.h), forward and backward:
//
//   DM (diffusion model, lola/diffusion.py + azula ElucidatedDenoiser, lola-spec.md 3.2-3.5):
//     mod  = TimeMLP(SineEncoding(256)(c_noise)) + LabelMLP(label)
//     mean = c_skip x_t + c_out F(c_in x_t, mod, cond = mask),  var = s^2 / (1 + s^2)
//     masked positions of x_t hold sqrt(1 + s^2) y (training and inference); at inference
//     MaskedDenoiser also overwrites mean with y there.
//   NS (neural solver / surrogate, lola/surrogate.py, lola-spec.md 4.5):
//     y_hat = F(x * mask, LabelMLP(label), cond = mask),  loss = mean((x - y_hat)^2).
//
// DM training loss (DenoiserLoss, lola-spec.md 3.4): mean over ALL elements of
// (mean - x)^2 (1 + s^2) / s^2. We compute the algebraically identical F-objective
// mean((F - T)^2) with the target written without cancellation:
//   T = c_out x - c_in eps                  at free positions   (x_t = x + s eps)
//   T = x s / (1 + sqrt(1 + s^2))           at masked positions (x_t = sqrt(1 + s^2) x)
// (proof: mean - x = c_out (F - (x - c_skip x_t)/c_out) and c_out^2 (1 + s^2)/s^2 = 1;
// tests/test_vit.c checks both forms against each other and against PyTorch).
//
// Parameters: one ParamTable with the PyTorch state_dict names of the whole module, in order:
//   DM: backbone.backbone.<ViT>, backbone.time_embedding.{1,3}.{weight,bias},
//       backbone.label_embedding.{0,2}.{weight,bias}     (ElucidatedDenoiser(EmbeddingWrapper))
//   NS: backbone.<ViT>, label_embedding.{0,2}.{weight,bias}   (MaskedSurrogate)
// The SineEncoding buffers (backbone.backbone.positional_embedding.0.freqs,
// backbone.time_embedding.0.freqs) are state_dict buffers, not parameters, and not rows.
//
// Memory: params and grads are backend buffers; activations live in one arena per (B, train)
// (emu_reserve). Inputs are backend memory in LoLa's layout: x, mask (B, C, L, h, w) (mask
// 0/1 floats, full shape), label (B, D_label). Parameter gradients accumulate (+=).
#ifndef LOLA_DENOISER_H
#define LOLA_DENOISER_H

#include <stddef.h>
#include <stdint.h>

#include "diffusion.h"
#include "params.h"
#include "vit.h"

typedef enum { EMU_DM = 0, EMU_NS = 1 } EmuKind;

typedef struct {
    EmuKind kind;
    ViTConfig vit;       // backbone; vit.mod_features = emb_features (DM, or NS with labels), else 0
    int emb_features;    // M = 256
    int label_features;  // D_label (5 Euler, 6 RB, 9 TGC); 0 = no label embedding
    Schedule schedule;   // DM only
} EmuConfig;

// LoLa's configuration (lola-spec.md 4.3) for arch "vit_small", "vit_large" (DM or NS) or
// "vit_pixel" (NS only; counts/FLOPs only, its patch (1,16,16) does not run). window: the
// (L, space...) sizes of one window, n_axes of them (3 for 2-D data, 4 for 3-D); channels =
// C_lat (in = cond = out). Dropout 0.05, log-logit schedule. Dies on an unknown arch.
void emu_config_lola(EmuConfig *c, EmuKind kind, const char *arch, int channels, int n_axes, const int *window,
                     int label_features);
// Exact parameter count (closed formula, lola-spec.md 4.3), without allocating.
uint64_t emu_param_count(const EmuConfig *c);
// Analytic FLOPs of one network evaluation per sample (ViT + embeddings; see vit_forward_flops).
double emu_forward_flops(const EmuConfig *c);
// Activation bytes per training sample (arena(B = 2) - arena(B = 1), forward + backward, fp32,
// this backend's attention save size), without allocating.
double emu_train_bytes_per_sample(const EmuConfig *c);

typedef struct EmuArena EmuArena;

typedef struct {
    EmuConfig cfg;
    ParamTable table;
    ViT vit;
    size_t te1_w, te1_b, te3_w, te3_b; // DM time embedding (Linear M->M, SiLU, Linear M->M)
    size_t le0_w, le0_b, le2_w, le2_b; // label embedding (Linear D_label->M, SiLU, Linear M->M)
    float *params, *grads;             // backend, table.total floats each (grads zeroed)
    EmuArena *arena;
} Emulator;

// Builds the table and the offsets only (params = grads = NULL; e.g. to list or count a large
// model without allocating it). emu_destroy frees it.
void emu_build(Emulator *m, const EmuConfig *c);
// emu_build, then allocates params + grads (zero). Does not initialise the values.
void emu_create(Emulator *m, const EmuConfig *c);
void emu_destroy(Emulator *m);
// PyTorch-default initialisation in table order from rng_seed(seed), then theta (vit.h).
void emu_init_params(Emulator *m, uint64_t seed);
void emu_zero_grad(Emulator *m);
// Arena floats for (B, train) without allocating, and the allocation (kept if unchanged).
size_t emu_arena_floats(const Emulator *m, int B, int train);
void emu_reserve(Emulator *m, int B, int train);

// ---- DM --------------------------------------------------------------------------------------
// Training / validation loss for clean x, mask (NULL only for a model without cond channels),
// label (NULL iff label_features = 0) and per-sample noise levels sigma[B] (host). eps: the
// N(0, I) noise (B, C, L, h, w) (backend), or NULL to draw nn_randn(., noise_seed). train = 1:
// dropout on (seed dropout_seed; per-sample masks keyed by first_sample + b, see vit_forward) and
// the activations are kept for emu_dm_backward. first_sample: global stream position of sample 0.
// Returns the loss (mean over all B*C*L*h*w elements).
double emu_dm_loss(Emulator *m, const float *x, const float *mask, const float *label, const double *sigma,
                   const float *eps, uint64_t noise_seed, int B, int train, uint64_t dropout_seed,
                   uint64_t first_sample);
// Gradients (+=) of grad_scale * loss of the last emu_dm_loss into m->grads.
void emu_dm_backward(Emulator *m, float grad_scale);
// The denoiser mean c_skip x_t + c_out F of the last emu_dm_loss (no mask overwrite), (B, C, ...).
void emu_dm_last_mean(Emulator *m, float *mean);
// Inference (MaskedDenoiser over ElucidatedDenoiser): mean (B, C, ...) for the noisy x_t at
// per-sample sigma[B] (host). mask/y may be NULL (unconditional; only for cond-free models):
// masked x_t values become sqrt(1 + s^2) y and the returned mean is y there. Eval mode.
void emu_dm_denoise(Emulator *m, float *mean, const float *x_t, const float *mask, const float *y,
                    const float *label, const double *sigma, int B);

// Adapter for sampler_run (diffusion.h): a batch of B windows sharing one noise level.
typedef struct {
    Emulator *m;
    const float *mask, *y, *label; // backend, as for emu_dm_denoise
    int B;
} EmuDenoiseCtx;
void emu_denoise_fn(void *ctx, float *mean, const float *x_t, double t, double sigma);

// ---- NS --------------------------------------------------------------------------------------
// Loss mean((x - y_hat)^2) with y_hat = F(x * mask, LabelMLP(label), cond = mask); train as above.
double emu_ns_loss(Emulator *m, const float *x, const float *mask, const float *label, int B, int train,
                   uint64_t dropout_seed, uint64_t first_sample);
void emu_ns_backward(Emulator *m, float grad_scale);
// y_hat of the last emu_ns_loss (backend, (B, C, ...)), valid until the next call.
const float *emu_ns_last_output(const Emulator *m);
// Inference: y_hat = F(x * mask, ...) into out (no overwrite of the context), eval mode.
void emu_ns_predict(Emulator *m, float *out, const float *x, const float *mask, const float *label, int B);

#endif
