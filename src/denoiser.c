// denoiser.c: see denoiser.h. Formulas from lola-spec.md 3.2-3.5 and 4.4-4.5 (lola/diffusion.py,
// lola/surrogate.py, azula ElucidatedDenoiser); the code is our own.
#include "denoiser.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gradsync.h"
#include "nn.h"

#define EMB_OMEGA 1e3f

// ---------------------------------------------------------------------------------------------
// Configuration, counts

void emu_config_lola(EmuConfig *c, EmuKind kind, const char *arch, int channels, int n_axes, const int *window,
                     int label_features) {
    memset(c, 0, sizeof *c);
    if (n_axes < 1 || n_axes > VIT_MAX_AXES) lola_die("emulator: %d window axes, need 1..%d", n_axes, VIT_MAX_AXES);
    ViTConfig *v = &c->vit;
    int patch = 1;
    if (strcmp(arch, "vit_large") == 0) {
        v->hid_channels = 1024;
        v->heads = 8;
    } else if (strcmp(arch, "vit_small") == 0) {
        v->hid_channels = 512;
        v->heads = 4;
    } else if (strcmp(arch, "vit_pixel") == 0) {
        if (kind != EMU_NS) lola_die("emulator: vit_pixel is a surrogate (NS) architecture only");
        v->hid_channels = 2048;
        v->heads = 16;
        patch = 16;
    } else {
        lola_die_hint("use vit_small, vit_large or vit_pixel", "unknown emulator architecture '%s'", arch);
    }
    c->kind = kind;
    c->emb_features = 256;
    c->label_features = label_features;
    c->schedule = schedule_default(SCHED_LOG_LOGIT);
    v->spatial = n_axes;
    for (int i = 0; i < n_axes; i++) {
        v->shape[i] = window[i];
        v->patch[i] = (i == 0) ? 1 : patch; // time is never patched: (1, 16, 16)
    }
    v->in_channels = v->cond_channels = v->out_channels = channels;
    v->hid_blocks = 16;
    v->ffn_factor = 4;
    v->mod_features = (kind == EMU_DM || label_features > 0) ? c->emb_features : 0;
    v->qk_norm = 1;
    v->rope = 1;
    v->dropout = 0.05f;
}

static void emu_config_check(const EmuConfig *c) {
    vit_config_check(&c->vit);
    if (c->label_features < 0) lola_die("emulator: label_features = %d < 0", c->label_features);
    if (c->emb_features < 4 || c->emb_features % 2) lola_die("emulator: emb_features = %d must be even and >= 4", c->emb_features);
    int want = (c->kind == EMU_DM || c->label_features > 0) ? c->emb_features : 0;
    if (c->vit.mod_features != want)
        lola_die("emulator: vit.mod_features = %d but the %s with label_features %d needs %d", c->vit.mod_features,
                 c->kind == EMU_DM ? "DM" : "NS", c->label_features, want);
}

uint64_t emu_param_count(const EmuConfig *c) {
    uint64_t M = (uint64_t)c->emb_features, L = (uint64_t)c->label_features;
    uint64_t n = vit_param_count(&c->vit);
    if (c->kind == EMU_DM) n += 2 * (M * M + M);      // time embedding
    if (L > 0) n += (L + 1) * M + M * M + M;           // label embedding
    return n;
}

double emu_forward_flops(const EmuConfig *c) {
    double M = c->emb_features, L = c->label_features;
    double f = vit_forward_flops(&c->vit);
    if (c->kind == EMU_DM) f += 2.0 * 2.0 * M * M;
    if (L > 0) f += 2.0 * (L * M + M * M);
    return f;
}

// ---------------------------------------------------------------------------------------------
// Arena: per-sample coefficient rows, embeddings, and (B, n) state buffers (n = C_in * N).

enum { K_ONE = 0, K_SIG, K_OBS, K_IN, K_OUT, K_NEGIN, K_MASKT, K_SKIP, K_ROWS };

