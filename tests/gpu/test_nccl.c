// test_nccl.c: the NCCL transport of the gradient averaging (src/gradsync.c + cuda/nccl.cu), on
// the GPU machine. Built by `make gpu-tests` as build/tests/gpu/test_nccl (CUDA build with NCCL).
//
//   test_nccl                       one process, one GPU: the NCCL communicator of 1 rank
//   mpirun -np N test_nccl          N ranks on N distinct GPUs: real averages over N ranks
//
// Checks (PASS/FAIL lines, "# N passed, M failed"; exit status 1 on a failure):
//   1. the build has NCCL and the communicator starts (transport "nccl"), within the timeout;
//   2. bucketed averages of a device buffer: bucket sizes 7 / 4096 / n-1 / n / n+5 / default and
//      announcement patterns (none, every block descending, random order, partial, whole): the
//      result equals the host-computed mean of every rank's input (1e-6 of mean|x|), is identical
//      on every rank, and buckets start exactly when complete;
//   3. stream ordering: each block's gradient is written on the compute stream right before its
//      announcement, behind ~tens of ms of queued compute work, and the compute stream scales the
//      buffer right after finish: a missing compute->NCCL or NCCL->compute dependency reads stale
//      zeros or races the scale. (With 1 rank NCCL's in-place average may not touch memory at all,
//      so this check is only meaningful with N >= 2 GPUs; it must pass either way.)
//   4. (1 process only) the error path: a child process hands NCCL a NULL buffer (with
//      NCCL_CHECK_POINTERS=1); it must end with a non-zero status after "NCCL failure ... aborting
//      the NCCL communicator", naming ncclAllReduce and the NCCL error;
//   5. (1 process only) the timeout path: a child blocks its compute stream for 8 s
//      (cudaLaunchHostFunc) with a 2 s timeout; it must end within 40 s with "did not complete
//      within" (ncclCommAbort, then exit) instead of hanging.
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "common.h"
#include "dist.h"
#include "gradsync.h"
#include "nn.h"
#include "rng.h"
#include "test.h"
#include "test_mpi.h"


static const char *g_self = NULL; // argv[0], for the child processes

// Input of rank r: quarter-integers (sums and /2, /4 of them are exact in fp32).
static float input(int r, size_t i, int salt) {
    uint64_t h = rng_hash((uint64_t)(r + 1) * 7919u + (uint64_t)salt, i);
    return (float)((int)(h % 2001) - 1000) * 0.25f;
}

typedef struct {
    size_t lo, hi;
} Rg;

enum { P_NONE = 0, P_BLOCKS_DESC, P_RANDOM, P_PARTIAL, P_WHOLE, P_COUNT };

// Patterns depend on (kind, n, blocks) only: the same on every rank.
static int make_pattern(int kind, size_t n, size_t block, Rg *out, int cap) {
    int k = 0;
    Rng r = rng_seed(1234 + (uint64_t)kind);
    switch (kind) {
    case P_NONE: break;
    case P_BLOCKS_DESC:
    case P_RANDOM:
        for (size_t hi = n; hi > 0 && k < cap;) {
            size_t lo = hi > block ? hi - block : 0;
            out[k++] = (Rg){lo, hi};
            hi = lo;
        }
        if (kind == P_RANDOM)
            for (int i = k - 1; i > 0; i--) {
                int j = (int)rng_below(&r, (uint64_t)i + 1);
                Rg t = out[i];
                out[i] = out[j];
                out[j] = t;
            }
        break;
    case P_PARTIAL:
        out[k++] = (Rg){n / 2, n};
        out[k++] = (Rg){0, n / 5};
        break;
    case P_WHOLE: out[k++] = (Rg){0, n}; break;
    }
    return k;
}

static int covered(const Rg *rg, int k, size_t b, size_t B, size_t n) {
    size_t lo = b * B, hi = lo + B < n ? lo + B : n, got = 0;
    for (int i = 0; i < k; i++) {
        size_t a = rg[i].lo > lo ? rg[i].lo : lo, z = rg[i].hi < hi ? rg[i].hi : hi;
        if (z > a) got += z - a;
    }
    return got == hi - lo;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *c = (const unsigned char *)p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ c[i]) * 1099511628211ULL;
    return h;
}

// ---------------------------------------------------------------------------------------------
// 2 + 3: averages

