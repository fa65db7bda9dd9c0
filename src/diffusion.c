// diffusion.c: see diffusion.h. Formulas from lola-spec.md 3 (lola/diffusion.py, azula 0.3.1
// noise.py / sample.py); the code is our own.
#include "diffusion.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"

// ---------------------------------------------------------------------------------------------
// Schedules

Schedule schedule_default(ScheduleKind kind) {
    Schedule s;
    s.kind = kind;
    s.sigma_min = 1e-3;
    s.sigma_max = 1e3;
    s.scale = 1.0;
    s.shift = 0.0;
    return s;
}

double schedule_sigma(const Schedule *s, double t) {
    if (!(t == t)) lola_die("schedule_sigma: t is NaN");
    if (!(s->sigma_min > 0) || !(s->sigma_max > s->sigma_min))
        lola_die("schedule: need 0 < sigma_min < sigma_max, got %g, %g", s->sigma_min, s->sigma_max);
    switch (s->kind) {
    case SCHED_LOG_LOGIT: {
        double t_min = s->sigma_min / (1.0 + s->sigma_min);
        double t_max = s->sigma_max / (1.0 + s->sigma_max);
        double u = t * (t_max - t_min) + t_min;
        if (u <= 0.0) u = t_min; // t < 0: clamp into the logit domain
        if (u >= 1.0) u = t_max;
        return exp(s->scale * log(u / (1.0 - u)) + s->shift);
    }
    case SCHED_LOG_LINEAR:
        return exp((1.0 - t) * log(s->sigma_min) + t * log(s->sigma_max));
    }
    lola_die("schedule: unknown kind %d", (int)s->kind);
}

ScheduleKind schedule_kind_parse(const char *name) {
    if (strcmp(name, "log_logit") == 0) return SCHED_LOG_LOGIT;
    if (strcmp(name, "log_linear") == 0) return SCHED_LOG_LINEAR;
    lola_die_hint("use log_logit (default) or log_linear", "unknown noise schedule '%s'", name);
}

// ---------------------------------------------------------------------------------------------
// Preconditioning

Precond edm_precond(double sigma) {
    Precond p;
    double s2 = sigma * sigma;
    p.c_obs = sqrt(1.0 + s2);
    p.c_in = 1.0 / p.c_obs;
    p.c_out = sigma / p.c_obs;
    p.c_skip = 1.0 / (1.0 + s2);
    p.c_noise = 10.0 * log(sigma);
    p.var = s2 / (1.0 + s2);
    p.weight = (1.0 + s2) / s2;
    return p;
}

// ---------------------------------------------------------------------------------------------
// Time priors

TimePriorKind time_prior_kind_parse(const char *name) {
    if (strcmp(name, "uniform") == 0) return PRIOR_UNIFORM;
    if (strcmp(name, "beta") == 0) return PRIOR_BETA;
    if (strcmp(name, "kumaraswamy") == 0) return PRIOR_KUMARASWAMY;
    if (strcmp(name, "triangle") == 0)
        lola_die_hint("LoLa's DenoiserLoss raises for it too; use uniform, beta or kumaraswamy",
                      "time prior 'triangle' is not supported");
    lola_die_hint("use uniform, beta or kumaraswamy", "unknown time prior '%s'", name);
}

