// vit.c: see vit.h. Structure and formulas from lola-spec.md 4.1-4.2 (lola/nn/vit.py,
// lola/nn/attention.py); the code is our own.
#include "vit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gradsync.h"
#include "nn.h"

#define VIT_LN_EPS 1e-5f
#define VIT_PE_OMEGA 1e3f

// ---------------------------------------------------------------------------------------------
// Configuration, counts, FLOPs

void vit_config_check(const ViTConfig *c) {
    if (c->spatial < 1 || c->spatial > VIT_MAX_AXES)
        lola_die("vit: spatial = %d axes, need 1..%d", c->spatial, VIT_MAX_AXES);
    for (int i = 0; i < c->spatial; i++) {
        if (c->shape[i] < 1) lola_die("vit: shape[%d] = %d must be >= 1", i, c->shape[i]);
        if (c->patch[i] < 1 || c->shape[i] % c->patch[i] != 0)
            lola_die("vit: patch[%d] = %d does not divide shape[%d] = %d", i, c->patch[i], i, c->shape[i]);
    }
    if (c->in_channels < 1 || c->out_channels < 1 || c->cond_channels < 0)
        lola_die("vit: channels in %d, cond %d, out %d (need in, out >= 1, cond >= 0)", c->in_channels,
                 c->cond_channels, c->out_channels);
    if (c->hid_channels < 2 || c->hid_blocks < 0 || c->heads < 1 || c->ffn_factor < 1 || c->mod_features < 0)
        lola_die("vit: bad sizes (hid_channels %d, hid_blocks %d, heads %d, ffn_factor %d, mod_features %d)",
                 c->hid_channels, c->hid_blocks, c->heads, c->ffn_factor, c->mod_features);
    if (c->hid_channels % c->heads != 0)
        lola_die("vit: hid_channels = %d is not a multiple of attention_heads = %d", c->hid_channels, c->heads);
    if (c->hid_channels % 2 != 0) lola_die("vit: hid_channels = %d must be even (sine encoding)", c->hid_channels);
    if (c->rope && (c->hid_channels / c->heads) % 2 != 0)
        lola_die("vit: head size %d must be even for RoPE", c->hid_channels / c->heads);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) lola_die("vit: dropout = %g outside [0, 1)", c->dropout);
}

int vit_tokens(const ViTConfig *c) {
    int64_t n = 1;
    for (int i = 0; i < c->spatial; i++) n *= c->shape[i] / (c->patch[i] > 0 ? c->patch[i] : 1);
    if (n > 0x7fffffff) lola_die("vit: %lld tokens do not fit an int", (long long)n);
    return (int)n;
}

static uint64_t patch_volume(const ViTConfig *c) {
    uint64_t p = 1;
    for (int i = 0; i < c->spatial; i++) p *= (uint64_t)c->patch[i];
    return p;
}

uint64_t vit_param_count(const ViTConfig *c) {
    uint64_t D = (uint64_t)c->hid_channels, M = (uint64_t)c->mod_features, S = (uint64_t)c->spatial;
    uint64_t P = patch_volume(c), F = (uint64_t)c->ffn_factor;
    uint64_t stem = (P * (uint64_t)(c->in_channels + c->cond_channels) + 1) * D // in_proj
                    + (D + 1) * P * (uint64_t)c->out_channels                   // out_proj
                    + S * D * D + D;                                            // positional embedding
    uint64_t block = 3 * D * D                  // qkv_proj (no bias)
                     + D * D + D                // y_proj
                     + F * D * D + F * D        // ffn.0
                     + F * D * D + D            // ffn.3
                     + (M > 0 ? M * M + M + 4 * D * M + 4 * D : 4 * D) // ada_zero
                     + (c->rope ? S * (D / 2) : 0);                    // theta
    return stem + (uint64_t)c->hid_blocks * block;
}

double vit_forward_flops(const ViTConfig *c) {
    double D = c->hid_channels, M = c->mod_features, S = c->spatial, N = vit_tokens(c);
    double P = (double)patch_volume(c), F = c->ffn_factor;
    double f = 2.0 * N * P * (c->in_channels + c->cond_channels) * D // in_proj
               + 2.0 * N * D * P * c->out_channels                  // out_proj
               + 2.0 * N * S * D * D;                               // positional embedding
    double block = 2.0 * N * D * 3.0 * D    // qkv
                   + 4.0 * N * N * D        // q k^T and p v over all heads
                   + 2.0 * N * D * D        // y_proj
                   + 4.0 * N * D * F * D    // ffn
                   + (M > 0 ? 2.0 * (M * M + 4.0 * D * M) : 0.0) // modulation MLP
                   + (c->rope ? 2.0 * N * S * (D / 2) : 0.0);    // RoPE angles
    return f + c->hid_blocks * block;
}

// ---------------------------------------------------------------------------------------------
// Parameter table

