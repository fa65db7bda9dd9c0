// dcae.c: the DCAE autoencoder (see dcae.h; lola-spec.md §2). Written only against nn.h.
//
// The model is a flat list of stages ("plan"), encoder then decoder, each reading the previous
// stage's output: CONV, UNSHUFFLE (pixel-unshuffle by 2), SHUFFLE, RESBLOCK, SAT (saturation).
// The same walk that builds the plan appends the parameter rows, so names, order and shapes
// cannot drift apart.
//
// Activation plan. Training layout (dcae_forward keeps what dcae_backward needs; all tensors
// (B, C, H_l, W_l) at the stage's level l, H_l = H / 2^l):
//   x                copy of the input (B, C_pix, H, W)           (entry conv backward)
//   stage outputs    kept when the next stage's backward reads its input (CONV, RESBLOCK, SAT),
//                    and the latent (SAT) and the final output; the input of a pixel (un)shuffle
//                    is not kept (its backward is a permutation of the gradient): it goes to g0/g1
//   RESBLOCK         h1 (B,Cf,HW) = conv1 output                   (SiLU backward)
//                    attention levels only: qkv (B,N,3C), att_save (attention_save_floats),
//                      att (B,N,C), y1 (B,C,N) = ln + MHA(ln)      (matmul outputs)
// Recomputed in dcae_backward with the same ops on the same inputs in the same order, so they are
// bit-identical to the forward's: ln, mean, rstd = LN_c(x) (x = the block input, kept),
// tok = ln^T, and d = Dropout(SiLU(h1)) (fused op, no mask: the keep decisions are a pure function
// of the seed).
// Scratch, shared by the forward temporaries and the backward: g0/g1 (stage-sized: forward
// transients, then the ping-pong gradients of stage outputs), gB (Cf wide: d in the forward, d then
// dh1 in the backward), gy (ln in the forward), gA (Cf wide: the FFN gradient dd and the
// recomputed ln in the backward; gy then takes the gradient of ln / y1), gP/gQ/gK (attention: tok,
// out-projection, gradients), mean/rstd (B,HW) of the current block.
// Two switches shrink the training layout (both change where tensors live, never the ops run):
//   bf16 storage (nn_bf16_activations(), read when the arena is planned): every kept tensor except
//     x, the latent and the final output is stored packed as bf16 (outp, h1p). The forward still
//     runs in fp32: stage outputs go to g0/g1 (fp32) and are packed after the stage; h1 goes to gH
//     and is packed. The backward unpacks a stage's input into gX and h1 into gH, so it reads the
//     rounded values (the attention tensors of level 5 stay fp32: they are small).
//   With h1 in gH (either switch) there is no gA: the backward puts dd and ln in gy (now Cf wide)
//     and the gradient of ln / y1 in gH, whose h1 is dead by then.
//   checkpointing (ae.checkpointing, LoLa's memory-only option): the ResBlocks keep nothing but
//     their outputs. h1 lives in gH and the attention tensors (qkv, att_save, att, y1) in buffers
//     shared by all blocks; the backward first reruns the block's front (resblock_front: LN,
//     attention, conv1) on the kept input. Same ops on the same input, so with fp32 storage the
//     gradients are bit-identical to the default layout (tested); the price is one extra conv
//     (and attention) forward per ResBlock.
// Inference layout (dcae_encode / dcae_decode): x, the latent and the final output only; every
// other stage output alternates between g0 and g1, and the ResBlock tensors live in the scratch
// (h1 -> gA, qkv -> gK, att -> gA, y1 -> gB, one shared att_save).
// Residuals: out = x + y, so dx = dout + (LN-path gradient); both are summed explicitly.
#include "dcae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gradsync.h"
#include "nn.h"
#include "rng.h"

typedef enum { ST_CONV, ST_UNSHUFFLE, ST_SHUFFLE, ST_RESBLOCK, ST_SAT } StageKind;

struct DcaeStage {
    StageKind kind;
    int cin, cout;      // channels of the input / output
    int lin, lout;      // resolution level of the input / output (H_l = H >> l)
    int k;              // conv kernel (CONV; RESBLOCK FFN convs)
    int identity;       // CONV: identity init
    int heads, cf;      // RESBLOCK: attention heads (0 = none), FFN width C * ffn_factor
    int block;          // RESBLOCK: index over all ResBlocks (dropout seed stream)
    int w, b, w2, b2;   // table rows: conv / FFN conv1 (w, b), FFN conv2 (w2, b2)
    int qkv_w, qkv_b, proj_w, proj_b; // attention rows, -1 when absent
    // activations in the arena (set by plan_arena)
    int saved; // the backward needs out: a buffer of its own, or packed in outp (bf16 storage)
    float *out, *qkv, *att_save, *att, *y1, *h1; // fp32 working tensors (out: g0/g1 unless own)
    uint16_t *outp, *h1p;                         // bf16 copies kept for the backward, or NULL
};

struct DcaeBufs {
    float *x;                                        // input copy
    float *mean, *rstd;                              // LN statistics of the current ResBlock
    float *g0, *g1, *gA, *gB, *gy, *gP, *gQ, *gK;    // scratch (activation plan)
    float *gX, *gH;                                  // unpacked stage input / h1 working copy
    DcaeMode mode;                                   // of the stored forward
    uint64_t seed, first_sample;                     // of the stored forward (dropout masks)
};

// ------------------------------------------------------------------------------------------------
// Configuration

static void config_common(DcaeConfig *c, int pix, int lat) {
    memset(c, 0, sizeof *c);
    c->pix_channels = pix;
    c->lat_channels = lat;
    c->levels = 6;
    for (int i = 0; i < 6; i++) c->hid_blocks[i] = 3;
    c->ffn_factor = 1;
    c->kernel_size = 3;
    c->dropout = 0.05f;
    c->saturation = SAT_SOFTCLIP2;
    c->identity_init = 1;
    c->norm_eps = 1e-5f;
    c->latent_noise = 0.01f;
}

void dcae_config_large(DcaeConfig *c, int pix_channels, int lat_channels, int paper_era) {
    static const int h[6] = {64, 128, 256, 512, 768, 1024};
    config_common(c, pix_channels, lat_channels);
    memcpy(c->hid_channels, h, sizeof h);
    if (paper_era) c->attention_heads[5] = 8;
}