double rng_gamma(Rng *rng, double k) {
    if (!(k > 0)) lola_die("rng_gamma: shape must be > 0, got %g", k);
    if (k < 1.0) { // Gamma(k) = Gamma(k + 1) * U^(1/k)
        double u = 1.0 - rng_uniform(rng); // (0, 1]
        return rng_gamma(rng, k + 1.0) * pow(u, 1.0 / k);
    }
    // Marsaglia & Tsang (2000), "A simple method for generating gamma variables".
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng_normal(rng);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = 1.0 - rng_uniform(rng); // (0, 1]
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

static void prior_check(const TimePrior *p) {
    if (p->kind == PRIOR_UNIFORM) {
        if (!(p->b > p->a)) lola_die("time prior uniform(a, b): need a < b, got %g, %g", p->a, p->b);
    } else if (!(p->a > 0) || !(p->b > 0)) {
        lola_die("time prior %s(a, b): need a, b > 0, got %g, %g",
                 p->kind == PRIOR_BETA ? "beta" : "kumaraswamy", p->a, p->b);
    }
}

double time_prior_sample(const TimePrior *p, Rng *rng) {
    prior_check(p);
    switch (p->kind) {
    case PRIOR_UNIFORM:
        return p->a + (p->b - p->a) * rng_uniform(rng);
    case PRIOR_BETA: {
        double x = rng_gamma(rng, p->a), y = rng_gamma(rng, p->b);
        return x / (x + y);
    }
    case PRIOR_KUMARASWAMY: {
        double u = rng_uniform(rng);
        return pow(1.0 - pow(1.0 - u, 1.0 / p->b), 1.0 / p->a);
    }
    }
    lola_die("time prior: unknown kind %d", (int)p->kind);
}

double time_prior_mean(const TimePrior *p) {
    prior_check(p);
    switch (p->kind) {
    case PRIOR_UNIFORM: return 0.5 * (p->a + p->b);
    case PRIOR_BETA: return p->a / (p->a + p->b);
    case PRIOR_KUMARASWAMY: // b B(1 + 1/a, b)
        return p->b * exp(lgamma(1.0 + 1.0 / p->a) + lgamma(p->b) - lgamma(1.0 + 1.0 / p->a + p->b));
    }
    lola_die("time prior: unknown kind %d", (int)p->kind);
}

// ---------------------------------------------------------------------------------------------
// Context mask

int context_mask_sample(float *frame_mask, int L, double lambda, double rho, int atleast, Rng *rng,
                        int *forward) {
    if (L < 2) lola_die("context mask: the window needs at least 2 frames, got L = %d", L);
    if (atleast < 0 || atleast > L - 1)
        lola_die("context mask: atleast = %d must be in [0, %d] for L = %d", atleast, L - 1, L);
    if (!(lambda >= 0) || !(rho >= 0 && rho <= 1))
        lola_die("context mask: need lambda >= 0 and rho in [0, 1], got %g, %g", lambda, rho);
    int k = rng_poisson(rng, lambda);
    int c = k % (L - atleast) + atleast;
    int fwd = rng_uniform(rng) < rho;
    for (int l = 0; l < L; l++) frame_mask[l] = (float)(fwd ? (l < c) : (l >= L - c));
    if (forward) *forward = fwd;
    return c;
}

void context_mask_expand(float *full, const float *frame_mask, int B, int C, int L, size_t S) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int l = 0; l < L; l++) {
                float v = frame_mask[(size_t)b * L + l];
                float *dst = full + (((size_t)b * C + c) * L + l) * S;
                for (size_t i = 0; i < S; i++) dst[i] = v;
            }
}

// ---------------------------------------------------------------------------------------------
// Samplers

SamplerConfig sampler_default(SamplerKind kind) {
    SamplerConfig c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.steps = 16;
    c.start = 1.0;
    c.stop = 0.0;
    c.order = 3;
    c.eta = 0.0;
    c.corrections = 1;
    c.delta = 0.01;
    return c;
}

SamplerKind sampler_kind_parse(const char *name) {
    static const char *names[] = {"ab", "ddim", "ddpm", "eab", "pc"};
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) return (SamplerKind)i;
    lola_die_hint("use ab (default), ddim, ddpm, eab or pc", "unknown sampler algorithm '%s'", name);
}

int sampler_evaluations(const SamplerConfig *cfg) {
    return cfg->kind == SAMPLER_PC ? cfg->steps * (cfg->corrections + 1) : cfg->steps;
}

// Solves V c = b (n x n, row-major V) in place by Gaussian elimination with partial pivoting.
static void solve_small(double *V, double *b, int n) {
    for (int col = 0; col < n; col++) {
        int piv = col;
        for (int r = col + 1; r < n; r++)
            if (fabs(V[r * n + col]) > fabs(V[piv * n + col])) piv = r;
        if (V[piv * n + col] == 0.0) lola_die("Adams-Bashforth: singular Vandermonde system (repeated nodes)");
        if (piv != col) {
            for (int j = 0; j < n; j++) {
                double t = V[col * n + j];
                V[col * n + j] = V[piv * n + j];
                V[piv * n + j] = t;
            }
            double t = b[col];
            b[col] = b[piv];
            b[piv] = t;
        }
        for (int r = col + 1; r < n; r++) {
            double f = V[r * n + col] / V[col * n + col];
            for (int j = col; j < n; j++) V[r * n + j] -= f * V[col * n + j];
            b[r] -= f * b[col];
        }
    }
    for (int r = n - 1; r >= 0; r--) {
        double s = b[r];
        for (int j = r + 1; j < n; j++) s -= V[r * n + j] * b[j];
        b[r] = s / V[r * n + r];
    }
}

