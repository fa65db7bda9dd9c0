// test_diffusion.c: src/diffusion.c against the hand-checkable values of lola-spec.md 3 and 10.3
// (schedules, c_noise, preconditioning, AB(3) coefficients, context masks, time priors, sine
// encoding) and the samplers against the exact reverse process of a Gaussian data distribution.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "diffusion.h"
#include "nn.h"
#include "test.h"

static void test_schedules(void) {
    Schedule s = schedule_default(SCHED_LOG_LOGIT);
    const double t[] = {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.0, 1.0};
    const double want[] = {0.011101, 0.112099, 0.334222, 1.0, 2.992024, 8.920714, 90.0828, 1e-3, 1e3};
    for (int i = 0; i < 9; i++)
        CHECK_CLOSE(schedule_sigma(&s, t[i]), want[i], 0, 1e-5, "log-logit sigma(%g) = %g", t[i], want[i]);
    // the 17 sampler nodes t_i = 1 - i/16
    const double nodes[17] = {1000, 14.779, 6.9523, 4.3156, 2.9920, 2.1962, 1.6649, 1.2851, 1, 0.77817,
                              0.60064, 0.45534, 0.33422, 0.23172, 0.14384, 0.067662, 0.001};
    int ok = 1;
    for (int i = 0; i <= 16; i++) {
        double v = schedule_sigma(&s, 1.0 - i / 16.0);
        if (fabs(v - nodes[i]) > 1e-4 * nodes[i]) {
            printf("  node %d: %.6g vs %.6g\n", i, v, nodes[i]);
            ok = 0;
        }
    }
    CHECK(ok, "log-logit sigma at the 17 AB-16 nodes (rtol 1e-4)");
    // c_noise = 10 ln sigma at the nodes: +-69.0776 ... 0, antisymmetric
    const double cn[9] = {69.0776, 26.9323, 19.3908, 14.6224, 10.9595, 7.8671, 5.0976, 2.5081, 0};
    ok = 1;
    for (int i = 0; i <= 16; i++) {
        double v = edm_precond(schedule_sigma(&s, 1.0 - i / 16.0)).c_noise;
        double w = i <= 8 ? cn[i] : -cn[16 - i];
        if (fabs(v - w) > 6e-4) {
            printf("  c_noise node %d: %.6f vs %.4f\n", i, v, w);
            ok = 0;
        }
    }
    CHECK(ok, "c_noise = 10 ln sigma at the 17 nodes (+-69.0776 ... 0, atol 6e-4)");
    Schedule l = schedule_default(SCHED_LOG_LINEAR);
    CHECK_CLOSE(schedule_sigma(&l, 0), 1e-3, 0, 1e-12, "log-linear sigma(0) = 1e-3");
    CHECK_CLOSE(schedule_sigma(&l, 0.5), 1, 0, 1e-12, "log-linear sigma(0.5) = 1");
    CHECK_CLOSE(schedule_sigma(&l, 1), 1e3, 0, 1e-12, "log-linear sigma(1) = 1e3");
    CHECK_CLOSE(schedule_sigma(&l, 0.25), pow(10, -1.5), 0, 1e-12, "log-linear sigma(0.25) = 10^-1.5 (log-uniform)");
    Schedule sc = s;
    sc.scale = 2.0;
    sc.shift = 0.5;
    CHECK_CLOSE(schedule_sigma(&sc, 0.5), exp(0.5), 0, 1e-12, "log-logit with scale 2 shift 0.5: sigma(0.5) = e^0.5");
}

