// euler.c: 2-D compressible Euler finite-volume solver (see euler.h for the scheme and layout).
#include "euler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

const double euler_gamma_values[EULER_N_GAMMAS] = {1.13, 1.22, 1.3, 1.33, 1.365, 1.4, 1.404, 1.453, 1.597, 1.76};
const char *const euler_gamma_strings[EULER_N_GAMMAS] = {"1.13", "1.22",  "1.3",   "1.33",  "1.365",
                                                         "1.4",  "1.404", "1.453", "1.597", "1.76"};
const char *const euler_gas_names[EULER_N_GAMMAS] = {"C3H8_16",    "C2H6_15",            "CO2_20", "H2O_20",
                                                     "Dry_air_1000", "Dry_air_20", "H2_100_Dry_air_-15",
                                                     "H2_-76",     "H2_-181",            "Ar_-180"};

// Grids smaller than this run their loops on one thread: on small grids the per-loop OpenMP
// barriers cost more than the work (badly so on a loaded machine).
static int64_t g_omp_min_cells = 16384;
void euler_set_omp_min_cells(int64_t cells) { g_omp_min_cells = cells < 0 ? 0 : cells; }
static inline int euler_par(int64_t cells) { return cells >= g_omp_min_cells; }

int euler_gamma_index(double gamma) {
    for (int i = 0; i < EULER_N_GAMMAS; i++)
        if (fabs(gamma - euler_gamma_values[i]) < 1e-9) return i;
    return -1;
}

EulerConfig euler_config_default(int n, double gamma) {
    EulerConfig c;
    memset(&c, 0, sizeof c);
    c.nx = c.ny = n;
    c.dx = c.dy = 1.0 / n;
    c.gamma = gamma;
    c.bc = EULER_BC_OPEN;
    c.limiter = EULER_LIMITER_MINMOD;
    c.flux = EULER_FLUX_HLLC;
    c.cfl = 0.4;
    c.rho_floor = 1e-6;
    c.p_floor = 1e-6;
    return c;
}

void euler_init(EulerSolver *s, const EulerConfig *cfg) {
    memset(s, 0, sizeof *s);
    if (cfg->nx < 1 || cfg->ny < 1) lola_die("euler: grid %d x %d: both sizes must be >= 1", cfg->nx, cfg->ny);
    if (!(cfg->dx > 0) || !(cfg->dy > 0)) lola_die("euler: cell size %g x %g must be positive", cfg->dx, cfg->dy);
    if (!(cfg->gamma > 1.0)) lola_die("euler: gamma = %g must be > 1", cfg->gamma);
    if (!(cfg->cfl > 0 && cfg->cfl <= 1.0)) lola_die("euler: cfl = %g must be in (0, 1]", cfg->cfl);
    if (!(cfg->rho_floor > 0) || !(cfg->p_floor > 0))
        lola_die("euler: floors rho %g, p %g must be positive", cfg->rho_floor, cfg->p_floor);
    s->cfg = *cfg;
    s->sx = cfg->nx + 2 * EULER_NG;
    s->sy = cfg->ny + 2 * EULER_NG;
    size_t cells = (size_t)s->sx * (size_t)s->sy * 4;
    s->U = LOLA_NEW(double, cells);
    s->U0 = LOLA_NEW(double, cells);
    s->W = LOLA_NEW(double, cells);
    s->Fx = LOLA_NEW(double, (size_t)(cfg->nx + 1) * (size_t)cfg->ny * 4);
    s->Fy = LOLA_NEW(double, (size_t)cfg->nx * (size_t)(cfg->ny + 1) * 4);
}

void euler_free(EulerSolver *s) {
    free(s->U);
    free(s->U0);
    free(s->W);
    free(s->Fx);
    free(s->Fy);
    memset(s, 0, sizeof *s);
}

void euler_set_prim(EulerSolver *s, int i, int j, double rho, double u, double v, double p) {
    double *q = euler_cell(s, i, j);
    q[0] = rho;
    q[1] = rho * u;
    q[2] = rho * v;
    q[3] = p / (s->cfg.gamma - 1.0) + 0.5 * rho * (u * u + v * v);
}

