// test_vit.c: the ViT backbone, the diffusion model (DM) and the neural solver (NS) of
// src/vit.c + src/denoiser.c:
//   * exact parameter counts of lola-spec.md 4.3 / 10.2 (formula and parameter table), FLOPs
//     within 1 % of the spec's budget, activation memory per training sample;
//   * parity with the PyTorch mirror tests/torch_vit.py (fixture tests/fixtures/vit_tiny.bin,
//     itself checked against LoLa's own modules): every parameter by name, the denoiser mean,
//     the DM loss and every gradient, MaskedDenoiser inference, the NS output, loss and gradients;
//   * the F-objective equals DenoiserLoss's (mean - x)^2 / var form;
//   * central finite differences on a few parameters (RoPE theta included), with dropout on,
//     and for a label-free NS (learned (4, D) modulation);
//   * a short AB sampler run of the tiny DM through emu_denoise_fn;
//   * cfg.checkpointing: output, parameter and input gradients bit-identical to the default
//     layout, a smaller arena; vit_large memory per sample for both layouts.
// Tolerance rule for the parity checks: |c - ref| <= atol + rtol |ref| elementwise, with
// rtol = 2e-4 and atol = 2e-5 * max|ref| of the tensor (+1e-9); the fraction of this budget
// used by the worst element is printed. The reference is float64, ours float32.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "denoiser.h"
#include "diffusion.h"
#include "fixture.h"
#include "nn.h"
#include "test.h"

#define FIXTURE "tests/fixtures/vit_tiny.bin"
#define RTOL 2e-4
#define ATOL_REL 2e-5

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

// Budget fraction used by the worst element (see the rule above).
static double budget(const float *got, const float *ref, size_t n) {
    return fixture_budget(got, ref, n, ATOL_REL * max_abs(ref, n) + 1e-9, RTOL);
}

static FixTensor *need(Fixture *f, const char *name) {
    FixTensor *t = fixture_get(f, name);
    if (!t) {
        fprintf(stderr, "fixture %s lacks tensor '%s' (regenerate with python3 tests/torch_vit.py)\n", FIXTURE, name);
        exit(2);
    }
    return t;
}

static float *to_backend(const float *host, size_t n) {
    float *d = nn_alloc(n);
    nn_to_backend(d, host, n);
    return d;
}

static float *to_host(const float *dev, size_t n) {
    float *h = (float *)malloc(n * sizeof(float));
    nn_to_host(h, dev, n);
    return h;
}

// ---------------------------------------------------------------------------------------------
// Counts, FLOPs, memory

static void count_case(EmuKind kind, const char *arch, int C, int n_axes, const int *win, int label,
                       uint64_t expect, const char *what) {
    EmuConfig c;
    emu_config_lola(&c, kind, arch, C, n_axes, win, label);
    uint64_t f = emu_param_count(&c);
    CHECK(f == expect, "param count %s formula = %llu (expect %llu)", what, (unsigned long long)f,
          (unsigned long long)expect);
    Emulator m; // the table is built without allocating the parameters (any patch size)
    emu_build(&m, &c);
    CHECK(m.table.total == expect, "param count %s table = %zu", what, m.table.total);
    emu_destroy(&m);
}

static void test_counts(void) {
    int euler[3] = {5, 16, 16}, rb[3] = {5, 16, 4}, tgc[4] = {5, 8, 8, 8};
    int euler_pix[3] = {5, 512, 512}, rb_pix[3] = {5, 512, 128};
    count_case(EMU_DM, "vit_large", 64, 3, rb, 6, 222888512ull, "DM vit_large RB c64");
    count_case(EMU_NS, "vit_large", 64, 3, rb, 6, 222756928ull, "NS vit_large RB c64");
    count_case(EMU_DM, "vit_large", 64, 3, euler, 5, 222888256ull, "DM vit_large Euler c64");
    count_case(EMU_DM, "vit_large", 64, 4, tgc, 9, 223946048ull, "DM vit_large TGC c64");
    count_case(EMU_NS, "vit_large", 64, 4, tgc, 9, 223814464ull, "NS vit_large TGC c64");
    count_case(EMU_DM, "vit_large", 4, 3, euler, 5, 222703876ull, "DM vit_large Euler c4");
    count_case(EMU_DM, "vit_large", 16, 3, euler, 5, 222740752ull, "DM vit_large Euler c16");
    count_case(EMU_DM, "vit_large", 4, 3, rb, 6, 222704132ull, "DM vit_large RB c4");
    count_case(EMU_DM, "vit_large", 16, 3, rb, 6, 222741008ull, "DM vit_large RB c16");
    count_case(EMU_DM, "vit_large", 4, 4, tgc, 9, 223761668ull, "DM vit_large TGC c4");
    count_case(EMU_NS, "vit_large", 16, 3, rb, 6, 222609424ull, "NS vit_large RB c16");
    count_case(EMU_NS, "vit_large", 4, 4, tgc, 9, 223630084ull, "NS vit_large TGC c4");
    count_case(EMU_NS, "vit_pixel", 5, 3, euler_pix, 5, 860810240ull, "NS vit_pixel Euler");
    count_case(EMU_NS, "vit_pixel", 4, 3, rb_pix, 6, 859237376ull, "NS vit_pixel RB");
    // vit_small: the spec gives only ~60.95 M (c64)
    EmuConfig c;
    emu_config_lola(&c, EMU_DM, "vit_small", 64, 3, euler, 5);
    CHECK(fabs((double)emu_param_count(&c) - 60.95e6) < 0.01e6, "param count DM vit_small Euler c64 = %llu (~60.95 M)",
          (unsigned long long)emu_param_count(&c));
}