static void test_precond(void) {
    Precond p = edm_precond(1.0);
    CHECK_CLOSE(p.c_in, 0.707107, 0, 1e-6, "c_in(1) = 0.707107");
    CHECK_CLOSE(p.c_out, 0.707107, 0, 1e-6, "c_out(1) = 0.707107");
    CHECK_CLOSE(p.c_skip, 0.5, 0, 1e-12, "c_skip(1) = 0.5");
    CHECK_CLOSE(p.var, 0.5, 0, 1e-12, "var(1) = 0.5");
    CHECK_CLOSE(p.weight, 2.0, 0, 1e-12, "loss weight (1+s^2)/s^2 at 1 = 2");
    CHECK_CLOSE(p.c_noise, 0.0, 1e-12, 0, "c_noise(1) = 0");
    // identities used by the DM loss and the masking (denoiser.h)
    int ok = 1;
    for (double s = 1e-3; s <= 1e3; s *= 3.7) {
        Precond q = edm_precond(s);
        ok &= fabs(q.c_out * q.c_out * q.weight - 1) < 1e-12;
        ok &= fabs(q.c_in * q.c_obs - 1) < 1e-12;
        ok &= fabs(s / (1 + q.c_obs) - (q.c_obs - 1) / s) < 1e-9 * (1 + (q.c_obs - 1) / s);
        ok &= fabs(q.c_skip + q.var - 1) < 1e-12;
    }
    CHECK(ok, "c_out^2 (1+s^2)/s^2 = 1, c_in c_obs = 1, s/(1+sqrt(1+s^2)) = (sqrt(1+s^2)-1)/s, c_skip + var = 1");
}

static void test_ab(void) {
    Schedule s = schedule_default(SCHED_LOG_LOGIT);
    double rho[17], c[3];
    for (int i = 0; i <= 16; i++) rho[i] = schedule_sigma(&s, 1.0 - i / 16.0);
    const double want[5][3] = {{-985.221, 0, 0},
                               {0.0310903, -7.85807, 0},
                               {-3.40542e-5, 0.448438, -3.08511},
                               {-0.0376394, 0.481593, -1.76756},
                               {-0.0185892, 0.0692037, -0.117277}};
    const int step[5] = {0, 1, 2, 3, 15};
    for (int k = 0; k < 5; k++) {
        int n = ab_coefficients(c, rho, step[k] + 1, 3);
        int ok = n == (step[k] < 2 ? step[k] + 1 : 3);
        for (int j = 0; j < n; j++) ok &= fabs(c[j] - want[k][j]) <= 2e-5 * fabs(want[k][j]);
        CHECK(ok, "AB(3) coefficients step %d: [%.6g %.6g %.6g] (n = %d)", step[k], c[0], n > 1 ? c[1] : 0,
              n > 2 ? c[2] : 0, n);
    }
    // AB is exact for polynomial z of degree < n: sum_j c_j p(rho_j) = int p over [rho_7, rho_8].
    ab_coefficients(c, rho, 8, 3);
    double a = rho[7], b = rho[8];
    double exact = (b * b * b - a * a * a) / 3 - 2 * (b * b - a * a) / 2 + 0.5 * (b - a); // p = r^2 - 2 r + 0.5
    double sum = 0;
    for (int j = 0; j < 3; j++) sum += c[j] * (rho[5 + j] * rho[5 + j] - 2 * rho[5 + j] + 0.5);
    CHECK_CLOSE(sum, exact, 1e-12, 1e-10, "AB(3) integrates a quadratic exactly");
    // EAB: sum_j c_j p(l_j) = int e^u p(u) du over [l_7, l_8], checked by Simpson's rule.
    double l[17];
    for (int i = 0; i <= 16; i++) l[i] = log(rho[i]);
    eab_coefficients(c, l, 8, 3);
    double lo = l[7], hi = l[8], integ = 0;
    int M = 2000;
    for (int i = 0; i <= M; i++) {
        double u = lo + (hi - lo) * i / M, w = (i == 0 || i == M) ? 1 : (i % 2 ? 4 : 2);
        integ += w * exp(u) * (u * u - 2 * u + 0.5);
    }
    integ *= (hi - lo) / (3.0 * M);
    sum = 0;
    for (int j = 0; j < 3; j++) sum += c[j] * (l[5 + j] * l[5 + j] - 2 * l[5 + j] + 0.5);
    CHECK_CLOSE(sum, integ, 1e-10, 1e-8, "EAB(3) integrates e^u p(u) exactly for a quadratic p (%.9g)", sum);
    // order 1: both reduce to the Euler step rho_{i+1} - rho_i
    double c1;
    ab_coefficients(&c1, rho, 5, 1);
    CHECK_CLOSE(c1, rho[5] - rho[4], 0, 1e-12, "AB(1) = Euler step");
    eab_coefficients(&c1, l, 5, 1);
    CHECK_CLOSE(c1, rho[5] - rho[4], 0, 1e-10, "EAB(1) = Euler step");
}