// ---- primitives and ghost cells -----------------------------------------------------------------

static inline size_t pidx(const EulerSolver *s, int pi, int pj) { return ((size_t)pi * (size_t)s->sy + (size_t)pj) * 4; }

// W = prim(U) on the interior, then the ghost layers (open: copy the nearest interior cell;
// periodic: wrap). Corner ghosts are never read.
static void fill_primitives(EulerSolver *s) {
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    const double gm1 = s->cfg.gamma - 1.0, pf = s->cfg.p_floor, rf = s->cfg.rho_floor;
#pragma omp parallel for schedule(static) if (euler_par((int64_t)nx * ny))
    for (int i = 0; i < nx; i++) {
        for (int j = 0; j < ny; j++) {
            const double *q = s->U + pidx(s, i + G, j + G);
            double *w = s->W + pidx(s, i + G, j + G);
            double r = q[0] > rf ? q[0] : rf;
            double u = q[1] / r, v = q[2] / r;
            double p = gm1 * (q[3] - 0.5 * r * (u * u + v * v));
            w[0] = r;
            w[1] = u;
            w[2] = v;
            w[3] = p > pf ? p : pf;
        }
    }
    const int periodic = s->cfg.bc == EULER_BC_PERIODIC;
    // x ghosts (rows 0..G-1 and nx+G..nx+2G-1), interior columns
    for (int g = 0; g < G; g++) {
        int lo = g, hi = nx + G + g;
        int src_lo = periodic ? G + ((lo - G) % nx + nx) % nx : G;          // open: first interior row
        int src_hi = periodic ? G + ((hi - G) % nx + nx) % nx : nx + G - 1; // open: last interior row
        memcpy(s->W + pidx(s, lo, G), s->W + pidx(s, src_lo, G), sizeof(double) * 4 * (size_t)ny);
        memcpy(s->W + pidx(s, hi, G), s->W + pidx(s, src_hi, G), sizeof(double) * 4 * (size_t)ny);
    }
    // y ghosts, interior rows
#pragma omp parallel for schedule(static) if (euler_par((int64_t)nx * ny))
    for (int i = G; i < nx + G; i++) {
        for (int g = 0; g < G; g++) {
            int lo = g, hi = ny + G + g;
            int src_lo = periodic ? G + ((lo - G) % ny + ny) % ny : G;
            int src_hi = periodic ? G + ((hi - G) % ny + ny) % ny : ny + G - 1;
            memcpy(s->W + pidx(s, i, lo), s->W + pidx(s, i, src_lo), sizeof(double) * 4);
            memcpy(s->W + pidx(s, i, hi), s->W + pidx(s, i, src_hi), sizeof(double) * 4);
        }
    }
}

// ---- reconstruction and Riemann solver ----------------------------------------------------------

static inline double lim_minmod(double a, double b) {
    if (a * b <= 0.0) return 0.0;
    return fabs(a) < fabs(b) ? a : b;
}
static inline double lim_mc(double a, double b) {
    if (a * b <= 0.0) return 0.0;
    double m = fmin(2.0 * fabs(a), fmin(2.0 * fabs(b), 0.5 * fabs(a + b)));
    return a > 0 ? m : -m;
}

// MUSCL face states between cells with primitives wm2, wm1 | wp0, wp1 (wm1 left of the face, wp0
// right), in the solver's (rho, u, v, p) order. Falls back to first order if rho or p <= 0.
static inline void muscl_face(const double *wm2, const double *wm1, const double *wp0, const double *wp1, int mc,
                              double *wl, double *wr) {
    for (int k = 0; k < 4; k++) {
        double dl = wm1[k] - wm2[k], dc = wp0[k] - wm1[k], dr = wp1[k] - wp0[k];
        double sl = mc ? lim_mc(dl, dc) : lim_minmod(dl, dc);
        double sr = mc ? lim_mc(dc, dr) : lim_minmod(dc, dr);
        wl[k] = wm1[k] + 0.5 * sl;
        wr[k] = wp0[k] - 0.5 * sr;
    }
    if (!(wl[0] > 0 && wl[3] > 0 && wr[0] > 0 && wr[3] > 0)) {
        memcpy(wl, wm1, 4 * sizeof(double));
        memcpy(wr, wp0, 4 * sizeof(double));
    }
}

