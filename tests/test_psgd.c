// test_psgd.c: PSGD-Kron (src/psgd.c, lola-spec.md 6.3) and its optimizer/checkpoint glue.
//   1. parity with the independent PyTorch reference tests/torch_psgd.py (fixture
//      tests/fixtures/psgd_ref.bin; the reference itself agrees with heavyball 1.4.3 to ~3e-7, see
//      that file): a 2-D weight, a 3x3 conv weight, a 1x1 conv weight and a bias, same Gaussian
//      draws, for several steps with the preconditioner updated every step ("forced"), with the
//      real schedule including a skipped update and a balancing step ("sched", weight decay 0.1),
//      and with max_size 6 ("small"); parameters after every step, momentum, factors, caches and
//      the update/balance decisions;
//   2. heavyball's schedule: r = random.Random(0x172381 ^ k).random() and p(k);
//   3. step 1 uses the identity cache (theta1 = theta0 - lr clip(G), bit for bit) and leaves the
//      dense caches at I while Q moves;
//   4. the momentum recurrence with b_k = 1 - 0.1/(1 - 0.9^k) (m = G at k = 1);
//   5. update clipping values against the formula; the norm lower bound against the spectral norm;
//   6. dense vs diagonal axis rules (n > max_size, n = 1, 1-D tensors);
//   7. a small ill-conditioned quadratic converges;
//   8. optimizer glue: optim_step with OPTIM_PSGD, checkpoint_save_ex / checkpoint_load /
//      checkpoint_load_extra round trip and bit-exact continuation after a reload;
//   9. information: PSGD state memory for LoLa's DCAE tables (no check).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "common.h"
#include "dcae.h"
#include "fixture.h"
#include "nn.h"
#include "optim.h"
#include "params.h"
#include "psgd.h"
#include "rng.h"
#include "test.h"

#define FIXTURE "tests/fixtures/psgd_ref.bin"

static const char *NAMES[4] = {"w2d", "conv", "conv1x1", "bias"};
static const int64_t SHAPES[4][4] = {{5, 7}, {4, 3, 3, 3}, {4, 6, 1, 1}, {4}};
static const int NDIMS[4] = {2, 4, 4, 1};

static void tiny_table(ParamTable *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 4; i++) ptable_add(t, NAMES[i], NDIMS[i], SHAPES[i], INIT_ZERO, 1, 1, 1.0f);
}

static FixTensor *need(Fixture *fx, const char *name) {
    FixTensor *t = fixture_get(fx, name);
    if (!t) {
        printf("fixture tensor %s missing (regenerate: python3 tests/torch_psgd.py %s)\n", name, FIXTURE);
        exit(1);
    }
    return t;
}

// Copies fixture tensors <prefix>/<name> of every row into a host buffer.
static void gather(Fixture *fx, const ParamTable *t, const char *prefix, float *h) {
    char key[256];
    for (int i = 0; i < t->n; i++) {
        snprintf(key, sizeof key, "%s/%s", prefix, t->rows[i].name);
        FixTensor *f = need(fx, key);
        if (f->numel != t->rows[i].numel) {
            printf("fixture %s has %zu values, expected %zu\n", key, f->numel, t->rows[i].numel);
            exit(1);
        }
        memcpy(h + t->rows[i].offset, f->data, f->numel * sizeof(float));
    }
}

