// rng.h: the project's random numbers. Two kinds, both reproducible from a 64-bit seed:
//  * Rng, a small sequential generator (splitmix64 stream), used on the host for shuffles,
//    augmentations, context masks, diffusion times. Its whole state is one uint64 (checkpointed).
//  * rng_hash_* : counter-based values f(seed, index) with no state at all, used for tensors
//    (dropout masks, Gaussian noise), so that the CPU and CUDA backends draw the *same* numbers
//    for the same (seed, index) and any element can be generated independently in parallel.
// Header-only; functions are marked RNG_FN so CUDA code can use them on the device.
#ifndef LOLA_RNG_H
#define LOLA_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define RNG_FN static inline __host__ __device__
#else
#define RNG_FN static inline
#endif

// splitmix64 finaliser: a bijective 64-bit mix with good avalanche.
RNG_FN uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// Counter-based: 64 random bits for element `index` of the stream `seed`.
RNG_FN uint64_t rng_hash(uint64_t seed, uint64_t index) {
    return rng_mix64(rng_mix64(seed ^ 0x9e3779b97f4a7c15ULL) + index * 0x9e3779b97f4a7c15ULL);
}
// Uniform in [0, 1) with 24 bits (exactly representable in float).
RNG_FN float rng_hash_uniform(uint64_t seed, uint64_t index) {
    return (float)(rng_hash(seed, index) >> 40) * (1.0f / 16777216.0f);
}
// Standard normal (Box-Muller on two 32-bit halves, computed in float64 then rounded, so both
// backends agree to the last bit as long as they use correctly rounded log/sqrt/cos in double).
RNG_FN float rng_hash_normal(uint64_t seed, uint64_t index) {
    uint64_t r = rng_hash(seed, index);
    double u1 = ((double)(r >> 40) + 1.0) * (1.0 / 16777217.0); // (0, 1]
    double u2 = (double)((r >> 16) & 0xffffff) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// Sequential generator. state is the only state; copy it to checkpoint it.
typedef struct {
    uint64_t state;
} Rng;

RNG_FN Rng rng_seed(uint64_t seed) {
    Rng r;
    r.state = rng_mix64(seed + 0x632be59bd9b4e019ULL);
    return r;
}
RNG_FN uint64_t rng_next(Rng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return rng_mix64(r->state);
}
// Uniform double in [0, 1) with 53 bits.
RNG_FN double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
// Uniform integer in [0, n), n > 0 (Lemire-free simple rejection, unbiased).
RNG_FN uint64_t rng_below(Rng *r, uint64_t n) {
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(r);
    while (x >= lim);
    return x % n;
}
// Standard normal (Box-Muller, one value per call).
RNG_FN double rng_normal(Rng *r) {
    double u1 = 1.0 - rng_uniform(r); // (0, 1]
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
// Poisson(lambda) by inversion (small lambda only; used with lambda = 1 for context masks).
RNG_FN int rng_poisson(Rng *r, double lambda) {
    double L = exp(-lambda), p = 1.0;
    int k = 0;
    do {
        k++;
        p *= rng_uniform(r);
    } while (p > L);
    return k - 1;
}
// A child stream: independent generator derived from (parent seed material, tag).
RNG_FN Rng rng_child(uint64_t seed, uint64_t tag) { return rng_seed(rng_hash(seed, tag)); }

#endif
