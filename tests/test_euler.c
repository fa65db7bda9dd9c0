// test_euler.c: the Euler finite-volume solver (src/euler.c) against the exact Riemann solution
// (Sod shock tube along x and y), convergence with resolution, x/y symmetry, positivity on a harsh
// case, conservation with periodic boundaries, Well-style downsampling, determinism.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "euler.h"
#include "test.h"

// ---- exact Riemann solver for the 1-D Euler equations (Toro, ch. 4; written for this test) -----
typedef struct {
    double r, u, p;
} Prim1;

// Pressure function f_K(p) and its derivative for side K (shock if p > pK, else rarefaction).
static void pfun(double p, Prim1 K, double g, double *f, double *df) {
    double c = sqrt(g * K.p / K.r);
    if (p > K.p) {
        double A = 2.0 / ((g + 1.0) * K.r), B = (g - 1.0) / (g + 1.0) * K.p;
        double q = sqrt(A / (p + B));
        *f = (p - K.p) * q;
        *df = q * (1.0 - 0.5 * (p - K.p) / (B + p));
    } else {
        double e = (g - 1.0) / (2.0 * g);
        *f = 2.0 * c / (g - 1.0) * (pow(p / K.p, e) - 1.0);
        *df = 1.0 / (K.r * c) * pow(p / K.p, -(g + 1.0) / (2.0 * g));
    }
}

// Star pressure by Newton iteration from the two-rarefaction guess; star velocity.
static void star_state(Prim1 L, Prim1 R, double g, double *ps, double *us) {
    double cL = sqrt(g * L.p / L.r), cR = sqrt(g * R.p / R.r), e = (g - 1.0) / (2.0 * g);
    double p = pow((cL + cR - 0.5 * (g - 1.0) * (R.u - L.u)) / (cL / pow(L.p, e) + cR / pow(R.p, e)), 1.0 / e);
    if (!(p > 1e-10)) p = 1e-10;
    for (int it = 0; it < 100; it++) {
        double fL, dL, fR, dR;
        pfun(p, L, g, &fL, &dL);
        pfun(p, R, g, &fR, &dR);
        double pn = p - (fL + fR + R.u - L.u) / (dL + dR);
        if (pn < 1e-10) pn = 1e-10;
        double ch = 2.0 * fabs(pn - p) / (pn + p);
        p = pn;
        if (ch < 1e-14) break;
    }
    double fL, dL, fR, dR;
    pfun(p, L, g, &fL, &dL);
    pfun(p, R, g, &fR, &dR);
    *ps = p;
    *us = 0.5 * (L.u + R.u) + 0.5 * (fR - fL);
}

// Exact solution at similarity coordinate S = x/t (Toro §4.5 sampling).
static Prim1 sample_exact(Prim1 L, Prim1 R, double g, double ps, double us, double S) {
    const double g1 = (g - 1.0) / (g + 1.0);
    Prim1 o;
    if (S <= us) { // left of the contact
        double c = sqrt(g * L.p / L.r);
        if (ps > L.p) { // left shock
            double SL = L.u - c * sqrt((g + 1.0) / (2.0 * g) * ps / L.p + (g - 1.0) / (2.0 * g));
            if (S <= SL) return L;
            o.r = L.r * (ps / L.p + g1) / (g1 * ps / L.p + 1.0);
            o.u = us;
            o.p = ps;
            return o;
        }
        double cs = c * pow(ps / L.p, (g - 1.0) / (2.0 * g));
        double SH = L.u - c, ST = us - cs;
        if (S <= SH) return L;
        if (S >= ST) {
            o.r = L.r * pow(ps / L.p, 1.0 / g);
            o.u = us;
            o.p = ps;
            return o;
        }
        double k = 2.0 / (g + 1.0) + g1 / c * (L.u - S);
        o.r = L.r * pow(k, 2.0 / (g - 1.0));
        o.u = 2.0 / (g + 1.0) * (c + 0.5 * (g - 1.0) * L.u + S);
        o.p = L.p * pow(k, 2.0 * g / (g - 1.0));
        return o;
    }
    double c = sqrt(g * R.p / R.r);
    if (ps > R.p) { // right shock
        double SR = R.u + c * sqrt((g + 1.0) / (2.0 * g) * ps / R.p + (g - 1.0) / (2.0 * g));
        if (S >= SR) return R;
        o.r = R.r * (ps / R.p + g1) / (g1 * ps / R.p + 1.0);
        o.u = us;
        o.p = ps;
        return o;
    }
    double cs = c * pow(ps / R.p, (g - 1.0) / (2.0 * g));
    double SH = R.u + c, ST = us + cs;
    if (S >= SH) return R;
    if (S <= ST) {
        o.r = R.r * pow(ps / R.p, 1.0 / g);
        o.u = us;
        o.p = ps;
        return o;
    }
    double k = 2.0 / (g + 1.0) - g1 / c * (R.u - S);
    o.r = R.r * pow(k, 2.0 / (g - 1.0));
    o.u = 2.0 / (g + 1.0) * (-c + 0.5 * (g - 1.0) * R.u + S);
    o.p = R.p * pow(k, 2.0 * g / (g - 1.0));
    return o;
}