struct EmuArena {
    int B, train;
    float *mem;
    size_t floats;
    float *coef, *cn, *enc, *t1, *t1s, *temb, *label, *l0, *l0s, *lemb, *mod, *dmod, *dh, *dhs;
    float *xt, *net_in, *eps, *tgt, *out, *tmp, *dout;
    const float *modp; // the mod fed to the ViT (mod, lemb or NULL)
    int have;          // 1: a DM loss forward is stored, 2: an NS loss forward
};

static float *take(float *base, size_t *off, size_t n) {
    float *r = base ? base + *off : NULL;
    *off += (n + 15) & ~(size_t)15;
    return r;
}

static size_t emu_plan(const EmuConfig *c, EmuArena *a, int B, int train, float *base) {
    size_t Bz = (size_t)B, M = (size_t)c->emb_features, L = (size_t)c->label_features;
    size_t n = (size_t)c->vit.in_channels * (size_t)vit_tokens(&c->vit), off = 0;
    EmuArena dummy;
    if (!a) a = &dummy;
    a->coef = take(base, &off, K_ROWS * Bz);
    a->cn = take(base, &off, Bz);
    a->enc = take(base, &off, Bz * M);
    a->t1 = take(base, &off, Bz * M);
    a->t1s = take(base, &off, Bz * M);
    a->temb = take(base, &off, Bz * M);
    a->label = take(base, &off, Bz * (L ? L : 1));
    a->l0 = take(base, &off, Bz * M);
    a->l0s = take(base, &off, Bz * M);
    a->lemb = take(base, &off, Bz * M);
    a->mod = take(base, &off, Bz * M);
    a->xt = take(base, &off, Bz * n);
    a->net_in = take(base, &off, Bz * n);
    a->eps = take(base, &off, Bz * n);
    a->tgt = take(base, &off, Bz * n);
    a->out = take(base, &off, Bz * n);
    a->tmp = take(base, &off, Bz * n);
    if (train) {
        a->dmod = take(base, &off, Bz * M);
        a->dh = take(base, &off, Bz * M);
        a->dhs = take(base, &off, Bz * M);
        a->dout = take(base, &off, Bz * n);
    } else {
        a->dmod = a->dh = a->dhs = a->dout = NULL;
    }
    return off;
}

static ViT vit_shell(const ViTConfig *c) { // enough of a ViT for vit_arena_floats
    ViT v;
    memset(&v, 0, sizeof v);
    v.cfg = *c;
    v.N = vit_tokens(c);
    return v;
}

double emu_train_bytes_per_sample(const EmuConfig *c) {
    emu_config_check(c);
    ViT v = vit_shell(&c->vit);
    double f1 = (double)(vit_arena_floats(&v, 1, 1) + emu_plan(c, NULL, 1, 1, NULL));
    double f2 = (double)(vit_arena_floats(&v, 2, 1) + emu_plan(c, NULL, 2, 1, NULL));
    return 4.0 * (f2 - f1);
}

size_t emu_arena_floats(const Emulator *m, int B, int train) {
    return vit_arena_floats(&m->vit, B, train) + emu_plan(&m->cfg, NULL, B, train, NULL);
}

void emu_reserve(Emulator *m, int B, int train) {
    if (B < 1) lola_die("emu_reserve: batch %d must be >= 1", B);
    vit_reserve(&m->vit, B, train);
    EmuArena *a = m->arena;
    if (a && a->B == B && a->train == train) return;
    if (a) {
        nn_free(a->mem);
        free(a);
    }
    a = LOLA_NEW(EmuArena, 1);
    a->B = B;
    a->train = train;
    a->floats = emu_plan(&m->cfg, a, B, train, NULL);
    a->mem = nn_alloc(a->floats);
    emu_plan(&m->cfg, a, B, train, a->mem);
    m->arena = a;
}

// ---------------------------------------------------------------------------------------------
// Construction