void dcae_config_small(DcaeConfig *c, int pix_channels, int lat_channels, int paper_era) {
    static const int h[6] = {32, 64, 128, 256, 384, 512};
    config_common(c, pix_channels, lat_channels);
    memcpy(c->hid_channels, h, sizeof h);
    if (paper_era) c->attention_heads[5] = 4;
}

void dcae_config_check(const DcaeConfig *c) {
    if (c->pix_channels < 1) lola_die("dcae config: pix_channels = %d, must be >= 1", c->pix_channels);
    if (c->lat_channels < 1) lola_die("dcae config: lat_channels = %d, must be >= 1", c->lat_channels);
    if (c->levels < 1 || c->levels > DCAE_MAX_LEVELS)
        lola_die("dcae config: %d levels (len(hid_channels)), must be 1..%d", c->levels, DCAE_MAX_LEVELS);
    for (int i = 0; i < c->levels; i++) {
        if (c->hid_channels[i] < 1) lola_die("dcae config: hid_channels[%d] = %d, must be >= 1", i, c->hid_channels[i]);
        if (c->hid_blocks[i] < 0) lola_die("dcae config: hid_blocks[%d] = %d, must be >= 0", i, c->hid_blocks[i]);
        int a = c->attention_heads[i];
        if (a < 0 || (a > 0 && c->hid_channels[i] % a != 0))
            lola_die("dcae config: attention_heads[%d] = %d must be 0 or divide hid_channels[%d] = %d", i, a, i,
                     c->hid_channels[i]);
    }
    for (int i = c->levels; i < DCAE_MAX_LEVELS; i++)
        if (c->attention_heads[i] != 0)
            lola_die("dcae config: attention_heads has level %d but there are only %d levels", i, c->levels);
    if (c->ffn_factor < 1) lola_die("dcae config: ffn_factor = %d, must be >= 1", c->ffn_factor);
    if (c->kernel_size < 1 || c->kernel_size % 2 == 0)
        lola_die("dcae config: kernel_size = %d, must be odd (1 or 3)", c->kernel_size);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) lola_die("dcae config: dropout = %g, must be in [0, 1)", c->dropout);
    if (c->saturation < SAT_NONE || c->saturation > SAT_RMSNORM)
        lola_die("dcae config: saturation kind %d unknown (nn.h SAT_*)", c->saturation);
    if (!(c->norm_eps > 0.0f)) lola_die("dcae config: norm eps = %g, must be > 0", c->norm_eps);
    if (!(c->latent_noise >= 0.0f)) lola_die("dcae config: latent_noise = %g, must be >= 0", c->latent_noise);
}

// ------------------------------------------------------------------------------------------------
// Counting (closed forms, lola-spec.md §2.6-2.7)

static uint64_t conv_params(uint64_t cin, uint64_t cout, uint64_t k) { return cin * cout * k * k + cout; }

static uint64_t resblock_params(const DcaeConfig *c, int i) {
    uint64_t h = (uint64_t)c->hid_channels[i], f = h * (uint64_t)c->ffn_factor;
    uint64_t k = c->attention_heads[i] ? 1 : (uint64_t)c->kernel_size;
    uint64_t mha = c->attention_heads[i] ? 4 * h * h + 4 * h : 0; // in_proj (3h,h)+3h, out_proj (h,h)+h
    return mha + conv_params(h, f, k) + conv_params(f, h, k);
}

uint64_t dcae_param_count(const DcaeConfig *c) {
    dcae_config_check(c);
    uint64_t k = (uint64_t)c->kernel_size, n = 0;
    int L = c->levels;
    for (int i = 0; i < L; i++) {
        uint64_t h = (uint64_t)c->hid_channels[i];
        uint64_t cin = i == 0 ? (uint64_t)c->pix_channels : 4 * (uint64_t)c->hid_channels[i - 1];
        uint64_t cout_dec = i == 0 ? (uint64_t)c->pix_channels : 4 * (uint64_t)c->hid_channels[i - 1];
        n += conv_params(cin, h, k);                         // encoder entry (down conv)
        n += conv_params(h, cout_dec, k);                    // decoder exit (up conv)
        n += 2 * (uint64_t)c->hid_blocks[i] * resblock_params(c, i); // encoder + decoder blocks
    }
    uint64_t hl = (uint64_t)c->hid_channels[L - 1], cl = (uint64_t)c->lat_channels;
    n += conv_params(hl, cl, k) + conv_params(cl, hl, k); // latent convs
    return n;
}

static double conv_flops(double cin, double cout, double k, double hw) { return 2.0 * cin * cout * k * k * hw; }

static double resblock_flops(const DcaeConfig *c, int i, double hw) {
    double h = c->hid_channels[i], f = h * c->ffn_factor;
    if (c->attention_heads[i]) {
        // qkv (3h x h) and output (h x h) projections per token, q k^T and p v (N^2 h each).
        return 2.0 * 4.0 * h * h * hw + 2.0 * 2.0 * hw * hw * h + conv_flops(h, f, 1, hw) + conv_flops(f, h, 1, hw);
    }
    double k = c->kernel_size;
    return conv_flops(h, f, k, hw) + conv_flops(f, h, k, hw);
}

static void check_hw(const DcaeConfig *c, int H, int W) {
    int f = 1 << (c->levels - 1);
    if (H < f || W < f || H % f || W % f)
        lola_die("dcae: input %d x %d is not a (positive) multiple of 2^(levels-1) = %d", H, W, f);
}

double dcae_encoder_flops(const DcaeConfig *c, int H, int W) {
    dcae_config_check(c);
    check_hw(c, H, W);
    double k = c->kernel_size, fl = 0.0;
    int L = c->levels;
    for (int i = 0; i < L; i++) {
        double hw = (double)(H >> i) * (double)(W >> i);
        double cin = i == 0 ? c->pix_channels : 4.0 * c->hid_channels[i - 1];
        fl += conv_flops(cin, c->hid_channels[i], k, hw);
        fl += c->hid_blocks[i] * resblock_flops(c, i, hw);
        if (i == L - 1) fl += conv_flops(c->hid_channels[i], c->lat_channels, k, hw);
    }
    return fl;
}

