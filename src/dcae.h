// dcae.h: LoLa's deep-compression autoencoder (DCEncoder + DCDecoder + latent saturation),
// lola-spec.md §2, written once against the op contract nn.h (2-D only; the 3-D TGC variant needs
// 3-D ops that nn.h does not have).
//
// Parameters: one ParamTable (params.h) whose rows carry EXACTLY the PyTorch state_dict names of
// lola's AutoEncoder(DCEncoder, DCDecoder), in state_dict order, e.g.
//   encoder.descent.0.0.weight            level-0 entry conv  (h0, C_pix, 3, 3)
//   encoder.descent.1.0.1.weight          level-1 down conv after the pixel-unshuffle (index 0)
//   encoder.descent.i.j.ffn.0.weight      ResBlock j (1-based) first FFN conv; ffn.3 is the second
//   encoder.descent.5.1.attn.0.in_proj_weight / in_proj_bias / out_proj.weight / out_proj.bias
//   encoder.descent.{L-1}.{n+1}.weight    latent conv (h_{L-1} -> C_lat)
//   decoder.ascent.0.0.weight             latent conv (C_lat -> h_{L-1}); ascent index k = L-1-i
//   decoder.ascent.k.{n+1}.0.weight       (k = 0) / decoder.ascent.k.n.0.weight (k > 0): up conv
//   decoder.ascent.{L-1}.n.weight         level-0 exit conv (h0 -> C_pix)
// lola's state_dict additionally holds one non-trainable buffer per ResBlock, "<block>.norm.eps"
// (a 0-d tensor = 1e-5); it is not a parameter and is not in the table (dcae_norm_eps_name lists
// the names for exporters).
//
// Buffers: params and grads are backend memory (nn_alloc) with the table's layout. Activations
// live in one arena allocated per (B, H, W), laid out either for training (dcae_forward keeps what
// dcae_backward needs) or for inference (dcae_encode / dcae_decode keep nothing, buffers are reused
// layer to layer); the list of saved tensors is in dcae.c ("Activation plan"). Parameter gradients
// accumulate (+=), as in nn.h.
#ifndef LOLA_DCAE_H
#define LOLA_DCAE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "params.h"

#define DCAE_MAX_LEVELS 8

typedef struct {
    int pix_channels;                      // C_pix (5 Euler, 4 RB)
    int lat_channels;                      // C_lat (64 / 16 / 4)
    int levels;                            // L = len(hid_channels), 1..DCAE_MAX_LEVELS
    int hid_channels[DCAE_MAX_LEVELS];     // h_i
    int hid_blocks[DCAE_MAX_LEVELS];       // n_i ResBlocks per level (>= 0)
    int attention_heads[DCAE_MAX_LEVELS];  // 0 = no attention at level i; paper-era large {5: 8}
    int ffn_factor;                        // 1
    int kernel_size;                       // 3 (odd; the attention levels use 1x1 FFN convs)
    float dropout;                         // 0.05 (training mode only)
    int saturation;                        // SAT_* of nn.h (SAT_SOFTCLIP2 default)
    int identity_init;                     // 1: down/up-sampling and latent convs start near identity
    float norm_eps;                        // channel LayerNorm eps, 1e-5
    float latent_noise;                    // std of the noise dcae_decode adds when noisy (0.01)
    int checkpointing;                     // 1: training keeps only stage outputs; the backward
                                           // recomputes each ResBlock's inside (memory only, 0)
} DcaeConfig;

// Presets of lola-spec.md §2.3 (2-D). paper_era = 1 adds attention at level 5 ({5: 8} large,
// {5: 4} small), which the published Euler/RB checkpoints have; 0 = HEAD ({}).
void dcae_config_large(DcaeConfig *c, int pix_channels, int lat_channels, int paper_era);
void dcae_config_small(DcaeConfig *c, int pix_channels, int lat_channels, int paper_era);
// Dies with a message naming the field when the config is unusable (e.g. heads not dividing h_i).
void dcae_config_check(const DcaeConfig *c);

// Exact trainable-parameter count by the closed formula of lola-spec.md §2.7 (generalised to any
// kernel size and ffn_factor); allocates nothing. Equals the table total (tested).
uint64_t dcae_param_count(const DcaeConfig *c);
// Analytic forward FLOPs per sample (2 x MACs of every conv, linear and attention matmul; norms
// and activations ignored, lola-spec.md §2.6) for an H x W input. H, W multiples of 2^(L-1).
double dcae_encoder_flops(const DcaeConfig *c, int H, int W);
double dcae_decoder_flops(const DcaeConfig *c, int H, int W);

// Appends the model's rows (state_dict names and order, shapes, init rules) to an empty table.
void dcae_build_table(const DcaeConfig *c, ParamTable *t);
// Name of the LayerNorm eps buffer of ResBlock number b (0-based over the whole model in
// state_dict order) into buf; returns the number of ResBlocks when buf is NULL.
int dcae_norm_eps_name(const DcaeConfig *c, int b, char *buf, size_t cap);

typedef enum { DCAE_EVAL = 0, DCAE_TRAIN = 1 } DcaeMode;

typedef struct DcaeStage DcaeStage; // one layer of the forward plan (dcae.c)
typedef struct DcaeBufs DcaeBufs;   // input copy + scratch pointers into the arena (dcae.c)