// ---- 1. parity with the PyTorch reference ------------------------------------------------------
static void parity(Fixture *fx, const char *sc) {
    char key[256];
    snprintf(key, sizeof key, "%s/meta", sc);
    FixTensor *meta = need(fx, key);
    int steps = (int)meta->data[0], max_size = (int)meta->data[3], force = (int)meta->data[4];
    float lr = meta->data[1], wd = meta->data[2];
    snprintf(key, sizeof key, "%s/ks", sc);
    FixTensor *ks = need(fx, key);
    snprintf(key, sizeof key, "%s/flags", sc);
    FixTensor *flags = need(fx, key);
    ParamTable tab;
    tiny_table(&tab);
    size_t n = tab.total;
    PsgdConfig pc;
    psgd_config_default(&pc);
    pc.max_size = max_size;
    pc.force_update = force;
    PsgdState st;
    psgd_init(&st, &pc, &tab);
    float *h = LOLA_NEW(float, n), *hg = LOLA_NEW(float, n), *ref = LOLA_NEW(float, n);
    float *p = nn_alloc(n), *g = nn_alloc(n);
    snprintf(key, sizeof key, "%s/init", sc);
    gather(fx, &tab, key, h);
    nn_to_backend(p, h, n);
    double worst = 0.0;
    int flags_ok = 1;
    for (int j = 0; j < steps; j++) {
        snprintf(key, sizeof key, "%s/grad%d", sc, j);
        gather(fx, &tab, key, hg);
        nn_to_backend(g, hg, n);
        psgd_step(&st, p, g, lr, wd, (int64_t)ks->data[j]);
        flags_ok &= st.last_updated == (flags->data[2 * j] != 0.0f) && st.last_balanced == (flags->data[2 * j + 1] != 0.0f);
        nn_to_host(h, p, n);
        snprintf(key, sizeof key, "%s/step%d", sc, j);
        gather(fx, &tab, key, ref);
        double b = fixture_budget(h, ref, n, 1e-6, 1e-5);
        if (b > 1.0) printf("  %s step %d (k=%g): parameters use %.2f of the tolerance\n", sc, j, ks->data[j], b);
        worst = fmax(worst, b);
    }
    CHECK(flags_ok, "parity %s: update/balance decisions at k = %g..%g equal the reference's", sc, ks->data[0], ks->data[steps - 1]);
    CHECK(worst <= 1.0, "parity %s: parameters after each of %d steps (atol 1e-6, rtol 1e-5; budget used %.3f)", sc, steps, worst);
    // momentum, factors, caches
    snprintf(key, sizeof key, "%s/mom", sc);
    gather(fx, &tab, key, ref);
    double bm = fixture_budget(st.mom, ref, n, 1e-7, 1e-6);
    CHECK(bm <= 1.0, "parity %s: momentum (budget %.3f)", sc, bm);
    double bq = 0.0, bp = 0.0;
    int shapes_ok = 1;
    for (int i = 0; i < tab.n; i++)
        for (int a = 0; a < st.t[i].ndim; a++) {
            size_t m = (size_t)st.t[i].shape[a];
            size_t cnt = st.t[i].dense[a] ? m * m : m;
            snprintf(key, sizeof key, "%s/q/%s/%d", sc, NAMES[i], a);
            FixTensor *q = need(fx, key);
            snprintf(key, sizeof key, "%s/p/%s/%d", sc, NAMES[i], a);
            FixTensor *pp = need(fx, key);
            if (q->numel != cnt || pp->numel != cnt || q->ndim != (st.t[i].dense[a] ? 2 : 1)) {
                shapes_ok = 0;
                printf("  %s/%s axis %d: reference factor has %zu values, ours %zu (dense %d)\n", sc, NAMES[i], a, q->numel, cnt, st.t[i].dense[a]);
                continue;
            }
            bq = fmax(bq, fixture_budget(st.t[i].q[a], q->data, cnt, 1e-6, 1e-5));
            bp = fmax(bp, fixture_budget(st.t[i].p[a], pp->data, cnt, 1e-6, 1e-5));
        }
    CHECK(shapes_ok, "parity %s: dense/diagonal factor layout equals the reference's", sc);
    CHECK(bq <= 1.0, "parity %s: factors Q (budget %.3f)", sc, bq);
    CHECK(bp <= 1.0, "parity %s: caches P (budget %.3f)", sc, bp);
    psgd_free(&st);
    nn_free(p);
    nn_free(g);
    free(h), free(hg), free(ref);
    ptable_free(&tab);
}

