// test_dcae.c: the DCAE model (src/dcae.c) against lola-spec.md §2 and a PyTorch fixture.
//   1. exact parameter counts (§2.6, §10.2) by formula and by table; state_dict names
//   2. analytic forward FLOPs (§2.6) within 0.5 %
//   3. PyTorch parity (tests/torch_dcae.py -> tests/fixtures/dcae_tiny.bin): weights loaded by
//      name (proves names + order), z, y, VRMSE/MAE losses, every parameter gradient and dx, in
//      eval mode and in training mode with dropout (same counter-based masks)
//   4. finite-difference check of the whole-model gradient (training mode, fixed dropout seed)
//   5. identity init behaviour, 6. dropout/eval determinism, 7. encode/decode API, 8. memory
// Tolerance rule everywhere: |ours - ref| <= atol + rtol * |ref|; "budget" = the largest
// |ours - ref| / (atol + rtol * |ref|) over a tensor (must be <= 1).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "dcae.h"
#include "fixture.h"
#include "nn.h"
#include "rng.h"
#include "test.h"

#define FIXTURE "tests/fixtures/dcae_tiny.bin"
static const double ATOL = 1e-5, RTOL = 1e-4;

// The fixture's config (tests/torch_dcae.py TINY).
static void tiny_config(DcaeConfig *c) {
    memset(c, 0, sizeof *c);
    c->pix_channels = 3;
    c->lat_channels = 4;
    c->levels = 3;
    int h[3] = {8, 16, 32}, n[3] = {1, 1, 2};
    for (int i = 0; i < 3; i++) c->hid_channels[i] = h[i], c->hid_blocks[i] = n[i];
    c->attention_heads[2] = 2;
    c->ffn_factor = 1;
    c->kernel_size = 3;
    c->dropout = 0.05f;
    c->saturation = SAT_SOFTCLIP2;
    c->identity_init = 1;
    c->norm_eps = 1e-5f;
    c->latent_noise = 0.01f;
}

static float *to_backend(const float *host, size_t n) {
    float *d = nn_alloc(n);
    nn_to_backend(d, host, n);
    return d;
}

static float *to_host(const float *dev, size_t n) {
    float *h = LOLA_NEW(float, n);
    nn_to_host(h, dev, n);
    return h;
}

// ------------------------------------------------------------------------------------------------

static void test_counts(void) {
    // (C_pix, paper-era, small) -> counts for C_lat = 4, 16, 64 (lola-spec.md §2.6; ✓ = checkpoint)
    struct {
        const char *name;
        int pix, paper, small;
        uint64_t n[3];
    } rows[] = {
        {"Euler large paper-era {5:8}", 5, 1, 0, {236519753ull, 236740949ull, 237625733ull}},
        {"RB large paper-era {5:8}", 4, 1, 0, {236518600ull, 236739796ull, 237624580ull}},
        {"Euler large HEAD {}", 5, 0, 0, {311992649ull, 312213845ull, 313098629ull}},
        {"RB large HEAD {}", 4, 0, 0, {311991496ull, 312212692ull, 313097476ull}},
        {"Euler small paper-era {5:4}", 5, 1, 1, {59166889ull, 59277493ull, 59719909ull}},
        {"RB small paper-era {5:4}", 4, 1, 1, {59166312ull, 59276916ull, 59719332ull}},
    };
    const int lat[3] = {4, 16, 64};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (int j = 0; j < 3; j++) {
            DcaeConfig c;
            if (rows[r].small) dcae_config_small(&c, rows[r].pix, lat[j], rows[r].paper);
            else dcae_config_large(&c, rows[r].pix, lat[j], rows[r].paper);
            uint64_t f = dcae_param_count(&c);
            ParamTable t = {0};
            dcae_build_table(&c, &t);
            char b1[40], b2[40];
            CHECK(f == rows[r].n[j] && t.total == f, "param count %s c%d: formula %s, table %s, spec %s", rows[r].name,
                  lat[j], fmt_count(b1, sizeof b1, f), fmt_count(b2, sizeof b2, t.total),
                  fmt_count((char[40]){0}, 40, rows[r].n[j]));
            ptable_free(&t);
        }
}