#define AB_MAX_ORDER 8

// Shared by AB and EAB: V[k][j] = node[m-n+j]^k; rhs from the callback.
static int multistep_coefficients(double *c, const double *node, int m, int order, int exponential) {
    if (m < 1) lola_die("multistep coefficients need at least 2 nodes, got m = %d", m);
    if (order < 1 || order > AB_MAX_ORDER) lola_die("multistep order %d outside [1, %d]", order, AB_MAX_ORDER);
    int n = order < m ? order : m;
    double V[AB_MAX_ORDER * AB_MAX_ORDER], b[AB_MAX_ORDER];
    for (int k = 0; k < n; k++)
        for (int j = 0; j < n; j++) V[k * n + j] = pow(node[m - n + j], (double)k);
    double hi = node[m], lo = node[m - 1];
    if (!exponential) {
        for (int k = 0; k < n; k++) b[k] = (pow(hi, k + 1) - pow(lo, k + 1)) / (k + 1);
    } else {
        // int e^u u^k du = (-1)^k k! e^u sum_{j<=k} (-u)^j / j!
        double fact = 1.0, sh = 0.0, sl = 0.0;
        for (int k = 0; k < n; k++) {
            if (k > 0) fact *= k;
            sh += pow(-hi, k) / fact;
            sl += pow(-lo, k) / fact;
            double sign = (k % 2) ? -1.0 : 1.0;
            b[k] = sign * fact * (exp(hi) * sh - exp(lo) * sl);
        }
    }
    solve_small(V, b, n);
    for (int j = 0; j < n; j++) c[j] = b[j];
    return n;
}

int ab_coefficients(double *c, const double *rho, int m, int order) {
    return multistep_coefficients(c, rho, m, order, 0);
}

int eab_coefficients(double *c, const double *logrho, int m, int order) {
    return multistep_coefficients(c, logrho, m, order, 1);
}

size_t sampler_work_floats(const SamplerConfig *cfg, size_t n) {
    switch (cfg->kind) {
    case SAMPLER_AB:
    case SAMPLER_EAB: return n * (size_t)(1 + cfg->order); // mean + ring of z
    default: return 2 * n;                                 // mean + noise
    }
}

static void sampler_check(const SamplerConfig *cfg) {
    if (cfg->steps < 1) lola_die("sampler: steps must be >= 1, got %d", cfg->steps);
    if ((cfg->kind == SAMPLER_AB || cfg->kind == SAMPLER_EAB) && (cfg->order < 1 || cfg->order > AB_MAX_ORDER))
        lola_die("sampler: order must be in [1, %d], got %d", AB_MAX_ORDER, cfg->order);
    if (cfg->kind == SAMPLER_PC && (cfg->corrections < 0 || !(cfg->delta > 0)))
        lola_die("sampler pc: need corrections >= 0 and delta > 0, got %d, %g", cfg->corrections, cfg->delta);
    if (cfg->kind == SAMPLER_DDIM && !(cfg->eta >= 0)) lola_die("sampler ddim: eta must be >= 0, got %g", cfg->eta);
}

void sampler_init_state(float *x, size_t n, const SamplerConfig *cfg, const Schedule *s, uint64_t seed) {
    double sig = schedule_sigma(s, cfg->start);
    nn_randn(x, n, seed);
    nn_scale(x, (float)sqrt(1.0 + sig * sig), n);
}

// Noise draw k of a run over B members of n / B floats each: member b's slice is
// nn_randn(., n / B, rng_hash(seeds[b], k)).
static void sampler_noise(float *aux, size_t n, int B, const uint64_t *seeds, uint64_t k) {
    size_t nm = n / (size_t)B;
    for (int b = 0; b < B; b++) nn_randn(aux + (size_t)b * nm, nm, rng_hash(seeds[b], k));
}