static void test_averages(void) {
    const int R = dist_size(), rank = dist_rank();
    const size_t n = 300007; // odd, several buckets of 4096
    const size_t block = 9973;
    const size_t buckets[] = {4096, n - 1, n, n + 5, 0};
    static Rg rg[4096];
    float *h_in = LOLA_NEW(float, n), *h_out = LOLA_NEW(float, n), *h_exp = LOLA_NEW(float, n);
    float *h_mag = LOLA_NEW(float, n);
    unsigned char *mark = LOLA_NEW(unsigned char, n);
    float *g = nn_alloc(n), *src = nn_alloc(n);
    // busy work to queue on the compute stream before each write (delays the writes)
    const size_t nbusy = (size_t)64 << 20;
    float *busy = nn_alloc(nbusy);
    long bad_start = 0, bad_val = 0, bad_agree = 0, bad_stats = 0;
    double worst = 0.0;
    int cases = 0;
    for (int ordered = 0; ordered < 2; ordered++) { // 0: values uploaded first; 1: written on the stream
        for (size_t bi = 0; bi < sizeof buckets / sizeof buckets[0]; bi++) {
            GradSync *gs = gradsync_create_ex(g, n, buckets[bi], 60.0, GRADSYNC_FORCE);
            GradSyncStats st;
            gradsync_stats(gs, &st);
            if (strcmp(st.transport, "nccl") != 0) bad_stats++;
            for (int p = 0; p < P_COUNT; p++) {
                int salt = (int)(100 * bi + 10 * p + ordered);
                for (size_t i = 0; i < n; i++) {
                    h_in[i] = input(rank, i, salt);
                    double s = 0, m = 0;
                    for (int q = 0; q < R; q++) {
                        float v = input(q, i, salt);
                        s += v;
                        m += fabs(v);
                    }
                    h_exp[i] = (float)(s / R);
                    h_mag[i] = (float)(m / R);
                }
                if (ordered) {
                    nn_to_backend(src, h_in, n);
                    nn_zero(g, n);
                } else {
                    nn_to_backend(g, h_in, n);
                }
                int k = make_pattern(p, n, block, rg, 4096);
                gradsync_arm(gs);
                for (int i = 0; i < k; i++) {
                    if (ordered) { // the "backward" writes the block, behind queued work
                        for (int rep = 0; rep < 4; rep++) nn_scale(busy, 1.0f, nbusy);
                        nn_axpy(g + rg[i].lo, 1.0f, src + rg[i].lo, rg[i].hi - rg[i].lo);
                    }
                    gradsync_ready(g, rg[i].lo, rg[i].hi);
                    for (int b = 0; b < st.buckets; b++)
                        if (gradsync_bucket_started(gs, b) != covered(rg, i + 1, (size_t)b, st.bucket, n)) bad_start++;
                }
                if (ordered) { // elements never announced are written before finish
                    memset(mark, 0, n);
                    for (int i = 0; i < k; i++) memset(mark + rg[i].lo, 1, rg[i].hi - rg[i].lo);
                    for (size_t lo = 0; lo < n;) {
                        if (mark[lo]) {
                            lo++;
                            continue;
                        }
                        size_t hi = lo;
                        while (hi < n && !mark[hi]) hi++;
                        nn_axpy(g + lo, 1.0f, src + lo, hi - lo);
                        lo = hi;
                    }
                }
                gradsync_finish(gs);
                if (ordered) nn_scale(g, 2.0f, n); // must run after the averages
                nn_to_host(h_out, g, n);
                GradSyncStats s2;
                gradsync_stats(gs, &s2);
                if (s2.launched != s2.buckets) bad_stats++;
                float f = ordered ? 2.0f : 1.0f;
                for (size_t i = 0; i < n; i++) {
                    double d = fabs((double)h_out[i] - (double)(f * h_exp[i]));
                    if (d > 1e-6 * f * h_mag[i] + 1e-30) bad_val++;
                    if (d > worst) worst = d;
                }
                int64_t hsh = (int64_t)hash_bytes(h_out, n * sizeof(float)), *all = LOLA_NEW(int64_t, (size_t)R);
                dist_allgather_int64(hsh, all);
                for (int q = 0; q < R; q++)
                    if (all[q] != all[0]) bad_agree++;
                free(all);
                cases++;
            }
            gradsync_destroy(gs); // the communicator stays: main() holds another instance
        }
    }
    CHECK_ALL(bad_stats == 0, "nccl %d rank(s): transport nccl, every bucket averaged (%ld wrong)", R, bad_stats);
    CHECK_ALL(bad_start == 0, "nccl %d rank(s): %d steps: buckets start exactly when complete (%ld wrong)", R, cases,
              bad_start);
    CHECK_ALL(bad_val == 0, "nccl %d rank(s): averages equal the host mean to 1e-6 of mean|x| (%ld wrong, worst |diff| %.3g)",
              R, bad_val, worst);
    CHECK_ALL(bad_agree == 0, "nccl %d rank(s): every rank holds the same bits", R);
    nn_free(g);
    nn_free(src);
    nn_free(busy);
    free(h_in);
    free(h_out);
    free(h_exp);
    free(h_mag);
    free(mark);
}

// ---------------------------------------------------------------------------------------------
// 4 + 5: children (one process, no MPI start: 1-rank communicator)

static void sleep_host(void *arg) {
    (void)arg;
    struct timespec ts = {8, 0};
    nanosleep(&ts, NULL);
}

