// test_dist.c: mpi/dist collectives and launch checks. Runs with any number of ranks:
//   build/tests/test_dist             1 rank (tests/run.sh), or under `mpirun -np N` (t_mpi.sh)
//   build/tests/test_dist abort       the last rank dies (lola_die) while the others wait in an
//                                     all-reduce: the whole job must end quickly, non-zero
//   build/tests/test_dist mpierr      a broadcast from a root that does not exist: the MPI error
//                                     must be decoded (MPI_Error_string) and end the job
//   build/tests/test_dist launch      prints "launch rank r size s local l/L" and exits 0
// Every check is agreed over ranks (dist_all) and printed by rank 0 only, so PASS/FAIL lines are
// counted once. A rank that sees a wrong value prints what it got.
// LOLA_TEST_ONE_NODE=1 (set by t_mpi.sh) additionally asserts all ranks share one node.
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dist.h"
#include "test.h"
#include "test_mpi.h"


static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int run_checks(void) {
    const int r = dist_rank(), n = dist_size();

    CHECK_ALL(n >= 1 && r >= 0 && r < n, "dist rank/size sane (rank %d of %d)", r, n);
    CHECK_ALL(lola_log_rank == r && lola_log_size == n, "dist sets lola_log_rank/size");
    CHECK_ALL(dist_local_rank() >= 0 && dist_local_rank() < dist_local_size() && dist_local_size() <= n,
              "dist local rank in [0, local size)");
    const char *one = getenv("LOLA_TEST_ONE_NODE");
    if (one && one[0] == '1')
        CHECK_ALL(dist_local_size() == n && dist_local_rank() == r, "dist local rank == rank on one node");
#ifdef LOLA_MPI
    CHECK_ALL(dist_is_mpi() == 1 && lola_abort_hook != NULL, "dist MPI build installs the abort hook");
    if (n > 1) CHECK_ALL(dist_launcher_size(NULL) == n, "dist launcher size agrees with MPI size");
#else
    CHECK_ALL(dist_is_mpi() == 0 && n == 1, "dist serial build is one rank");
#endif

    // Sums: values chosen so the float result is exact.
    enum { N = 1000 };
    float f[N];
    double d[N];
    for (int i = 0; i < N; i++) {
        f[i] = (float)r + 0.5f * (float)i;
        d[i] = 1e-3 * r + 0.25 * i;
    }
    dist_allreduce_sum_float(f, N);
    dist_allreduce_sum_double(d, N);
    int okf = 1, okd = 1;
    const double rs = 0.5 * (double)n * (n - 1); // sum of ranks
    for (int i = 0; i < N; i++) {
        if (f[i] != (float)(rs + 0.5 * n * i)) {
            if (okf) printf("  rank %d: f[%d] got %.9g expected %.9g\n", r, i, f[i], rs + 0.5 * n * i);
            okf = 0;
        }
        double want = 1e-3 * rs + 0.25 * n * i;
        if (fabs(d[i] - want) > 1e-12 * (1 + fabs(want))) {
            if (okd) printf("  rank %d: d[%d] got %.17g expected %.17g\n", r, i, d[i], want);
            okd = 0;
        }
    }
    CHECK_ALL(okf, "dist allreduce_sum_float (%d elements)", N);
    CHECK_ALL(okd, "dist allreduce_sum_double (%d elements)", N);

    int64_t big[2] = {((int64_t)1 << 40) + r, -(int64_t)r};
    dist_allreduce_sum_int64(big, 2);
    CHECK_ALL(big[0] == ((int64_t)1 << 40) * n + (int64_t)rs && big[1] == -(int64_t)rs,
              "dist allreduce_sum_int64 beyond 32 bits");

    CHECK_ALL(dist_allreduce_max_int(r) == n - 1, "dist allreduce_max_int");
    CHECK_ALL(dist_allreduce_min_int(100 - r) == 100 - (n - 1), "dist allreduce_min_int");
    CHECK_ALL(dist_any(r == n - 1) == 1 && dist_any(0) == 0, "dist_any");
    CHECK_ALL(dist_all(1) == 1 && dist_all(r == 0) == (n == 1), "dist_all");

    // Broadcast a pattern from the last rank.
    unsigned char buf[257];
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (r == n - 1) ? (unsigned char)(i * 7 + 3) : 0;
    dist_bcast(buf, sizeof buf, n - 1);
    int okb = 1;
    for (int i = 0; i < (int)sizeof buf; i++) okb &= buf[i] == (unsigned char)(i * 7 + 3);
    CHECK_ALL(okb, "dist_bcast 257 bytes from rank %d", n - 1);
    dist_bcast(buf, 0, 0);
    CHECK_ALL(1, "dist_bcast 0 bytes");

    // Allgather: rank order preserved.
    int64_t *gi = LOLA_NEW(int64_t, n);
    double *gd = LOLA_NEW(double, n);
    dist_allgather_int64(10 * (int64_t)r + 3, gi);
    dist_allgather_double(0.5 * r - 1.0, gd);
    int oka = 1;
    for (int k = 0; k < n; k++) oka &= gi[k] == 10 * (int64_t)k + 3 && gd[k] == 0.5 * k - 1.0;
    CHECK_ALL(oka, "dist_allgather int64/double in rank order");
    free(gi);
    free(gd);

    // Gatherv to the last rank: rank k sends 3k bytes (rank 0 none) of pattern 5k + i; then to
    // rank 0 with every rank sending nothing (the zero-member case of eval).
    size_t *cnt = LOLA_NEW(size_t, n), total = 0;
    for (int k = 0; k < n; k++) total += cnt[k] = 3 * (size_t)k;
    unsigned char *gs = LOLA_NEW(unsigned char, 3 * (size_t)r + 1), *gr = LOLA_NEW(unsigned char, total + 1);
    for (int i = 0; i < 3 * r; i++) gs[i] = (unsigned char)(5 * r + i);
    dist_gatherv(gs, 3 * (size_t)r, r == n - 1 ? gr : NULL, r == n - 1 ? cnt : NULL, n - 1);
    int okg = 1;
    if (r == n - 1)
        for (int k = 0, o = 0; k < n; k++)
            for (int i = 0; i < 3 * k; i++, o++) okg &= gr[o] == (unsigned char)(5 * k + i);
    CHECK_ALL(okg, "dist_gatherv of %zu bytes (rank k sends 3k) to rank %d in rank order", total, n - 1);
    for (int k = 0; k < n; k++) cnt[k] = 0;
    dist_gatherv(gs, 0, r == 0 ? gr : NULL, cnt, 0);
    CHECK_ALL(1, "dist_gatherv of 0 bytes from every rank");
    free(cnt);
    free(gs);
    free(gr);

    dist_barrier();
    CHECK_ALL(1, "dist_barrier returns");
    return test_mpi_failed();
}

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    const char *mode = argc > 1 ? argv[1] : "checks";
    int rc = 0;
    if (strcmp(mode, "checks") == 0) {
        rc = run_checks();
        if (dist_rank() == 0) rc = test_summary();
        rc = dist_any(rc != 0);
    } else if (strcmp(mode, "abort") == 0) {
        if (dist_rank() == dist_size() - 1) {
            sleep_ms(200);
            lola_die("intentional failure on rank %d (test_dist abort)", dist_rank());
        }
        float x = 1.0f; // the other ranks wait here for a rank that never comes
        dist_allreduce_sum_float(&x, 1);
        printf("rank %d: left the all-reduce, which must not happen\n", dist_rank());
        rc = 3;
    } else if (strcmp(mode, "mpierr") == 0) {
        char b[8] = {0};
        dist_bcast(b, sizeof b, dist_size() + 5);
        printf("rank %d: bad broadcast returned, which must not happen\n", dist_rank());
        rc = 3;
    } else if (strcmp(mode, "launch") == 0) {
        printf("launch rank %d size %d local %d/%d\n", dist_rank(), dist_size(), dist_local_rank(),
               dist_local_size());
    } else {
        fprintf(stderr, "test_dist: unknown mode '%s' (checks|abort|mpierr|launch)\n", mode);
        rc = 2;
    }
    dist_finalize();
    return rc;
}