void sampler_run(const SamplerConfig *cfg, const Schedule *s, DenoiseFn fn, void *ctx, float *x,
                 size_t n, uint64_t seed, float *work) {
    sampler_run_members(cfg, s, fn, ctx, x, n, 1, &seed, work);
}

void sampler_run_members(const SamplerConfig *cfg, const Schedule *s, DenoiseFn fn, void *ctx, float *x,
                         size_t n, int B, const uint64_t *seeds, float *work) {
    sampler_check(cfg);
    if (B < 1 || n % (size_t)B != 0) lola_die("sampler: %zu floats do not split into %d members", n, B);
    int T = cfg->steps;
    double *tt = LOLA_NEW(double, T + 1), *sig = LOLA_NEW(double, T + 1), *node = LOLA_NEW(double, T + 1);
    for (int i = 0; i <= T; i++) {
        tt[i] = cfg->start + (cfg->stop - cfg->start) * (double)i / (double)T; // linspace
        sig[i] = schedule_sigma(s, tt[i]);
        node[i] = cfg->kind == SAMPLER_EAB ? log(sig[i]) : sig[i]; // rho = sigma / alpha, alpha = 1
    }
    int own = work == NULL;
    if (own) work = nn_alloc(sampler_work_floats(cfg, n));
    float *mean = work, *aux = work + n; // aux: the z ring (ab/eab) or the noise (others)
    uint64_t draws = 0;                   // counter of noise draws (seed stream index)

    for (int i = 0; i < T; i++) {
        double st = sig[i], ss = sig[i + 1];
        switch (cfg->kind) {
        case SAMPLER_AB:
        case SAMPLER_EAB: {
            // z_i = (x - mu) / sigma_i into the ring; x += sum_j c_j z_{i-n+1+j}
            fn(ctx, mean, x, tt[i], st);
            float *z = aux + (size_t)(i % cfg->order) * n;
            nn_copy(z, x, n);
            nn_axpy(z, -1.0f, mean, n);
            nn_scale(z, (float)(1.0 / st), n);
            double c[AB_MAX_ORDER];
            int nc = multistep_coefficients(c, node, i + 1, cfg->order, cfg->kind == SAMPLER_EAB);
            for (int j = 0; j < nc; j++) {
                int idx = i - nc + 1 + j;
                nn_axpy(x, (float)c[j], aux + (size_t)(idx % cfg->order) * n, n);
            }
            break;
        }
        case SAMPLER_DDIM:
        case SAMPLER_DDPM: {
            // x_s = mu + s_s sqrt(1 - tau) / s_t (x - mu) + s_s sqrt(tau) eps
            double tau = 1.0 - (ss / st) * (ss / st);
            if (cfg->kind == SAMPLER_DDIM) tau = fmin(fmax(cfg->eta * tau, 0.0), 1.0);
            fn(ctx, mean, x, tt[i], st);
            float r = (float)(ss * sqrt(1.0 - tau) / st);
            nn_scale(x, r, n);
            nn_axpy(x, 1.0f - r, mean, n);
            if (tau > 0.0) {
                sampler_noise(aux, n, B, seeds, draws++);
                nn_axpy(x, (float)(ss * sqrt(tau)), aux, n);
            }
            break;
        }
        case SAMPLER_PC: {
            // corrector: x = x + delta (mu - x) + sqrt(2 delta) s_t eps, then the DDIM predictor
            for (int k = 0; k < cfg->corrections; k++) {
                fn(ctx, mean, x, tt[i], st);
                nn_scale(x, (float)(1.0 - cfg->delta), n);
                nn_axpy(x, (float)cfg->delta, mean, n);
                sampler_noise(aux, n, B, seeds, draws++);
                nn_axpy(x, (float)(sqrt(2.0 * cfg->delta) * st), aux, n);
            }
            fn(ctx, mean, x, tt[i], st);
            float r = (float)(ss / st);
            nn_scale(x, r, n);
            nn_axpy(x, 1.0f - r, mean, n);
            break;
        }
        }
    }
    if (own) nn_free(work);
    free(tt);
    free(sig);
    free(node);
}