static void test_context_mask(void) {
    const int L = 5, n = 200000;
    Rng r = rng_seed(42);
    long cnt[5] = {0}, fwd = 0;
    int ok = 1;
    float m[5];
    for (int i = 0; i < n; i++) {
        int f;
        int c = context_mask_sample(m, L, 1.0, 0.66, 1, &r, &f);
        if (c < 1 || c > 4) ok = 0;
        else cnt[c]++;
        fwd += f;
        int ones = 0;
        for (int k = 0; k < L; k++) {
            ones += m[k] != 0;
            ok &= (m[k] != 0) == (f ? k < c : k >= L - c);
        }
        ok &= ones == c;
    }
    CHECK(ok, "context masks: c in [1, 4], the first c frames (forward) or the last c frames (backward)");
    // exact P(c = j) = sum over k = j-1 mod 4 of e^-1 / k!
    const double spec[4] = {0.3832, 0.3709, 0.1845, 0.0614};
    for (int j = 1; j <= 4; j++) {
        double p = 0, fact = 1;
        for (int k = 0; k < 40; k++) {
            if (k > 0) fact *= k;
            if (k % 4 == j - 1) p += exp(-1.0) / fact;
        }
        double emp = (double)cnt[j] / n, se = sqrt(p * (1 - p) / n);
        CHECK(fabs(p - spec[j - 1]) < 5e-5 && fabs(emp - p) < 5 * se,
              "P(c = %d): exact %.4f (spec %.4f), sampled %.4f (|diff| %.1f sigma)", j, p, spec[j - 1], emp,
              fabs(emp - p) / se);
    }
    double share = (double)fwd / n, se = sqrt(0.66 * 0.34 / n);
    CHECK(fabs(share - 0.66) < 5 * se, "forward share %.4f = 0.66 (%.1f sigma)", share, fabs(share - 0.66) / se);
    // atleast = 0 allows an empty context: c = Poisson mod L
    long zero = 0;
    for (int i = 0; i < 20000; i++) zero += context_mask_sample(m, L, 1.0, 0.5, 0, &r, NULL) == 0;
    double p0 = exp(-1.0) * (1 + 1.0 / 120 + 1.0 / 3628800.0);
    CHECK(fabs((double)zero / 20000 - p0) < 5 * sqrt(p0 * (1 - p0) / 20000), "atleast 0: P(c = 0) = %.4f", p0);
    // expansion to (B, C, L, S)
    float fm[2 * 5] = {1, 0, 0, 0, 0, 0, 0, 0, 1, 1}, full[2 * 3 * 5 * 4];
    context_mask_expand(full, fm, 2, 3, 5, 4);
    ok = 1;
    for (int b = 0; b < 2; b++)
        for (int ch = 0; ch < 3; ch++)
            for (int k = 0; k < 5; k++)
                for (int s = 0; s < 4; s++) ok &= full[((b * 3 + ch) * 5 + k) * 4 + s] == fm[b * 5 + k];
    CHECK(ok, "context_mask_expand: constant over channels and space");
}

static void prior_case(TimePriorKind kind, double a, double b, const char *what) {
    TimePrior p = {kind, a, b};
    Rng r = rng_seed(7 + kind);
    const int n = 200000;
    double s = 0, s2 = 0;
    int inside = 1;
    for (int i = 0; i < n; i++) {
        double t = time_prior_sample(&p, &r);
        inside &= t >= (kind == PRIOR_UNIFORM ? a : 0) && t <= (kind == PRIOR_UNIFORM ? b : 1);
        s += t;
        s2 += t * t;
    }
    double mean = s / n, var = s2 / n - mean * mean, mu = time_prior_mean(&p);
    // analytic variance: uniform (b-a)^2/12, beta ab/((a+b)^2 (a+b+1)), kumaraswamy via moments
    double v;
    if (kind == PRIOR_UNIFORM) v = (b - a) * (b - a) / 12;
    else if (kind == PRIOR_BETA) v = a * b / ((a + b) * (a + b) * (a + b + 1));
    else v = b * exp(lgamma(1 + 2 / a) + lgamma(b) - lgamma(1 + 2 / a + b)) - mu * mu;
    double se = sqrt(v / n);
    CHECK(inside && fabs(mean - mu) < 5 * se && fabs(var - v) < 0.02 * v,
          "time prior %s: sample mean %.4f = %.4f (%.1f sigma), var %.4f = %.4f", what, mean, mu, fabs(mean - mu) / se,
          var, v);
}

