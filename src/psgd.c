// psgd.c: see psgd.h. Formulas: lola-spec.md 6.3, checked against heavyball 1.4.3 (chainable.py
// scale_by_delayed_psgd/_update_psgd_precond, utils.py psgd_update_precond/psgd_calc_A_and_conjB/
// psgd_lb/psgd_balance_Q/trust_region_clip_/_lerp32/update_param_); our own code.
//
// Tensor algebra. A tensor X of shape (n_0, ..., n_{d-1}) is row-major; around axis a it is viewed
// as (L, n, R) with L = n_0...n_{a-1}, n = n_a, R = n_{a+1}...n_{d-1}. "X x_a M" (M n x n) replaces
// the fibre along axis a by M times it. When L = 1 or R = 1 this is one GEMM on X as stored;
// otherwise X is first permuted to (n, L*R) (one O(numel) copy), multiplied, and permuted back.
#include "psgd.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "common.h"
#include "nn.h"
#include "pyrandom.h"
#include "rng.h"

// torch.finfo(torch.bfloat16).tiny: bf16 has fp32's exponent range, so 2^-126 = FLT_MIN.
#define PSGD_TINY FLT_MIN
// Below this many multiply-adds a BLAS call is not split over threads.
#define PAR_MIN_MACS (1 << 18)
// Elementwise loops shorter than this run on one thread.
#define PAR_MIN_ELEMS (1 << 15)
// Fixed chunk of the deterministic parallel sums (same bits for any thread count).
#define SUM_CHUNK 65536

static int max_threads(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

// ---- BLAS wrappers (row-major), OpenMP-split into single-threaded calls ------------------------

// C = alpha op(A) op(B) + beta C. The output is cut into blocks of rows (or columns) of C, one per
// thread; each element's K-sum is the same as in one call, so the result does not depend on the
// thread count.
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = max_threads();
    int rows = M >= N, len = rows ? M : N, parts = len / 16;
    if (parts > nt) parts = nt;
    if (parts < 2 || (double)M * N * K < PAR_MIN_MACS) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                    lda, B, ldb, beta, C, ldc);
        return;
    }
    int step = ((len + parts - 1) / parts + 15) / 16 * 16;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int p = 0; p < parts; p++) {
        int s0 = p * step, s1 = s0 + step < len ? s0 + step : len;
        if (s0 >= s1) continue;
        if (rows)
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, s1 - s0, N, K,
                        alpha, ta ? A + s0 : A + (size_t)s0 * lda, lda, B, ldb, beta, C + (size_t)s0 * ldc, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, s1 - s0, K,
                        alpha, A, lda, tb ? B + (size_t)s0 * ldb : B + s0, ldb, beta, C + s0, ldc);
    }
}

// In place X := X Q^{-T} along the fibres: left = 1: X (n x m, ld m) := Q^{-T} X (columns are
// independent: split over threads); left = 0: X (m x n) := X Q^{-1} (rows independent).
// Q is n x n upper triangular.
static void trsm_qt(int left, int n, int m, const float *Q, float *X) {
    if (n <= 0 || m <= 0) return;
    int nt = max_threads(), parts = m / 16;
    if (parts > nt) parts = nt;
    if (parts < 2 || (double)n * n * m < PAR_MIN_MACS) parts = 1;
    int step = ((m + parts - 1) / parts + 15) / 16 * 16;
#pragma omp parallel for num_threads(parts) schedule(static, 1) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        int s0 = p * step, s1 = s0 + step < m ? s0 + step : m;
        if (s0 >= s1) continue;
        if (left)
            cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, n, s1 - s0, 1.0f, Q, n, X + s0, m);
        else
            cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasNoTrans, CblasNonUnit, s1 - s0, n, 1.0f, Q, n,
                        X + (size_t)s0 * n, n);
    }
}

// ---- tensor-axis helpers -----------------------------------------------------------------------

static void axis_view(const PsgdTensor *t, int a, size_t *L, int *n, size_t *R) {
    size_t l = 1, r = 1;
    for (int i = 0; i < a; i++) l *= (size_t)t->shape[i];
    for (int i = a + 1; i < t->ndim; i++) r *= (size_t)t->shape[i];
    *L = l, *n = (int)t->shape[a], *R = r;
}

