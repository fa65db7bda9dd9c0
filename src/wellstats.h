// wellstats.h: LoLa's get_stats (experiments/get_stats.py; lola-spec.md §1.2, §8.10): per-channel
// statistics of the train split after the per-channel transform (no normalisation), from N random
// snapshots (one time step of one trajectory each, drawn without replacement like a shuffled
// DataLoader cut after N items):
//   per snapshot and channel: m1 = mean(x), m2 = mean(x^2), min, max, median (lower middle value,
//   like torch.median);
//   mean = average of m1 over snapshots, std = sqrt(average m2 - mean^2), min = min, max = max,
//   median = median of the per-snapshot medians.
// Sums are in float64 (the reference uses float32 torch means; differences are rounding-level).
#ifndef LOLA_WELLSTATS_H
#define LOLA_WELLSTATS_H

#include <stdint.h>

#include "transform.h"
#include "well.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_channels;
    int64_t n_snapshots;
    double mean[WELL_MAX_CHANNELS], std[WELL_MAX_CHANNELS];
    double min[WELL_MAX_CHANNELS], max[WELL_MAX_CHANNELS], median[WELL_MAX_CHANNELS];
} WellStats;

// Computes the stats over min(n_snapshots, total snapshots) random snapshots of `s` drawn with
// `seed`. `transform` gives the per-channel transforms (its normalisation, if any, is ignored);
// NULL = none. Returns 0. Dies on read errors (naming file/trajectory/time) and bad arguments.
int wellstats_compute(WellSplit *s, const Preprocess *transform, int64_t n_snapshots, uint64_t seed, WellStats *out);

// Writes `path` (atomically) as YAML a config can include:
//   mean: [m0, m1, ...]
//   std: [s0, s1, ...]
// preceded by comments naming the channels, transforms, snapshot count, min/max/median. Returns 0.
int wellstats_write_yaml(const char *path, const WellSplit *s, const Preprocess *transform, const WellStats *st);

#ifdef __cplusplus
}
#endif
#endif