static size_t add_linear(ParamTable *t, const char *name, int64_t in, int64_t out, size_t *b) {
    char n[PARAM_NAME_MAX + 16];
    int64_t ws[2] = {out, in}, bs[1] = {out};
    snprintf(n, sizeof n, "%s.weight", name);
    size_t w = t->rows[ptable_add(t, n, 2, ws, INIT_TORCH_DEFAULT, in, out, 1.0f)].offset;
    snprintf(n, sizeof n, "%s.bias", name);
    *b = t->rows[ptable_add(t, n, 1, bs, INIT_TORCH_DEFAULT, in, out, 1.0f)].offset;
    return w;
}

void emu_build(Emulator *m, const EmuConfig *c) {
    emu_config_check(c);
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    int64_t M = c->emb_features, L = c->label_features;
    if (c->kind == EMU_DM) {
        vit_build(&m->vit, &c->vit, &m->table, "backbone.backbone.");
        m->te1_w = add_linear(&m->table, "backbone.time_embedding.1", M, M, &m->te1_b);
        m->te3_w = add_linear(&m->table, "backbone.time_embedding.3", M, M, &m->te3_b);
        if (L > 0) {
            m->le0_w = add_linear(&m->table, "backbone.label_embedding.0", L, M, &m->le0_b);
            m->le2_w = add_linear(&m->table, "backbone.label_embedding.2", M, M, &m->le2_b);
        }
    } else {
        vit_build(&m->vit, &c->vit, &m->table, "backbone.");
        if (L > 0) {
            m->le0_w = add_linear(&m->table, "label_embedding.0", L, M, &m->le0_b);
            m->le2_w = add_linear(&m->table, "label_embedding.2", M, M, &m->le2_b);
        }
    }
    if ((uint64_t)m->table.total != emu_param_count(c))
        lola_die("emulator: table holds %zu parameters, the formula says %llu (internal error)", m->table.total,
                 (unsigned long long)emu_param_count(c));
}

void emu_create(Emulator *m, const EmuConfig *c) {
    emu_build(m, c);
    m->params = nn_alloc(m->table.total);
    m->grads = nn_alloc(m->table.total);
}

void emu_destroy(Emulator *m) {
    if (m->arena) {
        nn_free(m->arena->mem);
        free(m->arena);
    }
    vit_destroy(&m->vit);
    if (m->params) nn_free(m->params);
    if (m->grads) nn_free(m->grads);
    ptable_free(&m->table);
    memset(m, 0, sizeof *m);
}

void emu_init_params(Emulator *m, uint64_t seed) {
    float *host = LOLA_NEW(float, m->table.total);
    Rng rng = rng_seed(seed);
    ptable_init(&m->table, host, &rng);
    vit_init_custom(&m->vit, host, &rng);
    nn_to_backend(m->params, host, m->table.total);
    free(host);
}

void emu_zero_grad(Emulator *m) { nn_zero(m->grads, m->table.total); }

// ---------------------------------------------------------------------------------------------
// Embeddings (lola-spec.md 3.5)

static EmuArena *arena_for(Emulator *m, int B, int train, const char *who) {
    EmuArena *a = m->arena;
    if (!a || a->B != B || (train && !a->train))
        lola_die("%s: no arena for batch %d%s (call emu_reserve first)", who, B, train ? " in train mode" : "");
    return a;
}