static void test_names(void) {
    DcaeConfig c;
    dcae_config_large(&c, 5, 64, 1);
    ParamTable t = {0};
    dcae_build_table(&c, &t);
    const char *must[] = {
        "encoder.descent.0.0.weight",       "encoder.descent.0.1.ffn.0.weight",
        "encoder.descent.0.3.ffn.3.bias",   "encoder.descent.1.0.1.weight",
        "encoder.descent.5.1.attn.0.in_proj_weight", "encoder.descent.5.3.attn.0.out_proj.bias",
        "encoder.descent.5.4.weight",       "decoder.ascent.0.0.weight",
        "decoder.ascent.0.1.attn.0.in_proj_bias", "decoder.ascent.0.4.0.weight",
        "decoder.ascent.1.3.0.bias",        "decoder.ascent.5.3.weight",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        CHECK(ptable_find(&t, must[i]) >= 0, "state_dict name present: %s", must[i]);
    CHECK(strcmp(t.rows[0].name, "encoder.descent.0.0.weight") == 0 &&
              strcmp(t.rows[t.n - 1].name, "decoder.ascent.5.3.bias") == 0,
          "first/last rows: %s ... %s (%d rows)", t.rows[0].name, t.rows[t.n - 1].name, t.n);
    int r = ptable_find(&t, "encoder.descent.5.1.ffn.0.weight");
    CHECK(r >= 0 && t.rows[r].shape[2] == 1 && t.rows[r].shape[3] == 1, "attention-level FFN convs are 1x1");
    r = ptable_find(&t, "decoder.ascent.1.3.0.weight"); // ascent index L-1-i: level 4
    CHECK(r >= 0 && t.rows[r].shape[0] == 4 * 512 && t.rows[r].shape[1] == 768, "decoder up conv level 4: (2048, 768, 3, 3)");
    char nm[128];
    int nb = dcae_norm_eps_name(&c, 0, NULL, 0);
    dcae_norm_eps_name(&c, nb - 1, nm, sizeof nm);
    CHECK(nb == 36 && strcmp(nm, "decoder.ascent.5.2.norm.eps") == 0, "norm eps buffers: %d, last %s", nb, nm);
    ptable_free(&t);
}

static void test_flops(void) {
    struct {
        const char *name;
        int pix, paper, small, H, W;
        double gflop; // encoder, C_lat = 64 (§2.6)
    } rows[] = {
        {"Euler large paper-era", 5, 1, 0, 512, 512, 700.8}, {"RB large paper-era", 4, 1, 0, 512, 128, 175.0},
        {"Euler large HEAD", 5, 0, 0, 512, 512, 719.3},      {"RB large HEAD", 4, 0, 0, 512, 128, 179.8},
        {"Euler small paper-era", 5, 1, 1, 512, 512, 175.9}, {"RB small paper-era", 4, 1, 1, 512, 128, 43.9},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        DcaeConfig c;
        if (rows[r].small) dcae_config_small(&c, rows[r].pix, 64, rows[r].paper);
        else dcae_config_large(&c, rows[r].pix, 64, rows[r].paper);
        double e = dcae_encoder_flops(&c, rows[r].H, rows[r].W) / 1e9, d = dcae_decoder_flops(&c, rows[r].H, rows[r].W) / 1e9;
        CHECK(fabs(e - rows[r].gflop) <= 0.005 * rows[r].gflop && fabs(d - rows[r].gflop) <= 0.005 * rows[r].gflop,
              "FLOPs %s c64: encoder %.2f, decoder %.2f GFLOP/sample (spec %.1f)", rows[r].name, e, d, rows[r].gflop);
    }
}

// ------------------------------------------------------------------------------------------------
// PyTorch parity

// Compares a backend tensor with a fixture tensor; returns the budget used.
static double compare(const char *what, const float *dev, FixTensor *ref, size_t n) {
    if (!ref || ref->numel != n) {
        CHECK(0, "%s: fixture tensor missing or wrong size", what);
        return INFINITY;
    }
    float *h = to_host(dev, n);
    double b = fixture_budget(h, ref->data, n, ATOL, RTOL);
    free(h);
    CHECK(b <= 1.0, "parity %-52s budget %6.2f%%", what, 100.0 * b);
    return b;
}

static void parity_case(Dcae *m, Fixture *fx, const float *dx_in, int B, int H, int W, int train, uint64_t seed,
                        uint64_t first_sample) {
    const char *pre = train ? "train." : "";
    const DcaeConfig *c = &m->cfg;
    const size_t nx = (size_t)B * c->pix_channels * H * W;
    char name[200];
    dcae_zero_grad(m);
    dcae_forward(m, dx_in, B, H, W, train ? DCAE_TRAIN : DCAE_EVAL, seed, first_sample);
    double worst = 0;
    if (!train) {
        int L = c->levels;
        worst = fmax(worst, compare("z (latent)", dcae_latent(m), fixture_get(fx, "z"),
                                    (size_t)B * c->lat_channels * (H >> (L - 1)) * (W >> (L - 1))));
    }
    snprintf(name, sizeof name, "%sy", pre);
    worst = fmax(worst, compare(name, dcae_output(m), fixture_get(fx, name), nx));
    float *dy = nn_alloc(nx), *dx = nn_alloc(nx);
    double l = vrmse_loss(dy, dcae_output(m), dx_in, B, c->pix_channels, H * W, 1e-2f, 1.0f);
    snprintf(name, sizeof name, "%sloss_vrmse", pre);
    FixTensor *lr = fixture_get(fx, name);
    CHECK(lr && fabs(l - lr->data[0]) <= 1e-6 + 1e-5 * fabs(lr->data[0]), "%s: ours %.7f torch %.7f", name, l,
          lr ? lr->data[0] : NAN);
    if (!train) {
        double a = mae_loss(NULL, dcae_output(m), dx_in, nx, 1.0f);
        lr = fixture_get(fx, "loss_mae");
        CHECK(lr && fabs(a - lr->data[0]) <= 1e-6 + 1e-5 * fabs(lr->data[0]), "loss_mae: ours %.7f torch %.7f", a,
              lr ? lr->data[0] : NAN);
    }
    dcae_backward(m, dy, NULL, dx);
    for (int r = 0; r < m->table.n; r++) {
        const ParamSpec *p = &m->table.rows[r];
        snprintf(name, sizeof name, "%sgrad.%s", pre, p->name);
        worst = fmax(worst, compare(name, m->grads + p->offset, fixture_get(fx, name), p->numel));
    }
    snprintf(name, sizeof name, "%sgrad.x", pre);
    worst = fmax(worst, compare(name, dx, fixture_get(fx, name), nx));
    printf("# parity %s: worst budget %.2f%% (atol %g, rtol %g)\n", train ? "train (dropout 0.05)" : "eval", 100 * worst,
           ATOL, RTOL);
    nn_free(dy);
    nn_free(dx);
}

static void test_parity(void) {
    FILE *f = fopen(FIXTURE, "rb");
    if (!f) {
        CHECK(0, "fixture %s present (regenerate: python3 tests/torch_dcae.py)", FIXTURE);
        return;
    }
    fclose(f);
    Fixture fx = fixture_load(FIXTURE);
    FixTensor *meta = fixture_get(&fx, "meta");
    DcaeConfig c;
    tiny_config(&c);
    CHECK(meta && meta->numel == 11 && meta->data[0] == c.pix_channels && meta->data[1] == c.lat_channels &&
              meta->data[5] == c.levels && meta->data[6] == c.attention_heads[2] && meta->data[7] == c.dropout,
          "fixture config matches the tiny config");
    if (!meta || meta->numel != 11) return;
    int B = (int)meta->data[2], H = (int)meta->data[3], W = (int)meta->data[4];
    uint64_t seed = (uint64_t)meta->data[8] | ((uint64_t)meta->data[9] << 24);
    uint64_t first_sample = (uint64_t)meta->data[10]; // stream position of sample 0 (per-sample masks)
    Dcae m;
    dcae_create(&m, &c);
    // Parameters are fixture tensors 1..n in named_parameters order: same names, same order.
    int order_ok = fx.n > m.table.n, shapes_ok = 1;
    for (int r = 0; r < m.table.n && order_ok; r++) order_ok = strcmp(fx.t[1 + r].name, m.table.rows[r].name) == 0;
    CHECK(order_ok, "fixture parameter names and order == our table (%d rows, %zu parameters)", m.table.n,
          m.table.total);
    for (int r = 0; r < m.table.n; r++) {
        const ParamSpec *p = &m.table.rows[r];
        FixTensor *t = fixture_get(&fx, p->name);
        int ok = t && t->ndim == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++) ok = t->dims[d] == p->shape[d];
        if (!ok) {
            CHECK(0, "fixture tensor %s with our shape", p->name);
            shapes_ok = 0;
            continue;
        }
        nn_to_backend(m.params + p->offset, t->data, p->numel);
    }
    CHECK(shapes_ok, "all %d parameter tensors loaded by name with matching shapes", m.table.n);
    FixTensor *x = fixture_get(&fx, "x");
    size_t nx = (size_t)B * c.pix_channels * H * W;
    if (x && x->numel == nx && shapes_ok) {
        float *dx_in = to_backend(x->data, nx);
        parity_case(&m, &fx, dx_in, B, H, W, 0, seed, first_sample);
        parity_case(&m, &fx, dx_in, B, H, W, 1, seed, first_sample);
        nn_free(dx_in);
    } else {
        CHECK(0, "fixture input x present with %zu values", nx);
    }
    dcae_destroy(&m);
    for (int i = 0; i < fx.n; i++) free(fx.t[i].data);
    free(fx.t);
}

