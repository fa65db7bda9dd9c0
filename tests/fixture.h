// fixture.h: reader for the named-tensor fixture files written by tests/fixture.py.
// Format (little-endian): "LOLAFIX1", uint32 count, then per tensor: uint32 name_len, name bytes,
// uint32 ndim, int64 dims[ndim], float32 data[prod(dims)].
#ifndef LOLA_FIXTURE_H
#define LOLA_FIXTURE_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[128];
    int ndim;
    int64_t dims[8];
    size_t numel;
    float *data;
} FixTensor;

typedef struct {
    FixTensor *t;
    int n;
} Fixture;

static inline Fixture fixture_load(const char *path) {
    Fixture f = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "cannot open fixture %s\n", path); exit(2); }
    char magic[8];
    uint32_t count;
    if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, "LOLAFIX1", 8) != 0 || fread(&count, 4, 1, fp) != 1) {
        fprintf(stderr, "%s: not a LOLAFIX1 fixture\n", path); exit(2);
    }
    f.t = (FixTensor *)calloc(count, sizeof(FixTensor));
    f.n = (int)count;
    for (uint32_t i = 0; i < count; i++) {
        FixTensor *t = &f.t[i];
        uint32_t len, nd;
        if (fread(&len, 4, 1, fp) != 1 || len >= sizeof t->name || fread(t->name, 1, len, fp) != len ||
            fread(&nd, 4, 1, fp) != 1 || nd > 8 || fread(t->dims, 8, nd, fp) != nd) {
            fprintf(stderr, "%s: corrupt tensor header %u\n", path, i); exit(2);
        }
        t->name[len] = 0;
        t->ndim = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) t->numel *= (size_t)t->dims[d];
        t->data = (float *)malloc((t->numel ? t->numel : 1) * sizeof(float));
        if (fread(t->data, 4, t->numel, fp) != t->numel) { fprintf(stderr, "%s: truncated tensor %s\n", path, t->name); exit(2); }
    }
    fclose(fp);
    return f;
}

// The tensor called name, or NULL.
static inline FixTensor *fixture_get(Fixture *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

// Largest |a-b| / (atol + rtol*|b|) over n values ("fraction of the tolerance budget used").
static inline double fixture_budget(const float *a, const float *b, size_t n, double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= worst)) worst = r; // NaN propagates as a failure
    }
    return worst;
}
#endif