// mod = TimeMLP(SineEncoding(c_noise)) [DM] + LabelMLP(label) [if labels]; sets a->modp.
static void embed_forward(Emulator *m, EmuArena *a, const double *sigma, const float *label, int B) {
    const EmuConfig *c = &m->cfg;
    const float *P = m->params;
    int M = c->emb_features, L = c->label_features;
    if (L > 0) {
        if (!label) lola_die("emulator: the model has %d label features but label is NULL", L);
        nn_copy(a->label, label, (size_t)B * L);
        linear_forward(a->l0, a->label, P + m->le0_w, P + m->le0_b, B, L, M);
        silu_forward(a->l0s, a->l0, (size_t)B * M);
        linear_forward(a->lemb, a->l0s, P + m->le2_w, P + m->le2_b, B, M, M);
    }
    if (c->kind == EMU_DM) {
        float *cn = LOLA_NEW(float, (size_t)B);
        for (int b = 0; b < B; b++) cn[b] = (float)(10.0 * log(sigma[b])); // c_noise
        nn_to_backend(a->cn, cn, (size_t)B);
        free(cn);
        sine_encoding_forward(a->enc, a->cn, B, M, EMB_OMEGA);
        linear_forward(a->t1, a->enc, P + m->te1_w, P + m->te1_b, B, M, M);
        silu_forward(a->t1s, a->t1, (size_t)B * M);
        linear_forward(a->temb, a->t1s, P + m->te3_w, P + m->te3_b, B, M, M);
        if (L > 0) nn_add(a->mod, a->temb, a->lemb, (size_t)B * M);
        else nn_copy(a->mod, a->temb, (size_t)B * M);
        a->modp = a->mod;
    } else {
        a->modp = L > 0 ? a->lemb : NULL;
    }
}

// Backward of embed_forward from dmod (B, M) (parameter grads +=).
static void embed_backward(Emulator *m, EmuArena *a, const float *dmod, int B) {
    const EmuConfig *c = &m->cfg;
    const float *P = m->params;
    float *G = m->grads;
    int M = c->emb_features, L = c->label_features;
    if (c->kind == EMU_DM) {
        linear_backward(a->dhs, G + m->te3_w, G + m->te3_b, dmod, a->t1s, P + m->te3_w, B, M, M);
        silu_backward(a->dh, a->dhs, a->t1, (size_t)B * M);
        linear_backward(NULL, G + m->te1_w, G + m->te1_b, a->dh, a->enc, P + m->te1_w, B, M, M);
    }
    if (L > 0) {
        linear_backward(a->dhs, G + m->le2_w, G + m->le2_b, dmod, a->l0s, P + m->le2_w, B, M, M);
        silu_backward(a->dh, a->dhs, a->l0, (size_t)B * M);
        linear_backward(NULL, G + m->le0_w, G + m->le0_b, a->dh, a->label, P + m->le0_w, B, L, M);
    }
}

// Uploads the per-sample coefficient rows for sigma[B].
static void upload_coefs(EmuArena *a, const double *sigma, int B) {
    float *h = LOLA_NEW(float, (size_t)K_ROWS * B);
    for (int b = 0; b < B; b++) {
        double s = sigma[b];
        if (!(s > 0) || !isfinite(s)) lola_die("emulator: noise level sigma[%d] = %g must be finite and > 0", b, s);
        Precond p = edm_precond(s);
        h[K_ONE * B + b] = 1.0f;
        h[K_SIG * B + b] = (float)s;
        h[K_OBS * B + b] = (float)p.c_obs;
        h[K_IN * B + b] = (float)p.c_in;
        h[K_OUT * B + b] = (float)p.c_out;
        h[K_NEGIN * B + b] = (float)-p.c_in;
        h[K_MASKT * B + b] = (float)(s / (1.0 + p.c_obs)); // (sqrt(1+s^2) - 1)/s, stable
        h[K_SKIP * B + b] = (float)p.c_skip;
    }
    nn_to_backend(a->coef, h, (size_t)K_ROWS * B);
    free(h);
}

static size_t state_floats(const Emulator *m) {
    return (size_t)m->cfg.vit.in_channels * (size_t)m->vit.N;
}

static void check_mask(const Emulator *m, const float *mask, const char *who) {
    if (m->cfg.vit.cond_channels > 0 && !mask) lola_die("%s: the model is masked (cond channels) but mask is NULL", who);
    if (m->cfg.vit.cond_channels == 0 && mask) lola_die("%s: a mask was given to a model without cond channels", who);
    if (m->cfg.vit.cond_channels > 0 && m->cfg.vit.cond_channels != m->cfg.vit.in_channels)
        lola_die("%s: cond channels (%d) must equal the state channels (%d): the mask has the state's shape", who,
                 m->cfg.vit.cond_channels, m->cfg.vit.in_channels);
}

