// common.c: see common.h.
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void (*lola_abort_hook)(int code) = NULL;
int lola_log_rank = 0, lola_log_size = 1;

static LOLA_NORETURN void die_finish(void) {
    fflush(stdout);
    fflush(stderr);
    if (lola_abort_hook) lola_abort_hook(1);
    exit(1);
}

static void die_print(const char *file, int line, const char *fmt, va_list ap) {
    fflush(stdout);
    if (lola_log_size > 1) fprintf(stderr, "[rank %d] ", lola_log_rank);
    if (line > 0) fprintf(stderr, "error: %s:%d: ", file, line);
    else fprintf(stderr, "error: %s: ", file); // no line (e.g. a whole config file)
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void lola_die_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_print(file, line, fmt, ap);
    va_end(ap);
    die_finish();
}

void lola_die_hint_at(const char *file, int line, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    die_print(file, line, fmt, ap);
    va_end(ap);
    if (hint && hint[0]) fprintf(stderr, "HINT: %s\n", hint);
    die_finish();
}

void *lola_calloc_at(const char *file, int line, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) lola_die_at(file, line, "out of host memory allocating %zu x %zu bytes", n, size);
    return p;
}

FILE *fopen_check_at(const char *file, int line, const char *path, const char *mode) {
    FILE *fp = fopen(path, mode);
    if (!fp)
        lola_die_hint_at(file, line, "check the path exists and is readable/writable",
                         "cannot open '%s' (mode %s): %s", path, mode, strerror(errno));
    return fp;
}

void fread_check_at(const char *file, int line, void *ptr, size_t size, size_t n, FILE *fp, const char *what) {
    size_t got = fread(ptr, size, n, fp);
    if (got != n) {
        if (feof(fp))
            lola_die_at(file, line, "unexpected end of file reading %s: expected %zu items, got %zu", what, n, got);
        lola_die_at(file, line, "read error on %s: expected %zu items, got %zu: %s", what, n, got, strerror(errno));
    }
}

void fwrite_check_at(const char *file, int line, const void *ptr, size_t size, size_t n, FILE *fp, const char *what) {
    size_t put = fwrite(ptr, size, n, fp);
    if (put != n)
        lola_die_at(file, line, "write error on %s: expected %zu items, wrote %zu: %s", what, n, put, strerror(errno));
}

static void log_v(const char *fmt, va_list ap, int prefix) {
    if (prefix && lola_log_size > 1) printf("[rank %d] ", lola_log_rank);
    vprintf(fmt, ap);
    size_t L = strlen(fmt);
    if (L == 0 || fmt[L - 1] != '\n') putchar('\n');
    fflush(stdout);
}

void log_info(const char *fmt, ...) {
    if (lola_log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    log_v(fmt, ap, 0);
    va_end(ap);
}

void log_all(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_v(fmt, ap, 1);
    va_end(ap);
}

void log_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    if (lola_log_size > 1) fprintf(stderr, "[rank %d] ", lola_log_rank);
    fprintf(stderr, "warning: ");
    vfprintf(stderr, fmt, ap);
    size_t L = strlen(fmt);
    if (L == 0 || fmt[L - 1] != '\n') fputc('\n', stderr);
    va_end(ap);
}

double lola_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lola_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int lola_env_choice(const char *var, const char *const *names, int n, int dflt, const char *what) {
    const char *s = getenv(var);
    if (!s || !s[0]) return dflt;
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        if (!strcasecmp(s, names[i])) return i;
        size_t L = strlen(list);
        snprintf(list + L, sizeof list - L, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
    }
    lola_die("environment variable %s='%s': expected %s%s%s%s", var, s, list, what ? " (" : "", what ? what : "", what ? ")" : "");
    return dflt;
}

void lola_mkdirs(const char *path) {
    char buf[4096];
    size_t L = strlen(path);
    if (L == 0 || L >= sizeof buf) lola_die("bad directory path '%s'", path);
    memcpy(buf, path, L + 1);
    for (size_t i = 1; i <= L; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                lola_die("cannot create directory '%s': %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
}

void lola_write_atomic(const char *path, const void *data, size_t n) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        lola_die("path too long: '%s'", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0664);
    if (fd < 0) lola_die("cannot create '%s': %s", tmp, strerror(errno));
    const char *p = (const char *)data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            lola_die("write to '%s' failed: %s", tmp, strerror(errno));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) lola_die("fsync of '%s' failed: %s", tmp, strerror(errno));
    close(fd);
    if (rename(tmp, path) != 0) lola_die("rename '%s' -> '%s' failed: %s", tmp, path, strerror(errno));
}
