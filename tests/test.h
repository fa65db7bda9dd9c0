// test.h: a tiny test harness. Each check prints "PASS name" or "FAIL name: why"; tests/run.sh
// counts these lines over every test program. A program's exit status is non-zero when any
// check failed (test_summary()).
#ifndef LOLA_TEST_H
#define LOLA_TEST_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_failures_ = 0, test_passes_ = 0;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            test_passes_++;                                                                \
            printf("PASS ");                                                               \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
        } else {                                                                           \
            test_failures_++;                                                              \
            printf("FAIL ");                                                               \
            printf(__VA_ARGS__);                                                           \
            printf("  [%s:%d: %s]\n", __FILE__, __LINE__, #cond);                           \
        }                                                                                  \
        fflush(stdout);                                                                    \
    } while (0)

// |a - b| <= atol + rtol * |b|
#define CHECK_CLOSE(a, b, atol, rtol, ...)                                                 \
    do {                                                                                   \
        double a_ = (double)(a), b_ = (double)(b);                                         \
        int ok_ = fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_);                             \
        if (!ok_) printf("  got %.9g expected %.9g\n", a_, b_);                           \
        CHECK(ok_, __VA_ARGS__);                                                           \
    } while (0)

static inline int test_summary(void) {
    printf("# %d passed, %d failed\n", test_passes_, test_failures_);
    return test_failures_ ? 1 : 0;
}
#endif
