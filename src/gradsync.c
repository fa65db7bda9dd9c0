// gradsync.c: see gradsync.h. Backend-independent bookkeeping (buckets, announced ranges, misuse
// checks) plus the MPI / host-staged transports; the NCCL transport lives in cuda/nccl.cu.
#include "gradsync.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "nn.h"

typedef enum { T_NONE = 0, T_MPI, T_NCCL, T_STAGED, T_VERIFY } Transport;
static const char *const transport_names[] = {"none", "mpi", "nccl", "host-staged", "verify"};

typedef struct {
    size_t lo, hi; // [lo, hi)
} Range;

struct GradSync {
    float *grads; // backend buffer
    size_t n, bucket;
    int nb;       // buckets
    double timeout;
    int ranks;
    Transport t;
    int armed;
    size_t *done;           // per bucket: elements announced in this step
    unsigned char *started; // per bucket: started in this step
    int *order;             // buckets in the order they were started
    int nstarted, progressed;
    DistRequest **req;      // MPI: per bucket, NULL when none is pending
    Range *ranges;          // announced in this step: sorted, disjoint, adjacent ones merged
    int nranges, cap;
    size_t announced;
    int early;
    float *host;            // host-staged: staging (n); verify: snapshots of announced ranges (n)
    size_t mismatches, first_mismatch;
};

static GradSync *g_armed = NULL; // the instance gradsync_ready reports to

static size_t bucket_lo(const GradSync *gs, int k) { return (size_t)k * gs->bucket; }
static size_t bucket_len(const GradSync *gs, int k) {
    size_t lo = bucket_lo(gs, k);
    return gs->n - lo < gs->bucket ? gs->n - lo : gs->bucket;
}

GradSync *gradsync_create_ex(float *grads, size_t n, size_t bucket, double timeout_s, int flags) {
    if (!grads && n > 0) lola_die("gradsync_create: NULL gradient buffer of %zu elements", n);
    if (bucket == 0) bucket = GRADSYNC_DEFAULT_BUCKET;
    if (!(timeout_s > 0)) timeout_s = GRADSYNC_DEFAULT_TIMEOUT;
    size_t nb = n ? (n - 1) / bucket + 1 : 0;
    if (nb > (size_t)(INT32_MAX / 2))
        lola_die_hint("raise dist.bucket_size", "gradsync_create: %zu buckets of %zu elements for %zu gradients: too many",
                      nb, bucket, n);
    GradSync *gs = LOLA_NEW(GradSync, 1);
    gs->grads = grads;
    gs->n = n;
    gs->bucket = bucket;
    gs->nb = (int)nb;
    gs->timeout = timeout_s;
    gs->ranks = dist_size();
    gs->done = LOLA_NEW(size_t, nb ? nb : 1);
    gs->started = LOLA_NEW(unsigned char, nb ? nb : 1);
    gs->order = LOLA_NEW(int, nb ? nb : 1);
    if (flags & GRADSYNC_VERIFY) {
        gs->t = T_VERIFY;
        gs->host = LOLA_NEW(float, n ? n : 1);
    } else if (gs->ranks == 1 && !(flags & GRADSYNC_FORCE)) {
        gs->t = T_NONE;
    } else {
#if defined(LOLA_BACKEND_CUDA) && defined(LOLA_HAVE_NCCL)
        gs->t = T_NCCL;
        lola_nccl_init(timeout_s);
#elif defined(LOLA_BACKEND_CUDA)
        gs->t = T_STAGED; // no NCCL in this build: the whole buffer through the host, no overlap
        gs->host = LOLA_NEW(float, n ? n : 1);
#else
        gs->t = T_MPI;
        gs->req = LOLA_NEW(DistRequest *, nb ? nb : 1);
#endif
    }
    if (gs->ranks > 1)
        log_info("gradients: %d bucket%s of up to %zu elements averaged over %d ranks (%s, timeout %g s)", gs->nb,
                 gs->nb == 1 ? "" : "s", bucket, gs->ranks, transport_names[gs->t], timeout_s);
    return gs;
}

GradSync *gradsync_create(float *grads, size_t n, size_t bucket, double timeout_s) {
    return gradsync_create_ex(grads, n, bucket, timeout_s, 0);
}