double dcae_decoder_flops(const DcaeConfig *c, int H, int W) {
    dcae_config_check(c);
    check_hw(c, H, W);
    double k = c->kernel_size, fl = 0.0;
    int L = c->levels;
    for (int i = L - 1; i >= 0; i--) {
        double hw = (double)(H >> i) * (double)(W >> i);
        if (i == L - 1) fl += conv_flops(c->lat_channels, c->hid_channels[i], k, hw);
        fl += c->hid_blocks[i] * resblock_flops(c, i, hw);
        double cout = i == 0 ? c->pix_channels : 4.0 * c->hid_channels[i - 1];
        fl += conv_flops(c->hid_channels[i], cout, k, hw);
    }
    return fl;
}

// ------------------------------------------------------------------------------------------------
// Plan + parameter table (one walk builds both, in state_dict order)

typedef struct {
    const DcaeConfig *c;
    ParamTable *t;
    DcaeStage *st; // capacity max_stages()
    int n, blocks;
} Builder;

static DcaeStage *push(Builder *bd, StageKind kind, int cin, int cout, int lin, int lout) {
    DcaeStage *s = &bd->st[bd->n];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->cin = cin;
    s->cout = cout;
    s->lin = lin;
    s->lout = lout;
    s->w = s->b = s->w2 = s->b2 = s->qkv_w = s->qkv_b = s->proj_w = s->proj_b = -1;
    bd->n++;
    return s;
}

static int add_row(Builder *bd, const char *prefix, const char *suffix, int ndim, int64_t d0, int64_t d1,
                   int64_t d2, int64_t d3, ParamInit init, int64_t fan_in, int64_t fan_out, float scale) {
    char name[PARAM_NAME_MAX];
    int64_t shape[4] = {d0, d1, d2, d3};
    int len = snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    if (len < 0 || len >= (int)sizeof name) lola_die("dcae: parameter name too long: %s.%s", prefix, suffix);
    return ptable_add(bd->t, name, ndim, shape, init, fan_in, fan_out, scale);
}

// Conv2d(cin -> cout, k) named prefix.weight / prefix.bias (PyTorch default init; identity init
// draws the default weight scaled by 0.01, the identity is added by dcae_init_params).
static void add_conv(Builder *bd, const char *prefix, int cin, int cout, int k, int level, int identity) {
    DcaeStage *s = push(bd, ST_CONV, cin, cout, level, level);
    s->k = k;
    s->identity = identity;
    int64_t fan = (int64_t)cin * k * k;
    s->w = add_row(bd, prefix, "weight", 4, cout, cin, k, k, INIT_TORCH_DEFAULT, fan, (int64_t)cout * k * k,
                   identity ? 0.01f : 1.0f);
    s->b = add_row(bd, prefix, "bias", 1, cout, 0, 0, 0, INIT_TORCH_DEFAULT, fan, 0, 1.0f);
}

static void add_resblock(Builder *bd, const char *prefix, int level) {
    const DcaeConfig *c = bd->c;
    int C = c->hid_channels[level], heads = c->attention_heads[level], cf = C * c->ffn_factor;
    int k = heads ? 1 : c->kernel_size; // lola: attention blocks switch the FFN to 1x1 convs
    DcaeStage *s = push(bd, ST_RESBLOCK, C, C, level, level);
    s->k = k;
    s->heads = heads;
    s->cf = cf;
    s->block = bd->blocks++;
    char p[PARAM_NAME_MAX];
    if (heads) {
        // torch.nn.MultiheadAttention: xavier-uniform in_proj_weight, zero in_proj_bias and
        // out_proj.bias; out_proj.weight keeps nn.Linear's default.
        snprintf(p, sizeof p, "%s.attn.0", prefix);
        s->qkv_w = add_row(bd, p, "in_proj_weight", 2, 3 * C, C, 0, 0, INIT_XAVIER_UNIFORM, C, 3 * C, 1.0f);
        s->qkv_b = add_row(bd, p, "in_proj_bias", 1, 3 * C, 0, 0, 0, INIT_ZERO, 0, 0, 1.0f);
        s->proj_w = add_row(bd, p, "out_proj.weight", 2, C, C, 0, 0, INIT_TORCH_DEFAULT, C, C, 1.0f);
        s->proj_b = add_row(bd, p, "out_proj.bias", 1, C, 0, 0, 0, INIT_ZERO, 0, 0, 1.0f);
    }
    int64_t fan1 = (int64_t)C * k * k, fan2 = (int64_t)cf * k * k;
    snprintf(p, sizeof p, "%s.ffn.0", prefix);
    s->w = add_row(bd, p, "weight", 4, cf, C, k, k, INIT_TORCH_DEFAULT, fan1, (int64_t)cf * k * k, 1.0f);
    s->b = add_row(bd, p, "bias", 1, cf, 0, 0, 0, INIT_TORCH_DEFAULT, fan1, 0, 1.0f);
    snprintf(p, sizeof p, "%s.ffn.3", prefix); // ffn = [conv, SiLU, Dropout, conv]
    s->w2 = add_row(bd, p, "weight", 4, C, cf, k, k, INIT_TORCH_DEFAULT, fan2, (int64_t)C * k * k, 0.01f);
    s->b2 = add_row(bd, p, "bias", 1, C, 0, 0, 0, INIT_TORCH_DEFAULT, fan2, 0, 1.0f);
}