// Flux through a face with normal velocity index `n` (1 = u, 2 = v) and tangential `t`, from left
// and right primitives. Output in conservative order (mass, x-mom, y-mom, energy). Returns 1 when
// HLLC fell back to HLL. HLLC: Toro §10.4 (eqs. 10.37-10.39), Davis wave speeds (Toro 10.48).
static inline int riemann_flux(const double *wl, const double *wr, int n, int t, double g, int hll_only, double *f) {
    const double rL = wl[0], uL = wl[n], vL = wl[t], pL = wl[3];
    const double rR = wr[0], uR = wr[n], vR = wr[t], pR = wr[3];
    const double EL = pL / (g - 1.0) + 0.5 * rL * (uL * uL + vL * vL);
    const double ER = pR / (g - 1.0) + 0.5 * rR * (uR * uR + vR * vR);
    const double cL = sqrt(g * pL / rL), cR = sqrt(g * pR / rR);
    const double SL = fmin(uL - cL, uR - cR), SR = fmax(uL + cL, uR + cR);
    double FL[4] = {rL * uL, rL * uL * uL + pL, rL * uL * vL, uL * (EL + pL)};
    double FR[4] = {rR * uR, rR * uR * uR + pR, rR * uR * vR, uR * (ER + pR)};
    double out[4];
    int fell_back = 0;
    if (SL >= 0.0) {
        memcpy(out, FL, sizeof out);
    } else if (SR <= 0.0) {
        memcpy(out, FR, sizeof out);
    } else {
        double UL[4] = {rL, rL * uL, rL * vL, EL};
        double UR[4] = {rR, rR * uR, rR * vR, ER};
        int use_hll = hll_only;
        if (!hll_only) {
            double den = rL * (SL - uL) - rR * (SR - uR);
            double Ss = (pR - pL + rL * uL * (SL - uL) - rR * uR * (SR - uR)) / den;
            if (den != 0.0 && isfinite(Ss) && Ss > SL && Ss < SR) {
                const int left = Ss >= 0.0;
                const double r = left ? rL : rR, u = left ? uL : uR, v = left ? vL : vR, p = left ? pL : pR;
                const double E = left ? EL : ER, S = left ? SL : SR;
                const double *F = left ? FL : FR, *U = left ? UL : UR;
                double coef = r * (S - u) / (S - Ss);
                double Us[4] = {coef, coef * Ss, coef * v, coef * (E / r + (Ss - u) * (Ss + p / (r * (S - u))))};
                for (int k = 0; k < 4; k++) out[k] = F[k] + S * (Us[k] - U[k]);
            } else {
                use_hll = 1;
                fell_back = 1;
            }
        }
        if (use_hll) {
            double inv = 1.0 / (SR - SL);
            for (int k = 0; k < 4; k++) out[k] = (SR * FL[k] - SL * FR[k] + SL * SR * (UR[k] - UL[k])) * inv;
        }
    }
    // map normal/tangential momentum back to x/y
    f[0] = out[0];
    f[n] = out[1];
    f[t] = out[2];
    f[3] = out[3];
    return fell_back;
}

