// wellstats.c: LoLa's get_stats (see wellstats.h).
#include "wellstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

// k-th smallest of v[0..n) (partially reorders v). Quickselect, Hoare partition.
static float select_kth(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int wellstats_compute(WellSplit *s, const Preprocess *transform, int64_t n_snapshots, uint64_t seed, WellStats *out) {
    if (n_snapshots < 1) lola_die("stats: number of snapshots %lld (must be >= 1)", (long long)n_snapshots);
    const int C = s->n_channels;
    Preprocess pre;
    if (transform) {
        if (transform->n_channels != C) lola_die("stats: transform has %d channels but the split has %d", transform->n_channels, C);
        pre = *transform;
        pre.normalize = 0; // get_stats measures after the transform, before any z-score
    } else {
        preprocess_init(&pre, C, NULL, NULL, 0, NULL, 0, "stats");
    }
    WellWindows w;
    well_windows_init(&w, s, 1, 1);
    const int64_t total = w.n_samples;
    const int64_t N = n_snapshots < total ? n_snapshots : total;
    // N distinct snapshots: partial Fisher-Yates over [0, total) (a shuffled loader cut after N).
    int64_t *pick = LOLA_NEW(int64_t, total);
    for (int64_t i = 0; i < total; i++) pick[i] = i;
    Rng r = rng_seed(seed);
    for (int64_t i = 0; i < N; i++) {
        int64_t j = i + (int64_t)rng_below(&r, (uint64_t)(total - i));
        int64_t t = pick[i];
        pick[i] = pick[j];
        pick[j] = t;
    }
    const int64_t P = s->frame_size;
    float *x = LOLA_NEW(float, (int64_t)C * P);
    double *meds = LOLA_NEW(double, N * C);
    double s1[WELL_MAX_CHANNELS] = {0}, s2[WELL_MAX_CHANNELS] = {0};
    memset(out, 0, sizeof(*out));
    out->n_channels = C;
    out->n_snapshots = N;
    for (int c = 0; c < C; c++) {
        out->min[c] = INFINITY;
        out->max[c] = -INFINITY;
    }
    for (int64_t i = 0; i < N; i++) {
        well_read_sample(s, &w, pick[i], NULL, &pre, WELL_LCHW, x);
        for (int c = 0; c < C; c++) {
            float *v = x + (int64_t)c * P;
            double a = 0, b = 0, mn = INFINITY, mx = -INFINITY;
            for (int64_t p = 0; p < P; p++) {
                double e = v[p];
                a += e;
                b += e * e;
                if (e < mn) mn = e;
                if (e > mx) mx = e;
            }
            s1[c] += a / (double)P;
            s2[c] += b / (double)P;
            if (mn < out->min[c]) out->min[c] = mn;
            if (mx > out->max[c]) out->max[c] = mx;
            meds[c * N + i] = select_kth(v, P, (P - 1) / 2); // torch.median: lower middle value
        }
    }
    for (int c = 0; c < C; c++) {
        double m = s1[c] / (double)N, q = s2[c] / (double)N;
        double var = q - m * m;
        out->mean[c] = m;
        out->std[c] = sqrt(var > 0 ? var : 0);
        qsort(meds + c * N, (size_t)N, sizeof(double), cmp_double);
        out->median[c] = meds[c * N + (N - 1) / 2];
    }
    free(meds);
    free(x);
    free(pick);
    well_windows_free(&w);
    return 0;
}

int wellstats_write_yaml(const char *path, const WellSplit *s, const Preprocess *transform, const WellStats *st) {
    size_t cap = 8192 + (size_t)st->n_channels * 256;
    char *buf = LOLA_NEW(char, cap);
    size_t n = 0;
#define OUT(...) n += (size_t)snprintf(buf + n, cap - n, __VA_ARGS__)
    OUT("# Per-channel statistics after the transform (LoLa get_stats): %lld random %s snapshots of",
        (long long)st->n_snapshots, s->split);
    for (int p = 0; p < s->n_physics; p++) OUT(" %s", s->physics_names[p]);
    OUT("\n# channels: [");
    for (int c = 0; c < st->n_channels; c++) OUT("%s%s", c ? ", " : "", s->channels[c].name);
    OUT("]\n# transform: [");
    for (int c = 0; c < st->n_channels; c++) OUT("%s%s", c ? ", " : "", transform_name(transform ? transform->kind[c] : TF_NONE));
    const char *keys[3] = {"min", "median", "max"};
    const double *vals[3] = {st->min, st->median, st->max};
    OUT("]\n");
    for (int k = 0; k < 3; k++) {
        OUT("# %s: [", keys[k]);
        for (int c = 0; c < st->n_channels; c++) OUT("%s%.6g", c ? ", " : "", vals[k][c]);
        OUT("]\n");
    }
    OUT("mean: [");
    for (int c = 0; c < st->n_channels; c++) OUT("%s%.8g", c ? ", " : "", st->mean[c]);
    OUT("]\nstd: [");
    for (int c = 0; c < st->n_channels; c++) OUT("%s%.8g", c ? ", " : "", st->std[c]);
    OUT("]\n");
#undef OUT
    if (n >= cap) lola_die("stats: YAML text too long");
    lola_write_atomic(path, buf, n);
    free(buf);
    return 0;
}