// ------------------------------------------------------------------------------------------------
// Finite differences: L = sum_i r_i y_i / n in training mode with a fixed dropout seed.

static double fd_loss(Dcae *m, const float *x, const float *r, int B, int H, int W, uint64_t seed) {
    size_t n = (size_t)B * m->cfg.pix_channels * H * W;
    dcae_forward(m, x, B, H, W, DCAE_TRAIN, seed, 0);
    float *y = to_host(dcae_output(m), n);
    double l = 0;
    for (size_t i = 0; i < n; i++) l += (double)r[i] * y[i];
    free(y);
    return l / (double)n;
}

static void set1(float *dev, float v) { nn_to_backend(dev, &v, 1); }

// Every parameter U(-a, a), a = 1/sqrt(fan_in) (as tests/torch_dcae.py does): unlike the real init
// (x0.01 second FFN conv, near-identity convs, zero attention biases) every path then contributes
// at O(1), so every gradient is large enough for float32 finite differences.
static void randomise(Dcae *m, uint64_t seed) {
    float *h = LOLA_NEW(float, m->table.total);
    Rng g = rng_seed(seed);
    for (int r = 0; r < m->table.n; r++) {
        const ParamSpec *p = &m->table.rows[r];
        double a = 1.0 / sqrt((double)(p->ndim > 1 ? p->numel / (size_t)p->shape[0] : p->numel));
        for (size_t k = 0; k < p->numel; k++) h[p->offset + k] = (float)(a * (2 * rng_uniform(&g) - 1));
    }
    nn_to_backend(m->params, h, m->table.total);
    free(h);
}