// ---- Sod tube runs --------------------------------------------------------------------------------
static const Prim1 SOD_L = {1.0, 0.0, 1.0}, SOD_R = {0.125, 0.0, 0.1};
#define THIN 4

// Runs the Sod tube with n cells along `axis` (0 = x, 1 = y) and THIN cells across, open BCs, to
// t = 0.2; returns the density profile along the tube (first transverse cell) in prof[n] and the
// L1 density error vs the exact solution (sum |rho - rho_exact(x_i)| dx).
static double sod_run(int n, int axis, EulerLimiter lim, EulerFlux flux, double *prof) {
    EulerConfig c = euler_config_default(n, 1.4);
    c.nx = axis == 0 ? n : THIN;
    c.ny = axis == 0 ? THIN : n;
    c.dx = c.dy = 1.0 / n;
    c.limiter = lim;
    c.flux = flux;
    EulerSolver s;
    euler_init(&s, &c);
    for (int i = 0; i < c.nx; i++)
        for (int j = 0; j < c.ny; j++) {
            int a = axis == 0 ? i : j;
            double x = (a + 0.5) / n;
            Prim1 w = x < 0.5 ? SOD_L : SOD_R;
            euler_set_prim(&s, i, j, w.r, axis == 0 ? w.u : 0.0, axis == 0 ? 0.0 : w.u, w.p);
        }
    euler_advance_to(&s, 0.2);
    double ps, us;
    star_state(SOD_L, SOD_R, 1.4, &ps, &us);
    double l1 = 0;
    for (int a = 0; a < n; a++) {
        double *q = axis == 0 ? euler_cell(&s, a, 0) : euler_cell(&s, 0, a);
        double x = (a + 0.5) / n;
        Prim1 e = sample_exact(SOD_L, SOD_R, 1.4, ps, us, (x - 0.5) / 0.2);
        l1 += fabs(q[0] - e.r) / n;
        if (prof) prof[a] = q[0];
    }
    euler_free(&s);
    return l1;
}

static void test_exact_solver(void) {
    double ps, us;
    star_state(SOD_L, SOD_R, 1.4, &ps, &us);
    // Toro, Table 4.3 (test 1): p* = 0.30313, u* = 0.92745
    CHECK_CLOSE(ps, 0.30313, 1e-5, 0, "exact Riemann: Sod p* = 0.30313 (Toro table 4.3)");
    CHECK_CLOSE(us, 0.92745, 1e-5, 0, "exact Riemann: Sod u* = 0.92745");
    // 123 problem (Toro test 2): p* = 0.00189, u* = 0
    Prim1 L = {1.0, -2.0, 0.4}, R = {1.0, 2.0, 0.4};
    star_state(L, R, 1.4, &ps, &us);
    CHECK_CLOSE(ps, 0.00189, 1e-5, 0, "exact Riemann: 123 problem p* = 0.00189");
    CHECK_CLOSE(us, 0.0, 1e-12, 0, "exact Riemann: 123 problem u* = 0");
}