// dst (n, L, R) <- src (L, n, R)
static void to_front(float *dst, const float *src, size_t L, int n, size_t R) {
#pragma omp parallel for schedule(static) if (L * n * R >= PAR_MIN_ELEMS && max_threads() > 1)
    for (int i = 0; i < n; i++)
        for (size_t l = 0; l < L; l++) memcpy(dst + ((size_t)i * L + l) * R, src + (l * (size_t)n + i) * R, R * sizeof(float));
}

// dst (L, n, R) <- src (n, L, R)
static void from_front(float *dst, const float *src, size_t L, int n, size_t R) {
#pragma omp parallel for schedule(static) if (L * n * R >= PAR_MIN_ELEMS && max_threads() > 1)
    for (int i = 0; i < n; i++)
        for (size_t l = 0; l < L; l++) memcpy(dst + (l * (size_t)n + i) * R, src + ((size_t)i * L + l) * R, R * sizeof(float));
}

// X := X x_a op(M) in place; op(M) = M^T when trans. w1, w2: scratch of numel floats.
static void mode_mul(float *X, size_t L, int n, size_t R, const float *M, int trans, float *w1, float *w2) {
    size_t N = L * (size_t)n * R;
    if (L == 1) {
        gemm(trans, 0, n, (int)R, n, 1.0f, M, n, X, (int)R, 0.0f, w1, (int)R);
        memcpy(X, w1, N * sizeof(float));
    } else if (R == 1) { // rows x (1 x n): x op(M)^T
        gemm(0, !trans, (int)L, n, n, 1.0f, X, n, M, n, 0.0f, w1, n);
        memcpy(X, w1, N * sizeof(float));
    } else {
        to_front(w1, X, L, n, R);
        gemm(trans, 0, n, (int)(L * R), n, 1.0f, M, n, w1, (int)(L * R), 0.0f, w2, (int)(L * R));
        from_front(X, w2, L, n, R);
    }
}

// X[l, i, r] *= d[i] (divide = 0) or /= d[i] (divide = 1).
static void diag_mul(float *X, size_t L, int n, size_t R, const float *d, int divide) {
    size_t rows = L * (size_t)n;
#pragma omp parallel for schedule(static) if (rows * R >= PAR_MIN_ELEMS && max_threads() > 1)
    for (size_t li = 0; li < rows; li++) {
        float s = d[li % (size_t)n], *x = X + li * R;
        if (divide)
            for (size_t r = 0; r < R; r++) x[r] /= s;
        else
            for (size_t r = 0; r < R; r++) x[r] *= s;
    }
}

// G (n x n) = X_(a) X_(a)^T, the contraction of X with itself over every axis but a.
static void gram(float *G, const float *X, size_t L, int n, size_t R, float *w1) {
    if (L == 1)
        gemm(0, 1, n, n, (int)R, 1.0f, X, (int)R, X, (int)R, 0.0f, G, n);
    else if (R == 1)
        gemm(1, 0, n, n, (int)L, 1.0f, X, n, X, n, 0.0f, G, n);
    else {
        to_front(w1, X, L, n, R);
        gemm(0, 1, n, n, (int)(L * R), 1.0f, w1, (int)(L * R), w1, (int)(L * R), 0.0f, G, n);
    }
}

// g[i] = sum over every axis but a of X[..., i, ...]^2 (float64 accumulation, fixed order).
static void diag_gram(float *g, const float *X, size_t L, int n, size_t R) {
#pragma omp parallel for schedule(static) if (L * n * R >= PAR_MIN_ELEMS && max_threads() > 1)
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t l = 0; l < L; l++) {
            const float *x = X + (l * (size_t)n + i) * R;
            for (size_t r = 0; r < R; r++) s += (double)x[r] * x[r];
        }
        g[i] = (float)s;
    }
}