static void test_finite_differences(void) {
    DcaeConfig c;
    tiny_config(&c);
    const int B = 1, H = 16, W = 16;
    const uint64_t seed = 99;
    Dcae m;
    dcae_create(&m, &c);
    randomise(&m, 7);
    size_t n = (size_t)B * c.pix_channels * H * W;
    float *xh = LOLA_NEW(float, n), *rh = LOLA_NEW(float, n), *dyh = LOLA_NEW(float, n);
    Rng g = rng_seed(3);
    for (size_t i = 0; i < n; i++) xh[i] = (float)rng_normal(&g), rh[i] = (float)rng_normal(&g), dyh[i] = rh[i] / n;
    float *x = to_backend(xh, n), *dy = to_backend(dyh, n), *dx = nn_alloc(n);
    dcae_zero_grad(&m);
    fd_loss(&m, x, rh, B, H, W, seed);
    dcae_backward(&m, dy, NULL, dx);
    float *grads = to_host(m.grads, m.table.total);
    float *params = to_host(m.params, m.table.total);
    // One element per parameter tensor (its largest |grad|), central differences with eps 1e-3.
    const double eps = 1e-3;
    int bad = 0;
    double worst = 0;
    for (int r = 0; r < m.table.n; r++) {
        const ParamSpec *p = &m.table.rows[r];
        size_t best = 0;
        for (size_t k = 1; k < p->numel; k++)
            if (fabsf(grads[p->offset + k]) > fabsf(grads[p->offset + best])) best = k;
        float *pp = m.params + p->offset + best;
        float v0 = params[p->offset + best];
        set1(pp, (float)(v0 + eps));
        double lp = fd_loss(&m, x, rh, B, H, W, seed);
        set1(pp, (float)(v0 - eps));
        double lm = fd_loss(&m, x, rh, B, H, W, seed);
        set1(pp, v0);
        double fd = (lp - lm) / (2 * eps), an = grads[p->offset + best];
        double b = fabs(fd - an) / (1e-6 + 2e-2 * fabs(an));
        worst = fmax(worst, b);
        if (b > 1) {
            bad++;
            printf("  fd %s[%zu]: analytic %.6g, finite difference %.6g\n", p->name, best, an, fd);
        }
    }
    CHECK(bad == 0, "finite differences, all %d parameter tensors (max-|g| element each): worst budget %.1f%% "
                    "(atol 1e-6, rtol 2e-2)", m.table.n, 100 * worst);
    // input gradient at a few pixels
    float *dxh = to_host(dx, n);
    worst = 0;
    bad = 0;
    // the 6 largest |dx| (one per channel-row block of n/6 elements), eps 1e-2 on N(0, 1) inputs
    const double ex = 1e-2;
    for (int t = 0; t < 6; t++) {
        size_t k = t * (n / 6);
        for (size_t q = k; q < (t + 1) * (n / 6); q++)
            if (fabsf(dxh[q]) > fabsf(dxh[k])) k = q;
        set1(x + k, xh[k] + (float)ex);
        double lp = fd_loss(&m, x, rh, B, H, W, seed);
        set1(x + k, xh[k] - (float)ex);
        double lm = fd_loss(&m, x, rh, B, H, W, seed);
        set1(x + k, xh[k]);
        double fd = (lp - lm) / (2 * ex);
        double b = fabs(fd - dxh[k]) / (1e-6 + 2e-2 * fabs(dxh[k]));
        worst = fmax(worst, b);
        if (b > 1) bad++, printf("  fd x[%zu]: analytic %.6g, finite difference %.6g\n", k, dxh[k], fd);
    }
    CHECK(bad == 0, "finite differences, 6 input elements (largest |dx| per sixth): worst budget %.1f%%", 100 * worst);
    // extra latent gradient dz adds linearly: dx(dy, dz) = dx(dy, 0) + dx(0, dz)
    int L = c.levels;
    size_t nz = (size_t)B * c.lat_channels * (H >> (L - 1)) * (W >> (L - 1));
    float *dzh = LOLA_NEW(float, nz);
    for (size_t i = 0; i < nz; i++) dzh[i] = (float)rng_normal(&g);
    float *dz = to_backend(dzh, nz), *zero = nn_alloc(n), *dx2 = nn_alloc(n);
    dcae_backward(&m, zero, dz, dx2);
    dcae_backward(&m, dy, dz, dx);
    float *a = to_host(dx, n), *b2 = to_host(dx2, n);
    double err = 0, mag = 0;
    for (size_t i = 0; i < n; i++) err = fmax(err, fabs(a[i] - dxh[i] - b2[i])), mag = fmax(mag, fabs(a[i]));
    CHECK(err <= 1e-5 * mag + 1e-9, "latent gradient dz enters linearly (max err %.3g, max |dx| %.3g)", err, mag);
    free(a), free(b2), free(dzh), free(dxh), free(xh), free(rh), free(dyh), free(grads), free(params);
    nn_free(dz), nn_free(zero), nn_free(dx2), nn_free(x), nn_free(dy), nn_free(dx);
    dcae_destroy(&m);
}

// ------------------------------------------------------------------------------------------------
// Identity init (lola-spec.md §2.1, §10.4)

