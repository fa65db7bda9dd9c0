// metrics_log.h: the append-only JSONL metrics file of a run (DESIGN §6 "Logs"), and the human
// progress line printed on rank 0.
//
// metrics.jsonl holds one JSON object per line, written with a single fwrite and flushed, so a
// crash loses at most the line being written and every complete line stays parseable. Only rank
// 0 writes (lola_log_rank == 0 at open time); on other ranks every call is a no-op.
// Each record starts with "time" (Unix seconds, millisecond resolution); the caller's keys
// follow in the given order. Values: strings (JSON-escaped), int64, double (%.9g; NaN and
// +-inf are written as null, since JSON has no such numbers), booleans.
//
//   MetricsLog ml;
//   metrics_log_open(&ml, "runs/euler");                      // runs/euler/metrics.jsonl
//   metrics_log(&ml, M_STR("event", "train"), M_STR("stage", "ae"), M_INT("step", step),
//               M_NUM("loss", loss), M_NUM("lr", lr));
//   metrics_log_close(&ml);
#ifndef LOLA_METRICS_LOG_H
#define LOLA_METRICS_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *fp;        // NULL when inactive (rank != 0, or closed)
    char path[4096]; // run_dir/metrics.jsonl
    int64_t lines;   // records written since open
} MetricsLog;

typedef enum { MV_STR = 1, MV_INT, MV_NUM, MV_BOOL } MetricsType;

// One key/value of a record. Build with the M_* macros.
typedef struct {
    const char *key;
    MetricsType type;
    const char *s;
    int64_t i;
    double d;
} MetricsKV;

#define M_STR(k, v) ((MetricsKV){(k), MV_STR, (v), 0, 0.0})
#define M_INT(k, v) ((MetricsKV){(k), MV_INT, NULL, (int64_t)(v), 0.0})
#define M_NUM(k, v) ((MetricsKV){(k), MV_NUM, NULL, 0, (double)(v)})
#define M_BOOL(k, v) ((MetricsKV){(k), MV_BOOL, NULL, (v) ? 1 : 0, 0.0})

// Creates run_dir (mkdir -p) and opens run_dir/metrics.jsonl for appending (a resumed run keeps
// adding to the same file). Rank 0 only; other ranks get an inactive log. Dies naming the path
// when the file cannot be opened.
void metrics_log_open(MetricsLog *m, const char *run_dir);
// Flushes, fsyncs and closes. Safe on an inactive or already closed log.
void metrics_log_close(MetricsLog *m);
// Appends one record {"time": ..., kv[0], ..., kv[n-1]} as one line and flushes it.
// Dies on a write error (disk full) naming the file. NULL keys are an error.
void metrics_log_write(MetricsLog *m, const MetricsKV *kv, int n);
#define metrics_log(m, ...)                                                                        \
    do {                                                                                           \
        const MetricsKV kv_[] = {__VA_ARGS__};                                                     \
        metrics_log_write((m), kv_, (int)(sizeof kv_ / sizeof kv_[0]));                            \
    } while (0)

// Formats one record (without "time" and without the newline) into buf; returns the length it
// needs (like snprintf; the output is truncated when >= cap). Used by metrics_log_write; public
// for tests and for embedding records elsewhere.
size_t metrics_format(char *buf, size_t cap, const MetricsKV *kv, int n);

// ---------------------------------------------------------------------------------------------
// Progress line

// What one progress line shows. Negative totals / NaN values are "unknown" and left out.
typedef struct {
    const char *stage;        // "ae", "dm", ... (may be NULL)
    int64_t step, steps;      // optimizer step done so far and the total (steps <= 0: unknown)
    int64_t epoch, epochs;    // epoch (1-based) and total (epochs <= 0: not shown)
    double loss_mean, loss_std; // over the steps since the last line (std NaN: not shown)
    double grad_norm;         // global gradient norm before clipping
    double lr;                // learning rate
    double samples_per_s;     // throughput over the steps since the last line (all ranks)
    double eta_s;             // seconds left (NaN: unknown), e.g. from progress_eta()
} Progress;

// "ae step 120/1000 (12.0%) epoch 3/64 | loss 1.2340e-02 ± 3.1e-03 | grad 0.812 | lr 1.00e-04 |
//  123.4 samples/s | ETA 1h02m" into buf (always NUL-terminated); returns buf.
char *progress_format(char *buf, size_t cap, const Progress *p);
// Seconds left at a constant rate: elapsed * (total - done) / done; NaN when done <= 0 or
// total <= 0.
double progress_eta(double elapsed_s, int64_t done, int64_t total);
// A duration as "42s", "5m12s", "1h02m", "2d03h" ("?" for NaN/negative) into buf; returns buf.
char *format_duration(char *buf, size_t cap, double seconds);

#ifdef __cplusplus
}
#endif
#endif