// X := X x_a Q^{-T} in place (Q upper triangular). w1: scratch.
static void tri_solve(float *X, size_t L, int n, size_t R, const float *Q, float *w1) {
    if (L == 1)
        trsm_qt(1, n, (int)R, Q, X);
    else if (R == 1)
        trsm_qt(0, n, (int)L, Q, X);
    else {
        to_front(w1, X, L, n, R);
        trsm_qt(1, n, (int)(L * R), Q, w1);
        from_front(X, w1, L, n, R);
    }
}

// ||x||_2 with float64 partial sums over fixed chunks, combined in order.
static double norm2(const float *x, size_t n) {
    size_t nc = (n + SUM_CHUNK - 1) / SUM_CHUNK;
    if (nc <= 1) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
        return sqrt(s);
    }
    double *part = LOLA_NEW(double, nc);
#pragma omp parallel for schedule(static) if (max_threads() > 1)
    for (size_t c = 0; c < nc; c++) {
        size_t e = (c + 1) * SUM_CHUNK < n ? (c + 1) * SUM_CHUNK : n;
        double s = 0.0;
        for (size_t i = c * SUM_CHUNK; i < e; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    free(part);
    return sqrt(s);
}

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m || isnan(a)) m = a;
        if (isnan(m)) break;
    }
    return m;
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

void psgd_trust_region_clip(float *x, size_t n) {
    const float lerp = 0.9f, scale = 1.5f, one_m_lerp = 1.0f - lerp;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS && max_threads() > 1)
    for (size_t i = 0; i < n; i++) {
        float v = x[i] / scale, t = tanhf(v);
        float y = copysignf(log1pf(fabsf(v)), t) * one_m_lerp + t * lerp;
        y = y * scale;
        x[i] = y < -2.0f ? -2.0f : y > 2.0f ? 2.0f : y;
    }
}

float psgd_norm_lower_bound(float *A, int n, float mx) {
    size_t nn = (size_t)n * n;
    for (size_t i = 0; i < nn; i++) A[i] /= mx;
    float *col = LOLA_NEW(float, 3 * (size_t)n), *x = col + n, *y = col + 2 * (size_t)n;
    for (int j = 0; j < n; j++) col[j] = 0.0f;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) col[j] += A[(size_t)i * n + j] * A[(size_t)i * n + j];
    int best = 0; // first maximum (torch.argmax)
    for (int j = 1; j < n; j++)
        if (col[j] > col[best]) best = j;
    for (int i = 0; i < n; i++) x[i] = A[(size_t)i * n + best];
    cblas_sgemv(CblasRowMajor, CblasTrans, n, n, 1.0f, A, n, x, 1, 0.0f, y, 1); // y = x^T A
    float ny = cblas_snrm2(n, y, 1);
    for (int j = 0; j < n; j++) y[j] /= ny;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0f, A, n, y, 1, 0.0f, x, 1); // x = A y
    float r = cblas_snrm2(n, x, 1) * mx;
    free(col);
    return r;
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
    if (scratch) *scratch = 4 * maxn + 3 * maxd * maxd;
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
    s->arena = LOLA_NEW(float, arena > 0 ? arena : 1);
    s->mom = LOLA_NEW(float, s->total > 0 ? s->total : 1);
    float *p = s->arena;
    for (int i = 0; i < s->n; i++) {
        PsgdTensor *t = &s->t[i];
        // heavyball: scale ** (1 / len(shape)) in float64, the factor stored in float32.
        float sc = (float)pow(cfg->init_scale, 1.0 / (double)t->ndim);
        for (int a = 0; a < t->ndim; a++) {
            size_t n = (size_t)t->shape[a], f = factor_floats(t, a);
            t->q[a] = p, p += f;
            t->p[a] = p, p += f;
            if (t->dense[a]) {
                for (size_t j = 0; j < n; j++) t->q[a][j * n + j] = sc, t->p[a][j * n + j] = sc * sc;
            } else {
                for (size_t j = 0; j < n; j++) t->q[a][j] = sc, t->p[a][j] = sc * sc;
            }
        }
    }
    s->s0 = LOLA_NEW(float, 4 * (maxn > 0 ? maxn : 1));
    s->s1 = s->s0 + maxn, s->s2 = s->s1 + maxn, s->s3 = s->s2 + maxn;
    size_t md = maxd * maxd > 0 ? maxd * maxd : 1;
    s->m0 = LOLA_NEW(float, 3 * md);
    s->m1 = s->m0 + md, s->m2 = s->m1 + md;
