// test_metrics.c: LoLa's evaluation metrics against hand-computed values and a PyTorch fixture
// (tests/torch_metrics.py). Tolerance: |a - b| <= 1e-9 + 1e-6 |b| (float64 reference, float32 inputs).
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "fixture.h"
#include "metrics.h"
#include "test.h"

static void hand_checked(void) {
    // 1-D grid of 4 points: u = [1, 2, 3, 4].
    SpectrumPlan sp;
    int shape1[1] = {4};
    spectrum_plan_init(&sp, 1, shape1);
    float u[4] = {1, 2, 3, 4};
    float v2[8] = {1, 2, 3, 5, 1, 2, 3, 3}; // ensemble mean equals u
    StateMetrics m;
    state_metrics(&sp, u, NULL, v2, 2, &m, NULL);
    CHECK_CLOSE(m.m1, 2.5, 1e-12, 0, "m1 of [1,2,3,4] = 2.5");
    CHECK_CLOSE(m.m2, 7.5, 1e-12, 0, "m2 of [1,2,3,4] = 7.5");
    CHECK_CLOSE(m.rmse, 0.0, 1e-12, 0, "rmse of an exact ensemble mean = 0");
    CHECK_CLOSE(m.spread, sqrt(3.0 * 0.25), 1e-12, 0, "spread with the (S+1)/(S-1) correction = sqrt(3 * 0.25)");
    float v1[4] = {2, 3, 4, 5};
    state_metrics(&sp, u, NULL, v1, 1, &m, NULL);
    CHECK_CLOSE(m.rmse, 1.0, 1e-12, 0, "rmse of a +1 offset = 1");
    CHECK_CLOSE(m.vrmse, sqrt(1.0 / (5.0 / 3.0 + 1e-6)), 1e-12, 0, "vrmse uses the unbiased variance 5/3");
    CHECK_CLOSE(m.nrmse, sqrt(1.0 / (7.5 + 1e-6)), 1e-12, 0, "nrmse = sqrt(mse / (m2 + 1e-6))");
    CHECK_CLOSE(m.re_total, 1.0 - 14.0 / 10.0, 1e-12, 0, "re_total = 1 - 14/10");
    CHECK(m.spread == 0.0, "spread is 0 for a single member");
    spectrum_plan_free(&sp);

    // 4x4 grid (lola-spec.md 10.3): B = 2, edges [0, 0.35355, 0.70711]; |k| = 0 only in bin 0,
    // |k| = 0.25 in bin 1, |k| >= 0.5 in bin 2 (the diagonal 0.35355 sits on an edge: not checked).
    int shape2[2] = {4, 4};
    spectrum_plan_init(&sp, 2, shape2);
    CHECK(sp.B == 2, "4x4 grid has 2 bins (got %d)", sp.B);
    CHECK_CLOSE(sp.k[0], 0.35355339, 1e-6, 0, "first bin frequency = 0.35355");
    CHECK_CLOSE(sp.k[1], 0.70710678, 1e-6, 0, "second bin frequency = 0.70711");
    int ok0 = 1, ok1 = 1, ok2 = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double fi = (i < 2 ? i : i - 4) / 4.0, fj = (j < 2 ? j : j - 4) / 4.0, k = sqrt(fi * fi + fj * fj);
            int b = sp.index[i * 4 + j];
            if (k == 0) ok0 &= b == 0;
            else if (fabs(k - 0.25) < 1e-9) ok1 &= b == 1;
            else if (k >= 0.5) ok2 &= b == 2;
        }
    CHECK(ok0 && sp.count[0] == 1, "4x4: |k| = 0 alone in bin 0");
    CHECK(ok1, "4x4: |k| = 0.25 in bin 1");
    CHECK(ok2, "4x4: |k| >= 0.5 in bin 2");
    spectrum_plan_free(&sp);

    // Bin counts of the paper grids (lola-spec.md 10.3).
    int s512[2] = {512, 512}, s_rb[2] = {512, 128}, s3[3] = {64, 64, 64};
    spectrum_plan_init(&sp, 2, s512);
    CHECK(sp.B == 362, "512x512 has 362 bins");
    CHECK_CLOSE(sp.k[0], 0.0019533, 1e-7, 0, "512x512 first bin frequency 0.0019533");
    CHECK_CLOSE(sp.band[1], 0.0124, 1e-4, 0, "512x512 band edge 2 ~ 0.0124");
    CHECK_CLOSE(sp.band[2], 0.0787, 1e-4, 0, "512x512 band edge 3 ~ 0.0787");
    spectrum_plan_free(&sp);
    spectrum_plan_init(&sp, 2, s_rb);
    CHECK(sp.B == 90, "512x128 has 90 bins");
    spectrum_plan_free(&sp);
    spectrum_plan_init(&sp, 3, s3);
    CHECK(sp.B == 55, "64^3 has 55 bins");
    spectrum_plan_free(&sp);
}

