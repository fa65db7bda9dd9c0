// stages.h: the pipeline stages as functions of a resolved Config (called by the CLI commands and
// by `lola pipeline`), plus the glue that turns config sections into model/data structs.
// Every stage is called by every rank; it returns 0 when the stage is complete, LOLA_EXIT_REQUEUE
// (train.h) when it stopped on a signal after checkpointing, and dies on errors.
#ifndef LOLA_STAGES_H
#define LOLA_STAGES_H

#include "augment.h"
#include "config.h"
#include "dcae.h"
#include "denoiser.h"
#include "latents.h"
#include "transform.h"
#include "train.h"
#include "well.h"

int stage_train_ae(const Config *cfg);
int stage_cache(const Config *cfg);
int stage_train_dm(const Config *cfg);
int stage_train_ns(const Config *cfg);
int stage_eval(const Config *cfg);
int stage_stats(const Config *cfg);
int stage_pipeline(const Config *cfg);



// Directories of a run: <run.dir>/ae (or run.ae_run), <run.dir>/dm, <run.dir>/ns, <run.dir>/eval.
void run_path(const Config *cfg, const char *sub, char *out, size_t cap);
void ae_dir(const Config *cfg, char *out, size_t cap);

// Opens split `split` ("train", "valid", "test") of the configured dataset; checks that the files'
// channels are the config's dataset.fields in order. Collective under MPI-IO.
void open_split(const Config *cfg, const char *split, WellSplit *s);
// The configured transform + z-score (dataset.transform, dataset.stats).
void preprocess_from_config(const Config *cfg, int channels, Preprocess *p);
// The configured augmentation list; `random_only` = 0 keeps only the deterministic ones (eval).
void augment_from_config(const Config *cfg, AugmentList *a, int keep_random);
// The DCAE config of cfg->ae for a dataset with pix_channels channels.
void dcae_config_from(const Config *cfg, int pix_channels, DcaeConfig *out);
// Creates the AE of the config and loads <ae dir>/state.h5 into it (eval mode use). Dies with a
// clear message when the checkpoint is missing or does not match the config.
void ae_load(const Config *cfg, int pix_channels, Dcae *m, char *ae_id, size_t cap);

// The emulator config of cfg->denoiser (DM) or cfg->surrogate (NS) for windows of `window`
// (n_axes sizes: L, h, w) of `channels` latent channels with label_features label entries.
void emu_config_from(const Config *cfg, EmuKind kind, int channels, int n_axes, const int *window, int label_features,
                     EmuConfig *out);
// Identity string of the trained AE ("ae step N params <hash>"), as stored in latent caches.
void ae_identity(const Config *cfg, int pix_channels, char *ae_id, size_t cap);
// Opens the latent cache of a split over every physics directory of the dataset; ae_id checks the
// cache was made by that AE (NULL: any).
void latents_open_split(const Config *cfg, const char *split, const char *ae_id, LatentSet *s);

// TrainConfig of a stage from its train/optim sections; dir is the stage directory.
// LOLA_STOP_AFTER_STEPS in the environment sets stop_after_steps (tests of the stop path).
void train_config_from(const Config *cfg, const CfgTrain *tr, const CfgOptim *o, const char *dir, TrainConfig *out);

// Weights interop with the PyTorch reference (stage_export.c). stage: "ae", "dm" or "ns".
// stage_export: <stage dir>/state.h5 (the dirs of run_path / ae_dir) -> out_path (safetensors,
// fp32, PyTorch state_dict names and buffers, so LoLa's module loads it with strict=True).
// stage_import: checks every name, shape and dtype of in_path against the config's model (all
// problems are printed), then writes <run_dir>/<stage>/state.h5 (run_dir NULL or "": the stage
// directory of the config) with step 0 and zero optimizer state; refuses to overwrite.
// Both return 0 on success, 1 on failure (message printed, nothing written), 2 on a bad stage.
int stage_export(const Config *cfg, const char *stage, const char *out_path);
int stage_import(const Config *cfg, const char *stage, const char *in_path, const char *run_dir);

#endif