static size_t add_row(ParamTable *t, const char *prefix, const char *name, int ndim, int64_t d0, int64_t d1,
                      ParamInit init, int64_t fan_in, int64_t fan_out, float scale) {
    char full[2 * PARAM_NAME_MAX + 32];
    int len = snprintf(full, sizeof full, "%s%s", prefix, name);
    if (len < 0 || len >= PARAM_NAME_MAX) lola_die("parameter name too long: %s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    int i = ptable_add(t, full, ndim, shape, init, fan_in, fan_out, scale);
    return t->rows[i].offset;
}

// torch.nn.Linear(in, out): weight (out, in), bias (out), both U(+-1/sqrt(in)).
static void add_linear(ParamTable *t, const char *prefix, const char *name, int64_t in, int64_t out, int bias,
                       float wscale, size_t *w, size_t *b) {
    char n[PARAM_NAME_MAX + 16];
    snprintf(n, sizeof n, "%s.weight", name);
    *w = add_row(t, prefix, n, 2, out, in, INIT_TORCH_DEFAULT, in, out, wscale);
    if (bias) {
        snprintf(n, sizeof n, "%s.bias", name);
        *b = add_row(t, prefix, n, 1, out, 0, INIT_TORCH_DEFAULT, in, out, 1.0f);
    }
}

void vit_build(ViT *v, const ViTConfig *c, ParamTable *t, const char *prefix) {
    vit_config_check(c);
    memset(v, 0, sizeof *v);
    v->cfg = *c;
    v->N = vit_tokens(c);
    v->first = t->total;
    int64_t D = c->hid_channels, M = c->mod_features, S = c->spatial, F = (int64_t)c->ffn_factor * D;
    int64_t P = (int64_t)patch_volume(c);
    size_t unused;
    // ViT children in registration order: patch, unpatch (no params), in_proj, out_proj,
    // positional_embedding (0 SineEncoding buffer, 1 Rearrange, 2 Linear), blocks.
    add_linear(t, prefix, "in_proj", P * (c->in_channels + c->cond_channels), D, 1, 1.0f, &v->in_w, &v->in_b);
    add_linear(t, prefix, "out_proj", D, P * c->out_channels, 1, 1.0f, &v->out_w, &v->out_b);
    add_linear(t, prefix, "positional_embedding.2", S * D, D, 1, 1.0f, &v->pe_w, &v->pe_b);
    v->blk = LOLA_NEW(ViTBlockParams, c->hid_blocks > 0 ? c->hid_blocks : 1);
    for (int l = 0; l < c->hid_blocks; l++) {
        ViTBlockParams *p = &v->blk[l];
        p->first = t->total;
        char n[PARAM_NAME_MAX];
#define BNAME(s) (snprintf(n, sizeof n, "blocks.%d.%s", l, s), n)
        // The block's own parameters come first in state_dict order, in registration order
        // (ada_zero before theta when ada_zero is a Parameter), then its children's.
        if (M == 0) p->ada = add_row(t, prefix, BNAME("ada_zero"), 2, 4, D, INIT_NORMAL, 0, 0, 0.01f);
        if (c->rope) p->theta = add_row(t, prefix, BNAME("theta"), 2, S, D / 2, INIT_CUSTOM, 0, 0, 1.0f);
        if (M > 0) {
            add_linear(t, prefix, BNAME("ada_zero.0"), M, M, 1, 1.0f, &p->ada0_w, &p->ada0_b);
            add_linear(t, prefix, BNAME("ada_zero.2"), M, 4 * D, 1, 0.01f, &p->ada2_w, &p->ada2_b);
        }
        add_linear(t, prefix, BNAME("msa.qkv_proj"), D, 3 * D, 0, 1.0f, &p->qkv_w, &unused);
        add_linear(t, prefix, BNAME("msa.y_proj"), D, D, 1, 1.0f, &p->y_w, &p->y_b);
        add_linear(t, prefix, BNAME("ffn.0"), D, F, 1, 1.0f, &p->f0_w, &p->f0_b);
        add_linear(t, prefix, BNAME("ffn.3"), F, D, 1, 1.0f, &p->f3_w, &p->f3_b);
        p->end = t->total;
#undef BNAME
    }
    v->count = t->total - v->first;
    if ((uint64_t)v->count != vit_param_count(c))
        lola_die("vit: table holds %zu parameters, the formula says %llu (internal error)", v->count,
                 (unsigned long long)vit_param_count(c));
}

void vit_init_custom(const ViT *v, float *host_params, Rng *rng) {
    if (!v->cfg.rope) return;
    int S = v->cfg.spatial, H2 = v->cfg.hid_channels / 2;
    double *dir = LOLA_NEW(double, (size_t)S);
    for (int l = 0; l < v->cfg.hid_blocks; l++) {
        float *th = host_params + v->blk[l].theta; // (S, D/2)
        for (int m = 0; m < H2; m++) {
            double amp = pow(100.0, -rng_uniform(rng)), nrm = 0.0;
            for (int k = 0; k < S; k++) {
                dir[k] = rng_normal(rng);
                nrm += dir[k] * dir[k];
            }
            nrm = sqrt(nrm);
            if (nrm < 1e-12) nrm = 1e-12; // torch.nn.functional.normalize's eps
            for (int k = 0; k < S; k++) th[(size_t)k * H2 + m] = (float)(amp * dir[k] / nrm);
        }
    }
    free(dir);
}

// ---------------------------------------------------------------------------------------------
// Activation plan
//
// Memory rule: a block keeps for its backward only what is expensive to recompute (matmul
// outputs); the cheap elementwise tensors are recomputed in vit_backward with the same ops on the
// same inputs in the same order, so they come out bit-identical (nn.h ops are deterministic):
//   y0 = (1 + a) LayerNorm(x) + b, mean, rstd   from the block input x (kept in xs) and the
//                                          block's modulation ada (one fused op; LN(x) itself is
//                                          never stored: layernorm_modulate_backward recomputes it)
//   angle = coo @ theta, qkr, qrstd = qk_norm_rope(qkv)   from qkv
//   f3 = Dropout(SiLU(f1))                 from f1 and the dropout seed (rng_hash stream; one fused
//                                          op, no mask buffer: silu_dropout_backward rehashes it)
//   r = (x + c f4) / sqrt(1 + c^2)         from x and f4
// Batch-independent: coo (N, S) integer coordinates, coo_enc (N, S*D) their sine encodings,
// pe (N, D), thetaT (D/2, S) scratch. Stem: cat (B, Ct, N) channel concat, tok (B, N, Ct),
// s (B, N, D) skip, xs block inputs (blocks + 1 of (B, N, D) in train, 1 in eval), tok_out.
// Saved per block (train arena; every block): qkv (B,N,3D), asave (attention_save_floats),
//   att (B,N,D), y1 (B,N,D), f1 (B,N,FD), f4 (B,N,D), h1/h1s (B,M), ada (B,4D).
//   That is 10 (B,N,D) + the attention save per block with FD = 4D, plus the block input in xs.
// Shared (recomputed per block): mean, rstd (B*N), qrstd (B,N,2H), angle (N,D/2).
// Scratch, shared by the forward temporaries and the backward:
//   R = [gr | gy1 | g1] (3 (B,N,D)), g0 (running d(block input)), gt, ds (B,N,D),
//   F1, F2 (B,N,max(FD,3D)); dangle (N,D/2); dthT, dth (S*D/2); dada (B,4D); dh1s dh1 dmodb (B,M);
//   dpe (N,D); dtok_out (B,N,Cout); dtok (B,N,Ct); dcat (B,Ct,N).
//   Forward temporaries: y0 -> gy1, qkr -> F2, f3 -> F2, r -> gt.
// Eval arena (train = 0): xs holds one (B,N,D) (blocks run in place), scratch gr gy1 gt F1 F2
//   only, and the one block slot's matmul outputs live in that scratch too (their lifetimes do not
//   overlap): qkv -> F1, att -> gr, y1 -> gt, f1 -> F1, f4 -> gr. About 7 (B,N,D) + 2 (B,N,FD).
// Checkpointed train arena (cfg.checkpointing, LoLa's memory-only option): a block keeps only its
//   input (xs, as above) and its modulation h1, h1s, ada (B-sized: recomputing them would cost
//   little but save nothing). The matmul outputs qkv, asave, att, y1, f1 live in buffers shared by
//   all blocks, and f4 in F1 (free in the train forward; in the backward F1 is first written after
//   the last read of f4). vit_backward first reruns the block's front (block_front: y0 -> g1,
//   qkv, qkr -> F2, attention, y1, f1, f3 -> F2, f4) on the kept input with the same ops, so the
//   gradients are bit-identical to the default layout (tested); y0 (g1) and f3 (F2) are then still
//   in place and are not recomputed a second time. Price: one extra forward of every block's
//   matmuls and attention per step. About (blocks + 1) (B,N,D) for xs + 9 (B,N,D) shared + one
//   attention save + the scratch, instead of 11 (B,N,D) + an attention save per block.

typedef struct {
    float *qkv, *asave, *att, *y1, *f1, *f4; // matmul outputs (and the attention save)
    float *h1, *h1s, *ada;                   // modulation MLP (B, M), (B, M), (B, 4D)
} BlockActs;

struct ViTArena {
    int B, train, ckpt, nslot; // ckpt: checkpointed train layout (train && cfg.checkpointing)
    float *mem;
    size_t floats;
    float *coo, *coo_enc, *pe, *thetaT;
    float *cat, *tok, *s, *xs, *tok_out;
    BlockActs *blk;
    float *mean, *rstd, *qrstd, *angle;
    float *g0, *g1, *gr, *gt, *gy1, *ds, *F1, *F2;
    float *dangle, *dthT, *dth, *dada, *dh1s, *dh1, *dmodb, *dpe, *dtok_out, *dtok, *dcat;
    const float *mod_in; // the mod of the last forward (caller memory)
    int have_forward, dropout_on;
    uint64_t seed, first_sample; // of the last forward (dropout masks are recomputed from them)
};

typedef struct {
    float *base;
    size_t off;
} Planner;

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static float *take(Planner *p, size_t n) {
    float *r = p->base ? p->base + p->off : NULL;
    p->off += pad16(n); // 64-byte aligned tensors
    return r;
}

static float *at(float *r, size_t off) { return r ? r + off : NULL; }

// Walks the plan; with base == NULL it only counts (a->blk may then be NULL).
static size_t plan(const ViT *v, ViTArena *a, int B, int train, float *base) {
    const ViTConfig *c = &v->cfg;
    size_t N = (size_t)v->N, D = (size_t)c->hid_channels, S = (size_t)c->spatial, M = (size_t)c->mod_features;
    size_t FD = (size_t)c->ffn_factor * D, H = (size_t)c->heads, Bz = (size_t)B;
    size_t Ct = (size_t)(c->in_channels + c->cond_channels), Co = (size_t)c->out_channels;
    size_t BND = Bz * N * D, wide = Bz * N * (FD > 3 * D ? FD : 3 * D);
    int nslot = train ? c->hid_blocks : (c->hid_blocks > 0 ? 1 : 0);
    int nx = train ? c->hid_blocks + 1 : 1;
    const int ckpt = train && c->checkpointing;
    Planner p = {base, 0};
    ViTArena dummy;
    if (!a) a = &dummy;
    a->coo = take(&p, N * S);
    a->coo_enc = take(&p, N * S * D);
    a->pe = take(&p, N * D);
    a->thetaT = take(&p, S * D / 2);
    a->cat = take(&p, Bz * Ct * N);
    a->tok = take(&p, Bz * N * Ct);
    a->s = take(&p, BND);
    a->xs = take(&p, (size_t)nx * BND);
    a->tok_out = take(&p, Bz * N * Co);
    a->mean = take(&p, Bz * N);
    a->rstd = take(&p, Bz * N);
    a->qrstd = take(&p, Bz * N * 2 * H);
    a->angle = c->rope ? take(&p, N * D / 2) : NULL;
    // Scratch (see the plan above): R = [gr | gy1 | g1].
    float *R = take(&p, (train ? 3 : 2) * pad16(BND));
    a->gr = R;
    a->gy1 = at(R, pad16(BND));
    a->g1 = train ? at(R, 2 * pad16(BND)) : NULL;
    a->gt = take(&p, BND);
    a->F1 = take(&p, wide);
    a->F2 = take(&p, wide);
    a->g0 = train ? take(&p, BND) : NULL;
    a->ds = train ? take(&p, BND) : NULL;
    float *rqkv = NULL, *rsave = NULL, *ratt = NULL, *ry1 = NULL, *rf1 = NULL; // checkpointing: shared
    if (ckpt && nslot > 0) {
        rqkv = take(&p, 3 * BND);
        rsave = take(&p, attention_save_floats(B, (int)N, (int)H));
        ratt = take(&p, BND);
        ry1 = take(&p, BND);
        rf1 = take(&p, Bz * N * FD);
    }
    for (int l = 0; l < nslot; l++) {
        BlockActs tmp, *k = (base && a->blk) ? &a->blk[l] : &tmp;
        if (ckpt) { // shared by all blocks; rebuilt by vit_backward's block_front (see above)
            k->qkv = rqkv;
            k->asave = rsave;
            k->att = ratt;
            k->y1 = ry1;
            k->f1 = rf1;
            k->f4 = a->F1;
        } else if (train) {
            k->qkv = take(&p, 3 * BND);
            k->att = take(&p, BND);
            k->y1 = take(&p, BND);
            k->f1 = take(&p, Bz * N * FD);
            k->f4 = take(&p, BND);
        } else { // eval: matmul outputs in the scratch (lifetimes do not overlap, see above)
            k->qkv = a->F1;
            k->att = a->gr;
            k->y1 = a->gt;
            k->f1 = a->F1;
            k->f4 = a->gr;
        }
        if (!ckpt) k->asave = take(&p, attention_save_floats(B, (int)N, (int)H));
        k->h1 = M ? take(&p, Bz * M) : NULL;
        k->h1s = M ? take(&p, Bz * M) : NULL;
        k->ada = take(&p, Bz * 4 * D);
    }
    if (train) {
        a->dangle = take(&p, N * D / 2);
        a->dthT = take(&p, S * D / 2);
        a->dth = take(&p, S * D / 2);
        a->dada = take(&p, Bz * 4 * D);
        a->dh1s = take(&p, Bz * (M ? M : 1));
        a->dh1 = take(&p, Bz * (M ? M : 1));
        a->dmodb = take(&p, Bz * (M ? M : 1));
        a->dpe = take(&p, N * D);
        a->dtok_out = take(&p, Bz * N * Co);
        a->dtok = take(&p, Bz * N * Ct);
        a->dcat = take(&p, Bz * Ct * N);
    }
    return p.off;
}

size_t vit_arena_floats(const ViT *v, int B, int train) { return plan(v, NULL, B, train, NULL); }

void vit_reserve(ViT *v, int B, int train) {
    if (B < 1) lola_die("vit_reserve: batch %d must be >= 1", B);
    ViTArena *a = v->arena;
    const int ckpt = train && v->cfg.checkpointing;
    if (a && a->B == B && a->train == train && a->ckpt == ckpt) return;
    if (a) {
        nn_free(a->mem);
        free(a->blk);
        free(a);
    }
    a = LOLA_NEW(ViTArena, 1);
    a->B = B;
    a->train = train;
    a->ckpt = ckpt;
    a->nslot = train ? v->cfg.hid_blocks : (v->cfg.hid_blocks > 0 ? 1 : 0);
    a->blk = LOLA_NEW(BlockActs, a->nslot > 0 ? a->nslot : 1);
    a->floats = plan(v, a, B, train, NULL);
    a->mem = nn_alloc(a->floats);
    plan(v, a, B, train, a->mem);
    // Token coordinates, row-major over the token grid, last axis fastest (torch.cartesian_prod),
    // and their sine encodings (N*S values -> (N, S*D): axis k's encoding at columns k*D..).
    const ViTConfig *c = &v->cfg;
    int S = c->spatial, N = v->N, grid[VIT_MAX_AXES];
    for (int k = 0; k < S; k++) grid[k] = c->shape[k] / c->patch[k];
    float *coo = LOLA_NEW(float, (size_t)N * S);
    for (int n = 0; n < N; n++) {
        int rem = n;
        for (int k = S - 1; k >= 0; k--) {
            coo[(size_t)n * S + k] = (float)(rem % grid[k]);
            rem /= grid[k];
        }
    }
    nn_to_backend(a->coo, coo, (size_t)N * S);
    free(coo);
    sine_encoding_forward(a->coo_enc, a->coo, N * S, c->hid_channels, VIT_PE_OMEGA);
    v->arena = a;
}

void vit_destroy(ViT *v) {
    if (v->arena) {
        nn_free(v->arena->mem);
        free(v->arena->blk);
        free(v->arena);
    }
    free(v->blk);
    memset(v, 0, sizeof *v);
}

// ---------------------------------------------------------------------------------------------
// Forward

static void check_patch1(const ViTConfig *c, const char *who) {
    for (int i = 0; i < c->spatial; i++)
        if (c->patch[i] != 1)
            lola_die_hint("LoLa's latent models use patch_size 1; vit_pixel needs a patchify op nn.h lacks",
                          "%s: patch size %d on axis %d is not implemented", who, c->patch[i], i);
}

// RoPE angles of one block: angle (N, D/2) = coo (N, S) @ theta (S, D/2), via theta^T in a->thetaT.
static void rope_angles(const ViT *v, ViTArena *a, const float *theta, float *angle) {
    int S = v->cfg.spatial, H2 = v->cfg.hid_channels / 2;
    transpose_bcn(a->thetaT, theta, 1, S, H2); // (S, D/2) -> (D/2, S)
    linear_forward(angle, a->coo, a->thetaT, NULL, v->N, S, H2);
}

// The block's cheap elementwise tensors, computed by the forward and recomputed (bit-identical:
// same ops, same inputs, same order) by the backward.

// y0 = (1 + a) LN(x) + b; the LN statistics (a->mean, a->rstd) are by-products (the fused op gives
// the bits of layernorm_forward then modulate_forward without storing LN(x)).
static void block_y0(ViTArena *a, float *y0, const float *x, const float *ma, const float *mb, int B, int N,
                     int D) {
    layernorm_modulate_forward(y0, a->mean, a->rstd, x, ma, mb, B, N, D, 4 * D, VIT_LN_EPS);
}

// qkr = qk-norm + RoPE of qkv (statistics in a->qrstd, the block's angles in a->angle).
static void block_qkr(const ViT *v, ViTArena *a, const ViTBlockParams *w, const float *P, float *qkr,
                      const float *qkv, int B) {
    const ViTConfig *c = &v->cfg;
    if (c->rope) rope_angles(v, a, P + w->theta, a->angle);
    qk_norm_rope_forward(qkr, a->qrstd, qkv, a->angle, B, v->N, c->heads, c->hid_channels / c->heads, c->qk_norm,
                         c->rope);
}

// Per-sample dropout seeds (vit.h): sample b of block l draws from rng_hash(rng_hash(seed, l),
// first_sample + b).
static uint64_t ffn_seed(uint64_t seed, int l, uint64_t first_sample, int b) {
    return rng_hash(rng_hash(seed, (uint64_t)l), first_sample + (uint64_t)b);
}

// f3 = Dropout(SiLU(f1)) with the per-sample keep decisions of vit.h (fused, no mask buffer), or
// f3 = SiLU(f1) without dropout. f3, f1 distinct.
static void block_ffn_act(const ViT *v, float *f3, const float *f1, int B, int l, int dropout_on, uint64_t seed,
                          uint64_t first_sample) {
    const ViTConfig *c = &v->cfg;
    const size_t n1 = (size_t)v->N * c->ffn_factor * c->hid_channels;
    if (!dropout_on) {
        silu_forward(f3, f1, (size_t)B * n1);
        return;
    }
    for (int b = 0; b < B; b++)
        silu_dropout_forward(f3 + b * n1, f1 + b * n1, n1, c->dropout, ffn_seed(seed, l, first_sample, b));
}

// The block's front, from its input xin and its modulation (k->ada) to f4 = FFN(y1): y0 (with
// a->mean, a->rstd), k->qkv, qkr -> tmp, k->att and k->asave, k->y1 = y0 + MSA(y0), k->f1,
// f3 -> tmp, k->f4. Run by the forward and, with checkpointing, again by the backward on the same
// input (same ops, same inputs, same order: bit-identical). tmp (B, N, max(FD, 3D)) ends holding f3.
static void block_front(const ViT *v, ViTArena *a, const ViTBlockParams *w, const float *P, BlockActs *k,
                        const float *xin, float *y0, float *tmp, int B, int l, int dropout_on, uint64_t seed,
                        uint64_t first_sample) {
    const ViTConfig *c = &v->cfg;
    int N = v->N, D = c->hid_channels, H = c->heads, dh = D / H, FD = c->ffn_factor * D, BN = B * N;
    // y0 = (1 + a) LN(x) + b
    block_y0(a, y0, xin, k->ada, k->ada + D, B, N, D);
    // y1 = y0 + MSA(y0)
    linear_forward(k->qkv, y0, P + w->qkv_w, NULL, BN, D, 3 * D);
    block_qkr(v, a, w, P, tmp, k->qkv, B);
    attention_forward(k->att, k->asave, tmp, B, N, H, dh);
    linear_forward(k->y1, k->att, P + w->y_w, P + w->y_b, BN, D, D);
    nn_add(k->y1, k->y1, y0, (size_t)BN * D);
    // f4 = FFN(y1)
    linear_forward(k->f1, k->y1, P + w->f0_w, P + w->f0_b, BN, D, FD);
    block_ffn_act(v, tmp, k->f1, B, l, dropout_on, seed, first_sample);
    linear_forward(k->f4, tmp, P + w->f3_w, P + w->f3_b, BN, FD, D);
}

void vit_forward(ViT *v, const float *params, float *out, const float *x, const float *cond,
                 const float *mod, int B, int train, uint64_t seed, uint64_t first_sample) {
    const ViTConfig *c = &v->cfg;
    check_patch1(c, "vit_forward");
    if (!v->arena || v->arena->B != B || (train && !v->arena->train))
        lola_die("vit_forward: no arena for batch %d%s (call vit_reserve first)", B, train ? " in train mode" : "");
    if (c->cond_channels > 0 && !cond) lola_die("vit_forward: the model has %d cond channels but cond is NULL", c->cond_channels);
    if (c->mod_features > 0 && !mod) lola_die("vit_forward: the model has mod_features %d but mod is NULL", c->mod_features);
    ViTArena *a = v->arena;
    const float *P = params;
    int N = v->N, D = c->hid_channels, M = c->mod_features, S = c->spatial;
    int Ci = c->in_channels, Cc = c->cond_channels, Ct = Ci + Cc, Co = c->out_channels;
    int BN = B * N;
    size_t ND = (size_t)N * D, BND = (size_t)B * ND;
    int dropout_on = train && c->dropout > 0.0f;

    // Stem: concat channels, patchify (p = 1: (B, Ct, N) -> (B, N, Ct)), in_proj, + PE.
    for (int b = 0; b < B; b++) {
        nn_copy(a->cat + (size_t)b * Ct * N, x + (size_t)b * Ci * N, (size_t)Ci * N);
        if (Cc) nn_copy(a->cat + (size_t)b * Ct * N + (size_t)Ci * N, cond + (size_t)b * Cc * N, (size_t)Cc * N);
    }
    transpose_bcn(a->tok, a->cat, B, Ct, N);
    linear_forward(a->s, a->tok, P + v->in_w, P + v->in_b, BN, Ct, D);
    linear_forward(a->pe, a->coo_enc, P + v->pe_w, P + v->pe_b, N, S * D, D);
    for (int b = 0; b < B; b++) nn_add(a->xs + b * ND, a->s + b * ND, a->pe, ND);

    for (int l = 0; l < c->hid_blocks; l++) {
        const ViTBlockParams *w = &v->blk[l];
        BlockActs *k = &a->blk[a->train ? l : 0];
        float *xin = a->xs + (a->train ? (size_t)l : 0) * BND;
        float *xout = a->xs + (a->train ? (size_t)l + 1 : 0) * BND; // eval: in place (xin is dead by then)
        // Forward temporaries (activation plan): y0 -> gy1, qkr -> F2, f3 -> F2, r -> gt.
        float *r = a->gt;
        // Modulation a, b, c, d: (B, 4D), chunk order a | b | c | d.
        if (M > 0) {
            linear_forward(k->h1, mod, P + w->ada0_w, P + w->ada0_b, B, M, M);
            silu_forward(k->h1s, k->h1, (size_t)B * M);
            linear_forward(k->ada, k->h1s, P + w->ada2_w, P + w->ada2_b, B, M, 4 * D);
        } else {
            for (int b = 0; b < B; b++) nn_copy(k->ada + (size_t)b * 4 * D, P + w->ada, (size_t)4 * D);
        }
        const float *mc = k->ada + 2 * D, *md = k->ada + 3 * D;
        block_front(v, a, w, P, k, xin, a->gy1, a->F2, B, l, dropout_on, seed, first_sample);
        // r = (x + c f4)/sqrt(1 + c^2); x' = (r + d s)/sqrt(1 + d^2)
        gated_residual_forward(r, xin, k->f4, mc, B, N, D, 4 * D);
        gated_residual_forward(xout, r, a->s, md, B, N, D, 4 * D);
    }

    const float *xl = a->xs + (a->train ? (size_t)c->hid_blocks : 0) * BND;
    linear_forward(a->tok_out, xl, P + v->out_w, P + v->out_b, BN, D, Co);
    transpose_bcn(out, a->tok_out, B, N, Co); // unpatchify: (B, N, Co) -> (B, Co, N)
    a->mod_in = mod;
    a->have_forward = a->train;
    a->dropout_on = dropout_on;
    a->seed = seed;
    a->first_sample = first_sample;
}

// ---------------------------------------------------------------------------------------------
// Backward

void vit_backward(ViT *v, const float *params, float *grads, float *dmod, float *dx,
                  const float *dout, int B) {
    const ViTConfig *c = &v->cfg;
    ViTArena *a = v->arena;
    if (!a || !a->train || !a->have_forward || a->B != B)
        lola_die("vit_backward: needs a preceding vit_forward with batch %d on an arena reserved with train = 1", B);
    const float *P = params;
    float *G = grads; // the parameter offsets index the gradient buffer too
    int N = v->N, D = c->hid_channels, H = c->heads, dh = D / H, M = c->mod_features, S = c->spatial;
    int FD = c->ffn_factor * D, Ct = c->in_channels + c->cond_channels, Co = c->out_channels;
    int BN = B * N, H2 = D / 2;
    size_t ND = (size_t)N * D, BND = (size_t)B * ND;

    // out_proj (after the (B, Co, N) -> (B, N, Co) transpose of dout)
    transpose_bcn(a->dtok_out, dout, B, Co, N);
    const float *xl = a->xs + (size_t)c->hid_blocks * BND;
    // g0 holds the running gradient: d(block output) on entry of an iteration, d(block input) at
    // its end (gated_residual_backward may write dx over dout). The other buffers are scratch
    // (activation plan): recomputed r -> gr, y0 -> g1, qkr -> F1, f3 -> F2.
    float *g0 = a->g0;
    linear_backward(g0, G + v->out_w, G + v->out_b, a->dtok_out, xl, P + v->out_w, BN, D, Co);
    // Gradient-sync hooks (gradsync.h): each row group below is written by exactly one call of this
    // backward, so it is final right after that call: out_proj here, block l at the end of its
    // iteration, the positional embedding and in_proj at the end.
    gradsync_ready(grads, v->out_w, v->out_b + (size_t)Co);
    nn_zero(a->ds, BND);
    if (dmod && M > 0) nn_zero(dmod, (size_t)B * M);

    for (int l = c->hid_blocks - 1; l >= 0; l--) {
        const ViTBlockParams *w = &v->blk[l];
        BlockActs *k = &a->blk[l];
        const float *xin = a->xs + (size_t)l * BND;
        const float *ma = k->ada, *mb = k->ada + D, *mc = k->ada + 2 * D, *md = k->ada + 3 * D;
        float *dada = a->dada;
        nn_zero(dada, (size_t)B * 4 * D);
        // Checkpointing: rebuild the block's tensors from its kept input (y0 -> g1, f3 -> F2, the
        // matmul outputs into the shared buffers, f4 into F1; activation plan).
        if (a->ckpt) block_front(v, a, w, P, k, xin, a->g1, a->F2, B, l, a->dropout_on, a->seed, a->first_sample);
        // x' = (r + d s)/sqrt(1 + d^2), r = (x + c f4)/sqrt(1 + c^2) recomputed into gr:
        // dr -> g0 (in place), ds_part -> gt, dd += (fourth chunk)
        gated_residual_forward(a->gr, xin, k->f4, mc, B, N, D, 4 * D);
        gated_residual_backward(g0, a->gt, dada + 3 * D, g0, a->gr, a->s, md, B, N, D, 4 * D);
        nn_add(a->ds, a->ds, a->gt, BND);
        // r: dx -> g0 (in place), df4 -> gt, dc += (third chunk)
        gated_residual_backward(g0, a->gt, dada + 2 * D, g0, xin, k->f4, mc, B, N, D, 4 * D);
        // FFN: f3 recomputed from f1 into F2 (checkpointing: block_front left it there); df3 -> F1
        // (f4, in F1 with checkpointing, is dead); df1 -> F2 (the dropout keep decisions rehashed
        // from the per-sample seeds)
        if (!a->ckpt) block_ffn_act(v, a->F2, k->f1, B, l, a->dropout_on, a->seed, a->first_sample);
        linear_backward(a->F1, G + w->f3_w, G + w->f3_b, a->gt, a->F2, P + w->f3_w, BN, FD, D); // df3
        float *df1 = a->F2;
        if (a->dropout_on) {
            const size_t n1 = (size_t)N * FD;
            for (int b = 0; b < B; b++)
                silu_dropout_backward(a->F2 + b * n1, a->F1 + b * n1, k->f1 + b * n1, n1, c->dropout,
                                      ffn_seed(a->seed, l, a->first_sample, b));
        } else {
            silu_backward(a->F2, a->F1, k->f1, (size_t)BN * FD);
        }
        linear_backward(a->gy1, G + w->f0_w, G + w->f0_b, df1, k->y1, P + w->f0_w, BN, D, FD); // dy1
        // y1 = y0 + y_proj(att): dy0 = dy1 + (MSA path)
        linear_backward(a->gt, G + w->y_w, G + w->y_b, a->gy1, k->att, P + w->y_w, BN, D, D); // datt
        float *qkr = a->F1, *dqkr = a->F2, *dqkv = a->F1; // F1, F2 free now (3D <= their width)
        block_qkr(v, a, w, P, qkr, k->qkv, B);
        attention_backward(dqkr, a->gt, qkr, k->att, k->asave, B, N, H, dh);
        if (c->rope) nn_zero(a->dangle, (size_t)N * H2);
        qk_norm_rope_backward(dqkv, c->rope ? a->dangle : NULL, dqkr, k->qkv, a->qrstd, a->angle, B, N, H, dh,
                              c->qk_norm, c->rope);
        float *y0 = a->g1; // recomputed (checkpointing: still there from block_front, with mean, rstd)
        if (!a->ckpt) block_y0(a, y0, xin, ma, mb, B, N, D);
        linear_backward(a->gr, G + w->qkv_w, NULL, dqkv, y0, P + w->qkv_w, BN, D, 3 * D);
        nn_add(a->gy1, a->gy1, a->gr, BND); // dy0
        // y0 = (1 + a) LN(x) + b: dx -> gt (datt there is dead), da, db += (first, second chunk)
        layernorm_modulate_backward(a->gt, dada, dada + D, a->gy1, xin, a->mean, a->rstd, ma, B, N, D, 4 * D);
        nn_add(g0, g0, a->gt, BND);
        // theta: angle = coo @ theta -> dtheta^T (D/2, S) = dangle^T @ coo
        if (c->rope) {
            transpose_bcn(a->thetaT, P + w->theta, 1, S, H2);
            nn_zero(a->dthT, (size_t)S * H2);
            linear_backward(NULL, a->dthT, NULL, a->dangle, a->coo, a->thetaT, N, S, H2);
            transpose_bcn(a->dth, a->dthT, 1, H2, S);
            nn_axpy(G + w->theta, 1.0f, a->dth, (size_t)S * H2);
        }
        // modulation MLP
        if (M > 0) {
            linear_backward(a->dh1s, G + w->ada2_w, G + w->ada2_b, dada, k->h1s, P + w->ada2_w, B, M, 4 * D);
            silu_backward(a->dh1, a->dh1s, k->h1, (size_t)B * M);
            linear_backward(dmod ? a->dmodb : NULL, G + w->ada0_w, G + w->ada0_b, a->dh1, a->mod_in,
                            P + w->ada0_w, B, M, M);
            if (dmod) nn_add(dmod, dmod, a->dmodb, (size_t)B * M);
        } else {
            for (int b = 0; b < B; b++) nn_axpy(G + w->ada, 1.0f, dada + (size_t)b * 4 * D, (size_t)4 * D);
        }
        gradsync_ready(grads, w->first, w->end);
    }

    // x0 = s + pe (pe broadcast over the batch); s is also every block's skip input.
    nn_add(a->ds, a->ds, g0, BND);
    nn_zero(a->dpe, ND);
    for (int b = 0; b < B; b++) nn_axpy(a->dpe, 1.0f, g0 + b * ND, ND);
    linear_backward(NULL, G + v->pe_w, G + v->pe_b, a->dpe, a->coo_enc, P + v->pe_w, N, S * D, D);
    gradsync_ready(grads, v->pe_w, v->pe_b + (size_t)D);
    linear_backward(dx ? a->dtok : NULL, G + v->in_w, G + v->in_b, a->ds, a->tok, P + v->in_w, BN, Ct, D);
    gradsync_ready(grads, v->in_w, v->in_b + (size_t)D);
    if (dx) {
        int Ci = c->in_channels;
        transpose_bcn(a->dcat, a->dtok, B, N, Ct); // (B, N, Ct) -> (B, Ct, N)
        for (int b = 0; b < B; b++) nn_copy(dx + (size_t)b * Ci * N, a->dcat + (size_t)b * Ct * N, (size_t)Ci * N);
    }
}
