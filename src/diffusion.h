// diffusion.h: the diffusion process of LoLa (lola-spec.md 3): noise schedules, EDM
// preconditioning coefficients, time priors, LoLa's random context mask, and the reverse-process
// samplers of azula 0.3.1 (ab, ddim, ddpm, eab, pc) written over a denoiser callback.
//
// Conventions: variance exploding, alpha_t = 1, t in [0, 1], sigma(0) = sigma_min, sigma(1) =
// sigma_max. Schedules and coefficients are evaluated in float64 on the host (the spec's reference
// values, lola-spec.md 3.6 / 10.3, are the float64 values; azula evaluates sigma in float32, which
// moves e.g. sigma(1) to 999.968 and the first AB coefficient from -985.221 to -985.188).
// Sampler state lives in backend memory and is updated with nn.h ops only.
#ifndef LOLA_DIFFUSION_H
#define LOLA_DIFFUSION_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Schedules (lola-spec.md 3.1)

typedef enum { SCHED_LOG_LOGIT = 0, SCHED_LOG_LINEAR } ScheduleKind;

typedef struct {
    ScheduleKind kind;
    double sigma_min, sigma_max; // 1e-3, 1e3
    double scale, shift;         // log-logit a = 1, b = 0 (ignored by log-linear)
} Schedule;

// LoLa's defaults for the given kind (sigma 1e-3 .. 1e3, scale 1, shift 0).
Schedule schedule_default(ScheduleKind kind);
// sigma(t) for t in [0, 1] (t outside is clamped for log-logit's logit domain; dies on NaN):
//   log-logit:  u = t_min + t (t_max - t_min), t_x = s_x / (1 + s_x); sigma = exp(a logit(u) + b)
//   log-linear: sigma = exp((1 - t) ln s_min + t ln s_max)
double schedule_sigma(const Schedule *s, double t);
// "log_logit" / "log_linear" -> kind; dies naming the bad value.
ScheduleKind schedule_kind_parse(const char *name);

// ---------------------------------------------------------------------------------------------
// EDM preconditioning (lola-spec.md 3.2, azula ElucidatedDenoiser with alpha = 1)

typedef struct {
    double c_in;   // 1 / sqrt(1 + s^2)
    double c_out;  // s / sqrt(1 + s^2)
    double c_skip; // 1 / (1 + s^2)
    double c_noise;// 10 ln s
    double var;    // s^2 / (1 + s^2): the (fixed) posterior variance returned with the mean
    double weight; // (1 + s^2) / s^2 = 1 / var: the loss weight of (mean - x)^2
    double c_obs;  // sqrt(1 + s^2): masked positions of x_t hold c_obs * y (lola-spec.md 3.3)
} Precond;

Precond edm_precond(double sigma);

// ---------------------------------------------------------------------------------------------
// Time priors p(t) of DenoiserLoss (lola-spec.md 3.4)

typedef enum { PRIOR_UNIFORM = 0, PRIOR_BETA, PRIOR_KUMARASWAMY } TimePriorKind;

typedef struct {
    TimePriorKind kind;
    double a, b; // uniform(a, b) (default 0, 1); beta(a, b), kumaraswamy(a, b) (configs: 1, 0.5)
} TimePrior;

// "uniform" / "beta" / "kumaraswamy" -> kind ("triangle" is refused like LoLa's DenoiserLoss).
TimePriorKind time_prior_kind_parse(const char *name);
// One draw t ~ p(t) from the host stream rng. Beta uses two Gamma draws (Marsaglia-Tsang),
// Kumaraswamy the inverse CDF t = (1 - (1 - u)^(1/b))^(1/a).
double time_prior_sample(const TimePrior *p, Rng *rng);
// Analytic mean of p(t) (for tests and logs).
double time_prior_mean(const TimePrior *p);
// Gamma(shape k, scale 1) draw (Marsaglia-Tsang; k < 1 via the U^(1/k) boost). k > 0.
double rng_gamma(Rng *rng, double k);

// ---------------------------------------------------------------------------------------------
// Random context mask (lola-spec.md 3.4 item 5, lola.emulation.random_context_mask)

// One sample: the context size is c = (Poisson(lambda) mod (L - atleast)) + atleast; with
// probability rho the context is the first c frames (forward prediction), else the last c.
// Writes frame_mask[0..L-1] (1 = context, 0 = to predict), returns c; *forward (may be NULL)
// receives 1 for a forward context. Draw order: the Poisson count, then the uniform.
// Dies when L < 2 or atleast is outside [0, L - 1].
int context_mask_sample(float *frame_mask, int L, double lambda, double rho, int atleast, Rng *rng,
                        int *forward);
