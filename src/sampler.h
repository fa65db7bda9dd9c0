// sampler.h: samples, the rank-sharded shuffled order and a prefetching batch loader over a
// WellSplit (DESIGN.md §5; lola-spec.md §1.4).
//
// SampleSource: "read sample idx" = locate (file, trajectory, start), draw the augmentation from
// a per-sample Rng, read the window with the augmentation + pre-processing applied, and build the
// label θ after augmentation.
//
// Order and shards (like torch DistributedSampler(shuffle, drop_last)): the epoch's order is a
// permutation of [0, n) that depends only on (seed, epoch) (Fisher-Yates driven by
// rng_child(seed, epoch)); without shuffle it is the identity. Rank r of R takes positions
// r, r + R, r + 2R, ... of that order, per_rank = floor(n / R) of them (the remainder is dropped so
// every rank does the same number of steps). With a per-rank batch b, step k of all ranks together
// covers exactly positions [k*b*R, (k+1)*b*R) of the global order, so for a fixed global batch
// b*R the samples of each step do not depend on R. The augmentation of the sample at global
// position q in epoch e uses Rng seed rng_hash(rng_hash(seed ^ AUG, e), q): also independent of R.
// Deviation: LoLa's AE loader uses a lazy chunked shuffle per rank without a distributed sampler;
// we use the distributed full shuffle for every stage (reproducible for any rank count).
//
// BatchLoader: an infinite sequence of batches (epochs follow each other, each with its own
// shuffle). With prefetch on, a reader thread fills the next batch while the caller computes on
// the current one (double buffering). The reader thread is the only thread of the loader calling
// HDF5, and every HDF5 call is under well_h5_lock (well.h). Under the MPI-IO driver the reads are
// MPI calls: the thread is only used when MPI provides MPI_THREAD_MULTIPLE, otherwise the loader
// reads synchronously in loader_next (and says so once).
#ifndef LOLA_SAMPLER_H
#define LOLA_SAMPLER_H

#include <stdint.h>

#include "augment.h"
#include "transform.h"
#include "well.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    WellSplit *split;
    WellWindows win;
    const Preprocess *pre; // may be NULL (physical units)
    AugmentList aug;       // may be empty
    WellLayout layout;
    int64_t sample_floats; // L * C * prod(shape)
} SampleSource;

// Windows of L frames at `stride`; `aug` may be NULL. Checks the augmentations against the split.
void source_init(SampleSource *src, WellSplit *split, int L, int stride, const Preprocess *pre,
                 const AugmentList *aug, WellLayout layout);
void source_free(SampleSource *src);
// Reads sample idx with its augmentation drawn from Rng seed `aug_seed` (ignored without
// augmentations): x gets sample_floats floats, label (may be NULL) label_dim floats, plan (may be
// NULL) the plan that was applied.
void source_read(SampleSource *src, int64_t idx, uint64_t aug_seed, float *x, float *label, AugPlan *plan);

// The epoch order: order[n] = permutation of [0, n) from (seed, epoch), identity if !shuffle.
void sampler_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, int64_t epoch);
// Samples per rank (floor(n / ranks)) and the global position of the i-th sample of `rank`.
int64_t shard_per_rank(int64_t n, int ranks);
static inline int64_t shard_position(int64_t i, int rank, int ranks) { return i * ranks + rank; }
// Augmentation Rng seed of the sample at global position `pos` of epoch `epoch`.
uint64_t sampler_aug_seed(uint64_t seed, int64_t epoch, int64_t pos);

typedef struct {
    SampleSource *src;
    int batch;          // samples per rank per step
    int rank, ranks;
    int shuffle;
    uint64_t seed;
    int64_t epoch, step; // where to start (resume): step within the epoch
    int prefetch;       // 1: background reader thread (double buffering)
    int threads;        // samples of a batch built by this many OpenMP threads (<= 1: one).
                        // HDF5 reads stay serialised (well_h5_lock); the augmentation/transform
                        // of one sample overlaps the read of the next.
} LoaderConfig;

typedef struct {
    int n;               // = batch
    float *x;            // (batch, sample layout): (B, L, C, H, W) or (B, C, L, H, W)
    float *label;        // (batch, label_dim)
    int64_t *index;      // (batch) global sample indices
    int64_t epoch, step; // position of this batch
} Batch;

typedef struct BatchLoader BatchLoader;

// Dies when per-rank samples < batch (no full step possible), naming the counts.
BatchLoader *loader_create(const LoaderConfig *cfg);
// Next batch; the pointer stays valid until the next call (or destroy).
const Batch *loader_next(BatchLoader *l);
int64_t loader_steps_per_epoch(const BatchLoader *l);
// Stops the reader thread and frees everything.
void loader_destroy(BatchLoader *l);

#ifdef __cplusplus
}
#endif
#endif
