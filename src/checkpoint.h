// checkpoint.h: training checkpoints as HDF5 files (DESIGN.md 6).
//
// Layout of one file:
//   /              @format "lola-c checkpoint", @format_version, @kind ("ae", "dm", "ns"),
//                  @step, @epoch, @samples, @best_valid, @seed, @optimizer, @optim_t,
//                  @config (the resolved YAML text), @param_count
//   /params/<name> float32, the tensor's full logical shape (PyTorch state_dict names)
//   /optim/m/<name>, /optim/v/<name>   AdamW moments, same shapes (absent for weights-only files)
//   PSGD-Kron (@optimizer "psgd"): /optim/m/<name> the momentum, no /optim/v, and
//   /optim/psgd/<name>/q<a>, /optim/psgd/<name>/p<a>  factor and cache of axis a (n x n or n)
// Every random number of training is a pure function of (seed, step, sample index), so the seed,
// step and epoch are the complete RNG and data-position state: resuming reproduces the
// uninterrupted run bit for bit, with any number of ranks.
// Files are written by one rank to "<path>.tmp", flushed, fsynced and renamed over <path>, so the
// previous checkpoint stays intact until the new one is complete.
#ifndef LOLA_CHECKPOINT_H
#define LOLA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "params.h"

#define CHECKPOINT_FORMAT "lola-c checkpoint"
#define CHECKPOINT_VERSION 1

typedef struct {
    char kind[16];       // "ae", "dm", "ns"
    int64_t step;        // optimizer steps taken (including skipped ones)
    int64_t epoch;       // completed epochs
    int64_t samples;     // training samples consumed
    double best_valid;   // best validation loss so far (inf when none)
    uint64_t seed;       // run seed
    int64_t optim_t;     // optimizer steps taken (AdamW bias correction, PSGD step k)
    char optimizer[16];  // "adamw", "psgd"
} CheckpointMeta;

// Optional optimizer state beyond the per-parameter moments (PSGD-Kron factors and caches):
// named float32 host tensors stored as /optim/<group>/<name> ("/" in a name makes subgroups,
// e.g. /optim/psgd/enc.0.weight/q1). ndim 1 or 2.
typedef struct {
    char name[PARAM_NAME_MAX + 32];
    int ndim;
    int64_t shape[2];
    float *data;
} CheckpointTensor;

typedef struct {
    const char *group; // e.g. "psgd"
    int n;
    CheckpointTensor *t;
} CheckpointExtra;

// Writes a checkpoint atomically. params/m/v are host buffers laid out by table (m and v may be
// NULL for a weights-only file). config_yaml may be NULL. Dies (ending the job) on I/O errors,
// naming the file; the previous file at path is untouched in that case.
void checkpoint_save(const char *path, const CheckpointMeta *meta, const ParamTable *table,
                     const float *params, const float *m, const float *v, const char *config_yaml);
// Same, with optional extra optimizer state (extra may be NULL or empty), and m and v written
// independently (/optim/m when m is non-NULL, /optim/v when v is non-NULL; PSGD has no v).
void checkpoint_save_ex(const char *path, const CheckpointMeta *meta, const ParamTable *table,
                        const float *params, const float *m, const float *v, const CheckpointExtra *extra,
                        const char *config_yaml);

// Reads a checkpoint into host buffers laid out by table. kind must match. Every table row must
// exist with the same shape (extra tensors in the file are an error too). m/v may be NULL to skip
// the optimizer state (each independently); the non-NULL ones are read when the file has /optim
// (*has_optim = 1), else zeroed (*has_optim = 0).
// Returns 0 on success; on failure returns -1 with a message naming the file and the problem in
// err (cap bytes) and leaves the buffers in an unspecified state.
int checkpoint_load(const char *path, const char *kind, const ParamTable *table, float *params,
                    float *m, float *v, CheckpointMeta *meta, int *has_optim, char *err, size_t cap);

// Only the root attributes (kind, step, optimizer, ...). Returns 0, or -1 when the file is not a
// readable lola-c checkpoint (checkpoint_load then says why).
int checkpoint_read_meta(const char *path, CheckpointMeta *meta);

// Reads every tensor of extra from /optim/<extra->group>/<name> into its data (shapes must match).
// Returns 0, or -1 with a message naming the file and tensor in err.
int checkpoint_load_extra(const char *path, const CheckpointExtra *extra, char *err, size_t cap);

// The stored resolved config text (malloc'd, caller frees), or NULL when absent/unreadable.
char *checkpoint_read_config(const char *path);

#endif