// ---------------------------------------------------------------------------------------------
// DM

double emu_dm_loss(Emulator *m, const float *x, const float *mask, const float *label, const double *sigma,
                   const float *eps, uint64_t noise_seed, int B, int train, uint64_t dropout_seed,
                   uint64_t first_sample) {
    if (m->cfg.kind != EMU_DM) lola_die("emu_dm_loss: the emulator is not a diffusion model");
    check_mask(m, mask, "emu_dm_loss");
    EmuArena *a = arena_for(m, B, train, "emu_dm_loss");
    size_t n = state_floats(m), Bn = (size_t)B * n;
    const float *K = a->coef;
    upload_coefs(a, sigma, B);
    if (eps) nn_copy(a->eps, eps, Bn);
    else nn_randn(a->eps, Bn, noise_seed);
    // x_t = x + s eps; masked: sqrt(1 + s^2) x
    nn_rows_axpby(a->xt, K + K_ONE * B, x, K + K_SIG * B, a->eps, B, n);
    if (mask) {
        nn_rows_axpby(a->tmp, K + K_OBS * B, x, NULL, NULL, B, n);
        nn_where(a->xt, mask, a->tmp, a->xt, Bn);
    }
    nn_rows_axpby(a->net_in, K + K_IN * B, a->xt, NULL, NULL, B, n);
    embed_forward(m, a, sigma, label, B);
    vit_forward(&m->vit, m->params, a->out, a->net_in, mask, a->modp, B, train, dropout_seed, first_sample);
    // F-objective target (see denoiser.h)
    nn_rows_axpby(a->tgt, K + K_OUT * B, x, K + K_NEGIN * B, a->eps, B, n);
    if (mask) {
        nn_rows_axpby(a->tmp, K + K_MASKT * B, x, NULL, NULL, B, n);
        nn_where(a->tgt, mask, a->tmp, a->tgt, Bn);
    }
    a->have = train ? 1 : 0;
    return mse_loss(NULL, a->out, a->tgt, Bn, 1.0f);
}

void emu_dm_backward(Emulator *m, float grad_scale) {
    EmuArena *a = m->arena;
    if (!a || a->have != 1) lola_die("emu_dm_backward: needs a preceding emu_dm_loss with train = 1");
    int B = a->B, M = m->cfg.emb_features;
    size_t Bn = (size_t)B * state_floats(m);
    mse_loss(a->dout, a->out, a->tgt, Bn, grad_scale);
    vit_backward(&m->vit, m->params, m->grads, M > 0 ? a->dmod : NULL, NULL, a->dout, B);
    embed_backward(m, a, a->dmod, B);
    // Gradient-sync hook (gradsync.h): the ViT announced its own rows; the time/label embeddings
    // (the rows after the ViT) consume dmod of every block and are final only now.
    gradsync_ready(m->grads, m->vit.first + m->vit.count, m->table.total);
    a->have = 0;
}

void emu_dm_last_mean(Emulator *m, float *mean) {
    EmuArena *a = m->arena;
    if (!a) lola_die("emu_dm_last_mean: no forward yet");
    nn_rows_axpby(mean, a->coef + K_SKIP * a->B, a->xt, a->coef + K_OUT * a->B, a->out, a->B, state_floats(m));
}