// Returns the number of encoder stages (through SAT).
static int build(Builder *bd) {
    const DcaeConfig *c = bd->c;
    const int L = c->levels, k = c->kernel_size, id = c->identity_init;
    char p[PARAM_NAME_MAX];
    // Encoder: encoder.descent[i] = [entry, ResBlock x n_i, (latent conv at the last level)]
    for (int i = 0; i < L; i++) {
        int h = c->hid_channels[i];
        if (i == 0) {
            add_conv(bd, "encoder.descent.0.0", c->pix_channels, h, k, 0, 0);
        } else {
            int hp = c->hid_channels[i - 1];
            push(bd, ST_UNSHUFFLE, hp, 4 * hp, i - 1, i);
            snprintf(p, sizeof p, "encoder.descent.%d.0.1", i); // Sequential(Patchify, Conv)
            add_conv(bd, p, 4 * hp, h, k, i, id);
        }
        for (int j = 1; j <= c->hid_blocks[i]; j++) {
            snprintf(p, sizeof p, "encoder.descent.%d.%d", i, j);
            add_resblock(bd, p, i);
        }
        if (i == L - 1) {
            snprintf(p, sizeof p, "encoder.descent.%d.%d", i, c->hid_blocks[i] + 1);
            add_conv(bd, p, h, c->lat_channels, k, i, id);
        }
    }
    push(bd, ST_SAT, c->lat_channels, c->lat_channels, L - 1, L - 1);
    int n_enc = bd->n;
    // Decoder: decoder.ascent[L-1-i] = [(latent conv at the last level), ResBlock x n_i, exit]
    for (int i = L - 1; i >= 0; i--) {
        int a = L - 1 - i, h = c->hid_channels[i], j = 0;
        if (i == L - 1) {
            snprintf(p, sizeof p, "decoder.ascent.%d.%d", a, j++);
            add_conv(bd, p, c->lat_channels, h, k, i, id);
        }
        for (int r = 0; r < c->hid_blocks[i]; r++) {
            snprintf(p, sizeof p, "decoder.ascent.%d.%d", a, j++);
            add_resblock(bd, p, i);
        }
        if (i > 0) {
            int hp = c->hid_channels[i - 1];
            snprintf(p, sizeof p, "decoder.ascent.%d.%d.0", a, j); // Sequential(Conv, Unpatchify)
            add_conv(bd, p, h, 4 * hp, k, i, id);
            push(bd, ST_SHUFFLE, 4 * hp, hp, i, i - 1);
        } else {
            snprintf(p, sizeof p, "decoder.ascent.%d.%d", a, j);
            add_conv(bd, p, h, c->pix_channels, k, 0, 0);
        }
    }
    return n_enc;
}

// Upper bound on the plan length: encoder L entry convs + (L-1) unshuffles + latent conv + SAT,
// decoder latent conv + (L-1) (conv + shuffle) + exit conv, plus every ResBlock twice.
static int max_stages(const DcaeConfig *c) {
    int n = 5 * c->levels + 2;
    for (int i = 0; i < c->levels; i++) n += 2 * c->hid_blocks[i];
    return n;
}

void dcae_build_table(const DcaeConfig *c, ParamTable *t) {
    dcae_config_check(c);
    if (t->n != 0) lola_die("dcae_build_table: the table must be empty (has %d rows)", t->n);
    DcaeStage *st = LOLA_NEW(DcaeStage, max_stages(c));
    Builder bd = {c, t, st, 0, 0};
    build(&bd);
    free(st);
}

int dcae_norm_eps_name(const DcaeConfig *c, int b, char *buf, size_t cap) {
    int L = c->levels, count = 0;
    for (int i = 0; i < L; i++)
        for (int j = 1; j <= c->hid_blocks[i]; j++, count++)
            if (buf && count == b) snprintf(buf, cap, "encoder.descent.%d.%d.norm.eps", i, j);
    for (int i = L - 1; i >= 0; i--) {
        int j0 = i == L - 1 ? 1 : 0; // the latent conv comes first in decoder.ascent.0
        for (int r = 0; r < c->hid_blocks[i]; r++, count++)
            if (buf && count == b) snprintf(buf, cap, "decoder.ascent.%d.%d.norm.eps", L - 1 - i, j0 + r);
    }
    if (buf && (b < 0 || b >= count)) lola_die("dcae_norm_eps_name: block %d out of range (%d ResBlocks)", b, count);
    return count;
}

// ------------------------------------------------------------------------------------------------
// Lifetime, init

void dcae_create(Dcae *m, const DcaeConfig *c) {
    dcae_config_check(c);
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->stages = LOLA_NEW(DcaeStage, max_stages(c));
    Builder bd = {c, &m->table, m->stages, 0, 0};
    m->n_enc = build(&bd);
    m->n_stages = bd.n;
    if (m->table.total != dcae_param_count(c))
        lola_die("dcae: internal error, table has %zu parameters but the formula gives %llu", m->table.total,
                 (unsigned long long)dcae_param_count(c));
    m->params = nn_alloc(m->table.total);
    m->grads = nn_alloc(m->table.total);
}

void dcae_destroy(Dcae *m) {
    if (m->arena) nn_free(m->arena);
    if (m->params) nn_free(m->params);
    if (m->grads) nn_free(m->grads);
    free(m->stages);
    free(m->bufs);
    ptable_free(&m->table);
    memset(m, 0, sizeof *m);
}

void dcae_init_params(Dcae *m, uint64_t seed) {
    float *host = LOLA_NEW(float, m->table.total);
    Rng rng = rng_seed(seed);
    ptable_init(&m->table, host, &rng);
    // Identity init (lola ConvNd): W <- 0.01 W_default + E, E[o, o mod C_in, centre] = 1. The 0.01
    // is the row's scale; add E here.
    for (int s = 0; s < m->n_stages; s++) {
        const DcaeStage *st = &m->stages[s];
        if (st->kind != ST_CONV || !st->identity) continue;
        float *w = host + m->table.rows[st->w].offset;
        int k = st->k, ctr = (k / 2) * k + k / 2;
        for (int o = 0; o < st->cout; o++) w[((size_t)o * st->cin + (size_t)(o % st->cin)) * k * k + ctr] += 1.0f;
    }
    nn_to_backend(m->params, host, m->table.total);
    free(host);
}

void dcae_zero_grad(Dcae *m) { nn_zero(m->grads, m->table.total); }

// ------------------------------------------------------------------------------------------------
// Activation arena

typedef struct {
    float *base; // NULL: count only
    size_t used;
} Bump;

static float *take(Bump *a, size_t n) {
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 63) & ~(size_t)63; // 256-byte aligned tensors
    return p;
}

// n bf16 values (bf16 storage), carved from the float arena with the same alignment.
static uint16_t *take_bf16(Bump *a, size_t n) { return (uint16_t *)take(a, (n + 1) / 2); }

static size_t mx(size_t a, size_t b) { return a > b ? a : b; }

// 1 when the backward of a stage of this kind reads the stage's input.
static int reads_input(StageKind k) { return k == ST_CONV || k == ST_RESBLOCK || k == ST_SAT; }

