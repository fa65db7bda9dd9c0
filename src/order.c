// order.c: see order.h.
#include "order.h"

#include <stdlib.h>

#include "common.h"
#include "sampler.h"

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
        sampler_order(o->perm, o->n, 1, o->seed, pass);
        o->pass = pass;
    }
    return o->perm[pos % o->n];
}