void gradsync_destroy(GradSync *gs) {
    if (!gs) return;
    if (gs->armed) lola_die("gradsync_destroy: the instance is armed (gradsync_arm without gradsync_finish)");
#if defined(LOLA_BACKEND_CUDA) && defined(LOLA_HAVE_NCCL)
    if (gs->t == T_NCCL) lola_nccl_destroy(gs->timeout);
#endif
    free(gs->done);
    free(gs->started);
    free(gs->order);
    free(gs->req);
    free(gs->ranges);
    free(gs->host);
    free(gs);
}

void gradsync_arm(GradSync *gs) {
    if (!gs) lola_die("gradsync_arm: NULL instance");
    if (gs->armed) lola_die("gradsync_arm: already armed (gradsync_finish was not called after the previous arm)");
    if (g_armed) lola_die("gradsync_arm: another gradient buffer is armed (one gradsync_arm ... gradsync_finish at a time)");
    memset(gs->done, 0, (size_t)(gs->nb ? gs->nb : 1) * sizeof *gs->done);
    memset(gs->started, 0, (size_t)(gs->nb ? gs->nb : 1));
    gs->nstarted = gs->progressed = 0;
    gs->nranges = 0;
    gs->announced = 0;
    gs->early = 0;
    gs->mismatches = gs->first_mismatch = 0;
    gs->armed = 1;
    g_armed = gs;
}

// Adds [lo, hi) to the sorted disjoint range list; dies when it overlaps an announced range.
static void add_range(GradSync *gs, size_t lo, size_t hi) {
    int a = 0, b = gs->nranges; // first range with ranges[i].lo >= lo (binary search)
    while (a < b) {
        int m = (a + b) / 2;
        if (gs->ranges[m].lo < lo) a = m + 1;
        else b = m;
    }
    int i = a;
    const Range *prev = i > 0 ? &gs->ranges[i - 1] : NULL, *next = i < gs->nranges ? &gs->ranges[i] : NULL;
    if ((prev && prev->hi > lo) || (next && next->lo < hi)) {
        const Range *o = (prev && prev->hi > lo) ? prev : next;
        lola_die("gradsync_ready: gradients [%zu, %zu) announced final twice in one step (overlaps the announced "
                 "[%zu, %zu)): a model hook is misplaced or called twice",
                 lo, hi, o->lo, o->hi);
    }
    int join_prev = prev && prev->hi == lo, join_next = next && next->lo == hi;
    if (join_prev && join_next) { // bridge: merge next into prev
        gs->ranges[i - 1].hi = next->hi;
        memmove(&gs->ranges[i], &gs->ranges[i + 1], (size_t)(gs->nranges - i - 1) * sizeof(Range));
        gs->nranges--;
    } else if (join_prev) {
        gs->ranges[i - 1].hi = hi;
    } else if (join_next) {
        gs->ranges[i].lo = lo;
    } else {
        if (gs->nranges == gs->cap) {
            gs->cap = gs->cap ? 2 * gs->cap : 64;
            Range *r = (Range *)realloc(gs->ranges, (size_t)gs->cap * sizeof(Range));
            if (!r) lola_die("gradsync: out of host memory for %d ranges", gs->cap);
            gs->ranges = r;
        }
        memmove(&gs->ranges[i + 1], &gs->ranges[i], (size_t)(gs->nranges - i) * sizeof(Range));
        gs->ranges[i].lo = lo;
        gs->ranges[i].hi = hi;
        gs->nranges++;
    }
}

static void start_bucket(GradSync *gs, int k) {
    gs->started[k] = 1;
    gs->order[gs->nstarted++] = k;
    size_t off = bucket_lo(gs, k), len = bucket_len(gs, k);
    switch (gs->t) {
    case T_MPI:
        gs->req[k] = dist_iallreduce_sum_float(gs->grads + off, len);
        break;
    case T_NCCL:
#if defined(LOLA_BACKEND_CUDA) && defined(LOLA_HAVE_NCCL)
        lola_nccl_allreduce_avg(gs->grads + off, len, k, off, gs->timeout);
#endif
        break;
    default: // none, host-staged (at finish), verify
        break;
    }
}

