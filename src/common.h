// common.h: errors that end the whole job, rank-aware logging, checked allocation and file I/O.
//
// Every fatal error goes through lola_die(): it prints "file:line: message" (plus an optional
// HINT line) on stderr, then ends the *whole* job (MPI_Abort when MPI is running, exit(1)
// otherwise), so no rank is left waiting in a collective. Check macros wrap library calls and
// inject the call site, llm.c style: a snake_case function doing the work, a macro adding the
// location.
#ifndef LOLA_COMMON_H
#define LOLA_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>

#if defined(__GNUC__)
#define LOLA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LOLA_NORETURN __attribute__((noreturn))
#else
#define LOLA_PRINTF(a, b)
#define LOLA_NORETURN
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Ends the job with "file:line: <message>" ("file: <message>" when line <= 0). Never returns.
LOLA_NORETURN void lola_die_at(const char *file, int line, const char *fmt, ...) LOLA_PRINTF(3, 4);
// Same, with a second "HINT: ..." line that tells the user what to try.
LOLA_NORETURN void lola_die_hint_at(const char *file, int line, const char *hint, const char *fmt, ...)
    LOLA_PRINTF(4, 5);
#define lola_die(...) lola_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define lola_die_hint(hint, ...) lola_die_hint_at(__FILE__, __LINE__, hint, __VA_ARGS__)

// Hook run by lola_die before exiting (mpi/ installs MPI_Abort here). NULL = exit(1).
extern void (*lola_abort_hook)(int code);

// Checked allocation: dies with the size and call site on failure. Zero-filled.
void *lola_calloc_at(const char *file, int line, size_t n, size_t size);
#define lola_calloc(n, size) lola_calloc_at(__FILE__, __LINE__, (n), (size))
#define LOLA_NEW(type, n) ((type *)lola_calloc((size_t)(n), sizeof(type)))

// Checked stdio: open/read/write/close that die naming the file and what went wrong
// (EOF vs error vs short read, expected vs actual).
FILE *fopen_check_at(const char *file, int line, const char *path, const char *mode);
void fread_check_at(const char *file, int line, void *ptr, size_t size, size_t n, FILE *fp, const char *what);
void fwrite_check_at(const char *file, int line, const void *ptr, size_t size, size_t n, FILE *fp, const char *what);
#define fopen_check(path, mode) fopen_check_at(__FILE__, __LINE__, (path), (mode))
#define fread_check(ptr, size, n, fp, what) fread_check_at(__FILE__, __LINE__, (ptr), (size), (n), (fp), (what))
#define fwrite_check(ptr, size, n, fp, what) fwrite_check_at(__FILE__, __LINE__, (ptr), (size), (n), (fp), (what))

// Logging. The rank is set once by mpi/ (0 in single-process runs); log_info prints on rank 0
// only, log_warn and log_all on every rank with a "[rank r]" prefix when size > 1.
extern int lola_log_rank, lola_log_size;
void log_info(const char *fmt, ...) LOLA_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOLA_PRINTF(1, 2);
void log_all(const char *fmt, ...) LOLA_PRINTF(1, 2);

// Wall clock in seconds (monotonic).
double lola_time(void);

// mkdir -p; dies on failure naming the path.
void lola_mkdirs(const char *path);
// 1 if path exists (file or directory).
int lola_exists(const char *path);
// Environment switch with a fixed set of values: the index in names (n of them, compared without
// case) of the value of variable var; dflt when it is unset or empty. Any other value dies naming
// the variable, the value, the accepted values and, when not NULL, what (what the switch does).
int lola_env_choice(const char *var, const char *const *names, int n, int dflt, const char *what);
// Write a whole buffer to path atomically: path.tmp, fsync, rename. Dies on failure.
void lola_write_atomic(const char *path, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