// Host expansion of per-sample frame masks (B, L) to the full (B, C, L, S) shape the models take
// (S = product of the spatial sizes), constant over channels and space.
void context_mask_expand(float *full, const float *frame_mask, int B, int C, int L, size_t S);

// ---------------------------------------------------------------------------------------------
// Samplers (azula 0.3.1 sample.py, lola-spec.md 3.6)

// The denoiser: writes mean = E[x | x_t] (n floats, backend memory) for the state x_t at time t,
// sigma = sigma(t). Conditioning (mask, observation, label) lives in ctx. mean never aliases x_t.
typedef void (*DenoiseFn)(void *ctx, float *mean, const float *x_t, double t, double sigma);

typedef enum { SAMPLER_AB = 0, SAMPLER_DDIM, SAMPLER_DDPM, SAMPLER_EAB, SAMPLER_PC } SamplerKind;

typedef struct {
    SamplerKind kind;
    int steps;         // T (eval.yaml: 16)
    double start, stop;// t_T = 1, t_0 = 0; the grid is linspace(start, stop, steps + 1)
    int order;         // ab / eab: multi-step order (3)
    double eta;        // ddim: stochasticity (0: deterministic, equivalent to Euler)
    int corrections;   // pc: Langevin corrections per step (1)
    double delta;      // pc: correction amplitude (0.01)
} SamplerConfig;

// Defaults of azula 0.3.1 for the kind, with LoLa's steps = 16.
SamplerConfig sampler_default(SamplerKind kind);
// "ab" / "ddim" / "ddpm" / "eab" / "pc" -> kind; dies naming the bad value.
SamplerKind sampler_kind_parse(const char *name);
// Network evaluations one sampler_run makes (16 for ab/ddim/ddpm/eab with 16 steps; pc: 32).
int sampler_evaluations(const SamplerConfig *cfg);

// Adams-Bashforth coefficients (azula ABSampler.adams_bashforth): nodes rho[0..m], m >= 1;
// n = min(order, m) coefficients c[0..n-1] (oldest to newest) for the step rho[m-1] -> rho[m],
// over the nodes rho[m-n..m-1]: solve V c = b, V[k][j] = rho[m-n+j]^k,
// b[k] = (rho[m]^(k+1) - rho[m-1]^(k+1)) / (k+1), in float64 (partial-pivot elimination).
// Returns n. The sampler casts the result to float32 as azula does.
int ab_coefficients(double *c, const double *rho, int m, int order);
// Exponential AB coefficients (azula EABSampler), nodes l = log rho:
// b[k] = int_{l[m-1]}^{l[m]} e^u u^k du = [(-1)^k k! e^u sum_{j<=k} (-u)^j / j!].
int eab_coefficients(double *c, const double *logrho, int m, int order);

// Backend floats of scratch sampler_run needs for a state of n floats.
size_t sampler_work_floats(const SamplerConfig *cfg, size_t n);
// The initial state (azula Sampler.init with mean 0, var 1): x = sqrt(1 + sigma(start)^2) * N(0, I),
// the normals being nn_randn(x, n, seed).
void sampler_init_state(float *x, size_t n, const SamplerConfig *cfg, const Schedule *s, uint64_t seed);
// Simulates the reverse process in place: x (n floats, backend) holds x_{t_T} on entry and
// x_{t_0} on return (no final denoising step: the output is at sigma(stop)). work: backend
// scratch of sampler_work_floats(cfg, n) floats, or NULL to allocate (and free) it here.
// Stochastic samplers (ddpm, ddim eta > 0, pc) draw their k-th noise tensor of the run
// (k = 0, 1, ...) as nn_randn(., n, rng_hash(seed, k)).
void sampler_run(const SamplerConfig *cfg, const Schedule *s, DenoiseFn fn, void *ctx, float *x,
                 size_t n, uint64_t seed, float *work);
// sampler_run over a batch of B independent members (x: B slices of n / B floats; n % B == 0)
// whose noise does not depend on the batch: the k-th noise tensor of member b is
// nn_randn(., n / B, rng_hash(seeds[b], k)), so a member's trajectory depends only on its own seed
// (and the denoiser), not on B or its position (eval spreads members over ranks). sampler_run is
// this with B = 1 and seeds = {seed}. Deterministic samplers (ab, eab, ddim eta 0) never draw.
void sampler_run_members(const SamplerConfig *cfg, const Schedule *s, DenoiseFn fn, void *ctx, float *x,
                         size_t n, int B, const uint64_t *seeds, float *work);

#ifdef __cplusplus
}
#endif
#endif