void gradsync_ready(const float *grads, size_t lo, size_t hi) {
    GradSync *gs = g_armed;
    if (!gs || grads != gs->grads) return;
    if (lo > hi || hi > gs->n)
        lola_die("gradsync_ready: range [%zu, %zu) is not inside the gradient buffer of %zu elements", lo, hi, gs->n);
    if (lo == hi) return;
    add_range(gs, lo, hi);
    gs->announced += hi - lo;
    if (gs->t == T_VERIFY) nn_to_host(gs->host + lo, grads + lo, hi - lo);
    // Buckets overlapped by [lo, hi), highest first (the backward pass runs roughly backwards).
    size_t B = gs->bucket;
    for (size_t k = (hi - 1) / B + 1; k-- > lo / B;) {
        size_t bl = k * B, bh = bl + B < gs->n ? bl + B : gs->n;
        size_t ov = (hi < bh ? hi : bh) - (lo > bl ? lo : bl);
        gs->done[k] += ov;
        if (gs->done[k] == bh - bl) {
            start_bucket(gs, (int)k);
            gs->early++;
        }
    }
    // MPI moves nonblocking collectives forward only inside MPI calls: test the oldest pending one.
    if (gs->t == T_MPI)
        while (gs->progressed < gs->nstarted && dist_test(gs->req[gs->order[gs->progressed]])) gs->progressed++;
}

static void verify_finish(GradSync *gs) {
    float *cur = LOLA_NEW(float, gs->n ? gs->n : 1);
    nn_to_host(cur, gs->grads, gs->n);
    for (int i = 0; i < gs->nranges; i++)
        for (size_t j = gs->ranges[i].lo; j < gs->ranges[i].hi; j++)
            if (memcmp(&cur[j], &gs->host[j], sizeof(float)) != 0) {
                if (gs->mismatches++ == 0) gs->first_mismatch = j;
            }
    free(cur);
}

void gradsync_finish(GradSync *gs) {
    if (!gs) lola_die("gradsync_finish: NULL instance");
    if (!gs->armed) lola_die("gradsync_finish: not armed (call gradsync_arm before the last micro-batch)");
    for (int k = gs->nb - 1; k >= 0; k--)
        if (!gs->started[k]) start_bucket(gs, k);
    const int R = dist_size();
    switch (gs->t) {
    case T_MPI: {
        const double t0 = lola_time(); // the timeout bounds the whole wait, as on NCCL
        for (int i = 0; i < gs->nstarted; i++) {
            int k = gs->order[i];
            size_t off = bucket_lo(gs, k), len = bucket_len(gs, k);
            double left = gs->timeout - (lola_time() - t0);
            if (dist_wait(gs->req[k], left > 1e-3 ? left : 1e-3) != 0)
                lola_die_hint("a rank died, hangs or is much slower; raise dist.timeout if the network is just slow",
                              "gradient all-reduce (MPI) of bucket %d (elements [%zu, %zu) of %zu) did not complete "
                              "within %.1f s (dist.timeout = %g s)",
                              k, off, off + len, gs->n, lola_time() - t0, gs->timeout);
            gs->req[k] = NULL;
            if (R > 1) nn_scale(gs->grads + off, 1.0f / (float)R, len);
        }
        break;
    }
    case T_NCCL:
#if defined(LOLA_BACKEND_CUDA) && defined(LOLA_HAVE_NCCL)
        lola_nccl_wait_all(gs->timeout);
#endif
        break;
    case T_STAGED:
        if (R > 1 && gs->n) {
            nn_to_host(gs->host, gs->grads, gs->n);
            dist_allreduce_sum_float(gs->host, gs->n);
            nn_to_backend(gs->grads, gs->host, gs->n);
            nn_scale(gs->grads, 1.0f / (float)R, gs->n);
        }
        break;
    case T_VERIFY:
        verify_finish(gs);
        break;
    case T_NONE:
        break;
    }
    gs->armed = 0;
    g_armed = NULL;
}

void gradsync_stats(const GradSync *gs, GradSyncStats *out) {
    memset(out, 0, sizeof *out);
    out->n = gs->n;
    out->bucket = gs->bucket;
    out->buckets = gs->nb;
    out->ranks = gs->ranks;
    out->transport = transport_names[gs->t];
    out->early = gs->early;
    out->launched = gs->nstarted;
    out->announced = gs->announced;
    out->mismatches = gs->mismatches;
    out->first_mismatch = gs->first_mismatch;
}

int gradsync_bucket_started(const GradSync *gs, int k) {
    if (k < 0 || k >= gs->nb) lola_die("gradsync_bucket_started: bucket %d outside [0, %d)", k, gs->nb);
    return gs->started[k];
}