#ifdef LOLA_BACKEND_CUDA
#ifdef LOLA_BLAS_OPENBLAS
    // The CUDA build has no CPU backend to do this: PSGD splits its BLAS calls over OpenMP threads
    // itself, so OpenBLAS's own thread pool must not run next to them (see src/cpu/cpu.h).
    openblas_set_num_threads(1);
#endif
    s->h_params = LOLA_NEW(float, s->total);
    s->h_grads = LOLA_NEW(float, s->total);
#endif
}

void psgd_free(PsgdState *s) {
    free(s->t);
    free(s->arena);
    free(s->mom);
    free(s->s0);
    free(s->m0);
    free(s->h_params);
    free(s->h_grads);
    memset(s, 0, sizeof *s);
}

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
                c->data = w ? t->p[a] : t->q[a];
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
            gemm(1, 0, n, n, n, 1.0f, t->q[a], n, t->q[a], n, 0.0f, t->p[a], n);
        }
    // a. G~ = U + eps N1, eps = sqrt(float32 eps) ||U||_F / numel (float32 arithmetic, as heavyball).
    float eps = sqrtf(FLT_EPSILON) * ((float)norm2(U, N) / (float)N);
    uint64_t sg = psgd_noise_seed(c->noise_seed, k, ti, 0), sv = psgd_noise_seed(c->noise_seed, k, ti, 1);
#pragma omp parallel for schedule(static) if (N >= PAR_MIN_ELEMS && max_threads() > 1)
    for (size_t i = 0; i < N; i++) {
        A[i] = U[i] + rng_hash_normal(sg, i) * eps;
        B[i] = rng_hash_normal(sv, i);
    }
    // b. A = G~ x_a Q_a; c. conjB = V x_a Q_a^{-T}, on every axis.
    for (int a = 0; a < t->ndim; a++) {
        axis_view(t, a, &L, &n, &R);
        if (t->dense[a]) {
            mode_mul(A, L, n, R, t->q[a], 0, s->s2, s->s3);
            tri_solve(B, L, n, R, t->q[a], s->s2);
        } else {
            diag_mul(A, L, n, R, t->q[a], 0);
            diag_mul(B, L, n, R, t->q[a], 1);
        }
    }
    // d. per axis: T1 = A_(a) A_(a)^T, T2 = conjB_(a) conjB_(a)^T; (T1, T2) <- (lr (T1 - T2), T1 + T2).
    const float plr = (float)c->precond_lr;
    for (int a = 0; a < t->ndim; a++) {
        axis_view(t, a, &L, &n, &R);
        float *T1 = s->m0, *T2 = s->m1, *q = t->q[a];
        if (t->dense[a]) {
            size_t nn = (size_t)n * n;
            gram(T1, A, L, n, R, s->s2);
            gram(T2, B, L, n, R, s->s2);
            for (size_t i = 0; i < nn; i++) {
                float x = T1[i], y = T2[i];
                T1[i] = (x - y) * plr;
                T2[i] = x + y;
            }
            float nrm = max_abs(T2, nn);
            float den = nrm > 0.0f ? psgd_norm_lower_bound(T2, n, nrm) : nrm;
            if (!(den >= PSGD_TINY) && !isnan(den)) den = PSGD_TINY; // clamp_(min=tiny) keeps NaN
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    float *e = &T1[(size_t)i * n + j];
                    *e = j < i ? 0.0f : *e / den;
                }
            // Q <- Q - triu(T1) Q (the product of two upper triangles is upper triangular).
            gemm(0, 0, n, n, n, 1.0f, T1, n, q, n, 0.0f, s->m2, n);
            for (int i = 0; i < n; i++)
                for (int j = i; j < n; j++) q[(size_t)i * n + j] -= s->m2[(size_t)i * n + j];
        } else {
            diag_gram(T1, A, L, n, R);
            diag_gram(T2, B, L, n, R);
            for (int i = 0; i < n; i++) {
                float x = T1[i], y = T2[i];
                T1[i] = (x - y) * plr;
                T2[i] = x + y;
            }
            float nrm = max_abs(T2, (size_t)n);
            if (!(nrm >= PSGD_TINY) && !isnan(nrm)) nrm = PSGD_TINY;
            for (int i = 0; i < n; i++) q[i] -= T1[i] * (q[i] / nrm);
        }
    }
    // e. balancing (tensors with >= 2 dims): Q_a *= g / ||Q_a||_max, g the geometric mean.
    if (balance && t->ndim > 1) {
        float norms[PARAM_MAX_DIMS], sl = 0.0f;
        for (int a = 0; a < t->ndim; a++) {
            norms[a] = max_abs(t->q[a], factor_floats(t, a));
            sl += logf(norms[a]);
        }
        float g = expf(sl / (float)t->ndim);
        for (int a = 0; a < t->ndim; a++) {
            float f = g / norms[a];
            size_t m = factor_floats(t, a);
            for (size_t i = 0; i < m; i++) t->q[a][i] *= f;
        }
    }
    // f (diagonal part): p = q^2 after the update and balancing.
    for (int a = 0; a < t->ndim; a++)
        if (!t->dense[a])
            for (int64_t i = 0; i < t->shape[a]; i++) t->p[a][i] = t->q[a][i] * t->q[a][i];
}