static void test_sod(void) {
    int ns[3] = {64, 128, 256};
    double ex[3], ey[3];
    double *px = LOLA_NEW(double, 256), *py = LOLA_NEW(double, 256);
    for (int k = 0; k < 3; k++) {
        ex[k] = sod_run(ns[k], 0, EULER_LIMITER_MINMOD, EULER_FLUX_HLLC, px);
        ey[k] = sod_run(ns[k], 1, EULER_LIMITER_MINMOD, EULER_FLUX_HLLC, py);
        printf("  sod minmod/HLLC N=%d: L1(rho) x-tube %.5f, y-tube %.5f\n", ns[k], ex[k], ey[k]);
        double md = 0;
        for (int a = 0; a < ns[k]; a++) md = fmax(md, fabs(px[a] - py[a]));
        CHECK(md <= 1e-13, "sod N=%d: x- and y-oriented profiles agree (max diff %.3g)", ns[k], md);
    }
    CHECK(ex[0] < 0.02, "sod N=64: L1 density error %.5f < 0.02", ex[0]);
    CHECK(ex[1] < 0.75 * ex[0], "sod: L1 error falls 64 -> 128 (%.5f -> %.5f)", ex[0], ex[1]);
    CHECK(ex[2] < 0.75 * ex[1], "sod: L1 error falls 128 -> 256 (%.5f -> %.5f)", ex[1], ex[2]);
    CHECK(ey[2] < 0.75 * ey[1] && ey[1] < 0.75 * ey[0], "sod: y-tube L1 error falls with resolution");
    double emc = sod_run(128, 0, EULER_LIMITER_MC, EULER_FLUX_HLLC, NULL);
    double ehll = sod_run(128, 0, EULER_LIMITER_MINMOD, EULER_FLUX_HLL, NULL);
    printf("  sod N=128: MC/HLLC %.5f, minmod/HLL %.5f\n", emc, ehll);
    CHECK(emc < ex[1], "sod N=128: MC limiter sharper than minmod (%.5f < %.5f)", emc, ex[1]);
    CHECK(ehll < 0.02 && ehll >= ex[1], "sod N=128: HLL converges, HLLC no worse (%.5f vs %.5f)", ehll, ex[1]);
    free(px);
    free(py);
}

// Harsh case: four quadrants flying apart at Mach ~3 (a 2-D version of Toro's 123 problem) plus a
// near-vacuum quadrant. Density and pressure must stay positive and finite.
static void test_positivity(void) {
    EulerConfig c = euler_config_default(64, 1.4);
    c.limiter = EULER_LIMITER_MC;
    EulerSolver s;
    euler_init(&s, &c);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            double x = (i + 0.5) / 64, y = (j + 0.5) / 64;
            double u = x < 0.5 ? -2.0 : 2.0, v = y < 0.5 ? -2.0 : 2.0;
            double r = (x < 0.5 && y < 0.5) ? 1e-3 : 1.0, p = (x < 0.5 && y < 0.5) ? 1e-3 : 0.4;
            euler_set_prim(&s, i, j, r, u, v, p);
        }
    euler_advance_to(&s, 0.15);
    double rmin, pmin;
    euler_min_rho_p(&s, &rmin, &pmin);
    printf("  harsh case: %lld steps, min rho %.3g, min p %.3g, floors %lld, HLL fallbacks %lld\n", (long long)s.steps,
           rmin, pmin, (long long)s.n_floor, (long long)s.n_hll);
    CHECK(rmin > 0 && isfinite(rmin), "positivity: min density %.3g > 0", rmin);
    CHECK(pmin > 0 && isfinite(pmin), "positivity: min pressure %.3g > 0", pmin);
    euler_free(&s);

    // harsher: near vacuum (rho 1e-5, p 1e-8 below the 1e-6 floor) between gas streams at |u| = 4,
    // gamma 1.76, MC limiter: the floors must keep every cell valid.
    c = euler_config_default(64, 1.76);
    c.limiter = EULER_LIMITER_MC;
    euler_init(&s, &c);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            double x = (i + 0.5) / 64, y = (j + 0.5) / 64;
            int vac = fabs(x - 0.5) < 0.1 && fabs(y - 0.5) < 0.1;
            double u = x < 0.5 ? -4.0 : 4.0, v = y < 0.5 ? 4.0 : -4.0;
            euler_set_prim(&s, i, j, vac ? 1e-5 : 1.0, vac ? 0 : u, vac ? 0 : v, vac ? 1e-8 : 0.1);
        }
    euler_advance_to(&s, 0.1);
    euler_min_rho_p(&s, &rmin, &pmin);
    double tot[4];
    euler_totals(&s, tot);
    printf("  vacuum case: %lld steps, min rho %.3g, min p %.3g, floors %lld, HLL fallbacks %lld\n", (long long)s.steps,
           rmin, pmin, (long long)s.n_floor, (long long)s.n_hll);
    CHECK(s.n_floor > 0, "vacuum case exercises the floors (%lld activations)", (long long)s.n_floor);
    CHECK(rmin >= 0.999e-6 && pmin >= 0.999e-6 && isfinite(tot[0] + tot[1] + tot[2] + tot[3]),
          "vacuum case: rho >= floor, p >= floor, totals finite (min rho %.3g, min p %.3g)", rmin, pmin);
    euler_free(&s);
}

