// optim.c: see optim.h.
#include "optim.h"

#include <math.h>

#include "common.h"
#include "nn.h"

double lr_factor(LrSchedule sched, int epoch, int epochs, int warmup) {
    double t = (double)epoch, E = epochs > 0 ? (double)epochs : 1.0, f = 1.0;
    switch (sched) {
    case LR_NONE: f = 1.0; break;
    case LR_COSINE: f = (1.0 + cos(M_PI * t / E)) / 2.0; break;
    case LR_LINEAR: f = fmax(0.0, 1.0 - t / E); break;
    case LR_EXPONENTIAL: f = exp(log(1e-3) * t / E); break;
    }
    if (warmup > 0) f *= fmin(1.0, (t + 1.0) / ((double)warmup + 1.0));
    return f;
}

void optim_init(Optim *o, const OptimConfig *cfg, size_t n) {
    o->cfg = *cfg;
    o->n = n;
    o->t = 0;
    o->m = o->v = NULL;
    switch (cfg->kind) {
    case OPTIM_ADAMW:
        o->m = nn_alloc(n);
        o->v = nn_alloc(n);
        break;
    case OPTIM_PSGD:
        lola_die_hint("set optim.optimizer=adamw (lola-spec.md 9 lists AdamW for the AE as an accepted deviation)",
                      "optimizer 'psgd' (PSGD-Kron) is not implemented in this build");
    case OPTIM_SOAP:
        lola_die_hint("set optim.optimizer=adamw", "optimizer 'soap' is not implemented in this build");
    }
}

void optim_free(Optim *o) {
    if (o->m) nn_free(o->m);
    if (o->v) nn_free(o->v);
    o->m = o->v = NULL;
}

double grad_global_norm(const float *grads, size_t n) { return sqrt(nn_sum_squares(grads, n)); }

double clip_coefficient(double norm, double max_norm) {
    if (max_norm <= 0.0) return 1.0;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

int optim_step(Optim *o, float *params, float *grads, float lr, double *norm_out) {
    double norm = grad_global_norm(grads, o->n);
    if (norm_out) *norm_out = norm;
    if (!isfinite(norm)) return 0;
    double c = clip_coefficient(norm, o->cfg.grad_clip);
    if (c < 1.0) nn_scale(grads, (float)c, o->n);
    o->t++;
    adamw_update(params, grads, o->m, o->v, o->n, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps,
                 o->cfg.weight_decay, (int)o->t);
    return 1;
}
