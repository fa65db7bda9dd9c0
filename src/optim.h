// optim.h: optimizer state, learning-rate schedule and the safe gradient step shared by every
// training stage (lola-spec.md 6.1-6.2; LoLa lola/optim.py get_optimizer / safe_gd_step).
#ifndef LOLA_OPTIM_H
#define LOLA_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OPTIM_ADAMW = 0, OPTIM_PSGD, OPTIM_SOAP } OptimKind;
typedef enum { LR_NONE = 0, LR_COSINE, LR_LINEAR, LR_EXPONENTIAL } LrSchedule;

typedef struct {
    OptimKind kind;
    float lr;         // base learning rate
    float beta1, beta2;
    float eps;        // AdamW eps (1e-8)
    float weight_decay;
    float grad_clip;  // max global L2 norm; <= 0 disables clipping
    LrSchedule sched;
    int epochs;       // schedule length E
    int warmup;       // warmup epochs (0 = none)
} OptimConfig;

typedef struct {
    OptimConfig cfg;
    size_t n;        // parameters
    float *m, *v;    // backend buffers (AdamW first/second moments), n each
    int64_t t;       // optimizer steps taken (skipped steps do not count)
} Optim;

// LoLa's epoch learning-rate factor (stepped once per epoch, e = 0..E-1):
// cosine (1 + cos(pi e / E)) / 2; linear max(0, 1 - e/E); exponential exp(ln(1e-3) e / E);
// none 1; times the warmup factor min(1, (e + 1) / (warmup + 1)).
double lr_factor(LrSchedule sched, int epoch, int epochs, int warmup);

// Allocates zeroed optimizer state for n parameters. Dies for optimizers not built yet (PSGD, SOAP).
void optim_init(Optim *o, const OptimConfig *cfg, size_t n);
void optim_free(Optim *o);

// Global L2 norm of grads (n elements, backend memory), float64 accumulation.
double grad_global_norm(const float *grads, size_t n);
// torch.nn.utils.clip_grad_norm_: when max_norm > 0 and norm > max_norm... precisely, the
// coefficient max_norm / (norm + 1e-6) is applied when it is < 1. Returns the coefficient used.
double clip_coefficient(double norm, double max_norm);

// One safe step (LoLa safe_gd_step): norm = global norm of grads; if it is not finite the step is
// skipped (returns 0, nothing changes); else grads are clipped and the optimizer updates params
// with learning rate lr. *norm_out receives the unclipped norm. Returns 1 when a step was taken.
int optim_step(Optim *o, float *params, float *grads, float lr, double *norm_out);

#endif
