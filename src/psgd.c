// psgd.c: see psgd.h. Formulas: lola-spec.md 6.3, checked against heavyball 1.4.3 (chainable.py
// scale_by_delayed_psgd/_update_psgd_precond, utils.py psgd_update_precond/psgd_calc_A_and_conjB/
// psgd_lb/psgd_balance_Q/trust_region_clip_/_lerp32/update_param_); our own code.
//
// Tensor algebra on backend memory through the PSGD ops of nn.h. A tensor X of shape
// (n_0, ..., n_{d-1}) is row-major; around axis a it is viewed as (L, n, R) with L = n_0...n_{a-1},
// n = n_a, R = n_{a+1}...n_{d-1}. "X x_a M" (M n x n) replaces the fibre along axis a by M times it.
// When L = 1 or R = 1 this is one GEMM on X as stored; otherwise X is first permuted to (n, L*R)
// (one O(numel) copy), multiplied, and permuted back.
#include "psgd.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"
#include "pyrandom.h"
#include "rng.h"

// torch.finfo(torch.bfloat16).tiny: bf16 has fp32's exponent range, so 2^-126 = FLT_MIN.
#define PSGD_TINY FLT_MIN

// ---- tensor-axis helpers (backend memory) ------------------------------------------------------

static void axis_view(const PsgdTensor *t, int a, size_t *L, int *n, size_t *R) {
    size_t l = 1, r = 1;
    for (int i = 0; i < a; i++) l *= (size_t)t->shape[i];
    for (int i = a + 1; i < t->ndim; i++) r *= (size_t)t->shape[i];
    *L = l, *n = (int)t->shape[a], *R = r;
}

// w1 := X x_a M (X is only read); w2 is clobbered when the axis is in the middle (L, R > 1).
// X, w1, w2: numel floats each, pairwise distinct. No copy: the caller moves to w1.
static void mode_mul(float *w1, const float *X, size_t L, int n, size_t R, const float *M, float *w2) {
    if (L == 1) {
        nn_gemm(0, 0, n, (int)R, n, 1.0f, M, n, X, (int)R, 0.0f, w1, (int)R);
    } else if (R == 1) { // rows x (1 x n): x M^T
        nn_gemm(0, 1, (int)L, n, n, 1.0f, X, n, M, n, 0.0f, w1, n);
    } else {
        nn_axis_permute(w1, X, L, n, R, 1);
        nn_gemm(0, 0, n, (int)(L * R), n, 1.0f, M, n, w1, (int)(L * R), 0.0f, w2, (int)(L * R));
        nn_axis_permute(w1, w2, L, n, R, 0);
    }
}

// The first of the three rotating scratch buffers (s0, s2, s3) that is neither a nor b.
static float *spare(const PsgdState *s, const float *a, const float *b) {
    float *pool[3] = {s->s0, s->s2, s->s3};
    for (int i = 0; i < 3; i++)
        if (pool[i] != a && pool[i] != b) return pool[i];
    lola_die("internal error: psgd: no spare scratch buffer");
}

// G (n x n) = X_(a) X_(a)^T, the contraction of X with itself over every axis but a.
static void gram(float *G, const float *X, size_t L, int n, size_t R, float *w1) {
    if (L == 1)
        nn_gemm(0, 1, n, n, (int)R, 1.0f, X, (int)R, X, (int)R, 0.0f, G, n);
    else if (R == 1)
        nn_gemm(1, 0, n, n, (int)L, 1.0f, X, n, X, n, 0.0f, G, n);
    else {
        nn_axis_permute(w1, X, L, n, R, 1);
        nn_gemm(0, 1, n, n, (int)(L * R), 1.0f, w1, (int)(L * R), w1, (int)(L * R), 0.0f, G, n);
    }
}

// X := X x_a Q^{-T} in place (Q upper triangular). w1: scratch.
static void tri_solve(float *X, size_t L, int n, size_t R, const float *Q, float *w1) {
    if (L == 1)
        nn_trsm_upper(X, Q, n, (int)R, 1);
    else if (R == 1)
        nn_trsm_upper(X, Q, n, (int)L, 0);
    else {
        nn_axis_permute(w1, X, L, n, R, 1);
        nn_trsm_upper(w1, Q, n, (int)(L * R), 1);
        nn_axis_permute(X, w1, L, n, R, 0);
    }
}

// ---- public small functions --------------------------------------------------------------------

void psgd_config_default(PsgdConfig *c) {
    memset(c, 0, sizeof *c);
    c->beta = 0.9;
    c->precond_lr = 0.1;
    c->min_prob = 1.0 / 64.0;
    c->prob_decay = 0.999;
    c->max_size = 4096;
    c->min_ndim = 2;
    c->balance_prob = 0.01;
    c->init_scale = 1.0;
    c->force_update = -1;
    c->noise_seed = PSGD_NOISE_SEED;
}

