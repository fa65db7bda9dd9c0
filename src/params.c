// params.c: see params.h.
#include "params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int ptable_add(ParamTable *t, const char *name, int ndim, const int64_t *shape, ParamInit init,
               int64_t fan_in, int64_t fan_out, float scale) {
    if (ndim < 1 || ndim > PARAM_MAX_DIMS) lola_die("parameter '%s': bad rank %d", name, ndim);
    if (strlen(name) >= PARAM_NAME_MAX) lola_die("parameter name too long: '%s'", name);
    if (ptable_find(t, name) >= 0) lola_die("duplicate parameter name '%s'", name);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->rows = (ParamSpec *)realloc(t->rows, (size_t)t->cap * sizeof(ParamSpec));
        if (!t->rows) lola_die("out of memory growing the parameter table");
    }
    ParamSpec *r = &t->rows[t->n];
    memset(r, 0, sizeof *r);
    strcpy(r->name, name);
    r->ndim = ndim;
    r->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) lola_die("parameter '%s': dimension %d is %lld", name, i, (long long)shape[i]);
        r->shape[i] = shape[i];
        r->numel *= (size_t)shape[i];
    }
    r->offset = t->total;
    r->init = init;
    r->fan_in = fan_in;
    r->fan_out = fan_out;
    r->scale = scale;
    t->total += r->numel;
    return t->n++;
}

int ptable_find(const ParamTable *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].name, name) == 0) return i;
    return -1;
}

void ptable_free(ParamTable *t) {
    free(t->rows);
    memset(t, 0, sizeof *t);
}

void ptable_init(const ParamTable *t, float *params, Rng *rng) {
    for (int i = 0; i < t->n; i++) {
        const ParamSpec *r = &t->rows[i];
        float *p = params + r->offset;
        double bound = 0.0;
        switch (r->init) {
        case INIT_TORCH_DEFAULT:
            bound = 1.0 / sqrt((double)(r->fan_in > 0 ? r->fan_in : 1));
            for (size_t k = 0; k < r->numel; k++) p[k] = (float)(r->scale * bound * (2.0 * rng_uniform(rng) - 1.0));
            break;
        case INIT_XAVIER_UNIFORM:
            bound = sqrt(6.0 / (double)(r->fan_in + r->fan_out));
            for (size_t k = 0; k < r->numel; k++) p[k] = (float)(r->scale * bound * (2.0 * rng_uniform(rng) - 1.0));
            break;
        case INIT_NORMAL:
            for (size_t k = 0; k < r->numel; k++) p[k] = (float)(r->scale * rng_normal(rng));
            break;
        case INIT_ZERO:
            memset(p, 0, r->numel * sizeof(float));
            break;
        case INIT_ONE:
            for (size_t k = 0; k < r->numel; k++) p[k] = 1.0f;
            break;
        case INIT_CUSTOM:
            break;
        }
    }
}

char *fmt_count(char *buf, size_t cap, uint64_t n) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)n);
    size_t j = 0;
    for (int i = 0; i < len && j + 1 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0 && j + 1 < cap) buf[j++] = ',';
        if (j + 1 < cap) buf[j++] = tmp[i];
    }
    buf[j] = '\0';
    return buf;
}

void ptable_print(const ParamTable *t, FILE *out) {
    char b[40];
    for (int i = 0; i < t->n; i++) {
        const ParamSpec *r = &t->rows[i];
        fprintf(out, "  %-60s (", r->name);
        for (int d = 0; d < r->ndim; d++) fprintf(out, "%s%lld", d ? ", " : "", (long long)r->shape[d]);
        fprintf(out, ")%*s%12s\n", 0, "", fmt_count(b, sizeof b, r->numel));
    }
    fprintf(out, "  total %s\n", fmt_count(b, sizeof b, t->total));
}