static void test_priors(void) {
    prior_case(PRIOR_UNIFORM, 0, 1, "uniform(0, 1)");
    prior_case(PRIOR_BETA, 1, 0.5, "beta(1, 0.5)");
    prior_case(PRIOR_KUMARASWAMY, 1, 0.5, "kumaraswamy(1, 0.5)");
    prior_case(PRIOR_BETA, 2, 3, "beta(2, 3)");
    prior_case(PRIOR_KUMARASWAMY, 2, 3, "kumaraswamy(2, 3)");
    TimePrior b = {PRIOR_BETA, 1, 0.5};
    CHECK_CLOSE(time_prior_mean(&b), 2.0 / 3.0, 0, 1e-12, "beta(1, 0.5) mean = 2/3");
    TimePrior k = {PRIOR_KUMARASWAMY, 1, 0.5};
    CHECK_CLOSE(time_prior_mean(&k), 2.0 / 3.0, 0, 1e-12, "kumaraswamy(1, 0.5) mean = 2/3");
    Rng r = rng_seed(3);
    for (int i = 0; i < 2; i++) {
        double kk = i ? 3.0 : 0.5, s = 0, s2 = 0;
        for (int j = 0; j < 100000; j++) {
            double g = rng_gamma(&r, kk);
            s += g;
            s2 += g * g;
        }
        double m = s / 1e5, v = s2 / 1e5 - m * m;
        CHECK(fabs(m - kk) < 5 * sqrt(kk / 1e5) && fabs(v - kk) < 0.05 * kk, "gamma(%g): mean %.4f var %.4f", kk, m, v);
    }
}

static void test_sine(void) {
    float x = 1.0f, *xd = nn_alloc(1), *od = nn_alloc(256), out[256];
    nn_to_backend(xd, &x, 1);
    sine_encoding_forward(od, xd, 1, 4, 1e3f);
    nn_to_host(out, od, 4);
    const double want[4] = {0.841471, 0.0010000, 0.540302, 0.9999995};
    int ok = 1;
    for (int i = 0; i < 4; i++) ok &= fabs(out[i] - want[i]) < 1e-6;
    CHECK(ok, "SineEncoding(D=4) at 1 = [%.6f %.7f %.6f %.7f]", out[0], out[1], out[2], out[3]);
    x = 2.5f;
    nn_to_backend(xd, &x, 1);
    sine_encoding_forward(od, xd, 1, 256, 1e3f);
    nn_to_host(out, od, 256);
    ok = 1;
    for (int k = 0; k < 128; k++) {
        double f = pow(10.0, -3.0 * k / 127.0);
        ok &= fabs(out[k] - sin(2.5 * f)) < 2e-6 && fabs(out[128 + k] - cos(2.5 * f)) < 2e-6;
    }
    CHECK(ok, "SineEncoding(256): f_k = 10^(-3k/127), sines block then cosines block");
    nn_free(xd);
    nn_free(od);
}

// ---------------------------------------------------------------------------------------------
// Samplers on Gaussian data N(mu, s^2) per element: E[x | x_t] = mu + s^2/(s^2 + sigma^2) (x_t - mu).
// The probability-flow ODE then has the closed-form solution
//   x(sigma_0) - mu = r (x_T - mu),  r = sqrt((s^2 + sigma_0^2) / (s^2 + sigma_T^2)),
// and a deterministic sampler, being linear in x for a linear denoiser, maps x_T - mu to
// g (x_T - mu) with a gain g fixed by its coefficients. Reference gains g / r and the sample
// standard deviations of the stochastic samplers were measured with azula 0.3.1's own samplers
// (sample.py) on the same problem (16 steps, log-logit, float64 schedule): ab 0.98980266,
// eab 0.98733672, ddim 0.91165703 (so with 16 steps none reaches the exact ODE value 1);
// std ddpm 0.4185-0.4191, pc 0.4559-0.4575 over 1e5 samples (exact 0.5).

