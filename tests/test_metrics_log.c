// test_metrics_log.c: the JSONL metrics log (escaping, NaN/inf -> null, one flushed line per
// record, append on reopen, rank != 0 inactive) and the progress-line helpers.
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "metrics_log.h"
#include "test.h"

static int count_lines(const char *path, char lines[][512], int max) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    int n = 0;
    char buf[512];
    while (fgets(buf, sizeof buf, fp)) {
        if (n < max) strcpy(lines[n], buf);
        n++;
    }
    fclose(fp);
    return n;
}

int main(void) {
    char out[512];
    // Formatting of every type, with escapes and non-finite numbers.
    MetricsKV kv[] = {M_STR("event", "tr\"ain\\\n\t\x01"), M_INT("step", -9007199254740993LL),
                      M_NUM("loss", 0.125), M_NUM("nan", NAN), M_NUM("inf", -INFINITY),
                      M_BOOL("skip", 1), M_STR("none", NULL), M_NUM("tiny", 1.23456789012e-7)};
    size_t L = metrics_format(out, sizeof out, kv, (int)(sizeof kv / sizeof kv[0]));
    const char *want = "{\"event\":\"tr\\\"ain\\\\\\n\\t\\u0001\",\"step\":-9007199254740993,\"loss\":0.125,"
                       "\"nan\":null,\"inf\":null,\"skip\":true,\"none\":null,\"tiny\":1.23456789e-07}";
    CHECK(strcmp(out, want) == 0 && L == strlen(want), "metrics_format types, escapes, NaN/inf as null");
    if (strcmp(out, want) != 0) printf("  got  %s\n  want %s\n", out, want);
    // Truncation reports the needed length like snprintf.
    char small[8];
    size_t need = metrics_format(small, sizeof small, kv, 3);
    CHECK(need > sizeof small && strlen(small) == sizeof small - 1, "metrics_format truncates, returns needed length");

    // A log file: two records, reopen appends a third; every line complete and newline-terminated.
    char dir[] = "/tmp/lola_test_metrics_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char run[600];
    snprintf(run, sizeof run, "%s/run/sub", dir);
    MetricsLog ml;
    metrics_log_open(&ml, run); // creates run/sub
    metrics_log(&ml, M_STR("event", "start"));
    metrics_log(&ml, M_STR("event", "train"), M_INT("step", 1), M_NUM("loss", 2.5));
    char lines[4][512];
    CHECK(count_lines(ml.path, lines, 4) == 2, "metrics lines are on disk before close (flushed)");
    metrics_log_close(&ml);
    metrics_log_close(&ml); // second close is a no-op
    metrics_log_open(&ml, run);
    metrics_log(&ml, M_STR("event", "resume"), M_NUM("x", INFINITY));
    // A record longer than the stack buffer (4096 bytes).
    char *big = (char *)malloc(6000);
    memset(big, 'a', 5999);
    big[5999] = '\0';
    metrics_log(&ml, M_STR("big", big));
    free(big);
    metrics_log_close(&ml);
    FILE *fp = fopen(ml.path, "r");
    int nl = 0, complete = 1, time_first = 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, fp)) > 0) {
        nl++;
        complete &= line[got - 1] == '\n' && line[0] == '{' && line[got - 2] == '}';
        time_first &= strncmp(line, "{\"time\":", 8) == 0;
        if (nl == 3) CHECK(strstr(line, "\"event\":\"resume\",\"x\":null}") != NULL, "reopen appends, inf -> null");
        if (nl == 4) {
            const char *v = strstr(line, ",\"big\":\"");
            size_t na = v ? strspn(v + 8, "a") : 0;
            CHECK(v && na == 5999 && strcmp(v + 8 + na, "\"}\n") == 0, "long record written whole (%zd bytes)", got);
        }
    }
    free(line);
    fclose(fp);
    CHECK(nl == 4 && complete && time_first, "metrics.jsonl: 4 complete lines, each starting with time");

    // Rank != 0 writes nothing.
    char run2[600];
    snprintf(run2, sizeof run2, "%s/rank1", dir);
    lola_log_rank = 1;
    metrics_log_open(&ml, run2);
    metrics_log(&ml, M_STR("event", "x"));
    metrics_log_close(&ml);
    lola_log_rank = 0;
    CHECK(!lola_exists(run2) && ml.fp == NULL, "rank 1: inactive log, no file");

    // Durations and ETA.
    char d[32];
    CHECK(strcmp(format_duration(d, sizeof d, 42.4), "42s") == 0, "format_duration 42s");
    CHECK(strcmp(format_duration(d, sizeof d, 312), "5m12s") == 0, "format_duration 5m12s");
    CHECK(strcmp(format_duration(d, sizeof d, 3720), "1h02m") == 0, "format_duration 1h02m");
    CHECK(strcmp(format_duration(d, sizeof d, 2 * 86400 + 3 * 3600 + 59), "2d03h") == 0, "format_duration 2d03h");
    CHECK(strcmp(format_duration(d, sizeof d, NAN), "?") == 0, "format_duration NaN");
    CHECK_CLOSE(progress_eta(10.0, 100, 1000), 90.0, 1e-12, 0, "progress_eta linear");
    CHECK(isnan(progress_eta(10.0, 0, 1000)) && progress_eta(5, 10, 10) == 0.0, "progress_eta edge cases");

    Progress p = {"ae", 120, 1000, 3, 64, 1.234e-2, 3.1e-3, 0.812, 1e-4, 123.44, 3725.0};
    progress_format(out, sizeof out, &p);
    const char *wp = "ae step 120/1000 (12.0%) epoch 3/64 | loss 1.2340e-02 (std 3.1e-03) | grad 8.120e-01 | "
                     "lr 1.00e-04 | 123.4 samples/s | ETA 1h02m";
    CHECK(strcmp(out, wp) == 0, "progress_format full line");
    if (strcmp(out, wp) != 0) printf("  got  %s\n  want %s\n", out, wp);
    Progress q = {NULL, 7, 0, 0, 0, 0.5, NAN, NAN, NAN, NAN, NAN};
    progress_format(out, sizeof out, &q);
    CHECK(strcmp(out, "step 7 | loss 5.0000e-01") == 0, "progress_format leaves out unknowns (got '%s')", out);
    progress_format(small, sizeof small, &p);
    CHECK(strlen(small) == sizeof small - 1, "progress_format truncates safely");

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", dir);
    return test_summary();
}