// ---- 2. schedule ---------------------------------------------------------------------------------
static void schedule(Fixture *fx) {
    FixTensor *k = need(fx, "schedule/k"), *r = need(fx, "schedule/r"), *p = need(fx, "schedule/p");
    PsgdConfig c;
    psgd_config_default(&c);
    double wr = 0.0, wp = 0.0;
    for (size_t i = 0; i < k->numel; i++) {
        double x;
        psgd_schedule(&c, (int64_t)k->data[i], &x, NULL);
        wr = fmax(wr, fabs(x - r->data[i]));
        wp = fmax(wp, fabs(psgd_update_probability(&c, (int64_t)k->data[i]) - p->data[i]) / p->data[i]);
    }
    CHECK(wr < 1e-7, "schedule: r = random.Random(0x172381 ^ k).random() for %zu k up to 262144 (max |diff| %.2e vs float32 fixture)", k->numel, wr);
    CHECK(wp < 1e-7, "schedule: p(k) = max(1/64, 0.999^k) (max rel diff %.2e)", wp);
    CHECK(psgd_update_probability(&c, 1) == 0.999 && psgd_update_probability(&c, 10000) == 1.0 / 64.0,
          "schedule: p(1) = 0.999, p(10000) = 1/64");
    // forcing: never / always
    c.force_update = 0;
    int any = 0;
    for (int64_t kk = 1; kk <= 50; kk++) any |= psgd_schedule(&c, kk, NULL, NULL);
    c.force_update = 1;
    int all = 1;
    for (int64_t kk = 1; kk <= 50; kk++) all &= psgd_schedule(&c, kk, NULL, NULL);
    CHECK(!any && all, "schedule: force_update 0 never and 1 always updates");
}

// heavyball trust_region_clip_ alone, through the op (CPU backend memory is host memory):
// psgd_clip_update overwrites x with the clipped update (the parameter side is a dummy).
static void trust_region_clip(float *x, size_t n) {
    float *dummy = LOLA_NEW(float, n > 0 ? n : 1);
    psgd_clip_update(dummy, x, n, 1.0f, 0.0f);
    free(dummy);
}

// ---- 3. step 1 with the identity cache -----------------------------------------------------------
static void first_step(void) {
    ParamTable tab;
    tiny_table(&tab);
    size_t n = tab.total;
    PsgdConfig pc;
    psgd_config_default(&pc);
    pc.force_update = 1;
    PsgdState st;
    psgd_init(&st, &pc, &tab);
    float *h0 = LOLA_NEW(float, n), *hg = LOLA_NEW(float, n), *want = LOLA_NEW(float, n), *h1 = LOLA_NEW(float, n);
    for (size_t i = 0; i < n; i++) h0[i] = rng_hash_normal(11, i), hg[i] = 2.0f * rng_hash_normal(12, i);
    float *p = nn_alloc(n), *g = nn_alloc(n);
    nn_to_backend(p, h0, n);
    nn_to_backend(g, hg, n);
    const float lr = 0.03f;
    psgd_step(&st, p, g, lr, 0.0f, 1);
    nn_to_host(h1, p, n);
    memcpy(want, hg, n * sizeof(float));
    trust_region_clip(want, n);
    for (size_t i = 0; i < n; i++) want[i] = h0[i] * 1.0f + want[i] * -lr;
    CHECK(memcmp(h1, want, n * sizeof(float)) == 0, "step 1: theta1 = theta0 - lr clip(G) bit for bit (cache = I, m = G)");
    CHECK(memcmp(st.mom, hg, n * sizeof(float)) == 0, "step 1: momentum equals the gradient bit for bit");
    int cache_i = 1, moved = 1;
    for (int i = 0; i < tab.n; i++)
        for (int a = 0; a < st.t[i].ndim; a++) {
            if (!st.t[i].dense[a]) continue;
            int m = (int)st.t[i].shape[a];
            double dq = 0.0;
            for (int r = 0; r < m; r++)
                for (int c = 0; c < m; c++) {
                    cache_i &= st.t[i].p[a][r * m + c] == (r == c ? 1.0f : 0.0f);
                    dq = fmax(dq, fabs(st.t[i].q[a][r * m + c] - (r == c ? 1.0 : 0.0)));
                    if (c < r && st.t[i].q[a][r * m + c] != 0.0f) moved = 0; // stays upper triangular
                }
            if (dq < 1e-6) moved = 0;
        }
    CHECK(cache_i, "step 1: dense caches are refreshed from Q before the update, so they stay exactly I");
    CHECK(moved, "step 1: every dense Q moved away from I and stayed upper triangular");
    psgd_free(&st);
    nn_free(p), nn_free(g);
    free(h0), free(hg), free(want), free(h1);
    ptable_free(&tab);
}

