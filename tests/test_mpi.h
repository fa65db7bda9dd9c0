// test_mpi.h: checks agreed over ranks, for test programs that run under mpirun (test_dist,
// test_gradsync, tests/gpu/test_nccl). Include after test.h and dist.h.
//
// CHECK_ALL(cond, fmt, ...): cond is evaluated on every rank; the check passes only when it holds
// on all of them (dist_all) and is printed once, by rank 0, so PASS/FAIL lines are counted once.
// A rank that sees a failure prints where; test_mpi_failed() is then 1 on every rank (use it as
// the exit status of ranks other than 0).
#ifndef LOLA_TEST_MPI_H
#define LOLA_TEST_MPI_H

static int test_mpi_fail_any_ = 0;
static inline int test_mpi_failed(void) { return test_mpi_fail_any_; }

#define CHECK_ALL(cond, ...)                                                                       \
    do {                                                                                           \
        int local_ok_ = (cond) ? 1 : 0;                                                            \
        if (!local_ok_) printf("  rank %d: check failed here\n", dist_rank());                     \
        int all_ok_ = dist_all(local_ok_);                                                         \
        if (!all_ok_) test_mpi_fail_any_ = 1;                                                      \
        if (dist_rank() == 0) CHECK(all_ok_, __VA_ARGS__);                                         \
    } while (0)

#endif
