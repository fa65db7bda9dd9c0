// optim.h: optimizer state, learning-rate schedule and the safe gradient step shared by every
// training stage (lola-spec.md 6.1-6.3; LoLa lola/optim.py get_optimizer / safe_gd_step). AdamW runs
// on the backend (adamw_update), PSGD-Kron too (src/psgd.h, through the PSGD ops of nn.h).
#ifndef LOLA_OPTIM_H
#define LOLA_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "params.h"

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
    // PSGD-Kron (lola-spec.md 6.3, 8.5); 0 means LoLa's value.
    int precond_frequency; // 64: minimum preconditioner update probability 1/64
    double precond_decay;  // 0.999: update probability max(1/frequency, decay^k)
    int precond_size;      // 4096: largest axis with a dense triangular factor
    int merge_dims;        // must be 0 (LoLa: false; merging is not implemented)
} OptimConfig;

typedef struct {
    OptimConfig cfg;
    size_t n;        // parameters
    float *m, *v;    // backend buffers (AdamW first/second moments), n each; NULL for PSGD
    int64_t t;       // optimizer steps taken (skipped steps do not count)
    struct PsgdState *psgd;  // PSGD-Kron state (backend memory, src/psgd.h), NULL for AdamW
    CheckpointTensor *extra; // checkpoint view of the PSGD factors (owned)
    int n_extra;
} Optim;

// LoLa's epoch learning-rate factor (stepped once per epoch, e = 0..E-1):
// cosine (1 + cos(pi e / E)) / 2; linear max(0, 1 - e/E); exponential exp(ln(1e-3) e / E);
// none 1; times the warmup factor min(1, (e + 1) / (warmup + 1)).
double lr_factor(LrSchedule sched, int epoch, int epochs, int warmup);

// Allocates zeroed optimizer state for n parameters. Dies for optimizers that need the parameter
// shapes (PSGD: use optim_init_table) and for those not built yet (SOAP).
void optim_init(Optim *o, const OptimConfig *cfg, size_t n);
// Same, with the parameter table (kept by pointer): required by PSGD-Kron, whose factors follow
// each tensor's shape. Dies on a PSGD setting that is not supported (merge_dims).
void optim_init_table(Optim *o, const OptimConfig *cfg, const ParamTable *table);
// Backend floats of the state optim_init_table allocates for the table, without allocating:
// AdamW 2 x total (m, v); PSGD-Kron momentum + factors + caches + scratch (psgd_state_floats).
size_t optim_state_floats(const OptimConfig *cfg, const ParamTable *table);
void optim_free(Optim *o);
// "adamw", "psgd", "soap" (the checkpoint's @optimizer attribute).
const char *optim_kind_name(OptimKind k);

// Checkpoint glue. Per-parameter moment slots the optimizer stores: bit 0 = m, bit 1 = v
// (AdamW 3: m and v; PSGD 1: m = the momentum). to_host copies them into host buffers of n floats
// (only the slots it stores); from_host restores them. For PSGD they also move the factors and
// caches between the backend and the host tensors of optim_extra_state (to_host before writing a
// checkpoint; from_host after checkpoint_load_extra has filled them).
int optim_moment_slots(const Optim *o);
void optim_moments_to_host(const Optim *o, float *h_m, float *h_v);
void optim_moments_from_host(Optim *o, const float *h_m, const float *h_v);
// Further state as named host tensors that checkpoints write and read in place (PSGD factors and
// caches, group "psgd", host mirrors synchronised by optim_moments_to/from_host); ex->n = 0 for AdamW.
void optim_extra_state(const Optim *o, CheckpointExtra *ex);

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