// Fluxes on every x- and y-face of the interior from the current U.
static void compute_fluxes(EulerSolver *s) {
    fill_primitives(s);
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    const int mc = s->cfg.limiter == EULER_LIMITER_MC, hll_only = s->cfg.flux == EULER_FLUX_HLL;
    const double g = s->cfg.gamma;
    int64_t nhll = 0;
#pragma omp parallel for schedule(static) reduction(+ : nhll) if (euler_par((int64_t)nx * ny))
    for (int i = 0; i <= nx; i++) {
        double wl[4], wr[4];
        // x-face i between padded rows i+G-1 and i+G
        for (int j = 0; j < ny; j++) {
            const int pj = j + G, pi = i + G;
            muscl_face(s->W + pidx(s, pi - 2, pj), s->W + pidx(s, pi - 1, pj), s->W + pidx(s, pi, pj),
                       s->W + pidx(s, pi + 1, pj), mc, wl, wr);
            nhll += riemann_flux(wl, wr, 1, 2, g, hll_only, s->Fx + ((size_t)i * ny + j) * 4);
        }
        if (i == nx) continue;
        // y-faces j = 0..ny of row i
        for (int j = 0; j <= ny; j++) {
            const int pi = i + G, pj = j + G;
            muscl_face(s->W + pidx(s, pi, pj - 2), s->W + pidx(s, pi, pj - 1), s->W + pidx(s, pi, pj),
                       s->W + pidx(s, pi, pj + 1), mc, wl, wr);
            nhll += riemann_flux(wl, wr, 2, 1, g, hll_only, s->Fy + ((size_t)i * (ny + 1) + j) * 4);
        }
    }
    s->n_hll += nhll;
}

// U = a*U0 + b*(U + dt*L(U)) on the interior, then floors. (a, b) = (0, 1) or (0.5, 0.5).
static void stage_update(EulerSolver *s, double dt, double a, double b) {
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    const double kx = dt / s->cfg.dx, ky = dt / s->cfg.dy, gm1 = s->cfg.gamma - 1.0;
    const double rf = s->cfg.rho_floor, pf = s->cfg.p_floor;
    int64_t nfloor = 0;
#pragma omp parallel for schedule(static) reduction(+ : nfloor) if (euler_par((int64_t)nx * ny))
    for (int i = 0; i < nx; i++) {
        for (int j = 0; j < ny; j++) {
            size_t c = pidx(s, i + G, j + G);
            double *q = s->U + c;
            const double *q0 = s->U0 + c;
            const double *fxl = s->Fx + ((size_t)i * ny + j) * 4, *fxr = s->Fx + ((size_t)(i + 1) * ny + j) * 4;
            const double *fyl = s->Fy + ((size_t)i * (ny + 1) + j) * 4, *fyr = fyl + 4;
            for (int k = 0; k < 4; k++) {
                double un = q[k] - kx * (fxr[k] - fxl[k]) - ky * (fyr[k] - fyl[k]);
                q[k] = a == 0.0 ? un : a * q0[k] + b * un;
            }
            // positivity floors (not conservative; counted in n_floor)
            if (!(q[0] >= rf)) {
                double r_old = q[0];
                q[0] = rf;
                if (r_old > 0) {
                    q[1] *= rf / r_old;
                    q[2] *= rf / r_old;
                } else {
                    q[1] = q[2] = 0.0;
                }
                nfloor++;
            }
            double ke = 0.5 * (q[1] * q[1] + q[2] * q[2]) / q[0];
            if (!(gm1 * (q[3] - ke) >= pf)) {
                q[3] = pf / gm1 + ke;
                nfloor++;
            }
        }
    }
    s->n_floor += nfloor;
}

void euler_step(EulerSolver *s, double dt) {
    size_t bytes = (size_t)s->sx * (size_t)s->sy * 4 * sizeof(double);
    memcpy(s->U0, s->U, bytes);
    compute_fluxes(s);
    stage_update(s, dt, 0.0, 1.0);
    compute_fluxes(s);
    stage_update(s, dt, 0.5, 0.5);
    s->steps++;
}