int psgd_axis_dense(const PsgdConfig *c, int ndim, int64_t n) {
    return ndim >= c->min_ndim && n > 1 && n <= (int64_t)c->max_size;
}

double psgd_update_probability(const PsgdConfig *c, int64_t k) {
    return fmax(c->min_prob, pow(c->prob_decay, (double)(k > 0 ? k : 0)));
}

int psgd_schedule(const PsgdConfig *c, int64_t k, double *r, int *balance) {
    PyRandom pr;
    pyrandom_seed(&pr, (uint64_t)(0x172381 ^ k));
    double x = pyrandom_random(&pr);
    int upd = c->force_update == 0 ? 0 : c->force_update == 1 ? 1 : x < psgd_update_probability(c, k);
    if (r) *r = x;
    if (balance) *balance = upd && x < c->balance_prob;
    return upd;
}

uint64_t psgd_noise_seed(uint64_t base, int64_t k, int tensor, int which) {
    return rng_hash(rng_hash(rng_hash(base, (uint64_t)k), (uint64_t)tensor), (uint64_t)which);
}

// ---- state -------------------------------------------------------------------------------------

static void tensor_layout(const PsgdConfig *c, const ParamSpec *r, PsgdTensor *t) {
    memset(t, 0, sizeof *t);
    t->ndim = r->ndim;
    t->numel = r->numel;
    t->offset = r->offset;
    for (int a = 0; a < r->ndim; a++) {
        t->shape[a] = r->shape[a];
        t->dense[a] = psgd_axis_dense(c, r->ndim, r->shape[a]);
    }
}

static size_t factor_floats(const PsgdTensor *t, int a) {
    size_t n = (size_t)t->shape[a];
    return t->dense[a] ? n * n : n;
}

void psgd_state_floats(const PsgdConfig *c, const ParamTable *tab, size_t *state, size_t *scratch) {
    size_t st = tab->total, maxn = 0, maxd = 0;
    for (int i = 0; i < tab->n; i++) {
        PsgdTensor t;
        tensor_layout(c, &tab->rows[i], &t);
        for (int a = 0; a < t.ndim; a++) {
            st += 2 * factor_floats(&t, a);
            if (t.dense[a] && (size_t)t.shape[a] > maxd) maxd = (size_t)t.shape[a];
        }
        if (t.numel > maxn) maxn = t.numel;
    }
    if (state) *state = st;
    if (scratch) *scratch = 4 * maxn + 3 * maxd * maxd + 3 * maxd;
}

void psgd_init(PsgdState *s, const PsgdConfig *cfg, const ParamTable *table) {
    memset(s, 0, sizeof *s);
    if (!(cfg->beta >= 0.0 && cfg->beta < 1.0)) lola_die("psgd: momentum beta %g is not in [0, 1)", cfg->beta);
    if (!(cfg->min_prob > 0.0 && cfg->min_prob <= 1.0))
        lola_die_hint("set optim.precondition_frequency >= 1", "psgd: minimum update probability %g is not in (0, 1]", cfg->min_prob);
    if (!(cfg->prob_decay > 0.0 && cfg->prob_decay <= 1.0))
        lola_die_hint("set optim.precondition_frequency_decay in (0, 1]", "psgd: update probability decay %g is not in (0, 1]", cfg->prob_decay);
    if (cfg->max_size < 1) lola_die_hint("set optim.precondition_size >= 1", "psgd: precondition_size %d < 1", cfg->max_size);
    if (!(cfg->init_scale > 0.0)) lola_die("psgd: preconditioner init scale %g must be > 0", cfg->init_scale);
    s->cfg = *cfg;
    s->table = table;
    s->n = table->n;
    s->total = table->total;
    s->t = LOLA_NEW(PsgdTensor, table->n > 0 ? table->n : 1);
    size_t arena = 0, maxn = 0, maxd = 0;
    for (int i = 0; i < table->n; i++) {
        PsgdTensor *t = &s->t[i];
        tensor_layout(cfg, &table->rows[i], t);
        if (t->numel > (size_t)INT_MAX) lola_die("psgd: tensor '%s' has %zu elements (> INT_MAX)", table->rows[i].name, t->numel);
        for (int a = 0; a < t->ndim; a++) {
            arena += 2 * factor_floats(t, a);
            if (t->dense[a] && (size_t)t->shape[a] > maxd) maxd = (size_t)t->shape[a];
        }
        if (t->numel > maxn) maxn = t->numel;
    }
    s->arena_floats = arena;
    s->h_arena = LOLA_NEW(float, arena > 0 ? arena : 1);
    s->arena = nn_alloc(arena > 0 ? arena : 1);
    s->mom = nn_alloc(s->total > 0 ? s->total : 1);
    float *p = s->arena, *hp = s->h_arena;
    for (int i = 0; i < s->n; i++) {
        PsgdTensor *t = &s->t[i];
        // heavyball: scale ** (1 / len(shape)) in float64, the factor stored in float32.
        float sc = (float)pow(cfg->init_scale, 1.0 / (double)t->ndim);
        for (int a = 0; a < t->ndim; a++) {
            size_t n = (size_t)t->shape[a], f = factor_floats(t, a);
            t->q[a] = p, t->hq[a] = hp, p += f, hp += f;
            t->p[a] = p, t->hp[a] = hp, p += f, hp += f;
            if (t->dense[a]) {
                for (size_t j = 0; j < n; j++) t->hq[a][j * n + j] = sc, t->hp[a][j * n + j] = sc * sc;
            } else {
                for (size_t j = 0; j < n; j++) t->hq[a][j] = sc, t->hp[a][j] = sc * sc;
            }
        }
    }
    psgd_sync_from_host(s);
    maxn = maxn > 0 ? maxn : 1;
    s->s0 = nn_alloc(4 * maxn);
    s->s1 = s->s0 + maxn, s->s2 = s->s1 + maxn, s->s3 = s->s2 + maxn;
    size_t md = maxd * maxd > 0 ? maxd * maxd : 1;
    s->m0 = nn_alloc(3 * md);
    s->m1 = s->m0 + md, s->m2 = s->m1 + md;
    s->lb_work = nn_alloc(3 * (maxd > 0 ? maxd : 1));
}

