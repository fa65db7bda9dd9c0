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

// Runs fn(arg) in a child process and checks that it ends the program with a non-zero exit status
// and that its stderr contains `expect` (the clear-error contract of lola_die). POSIX only.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
// Runs fn(arg) in a child process with stdout and stderr captured into msg (cap bytes, NUL
// terminated). Returns the child's exit status (-1 when it did not exit normally).
static inline int test_run_capture(void (*fn)(void *), void *arg, char *msg, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        dup2(fds[1], 1);
        fn(arg);
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], msg + n, cap - 1 - n)) > 0) n += (size_t)r;
    msg[n] = 0;
    char sink[256];
    while (read(fds[0], sink, sizeof sink) > 0) {}
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
// 1 when fn(arg) ends its process with a non-zero status and its output contains `expect`.
static inline int test_dies_with(void (*fn)(void *), void *arg, const char *expect, char *msg, size_t cap) {
    int st = test_run_capture(fn, arg, msg, cap);
    return st != 0 && strstr(msg, expect) != NULL;
}
#define CHECK_DIES(fn, arg, expect, ...)                                                   \
    do {                                                                                   \
        char msg_[4096];                                                                   \
        int ok_ = test_dies_with((fn), (arg), (expect), msg_, sizeof msg_);                \
        if (!ok_) printf("  expected exit != 0 and '%s' in: %s\n", (expect), msg_);        \
        else printf("  message: %.*s\n", (int)strcspn(msg_, "\n"), msg_);                 \
        CHECK(ok_, __VA_ARGS__);                                                           \
    } while (0)

static inline int test_summary(void) {
    printf("# %d passed, %d failed\n", test_passes_, test_failures_);
    return test_failures_ ? 1 : 0;
}
#endif