double euler_cfl_dt(EulerSolver *s) {
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    const double g = s->cfg.gamma, rf = s->cfg.rho_floor, pf = s->cfg.p_floor;
    const double dx = s->cfg.dx, dy = s->cfg.dy;
    double rate = 0.0; // max of (|u|+c)/dx, (|v|+c)/dy
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(max : rate) reduction(| : bad) if (euler_par((int64_t)nx * ny))
    for (int i = 0; i < nx; i++) {
        for (int j = 0; j < ny; j++) {
            const double *q = s->U + pidx(s, i + G, j + G);
            if (!(isfinite(q[0]) && isfinite(q[1]) && isfinite(q[2]) && isfinite(q[3]))) {
                bad = 1;
                continue;
            }
            double r = q[0] > rf ? q[0] : rf;
            double u = q[1] / r, v = q[2] / r;
            double p = (g - 1.0) * (q[3] - 0.5 * r * (u * u + v * v));
            if (p < pf) p = pf;
            double c = sqrt(g * p / r);
            double a = (fabs(u) + c) / dx, b = (fabs(v) + c) / dy;
            double m = a > b ? a : b;
            if (m > rate) rate = m;
        }
    }
    if (bad) lola_die("euler: non-finite state at t = %.9g after %lld steps", s->t, (long long)s->steps);
    if (!(rate > 0)) lola_die("euler: zero wave speed at t = %.9g (empty or invalid state)", s->t);
    return s->cfg.cfl / rate;
}

int64_t euler_advance_to(EulerSolver *s, double t_end) {
    int64_t n = 0;
    while (s->t < t_end) {
        double dt = euler_cfl_dt(s);
        double rem = t_end - s->t;
        int last = 0;
        if (rem <= dt) {
            dt = rem;
            last = 1;
        } else if (rem < 2.0 * dt) {
            dt = 0.5 * rem; // two equal steps instead of a full one and a sliver
        }
        if (!(dt > 1e-12 * (t_end > 1.0 ? t_end : 1.0)) && !last)
            lola_die("euler: time step collapsed to %g at t = %.9g", dt, s->t);
        euler_step(s, dt);
        s->t = last ? t_end : s->t + dt;
        n++;
    }
    return n;
}

void euler_totals(const EulerSolver *s, double tot[4]) {
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    double a[4] = {0, 0, 0, 0};
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < ny; j++) {
            const double *q = s->U + pidx(s, i + G, j + G);
            for (int k = 0; k < 4; k++) a[k] += q[k];
        }
    for (int k = 0; k < 4; k++) tot[k] = a[k] * s->cfg.dx * s->cfg.dy;
}

void euler_min_rho_p(const EulerSolver *s, double *rho_min, double *p_min) {
    const int nx = s->cfg.nx, ny = s->cfg.ny, G = EULER_NG;
    double rm = INFINITY, pm = INFINITY, gm1 = s->cfg.gamma - 1.0;
    for (int i = 0; i < nx; i++)
        for (int j = 0; j < ny; j++) {
            const double *q = s->U + pidx(s, i + G, j + G);
            double p = gm1 * (q[3] - 0.5 * (q[1] * q[1] + q[2] * q[2]) / q[0]);
            if (!(q[0] >= rm)) rm = q[0];
            if (!(p >= pm)) pm = p;
        }
    *rho_min = rm;
    *p_min = pm;
}

// ---- initial conditions -------------------------------------------------------------------------

EulerICParams euler_ic_default(void) {
    EulerICParams p;
    p.p_quadrants = 0.5;
    // calibrated at 32² and 64² so that the train-set moments land near The Well's stats.yaml
    // (the-well-format.md §3.2); see the report in tools/well-euler.c
    p.rho_lo = 0.38;
    p.rho_hi = 1.5;
    p.rho_spread = 0.5;
    p.p_lo = 0.18;
    p.p_hi = 2.25;
    p.p_spread = 0.9;
    p.u_max = 0.85;
    return p;
}

static double log_uniform(Rng *r, double lo, double hi) { return lo * exp(rng_uniform(r) * log(hi / lo)); }

