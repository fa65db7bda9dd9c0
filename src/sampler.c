// sampler.c: sample source, sharded order, prefetching batch loader (see sampler.h).
#include "sampler.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

#define AUG_TAG 0x61756720736565ULL // "aug see"

void source_init(SampleSource *src, WellSplit *split, int L, int stride, const Preprocess *pre,
                 const AugmentList *aug, WellLayout layout) {
    memset(src, 0, sizeof(*src));
    src->split = split;
    well_windows_init(&src->win, split, L, stride);
    src->pre = pre;
    if (pre && pre->n_channels != split->n_channels)
        lola_die("pre-processing is for %d channels but the %s split has %d", pre->n_channels, split->split, split->n_channels);
    if (aug) {
        src->aug = *aug;
        augment_check(aug, split);
    }
    src->layout = layout;
    src->sample_floats = well_sample_floats(split, L);
}

void source_free(SampleSource *src) {
    well_windows_free(&src->win);
    memset(src, 0, sizeof(*src));
}

void source_read(SampleSource *src, int64_t idx, uint64_t aug_seed, float *x, float *label, AugPlan *plan_out) {
    WellLoc loc = well_locate(&src->win, idx);
    AugPlan plan;
    Rng rng = rng_seed(aug_seed);
    augment_draw(&plan, &src->aug, src->split, loc.file, &rng);
    well_read_window(src->split, loc.file, loc.traj, loc.start, src->win.L, src->win.stride, &plan, src->pre, src->layout, x);
    if (label) augment_label(&plan, src->split, loc.file, loc.traj, label);
    if (plan_out) *plan_out = plan;
}

void sampler_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    Rng r = rng_child(seed, (uint64_t)epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

int64_t shard_per_rank(int64_t n, int ranks) { return ranks > 0 ? n / ranks : 0; }

uint64_t sampler_aug_seed(uint64_t seed, int64_t epoch, int64_t pos) {
    return rng_hash(rng_hash(seed ^ AUG_TAG, (uint64_t)epoch), (uint64_t)pos);
}

// ---------------------------------------------------------------------------------------------
// Loader

enum { SLOT_EMPTY = 0, SLOT_FILLING, SLOT_READY, SLOT_IN_USE };

struct BatchLoader {
    LoaderConfig cfg;
    int64_t n, per_rank, steps;
    int64_t *order;          // the producer's current epoch order
    int64_t order_epoch;     // epoch the order is for (-1 = none)
    int64_t fill_epoch, fill_step; // producer cursor
    Batch slot[2];
    int state[2];
    int take;                // next slot the consumer takes
    int fill;                // next slot the producer fills
    int threaded, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void fill_batch(BatchLoader *l, Batch *b) {
    SampleSource *src = l->cfg.src;
    if (l->order_epoch != l->fill_epoch) {
        sampler_order(l->order, l->n, l->cfg.shuffle, l->cfg.seed, l->fill_epoch);
        l->order_epoch = l->fill_epoch;
    }
    b->epoch = l->fill_epoch;
    b->step = l->fill_step;
    const int B = l->cfg.batch, ld = src->split->label_dim;
    const int nt = l->cfg.threads > 1 && well_reads_thread_safe(src->split) ? l->cfg.threads : 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (int i = 0; i < B; i++) {
        int64_t local = l->fill_step * B + i;
        int64_t pos = shard_position(local, l->cfg.rank, l->cfg.ranks);
        int64_t idx = l->order[pos];
        b->index[i] = idx;
        source_read(src, idx, sampler_aug_seed(l->cfg.seed, l->fill_epoch, pos), b->x + (int64_t)i * src->sample_floats,
                    b->label + (int64_t)i * ld, NULL);
    }
    if (++l->fill_step == l->steps) {
        l->fill_step = 0;
        l->fill_epoch++;
    }
}

static void *reader_main(void *arg) {
    BatchLoader *l = (BatchLoader *)arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->stop && l->state[l->fill] != SLOT_EMPTY) pthread_cond_wait(&l->cv, &l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        int s = l->fill;
        l->state[s] = SLOT_FILLING;
        pthread_mutex_unlock(&l->mu);
        fill_batch(l, &l->slot[s]);
        pthread_mutex_lock(&l->mu);
        l->state[s] = SLOT_READY;
        l->fill = 1 - s;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    well_thread_scratch_free();
    return NULL;
}

BatchLoader *loader_create(const LoaderConfig *cfg) {
    if (!cfg->src) lola_die("loader_create: no sample source");
    if (cfg->batch < 1) lola_die("batch size %d (must be >= 1)", cfg->batch);
    if (cfg->ranks < 1 || cfg->rank < 0 || cfg->rank >= cfg->ranks) lola_die("rank %d of %d is not valid", cfg->rank, cfg->ranks);
    BatchLoader *l = LOLA_NEW(BatchLoader, 1);
    l->cfg = *cfg;
    l->n = cfg->src->win.n_samples;
    l->per_rank = shard_per_rank(l->n, cfg->ranks);
    l->steps = l->per_rank / cfg->batch;
    if (l->steps < 1)
        lola_die_hint("use a smaller batch size or fewer ranks",
                      "the %s split has %lld samples: %lld per rank over %d ranks, fewer than one batch of %d",
                      cfg->src->split->split, (long long)l->n, (long long)l->per_rank, cfg->ranks, cfg->batch);
    l->order = LOLA_NEW(int64_t, l->n);
    l->order_epoch = -1;
    l->fill_epoch = cfg->epoch + cfg->step / l->steps;
    l->fill_step = cfg->step % l->steps;
    for (int s = 0; s < 2; s++) {
        l->slot[s].n = cfg->batch;
        l->slot[s].x = LOLA_NEW(float, (int64_t)cfg->batch * cfg->src->sample_floats);
        l->slot[s].label = LOLA_NEW(float, (int64_t)cfg->batch * cfg->src->split->label_dim);
        l->slot[s].index = LOLA_NEW(int64_t, cfg->batch);
    }
    l->take = -1;
    l->threaded = cfg->prefetch;
    if (l->threaded && !well_reads_thread_safe(cfg->src->split)) {
        log_warn("loader: MPI-IO reads need MPI_THREAD_MULTIPLE for a reader thread; reading synchronously");
        l->threaded = 0;
    }
    if (l->threaded) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        if (pthread_create(&l->thread, NULL, reader_main, l) != 0) lola_die("loader: cannot start the reader thread");
    }
    return l;
}

const Batch *loader_next(BatchLoader *l) {
    if (!l->threaded) {
        fill_batch(l, &l->slot[0]);
        return &l->slot[0];
    }
    pthread_mutex_lock(&l->mu);
    if (l->take >= 0) { // release the batch handed out last time
        l->state[l->take] = SLOT_EMPTY;
        pthread_cond_broadcast(&l->cv);
    }
    int s = l->take < 0 ? 0 : 1 - l->take;
    while (l->state[s] != SLOT_READY) pthread_cond_wait(&l->cv, &l->mu);
    l->state[s] = SLOT_IN_USE;
    l->take = s;
    pthread_mutex_unlock(&l->mu);
    return &l->slot[s];
}

int64_t loader_steps_per_epoch(const BatchLoader *l) { return l->steps; }

void loader_destroy(BatchLoader *l) {
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    for (int s = 0; s < 2; s++) {
        free(l->slot[s].x);
        free(l->slot[s].label);
        free(l->slot[s].index);
    }
    free(l->order);
    free(l);
}