// ---- 4. momentum ----------------------------------------------------------------------------------
static void momentum(void) {
    ParamTable tab;
    memset(&tab, 0, sizeof tab);
    int64_t shp[1] = {9};
    ptable_add(&tab, "b", 1, shp, INIT_ZERO, 1, 1, 1.0f);
    PsgdConfig pc;
    psgd_config_default(&pc);
    pc.force_update = 0; // the cache stays q^2 = 1: U' = m
    PsgdState st;
    psgd_init(&st, &pc, &tab);
    float *p = nn_alloc(9), *g = nn_alloc(9), hg[9], hp[9];
    double m[9] = {0}, worst = 0.0, wclip = 0.0;
    float prev[9] = {0};
    for (int k = 1; k <= 6; k++) {
        for (int i = 0; i < 9; i++) hg[i] = rng_hash_normal(99 + k, i);
        nn_to_backend(g, hg, 9);
        nn_to_host(prev, p, 9);
        psgd_step(&st, p, g, 0.1f, 0.0f, k);
        double b = 1.0 - 0.1 / (1.0 - pow(0.9, k));
        for (int i = 0; i < 9; i++) {
            m[i] = b * m[i] + (1.0 - b) * hg[i];
            worst = fmax(worst, fabs(st.mom[i] - m[i]));
        }
        // the step is -lr clip(m) (no preconditioning with a never-updated unit cache)
        nn_to_host(hp, p, 9);
        for (int i = 0; i < 9; i++) {
            double x = m[i] / 1.5, y = 1.5 * (0.1 * (x > 0 ? 1 : -1) * log1p(fabs(x)) + 0.9 * tanh(x));
            y = fmin(2.0, fmax(-2.0, y));
            wclip = fmax(wclip, fabs((hp[i] - prev[i]) - (-0.1 * y)));
        }
    }
    CHECK(worst < 1e-6, "momentum: m_k = b_k m + (1 - b_k) G, b_k = 1 - 0.1/(1 - 0.9^k), over 6 steps (max |diff| %.2e)", worst);
    CHECK(wclip < 1e-6, "momentum: without preconditioner updates the step is -lr clip(m) (max |diff| %.2e)", wclip);
    psgd_free(&st);
    nn_free(p), nn_free(g);
    ptable_free(&tab);
}

// ---- 5. clipping and the lower bound --------------------------------------------------------------
static void clip_and_lb(void) {
    float xs[] = {0.0f, 1e-8f, 0.3f, -0.3f, 1.0f, -1.5f, 3.0f, -7.0f, 40.0f, -100.0f, 1000.0f, -1e6f};
    int n = (int)(sizeof xs / sizeof xs[0]);
    float y[16];
    memcpy(y, xs, sizeof xs);
    trust_region_clip(y, (size_t)n);
    double worst = 0.0;
    int odd = 1, bounded = 1;
    for (int i = 0; i < n; i++) {
        double x = xs[i] / 1.5, s = x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
        double want = fmin(2.0, fmax(-2.0, 1.5 * (0.1 * s * log1p(fabs(x)) + 0.9 * tanh(x))));
        worst = fmax(worst, fabs(y[i] - want));
        bounded &= fabsf(y[i]) <= 2.0f;
        float z = -xs[i];
        trust_region_clip(&z, 1);
        odd &= z == -y[i];
    }
    printf("  clip: 0.3 -> %.6f, 3 -> %.6f, 40 -> %.6f, 1000 -> %.6f\n", y[2], y[6], y[8], y[10]);
    CHECK(worst < 1e-6, "clip: clamp(1.5 (0.1 sign(x') log1p|x'| + 0.9 tanh x'), -2, 2), x' = x/1.5 (max |diff| %.2e)", worst);
    CHECK(odd && bounded && y[10] == 2.0f && y[11] == -2.0f && fabsf(y[2] - 0.3f) < 0.01f,
          "clip: odd, bounded by 2, saturates at +-2, ~identity near 0");
    // lower bound of the spectral norm of a symmetric PSD matrix (Wishart)
    const int m = 24, k = 40;
    float *X = LOLA_NEW(float, m * k), *A = LOLA_NEW(float, m * m);
    double *v = LOLA_NEW(double, m), *w = LOLA_NEW(double, m);
    for (int i = 0; i < m * k; i++) X[i] = rng_hash_normal(5, i) * (1.0f + (i % k) * 0.05f);
    float mx = 0.0f;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double s = 0.0;
            for (int c = 0; c < k; c++) s += (double)X[i * k + c] * X[j * k + c];
            A[i * m + j] = (float)s;
            mx = fmaxf(mx, fabsf((float)s));
        }
    double lam = 0.0; // power iteration in double
    for (int i = 0; i < m; i++) v[i] = 1.0;
    for (int it = 0; it < 500; it++) {
        double nn = 0.0;
        for (int i = 0; i < m; i++) {
            w[i] = 0.0;
            for (int j = 0; j < m; j++) w[i] += A[i * m + j] * v[j];
            nn += w[i] * w[i];
        }
        nn = sqrt(nn);
        for (int i = 0; i < m; i++) v[i] = w[i] / nn;
        lam = nn;
    }
    float lbw[3 * 24];
    float lb = psgd_norm_lower_bound(A, lbw, m, mx);
    printf("  lower bound %.6g, spectral norm %.6g, max |A_ij| %.6g\n", lb, lam, mx);
    CHECK(lb <= lam * (1 + 1e-5) && lb >= 0.9 * lam, "lb: max|A| <= ... : the spectral-norm lower bound is within [0.9, 1] x ||A||_2");
    free(X), free(A), free(v), free(w);
}