void psgd_free(PsgdState *s) {
    free(s->t);
    free(s->h_arena);
    if (s->arena) nn_free(s->arena);
    if (s->mom) nn_free(s->mom);
    if (s->s0) nn_free(s->s0);
    if (s->m0) nn_free(s->m0);
    if (s->lb_work) nn_free(s->lb_work);
    memset(s, 0, sizeof *s);
}

void psgd_sync_to_host(PsgdState *s) { nn_to_host(s->h_arena, s->arena, s->arena_floats); }
void psgd_sync_from_host(PsgdState *s) { nn_to_backend(s->arena, s->h_arena, s->arena_floats); }
void psgd_momentum_to_host(const PsgdState *s, float *h_m) { nn_to_host(h_m, s->mom, s->total); }
void psgd_momentum_from_host(PsgdState *s, const float *h_m) { nn_to_backend(s->mom, h_m, s->total); }

int psgd_state_tensors(PsgdState *s, CheckpointTensor *out, int cap) {
    int k = 0;
    for (int i = 0; i < s->n; i++) {
        PsgdTensor *t = &s->t[i];
        for (int a = 0; a < t->ndim; a++)
            for (int w = 0; w < 2; w++, k++) {
                if (k >= cap) continue;
                CheckpointTensor *c = &out[k];
                snprintf(c->name, sizeof c->name, "%s/%c%d", s->table->rows[i].name, w ? 'p' : 'q', a);
                c->ndim = t->dense[a] ? 2 : 1;
                c->shape[0] = t->shape[a];
                c->shape[1] = t->dense[a] ? t->shape[a] : 0;
                c->data = w ? t->hp[a] : t->hq[a];
            }
    }
    return k;
}

// ---- the step ----------------------------------------------------------------------------------

