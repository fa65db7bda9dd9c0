// psgd.h: PSGD-Kron as LoLa trains its autoencoders: heavyball 1.4.3
// ForeachCachedDelayedPSGDKron(lr, beta=0.9, weight_decay, max_size_triangular=4096,
// merge_dims=False, preconditioner_update_probability=p(n)) with heavyball's defaults
// (lola-spec.md 6.3, 8.5). One step for every parameter tensor G (already clipped by optim_step):
//   1. momentum   m <- lerp(m, G, 1 - b_k), b_k = 1 - 0.1/(1 - 0.9^k) (m = G at k = 1); U = m
//   2. factors    one per axis: a dense upper-triangular Q_a (n x n, init I) when the tensor has
//                 >= 2 dims and 1 < n <= 4096, else a diagonal vector q_a (init 1)
//   3. precondition with the CACHE (delayed):  U' = U x_1 P_1 x_2 P_2 ...
//   4. with probability p(k) = max(1/64, 0.999^k), r = random.Random(0x172381 ^ k).random():
//      update every Q_a from (U + eps N1, V = N2) (steps a-e of 6.3), balance when r < 0.01,
//      refresh the cache (see "cache" below)
//   5. clip       out = clamp(1.5 (0.1 sign(x) log1p|x| + 0.9 tanh x), -2, 2), x = U'/1.5
//   6. update     theta <- theta (1 - lr wd) - lr out
//
// Cache (heavyball 1.4.3 behaviour, verified by running heavyball 1.4.3; see tests/torch_psgd.py):
// the cache is refreshed on update steps only, from the factors heavyball materialises at the
// START of the step: for a dense axis P_a = Q_a^T Q_a with Q_a from BEFORE this step's update (the
// update is written to heavyball's packed triangle, not to the materialised matrix), for a diagonal
// axis P_a = q_a^2 with q_a AFTER the update and balancing (the same tensor in heavyball). At step 1
// the cache is Q_0^T Q_0 = I (heavyball leaves it uninitialised: lola-spec.md 6.3 quirk).
//
// Gaussian draws (heavyball uses torch's global generator; not reproducible across libraries):
// here element i (row-major index in the tensor's own shape) of the noise N1 of tensor number t
// (parameter-table row) at step k is rng_hash_normal(psgd_noise_seed(seed, k, t, 0), i), and of V
// is rng_hash_normal(psgd_noise_seed(seed, k, t, 1), i): the same on every rank and backend, so
// data-parallel ranks stay identical and resuming is bit-exact.
//
// Memory: all PSGD state lives in BACKEND memory (nn_alloc; device memory on CUDA) and every step
// runs through the PSGD ops of nn.h (fp32; the CUDA tf32/bf16 modes run its GEMMs in TF32 as LoLa's
// "high" float32 matmul precision does): momentum (n floats), per
// dense axis Q and P (2 n_a^2 floats), per diagonal axis q and p (2 n_a floats), plus scratch
// (4 x the largest tensor + 3 x the largest dense axis squared + 3 x the largest dense axis).
// A host mirror of the factors and caches (same size) backs the checkpoint view; psgd_sync_to_host
// and psgd_sync_from_host move it.
// Compute per step ~2 n_a numel flops per dense axis (preconditioning); a preconditioner update
// adds ~7 n_a numel + 4 n_a^3. LoLa's large DCAE (237.6 M parameters, paper-era): ~1.2 TFLOP per
// step and ~5.3 TFLOP per update (test_psgd prints these): seconds per step on a CPU host,
// tens of milliseconds on a GPU.
#ifndef LOLA_PSGD_H
#define LOLA_PSGD_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "params.h"

// Default base seed of the Gaussian streams ("PSGD").
#define PSGD_NOISE_SEED 0x50534744ULL

typedef struct {
    double beta;          // momentum (LoLa betas[0] = 0.9)
    double precond_lr;    // 0.1
    double min_prob;      // 1 / precondition_frequency (1/64)
    double prob_decay;    // precondition_frequency_decay (0.999)
    int max_size;         // largest dense axis (precondition_size, 4096)
    int min_ndim;         // tensors with fewer dims are fully diagonal (2)
    double balance_prob;  // 0.01
    double init_scale;    // Q_0 = init_scale^(1/ndim) I (1)
    int force_update;     // -1: schedule p(k) (default); 0: never; 1: every step (tests)
    uint64_t noise_seed;  // base seed of the Gaussian streams (PSGD_NOISE_SEED)
} PsgdConfig;