static double rel_dist(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += (double)(a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

// Relative distance between the output of identity-init conv stage s and its input channel
// o mod cin, over the run's activations; also checks the ResBlocks' relative change.
static void identity_stats(int identity, double *conv_dev, double *block_dev, double *vrmse, double *copy_dev) {
    DcaeConfig c;
    tiny_config(&c);
    c.identity_init = identity;
    const int B = 1, H = 32, W = 32;
    Dcae m;
    dcae_create(&m, &c);
    dcae_init_params(&m, 11);
    size_t n = (size_t)B * c.pix_channels * H * W;
    float *xh = LOLA_NEW(float, n);
    Rng g = rng_seed(5);
    for (size_t i = 0; i < n; i++) xh[i] = (float)rng_normal(&g);
    float *x = to_backend(xh, n);
    dcae_forward(&m, x, B, H, W, DCAE_EVAL, 0, 0);
    *conv_dev = 0;
    *block_dev = 0;
    int last0 = -1, latconv = -1;
    for (int s = 1; s < m.n_stages; s++) {
        DcaeStageInfo si = dcae_stage_info(&m, s);
        size_t hw = (size_t)(H >> si.level_out) * (W >> si.level_out);
        if (s < m.n_enc && si.level_out == 0) last0 = s;
        if (s == m.n_enc - 2) latconv = s;
        // every conv except the level-0 entry (stage 0) and exit (last stage) is identity-init
        if (!strcmp(si.kind, "conv") && s != m.n_stages - 1) {
            // identity-init conv: out[o] - bias[o] vs in[o mod cin] (the bias keeps its default init)
            float *in = to_host(dcae_stage_output(&m, s - 1), (size_t)B * si.cin * hw);
            float *out = to_host(dcae_stage_output(&m, s), (size_t)B * si.cout * hw);
            float *bias = to_host(m.params + m.table.rows[si.b_row].offset, (size_t)si.cout);
            double dv = 0;
            for (int o = 0; o < si.cout; o++) {
                for (size_t p = 0; p < hw; p++) out[(size_t)o * hw + p] -= bias[o];
                dv = fmax(dv, rel_dist(out + (size_t)o * hw, in + (size_t)(o % si.cin) * hw, hw));
            }
            free(bias);
            *conv_dev = fmax(*conv_dev, dv);
            free(in), free(out);
        } else if (!strcmp(si.kind, "resblock")) {
            size_t k = (size_t)B * si.cin * hw;
            float *in = to_host(dcae_stage_output(&m, s - 1), k), *out = to_host(dcae_stage_output(&m, s), k);
            *block_dev = fmax(*block_dev, rel_dist(out, in, k));
            free(in), free(out);
        }
    }
    // Multi-scale copy: follow latent channel o down the levels. Level i > 0 channel q at pixel
    // (p, r) comes from level i-1 channel q / 4 at (2p + (q % 4) / 2, 2r + q % 2) (unshuffle order).
    {
        int L = c.levels, hl = H >> (L - 1), wl = W >> (L - 1);
        float *zp = to_host(dcae_stage_output(&m, latconv), (size_t)c.lat_channels * hl * wl);
        float *f0 = to_host(dcae_stage_output(&m, last0), (size_t)c.hid_channels[0] * H * W);
        double num = 0, den = 0;
        for (int o = 0; o < c.lat_channels; o++)
            for (int p = 0; p < hl; p++)
                for (int r = 0; r < wl; r++) {
                    int q = o, pp = p, rr = r;
                    for (int i = L - 1; i > 0; i--) {
                        pp = 2 * pp + (q % 4) / 2;
                        rr = 2 * rr + q % 2;
                        q /= 4;
                    }
                    double a = zp[((size_t)o * hl + p) * wl + r], b = f0[((size_t)q * H + pp) * W + rr];
                    num += (a - b) * (a - b), den += b * b;
                }
        *copy_dev = sqrt(num / den);
        free(zp), free(f0);
    }
    *vrmse = vrmse_loss(NULL, dcae_output(&m), x, B, c.pix_channels, H * W, 1e-2f, 1.0f);
    nn_free(x);
    free(xh);
    dcae_destroy(&m);
}

static void test_identity_init(void) {
    double cd1, bd1, v1, cp1, cd0, bd0, v0, cp0;
    identity_stats(1, &cd1, &bd1, &v1, &cp1);
    identity_stats(0, &cd0, &bd0, &v0, &cp0);
    printf("# identity init: resampling/latent convs max rel. dev. from channel o mod C_in %.3f (no identity "
           "init %.3f) after removing the bias; ResBlock max rel. change %.3f; latent vs sub-pixel copy of level-0 features %.3f "
           "(no identity init %.3f); VRMSE(y, x) at init %.3f (no identity init %.3f)\n",
           cd1, cd0, bd1, cp1, cp0, v1, v0);
    CHECK(cd1 < 0.03 && cd0 > 0.5, "identity init: each resampling/latent conv = bias + copy of input channel "
                                   "o mod C_in (rel. dev. %.3f; %.3f without)", cd1, cd0);
    CHECK(bd1 < 0.2, "ResBlocks start near identity (second FFN conv x0.01): max rel. change %.3f", bd1);
    CHECK(cp1 < 0.4 && cp0 > 0.8, "encoder at init = sub-pixel copy (not an average) of level-0 features: rel. dev. "
                                  "%.3f (%.3f without identity init)", cp1, cp0);
    CHECK(v1 > 0.3 && v1 < 3.0, "AE VRMSE at init is O(1): %.3f", v1);
}

// ------------------------------------------------------------------------------------------------
// Modes, dropout determinism, encode/decode

static int same(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

static void test_modes(void) {
    DcaeConfig c;
    tiny_config(&c);
    const int B = 2, H = 16, W = 16, L = c.levels, h = H >> (L - 1), w = W >> (L - 1);
    Dcae m;
    dcae_create(&m, &c);
    dcae_init_params(&m, 21);
    size_t n = (size_t)B * c.pix_channels * H * W, nz = (size_t)B * c.lat_channels * h * w;
    float *xh = LOLA_NEW(float, n);
    Rng g = rng_seed(8);
    for (size_t i = 0; i < n; i++) xh[i] = (float)rng_normal(&g);
    float *x = to_backend(xh, n);
    float *ys[6], *zs[2];
    dcae_forward(&m, x, B, H, W, DCAE_TRAIN, 1234, 0);
    ys[0] = to_host(dcae_output(&m), n);
    dcae_forward(&m, x, B, H, W, DCAE_TRAIN, 1234, 0);
    ys[1] = to_host(dcae_output(&m), n);
    dcae_forward(&m, x, B, H, W, DCAE_TRAIN, 1235, 0);
    ys[2] = to_host(dcae_output(&m), n);
    dcae_forward(&m, x, B, H, W, DCAE_EVAL, 1234, 0);
    ys[3] = to_host(dcae_output(&m), n);
    zs[0] = to_host(dcae_latent(&m), nz);
    dcae_forward(&m, x, B, H, W, DCAE_EVAL, 999, 0);
    ys[4] = to_host(dcae_output(&m), n);
    CHECK(same(ys[0], ys[1], n), "train mode: same dropout seed -> bitwise identical output");
    CHECK(!same(ys[0], ys[2], n), "train mode: different dropout seed -> different output (max diff %.3g)",
          rel_dist(ys[0], ys[2], n));
    CHECK(!same(ys[0], ys[3], n) && same(ys[3], ys[4], n), "eval mode: no dropout, independent of the seed");
    // dropout 0 in train mode == eval
    Dcae m0;
    DcaeConfig c0 = c;
    c0.dropout = 0.0f;
    dcae_create(&m0, &c0);
    nn_copy(m0.params, m.params, m.table.total);
    dcae_forward(&m0, x, B, H, W, DCAE_TRAIN, 1234, 0);
    ys[5] = to_host(dcae_output(&m0), n);
    CHECK(same(ys[5], ys[3], n), "train mode with dropout 0 == eval mode");
    dcae_destroy(&m0);
    // encode / decode
    float *z = nn_alloc(nz), *y = nn_alloc(n), *y2 = nn_alloc(n), *noise = nn_alloc(nz);
    dcae_encode(&m, z, x, B, H, W);
    float *zh = to_host(z, nz);
    CHECK(same(zh, zs[0], nz), "dcae_encode == latent of the eval forward");
    dcae_decode(&m, y, z, B, h, w, 0, 0);
    float *yh = to_host(y, n);
    CHECK(same(yh, ys[3], n), "dcae_decode(noisy = 0) == output of the eval forward");
    dcae_decode(&m, y, z, B, h, w, 1, 77);
    nn_randn(noise, nz, 77);
    nn_axpy(z, 0.01f, noise, nz);
    dcae_decode(&m, y2, z, B, h, w, 0, 0);
    float *a = to_host(y, n), *b = to_host(y2, n);
    CHECK(same(a, b, n) && !same(a, yh, n), "dcae_decode(noisy = 1) == decode(z + 0.01 N(0, I)) (rel. change %.3g)",
          rel_dist(a, yh, n));
    // batch independence through a re-planned (smaller) arena: sample 0 alone == sample 0 of B = 2
    dcae_forward(&m, x, 1, H, W, DCAE_EVAL, 0, 0);
    float *y1 = to_host(dcae_output(&m), n / 2);
    double bi = fixture_budget(y1, ys[3], n / 2, 1e-6, 1e-5);
    CHECK(bi <= 1.0, "eval output of sample 0 with B = 1 == with B = 2 (budget %.1f%% of 1e-6 + 1e-5 |y|)", 100 * bi);
    free(y1);
    // Per-sample dropout masks: sample 1 of a B = 2 batch starting at stream position 40 equals
    // that sample alone at position 41 (what a second rank computes), and differs at position 40.
    dcae_forward(&m, x, B, H, W, DCAE_TRAIN, 1234, 40);
    float *yt2 = to_host(dcae_output(&m), n);
    float *x1 = nn_alloc(n / 2);
    nn_copy(x1, x + n / 2, n / 2);
    dcae_forward(&m, x1, 1, H, W, DCAE_TRAIN, 1234, 41);
    float *yt1 = to_host(dcae_output(&m), n / 2);
    dcae_forward(&m, x1, 1, H, W, DCAE_TRAIN, 1234, 40);
    float *yt0 = to_host(dcae_output(&m), n / 2);
    double bt = fixture_budget(yt1, yt2 + n / 2, n / 2, 1e-6, 1e-5);
    CHECK(bt <= 1.0 && !same(yt0, yt1, n / 2),
          "train: sample 1 of B = 2 at position 40 == that sample alone at position 41 (budget %.1f%%), "
          "!= alone at position 40 (rel. diff %.3g)", 100 * bt, rel_dist(yt0, yt1, n / 2));
    free(yt2), free(yt1), free(yt0);
    nn_free(x1);
    for (int i = 0; i < 6; i++) free(ys[i]);
    free(zs[0]), free(zh), free(yh), free(a), free(b), free(xh);
    nn_free(z), nn_free(y), nn_free(y2), nn_free(noise), nn_free(x);
    dcae_destroy(&m);
}

static void test_memory(void) {
    DcaeConfig c;
    dcae_config_large(&c, 5, 64, 1);
    size_t a1 = dcae_arena_floats(&c, 1, 512, 512), a4 = dcae_arena_floats(&c, 4, 512, 512);
    dcae_print_memory(&c, 4, 512, 512, stdout);
    CHECK(fabs((double)a4 - 4.0 * a1) <= 1e-3 * a4, "arena is linear in B: %zu floats for B=1, %zu for B=4", a1, a4);
    dcae_config_large(&c, 4, 64, 1);
    dcae_print_memory(&c, 8, 512, 128, stdout);
    // the tiny model's arena is what dcae_reserve allocates
    DcaeConfig t;
    tiny_config(&t);
    Dcae m;
    dcae_create(&m, &t);
    dcae_reserve(&m, 2, 16, 16);
    CHECK(m.arena_floats == dcae_arena_floats(&t, 2, 16, 16), "dcae_reserve allocates dcae_arena_floats (%zu)",
          m.arena_floats);
    float *a0 = m.arena;
    dcae_reserve(&m, 1, 16, 16);
    CHECK(m.arena == a0 && dcae_output(&m) < a0 + dcae_arena_floats(&t, 1, 16, 16),
          "a smaller batch re-plans inside the existing arena");
    dcae_reserve(&m, 2, 32, 32);
    CHECK(m.arena_floats == dcae_arena_floats(&t, 2, 32, 32), "a larger size grows the arena (%zu)", m.arena_floats);
    dcae_destroy(&m);
    // Inference (dcae_encode / dcae_decode) keeps no backward state: a fresh model decoding
    // allocates the inference layout only; a later training forward grows it, and encode/decode
    // then re-plan inside it.
    int L = t.levels;
    size_t nz = (size_t)2 * t.lat_channels * (16 >> (L - 1)) * (16 >> (L - 1)), n = (size_t)2 * t.pix_channels * 16 * 16;
    float *z = nn_alloc(nz), *y = nn_alloc(n);
    dcae_create(&m, &t);
    dcae_init_params(&m, 1);
    dcae_decode(&m, y, z, 2, 16 >> (L - 1), 16 >> (L - 1), 0, 0);
    size_t ev = dcae_eval_arena_floats(&t, 2, 16, 16), tr = dcae_arena_floats(&t, 2, 16, 16);
    CHECK(m.arena_floats == ev && ev < tr / 2, "dcae_decode allocates the inference arena (%zu floats < half the training %zu)",
          ev, tr);
    dcae_forward(&m, y, 2, 16, 16, DCAE_TRAIN, 1, 0);
    a0 = m.arena;
    CHECK(m.arena_floats == tr, "a training forward grows it to the training arena (%zu)", m.arena_floats);
    dcae_encode(&m, z, y, 2, 16, 16);
    CHECK(m.arena == a0 && m.arena_floats == tr && !m.have_forward, "encode re-plans inside it (and drops the stored forward)");
    dcae_destroy(&m);
    nn_free(z), nn_free(y);
    double e1 = (double)dcae_eval_arena_floats(&c, 4, 512, 512), t1 = (double)dcae_arena_floats(&c, 4, 512, 512);
    CHECK(e1 < 0.2 * t1, "paper-era AE at 512 x 512, batch 4: inference arena %.2f GB < 20%% of the training arena %.2f GB",
          4 * e1 / 1e9, 4 * t1 / 1e9);
}

// bf16 of nn.h (round to nearest even, NaN -> 0x7FFF), written independently of the backends.
static float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u = 0x7fff0000u;
    else
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

// One training forward + backward (dy on the output, dz on the latent) of m from zero gradients;
// returns host copies: [0] latent, [1] output, [2] dx, [3] parameter gradients, [4..] the kept
// stage outputs (dcae_stage_output of every stage, in order).
typedef struct {
    float *latent, *out, *dx, *grads, **stage;
} LayoutRun;
static LayoutRun layout_run(Dcae *m, const float *x, const float *dy, const float *dz, int B, int H, int W) {
    const DcaeConfig *c = &m->cfg;
    int L = c->levels;
    size_t n = (size_t)B * c->pix_channels * H * W, nz = (size_t)B * c->lat_channels * (H >> (L - 1)) * (W >> (L - 1));
    LayoutRun r;
    float *dx = nn_alloc(n);
    dcae_zero_grad(m);
    dcae_forward(m, x, B, H, W, DCAE_TRAIN, 4242, 17);
    r.latent = to_host(dcae_latent(m), nz);
    r.out = to_host(dcae_output(m), n);
    r.stage = LOLA_NEW(float *, m->n_stages);
    for (int i = 0; i < m->n_stages; i++) {
        DcaeStageInfo si = dcae_stage_info(m, i);
        r.stage[i] = to_host(dcae_stage_output(m, i), (size_t)B * si.cout * (H >> si.level_out) * (W >> si.level_out));
    }
    dcae_backward(m, dy, dz, dx);
    r.dx = to_host(dx, n);
    r.grads = to_host(m->grads, m->table.total);
    nn_free(dx);
    return r;
}
static void layout_free(LayoutRun *r, int n_stages) {
    free(r->latent), free(r->out), free(r->dx), free(r->grads);
    for (int i = 0; i < n_stages; i++) free(r->stage[i]);
    free(r->stage);
}

// The four training layouts (dcae.c "Activation plan": fp32 / bf16 storage x checkpointing off /
// on) run the same forward; checkpointing with fp32 storage gives bit-identical gradients; bf16
// storage keeps exactly the bf16 rounding of each kept tensor and changes the gradients only by
// that rounding.
static void test_layouts(void) {
    DcaeConfig c;
    tiny_config(&c); // attention at level 2, dropout on
    const int B = 2, H = 16, W = 16, L = c.levels;
    size_t n = (size_t)B * c.pix_channels * H * W, nz = (size_t)B * c.lat_channels * (H >> (L - 1)) * (W >> (L - 1));
    float *xh = LOLA_NEW(float, n), *dyh = LOLA_NEW(float, n), *dzh = LOLA_NEW(float, nz);
    Rng g = rng_seed(11);
    for (size_t i = 0; i < n; i++) xh[i] = (float)rng_normal(&g), dyh[i] = (float)rng_normal(&g) / (float)n;
    for (size_t i = 0; i < nz; i++) dzh[i] = (float)rng_normal(&g) / (float)nz;
    float *x = to_backend(xh, n), *dy = to_backend(dyh, n), *dz = to_backend(dzh, nz);
    const int bf16_before = nn_bf16_activations();
    LayoutRun run[2][2]; // [bf16 storage][checkpointing]
    size_t floats[2][2];
    int n_stages = 0;
    for (int st = 0; st < 2; st++)
        for (int ck = 0; ck < 2; ck++) {
            DcaeConfig t = c;
            t.checkpointing = ck;
            nn_set_bf16_activations(st);
            Dcae m;
            dcae_create(&m, &t);
            randomise(&m, 5);
            run[st][ck] = layout_run(&m, x, dy, dz, B, H, W);
            floats[st][ck] = dcae_arena_floats(&t, B, H, W);
            CHECK(m.arena_floats == floats[st][ck], "layout storage %s, checkpointing %d: dcae_reserve allocates "
                  "dcae_arena_floats (%zu)", st ? "bf16" : "fp32", ck, m.arena_floats);
            n_stages = m.n_stages;
            dcae_destroy(&m);
        }
    nn_set_bf16_activations(bf16_before);
    Dcae probe;
    dcae_create(&probe, &c);
    size_t P = probe.table.total;
    const LayoutRun *ref = &run[0][0];
    const LayoutRun *ck = &run[0][1];
    CHECK(same(ck->latent, ref->latent, nz) && same(ck->out, ref->out, n), "checkpointing: same forward (bit-identical)");
    CHECK(same(ck->grads, ref->grads, P) && same(ck->dx, ref->dx, n),
          "checkpointing: parameter gradients and dx bit-identical to the default layout");
    for (int k = 0; k < 2; k++) {
        const LayoutRun *b = &run[1][k];
        const char *tag = k ? "bf16 storage + checkpointing" : "bf16 storage";
        CHECK(same(b->latent, ref->latent, nz) && same(b->out, ref->out, n), "%s: the forward is unchanged (fp32, bit-identical)", tag);
        // every kept output except the latent and the output is the bf16 rounding of the fp32 one
        int bad = 0, rounded = 0;
        for (int i = 0; i < n_stages; i++) {
            DcaeStageInfo si = dcae_stage_info(&probe, i);
            size_t ns = (size_t)B * si.cout * (H >> si.level_out) * (W >> si.level_out);
            int end = i == probe.n_enc - 1 || i == n_stages - 1;
            for (size_t e = 0; e < ns; e++) {
                float want = end ? ref->stage[i][e] : bf16_round(ref->stage[i][e]);
                bad += memcmp(&b->stage[i][e], &want, 4) != 0;
                rounded += want != ref->stage[i][e];
            }
        }
        CHECK(bad == 0 && rounded > 0, "%s: every kept stage output is the bf16 rounding of the fp32 one (%d mismatches, "
              "%d values changed by the rounding)", tag, bad, rounded);
        double eg = rel_dist(b->grads, ref->grads, P), ex = rel_dist(b->dx, ref->dx, n);
        // bf16 keeps 8 significant bits: relative rounding error <= 2^-8 per stored value
        CHECK(eg > 0 && eg < 2e-2 && ex > 0 && ex < 2e-2, "%s: gradients move only by the rounding (relative L2 distance "
              "to fp32: parameters %.2e, dx %.2e)", tag, eg, ex);
    }
    CHECK(floats[0][1] < floats[0][0] && floats[1][0] < floats[0][0] && floats[1][1] < floats[1][0] &&
              floats[1][1] < floats[0][1], "arena: checkpointing and bf16 storage each shrink it (%zu / %zu / %zu / %zu floats)",
          floats[0][0], floats[0][1], floats[1][0], floats[1][1]);
    dcae_destroy(&probe);
    for (int st = 0; st < 2; st++)
        for (int k = 0; k < 2; k++) layout_free(&run[st][k], n_stages);
    nn_free(x), nn_free(dy), nn_free(dz);
    free(xh), free(dyh), free(dzh);
    // The paper-era AE at 512 x 512 (Euler): activations per training sample under each layout.
    DcaeConfig e;
    dcae_config_large(&e, 5, 64, 1);
    double mib[2][2];
    for (int st = 0; st < 2; st++)
        for (int k = 0; k < 2; k++) {
            e.checkpointing = k;
            nn_set_bf16_activations(st);
            mib[st][k] = ((double)dcae_arena_floats(&e, 2, 512, 512) - (double)dcae_arena_floats(&e, 1, 512, 512)) * 4 / 1048576.0;
        }
    nn_set_bf16_activations(bf16_before);
    printf("# paper-era AE, Euler 512x512: MiB per training sample: fp32 %.0f, fp32+checkpointing %.0f, bf16 %.0f, "
           "bf16+checkpointing %.0f\n", mib[0][0], mib[0][1], mib[1][0], mib[1][1]);
    CHECK(mib[1][1] < 0.45 * mib[0][0], "paper-era AE: bf16 storage + checkpointing needs < 45%% of the default "
          "activation memory (%.0f of %.0f MiB per sample)", mib[1][1], mib[0][0]);
}

// Bad input must end the program with a non-zero status (lola_die); run it in a child process.
static int dies(void (*fn)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) != 0;
}
static void bad_heads(void) {
    DcaeConfig c;
    tiny_config(&c);
    c.attention_heads[2] = 3; // does not divide 32
    dcae_param_count(&c);
}
static void bad_size(void) {
    DcaeConfig c;
    tiny_config(&c);
    dcae_arena_floats(&c, 1, 18, 16); // 18 is not a multiple of 4
}
static void bad_backward(void) {
    DcaeConfig c;
    tiny_config(&c);
    Dcae m;
    dcae_create(&m, &c);
    dcae_backward(&m, NULL, NULL, NULL); // no forward
}

static void test_bad_input(void) {
    CHECK(dies(bad_heads), "config with attention heads not dividing the channels is refused");
    CHECK(dies(bad_size), "input size not a multiple of 2^(levels-1) is refused");
    CHECK(dies(bad_backward), "backward without a stored forward is refused");
}

int main(void) {
    nn_init(-1);
    test_counts();
    test_names();
    test_flops();
    test_parity();
    test_finite_differences();
    test_identity_init();
    test_modes();
    test_memory();
    test_layouts();
    test_bad_input();
    return test_summary();
}