// ---- 6. axis rules --------------------------------------------------------------------------------
static void axis_rules(void) {
    PsgdConfig c;
    psgd_config_default(&c);
    CHECK(psgd_axis_dense(&c, 2, 4096) && !psgd_axis_dense(&c, 2, 4097) && !psgd_axis_dense(&c, 2, 1) &&
              !psgd_axis_dense(&c, 1, 64) && psgd_axis_dense(&c, 4, 3) && psgd_axis_dense(&c, 2, 2),
          "axes: dense iff ndim >= 2 and 1 < n <= 4096");
    ParamTable tab;
    memset(&tab, 0, sizeof tab);
    int64_t s1[2] = {4097, 2}, s2[4] = {8, 5, 1, 1}, s3[1] = {6};
    ptable_add(&tab, "wide", 2, s1, INIT_ZERO, 1, 1, 1.0f);
    ptable_add(&tab, "c1x1", 4, s2, INIT_ZERO, 1, 1, 1.0f);
    ptable_add(&tab, "bias", 1, s3, INIT_ZERO, 1, 1, 1.0f);
    PsgdState st;
    psgd_init(&st, &c, &tab);
    CHECK(!st.t[0].dense[0] && st.t[0].dense[1] && st.t[1].dense[0] && st.t[1].dense[1] && !st.t[1].dense[2] &&
              !st.t[1].dense[3] && !st.t[2].dense[0],
          "axes: (4097, 2) -> diagonal, dense; (8, 5, 1, 1) -> dense, dense, diagonal, diagonal; bias -> diagonal");
    int ones = 1;
    for (int64_t i = 0; i < 4097; i++) ones &= st.t[0].q[0][i] == 1.0f && st.t[0].p[0][i] == 1.0f;
    CHECK(ones, "axes: diagonal factors and caches start at 1");
    size_t state = 0, scratch = 0;
    psgd_state_floats(&c, &tab, &state, &scratch);
    size_t want = tab.total + 2 * (4097 + 4) + 2 * (64 + 25 + 1 + 1) + 2 * 6;
    CHECK(state == want, "axes: state floats %zu = momentum + 2 x factors (%zu)", state, want);
    CheckpointTensor ct[32];
    int nt = psgd_state_tensors(&st, ct, 32);
    CHECK(nt == 14 && strcmp(ct[0].name, "wide/q0") == 0 && ct[0].ndim == 1 && strcmp(ct[3].name, "wide/p1") == 0 &&
              ct[3].ndim == 2 && ct[3].shape[1] == 2,
          "axes: checkpoint view names '<param>/q<a>', '<param>/p<a>' with their shapes (%d tensors)", nt);
    psgd_free(&st);
    ptable_free(&tab);
}

