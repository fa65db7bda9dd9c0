// optim.c: see optim.h.
#include "optim.h"

#include <math.h>

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"
#include "psgd.h"

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
    memset(o, 0, sizeof *o);
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
        lola_die("internal error: optimizer 'psgd' needs the parameter shapes (call optim_init_table)");
    case OPTIM_SOAP:
        lola_die_hint("set optim.optimizer=adamw or psgd", "optimizer 'soap' is not implemented in this build");
    }
}

// PSGD-Kron settings of an OptimConfig: LoLa's defaults (psgd_config_default) with the config's
// momentum and preconditioner schedule/size (0 = LoLa's value).
static void psgd_config_of(const OptimConfig *cfg, PsgdConfig *pc) {
    psgd_config_default(pc);
    pc->beta = cfg->beta1;
    if (cfg->precond_frequency > 0) pc->min_prob = 1.0 / (double)cfg->precond_frequency;
    if (cfg->precond_decay > 0) pc->prob_decay = cfg->precond_decay;
    if (cfg->precond_size > 0) pc->max_size = cfg->precond_size;
}

size_t optim_state_floats(const OptimConfig *cfg, const ParamTable *table) {
    if (cfg->kind != OPTIM_PSGD) return 2 * table->total;
    PsgdConfig pc;
    psgd_config_of(cfg, &pc);
    size_t st = 0, scratch = 0;
    psgd_state_floats(&pc, table, &st, &scratch);
    return st + scratch;
}

void optim_init_table(Optim *o, const OptimConfig *cfg, const ParamTable *table) {
    if (cfg->kind != OPTIM_PSGD) {
        optim_init(o, cfg, table->total);
        return;
    }
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->n = table->total;
    if (cfg->merge_dims)
        lola_die_hint("set optim.merge_dims=false (LoLa's setting)", "optimizer 'psgd': merge_dims=true is not implemented");
    PsgdConfig pc;
    psgd_config_of(cfg, &pc);
    o->psgd = LOLA_NEW(PsgdState, 1);
    psgd_init(o->psgd, &pc, table);
    o->n_extra = psgd_state_tensors(o->psgd, NULL, 0);
    o->extra = LOLA_NEW(CheckpointTensor, o->n_extra > 0 ? o->n_extra : 1);
    psgd_state_tensors(o->psgd, o->extra, o->n_extra);
    size_t st = 0, scratch = 0;
    psgd_state_floats(&pc, table, &st, &scratch);
    log_info("psgd: %d tensors, state %.1f MiB + scratch %.1f MiB (backend)", table->n, st * 4.0 / 1048576.0,
             scratch * 4.0 / 1048576.0);
}

void optim_free(Optim *o) {
    if (o->m) nn_free(o->m);
    if (o->v) nn_free(o->v);
    o->m = o->v = NULL;
    if (o->psgd) {
        psgd_free(o->psgd);
        free(o->psgd);
        o->psgd = NULL;
    }
    free(o->extra);
    o->extra = NULL;
    o->n_extra = 0;
}

const char *optim_kind_name(OptimKind k) {
    switch (k) {
    case OPTIM_ADAMW: return "adamw";
    case OPTIM_PSGD: return "psgd";
    case OPTIM_SOAP: return "soap";
    }
    return "?";
}

int optim_moment_slots(const Optim *o) { return o->psgd ? 1 : (o->m ? 1 : 0) | (o->v ? 2 : 0); }

void optim_moments_to_host(const Optim *o, float *h_m, float *h_v) {
    if (o->psgd) { // the momentum, and the factors into the host mirror behind optim_extra_state
        psgd_momentum_to_host(o->psgd, h_m);
        psgd_sync_to_host(o->psgd);
        return;
    }
    if (o->m) nn_to_host(h_m, o->m, o->n);
    if (o->v) nn_to_host(h_v, o->v, o->n);
}

void optim_moments_from_host(Optim *o, const float *h_m, const float *h_v) {
    if (o->psgd) { // the momentum, and the factors loaded into the host mirror
        psgd_momentum_from_host(o->psgd, h_m);
        psgd_sync_from_host(o->psgd);
        return;
    }
    if (o->m) nn_to_backend(o->m, h_m, o->n);
    if (o->v) nn_to_backend(o->v, h_v, o->n);
}

void optim_extra_state(const Optim *o, CheckpointExtra *ex) {
    ex->group = "psgd";
    ex->n = o->psgd ? o->n_extra : 0;
    ex->t = o->extra;
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
    if (o->psgd)
        psgd_step(o->psgd, params, grads, lr, o->cfg.weight_decay, o->t);
    else
        adamw_update(params, grads, o->m, o->v, o->n, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps,
                     o->cfg.weight_decay, (int)o->t);
    return 1;
}