static int child(const char *mode) {
    nn_init(0);
    float *g = nn_alloc(1 << 20);
    if (!strcmp(mode, "child-error")) {
        setenv("NCCL_CHECK_POINTERS", "1", 1); // NCCL validates buffers only when asked to
        lola_nccl_init(30.0);
        printf("child: communicator ready; averaging a NULL buffer\n");
        fflush(stdout);
        lola_nccl_allreduce_avg(NULL, 1000, 3, 12288, 30.0);
        lola_nccl_wait_all(30.0);
        printf("child: must not happen: the NULL buffer was accepted\n");
        return 0;
    }
    // child-timeout: the compute stream is blocked 8 s by a host function; timeout 2 s. The
    // communicator is started first with a generous limit (gradsync_create then shares it).
    lola_nccl_init(60.0);
    GradSync *gs = gradsync_create_ex(g, 1 << 20, 1 << 18, 2.0, GRADSYNC_FORCE);
    printf("child: communicator ready; blocking the compute stream for 8 s\n");
    fflush(stdout);
    if (cudaLaunchHostFunc(0, sleep_host, NULL) != cudaSuccess) {
        printf("child: cudaLaunchHostFunc failed\n");
        return 3;
    }
    gradsync_arm(gs);
    gradsync_ready(g, 0, 1 << 20);
    gradsync_finish(gs);
    printf("child: must not happen: finish returned\n");
    return 0;
}

static void run_child(void *arg) {
    const char *mode = (const char *)arg;
    execl("/proc/self/exe", g_self, mode, (char *)NULL); // this very binary, however it was started
    fprintf(stderr, "exec /proc/self/exe (%s) failed\n", g_self);
    _exit(127);
}

static void test_children(void) {
    char msg[8192];
    double t0 = lola_time();
    int st = test_run_capture(run_child, (void *)"child-error", msg, sizeof msg);
    int ok = st != 0 && strstr(msg, "aborting the NCCL communicator") && strstr(msg, "ncclAllReduce") &&
             strstr(msg, "NCCL error") && !strstr(msg, "must not happen");
    if (!ok) printf("  child-error (exit %d) said:\n%s\n", st, msg);
    else printf("  %.*s\n", (int)strcspn(strstr(msg, "error:") ? strstr(msg, "error:") : msg, "\n"),
                strstr(msg, "error:") ? strstr(msg, "error:") : msg);
    CHECK(ok, "nccl error path: a NULL buffer ends the process (exit %d) after ncclCommAbort, naming the call and NCCL's "
          "reason (%.1f s)", st, lola_time() - t0);

    t0 = lola_time();
    st = test_run_capture(run_child, (void *)"child-timeout", msg, sizeof msg);
    double el = lola_time() - t0;
    ok = st != 0 && strstr(msg, "did not complete within") && strstr(msg, "aborting the NCCL communicator") &&
         !strstr(msg, "must not happen") && el < 40.0;
    if (!ok) printf("  child-timeout (exit %d after %.1f s) said:\n%s\n", st, el, msg);
    else printf("  %.*s\n", (int)strcspn(strstr(msg, "error:") ? strstr(msg, "error:") : msg, "\n"),
                strstr(msg, "error:") ? strstr(msg, "error:") : msg);
    CHECK(ok, "nccl timeout path: a stalled bucket ends the process (exit %d) after %.1f s with 'did not complete "
          "within' (timeout 2 s, stall 8 s)", st, el);
}

int main(int argc, char **argv) {
    g_self = argv[0];
    if (argc > 1 && !strncmp(argv[1], "child-", 6)) return child(argv[1]);
#ifndef LOLA_HAVE_NCCL
    CHECK(0, "test_nccl: this build has no NCCL (nccl.h / libnccl not found at build time): nothing to test");
    return test_summary();
#else
    // The children first, while this process has neither MPI nor CUDA started (fork + exec).
    int one = dist_launcher_size(NULL) == 1;
    if (one) test_children();
    dist_init(&argc, &argv);
    nn_init(dist_local_rank());
    if (dist_rank() == 0) printf("# test_nccl: %d rank(s), backend %s\n", dist_size(), nn_backend_name());
    double t0 = lola_time();
    float *g = nn_alloc(1000);
    // Held to the end: the communicator is created once and shared by the instances below.
    GradSync *gs = gradsync_create_ex(g, 1000, 100, 60.0, GRADSYNC_FORCE);
    GradSyncStats st;
    gradsync_stats(gs, &st);
    CHECK_ALL(!strcmp(st.transport, "nccl"), "nccl %d rank(s): communicator up in %.2f s (transport %s)", dist_size(),
              lola_time() - t0, st.transport);
    test_averages();
    gradsync_destroy(gs);
    nn_free(g);
    if (!one && dist_rank() == 0) printf("# error and timeout paths: run test_nccl as one process (no mpirun)\n");
    int rc = dist_rank() == 0 ? test_summary() : (test_mpi_failed() ? 1 : 0);
    dist_finalize();
    return rc;
#endif
}