// Walks the plan, assigning the stages' pointers (base != NULL) or only counting (base == NULL,
// nothing is written). train selects the layout (activation plan at the top). Returns floats.
static size_t plan_arena(const DcaeConfig *c, DcaeStage *stages, int n_stages, int n_enc, DcaeBufs *bf, int B,
                         int H, int W, int train, float *base) {
    Bump a = {base, 0};
    const int packed = train && nn_bf16_activations(), ckpt = train && c->checkpointing;
    size_t b = (size_t)B;
    size_t in0 = b * c->pix_channels * (size_t)H * W;
    size_t smax = in0, cfmax = 0, cmax = 0, attn = 0, save = 0, pix = 0;
    for (int i = 0; i < n_stages; i++) {
        const DcaeStage *s = &stages[i];
        size_t hw = (size_t)(H >> s->lout) * (size_t)(W >> s->lout);
        smax = mx(smax, b * s->cout * hw);
        if (s->kind != ST_RESBLOCK) continue;
        size_t nc = b * s->cin * hw, nf = b * (size_t)s->cf * hw;
        cfmax = mx(cfmax, nf);
        cmax = mx(cmax, nc);
        pix = mx(pix, b * hw);
        if (s->heads) {
            attn = mx(attn, nc);
            save = mx(save, attention_save_floats(B, (int)hw, s->heads));
        }
    }
    float *x = take(&a, in0);
    float *g0 = take(&a, smax), *g1 = take(&a, smax);
    const int gh = packed || ckpt; // h1 in gH (scratch): resblock_backward then needs no gA
    float *gA = gh ? NULL : take(&a, cfmax), *gB = take(&a, cfmax);
    float *gy = take(&a, gh ? mx(cmax, cfmax) : cmax);
    float *gP = take(&a, attn), *gQ = take(&a, attn), *gK = take(&a, 3 * attn);
    float *mean = take(&a, pix), *rstd = take(&a, pix);
    float *esave = train ? NULL : take(&a, save);
    float *gX = packed ? take(&a, smax) : NULL;
    float *gH = gh ? take(&a, cfmax) : NULL;
    float *rqkv = NULL, *rsave = NULL, *ratt = NULL, *ry1 = NULL; // checkpointing: shared by all blocks
    if (ckpt && attn) {
        rqkv = take(&a, 3 * attn);
        rsave = take(&a, save);
        ratt = take(&a, attn);
        ry1 = take(&a, attn);
    }
    int pp = 0; // next transient buffer (g0 / g1)
    for (int i = 0; i < n_stages; i++) {
        DcaeStage tmp, *s = &stages[i];
        if (!base) {
            tmp = *s;
            s = &tmp;
        }
        size_t hw = (size_t)(H >> s->lout) * (size_t)(W >> s->lout);
        const int ends = i == n_enc - 1 || i == n_stages - 1; // latent and output: fp32, always kept
        s->saved = ends || (train && i + 1 < n_stages && reads_input(stages[i + 1].kind));
        s->outp = s->h1p = NULL;
        if (s->saved && (ends || !packed)) {
            s->out = take(&a, b * s->cout * hw);
        } else {
            s->out = pp ? g1 : g0;
            pp ^= 1;
            if (s->saved) s->outp = take_bf16(&a, b * s->cout * hw);
        }
        s->h1 = s->qkv = s->att_save = s->att = s->y1 = NULL;
        if (s->kind != ST_RESBLOCK) continue;
        size_t nc = b * s->cin * hw, nf = b * (size_t)s->cf * hw;
        if (ckpt) {
            s->h1 = gH;
            if (s->heads) {
                s->qkv = rqkv;
                s->att_save = rsave;
                s->att = ratt;
                s->y1 = ry1;
            }
        } else if (train) {
            if (packed) {
                s->h1 = gH;
                s->h1p = take_bf16(&a, nf);
            } else {
                s->h1 = take(&a, nf);
            }
            if (s->heads) {
                s->qkv = take(&a, 3 * nc);
                s->att_save = take(&a, attention_save_floats(B, (int)hw, s->heads));
                s->att = take(&a, nc);
                s->y1 = take(&a, nc);
            }
        } else {
            s->h1 = gA;
            if (s->heads) {
                s->qkv = gK;
                s->att_save = esave;
                s->att = gA;
                s->y1 = gB;
            }
        }
    }
    if (base) {
        bf->x = x;
        bf->mean = mean;
        bf->rstd = rstd;
        bf->g0 = g0;
        bf->g1 = g1;
        bf->gA = gA;
        bf->gB = gB;
        bf->gy = gy;
        bf->gP = gP;
        bf->gQ = gQ;
        bf->gK = gK;
        bf->gX = gX;
        bf->gH = gH;
    }
    return a.used;
}

static size_t arena_floats_of(const DcaeConfig *c, int B, int H, int W, int train, const char *who) {
    dcae_config_check(c);
    check_hw(c, H, W);
    if (B < 1) lola_die("%s: batch %d, must be >= 1", who, B);
    ParamTable t = {0};
    DcaeStage *st = LOLA_NEW(DcaeStage, max_stages(c));
    Builder bd = {c, &t, st, 0, 0};
    int n_enc = build(&bd);
    size_t n = plan_arena(c, st, bd.n, n_enc, NULL, B, H, W, train, NULL);
    free(st);
    ptable_free(&t);
    return n;
}

size_t dcae_arena_floats(const DcaeConfig *c, int B, int H, int W) {
    return arena_floats_of(c, B, H, W, 1, "dcae_arena_floats");
}

size_t dcae_eval_arena_floats(const DcaeConfig *c, int B, int H, int W) {
    return arena_floats_of(c, B, H, W, 0, "dcae_eval_arena_floats");
}

// Lays out the arena for (B, H, W) in the training (train = 1) or inference layout.
static void reserve(Dcae *m, int B, int H, int W, int train) {
    if (B < 1) lola_die("dcae_reserve: batch %d, must be >= 1", B);
    check_hw(&m->cfg, H, W);
    const int bf16 = train && nn_bf16_activations();
    if (m->arena && m->B == B && m->H == H && m->W == W && m->arena_train == train && m->arena_bf16 == bf16) return;
    if (!m->bufs) m->bufs = LOLA_NEW(DcaeBufs, 1);
    size_t need = plan_arena(&m->cfg, m->stages, m->n_stages, m->n_enc, NULL, B, H, W, train, NULL);
    if (!m->arena || need > m->arena_floats) { // grow only: a smaller need re-plans in place
        if (m->arena) nn_free(m->arena);
        m->arena = nn_alloc(need);
        m->arena_floats = need;
    }
    plan_arena(&m->cfg, m->stages, m->n_stages, m->n_enc, m->bufs, B, H, W, train, m->arena);
    m->B = B;
    m->H = H;
    m->W = W;
    m->arena_train = train;
    m->arena_bf16 = bf16;
    m->have_forward = 0;
}