typedef struct {
    double mu, s2;
    float *ones;
    size_t n;
    int calls;
} Gauss;

static void gauss_denoise(void *ctx, float *mean, const float *x_t, double t, double sigma) {
    Gauss *g = (Gauss *)ctx;
    double k = g->s2 / (g->s2 + sigma * sigma);
    nn_copy(mean, x_t, g->n);
    nn_scale(mean, (float)k, g->n);
    nn_axpy(mean, (float)((1 - k) * g->mu), g->ones, g->n);
    g->calls++;
}

// gain_ref > 0: deterministic sampler, check g / r; else check the std against std_ref.
static void sampler_case(SamplerKind kind, const char *name, double gain_ref, double std_ref) {
    const size_t n = 100000;
    Schedule s = schedule_default(SCHED_LOG_LOGIT);
    SamplerConfig cfg = sampler_default(kind);
    Gauss g = {0.7, 0.25, nn_alloc(n), n, 0};
    nn_fill(g.ones, 1.0f, n);
    float *x = nn_alloc(n), *x0 = (float *)malloc(n * sizeof(float)), *x1 = (float *)malloc(n * sizeof(float));
    sampler_init_state(x, n, &cfg, &s, 123);
    nn_to_host(x0, x, n);
    sampler_run(&cfg, &s, gauss_denoise, &g, x, n, 456, NULL);
    nn_to_host(x1, x, n);
    double sT = schedule_sigma(&s, 1.0), s0 = schedule_sigma(&s, 0.0);
    double r = sqrt((g.s2 + s0 * s0) / (g.s2 + sT * sT));
    double m = 0, m2 = 0, num = 0, den = 0, v0 = 0;
    for (size_t i = 0; i < n; i++) {
        m += x1[i];
        m2 += (double)x1[i] * x1[i];
        num += (x1[i] - g.mu) * (x0[i] - g.mu);
        den += (x0[i] - g.mu) * (x0[i] - g.mu);
        v0 += (double)x0[i] * x0[i];
    }
    m /= n;
    double sd = sqrt(m2 / n - m * m), gain = num / den / r;
    CHECK(g.calls == sampler_evaluations(&cfg), "%s: %d denoiser evaluations (expected %d)", name, g.calls,
          sampler_evaluations(&cfg));
    CHECK(fabs(sqrt(v0 / n) - sqrt(1 + sT * sT)) < 0.01 * sqrt(1 + sT * sT), "%s: initial state std %.2f = sqrt(1 + sigma_max^2)",
          name, sqrt(v0 / n));
    CHECK(fabs(m - g.mu) < 0.01, "%s on N(0.7, 0.5^2): sample mean %.4f (tol 0.01), std %.4f", name, m, sd);
    if (gain_ref > 0)
        CHECK(fabs(gain - gain_ref) < 2e-4, "%s: gain g/r = %.6f = azula's %.6f (exact ODE: 1)", name, gain, gain_ref);
    else
        CHECK(fabs(sd - std_ref) < 0.006, "%s: sample std %.4f = azula's %.4f (+-0.006)", name, sd, std_ref);
    nn_free(g.ones);
    nn_free(x);
    free(x0);
    free(x1);
}

