// train.h: one training loop for every stage (AE, diffusion model, neural solver).
//
// The loop owns epochs, steps, gradient accumulation, the all-reduce over ranks, clipping, the
// optimizer, validation, logging, checkpoints and resume; a TrainTask owns the model and data.
// Gradient averaging (gradsync.h): the loop arms it before the last micro-batch of a step, the
// models' backward passes start bucket averages as their gradients become final, and the loop
// finishes it before the optimizer.
//
// Sample stream. Training consumes a stream of global sample *positions* 0, 1, 2, ...; epoch e
// covers positions [e*epoch_size, (e+1)*epoch_size) and optimizer step k covers batch_size
// consecutive positions, split into `accumulation` micro-batches, each split evenly over ranks
// (rank r takes the r-th contiguous share). The task maps a position to a sample (through its
// shuffled order, a pure function of (seed, pass)) and derives every random number of that
// sample (augmentation, diffusion time and noise, context mask) from (seed, position). Hence:
//   * N ranks with B/N samples each compute the same global batch as 1 rank with B (DESIGN.md 5);
//   * resuming from a checkpoint (which stores step, epoch and samples) reproduces the
//     uninterrupted run bit for bit.
// Validation uses its own stream: validation pass e covers positions [e*V, (e+1)*V) of the
// validation order.
//
// Deviation (documented): LoLa with accumulation > 1 loads batch_size/accumulation samples per
// loop iteration and runs epoch_size/batch_size iterations, so its epoch holds
// epoch_size/accumulation samples; here an epoch always holds epoch_size samples.
#ifndef LOLA_TRAIN_H
#define LOLA_TRAIN_H

#include <stdint.h>

#include "optim.h"
#include "params.h"

// Exit code that asks the batch system to requeue the job (a stop signal was received and a
// checkpoint was written).
#define LOLA_EXIT_REQUEUE 3

typedef struct {
    const char *kind;         // "ae", "dm", "ns": checkpoint kind and log prefix
    const ParamTable *table;  // parameter layout
    float *params, *grads;    // backend buffers, table->total floats each
    void *ctx;                // the task's own state
    // Forward + backward on the n training samples at stream positions start..start+n-1 in
    // train mode. Parameter gradients accumulate (+=) scaled by grad_scale (the loop passes
    // 1/accumulation; the mean over ranks is taken afterwards). Returns the mean loss of the n
    // samples. `step` is the global optimizer step (for per-step seeds such as dropout).
    double (*train_batch)(void *ctx, int64_t start, int n, int64_t step, float grad_scale);
    // Loss (mean over the n samples) in eval mode, no gradients, validation stream positions.
    double (*valid_batch)(void *ctx, int64_t start, int n);
    // Optional: hint that positions start..start+n-1 come next (prefetch). May be NULL.
    void (*prefetch)(void *ctx, int64_t start, int n, int valid);
} TrainTask;

typedef struct {
    int epochs;              // E
    int64_t epoch_size;      // training samples per epoch
    int batch_size;          // global batch (all ranks, all micro-batches)
    int accumulation;        // micro-batches per optimizer step
    int64_t valid_size;      // validation samples per epoch (0 = no validation)
    int valid_batch;         // global validation batch
    uint64_t seed;
    OptimConfig optim;
    const char *dir;         // stage directory (checkpoints state.h5 / best.h5, metrics.jsonl)
    const char *config_yaml; // resolved config stored in checkpoints (may be NULL)
    int log_every;           // progress line every N steps (0: once per epoch)
    int checkpoint_every;    // epochs between state.h5 saves (the last epoch and a stop always save)
    int64_t stop_after_steps;// testing aid: save and stop after this many steps in this run (0 = off)
    size_t grad_bucket;      // gradient all-reduce bucket in elements (0 = default; gradsync.h)
    double grad_timeout;     // seconds a gradient all-reduce may take before the job ends (0 = default)
} TrainConfig;

typedef struct {
    int64_t step, epoch, samples;
    double last_train_loss, last_valid_loss, best_valid;
    int skipped_steps;
    int stopped_by_signal;
} TrainResult;

// Runs (or resumes, when dir/state.h5 exists) training to cfg->epochs. Every rank calls it.
// Returns 0 when training is complete, LOLA_EXIT_REQUEUE when it stopped on SIGUSR1/SIGTERM or
// stop_after_steps after writing a checkpoint. Dies on errors (ending the whole job).
int train_run(TrainTask *task, const TrainConfig *cfg, TrainResult *result);

// Installs SIGUSR1 and SIGTERM handlers that ask the running train_run to checkpoint and stop
// at the next step boundary (every rank agrees through an all-reduce).
void train_install_signal_handlers(void);
// 1 once a stop signal has been received by this process.
int train_stop_requested(void);

#endif