void psgd_step(PsgdState *s, float *params, const float *grads, float lr, float wd, int64_t k) {
    if (k < 1) lola_die("psgd_step: step %lld < 1", (long long)k);
    float *P = params;
    const float *G = grads;
#ifdef LOLA_BACKEND_CUDA
    nn_to_host(s->h_params, params, s->total);
    nn_to_host(s->h_grads, grads, s->total);
    P = s->h_params, G = s->h_grads;
#endif
    int balance = 0;
    double r = 0.0;
    int update = psgd_schedule(&s->cfg, k, &r, &balance);
    s->last_updated = update, s->last_balanced = balance, s->last_r = r;
    // heavyball: beta_debias in float64, stored as a float32 scalar; lerp weight 1 - beta in float32.
    const float bk = (float)(1.0 - (1.0 - s->cfg.beta) / (1.0 - pow(s->cfg.beta, (double)k)));
    const float w = 1.0f - bk, decay = 1.0f - wd * lr, nlr = -lr;
    for (int ti = 0; ti < s->n; ti++) {
        PsgdTensor *t = &s->t[ti];
        const size_t N = t->numel;
        float *U = s->mom + t->offset, *p = P + t->offset, *X = s->s0;
        const float *g = G + t->offset;
        // 1. momentum (torch.lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w))
#pragma omp parallel for schedule(static) if (N >= PAR_MIN_ELEMS && max_threads() > 1)
        for (size_t i = 0; i < N; i++) {
            float m = U[i], d = g[i] - m;
            U[i] = w < 0.5f ? m + w * d : g[i] - d * (1.0f - w);
        }
        // 3. precondition with the cache
        memcpy(X, U, N * sizeof(float));
        for (int a = 0; a < t->ndim; a++) {
            size_t L, R;
            int n;
            axis_view(t, a, &L, &n, &R);
            if (t->dense[a])
                mode_mul(X, L, n, R, t->p[a], 0, s->s2, s->s3);
            else
                diag_mul(X, L, n, R, t->p[a], 0);
        }
        // 5. update clipping, 6. parameter update
        psgd_trust_region_clip(X, N);
#pragma omp parallel for schedule(static) if (N >= PAR_MIN_ELEMS && max_threads() > 1)
        for (size_t i = 0; i < N; i++) p[i] = p[i] * decay + X[i] * nlr;
        // 4. preconditioner update (after the parameter update: it does not read the parameters,
        // and the preconditioned direction above was computed from the cache before it)
        if (update) update_preconditioner(s, ti, U, k, balance);
    }
#ifdef LOLA_BACKEND_CUDA
    nn_to_backend(params, s->h_params, s->total);
#endif
}
