// vit.h: LoLa's modulated ViT backbone (lola/nn/vit.py, lola-spec.md 4.1-4.2), written once
// against the op contract nn.h, forward and hand-written backward.
//
//   x (B, C_in, L_1..L_S) ++ cond (B, C_c, L_1..L_S) on channels --patchify (p = 1)--> (B, N, C_in+C_c)
//   s = in_proj(.)                                   (B, N, D)   skip = s
//   x = s + Linear(S*D -> D)(SineEncoding(D)(coo))   coo: integer token coordinates, row-major
//   blocks: a,b,c,d = Linear(M->4D)(SiLU(Linear(M->M)(mod)))
//           y = (1+a) LN(x) + b;  y = y + MSA(y);  y = FFN(y)
//           y = (x + c y)/sqrt(1+c^2);  x = (y + d skip)/sqrt(1+d^2)
//   out_proj (D -> C_out), unpatchify                (B, C_out, L_1..L_S)
// MSA: qkv (no bias), RMS qk-norm, learned per-block RoPE angles coo @ theta (theta (S, D/2)),
// softmax attention over all N tokens, y_proj (bias). FFN: Linear(D,4D)-SiLU-Dropout-Linear(4D,D).
// The token axes are general (S = spatial = number of axes, time included): 3 for 2-D data
// (L, h, w), 4 for 3-D data. Only patch size 1 is implemented in the forward/backward (LoLa's
// latent models); vit_param_count / vit_forward_flops accept any patch (vit_pixel).
//
// Parameters are rows of a ParamTable (params.h) named exactly like PyTorch's state_dict of the
// ViT under a prefix, in state_dict order (per block: theta, ada_zero.0.weight/.bias,
// ada_zero.2.weight/.bias, msa.qkv_proj.weight, msa.y_proj.weight/.bias, ffn.0.weight/.bias,
// ffn.3.weight/.bias; with mod_features = 0: ada_zero (4, D) then theta). The SineEncoding
// buffer "positional_embedding.0.freqs" of the state_dict is not a parameter and is not a row.
//
// Backward conventions (nn.h): parameter gradients accumulate (+=); the input-gradient outputs
// (dmod, dx) are written (=).
#ifndef LOLA_VIT_H
#define LOLA_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

#define VIT_MAX_AXES 4

typedef struct {
    int spatial;              // S: token axes, time included (3 for (L, h, w), 4 for (L, d, h, w))
    int shape[VIT_MAX_AXES];  // input sizes per axis (L, h, w)
    int patch[VIT_MAX_AXES];  // patch per axis (1 = latent models; only 1 runs)
    int in_channels;          // C_in (C_lat)
    int cond_channels;        // C_c (C_lat for LoLa's masked DM and NS: the mask)
    int out_channels;         // C_out (C_lat)
    int hid_channels;         // D (1024 vit_large)
    int hid_blocks;           // 16
    int heads;                // 8 (vit_large)
    int ffn_factor;           // 4
    int mod_features;         // M (256); 0 = each block learns its own (4, D) modulation
    int qk_norm;              // 1
    int rope;                 // 1
    float dropout;            // FFN dropout (0.05), applied only when vit_forward's train = 1
    int checkpointing;        // 1: the training arena keeps only each block's input (and its small
                              // modulation vectors); vit_backward reruns the block's forward on it
                              // (LoLa's denoiser/surrogate.checkpointing: memory only, bit-identical
                              // results; vit.c "Activation plan")
} ViTConfig;

// Dies naming the field when unusable (D % heads, head size odd with rope, patch not dividing...).
void vit_config_check(const ViTConfig *c);
// Tokens N = prod(shape / patch).
int vit_tokens(const ViTConfig *c);
// Exact parameter count (lola-spec.md 4.3 formula, general patch), without allocating.
uint64_t vit_param_count(const ViTConfig *c);
// Analytic forward FLOPs per sample: 2 x MACs of every matmul (in/out projections, positional
// embedding, modulation MLPs, qkv, attention scores and values, y_proj, FFN, RoPE angles).
// Elementwise work is not counted. Batch-shared work (positional embedding, RoPE angles) is
// counted once per sample, as a batch-1 forward does.
double vit_forward_flops(const ViTConfig *c);