// Periodic random multi-quadrant problem: totals conserved to round-off.
static void test_conservation(void) {
    for (int lim = 0; lim < 2; lim++) {
        EulerConfig c = euler_config_default(48, 1.13);
        c.bc = EULER_BC_PERIODIC;
        c.limiter = lim ? EULER_LIMITER_MC : EULER_LIMITER_MINMOD;
        EulerSolver s;
        euler_init(&s, &c);
        Rng r = rng_child(7, 3);
        EulerICParams prm = euler_ic_default();
        EulerIC ic;
        euler_ic_sample(&r, &prm, &ic);
        euler_ic_apply(&s, &ic);
        double t0[4], t1[4];
        euler_totals(&s, t0);
        euler_advance_to(&s, 0.3);
        euler_totals(&s, t1);
        double worst = 0;
        for (int k = 0; k < 4; k++) worst = fmax(worst, fabs(t1[k] - t0[k]) / (fabs(t0[0]) + fabs(t0[3])));
        printf("  periodic %s: %lld steps, mass %.15g -> %.15g, energy %.15g -> %.15g, floors %lld\n",
               lim ? "MC" : "minmod", (long long)s.steps, t0[0], t1[0], t0[3], t1[3], (long long)s.n_floor);
        CHECK(s.n_floor == 0 && s.steps > 20, "conservation run (%s) took %lld steps without floors", lim ? "MC" : "minmod",
              (long long)s.steps);
        CHECK(worst < 1e-13, "periodic %s: mass, momentum, energy conserved (worst rel change %.3g)", lim ? "MC" : "minmod",
              worst);
        // open boundaries with outflow do change the totals (guards against a vacuous check)
        euler_free(&s);
    }
}