typedef struct {
    DcaeConfig cfg;
    ParamTable table;
    float *params, *grads; // backend, table.total floats each
    // forward plan: encoder stages then decoder stages
    DcaeStage *stages;
    int n_stages, n_enc;
    // activation arena for the current (B, H, W) and layout; 0 when none
    int B, H, W;
    int arena_train;     // 1: the training layout (dcae_forward), 0: the inference layout
    int arena_bf16;      // nn_bf16_activations() when the arena was planned (training layout)
    float *arena;
    size_t arena_floats; // capacity of arena (grow-only, the larger of the layouts used)
    DcaeBufs *bufs;
    int have_forward; // a training forward is stored in the arena (for dcae_backward)
} Dcae;

// Builds the table and plan and allocates params + grads (zero). Does not initialise the values.
void dcae_create(Dcae *m, const DcaeConfig *c);
void dcae_destroy(Dcae *m);
// Initialises the parameters in table order from rng_seed(seed) (lola-spec.md §2.1): PyTorch
// defaults, identity init of the resampling/latent convs, second FFN conv x0.01, attention
// in-projection xavier-uniform with zero biases. Writes the backend params.
void dcae_init_params(Dcae *m, uint64_t seed);
void dcae_zero_grad(Dcae *m);

// Activation arena floats for a training forward/backward at (B, H, W) (saved tensors + scratch),
// without allocating. Linear in B up to 256-byte alignment padding per tensor.
// Built from the config alone (no parameter allocation), so `lola info` can print it. Depends on
// c->checkpointing and on the backend's nn_bf16_activations() at the time of the call.
size_t dcae_arena_floats(const DcaeConfig *c, int B, int H, int W);
// The same for the inference layout of dcae_encode / dcae_decode at (B, H, W) (nothing is kept for
// a backward: stage outputs alternate between two buffers, one set of ResBlock temporaries).
size_t dcae_eval_arena_floats(const DcaeConfig *c, int B, int H, int W);
// Lays out the arena for training at (B, H, W), allocating only when it needs more floats than the
// current arena holds (so alternating smaller batches do not reallocate). Any stored forward is
// invalidated by a change of (B, H, W) or of the layout (dcae_encode / dcae_decode use the
// inference layout; a change of nn_bf16_activations() re-plans the training layout). Dies when H or W is not a multiple of 2^(L-1).
void dcae_reserve(Dcae *m, int B, int H, int W);
// Prints parameters, gradients and activations (per sample and for B) in MiB.
void dcae_print_memory(const DcaeConfig *c, int B, int H, int W, FILE *out);

// Full AE forward y = D(sat(E(x))), no latent noise (as in LoLa's training forward).
// x (B, C_pix, H, W) backend memory, copied into the arena. mode DCAE_TRAIN applies dropout with
// per-sample masks: sample b of ResBlock k draws its mask (element j: rng_hash_uniform(s, j) >= p)
// from s = rng_hash(rng_hash(seed, k), first_sample + b), where first_sample is the global stream
// position of sample 0, so a sample's mask does not depend on how the batch is split over ranks.
// Results stay in the arena: dcae_latent / dcae_output. Calls dcae_reserve(B, H, W).
void dcae_forward(Dcae *m, const float *x, int B, int H, int W, DcaeMode mode, uint64_t seed,
                  uint64_t first_sample);
// After dcae_forward: z (B, C_lat, H/2^(L-1), W/2^(L-1)) after saturation, and y (B, C_pix, H, W).
float *dcae_latent(const Dcae *m);
float *dcae_output(const Dcae *m);
// Backward of the last dcae_forward. dy (B, C_pix, H, W) = dLoss/dy; dz (may be NULL) an extra
// gradient w.r.t. the saturated latent (e.g. a similarity loss). Parameter grads accumulate (+=)
// into m->grads; dx (may be NULL) receives dLoss/dx (=).
void dcae_backward(Dcae *m, const float *dy, const float *dz, float *dx);

// Inference: z = sat(E(x)) in eval mode (no dropout). Uses the arena (reserved for (B, H, W)).
void dcae_encode(Dcae *m, float *z, const float *x, int B, int H, int W);
// Inference: y = D(z (+ latent_noise * N(0, I) when noisy, from nn_randn(seed))) in eval mode.
// z (B, C_lat, h, w), y (B, C_pix, h*2^(L-1), w*2^(L-1)). noisy = 0 for evaluation and training
// (lola-spec.md §2.4); LoLa's notebooks decode with noisy = 1.
void dcae_decode(Dcae *m, float *y, const float *z, int B, int h, int w, int noisy, uint64_t seed);

// Debug / test view of the plan (encoder stages 0..n_enc-1 end with the saturation, then the
// decoder). kind: "conv", "unshuffle", "shuffle", "resblock", "saturation". Levels: H_l = H / 2^l.
typedef struct {
    const char *kind;
    int cin, cout, level_in, level_out, k, identity, heads;
    int w_row, b_row; // conv: table rows of its weight and bias (ResBlock: first FFN conv); -1 none
} DcaeStageInfo;
DcaeStageInfo dcae_stage_info(const Dcae *m, int i);
// Output of stage i after dcae_forward: (B, cout, H >> level_out, W >> level_out). The training
// layout does not keep the outputs that no backward reads (the input of a pixel (un)shuffle);
// those are rebuilt from the (un)shuffle's output into scratch, valid until the next call. With
// bf16 storage (nn_bf16_activations) every kept output except the latent and the final output is
// the bf16-rounded value, unpacked into scratch (valid until the next call).
float *dcae_stage_output(const Dcae *m, int i);

#endif