void dcae_reserve(Dcae *m, int B, int H, int W) { reserve(m, B, H, W, 1); }

void dcae_print_memory(const DcaeConfig *c, int B, int H, int W, FILE *out) {
    const double mib = 1.0 / (1024.0 * 1024.0);
    double p = (double)dcae_param_count(c);
    size_t a1 = dcae_arena_floats(c, 1, H, W), aB = dcae_arena_floats(c, B, H, W);
    size_t e1 = dcae_eval_arena_floats(c, 1, H, W), eB = dcae_eval_arena_floats(c, B, H, W);
    fprintf(out, "dcae memory at %d x %d: params %.1f MiB, grads %.1f MiB, activations %.1f MiB/sample, "
                 "%.1f MiB for batch %d (inference: %.1f MiB/sample, %.1f MiB)\n",
            H, W, p * 4.0 * mib, p * 4.0 * mib, a1 * 4.0 * mib, aB * 4.0 * mib, B, e1 * 4.0 * mib, eB * 4.0 * mib);
}

// ------------------------------------------------------------------------------------------------
// Forward

static float *P(const Dcae *m, int row) { return m->params + m->table.rows[row].offset; }
static float *G(const Dcae *m, int row) { return m->grads + m->table.rows[row].offset; }

// d = Dropout(SiLU(h1)) with the per-sample keep decisions of dcae.h, or d = SiLU(h1) without
// dropout. The fused op keeps no mask: the backward draws the same decisions again (nn.h; on the
// CPU bit-identical to SiLU then dropout). d and h1 distinct, (B, cf, N).
static uint64_t sample_seed(const DcaeStage *s, uint64_t seed, uint64_t first_sample, int b) {
    // sample b draws from rng_hash(rng_hash(seed, block), first_sample + b), so a sample's mask does
    // not depend on its index within the (rank-local) batch (train.h)
    return rng_hash(rng_hash(seed, (uint64_t)s->block), first_sample + (uint64_t)b);
}
static void ffn_act(const Dcae *m, const DcaeStage *s, float *d, const float *h1, int B, int N, int dropout_on,
                    uint64_t seed, uint64_t first_sample) {
    const size_t n1 = (size_t)s->cf * N;
    if (!dropout_on) {
        silu_forward(d, h1, (size_t)B * n1);
        return;
    }
    for (int b = 0; b < B; b++)
        silu_dropout_forward(d + b * n1, h1 + b * n1, n1, m->cfg.dropout, sample_seed(s, seed, first_sample, b));
}
// dh1 (=) from dd through ffn_act; all three distinct.
static void ffn_act_backward(const Dcae *m, const DcaeStage *s, float *dh1, const float *dd, const float *h1, int B,
                             int N, int dropout_on, uint64_t seed, uint64_t first_sample) {
    const size_t n1 = (size_t)s->cf * N;
    if (!dropout_on) {
        silu_backward(dh1, dd, h1, (size_t)B * n1);
        return;
    }
    for (int b = 0; b < B; b++)
        silu_dropout_backward(dh1 + b * n1, dd + b * n1, h1 + b * n1, n1, m->cfg.dropout,
                              sample_seed(s, seed, first_sample, b));
}

// The front of a ResBlock: h1 = conv1(LN(x) [+ MHA(LN(x))]) into s->h1, the attention tensors
// into s->qkv, s->att_save, s->att, s->y1; ln in gy (with mean, rstd). Run by the forward and,
// with checkpointing, again by the backward on the same input (bit-identical results).
static void resblock_front(Dcae *m, DcaeStage *s, const float *x, int B, int h, int w) {
    DcaeBufs *bf = m->bufs;
    const int C = s->cin, cf = s->cf, N = h * w, k = s->k;
    const size_t nc = (size_t)B * C * N;
    float *ln = bf->gy;
    layernorm_channels_forward(ln, bf->mean, bf->rstd, x, B, C, N, m->cfg.norm_eps);
    const float *y = ln;
    if (s->heads) {
        const int M = B * N, dh = C / s->heads;
        transpose_bcn(bf->gP, ln, B, C, N);                                     // (B, N, C) tokens
        linear_forward(s->qkv, bf->gP, P(m, s->qkv_w), P(m, s->qkv_b), M, C, 3 * C);
        attention_forward(s->att, s->att_save, s->qkv, B, N, s->heads, dh);
        linear_forward(bf->gQ, s->att, P(m, s->proj_w), P(m, s->proj_b), M, C, C);
        transpose_bcn(s->y1, bf->gQ, B, N, C);                                  // back to (B, C, N)
        nn_add(s->y1, s->y1, ln, nc);                                            // Residual(attn)
        y = s->y1;
    }
    conv2d_forward(s->h1, y, P(m, s->w), P(m, s->b), B, C, cf, h, w, k);
}

// out = x + FFN(LN(x) [+ MHA(LN(x))]); keeps the tensors of the activation plan (top of this file).
static void resblock_forward(Dcae *m, DcaeStage *s, const float *x, int B, int h, int w, DcaeMode mode,
                             uint64_t seed, uint64_t first_sample) {
    DcaeBufs *bf = m->bufs;
    const int C = s->cin, cf = s->cf, N = h * w, k = s->k;
    const size_t nc = (size_t)B * C * N;
    resblock_front(m, s, x, B, h, w);
    if (s->h1p) nn_pack_bf16(s->h1p, s->h1, (size_t)B * cf * N);
    ffn_act(m, s, bf->gB, s->h1, B, N, mode == DCAE_TRAIN && m->cfg.dropout > 0.0f, seed, first_sample);
    conv2d_forward(s->out, bf->gB, P(m, s->w2), P(m, s->b2), B, cf, C, h, w, k);
    nn_add(s->out, s->out, x, nc);
}