// nc sorted cuts in [0.1, 0.9], consecutive cuts at least 0.1 apart (rejection sampling).
static void sample_cuts(Rng *r, int nc, double *cut) {
    for (;;) {
        for (int k = 0; k < nc; k++) cut[k] = 0.1 + 0.8 * rng_uniform(r);
        for (int a = 1; a < nc; a++) // insertion sort
            for (int b = a; b > 0 && cut[b] < cut[b - 1]; b--) {
                double t = cut[b];
                cut[b] = cut[b - 1];
                cut[b - 1] = t;
            }
        int ok = 1;
        for (int k = 1; k < nc; k++)
            if (cut[k] - cut[k - 1] < 0.1) ok = 0;
        if (ok) return;
    }
}

void euler_ic_sample(Rng *r, const EulerICParams *prm, EulerIC *ic) {
    memset(ic, 0, sizeof *ic);
    if (rng_uniform(r) < prm->p_quadrants) {
        ic->nbx = ic->nby = 2;
        ic->xcut[0] = 0.2 + 0.6 * rng_uniform(r);
        ic->ycut[0] = 0.2 + 0.6 * rng_uniform(r);
    } else {
        ic->nbx = 2 + (int)rng_below(r, 3);
        ic->nby = 2 + (int)rng_below(r, 3);
        sample_cuts(r, ic->nbx - 1, ic->xcut);
        sample_cuts(r, ic->nby - 1, ic->ycut);
    }
    const double c_rho = log_uniform(r, prm->rho_lo, prm->rho_hi), c_p = log_uniform(r, prm->p_lo, prm->p_hi);
    for (int bx = 0; bx < ic->nbx; bx++)
        for (int by = 0; by < ic->nby; by++) {
            double *w = ic->prim[bx][by];
            w[0] = c_rho * exp(prm->rho_spread * (2.0 * rng_uniform(r) - 1.0));
            w[1] = prm->u_max * (2.0 * rng_uniform(r) - 1.0);
            w[2] = prm->u_max * (2.0 * rng_uniform(r) - 1.0);
            w[3] = c_p * exp(prm->p_spread * (2.0 * rng_uniform(r) - 1.0));
        }
}

void euler_ic_apply(EulerSolver *s, const EulerIC *ic) {
    for (int i = 0; i < s->cfg.nx; i++) {
        double x = (i + 0.5) * s->cfg.dx;
        int bx = 0;
        while (bx < ic->nbx - 1 && x >= ic->xcut[bx]) bx++;
        for (int j = 0; j < s->cfg.ny; j++) {
            double y = (j + 0.5) * s->cfg.dy;
            int by = 0;
            while (by < ic->nby - 1 && y >= ic->ycut[by]) by++;
            const double *w = ic->prim[bx][by];
            euler_set_prim(s, i, j, w[0], w[1], w[2], w[3]);
        }
    }
    s->t = 0.0;
}

// ---- downsampling and trajectories --------------------------------------------------------------

void euler_downsample(const double *in, int m, int f, double *out, double *tmp) {
    if (f < 1 || m % f != 0) lola_die("euler_downsample: size %d is not a multiple of factor %d", m, f);
    const int n = m / f;
    if (f == 1) {
        memcpy(out, in, sizeof(double) * (size_t)m * m);
        return;
    }
    const double sigma = 0.5 * (f - 1);
    const int rad = (int)(4.0 * sigma + 0.5);
    double w[64];
    if (2 * rad + 1 > 64) lola_die("euler_downsample: factor %d too large (kernel radius %d)", f, rad);
    double sum = 0;
    for (int a = -rad; a <= rad; a++) sum += (w[a + rad] = exp(-0.5 * a * a / (sigma * sigma)));
    for (int a = 0; a <= 2 * rad; a++) w[a] /= sum;
    // along x, only at rows f*i: tmp[i][y]
#pragma omp parallel for schedule(static) if (euler_par((int64_t)m * m))
    for (int i = 0; i < n; i++) {
        for (int y = 0; y < m; y++) {
            double acc = 0;
            for (int a = -rad; a <= rad; a++) {
                int x = f * i + a;
                x = x < 0 ? 0 : (x >= m ? m - 1 : x);
                acc += w[a + rad] * in[(size_t)x * m + y];
            }
            tmp[(size_t)i * m + y] = acc;
        }
    }
    // along y, only at columns f*j
#pragma omp parallel for schedule(static) if (euler_par((int64_t)m * m))
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int b = -rad; b <= rad; b++) {
                int y = f * j + b;
                y = y < 0 ? 0 : (y >= m ? m - 1 : y);
                acc += w[b + rad] * tmp[(size_t)i * m + y];
            }
            out[(size_t)i * n + j] = acc;
        }
    }
}