static void test_downsample(void) {
    const int m = 16, f = 4, n = 4;
    double in[16 * 16], out[16], tmp[16 * 16];
    for (int i = 0; i < m * m; i++) in[i] = 2.5;
    euler_downsample(in, m, f, out, tmp);
    double md = 0;
    for (int i = 0; i < n * n; i++) md = fmax(md, fabs(out[i] - 2.5));
    CHECK(md < 1e-14, "downsample: constant field stays constant (%.3g)", md);
    // reference at one point by the direct 2-D sum: sigma 1.5, radius 6, nearest edge mode
    for (int i = 0; i < m * m; i++) in[i] = sin(0.7 * i) + 0.01 * i;
    euler_downsample(in, m, f, out, tmp);
    double w[13], sw = 0;
    for (int a = -6; a <= 6; a++) sw += (w[a + 6] = exp(-a * a / (2 * 1.5 * 1.5)));
    int oi = 1, oj = 3; // output (1, 3) = filtered input (4, 12)
    double ref = 0;
    for (int a = -6; a <= 6; a++)
        for (int b = -6; b <= 6; b++) {
            int x = 4 * oi + a, y = 4 * oj + b;
            x = x < 0 ? 0 : (x > 15 ? 15 : x);
            y = y < 0 ? 0 : (y > 15 ? 15 : y);
            ref += w[a + 6] * w[b + 6] / (sw * sw) * in[x * m + y];
        }
    CHECK_CLOSE(out[oi * n + oj], ref, 1e-13, 0, "downsample: Gaussian(σ=1.5, nearest) + stride 4 at (1,3)");
}

static void test_determinism(void) {
    EulerTrajSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.n = 16;
    sp.factor = 2;
    sp.frames = 4;
    sp.t_max = 0.3;
    sp.gamma = 1.4;
    sp.bc = EULER_BC_PERIODIC;
    sp.limiter = EULER_LIMITER_MINMOD;
    sp.cfl = 0.4;
    sp.ic = euler_ic_default();
    size_t nf = (size_t)sp.frames * sp.n * sp.n;
    float *a = LOLA_NEW(float, 10 * nf), *b = LOLA_NEW(float, 10 * nf), *c = LOLA_NEW(float, 10 * nf);
    int nthr = omp_get_max_threads();
    euler_set_omp_min_cells(0); // split even this small grid over threads
    omp_set_num_threads(1);
    euler_run_trajectory(&sp, 42, euler_traj_tag(1, 5, 3), a, a + nf, a + 2 * nf, a + 3 * nf, NULL);
    omp_set_num_threads(nthr < 2 ? 2 : nthr);
    euler_run_trajectory(&sp, 42, euler_traj_tag(1, 5, 3), b, b + nf, b + 2 * nf, b + 3 * nf, NULL);
    omp_set_num_threads(nthr);
    euler_set_omp_min_cells(16384);
    euler_run_trajectory(&sp, 43, euler_traj_tag(1, 5, 3), c, c + nf, c + 2 * nf, c + 3 * nf, NULL);
    CHECK(memcmp(a, b, 5 * nf * sizeof(float)) == 0, "determinism: same seed, 1 vs %d threads -> identical bytes",
          nthr < 2 ? 2 : nthr);
    CHECK(memcmp(a, c, 5 * nf * sizeof(float)) != 0, "determinism: a different seed gives a different trajectory");
    // frame 0 is a piecewise constant state with positive density and pressure
    int pos = 1;
    for (size_t e = 0; e < 3 * nf; e++) pos &= a[e] > 0;
    CHECK(pos, "trajectory: energy, density, pressure positive in every frame");
    // E = p/(g-1) + |m|^2/(2 rho) holds per cell (to float32 rounding) in the un-downsampled frame 0
    sp.factor = 1;
    euler_run_trajectory(&sp, 42, euler_traj_tag(1, 5, 3), a, a + nf, a + 2 * nf, a + 3 * nf, NULL);
    double md = 0;
    for (size_t e = 0; e < nf; e++) {
        double E = a[e], r = a[nf + e], p = a[2 * nf + e], mx = a[3 * nf + 2 * e], my = a[3 * nf + 2 * e + 1];
        md = fmax(md, fabs(E - (p / 0.4 + 0.5 * (mx * mx + my * my) / r)) / E);
    }
    CHECK(md < 1e-5, "trajectory: stored energy consistent with density, pressure, momentum (rel %.3g)", md);
    free(a);
    free(b);
    free(c);
}

int main(void) {
    double t0 = lola_time();
    test_exact_solver();
    test_sod();
    test_positivity();
    test_conservation();
    test_downsample();
    test_determinism();
    printf("  test_euler took %.1f s\n", lola_time() - t0);
    return test_summary();
}