// ---- 7. a small quadratic converges --------------------------------------------------------------
// f(X, b) = 0.5 ||L X R + b 1^T - T||^2 with ill-conditioned L (8 x 8) and R (6 x 6).
static double quad_loss(const float *x, const float *L, const float *R, const float *T, float *grad) {
    double f = 0.0;
    float LX[48], E[48];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 6; j++) {
            double s = 0;
            for (int k = 0; k < 8; k++) s += L[i * 8 + k] * x[k * 6 + j];
            LX[i * 6 + j] = (float)s;
        }
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 6; j++) {
            double s = x[48 + i] - T[i * 6 + j];
            for (int k = 0; k < 6; k++) s += LX[i * 6 + k] * R[k * 6 + j];
            E[i * 6 + j] = (float)s;
            f += 0.5 * s * s;
        }
    if (grad) {
        float ER[48]; // E R^T
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 6; k++) {
                double s = 0;
                for (int j = 0; j < 6; j++) s += E[i * 6 + j] * R[k * 6 + j];
                ER[i * 6 + k] = (float)s;
            }
        for (int k = 0; k < 8; k++)
            for (int j = 0; j < 6; j++) {
                double s = 0;
                for (int i = 0; i < 8; i++) s += L[i * 8 + k] * ER[i * 6 + j];
                grad[k * 6 + j] = (float)s;
            }
        for (int i = 0; i < 8; i++) {
            double s = 0;
            for (int j = 0; j < 6; j++) s += E[i * 6 + j];
            grad[48 + i] = (float)s;
        }
    }
    return f;
}

static void quadratic(void) {
    ParamTable tab;
    memset(&tab, 0, sizeof tab);
    int64_t sx[2] = {8, 6}, sb[1] = {8};
    ptable_add(&tab, "x", 2, sx, INIT_ZERO, 1, 1, 1.0f);
    ptable_add(&tab, "b", 1, sb, INIT_ZERO, 1, 1, 1.0f);
    float L[64], R[36], T[48], X0[56] = {0};
    for (int i = 0; i < 64; i++) L[i] = (i / 8 == i % 8 ? powf(4.0f, (float)(i / 8) / 7.0f) : 0.0f) + 0.2f * rng_hash_normal(21, i);
    for (int i = 0; i < 36; i++) R[i] = (i / 6 == i % 6 ? powf(0.25f, (float)(i / 6) / 5.0f) : 0.0f) + 0.1f * rng_hash_normal(22, i);
    for (int i = 0; i < 48; i++) T[i] = rng_hash_normal(23, i);
    double f0 = quad_loss(X0, L, R, T, NULL);
    OptimConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPTIM_PSGD;
    oc.beta1 = 0.9f;
    oc.grad_clip = 0.0f;
    Optim o;
    optim_init_table(&o, &oc, &tab);
    float *p = nn_alloc(56), *g = nn_alloc(56), hp[56], hg[56];
    double f = f0;
    int steps = 600;
    for (int k = 0; k < steps; k++) {
        nn_to_host(hp, p, 56);
        f = quad_loss(hp, L, R, T, hg);
        nn_to_backend(g, hg, 56);
        float lr = 0.02f * (0.5f * (1.0f + cosf(3.14159265f * k / steps))) + 1e-4f;
        optim_step(&o, p, g, lr, NULL);
    }
    nn_to_host(hp, p, 56);
    f = quad_loss(hp, L, R, T, NULL);
    // the optimum (least squares) for reference: plain gradient descent in double, many steps
    double fmin_ = f0;
    {
        float x[56] = {0}, gr[56];
        for (int it = 0; it < 200000; it++) {
            fmin_ = quad_loss(x, L, R, T, gr);
            for (int i = 0; i < 56; i++) x[i] -= 0.02f * gr[i];
        }
    }
    printf("  quadratic: loss %.6g at start, %.6g after %d PSGD steps, %.6g at the optimum\n", f0, f, steps, fmin_);
    CHECK(isfinite(f) && f - fmin_ < 1e-3 * (f0 - fmin_), "quadratic: PSGD closes > 99.9%% of the gap to the optimum in %d steps", steps);
    optim_free(&o);
    nn_free(p), nn_free(g);
    ptable_free(&tab);
}