static void against_torch(const char *path) {
    Fixture f = fixture_load(path);
    const char *cases[3] = {"a", "b", "c"};
    const char *cols[15] = {"m1", "m2", "spread", "rmse", "nrmse", "vrmse", "re_total", "rmse_p_low", "rmse_c_low",
                            "rmse_p_mid", "rmse_c_mid", "rmse_p_high", "rmse_c_high", "rmse_p_sub", "rmse_c_sub"};
    for (int c = 0; c < 3; c++) {
        char name[64];
        snprintf(name, sizeof name, "%s.u", cases[c]);
        FixTensor *u = fixture_get(&f, name);
        snprintf(name, sizeof name, "%s.ae", cases[c]);
        FixTensor *ae = fixture_get(&f, name);
        snprintf(name, sizeof name, "%s.v", cases[c]);
        FixTensor *v = fixture_get(&f, name);
        snprintf(name, sizeof name, "%s.abs", cases[c]);
        FixTensor *ra = fixture_get(&f, name);
        snprintf(name, sizeof name, "%s.rel", cases[c]);
        FixTensor *rr = fixture_get(&f, name);
        snprintf(name, sizeof name, "%s.power", cases[c]);
        FixTensor *pw = fixture_get(&f, name);
        if (!u || !ae || !v || !ra || !rr || !pw) { CHECK(0, "fixture case %s complete", cases[c]); continue; }
        int shape[3];
        for (int d = 0; d < u->ndim; d++) shape[d] = (int)u->dims[d];
        SpectrumPlan sp;
        spectrum_plan_init(&sp, u->ndim, shape);
        StateMetrics ma, mr;
        state_metrics(&sp, u->data, ae->data, v->data, (int)v->dims[0], &ma, &mr);
        double got_a[15] = {ma.m1, ma.m2, ma.spread, ma.rmse, ma.nrmse, ma.vrmse, ma.re_total},
               got_r[15] = {mr.m1, mr.m2, mr.spread, mr.rmse, mr.nrmse, mr.vrmse, mr.re_total};
        for (int b = 0; b < 4; b++) {
            got_a[7 + 2 * b] = ma.rmse_p[b];
            got_a[8 + 2 * b] = ma.rmse_c[b];
            got_r[7 + 2 * b] = mr.rmse_p[b];
            got_r[8 + 2 * b] = mr.rmse_c[b];
        }
        for (int i = 0; i < 15; i++) {
            if (isnan(ra->data[i]) && isnan(got_a[i]) && isnan(rr->data[i]) && isnan(got_r[i])) {
                CHECK(1, "case %s %s: empty band is NaN in both", cases[c], cols[i]);
                continue;
            }
            CHECK_CLOSE(got_a[i], ra->data[i], 1e-6, 1e-5, "case %s (%dD) %s vs PyTorch", cases[c], u->ndim, cols[i]);
            CHECK_CLOSE(got_r[i], rr->data[i], 1e-6, 1e-5, "case %s relative %s vs PyTorch", cases[c], cols[i]);
        }
        double *p = LOLA_NEW(double, sp.B);
        isotropic_power_spectrum(&sp, u->data, p);
        double worst = 0;
        for (int b = 0; b < sp.B; b++) {
            double r = fabs(p[b] - pw->data[b]) / (1e-7 + 1e-5 * fabs(pw->data[b]));
            if (!(r <= worst)) worst = r;
        }
        CHECK(worst <= 1.0 && (int)pw->numel == sp.B, "case %s power spectrum vs PyTorch (budget used %.3f)", cases[c], worst);
        free(p);
        spectrum_plan_free(&sp);
    }
}

int main(void) {
    hand_checked();
    against_torch("tests/fixtures/metrics.bin");
    return test_summary();
}