// Offsets of one block's parameters in the parameter buffer.
typedef struct {
    size_t theta;                          // (S, D/2) (rope only)
    size_t ada0_w, ada0_b, ada2_w, ada2_b; // mod MLP (M > 0)
    size_t ada;                            // (4, D) learned modulation (M = 0)
    size_t qkv_w, y_w, y_b;                // (3D, D), (D, D), (D)
    size_t f0_w, f0_b, f3_w, f3_b;         // (4D, D), (4D), (D, 4D), (D)
    size_t first, end;                     // [first, end): all of the block's rows (adjacent)
} ViTBlockParams;

typedef struct ViTArena ViTArena; // activations (vit.c, "Activation plan")

typedef struct {
    ViTConfig cfg;
    int N;                              // tokens
    size_t in_w, in_b, out_w, out_b, pe_w, pe_b;
    ViTBlockParams *blk;                // hid_blocks entries
    size_t first, count;                // the model's rows span [first, first + count) of the buffer
    ViTArena *arena;                    // NULL until vit_reserve
} ViT;

// Appends the ViT's rows (names prefix + state_dict name, e.g. "backbone.backbone.in_proj.weight")
// to t and records their offsets in v. Init rules: PyTorch defaults, ada_zero.2.weight x 0.01,
// ada_zero (M = 0) N(0,1) x 0.01, theta INIT_CUSTOM (see vit_init_custom).
void vit_build(ViT *v, const ViTConfig *c, ParamTable *t, const char *prefix);
void vit_destroy(ViT *v);
// Fills the INIT_CUSTOM rows of host_params: theta[:, m] = 100^(-u_m) n_m, u_m ~ U(0, 1),
// n_m a normalised Gaussian vector of R^S (lola-spec.md 4.2), block by block from rng.
void vit_init_custom(const ViT *v, float *host_params, Rng *rng);

// Activation floats (backend) for batch B: when train = 1, every block's matmul outputs and input
// (vit_backward recomputes the cheap elementwise tensors bit-identically; vit.c "Activation plan")
// plus the shared scratch, or with cfg.checkpointing every block's input and modulation only plus
// one block's matmul outputs; when train = 0, one block's temporaries reused layer to layer.
// Allocates nothing. Linear in B plus a batch-independent part.
size_t vit_arena_floats(const ViT *v, int B, int train);
// Allocates the arena for (B, train) (keeps it when B, train and cfg.checkpointing are unchanged).
// train = 1 also serves eval forwards.
void vit_reserve(ViT *v, int B, int train);

// Forward. params: the whole parameter buffer (backend). x (B, C_in, shape...), cond
// (B, C_c, shape...) or NULL when C_c = 0, mod (B, M) or NULL when M = 0; out (B, C_out, shape...).
// train = 1 applies FFN dropout with per-sample masks (sample b of block l: element j dropped when
// rng_hash_uniform(rng_hash(rng_hash(seed, l), first_sample + b), j) < p; first_sample is the
// global stream position of sample 0, so masks do not depend on the rank-local batch index) and
// needs an arena reserved with train = 1; the saved activations then serve vit_backward.
void vit_forward(ViT *v, const float *params, float *out, const float *x, const float *cond,
                 const float *mod, int B, int train, uint64_t seed, uint64_t first_sample);
// Backward of the last vit_forward (which must have run with an arena reserved with train = 1;
// dropout may have been on or off). dout (B, C_out, shape...). grads (+=) has the parameter
// buffer's layout. dmod (B, M) (=) may be NULL; dx (B, C_in, shape...) (=) may be NULL (the
// gradient w.r.t. the cond channels is not returned).
void vit_backward(ViT *v, const float *params, float *grads, float *dmod, float *dx,
                  const float *dout, int B);

#endif
