// pyrandom.h: Python's `random` module generator (MT19937 with CPython's seeding), so that
// `lola eval` picks exactly the test trajectories LoLa's eval.py picks: random.seed(seed), then
// eval.array draws of random.random() (lola-spec.md 5.1).
#ifndef LOLA_PYRANDOM_H
#define LOLA_PYRANDOM_H

#include <stdint.h>

typedef struct {
    uint32_t mt[624];
    int index;
} PyRandom;

// random.seed(n) for a non-negative integer n (CPython: init_by_array over the 32-bit words of n).
void pyrandom_seed(PyRandom *r, uint64_t n);
// random.random(): 53-bit float in [0, 1).
double pyrandom_random(PyRandom *r);

#endif