// Preconditioner update of tensor t (index ti) from U (steps a-f of lola-spec.md 6.3).
static void update_preconditioner(PsgdState *s, int ti, const float *U, int64_t k, int balance) {
    PsgdTensor *t = &s->t[ti];
    const PsgdConfig *c = &s->cfg;
    const size_t N = t->numel;
    float *A = s->s0, *B = s->s1;
    size_t L, R;
    int n;
    // f (dense part). heavyball refreshes the cache from the factors materialised at the start of
    // the step, i.e. from the dense Q BEFORE this update (see psgd.h).
    for (int a = 0; a < t->ndim; a++)
        if (t->dense[a]) {
            n = (int)t->shape[a];
            nn_gemm(1, 0, n, n, n, 1.0f, t->q[a], n, t->q[a], n, 0.0f, t->p[a], n);
        }
    // a. G~ = U + eps N1, eps = sqrt(float32 eps) ||U||_F / numel (float32 arithmetic, as heavyball).
    float eps = sqrtf(FLT_EPSILON) * ((float)sqrt(nn_sum_squares(U, N)) / (float)N);
    psgd_noise(A, B, U, N, eps, psgd_noise_seed(c->noise_seed, k, ti, 0), psgd_noise_seed(c->noise_seed, k, ti, 1));
    // b. A = G~ x_a Q_a; c. conjB = V x_a Q_a^{-T}, on every axis. A moves through the rotating
    // scratch buffers (s0, s2, s3); B stays in s1.
    for (int a = 0; a < t->ndim; a++) {
        axis_view(t, a, &L, &n, &R);
        if (t->dense[a]) {
            float *w1 = spare(s, A, NULL);
            mode_mul(w1, A, L, n, R, t->q[a], spare(s, A, w1));
            A = w1;
            tri_solve(B, L, n, R, t->q[a], spare(s, A, NULL));
        } else {
            nn_axis_scale(A, t->q[a], L, n, R, 0);
            nn_axis_scale(B, t->q[a], L, n, R, 1);
        }
    }
    // d. per axis: T1 = A_(a) A_(a)^T, T2 = conjB_(a) conjB_(a)^T; (T1, T2) <- (lr (T1 - T2), T1 + T2).
    const float plr = (float)c->precond_lr;
    for (int a = 0; a < t->ndim; a++) {
        axis_view(t, a, &L, &n, &R);
        float *T1 = s->m0, *T2 = s->m1, *q = t->q[a];
        if (t->dense[a]) {
            size_t nn_ = (size_t)n * n;
            gram(T1, A, L, n, R, spare(s, A, NULL));
            gram(T2, B, L, n, R, spare(s, A, NULL));
            psgd_precond_terms(T1, T2, nn_, plr);
            float nrm = nn_max_abs(T2, nn_);
            float den = nrm > 0.0f ? psgd_norm_lower_bound(T2, s->lb_work, n, nrm) : nrm;
            if (!(den >= PSGD_TINY) && !isnan(den)) den = PSGD_TINY; // clamp_(min=tiny) keeps NaN
            psgd_dense_update(q, T1, s->m2, n, den);
        } else {
            nn_axis_sum_squares(T1, A, L, n, R);
            nn_axis_sum_squares(T2, B, L, n, R);
            psgd_precond_terms(T1, T2, (size_t)n, plr);
            float nrm = nn_max_abs(T2, (size_t)n);
            if (!(nrm >= PSGD_TINY) && !isnan(nrm)) nrm = PSGD_TINY;
            psgd_diag_update(q, T1, (size_t)n, nrm);
        }
    }
    // e. balancing (tensors with >= 2 dims): Q_a *= g / ||Q_a||_max, g the geometric mean.
    if (balance && t->ndim > 1) {
        float norms[PARAM_MAX_DIMS], sl = 0.0f;
        for (int a = 0; a < t->ndim; a++) {
            norms[a] = nn_max_abs(t->q[a], factor_floats(t, a));
            sl += logf(norms[a]);
        }
        float g = expf(sl / (float)t->ndim);
        for (int a = 0; a < t->ndim; a++) nn_scale(t->q[a], g / norms[a], factor_floats(t, a));
    }
    // f (diagonal part): p = q^2 after the update and balancing.
    for (int a = 0; a < t->ndim; a++)
        if (!t->dense[a]) psgd_square(t->p[a], t->q[a], (size_t)t->shape[a]);
}

void psgd_step(PsgdState *s, float *params, const float *grads, float lr, float wd, int64_t k) {
    if (k < 1) lola_die("psgd_step: step %lld < 1", (long long)k);
    int balance = 0;
    double r = 0.0;
    int update = psgd_schedule(&s->cfg, k, &r, &balance);
    s->last_updated = update, s->last_balanced = balance, s->last_r = r;
    // heavyball: beta_debias in float64, stored as a float32 scalar; lerp weight 1 - beta in float32.
    const float bk = (float)(1.0 - (1.0 - s->cfg.beta) / (1.0 - pow(s->cfg.beta, (double)k)));
    const float w = 1.0f - bk, decay = 1.0f - wd * lr;
    // 1. momentum, elementwise: one op over every tensor (the table's rows tile the buffer)
    psgd_momentum(s->mom, grads, s->total, w);
    for (int ti = 0; ti < s->n; ti++) {
        PsgdTensor *t = &s->t[ti];
        const size_t N = t->numel;
        float *U = s->mom + t->offset, *X = U;
        // 3. precondition with the cache: X moves from U (read only) through the rotating scratch
        // buffers (s0, s2, s3); a diagonal axis scales in place, so U is copied first if needed.
        for (int a = 0; a < t->ndim; a++) {
            size_t L, R;
            int n;
            axis_view(t, a, &L, &n, &R);
            if (t->dense[a]) {
                float *w1 = spare(s, X, NULL);
                mode_mul(w1, X, L, n, R, t->p[a], spare(s, X, w1));
                X = w1;
            } else {
                if (X == U) nn_copy(X = s->s0, U, N);
                nn_axis_scale(X, t->p[a], L, n, R, 0);
            }
        }
        // 5. update clipping, 6. parameter update
        psgd_clip_update(params + t->offset, X, N, decay, lr);
        // 4. preconditioner update (after the parameter update: it does not read the parameters,
        // and the preconditioned direction above was computed from the cache before it)
        if (update) update_preconditioner(s, ti, U, k, balance);
    }
}