// ---- 8. optimizer + checkpoint glue, bit-exact continuation --------------------------------------
static void run_steps(Optim *o, float *p, float *g, float *hg, size_t n, int k0, int k1) {
    for (int k = k0; k < k1; k++) {
        for (size_t i = 0; i < n; i++) hg[i] = rng_hash_normal(700 + k, i) * (i % 3 == 0 ? 3.0f : 0.3f);
        nn_to_backend(g, hg, n);
        double norm;
        optim_step(o, p, g, 0.01f, &norm);
    }
}

static void checkpoint_glue(void) {
    ParamTable tab;
    tiny_table(&tab);
    size_t n = tab.total;
    OptimConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPTIM_PSGD;
    oc.beta1 = 0.9f;
    oc.grad_clip = 1.0f;
    oc.weight_decay = 0.01f;
    oc.precond_frequency = 2; // min probability 1/2 and a fast decay: some steps skip the update
    oc.precond_decay = 0.5;
    Optim a;
    optim_init_table(&a, &oc, &tab);
    CHECK(a.psgd && !a.m && !a.v && optim_moment_slots(&a) == 1 && strcmp(optim_kind_name(OPTIM_PSGD), "psgd") == 0,
          "glue: OPTIM_PSGD keeps PSGD state, one moment slot (m = momentum)");
    float *p = nn_alloc(n), *g = nn_alloc(n), *hg = LOLA_NEW(float, n), *h = LOLA_NEW(float, n);
    float *hm = LOLA_NEW(float, n), *hv = LOLA_NEW(float, n), *pa = LOLA_NEW(float, n), *pb = LOLA_NEW(float, n);
    for (size_t i = 0; i < n; i++) h[i] = 0.3f * rng_hash_normal(31, i);
    nn_to_backend(p, h, n);
    run_steps(&a, p, g, hg, n, 0, 5);
    // save
    char path[] = "/tmp/lola_test_psgd_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    nn_to_host(h, p, n);
    optim_moments_to_host(&a, hm, hv);
    CheckpointExtra ex;
    optim_extra_state(&a, &ex);
    CheckpointMeta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.kind, sizeof meta.kind, "ae");
    snprintf(meta.optimizer, sizeof meta.optimizer, "%s", optim_kind_name(a.cfg.kind));
    meta.optim_t = a.t;
    checkpoint_save_ex(path, &meta, &tab, h, hm, NULL, &ex, NULL);
    // continue the original
    run_steps(&a, p, g, hg, n, 5, 11);
    nn_to_host(pa, p, n);
    // reload into a fresh optimizer and continue
    Optim b;
    optim_init_table(&b, &oc, &tab);
    CheckpointMeta m2;
    int has_optim = 0;
    char err[1024] = "";
    int rc = checkpoint_load(path, "ae", &tab, h, hm, NULL, &m2, &has_optim, err, sizeof err);
    CheckpointExtra exb;
    optim_extra_state(&b, &exb);
    int rc2 = rc == 0 ? checkpoint_load_extra(path, &exb, err, sizeof err) : -1;
    CHECK(rc == 0 && rc2 == 0 && has_optim && strcmp(m2.optimizer, "psgd") == 0 && m2.optim_t == 5,
          "glue: checkpoint with PSGD state loads (optimizer '%s', t %lld) %s", m2.optimizer, (long long)m2.optim_t, err);
    optim_moments_from_host(&b, hm, NULL);
    b.t = m2.optim_t;
    nn_to_backend(p, h, n);
    run_steps(&b, p, g, hg, n, 5, 11);
    nn_to_host(pb, p, n);
    int same_state = memcmp(a.psgd->mom, b.psgd->mom, n * sizeof(float)) == 0 &&
                     memcmp(a.psgd->arena, b.psgd->arena, a.psgd->arena_floats * sizeof(float)) == 0;
    CHECK(memcmp(pa, pb, n * sizeof(float)) == 0 && same_state,
          "glue: save after 5 steps, reload, 6 more steps == 11 uninterrupted steps, bit for bit (params, momentum, Q, P)");
    int upd = 0;
    for (int k = 1; k <= 11; k++) upd += psgd_schedule(&a.psgd->cfg, k, NULL, NULL);
    CHECK(upd > 0 && upd < 11, "glue: the continuation covers steps with and without preconditioner updates (%d of 11 update)", upd);
    // a table with another shape is refused by name
    ParamTable other;
    memset(&other, 0, sizeof other);
    for (int i = 0; i < 4; i++) {
        int64_t s[4];
        memcpy(s, SHAPES[i], sizeof s);
        if (i == 0) s[1] = 8;
        ptable_add(&other, NAMES[i], NDIMS[i], s, INIT_ZERO, 1, 1, 1.0f);
    }
    Optim c;
    optim_init_table(&c, &oc, &other);
    CheckpointExtra exc;
    optim_extra_state(&c, &exc);
    rc = checkpoint_load_extra(path, &exc, err, sizeof err);
    printf("  %s\n", err);
    CHECK(rc != 0 && strstr(err, "w2d/") != NULL, "glue: PSGD state of another shape is refused naming the tensor");
    optim_free(&c);
    ptable_free(&other);
    unlink(path);
    optim_free(&a);
    optim_free(&b);
    nn_free(p), nn_free(g);
    free(hg), free(h), free(hm), free(hv), free(pa), free(pb);
    ptable_free(&tab);
}

