// order.c: see order.h.
#include "order.h"

#include <stdlib.h>

#include "common.h"
#include "rng.h"

void order_init(ShuffleOrder *o, int64_t n, uint64_t seed) {
    if (n <= 0) lola_die("sample order over an empty dataset");
    o->seed = seed;
    o->n = n;
    o->pass = -1;
    o->perm = LOLA_NEW(int64_t, n);
}

void order_free(ShuffleOrder *o) {
    free(o->perm);
    o->perm = NULL;
}

int64_t order_get(ShuffleOrder *o, int64_t pos) {
    if (pos < 0) lola_die("negative stream position %lld", (long long)pos);
    int64_t pass = pos / o->n;
    if (pass != o->pass) {
        Rng r = rng_child(o->seed, (uint64_t)pass);
        for (int64_t i = 0; i < o->n; i++) o->perm[i] = i;
        for (int64_t i = o->n - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)(i + 1));
            int64_t t = o->perm[i];
            o->perm[i] = o->perm[j];
            o->perm[j] = t;
        }
        o->pass = pass;
    }
    return o->perm[pos % o->n];
}