static void test_samplers(void) {
    sampler_case(SAMPLER_AB, "ab (order 3, 16 steps)", 0.98980266, 0);
    sampler_case(SAMPLER_EAB, "eab (order 3, 16 steps)", 0.98733672, 0);
    sampler_case(SAMPLER_DDIM, "ddim (eta 0, 16 steps)", 0.91165703, 0);
    sampler_case(SAMPLER_DDPM, "ddpm (16 steps)", 0, 0.4188);
    sampler_case(SAMPLER_PC, "pc (1 correction, delta 0.01, 16 steps)", 0, 0.4567);
    // AB is the most accurate of the deterministic ones; more steps converge to the ODE.
    const size_t n = 4;
    Schedule s = schedule_default(SCHED_LOG_LOGIT);
    SamplerConfig cfg = sampler_default(SAMPLER_AB);
    cfg.steps = 64;
    Gauss g = {0.7, 0.25, nn_alloc(n), n, 0};
    nn_fill(g.ones, 1.0f, n);
    float xh[4] = {1000.7f, -999.3f, 500.7f, 0.7f}, *x = nn_alloc(n);
    nn_to_backend(x, xh, n);
    sampler_run(&cfg, &s, gauss_denoise, &g, x, n, 1, NULL);
    nn_to_host(xh, x, n);
    double r = sqrt((0.25 + 1e-6) / (0.25 + 1e6));
    CHECK(fabs((xh[0] - 0.7) / 1000.0 / r - 1) < 2e-3, "ab with 64 steps: gain g/r = %.5f -> 1", (xh[0] - 0.7) / 1000.0 / r);
    CHECK(fabs(xh[3] - 0.7f) < 1e-6, "a state at the data mean stays there (%.7f)", xh[3]);
    nn_free(x);
    nn_free(g.ones);
}

// sampler_run_members: member b of a batch run equals a run of that member alone with seeds[b]
// (element-wise denoiser, so any difference would come from the noise), for the stochastic samplers.
static void test_sampler_members(void) {
    enum { B = 3, NM = 40 };
    const uint64_t seeds[B] = {11, 22, 33};
    Schedule s = schedule_default(SCHED_LOG_LOGIT);
    const SamplerKind kinds[3] = {SAMPLER_DDPM, SAMPLER_PC, SAMPLER_DDIM};
    for (int k = 0; k < 3; k++) {
        SamplerConfig cfg = sampler_default(kinds[k]);
        cfg.eta = 0.5; // ddim: stochastic
        Gauss g = {0.7, 0.25, nn_alloc(B * NM), B * NM, 0};
        nn_fill(g.ones, 1.0f, B * NM);
        float *x = nn_alloc(B * NM), all[B * NM], one[NM];
        for (int b = 0; b < B; b++) sampler_init_state(x + b * NM, NM, &cfg, &s, 100 + b);
        float init[B * NM];
        nn_to_host(init, x, B * NM);
        sampler_run_members(&cfg, &s, gauss_denoise, &g, x, B * NM, B, seeds, NULL);
        nn_to_host(all, x, B * NM);
        int same = 1;
        g.n = NM;
        for (int b = 0; b < B; b++) {
            nn_to_backend(x, init + b * NM, NM);
            sampler_run(&cfg, &s, gauss_denoise, &g, x, NM, seeds[b], NULL);
            nn_to_host(one, x, NM);
            same &= memcmp(one, all + b * NM, sizeof one) == 0;
        }
        int differ = memcmp(all, all + NM, NM * sizeof(float)) != 0;
        CHECK(same && differ, "sampler_run_members (%s, 3 members): each member equals its own run with seeds[b] (and members differ)",
              kinds[k] == SAMPLER_DDPM ? "ddpm" : kinds[k] == SAMPLER_PC ? "pc" : "ddim eta 0.5");
        nn_free(g.ones);
        nn_free(x);
    }
}

// Bad input ends the process with a non-zero status (lola_die).
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
static void bad_sampler(void) { sampler_kind_parse("heun2"); }
static void bad_prior(void) { time_prior_kind_parse("triangle"); }
static void bad_mask(void) {
    Rng r = rng_seed(1);
    float m[1];
    context_mask_sample(m, 1, 1.0, 0.5, 1, &r, NULL);
}
static void bad_schedule(void) { schedule_kind_parse("cosine"); }

int main(void) {
    nn_init(-1);
    test_schedules();
    test_precond();
    test_ab();
    test_context_mask();
    test_priors();
    test_sine();
    test_samplers();
    test_sampler_members();
    CHECK(dies(bad_sampler) && dies(bad_prior) && dies(bad_mask) && dies(bad_schedule),
          "bad names (sampler 'heun2', prior 'triangle', schedule 'cosine') and L = 1 masks are fatal errors");
    CHECK(sampler_kind_parse("eab") == SAMPLER_EAB && time_prior_kind_parse("kumaraswamy") == PRIOR_KUMARASWAMY &&
              schedule_kind_parse("log_linear") == SCHED_LOG_LINEAR,
          "config names parse");
    return test_summary();
}