static void bad_merge(void *arg) {
    (void)arg;
    ParamTable tab;
    tiny_table(&tab);
    OptimConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPTIM_PSGD;
    oc.merge_dims = 1;
    Optim o;
    optim_init_table(&o, &oc, &tab);
}

// ---- 9. state memory of LoLa's autoencoders -------------------------------------------------------
static void memory_report(void) {
    PsgdConfig c;
    psgd_config_default(&c);
    const char *names[3] = {"dcae_f32c64_large paper-era (Euler, 5 ch, lat 64)", "dcae_f32c64_large HEAD", "dcae_f32c64_small paper-era"};
    for (int v = 0; v < 3; v++) {
        DcaeConfig dc;
        if (v < 2)
            dcae_config_large(&dc, 5, 64, v == 0);
        else
            dcae_config_small(&dc, 5, 64, 1);
        ParamTable t;
        memset(&t, 0, sizeof t);
        dcae_build_table(&dc, &t);
        size_t state = 0, scratch = 0, fq = 0, maxd = 0;
        double flops_pre = 0.0, flops_upd = 0.0;
        for (int i = 0; i < t.n; i++) {
            const ParamSpec *r = &t.rows[i];
            for (int a = 0; a < r->ndim; a++) {
                if (!psgd_axis_dense(&c, r->ndim, r->shape[a])) { fq += 2 * (size_t)r->shape[a]; continue; }
                double na = (double)r->shape[a];
                fq += 2 * (size_t)(na * na);
                if ((size_t)na > maxd) maxd = (size_t)na;
                flops_pre += 2.0 * na * (double)r->numel;                         // U x_a P
                flops_upd += 2.0 * na * r->numel + na * r->numel + 4.0 * na * r->numel // A, conjB, 2 grams
                             + 4.0 * na * na * na;                                 // Q^T Q, triu(T1) Q
            }
        }
        psgd_state_floats(&c, &t, &state, &scratch);
        printf("INFO psgd memory %s: %zu params; state %.1f MiB (momentum %.1f MiB + factors and caches %.1f MiB), "
               "scratch %.1f MiB; largest dense axis %zu; ~%.1f GFLOP per step + ~%.1f GFLOP per preconditioner update\n",
               names[v], t.total, state * 4.0 / 1048576, t.total * 4.0 / 1048576, fq * 4.0 / 1048576, scratch * 4.0 / 1048576,
               maxd, flops_pre * 1e-9, flops_upd * 1e-9);
        ptable_free(&t);
    }
}

int main(void) {
    nn_init(-1);
    FILE *f = fopen(FIXTURE, "rb");
    if (!f) {
        CHECK(0, "fixture %s present (regenerate: python3 tests/torch_psgd.py %s)", FIXTURE, FIXTURE);
    } else {
        fclose(f);
        Fixture fx = fixture_load(FIXTURE);
        parity(&fx, "forced");
        parity(&fx, "sched");
        parity(&fx, "small");
        schedule(&fx);
    }
    first_step();
    momentum();
    clip_and_lb();
    axis_rules();
    quadratic();
    checkpoint_glue();
    CHECK_DIES(bad_merge, NULL, "merge_dims", "glue: psgd with merge_dims=true is refused");
    memory_report();
    return test_summary();
}