static void stage_forward(Dcae *m, int i, const float *in, DcaeMode mode, uint64_t seed, uint64_t first_sample) {
    DcaeStage *s = &m->stages[i];
    const int B = m->B, h = m->H >> s->lin, w = m->W >> s->lin;
    switch (s->kind) {
    case ST_CONV:
        conv2d_forward(s->out, in, P(m, s->w), P(m, s->b), B, s->cin, s->cout, h, w, s->k);
        break;
    case ST_UNSHUFFLE:
        pixel_unshuffle(s->out, in, B, s->cin, h, w, 2);
        break;
    case ST_SHUFFLE:
        pixel_shuffle(s->out, in, B, s->cout, h, w, 2);
        break;
    case ST_RESBLOCK:
        resblock_forward(m, s, in, B, h, w, mode, seed, first_sample);
        break;
    case ST_SAT:
        saturation_forward(s->out, in, B, s->cin, h * w, m->cfg.saturation);
        break;
    }
}

static const float *stage_input(const Dcae *m, int i) { return i == 0 ? m->bufs->x : m->stages[i - 1].out; }

static size_t stage_out_floats(const Dcae *m, const DcaeStage *s) {
    return (size_t)m->B * s->cout * (size_t)(m->H >> s->lout) * (size_t)(m->W >> s->lout);
}

// Stage i's output as kept for the backward, in fp32: the stage's own buffer, or its bf16 copy
// unpacked into dst (bf16 storage). Dies when the training layout did not keep it.
static const float *kept_output(const Dcae *m, int i, float *dst) {
    const DcaeStage *s = &m->stages[i];
    if (!s->saved) lola_die("dcae: internal error, stage %d output is not kept", i);
    if (!s->outp) return s->out;
    nn_unpack_bf16(dst, s->outp, stage_out_floats(m, s));
    return dst;
}

void dcae_forward(Dcae *m, const float *x, int B, int H, int W, DcaeMode mode, uint64_t seed,
                  uint64_t first_sample) {
    reserve(m, B, H, W, 1);
    nn_copy(m->bufs->x, x, (size_t)B * m->cfg.pix_channels * H * W);
    for (int i = 0; i < m->n_stages; i++) {
        stage_forward(m, i, stage_input(m, i), mode, seed, first_sample);
        const DcaeStage *s = &m->stages[i];
        if (s->outp) nn_pack_bf16(s->outp, s->out, stage_out_floats(m, s));
    }
    m->bufs->mode = mode;
    m->bufs->seed = seed;
    m->bufs->first_sample = first_sample;
    m->have_forward = 1;
}

float *dcae_latent(const Dcae *m) {
    if (!m->arena) lola_die("dcae_latent: no forward has run");
    return m->stages[m->n_enc - 1].out;
}

float *dcae_output(const Dcae *m) {
    if (!m->arena) lola_die("dcae_output: no forward has run");
    return m->stages[m->n_stages - 1].out;
}

void dcae_encode(Dcae *m, float *z, const float *x, int B, int H, int W) {
    reserve(m, B, H, W, 0);
    nn_copy(m->bufs->x, x, (size_t)B * m->cfg.pix_channels * H * W);
    for (int i = 0; i < m->n_enc; i++) stage_forward(m, i, stage_input(m, i), DCAE_EVAL, 0, 0);
    int L = m->cfg.levels;
    nn_copy(z, dcae_latent(m), (size_t)B * m->cfg.lat_channels * (H >> (L - 1)) * (W >> (L - 1)));
    m->have_forward = 0;
}

void dcae_decode(Dcae *m, float *y, const float *z, int B, int h, int w, int noisy, uint64_t seed) {
    int L = m->cfg.levels, H = h << (L - 1), W = w << (L - 1);
    reserve(m, B, H, W, 0);
    size_t nz = (size_t)B * m->cfg.lat_channels * h * w;
    float *zin = m->stages[m->n_enc - 1].out; // the decoder reads the SAT stage's output
    nn_copy(zin, z, nz);
    if (noisy && m->cfg.latent_noise > 0.0f) {
        nn_randn(m->bufs->g0, nz, seed); // g0: stage-sized scratch, free before the first stage
        nn_axpy(zin, m->cfg.latent_noise, m->bufs->g0, nz);
    }
    for (int i = m->n_enc; i < m->n_stages; i++) stage_forward(m, i, stage_input(m, i), DCAE_EVAL, 0, 0);
    nn_copy(y, dcae_output(m), (size_t)B * m->cfg.pix_channels * H * W);
    m->have_forward = 0;
}

// ------------------------------------------------------------------------------------------------
// Backward

// dx (=) from dout through the ResBlock; parameter grads (+=). dx must not alias dout.
// d, its dropout mask, ln (with mean, rstd) and tok are recomputed (activation plan).
static void resblock_backward(Dcae *m, DcaeStage *s, float *dx, const float *dout, const float *x, int B, int h,
                              int w) {
    DcaeBufs *bf = m->bufs;
    const int C = s->cin, cf = s->cf, N = h * w, k = s->k;
    const size_t nc = (size_t)B * C * N, nf = (size_t)B * cf * N;
    const int dropout_on = bf->mode == DCAE_TRAIN && m->cfg.dropout > 0.0f;
    if (m->cfg.checkpointing)
        resblock_front(m, s, x, B, h, w); // h1 (and qkv, att_save, att, y1) again, from the kept input
    else if (s->h1p)
        nn_unpack_bf16(s->h1, s->h1p, nf);
    // Buffers: d -> gB; dd -> T; dh1 -> gB (d is dead); ln again -> T (dd is dead); dln -> D. With h1
    // in gH (bf16 storage, checkpointing) T = gy and D = gH (h1 is dead by then), so gA is not
    // needed; with h1 kept in a buffer of its own, T = gA and D = gy.
    const int h1_scratch = s->h1 == bf->gH;
    float *T = h1_scratch ? bf->gy : bf->gA, *dln = h1_scratch ? bf->gH : bf->gy;
    ffn_act(m, s, bf->gB, s->h1, B, N, dropout_on, bf->seed, bf->first_sample);
    conv2d_backward(T, G(m, s->w2), G(m, s->b2), dout, bf->gB, P(m, s->w2), B, cf, C, h, w, k);
    ffn_act_backward(m, s, bf->gB, T, s->h1, B, N, dropout_on, bf->seed, bf->first_sample);
    float *ln = T;
    layernorm_channels_forward(ln, bf->mean, bf->rstd, x, B, C, N, m->cfg.norm_eps);
    // conv1: y -> h1 (y = ln, or y1 at attention levels)
    conv2d_backward(dln, G(m, s->w), G(m, s->b), bf->gB, s->heads ? s->y1 : ln, P(m, s->w), B, C, cf, h, w, k);
    if (s->heads) {
        // y1 = ln + (proj(attn(qkv(ln^T))))^T: dln already holds the identity branch.
        const int M = B * N, dh = C / s->heads;
        transpose_bcn(bf->gP, dln, B, C, N); // d proj-out (B, N, C)
        linear_backward(bf->gQ, G(m, s->proj_w), G(m, s->proj_b), bf->gP, s->att, P(m, s->proj_w), M, C, C);
        attention_backward(bf->gK, bf->gQ, s->qkv, s->att, s->att_save, B, N, s->heads, dh);
        transpose_bcn(bf->gP, ln, B, C, N); // tok = ln^T, recomputed
        linear_backward(bf->gQ, G(m, s->qkv_w), G(m, s->qkv_b), bf->gK, bf->gP, P(m, s->qkv_w), M, C, 3 * C);
        transpose_bcn(ln, bf->gQ, B, N, C); // d tok -> (B, C, N) (ln is dead)
        nn_add(dln, dln, ln, nc);
    }
    layernorm_channels_backward(dx, dln, x, bf->mean, bf->rstd, B, C, N);
    nn_add(dx, dx, dout, nc); // out = x + y
}