void emu_dm_denoise(Emulator *m, float *mean, const float *x_t, const float *mask, const float *y,
                    const float *label, const double *sigma, int B) {
    if (m->cfg.kind != EMU_DM) lola_die("emu_dm_denoise: the emulator is not a diffusion model");
    check_mask(m, mask, "emu_dm_denoise");
    if (mask && !y) lola_die("emu_dm_denoise: a mask needs the observation y");
    EmuArena *a = arena_for(m, B, 0, "emu_dm_denoise");
    size_t n = state_floats(m), Bn = (size_t)B * n;
    const float *K = a->coef;
    upload_coefs(a, sigma, B);
    nn_copy(a->xt, x_t, Bn);
    if (mask) {
        nn_rows_axpby(a->tmp, K + K_OBS * B, y, NULL, NULL, B, n);
        nn_where(a->xt, mask, a->tmp, a->xt, Bn);
    }
    nn_rows_axpby(a->net_in, K + K_IN * B, a->xt, NULL, NULL, B, n);
    embed_forward(m, a, sigma, label, B);
    vit_forward(&m->vit, m->params, a->out, a->net_in, mask, a->modp, B, 0, 0, 0);
    nn_rows_axpby(mean, K + K_SKIP * B, a->xt, K + K_OUT * B, a->out, B, n);
    if (mask) nn_where(mean, mask, y, mean, Bn);
    a->have = 0;
}

void emu_denoise_fn(void *ctx, float *mean, const float *x_t, double t, double sigma) {
    EmuDenoiseCtx *c = (EmuDenoiseCtx *)ctx;
    double *s = LOLA_NEW(double, (size_t)c->B);
    for (int b = 0; b < c->B; b++) s[b] = sigma;
    emu_dm_denoise(c->m, mean, x_t, c->mask, c->y, c->label, s, c->B);
    free(s);
}

// ---------------------------------------------------------------------------------------------
// NS

double emu_ns_loss(Emulator *m, const float *x, const float *mask, const float *label, int B, int train,
                   uint64_t dropout_seed, uint64_t first_sample) {
    if (m->cfg.kind != EMU_NS) lola_die("emu_ns_loss: the emulator is not a neural solver");
    check_mask(m, mask, "emu_ns_loss");
    EmuArena *a = arena_for(m, B, train, "emu_ns_loss");
    size_t Bn = (size_t)B * state_floats(m);
    if (mask) nn_where(a->net_in, mask, x, NULL, Bn); // x * mask
    else nn_copy(a->net_in, x, Bn);
    nn_copy(a->tgt, x, Bn);
    embed_forward(m, a, NULL, label, B);
    vit_forward(&m->vit, m->params, a->out, a->net_in, mask, a->modp, B, train, dropout_seed, first_sample);
    a->have = train ? 2 : 0;
    return mse_loss(NULL, a->out, a->tgt, Bn, 1.0f);
}

void emu_ns_backward(Emulator *m, float grad_scale) {
    EmuArena *a = m->arena;
    if (!a || a->have != 2) lola_die("emu_ns_backward: needs a preceding emu_ns_loss with train = 1");
    int B = a->B, M = m->cfg.vit.mod_features;
    size_t Bn = (size_t)B * state_floats(m);
    mse_loss(a->dout, a->out, a->tgt, Bn, grad_scale);
    vit_backward(&m->vit, m->params, m->grads, M > 0 ? a->dmod : NULL, NULL, a->dout, B);
    if (m->cfg.label_features > 0) embed_backward(m, a, a->dmod, B);
    gradsync_ready(m->grads, m->vit.first + m->vit.count, m->table.total); // label embedding (as in DM)
    a->have = 0;
}

const float *emu_ns_last_output(const Emulator *m) {
    if (!m->arena) lola_die("emu_ns_last_output: no forward yet");
    return m->arena->out;
}

void emu_ns_predict(Emulator *m, float *out, const float *x, const float *mask, const float *label, int B) {
    if (m->cfg.kind != EMU_NS) lola_die("emu_ns_predict: the emulator is not a neural solver");
    check_mask(m, mask, "emu_ns_predict");
    EmuArena *a = arena_for(m, B, 0, "emu_ns_predict");
    size_t Bn = (size_t)B * state_floats(m);
    if (mask) nn_where(a->net_in, mask, x, NULL, Bn);
    else nn_copy(a->net_in, x, Bn);
    embed_forward(m, a, NULL, label, B);
    vit_forward(&m->vit, m->params, out, a->net_in, mask, a->modp, B, 0, 0, 0);
    a->have = 0;
}
