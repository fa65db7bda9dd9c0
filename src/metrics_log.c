// metrics_log.c: see metrics_log.h.
#define _POSIX_C_SOURCE 200809L
#include "metrics_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

// A bounded string builder that keeps counting past the end (snprintf semantics).
typedef struct {
    char *buf;
    size_t cap, len;
} Sb;

static void sb_putn(Sb *b, const char *s, size_t n) {
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->buf + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static void sb_puts(Sb *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_printf(Sb *b, const char *fmt, ...) LOLA_PRINTF(2, 3);
static void sb_printf(Sb *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    if ((size_t)k >= sizeof tmp) k = (int)sizeof tmp - 1; // only used for numbers
    sb_putn(b, tmp, (size_t)k);
}

// JSON string with escapes: \" \\ \n \r \t \b \f, other control bytes as \u00XX. Bytes >= 0x80
// pass through unchanged (UTF-8 text stays UTF-8).
static void sb_json_string(Sb *b, const char *s) {
    sb_putn(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        unsigned char c = *p;
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default:
            if (c < 0x20) sb_printf(b, "\\u%04x", c);
            else sb_putn(b, (const char *)p, 1);
        }
    }
    sb_putn(b, "\"", 1);
}

static void sb_json_number(Sb *b, double v) {
    if (isnan(v) || isinf(v)) sb_puts(b, "null"); // JSON has no NaN/Infinity
    else sb_printf(b, "%.9g", v);
}

static void format_fields(Sb *b, const MetricsKV *kv, int n) {
    for (int k = 0; k < n; k++) {
        if (!kv[k].key) lola_die("metrics record: key %d of %d is NULL", k, n);
        if (k) sb_putn(b, ",", 1);
        sb_json_string(b, kv[k].key);
        sb_putn(b, ":", 1);
        switch (kv[k].type) {
        case MV_STR:
            if (kv[k].s) sb_json_string(b, kv[k].s);
            else sb_puts(b, "null");
            break;
        case MV_INT: sb_printf(b, "%lld", (long long)kv[k].i); break;
        case MV_NUM: sb_json_number(b, kv[k].d); break;
        case MV_BOOL: sb_puts(b, kv[k].i ? "true" : "false"); break;
        default: lola_die("metrics record: key '%s' has an unknown type %d", kv[k].key, (int)kv[k].type);
        }
    }
}

size_t metrics_format(char *buf, size_t cap, const MetricsKV *kv, int n) {
    Sb b = {buf, cap, 0};
    sb_putn(&b, "{", 1);
    format_fields(&b, kv, n);
    sb_putn(&b, "}", 1);
    if (cap) buf[b.len < cap ? b.len : cap - 1] = '\0';
    return b.len;
}

void metrics_log_open(MetricsLog *m, const char *run_dir) {
    memset(m, 0, sizeof *m);
    if (!run_dir || !run_dir[0]) lola_die("metrics_log_open: empty run directory");
    int k = snprintf(m->path, sizeof m->path, "%s/metrics.jsonl", run_dir);
    if (k < 0 || (size_t)k >= sizeof m->path) lola_die("metrics log path too long: '%s/metrics.jsonl'", run_dir);
    if (lola_log_rank != 0) return; // rank 0 writes; the others keep an inactive log
    lola_mkdirs(run_dir);
    m->fp = fopen(m->path, "a");
    if (!m->fp)
        lola_die_hint("check that the run directory is writable (run_dir / -o)",
                      "cannot open metrics log '%s' for appending: %s", m->path, strerror(errno));
}

void metrics_log_write(MetricsLog *m, const MetricsKV *kv, int n) {
    if (!m || !m->fp) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double now = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;

    char stack[4096];
    Sb b = {stack, sizeof stack, 0};
    sb_printf(&b, "{\"time\":%.3f", now);
    if (n > 0) sb_putn(&b, ",", 1);
    format_fields(&b, kv, n);
    sb_putn(&b, "}\n", 2);
    char *line = stack;
    if (b.len > sizeof stack) { // long record: format again into a buffer of the right size
        line = (char *)lola_calloc(b.len, 1);
        Sb b2 = {line, b.len, 0};
        sb_printf(&b2, "{\"time\":%.3f", now);
        if (n > 0) sb_putn(&b2, ",", 1);
        format_fields(&b2, kv, n);
        sb_putn(&b2, "}\n", 2);
    }
    size_t put = fwrite(line, 1, b.len, m->fp);
    int ok = put == b.len && fflush(m->fp) == 0;
    int err = errno;
    if (line != stack) free(line);
    if (!ok) lola_die("write error on metrics log '%s' (%zu of %zu bytes): %s", m->path, put, b.len, strerror(err));
    m->lines++;
}

void metrics_log_close(MetricsLog *m) {
    if (!m || !m->fp) return;
    fflush(m->fp);
    fsync(fileno(m->fp));
    if (fclose(m->fp) != 0) log_warn("closing metrics log '%s': %s", m->path, strerror(errno));
    m->fp = NULL;
}

// ---------------------------------------------------------------------------------------------
// Progress line

char *format_duration(char *buf, size_t cap, double s) {
    if (!(s >= 0) || isinf(s)) snprintf(buf, cap, "?");
    else if (s < 59.5) snprintf(buf, cap, "%.0fs", s);
    else {
        long long t = (long long)(s + 0.5);
        if (t < 3600) snprintf(buf, cap, "%lldm%02llds", t / 60, t % 60);
        else if (t < 86400) snprintf(buf, cap, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
        else snprintf(buf, cap, "%lldd%02lldh", t / 86400, (t % 86400) / 3600);
    }
    return buf;
}

double progress_eta(double elapsed_s, int64_t done, int64_t total) {
    if (done <= 0 || total <= 0 || !(elapsed_s >= 0)) return NAN;
    if (done >= total) return 0.0;
    return elapsed_s * (double)(total - done) / (double)done;
}

char *progress_format(char *buf, size_t cap, const Progress *p) {
    Sb b = {buf, cap ? cap - 1 : 0, 0};
    char t[64];
    if (p->stage && p->stage[0]) {
        sb_puts(&b, p->stage);
        sb_putn(&b, " ", 1);
    }
    if (p->steps > 0) {
        snprintf(t, sizeof t, "step %lld/%lld (%.1f%%)", (long long)p->step, (long long)p->steps,
                 100.0 * (double)p->step / (double)p->steps);
    } else {
        snprintf(t, sizeof t, "step %lld", (long long)p->step);
    }
    sb_puts(&b, t);
    if (p->epochs > 0) {
        snprintf(t, sizeof t, " epoch %lld/%lld", (long long)p->epoch, (long long)p->epochs);
        sb_puts(&b, t);
    }
    if (!isnan(p->loss_mean)) {
        snprintf(t, sizeof t, " | loss %.4e", p->loss_mean);
        sb_puts(&b, t);
        if (!isnan(p->loss_std)) {
            snprintf(t, sizeof t, " (std %.1e)", p->loss_std);
            sb_puts(&b, t);
        }
    }
    if (!isnan(p->grad_norm)) {
        snprintf(t, sizeof t, " | grad %.3e", p->grad_norm);
        sb_puts(&b, t);
    }
    if (!isnan(p->lr)) {
        snprintf(t, sizeof t, " | lr %.2e", p->lr);
        sb_puts(&b, t);
    }
    if (!isnan(p->samples_per_s)) {
        snprintf(t, sizeof t, " | %.1f samples/s", p->samples_per_s);
        sb_puts(&b, t);
    }
    if (!isnan(p->eta_s)) {
        char d[32];
        sb_puts(&b, " | ETA ");
        sb_puts(&b, format_duration(d, sizeof d, p->eta_s));
    }
    if (cap) buf[b.len < cap - 1 ? b.len : cap - 1] = '\0';
    return buf;
}