typedef struct {
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t numel, offset;           // elements; offset in the parameter buffer
    int dense[PARAM_MAX_DIMS];      // 1: dense triangular factor on this axis, 0: diagonal
    float *q[PARAM_MAX_DIMS];       // factor (backend): n x n row-major upper triangular, or n
    float *p[PARAM_MAX_DIMS];       // cache (backend): n x n (symmetric) or n
    float *hq[PARAM_MAX_DIMS], *hp[PARAM_MAX_DIMS]; // their host mirrors (checkpoints)
} PsgdTensor;

typedef struct PsgdState {
    PsgdConfig cfg;
    const ParamTable *table;
    int n;               // tensors (table rows)
    PsgdTensor *t;
    size_t total;        // parameters
    float *mom;          // momentum, backend, total floats (table layout)
    float *arena;        // all factors and caches (backend)
    float *h_arena;      // host mirror of arena (checkpoint view)
    size_t arena_floats;
    float *s0, *s1, *s2, *s3; // backend scratch, max numel floats each
    float *m0, *m1, *m2;      // backend scratch, max dense n^2 floats each
    float *lb_work;           // backend scratch, 3 x max dense n floats
    // diagnostics of the last step
    int last_updated, last_balanced;
    double last_r;
} PsgdState;

// LoLa's values (lola-spec.md 6.3 / 8.5).
void psgd_config_default(PsgdConfig *c);

// 1 when an axis of size n of a tensor with ndim dims gets a dense triangular factor:
// ndim >= min_ndim and 1 < n <= max_size (heavyball init_Q_exprs, memory_save_mode None).
int psgd_axis_dense(const PsgdConfig *c, int ndim, int64_t n);

// Floats of persistent PSGD state (momentum + factors + caches) and of scratch for a table,
// without allocating anything.
void psgd_state_floats(const PsgdConfig *c, const ParamTable *t, size_t *state, size_t *scratch);

// Allocates backend state for the table (kept by pointer; must outlive the state): momentum 0,
// factors init_scale^(1/ndim) (I or ones), caches their squares. Dies on a bad config.
void psgd_init(PsgdState *s, const PsgdConfig *cfg, const ParamTable *table);
void psgd_free(PsgdState *s);

// One optimizer step k >= 1 (k counts the steps taken, skipped ones excluded, as heavyball's
// group['step']). params/grads: backend buffers of table->total floats; grads are read only.
// lr, wd: learning rate and decoupled weight decay of this step.
void psgd_step(PsgdState *s, float *params, const float *grads, float lr, float wd, int64_t k);

// heavyball's schedule for step k: r = Python random.Random(0x172381 ^ k).random();
// p = max(min_prob, prob_decay^k) (LoLa precond_prob_schedule with n = k, since every parameter
// is visited once per step). Returns 1 to update the preconditioner; *balance = update and
// r < balance_prob. force_update 0/1 overrides the update decision (balance still needs r).
int psgd_schedule(const PsgdConfig *c, int64_t k, double *r, int *balance);
double psgd_update_probability(const PsgdConfig *c, int64_t k);

// Seed of a Gaussian stream: which 0 = the noise added to U, 1 = V.
uint64_t psgd_noise_seed(uint64_t base, int64_t k, int tensor, int which);

// Checkpoint view of the factors and caches: fills up to cap tensors named
// "<param>/q<axis>" and "<param>/p<axis>" pointing into the HOST mirror (call psgd_sync_to_host
// before writing them; loading writes into them, then call psgd_sync_from_host). Returns the
// number of tensors (call with cap 0 to count). The momentum is not part of it (it goes into the
// checkpoint's m slot: psgd_momentum_to_host / _from_host).
int psgd_state_tensors(PsgdState *s, CheckpointTensor *out, int cap);
// Host mirror <- backend factors and caches, and the reverse.
void psgd_sync_to_host(PsgdState *s);
void psgd_sync_from_host(PsgdState *s);
// Momentum (total floats) between the backend and a host buffer.
void psgd_momentum_to_host(const PsgdState *s, float *h_m);
void psgd_momentum_from_host(PsgdState *s, const float *h_m);

#endif