static void flops_case(EmuKind kind, const char *arch, int C, int n_axes, const int *win, int label, double expect,
                       const char *what) {
    EmuConfig c;
    emu_config_lola(&c, kind, arch, C, n_axes, win, label);
    double f = emu_forward_flops(&c) / 1e9;
    CHECK(fabs(f - expect) <= 0.01 * expect, "forward GFLOP per sample %s = %.2f (spec %.1f, within 1%%)", what, f,
          expect);
}

static void test_flops_memory(void) {
    int euler[3] = {5, 16, 16}, rb[3] = {5, 16, 4}, tgc[4] = {5, 8, 8, 8};
    flops_case(EMU_DM, "vit_large", 64, 3, euler, 5, 631.0, "DM vit_large Euler c64");
    flops_case(EMU_DM, "vit_large", 64, 3, rb, 6, 137.7, "DM vit_large RB c64");
    flops_case(EMU_DM, "vit_large", 64, 4, tgc, 9, 1482.0, "DM vit_large TGC c64");
    flops_case(EMU_NS, "vit_large", 64, 3, rb, 6, 137.7, "NS vit_large RB c64");
    flops_case(EMU_DM, "vit_small", 64, 3, euler, 5, 184.6, "DM vit_small Euler c64");
    flops_case(EMU_DM, "vit_small", 64, 3, rb, 6, 36.1, "DM vit_small RB c64");
    // Activation memory per training sample (fp32, this backend's attention save).
    EmuConfig ce, cr;
    emu_config_lola(&ce, EMU_DM, "vit_large", 64, 3, euler, 5);
    emu_config_lola(&cr, EMU_DM, "vit_large", 64, 3, rb, 6);
    double me = emu_train_bytes_per_sample(&ce) / (1 << 20), mr = emu_train_bytes_per_sample(&cr) / (1 << 20);
    printf("  activation memory per training sample (%s backend, fp32): DM vit_large Euler %.1f MiB, RB %.1f MiB\n",
           nn_backend_name(), me, mr);
    // Analytic: per block 11 N D floats (the matmul outputs qkv, att, y1, f1, f4 and the block
    // input; the elementwise tensors are recomputed in backward, vit.c "Activation plan") + the
    // attention save, plus ~17 N D of stem and scratch (s, last block output, R = dropout mask
    // overlay of 4, gt, F1 and F2 of 4 each, g0, ds).
    const EmuConfig *cs[2] = {&ce, &cr};
    double got[2] = {me, mr};
    for (int i = 0; i < 2; i++) {
        double N = vit_tokens(&cs[i]->vit), D = cs[i]->vit.hid_channels, H = cs[i]->vit.heads;
        double est = 4.0 * (16 * (11 * N * D + (double)attention_save_floats(1, (int)N, (int)H)) + 17 * N * D) / (1 << 20);
        CHECK(fabs(got[i] - est) <= 0.05 * est, "%s memory per sample %.0f MiB within 5%% of the analytic %.0f MiB",
              i ? "RB" : "Euler", got[i], est);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixture parity

// Loads every table row from "<prefix>param.<name>" (shapes must match, and the fixture must hold
// no other parameter). Returns the host copy of the parameters.
static float *load_params(Emulator *m, Fixture *f, const char *prefix) {
    float *host = (float *)calloc(m->table.total, sizeof(float));
    int missing = 0, badshape = 0, extra = 0;
    char name[256];
    for (int i = 0; i < m->table.n; i++) {
        ParamSpec *r = &m->table.rows[i];
        snprintf(name, sizeof name, "%sparam.%s", prefix, r->name);
        FixTensor *t = fixture_get(f, name);
        if (!t) {
            printf("  missing %s\n", name);
            missing++;
            continue;
        }
        int ok = t->ndim == r->ndim && t->numel == r->numel;
        for (int d = 0; ok && d < r->ndim; d++) ok = t->dims[d] == r->shape[d];
        if (!ok) {
            printf("  shape mismatch %s\n", name);
            badshape++;
            continue;
        }
        memcpy(host + r->offset, t->data, r->numel * sizeof(float));
    }
    size_t plen = strlen(prefix) + 6;
    int nfix = 0;
    for (int i = 0; i < f->n; i++)
        if (strncmp(f->t[i].name, prefix, strlen(prefix)) == 0 && strncmp(f->t[i].name + strlen(prefix), "param.", 6) == 0) {
            nfix++;
            if (ptable_find(&m->table, f->t[i].name + plen) < 0) {
                printf("  fixture parameter %s is not in our table\n", f->t[i].name);
                extra++;
            }
        }
    // state_dict order: the fixture lists parameters in PyTorch's order; ours must be the same.
    int order_ok = 1, k = 0;
    for (int i = 0; i < f->n && k < m->table.n; i++)
        if (strncmp(f->t[i].name, prefix, strlen(prefix)) == 0 && strncmp(f->t[i].name + strlen(prefix), "param.", 6) == 0)
            order_ok &= strcmp(f->t[i].name + plen, m->table.rows[k++].name) == 0;
    CHECK(!missing && !badshape && !extra && nfix == m->table.n,
          "%s parameters: all %d table rows found by name with equal shapes (fixture has %d)", prefix, m->table.n, nfix);
    CHECK(order_ok, "%s parameter rows are in PyTorch state_dict order", prefix);
    nn_to_backend(m->params, host, m->table.total);
    return host;
}

// Compares every parameter gradient with "<prefix>grad.<name>"; returns the worst budget.
static double check_grads(Emulator *m, Fixture *f, const char *prefix) {
    float *g = to_host(m->grads, m->table.total);
    double worst = 0;
    const char *worst_name = "";
    char name[256];
    int bad = 0;
    for (int i = 0; i < m->table.n; i++) {
        ParamSpec *r = &m->table.rows[i];
        snprintf(name, sizeof name, "%sgrad.%s", prefix, r->name);
        FixTensor *t = need(f, name);
        double b = budget(g + r->offset, t->data, r->numel);
        if (!(b <= 1.0)) {
            printf("  %s: budget %.3f\n", name, b);
            bad++;
        }
        if (!(b <= worst)) {
            worst = b;
            worst_name = r->name;
        }
    }
    CHECK(bad == 0, "%s every parameter gradient matches PyTorch (worst %.1f%% of budget, %s)", prefix, 100 * worst,
          worst_name);
    free(g);
    return worst;
}

typedef struct {
    int B, C, L, h, w, D, blocks, heads, M, label;
    uint64_t dm_params, ns_params;
} TinyCfg;

static TinyCfg tiny_cfg(Fixture *f) {
    FixTensor *t = need(f, "cfg");
    TinyCfg c;
    float *v = t->data;
    c.B = (int)v[0], c.C = (int)v[1], c.L = (int)v[2], c.h = (int)v[3], c.w = (int)v[4], c.D = (int)v[5];
    c.blocks = (int)v[6], c.heads = (int)v[7], c.M = (int)v[8], c.label = (int)v[9];
    c.dm_params = (uint64_t)v[10], c.ns_params = (uint64_t)v[11];
    return c;
}

static EmuConfig tiny_emu(const TinyCfg *t, EmuKind kind, int label) {
    int win[3] = {t->L, t->h, t->w};
    EmuConfig c;
    emu_config_lola(&c, kind, "vit_large", t->C, 3, win, label);
    c.emb_features = t->M;
    c.vit.hid_channels = t->D;
    c.vit.hid_blocks = t->blocks;
    c.vit.heads = t->heads;
    c.vit.mod_features = (kind == EMU_DM || label > 0) ? t->M : 0;
    c.vit.dropout = 0.0f; // the fixture has dropout disabled
    return c;
}

// Host DenoiserLoss in the (mean - x)^2 / var form from a denoiser mean.
static double mean_form_loss(const float *mean, const float *x, const float *sigma, int B, size_t n) {
    double s = 0;
    for (int b = 0; b < B; b++) {
        double var = edm_precond(sigma[b]).var;
        for (size_t i = 0; i < n; i++) {
            double d = (double)mean[(size_t)b * n + i] - x[(size_t)b * n + i];
            s += d * d / var;
        }
    }
    return s / ((double)B * n);
}

// Loss of the DM with the current params for fixed inputs (eval or a fixed dropout seed).
typedef struct {
    Emulator *m;
    const float *x, *mask, *label, *eps;
    const double *sigma;
    int B, train;
} DmCase;

static double dm_case_loss(DmCase *c) {
    return emu_dm_loss(c->m, c->x, c->mask, c->label, c->sigma, c->eps, 0, c->B, c->train, 77, 0);
}

// Central finite difference of the loss w.r.t. element idx of row `row`, compared with the
// analytic gradient g (host). Step h (relative to max(1, |p|) when rel).
static void fd_check(Emulator *m, double (*loss)(void *), void *ctx, const float *g, const char *row, size_t idx,
                     double h, const char *what) {
    int r = ptable_find(&m->table, row);
    if (r < 0) {
        CHECK(0, "fd %s: no row %s", what, row);
        return;
    }
    size_t off = m->table.rows[r].offset + idx;
    float p0;
    nn_to_host(&p0, m->params + off, 1);
    float pp = p0 + (float)h, pm = p0 - (float)h;
    nn_to_backend(m->params + off, &pp, 1);
    double lp = loss(ctx);
    nn_to_backend(m->params + off, &pm, 1);
    double lm = loss(ctx);
    nn_to_backend(m->params + off, &p0, 1);
    double fd = (lp - lm) / ((double)pp - (double)pm), an = g[off];
    double tol = 2e-2 * fabs(an) + 2e-5;
    CHECK(fabs(fd - an) <= tol, "finite difference %s %s[%zu]: fd %.6g analytic %.6g (|diff| %.2g, tol %.2g)", what,
          row, idx, fd, an, fabs(fd - an), tol);
}

static double dm_loss_cb(void *ctx) { return dm_case_loss((DmCase *)ctx); }

// Index of the largest |g| within a row (a well-conditioned FD target).
static size_t argmax_row(const Emulator *m, const float *g, const char *row) {
    int r = ptable_find(&m->table, row);
    if (r < 0) return 0;
    const ParamSpec *s = &m->table.rows[r];
    size_t best = 0;
    for (size_t i = 0; i < s->numel; i++)
        if (fabs(g[s->offset + i]) > fabs(g[s->offset + best])) best = i;
    return best;
}

static void test_dm(Fixture *f, const TinyCfg *t) {
    EmuConfig c = tiny_emu(t, EMU_DM, t->label);
    Emulator m;
    emu_create(&m, &c);
    CHECK(m.table.total == t->dm_params && emu_param_count(&c) == t->dm_params,
          "tiny DM parameter count %zu = PyTorch %llu", m.table.total, (unsigned long long)t->dm_params);
    float *host = load_params(&m, f, "dm.");
    int B = t->B;
    size_t n = (size_t)t->C * t->L * t->h * t->w, Bn = (size_t)B * n;
    FixTensor *fx = need(f, "dm.x"), *fm = need(f, "dm.mask"), *fl = need(f, "dm.label"), *fs = need(f, "dm.sigma"),
              *fe = need(f, "dm.eps"), *ft = need(f, "dm.t");
    float *x = to_backend(fx->data, Bn), *mask = to_backend(fm->data, Bn), *lab = to_backend(fl->data, (size_t)B * t->label);
    float *eps = to_backend(fe->data, Bn);
    double sigma[16];
    Schedule sch = schedule_default(SCHED_LOG_LOGIT);
    for (int b = 0; b < B; b++) {
        sigma[b] = fs->data[b];
        CHECK_CLOSE(schedule_sigma(&sch, ft->data[b]), sigma[b], 0, 1e-6, "log-logit sigma(t = %g) = fixture sigma", ft->data[b]);
    }
    emu_reserve(&m, B, 1);
    emu_zero_grad(&m);
    DmCase dc = {&m, x, mask, lab, eps, sigma, B, 0};
    double loss = emu_dm_loss(&m, x, mask, lab, sigma, eps, 0, B, 1, 0, 0); // dropout p = 0 here
    double ref = need(f, "dm.loss")->data[0];
    CHECK_CLOSE(loss, ref, 0, 2e-5, "DM loss (F-objective) %.7f = PyTorch DenoiserLoss %.7f", loss, ref);
    float *mean_d = nn_alloc(Bn);
    emu_dm_last_mean(&m, mean_d);
    float *mean = to_host(mean_d, Bn);
    FixTensor *fmean = need(f, "dm.mean");
    double bm = budget(mean, fmean->data, Bn);
    CHECK(bm <= 1.0, "DM denoiser mean matches PyTorch (%.1f%% of budget)", 100 * bm);
    double lmean = mean_form_loss(mean, fx->data, fs->data, B, n);
    CHECK_CLOSE(lmean, loss, 0, 1e-4, "mean-form loss mean((mean-x)^2/var) %.7f = F-objective %.7f", lmean, loss);
    emu_dm_backward(&m, 1.0f);
    check_grads(&m, f, "dm.");

    // grad_scale and accumulation: a second backward with scale 0.5 adds half again
    float *g1 = to_host(m.grads, m.table.total);
    emu_dm_loss(&m, x, mask, lab, sigma, eps, 0, B, 1, 0, 0);
    emu_dm_backward(&m, 0.5f);
    float *g2 = to_host(m.grads, m.table.total);
    double worst = 0;
    for (size_t i = 0; i < m.table.total; i++) worst = fmax(worst, fabs(g2[i] - 1.5f * g1[i]) / (1e-6 + fabs(1.5f * g1[i])));
    CHECK(worst < 1e-4, "gradients accumulate (+=) with grad_scale (max rel dev %.2g)", worst);
    free(g2);

    // Finite differences on the loss (dropout off), incl. RoPE theta of both blocks.
    const char *rows[] = {"backbone.backbone.blocks.0.theta", "backbone.backbone.blocks.1.theta",
                          "backbone.backbone.in_proj.weight", "backbone.backbone.positional_embedding.2.weight",
                          "backbone.backbone.blocks.0.ada_zero.2.bias", "backbone.backbone.blocks.1.msa.qkv_proj.weight",
                          "backbone.time_embedding.1.weight", "backbone.label_embedding.0.weight"};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        fd_check(&m, dm_loss_cb, &dc, g1, rows[i], argmax_row(&m, g1, rows[i]), 1e-2, "DM");

    // MaskedDenoiser inference at one shared sigma.
    FixTensor *fxt = need(f, "dm.infer.xt"), *fim = need(f, "dm.infer.mean");
    float *xt = to_backend(fxt->data, Bn), *y = nn_alloc(Bn), *im_d = nn_alloc(Bn);
    nn_where(y, mask, x, NULL, Bn);
    double s_inf[16];
    for (int b = 0; b < B; b++) s_inf[b] = need(f, "dm.infer.sigma")->data[b];
    emu_dm_denoise(&m, im_d, xt, mask, y, lab, s_inf, B);
    float *im = to_host(im_d, Bn);
    double bi = budget(im, fim->data, Bn);
    int exact = 1;
    for (size_t i = 0; i < Bn; i++)
        if (fm->data[i] != 0 && im[i] != fx->data[i]) exact = 0;
    CHECK(bi <= 1.0, "MaskedDenoiser inference mean matches PyTorch (%.1f%% of budget)", 100 * bi);
    CHECK(exact, "MaskedDenoiser returns the observation exactly on the mask");

    // Same inference through an eval-only arena gives the same numbers.
    emu_reserve(&m, B, 0);
    emu_dm_denoise(&m, im_d, xt, mask, y, lab, s_inf, B);
    float *im2 = to_host(im_d, Bn);
    CHECK(memcmp(im, im2, Bn * sizeof(float)) == 0, "eval arena (one block slot) gives bit-identical inference");
    CHECK(emu_arena_floats(&m, B, 0) < emu_arena_floats(&m, B, 1) / 2, "eval arena %zu floats < half the train arena %zu",
          emu_arena_floats(&m, B, 0), emu_arena_floats(&m, B, 1));

    // Dropout: the train forward differs from eval, is reproducible for a seed, and its
    // backward matches finite differences (same seed = same mask).
    Emulator md;
    EmuConfig cd = c;
    cd.vit.dropout = 0.3f;
    emu_create(&md, &cd);
    nn_to_backend(md.params, host, md.table.total);
    emu_reserve(&md, B, 1);
    DmCase dd = {&md, x, mask, lab, eps, sigma, B, 1};
    double l_eval = emu_dm_loss(&md, x, mask, lab, sigma, eps, 0, B, 0, 77, 0);
    double l_tr1 = dm_case_loss(&dd), l_tr2 = dm_case_loss(&dd);
    CHECK(l_tr1 != l_eval && l_tr1 == l_tr2, "dropout changes the train loss (%.6f vs eval %.6f) reproducibly", l_tr1, l_eval);
    emu_zero_grad(&md);
    dm_case_loss(&dd);
    emu_dm_backward(&md, 1.0f);
    float *gd = to_host(md.grads, md.table.total);
    const char *drows[] = {"backbone.backbone.blocks.0.ffn.0.weight", "backbone.backbone.blocks.1.theta",
                           "backbone.backbone.blocks.0.ffn.3.bias"};
    for (size_t i = 0; i < 3; i++) fd_check(&md, dm_loss_cb, &dd, gd, drows[i], argmax_row(&md, gd, drows[i]), 1e-2, "DM dropout 0.3");
    free(gd);
    emu_destroy(&md);

    // A short AB sampler run of the tiny DM, conditioned on the first frames.
    emu_reserve(&m, B, 0);
    SamplerConfig sc = sampler_default(SAMPLER_AB);
    float *xs = nn_alloc(Bn);
    sampler_init_state(xs, Bn, &sc, &sch, 5);
    EmuDenoiseCtx ctx = {&m, mask, y, lab, B};
    sampler_run(&sc, &sch, emu_denoise_fn, &ctx, xs, Bn, 9, NULL);
    float *xh = to_host(xs, Bn);
    double dev = 0;
    int finite = 1;
    for (size_t i = 0; i < Bn; i++) {
        finite &= isfinite(xh[i]);
        if (fm->data[i] != 0) dev = fmax(dev, fabs(xh[i] - fx->data[i]));
    }
    CHECK(finite && dev < 0.02, "AB-16 sampling with the tiny DM: finite, context frames within %.3g of y", dev);
    free(xh);
    nn_free(xs);

    free(g1);
    free(im);
    free(im2);
    free(mean);
    free(host);
    nn_free(mean_d);
    nn_free(xt);
    nn_free(y);
    nn_free(im_d);
    nn_free(x);
    nn_free(mask);
    nn_free(lab);
    nn_free(eps);
    emu_destroy(&m);
}

typedef struct {
    Emulator *m;
    const float *x, *mask, *label;
    int B;
} NsCase;

static double ns_loss_cb(void *ctx) {
    NsCase *c = (NsCase *)ctx;
    return emu_ns_loss(c->m, c->x, c->mask, c->label, c->B, 0, 0, 0);
}

static void test_ns(Fixture *f, const TinyCfg *t) {
    EmuConfig c = tiny_emu(t, EMU_NS, t->label);
    Emulator m;
    emu_create(&m, &c);
    CHECK(m.table.total == t->ns_params && emu_param_count(&c) == t->ns_params,
          "tiny NS parameter count %zu = PyTorch %llu", m.table.total, (unsigned long long)t->ns_params);
    float *host = load_params(&m, f, "ns.");
    int B = t->B;
    size_t n = (size_t)t->C * t->L * t->h * t->w, Bn = (size_t)B * n;
    float *x = to_backend(need(f, "ns.x")->data, Bn), *mask = to_backend(need(f, "ns.mask")->data, Bn);
    float *lab = to_backend(need(f, "ns.label")->data, (size_t)B * t->label);
    emu_reserve(&m, B, 1);
    emu_zero_grad(&m);
    double loss = emu_ns_loss(&m, x, mask, lab, B, 1, 0, 0);
    CHECK_CLOSE(loss, need(f, "ns.loss")->data[0], 0, 2e-5, "NS loss %.7f = PyTorch", loss);
    float *out = to_host(emu_ns_last_output(&m), Bn);
    double bo = budget(out, need(f, "ns.out")->data, Bn);
    CHECK(bo <= 1.0, "NS output matches PyTorch (%.1f%% of budget)", 100 * bo);
    emu_ns_backward(&m, 1.0f);
    check_grads(&m, f, "ns.");
    float *pred_d = nn_alloc(Bn);
    emu_ns_predict(&m, pred_d, x, mask, lab, B);
    float *pred = to_host(pred_d, Bn);
    CHECK(memcmp(pred, out, Bn * sizeof(float)) == 0, "emu_ns_predict equals the loss forward's output");
    free(pred);
    nn_free(pred_d);
    free(out);
    free(host);
    emu_destroy(&m);

    // Label-free NS: each block learns a (4, D) modulation (ada_zero parameter); FD check on it.
    EmuConfig c0 = tiny_emu(t, EMU_NS, 0);
    Emulator m0;
    emu_create(&m0, &c0);
    CHECK(m0.table.total == emu_param_count(&c0) && ptable_find(&m0.table, "backbone.blocks.0.ada_zero") >= 0 &&
              ptable_find(&m0.table, "backbone.blocks.0.ada_zero") < ptable_find(&m0.table, "backbone.blocks.0.theta"),
          "label-free NS: ada_zero (4, D) parameter registered before theta, count %zu", m0.table.total);
    emu_init_params(&m0, 3);
    emu_reserve(&m0, B, 1);
    emu_zero_grad(&m0);
    emu_ns_loss(&m0, x, mask, NULL, B, 1, 0, 0);
    emu_ns_backward(&m0, 1.0f);
    float *g0 = to_host(m0.grads, m0.table.total);
    NsCase nc = {&m0, x, mask, NULL, B};
    const char *rows[] = {"backbone.blocks.0.ada_zero", "backbone.blocks.1.theta", "backbone.out_proj.bias"};
    for (int i = 0; i < 3; i++) fd_check(&m0, ns_loss_cb, &nc, g0, rows[i], argmax_row(&m0, g0, rows[i]), 1e-2, "NS label-free");
    free(g0);
    emu_destroy(&m0);
    nn_free(x);
    nn_free(mask);
    nn_free(lab);
}

// Initialisation: theta rows have unit-direction columns with amplitudes in [0.01, 1]; the
// last modulation weight is 0.01 x the default bound.
static void test_init(const TinyCfg *t) {
    EmuConfig c = tiny_emu(t, EMU_DM, t->label);
    Emulator m;
    emu_create(&m, &c);
    emu_init_params(&m, 11);
    float *h = to_host(m.params, m.table.total);
    const ParamSpec *th = &m.table.rows[ptable_find(&m.table, "backbone.backbone.blocks.0.theta")];
    int S = (int)th->shape[0], H2 = (int)th->shape[1], ok = 1;
    for (int j = 0; j < H2; j++) {
        double n2 = 0;
        for (int k = 0; k < S; k++) n2 += (double)h[th->offset + (size_t)k * H2 + j] * h[th->offset + (size_t)k * H2 + j];
        ok &= sqrt(n2) >= 0.01 - 1e-6 && sqrt(n2) <= 1.0 + 1e-6;
    }
    CHECK(ok, "theta init: every column norm 100^-u in [0.01, 1]");
    const ParamSpec *a2 = &m.table.rows[ptable_find(&m.table, "backbone.backbone.blocks.0.ada_zero.2.weight")];
    double bound = 0.01 / sqrt((double)t->M);
    CHECK(max_abs(h + a2->offset, a2->numel) <= bound && max_abs(h + a2->offset, a2->numel) > 0.5 * bound,
          "ada_zero.2.weight init within 0.01 x U(+-1/sqrt(M)) (max %.3g, bound %.3g)", max_abs(h + a2->offset, a2->numel),
          bound);
    free(h);
    emu_destroy(&m);
}

// The ViT alone: input gradients dx and dmod of L = sum(out * w) against finite differences
// (dx is not used by training but serves guidance/VJP users; dmod feeds the embeddings).
typedef struct {
    ViT *v;
    float *params, *out, *x, *cond, *mod, *w;
    int B;
    size_t nout;
    int train;              // 1: training forward (dropout masks from seed, first)
    uint64_t seed, first;
} VitCase;

static double vit_case_loss(VitCase *c) {
    vit_forward(c->v, c->params, c->out, c->x, c->cond, c->mod, c->B, c->train, c->seed, c->first);
    float *o = to_host(c->out, c->nout), *w = to_host(c->w, c->nout);
    double s = 0;
    for (size_t i = 0; i < c->nout; i++) s += (double)o[i] * w[i];
    free(o);
    free(w);
    return s;
}

static void fd_input(VitCase *c, float *buf, size_t idx, double g, const char *what) {
    float v0, vp, vm;
    nn_to_host(&v0, buf + idx, 1);
    vp = v0 + 1e-2f;
    vm = v0 - 1e-2f;
    nn_to_backend(buf + idx, &vp, 1);
    double lp = vit_case_loss(c);
    nn_to_backend(buf + idx, &vm, 1);
    double lm = vit_case_loss(c);
    nn_to_backend(buf + idx, &v0, 1);
    double fd = (lp - lm) / ((double)vp - vm), tol = 2e-2 * fabs(g) + 1e-4;
    CHECK(fabs(fd - g) <= tol, "finite difference ViT %s[%zu]: fd %.6g analytic %.6g", what, idx, fd, g);
}

static void test_vit_inputs(void) {
    ViTConfig c;
    memset(&c, 0, sizeof c);
    c.spatial = 3;
    c.shape[0] = 3, c.shape[1] = 4, c.shape[2] = 2;
    c.patch[0] = c.patch[1] = c.patch[2] = 1;
    c.in_channels = 2, c.cond_channels = 1, c.out_channels = 3;
    c.hid_channels = 16, c.hid_blocks = 2, c.heads = 2, c.ffn_factor = 4, c.mod_features = 8;
    c.qk_norm = 1, c.rope = 1;
    ParamTable t = {0};
    ViT v;
    vit_build(&v, &c, &t, "");
    CHECK(t.total == vit_param_count(&c) && v.first == 0 && v.count == t.total, "bare ViT table: %zu parameters", t.total);
    float *host = (float *)calloc(t.total, sizeof(float));
    Rng r = rng_seed(5);
    ptable_init(&t, host, &r);
    vit_init_custom(&v, host, &r);
    for (int i = 0; i < t.n; i++) // O(1) modulation so every path carries gradient
        if (strstr(t.rows[i].name, "ada_zero.2.weight"))
            for (size_t k = 0; k < t.rows[i].numel; k++) host[t.rows[i].offset + k] *= 30.0f;
    int B = 2, N = vit_tokens(&c);
    size_t nx = (size_t)B * 2 * N, nc = (size_t)B * N, nm = (size_t)B * 8, no = (size_t)B * 3 * N;
    float *hx = (float *)malloc(nx * sizeof(float)), *hc = (float *)malloc(nc * sizeof(float));
    float *hm = (float *)malloc(nm * sizeof(float)), *hw = (float *)malloc(no * sizeof(float));
    for (size_t i = 0; i < nx; i++) hx[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < nc; i++) hc[i] = (float)(rng_uniform(&r) < 0.5);
    for (size_t i = 0; i < nm; i++) hm[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < no; i++) hw[i] = (float)rng_normal(&r);
    VitCase vc = {&v, to_backend(host, t.total), nn_alloc(no), to_backend(hx, nx), to_backend(hc, nc), to_backend(hm, nm),
                  to_backend(hw, no), B, no, 0, 0, 0};
    float *grads = nn_alloc(t.total), *dmod = nn_alloc(nm), *dx = nn_alloc(nx);
    vit_reserve(&v, B, 1);
    vit_forward(&v, vc.params, vc.out, vc.x, vc.cond, vc.mod, B, 1, 0, 0);
    vit_backward(&v, vc.params, grads, dmod, dx, vc.w, B);
    float *gdx = to_host(dx, nx), *gdm = to_host(dmod, nm);
    size_t ix[3] = {0, (size_t)N + 5, nx - 1}, im[3] = {0, 5, nm - 1};
    for (int i = 0; i < 3; i++) fd_input(&vc, vc.x, ix[i], gdx[ix[i]], "dx");
    for (int i = 0; i < 3; i++) fd_input(&vc, vc.mod, im[i], gdm[im[i]], "dmod");
    // Per-sample FFN dropout masks: sample 1 of a B = 2 batch at stream position 40 == that sample
    // alone at position 41 (a second rank's view), != alone at 40. (Arenas re-planned with masks.)
    v.cfg.dropout = 0.3f;
    vit_reserve(&v, 1, 1);
    vit_reserve(&v, B, 1);
    vit_forward(&v, vc.params, vc.out, vc.x, vc.cond, vc.mod, B, 1, 9, 40);
    float *o2 = to_host(vc.out, no);
    vit_reserve(&v, 1, 1);
    vit_forward(&v, vc.params, vc.out, vc.x + 2 * N, vc.cond + N, vc.mod + 8, 1, 1, 9, 41);
    float *o41 = to_host(vc.out, no / 2);
    vit_forward(&v, vc.params, vc.out, vc.x + 2 * N, vc.cond + N, vc.mod + 8, 1, 1, 9, 40);
    float *o40 = to_host(vc.out, no / 2);
    double bs = budget(o41, o2 + no / 2, no / 2), d40 = 0;
    for (size_t i = 0; i < no / 2; i++) d40 = fmax(d40, fabs(o40[i] - o41[i]));
    CHECK(bs <= 1.0 && d40 > 1e-3, "dropout 0.3: sample 1 of B = 2 at position 40 == alone at 41 (budget %.1f%%), "
          "!= alone at 40 (max diff %.3g)", 100 * bs, d40);
    // With dropout on, vit_backward recomputes the FFN masks (and the other elementwise tensors)
    // from the forward's seed: the gradients must still be those of the masked forward.
    vit_reserve(&v, B, 1);
    vc.train = 1, vc.seed = 9, vc.first = 40;
    vit_forward(&v, vc.params, vc.out, vc.x, vc.cond, vc.mod, B, 1, vc.seed, vc.first);
    vit_backward(&v, vc.params, grads, dmod, dx, vc.w, B);
    free(gdx), free(gdm);
    gdx = to_host(dx, nx), gdm = to_host(dmod, nm);
    for (int i = 0; i < 3; i++) fd_input(&vc, vc.x, ix[i], gdx[ix[i]], "dx (dropout 0.3)");
    for (int i = 0; i < 3; i++) fd_input(&vc, vc.mod, im[i], gdm[im[i]], "dmod (dropout 0.3)");
    free(o2);
    free(o41);
    free(o40);
    free(gdx);
    free(gdm);
    free(hx);
    free(hc);
    free(hm);
    free(hw);
    free(host);
    nn_free(vc.params);
    nn_free(vc.out);
    nn_free(vc.x);
    nn_free(vc.cond);
    nn_free(vc.mod);
    nn_free(vc.w);
    nn_free(grads);
    nn_free(dmod);
    nn_free(dx);
    vit_destroy(&v);
    ptable_free(&t);
}

// cfg.checkpointing (vit.c "Activation plan"): the checkpointed training layout keeps only each
// block's input and modulation and reruns the block in vit_backward with the same ops, so the
// forward output, every parameter gradient (accumulated onto a non-zero buffer) and the input
// gradients dx, dmod must equal the default layout's bit for bit, over two steps (the shared
// buffers reused), with dropout, qk-norm and RoPE on; the arena must be strictly smaller.
static void ckpt_case(int M, int qk_norm, int rope, float dropout, int blocks, int B, const char *what) {
    ViTConfig c;
    memset(&c, 0, sizeof c);
    c.spatial = 3;
    c.shape[0] = 3, c.shape[1] = 4, c.shape[2] = 2;
    c.patch[0] = c.patch[1] = c.patch[2] = 1;
    c.in_channels = 2, c.cond_channels = 2, c.out_channels = 2;
    c.hid_channels = 16, c.hid_blocks = blocks, c.heads = 2, c.ffn_factor = 4, c.mod_features = M;
    c.qk_norm = qk_norm, c.rope = rope, c.dropout = dropout;
    ParamTable t = {0};
    ViT v;
    vit_build(&v, &c, &t, "");
    float *host = (float *)calloc(t.total, sizeof(float)), *g0 = (float *)malloc(t.total * sizeof(float));
    Rng r = rng_seed(77);
    ptable_init(&t, host, &r);
    vit_init_custom(&v, host, &r);
    for (int i = 0; i < t.n; i++) // O(1) modulation so every path carries gradient
        if (strstr(t.rows[i].name, "ada_zero.2.weight") || (M == 0 && strstr(t.rows[i].name, "ada_zero")))
            for (size_t k = 0; k < t.rows[i].numel; k++) host[t.rows[i].offset + k] *= 30.0f;
    for (size_t i = 0; i < t.total; i++) g0[i] = (float)rng_normal(&r); // gradients accumulate (+=)
    int N = vit_tokens(&c);
    size_t nx = (size_t)B * 2 * N, nm = (size_t)B * (M ? M : 1), no = (size_t)B * 2 * N;
    float *hx = (float *)malloc(nx * sizeof(float)), *hc = (float *)malloc(nx * sizeof(float));
    float *hm = (float *)malloc(nm * sizeof(float)), *hw = (float *)malloc(no * sizeof(float));
    for (size_t i = 0; i < nx; i++) hx[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < nx; i++) hc[i] = (float)(rng_uniform(&r) < 0.5);
    for (size_t i = 0; i < nm; i++) hm[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < no; i++) hw[i] = (float)rng_normal(&r);
    float *params = to_backend(host, t.total), *x = to_backend(hx, nx), *cond = to_backend(hc, nx);
    float *mod = M ? to_backend(hm, nm) : NULL, *w = to_backend(hw, no), *out = nn_alloc(no);
    float *grads = nn_alloc(t.total), *dmod = M ? nn_alloc(nm) : NULL, *dx = nn_alloc(nx);
    // res[layout][step]: out, grads, dx, dmod on the host
    float *res[2][2][4];
    size_t n[4] = {no, t.total, nx, nm};
    for (int ck = 0; ck < 2; ck++) {
        v.cfg.checkpointing = ck;
        vit_reserve(&v, B, 1); // re-plans when checkpointing changes
        nn_to_backend(grads, g0, t.total);
        for (int step = 0; step < 2; step++) {
            // step 1: other dropout masks (seed, stream position) and the grads of step 0 accumulated
            vit_forward(&v, params, out, x, cond, mod, B, 1, 11 + step, 40 + (uint64_t)step * B);
            vit_backward(&v, params, grads, dmod, dx, w, B);
            float *d[4] = {out, grads, dx, dmod};
            for (int i = 0; i < 4; i++) res[ck][step][i] = (i < 3 || M) ? to_host(d[i], n[i]) : NULL;
        }
    }
    static const char *names[4] = {"forward output", "parameter gradients", "dx", "dmod"};
    for (int step = 0; step < 2; step++)
        for (int i = 0; i < 4; i++) {
            if (!res[0][step][i]) continue;
            size_t diff = 0;
            for (size_t j = 0; j < n[i]; j++) diff += memcmp(&res[0][step][i][j], &res[1][step][i][j], sizeof(float)) != 0;
            CHECK(diff == 0, "checkpointing %s, step %d: %s bit-identical to the default layout (%zu of %zu differ, max|.| %.3g)",
                  what, step, names[i], diff, n[i], max_abs(res[0][step][i], n[i]));
        }
    v.cfg.checkpointing = 0;
    size_t f0 = vit_arena_floats(&v, B, 1);
    v.cfg.checkpointing = 1;
    size_t f1 = vit_arena_floats(&v, B, 1), e1 = vit_arena_floats(&v, B, 0);
    v.cfg.checkpointing = 0;
    CHECK(f1 < f0 && e1 == vit_arena_floats(&v, B, 0), "checkpointing %s: train arena %zu < %zu floats (default), eval arena unchanged (%zu)",
          what, f1, f0, e1);
    // An eval forward on the checkpointed train arena gives the default arena's output.
    v.cfg.checkpointing = 1;
    vit_reserve(&v, B, 1);
    vit_forward(&v, params, out, x, cond, mod, B, 0, 0, 0);
    float *e_ck = to_host(out, no);
    v.cfg.checkpointing = 0;
    vit_reserve(&v, B, 1);
    vit_forward(&v, params, out, x, cond, mod, B, 0, 0, 0);
    float *e_def = to_host(out, no);
    CHECK(memcmp(e_ck, e_def, no * sizeof(float)) == 0, "checkpointing %s: eval forward on the train arena bit-identical", what);
    free(e_ck), free(e_def);
    for (int ck = 0; ck < 2; ck++)
        for (int step = 0; step < 2; step++)
            for (int i = 0; i < 4; i++) free(res[ck][step][i]);
    free(host), free(g0), free(hx), free(hc), free(hm), free(hw);
    nn_free(params), nn_free(x), nn_free(cond), nn_free(w), nn_free(out), nn_free(grads), nn_free(dx);
    if (M) nn_free(mod), nn_free(dmod);
    vit_destroy(&v);
    ptable_free(&t);
}

static void test_checkpointing(void) {
    ckpt_case(8, 1, 1, 0.1f, 3, 3, "DM-style (M 8, qk-norm, RoPE, dropout 0.1, 3 blocks, B 3)");
    ckpt_case(0, 0, 1, 0.2f, 2, 2, "label-free NS-style (M 0, RoPE, dropout 0.2, B 2)");
    ckpt_case(8, 1, 0, 0.0f, 2, 2, "no RoPE, no dropout (B 2)");
    // vit_large Euler / RB per-sample activation memory, default vs checkpointed (this backend, fp32).
    int euler[3] = {5, 16, 16}, rb[3] = {5, 16, 4};
    const int *wins[2] = {euler, rb};
    for (int i = 0; i < 2; i++) {
        EmuConfig e;
        emu_config_lola(&e, EMU_DM, "vit_large", 64, 3, wins[i], i ? 6 : 5);
        double m0 = emu_train_bytes_per_sample(&e) / (1 << 20);
        e.vit.checkpointing = 1;
        double m1 = emu_train_bytes_per_sample(&e) / (1 << 20);
        // Analytic (vit.c "Activation plan"): 41 N D floats (xs: 16 block inputs and the last
        // output; s; 9 of shared matmul outputs; 14 of scratch) + one attention save.
        double Nt = vit_tokens(&e.vit), D = e.vit.hid_channels, H = e.vit.heads;
        double est = 4.0 * (41 * Nt * D + (double)attention_save_floats(1, (int)Nt, (int)H)) / (1 << 20);
        printf("  activation memory per training sample (%s backend, fp32), DM vit_large %s: default %.1f MiB, "
               "checkpointing %.1f MiB (%.2fx less)\n", nn_backend_name(), i ? "RB" : "Euler", m0, m1, m0 / m1);
        CHECK(m1 < m0 && fabs(m1 - est) <= 0.05 * est, "%s checkpointed memory per sample %.0f MiB < default %.0f MiB, "
              "within 5%% of the analytic %.0f MiB", i ? "RB" : "Euler", m1, m0, est);
    }
}

int main(void) {
    nn_init(-1);
    test_counts();
    test_flops_memory();
    Fixture f = fixture_load(FIXTURE);
    TinyCfg t = tiny_cfg(&f);
    test_dm(&f, &t);
    test_ns(&f, &t);
    test_init(&t);
    test_vit_inputs();
    test_checkpointing();
    return test_summary();
}