// Stores frame k of the trajectory: fields from U at resolution m, downsampled by f to n.
static void store_frame(EulerSolver *s, int f, int k, double *buf, double *tmp, double *ds, float *energy,
                        float *density, float *pressure, float *momentum) {
    const int m = s->cfg.nx, n = m / f;
    const size_t mm = (size_t)m * m, nn = (size_t)n * n;
    const double gm1 = s->cfg.gamma - 1.0;
    // buf: 5 planes E, rho, p, mx, my at resolution m
#pragma omp parallel for schedule(static) if (euler_par((int64_t)m * m))
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            const double *q = euler_cell(s, i, j);
            size_t c = (size_t)i * m + j;
            buf[c] = q[3];
            buf[mm + c] = q[0];
            buf[2 * mm + c] = gm1 * (q[3] - 0.5 * (q[1] * q[1] + q[2] * q[2]) / q[0]);
            buf[3 * mm + c] = q[1];
            buf[4 * mm + c] = q[2];
        }
    float *dst[3] = {energy, density, pressure};
    for (int c = 0; c < 5; c++) {
        euler_downsample(buf + c * mm, m, f, ds, tmp);
        if (c < 3) {
            float *o = dst[c] + (size_t)k * nn;
            for (size_t e = 0; e < nn; e++) o[e] = (float)ds[e];
        } else {
            float *o = momentum + (size_t)k * nn * 2 + (c - 3);
            for (size_t e = 0; e < nn; e++) o[2 * e] = (float)ds[e];
        }
    }
}

void euler_run_trajectory(const EulerTrajSpec *sp, uint64_t seed, uint64_t tag, float *energy, float *density,
                          float *pressure, float *momentum, EulerTrajInfo *info) {
    if (sp->n < 1 || sp->factor < 1 || sp->frames < 1)
        lola_die("euler trajectory: resolution %d, factor %d, frames %d must all be >= 1", sp->n, sp->factor, sp->frames);
    if (sp->frames > 1 && !(sp->t_max > 0)) lola_die("euler trajectory: t_max = %g must be > 0", sp->t_max);
    double t0 = lola_time();
    const int m = sp->n * sp->factor;
    EulerConfig cfg = euler_config_default(m, sp->gamma);
    cfg.bc = sp->bc;
    cfg.limiter = sp->limiter;
    cfg.cfl = sp->cfl;
    EulerSolver s;
    euler_init(&s, &cfg);
    Rng rng = rng_child(seed, tag);
    EulerIC ic;
    euler_ic_sample(&rng, &sp->ic, &ic);
    euler_ic_apply(&s, &ic);
    const size_t mm = (size_t)m * m;
    double *buf = LOLA_NEW(double, 5 * mm);
    double *tmp = LOLA_NEW(double, mm);
    double *ds = LOLA_NEW(double, mm);
    store_frame(&s, sp->factor, 0, buf, tmp, ds, energy, density, pressure, momentum);
    for (int k = 1; k < sp->frames; k++) {
        double tk = sp->t_max * (double)k / (double)(sp->frames - 1);
        euler_advance_to(&s, tk);
        store_frame(&s, sp->factor, k, buf, tmp, ds, energy, density, pressure, momentum);
    }
    if (info) {
        info->steps = s.steps;
        info->n_floor = s.n_floor;
        info->n_hll = s.n_hll;
        info->seconds = lola_time() - t0;
    }
    free(buf);
    free(tmp);
    free(ds);
    euler_free(&s);
}