// dx (=, may be NULL) from dout through stage i.
static void stage_backward(Dcae *m, int i, float *dx, const float *dout) {
    DcaeStage *s = &m->stages[i];
    const int B = m->B, h = m->H >> s->lin, w = m->W >> s->lin;
    const float *in = !reads_input(s->kind) ? NULL : i == 0 ? m->bufs->x : kept_output(m, i - 1, m->bufs->gX);
    switch (s->kind) {
    case ST_CONV:
        conv2d_backward(dx, G(m, s->w), G(m, s->b), dout, in, P(m, s->w), B, s->cin, s->cout, h, w, s->k);
        break;
    case ST_UNSHUFFLE:
        if (dx) pixel_shuffle(dx, dout, B, s->cin, h / 2, w / 2, 2);
        break;
    case ST_SHUFFLE:
        if (dx) pixel_unshuffle(dx, dout, B, s->cout, 2 * h, 2 * w, 2);
        break;
    case ST_RESBLOCK:
        if (!dx) lola_die("dcae: internal error, ResBlock backward needs dx");
        resblock_backward(m, s, dx, dout, in, B, h, w);
        break;
    case ST_SAT:
        if (dx) saturation_backward(dx, dout, in, B, s->cin, h * w, m->cfg.saturation);
        break;
    }
}

// Gradient-sync hook (gradsync.h): stage i's parameter rows are written only by stage i's
// backward, which dcae_backward runs once, from the last stage to the first; so right after it
// they are final. Rows are announced one by one (a stage's rows are adjacent in the table, the
// announced ranges merge).
static void announce_stage_final(const Dcae *m, const DcaeStage *s) {
    const int rows[8] = {s->w, s->b, s->w2, s->b2, s->qkv_w, s->qkv_b, s->proj_w, s->proj_b};
    for (int r = 0; r < 8; r++) {
        if (rows[r] < 0) continue;
        const ParamSpec *p = &m->table.rows[rows[r]];
        gradsync_ready(m->grads, p->offset, p->offset + p->numel);
    }
}

void dcae_backward(Dcae *m, const float *dy, const float *dz, float *dx) {
    if (!m->have_forward) lola_die("dcae_backward: no stored dcae_forward (encode/decode do not keep one)");
    DcaeBufs *bf = m->bufs;
    const DcaeConfig *c = &m->cfg;
    int L = c->levels;
    size_t nz = (size_t)m->B * c->lat_channels * (m->H >> (L - 1)) * (m->W >> (L - 1));
    const float *dout = dy;
    float *ping[2] = {bf->g0, bf->g1};
    int p = 0;
    for (int i = m->n_stages - 1; i >= 0; i--) {
        float *dst = i == 0 ? dx : ping[p];
        stage_backward(m, i, dst, dout);
        announce_stage_final(m, &m->stages[i]);
        if (i == 0) break;
        if (i == m->n_enc && dz) nn_axpy(dst, 1.0f, dz, nz); // extra gradient on the latent
        dout = dst;
        p ^= 1;
    }
}

// ------------------------------------------------------------------------------------------------
// Debug view

DcaeStageInfo dcae_stage_info(const Dcae *m, int i) {
    if (i < 0 || i >= m->n_stages) lola_die("dcae_stage_info: stage %d out of range (%d stages)", i, m->n_stages);
    static const char *kinds[] = {"conv", "unshuffle", "shuffle", "resblock", "saturation"};
    const DcaeStage *s = &m->stages[i];
    DcaeStageInfo r = {kinds[s->kind], s->cin, s->cout, s->lin, s->lout, s->k, s->identity, s->heads, s->w, s->b};
    return r;
}

float *dcae_stage_output(const Dcae *m, int i) {
    if (i < 0 || i >= m->n_stages) lola_die("dcae_stage_output: stage %d out of range (%d stages)", i, m->n_stages);
    if (!m->arena || !m->have_forward) lola_die("dcae_stage_output: no stored dcae_forward (run dcae_forward first)");
    const DcaeStage *s = &m->stages[i];
    if (s->saved) return (float *)kept_output(m, i, s->out); // bf16 storage: unpacked into its g0/g1
    // Not kept: the next stage is a pixel (un)shuffle whose (kept) output is a permutation of it.
    const DcaeStage *n = i + 1 < m->n_stages ? &m->stages[i + 1] : NULL;
    if (!n || !n->saved || (n->kind != ST_UNSHUFFLE && n->kind != ST_SHUFFLE))
        lola_die("dcae_stage_output: internal error, stage %d output is neither kept nor recoverable", i);
    const int h = m->H >> n->lin, w = m->W >> n->lin; // the (un)shuffle's input size
    const float *nout = kept_output(m, i + 1, n->out); // n->out is the other one of g0/g1
    if (n->kind == ST_UNSHUFFLE)
        pixel_shuffle(s->out, nout, m->B, n->cin, h / 2, w / 2, 2);
    else
        pixel_unshuffle(s->out, nout, m->B, n->cout, 2 * h, 2 * w, 2);
    return s->out;
}
