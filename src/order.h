// order.h: the shuffled sample stream shared by every training stage (DESIGN.md 5).
//
// Position p of the stream (p = 0, 1, 2, ...) belongs to pass p / N over a dataset of N samples;
// pass k visits every sample once in the order sampler_order(seed, k) (sampler.h: a
// Fisher-Yates permutation drawn from rng_child(seed, k)); this module only caches the
// current pass's permutation and maps positions. The order is therefore a pure function of (seed, position): any rank, any
// rank count and any resume point see the same samples, and no state needs checkpointing.
#ifndef LOLA_ORDER_H
#define LOLA_ORDER_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    int64_t n;       // dataset size N
    int64_t pass;    // pass whose permutation is cached (-1: none)
    int64_t *perm;   // [n]
} ShuffleOrder;

// n > 0 samples; shuffle = 0 gives the identity order (p mod N).
void order_init(ShuffleOrder *o, int64_t n, uint64_t seed);
void order_free(ShuffleOrder *o);
// Dataset index of stream position pos >= 0.
int64_t order_get(ShuffleOrder *o, int64_t pos);

#endif
