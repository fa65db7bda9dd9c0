// config.h: the run configuration. YAML files (libyaml) -> one typed, plain C struct `Config`.
//
// One schema table per section (src/config_schema.c) lists every key with its type, default,
// allowed range or values and help text; that single table drives YAML parsing, `key=value`
// command-line overrides, validation, `lola <command> --help` and the resolved-config print.
// Every key and default mirrors LoLa (lola-spec.md §8, PolymathicAI/lola experiments/configs).
//
// Sections and the per-stage scheme
// ---------------------------------
//   dataset     The Well dataset, transforms, normalisation stats, augmentations  (spec §1, §8.1)
//   ae          the DCAE autoencoder (+ ae.loss)                                   (spec §2, §8.2)
//   denoiser    the latent diffusion ViT (+ denoiser.schedule, denoiser.loss)      (spec §3-4, §8.3)
//   surrogate   the latent neural-solver ViT (same keys, no schedule/loss)        (spec §4.5, §8.3)
//   ae_optim, dm_optim, ns_optim   optimizer of each training stage            (spec §6.1, §8.5)
//   ae_train, dm_train, ns_train   epochs/batches of each stage (+ .valid)      (spec §6.1, §8.6)
//   trajectory  latent windows for the emulators                                   (spec §1.4, §8.4)
//   cache       latent caching repeats                                              (spec §1.5, §8.8)
//   stats       `lola stats` (LoLa get_stats)                                       (spec §1.2, §8.10)
//   eval        rollouts and metrics                                                (spec §5, §8.9)
//   run         run directory, pipeline stages
// LoLa runs each stage from its own config file, so `optim` and `train` mean a different thing in
// each (AE: psgd, lr 1e-5, 1024 epochs, batch 64; DM/NS: adamw, lr 1e-4, 4096 epochs, batch 256).
// One lola config describes the whole pipeline, so every stage has its own top-level `X_optim`
// and `X_train` sections (X = ae, dm, ns), each with LoLa's defaults for that stage. The stage
// commands accept LoLa's short names on the command line: `lola train-ae optim.learning_rate=1e-5`
// means ae_optim.learning_rate (main.c rewrites optim./train./valid. for train-ae/-dm/-ns).
//
// File syntax (configs/README.md has examples)
// -------------------------------------------
// * `defaults:` (a list, at the top of a file) includes other files before the file's own keys,
//   which then override them. An entry is either `path` (merged at the file's own level) or
//   `section: path` (the file's keys go under that section, e.g. `ae_optim: optim/psgd`). A path
//   is looked up relative to the including file's directory, then relative to the nearest
//   enclosing `configs/` directory, then `./configs/`; `.yaml` may be omitted. Includes nest;
//   a cycle is an error that prints the chain.
// * Sections merge key by key; a list or map value (hid_channels, attention_heads, transform...)
//   is replaced as a whole (unlike OmegaConf, `attention_heads: {}` does clear {5: 8}).
// * Scalars are typed by the schema, not by YAML 1.1 rules: `1e-5`, `1E3`, `.inf`, `-.inf` are
//   numbers for float keys; `.nan` is refused for every float key (all of them have a range).
//   Booleans are only true/false (yes/no/on/off/y/n are errors for bool keys and plain strings
//   for string keys). A QUOTED scalar is always a string: `"1e-5"` for a float key is a type
//   error. `null`/`~`/empty means "unset": empty string, empty list, or `none` for enums that
//   have it.
// * YAML tags (`!!str`, `!!float`) are ignored: the key's type decides.
// * Anchors/aliases work; a document expanding to more than CFG_MAX_NODES nodes through aliases
//   (e.g. "billion laughs") or nesting deeper than CFG_MAX_DEPTH is refused. The YAML merge key
//   `<<: *anchor` is APPLIED in section mappings (merged keys first, the mapping's own keys win).
// * Command-line overrides `key.sub=value` (Hydra style) come last. Lists and maps use YAML flow
//   syntax: `ae.hid_channels=[64,128]`, `ae.attention_heads={5: 8}`.
// Errors read `file:line: key: what is wrong` (for overrides: `command line:N: ...` where N is
// the position of the override).
//
// Arrays are fixed-capacity with a count `n_<field>`; maps keyed by small integers are dense
// arrays (attention_heads[level] = heads, 0 = no attention). Enum-valued fields are `int` holding
// the enum below; `cfg_<enum>_names[v]` is the YAML spelling. A Config (about 12 KB) owns no
// heap memory: copy it with `=`; there is nothing to free.
#ifndef LOLA_CONFIG_H
#define LOLA_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Capacities
#define CFG_MAX_CHANNELS 16   // dataset fields / stats / transform
#define CFG_MAX_LEVELS 8      // DCAE levels (= DCAE_MAX_LEVELS)
#define CFG_MAX_PHYSICS 8     // dataset.physics entries
#define CFG_MAX_FILTERS 16    // dataset.include_filters / exclude_filters entries
#define CFG_MAX_AUGMENT 8
#define CFG_MAX_LOSSES 4
#define CFG_MAX_BETAS 3
#define CFG_MAX_INDICES 256   // eval.indices
#define CFG_MAX_STAGES 8
#define CFG_NAME_LEN 64       // names (bytes incl. NUL)
#define CFG_ITEM_LEN 128      // entries of string lists
#define CFG_PATH_LEN 1024     // paths
#define CFG_MAX_NODES 100000  // YAML nodes visited (aliases expanded) per document
#define CFG_MAX_DEPTH 64      // YAML nesting depth
#define CFG_MAX_FILE_BYTES (1 << 20) // a config file larger than 1 MiB is refused

// ---------------------------------------------------------------------------------------------
// Enums. X(id, "yaml spelling"); the order is the numeric value. Where another header has the
// same list, the order matches it so a cast converts (tested in tests/test_config.c):
// CfgSaturation == nn.h SAT_*, CfgOptimizer == optim.h OptimKind, CfgLrScheduler == LrSchedule.
#define CFG_TRANSFORM_LIST(X) X(CFG_TF_NONE, "none") X(CFG_TF_LOG, "log") X(CFG_TF_LOG_EPS, "log_eps") \
    X(CFG_TF_LOG1P, "log1p") X(CFG_TF_ARCSINH, "arcsinh")
#define CFG_AUGMENT_LIST(X) X(CFG_AUG_FLIP, "random_axis_flip") X(CFG_AUG_PERMUTE, "random_axis_permute") \
    X(CFG_AUG_ROLL, "random_axis_roll") X(CFG_AUG_LOG_SCALARS, "log_scalars")
#define CFG_AE_ARCH_LIST(X) X(CFG_AE_DCAE, "dcae")
#define CFG_NORM_LIST(X) X(CFG_NORM_LAYER, "layer") X(CFG_NORM_GROUP, "group")
#define CFG_SATURATION_LIST(X) X(CFG_SAT_NONE, "none") X(CFG_SAT_SOFTCLIP2, "softclip2") \
    X(CFG_SAT_SOFTCLIP, "softclip") X(CFG_SAT_TANH, "tanh") X(CFG_SAT_ARCSINH, "arcsinh") X(CFG_SAT_RMSNORM, "rmsnorm")
#define CFG_AE_LOSS_LIST(X) X(CFG_AE_LOSS_MSE, "mse") X(CFG_AE_LOSS_MAE, "mae") X(CFG_AE_LOSS_VRMSE, "vrmse") \
    X(CFG_AE_LOSS_SIMILARITY, "similarity")
#define CFG_VIT_ARCH_LIST(X) X(CFG_VIT, "vit")
#define CFG_SCHEDULE_LIST(X) X(CFG_SCHEDULE_LOG_LOGIT, "log_logit") X(CFG_SCHEDULE_LOG_LINEAR, "log_linear")
#define CFG_TDIST_LIST(X) X(CFG_TDIST_UNIFORM, "uniform") X(CFG_TDIST_BETA, "beta") \
    X(CFG_TDIST_KUMARASWAMY, "kumaraswamy")
#define CFG_OPTIMIZER_LIST(X) X(CFG_OPTIM_ADAMW, "adamw") X(CFG_OPTIM_PSGD, "psgd") X(CFG_OPTIM_SOAP, "soap")
#define CFG_LR_SCHEDULER_LIST(X) X(CFG_LRS_NONE, "none") X(CFG_LRS_COSINE, "cosine") X(CFG_LRS_LINEAR, "linear") \
    X(CFG_LRS_EXPONENTIAL, "exponential")
#define CFG_SPLIT_LIST(X) X(CFG_SPLIT_TRAIN, "train") X(CFG_SPLIT_VALID, "valid") X(CFG_SPLIT_TEST, "test")
#define CFG_GUIDANCE_LIST(X) X(CFG_GUIDANCE_NONE, "none") X(CFG_GUIDANCE_SUBSAMPLE, "subsample") \
    X(CFG_GUIDANCE_DOWNSCALE, "downscale")
#define CFG_SAMPLER_LIST(X) X(CFG_SAMPLER_AB, "ab") X(CFG_SAMPLER_EAB, "eab") X(CFG_SAMPLER_DDIM, "ddim") \
    X(CFG_SAMPLER_DDPM, "ddpm") X(CFG_SAMPLER_PC, "pc")
#define CFG_EMULATOR_LIST(X) X(CFG_EMU_AE, "ae") X(CFG_EMU_DM, "dm") X(CFG_EMU_NS, "ns")
#define CFG_STAGE_LIST(X) X(CFG_STAGE_STATS, "stats") X(CFG_STAGE_TRAIN_AE, "train-ae") X(CFG_STAGE_CACHE, "cache") \
    X(CFG_STAGE_TRAIN_DM, "train-dm") X(CFG_STAGE_TRAIN_NS, "train-ns") X(CFG_STAGE_EVAL, "eval")

#define CFG_ENUM_ID_(id, name) id,
typedef enum { CFG_TRANSFORM_LIST(CFG_ENUM_ID_) } CfgTransform;
typedef enum { CFG_AUGMENT_LIST(CFG_ENUM_ID_) } CfgAugment;
typedef enum { CFG_AE_ARCH_LIST(CFG_ENUM_ID_) } CfgAeArch;
typedef enum { CFG_NORM_LIST(CFG_ENUM_ID_) } CfgNorm;
typedef enum { CFG_SATURATION_LIST(CFG_ENUM_ID_) } CfgSaturation;
typedef enum { CFG_AE_LOSS_LIST(CFG_ENUM_ID_) } CfgAeLoss;
typedef enum { CFG_VIT_ARCH_LIST(CFG_ENUM_ID_) } CfgVitArch;
typedef enum { CFG_SCHEDULE_LIST(CFG_ENUM_ID_) } CfgSchedule;
typedef enum { CFG_TDIST_LIST(CFG_ENUM_ID_) } CfgTDist;
typedef enum { CFG_OPTIMIZER_LIST(CFG_ENUM_ID_) } CfgOptimizer;
typedef enum { CFG_LR_SCHEDULER_LIST(CFG_ENUM_ID_) } CfgLrScheduler;
typedef enum { CFG_SPLIT_LIST(CFG_ENUM_ID_) } CfgSplit;
typedef enum { CFG_GUIDANCE_LIST(CFG_ENUM_ID_) } CfgGuidance;
typedef enum { CFG_SAMPLER_LIST(CFG_ENUM_ID_) } CfgSampler;
typedef enum { CFG_EMULATOR_LIST(CFG_ENUM_ID_) } CfgEmulator;
typedef enum { CFG_STAGE_LIST(CFG_ENUM_ID_) } CfgStage;

// YAML spellings, indexed by the enum value, NULL-terminated.
extern const char *const cfg_transform_names[], *const cfg_augment_names[], *const cfg_ae_arch_names[],
    *const cfg_norm_names[], *const cfg_saturation_names[], *const cfg_ae_loss_names[],
    *const cfg_vit_arch_names[], *const cfg_schedule_names[], *const cfg_tdist_names[],
    *const cfg_optimizer_names[], *const cfg_lr_scheduler_names[], *const cfg_split_names[],
    *const cfg_guidance_names[], *const cfg_sampler_names[], *const cfg_emulator_names[],
    *const cfg_stage_names[];

// ---------------------------------------------------------------------------------------------
// Sections. Each field's comment gives its YAML key (relative to the section) when the C name
// differs, its unit and meaning; LoLa's default is in the schema (`lola <cmd> --help`).

// `dataset` (spec §1.1-1.3, §8.1)
typedef struct {
    char name[CFG_NAME_LEN];                                // dataset name ("euler_all"); required
    char physics[CFG_MAX_PHYSICS][CFG_ITEM_LEN];            // The Well dataset dirs, concatenated in order; required
    int n_physics;
    char include_filters[CFG_MAX_FILTERS][CFG_ITEM_LEN];    // keep only files whose name contains one of these (empty: all)
    int n_include_filters;
    char exclude_filters[CFG_MAX_FILTERS][CFG_ITEM_LEN];    // drop files whose name contains one of these
    int n_exclude_filters;
    char root[CFG_PATH_LEN];                                // directory holding <physics>/data/{train,valid,test}/*.hdf5
    char dimensions[3][8];                                  // spatial axis names, e.g. [x, y]
    int n_dimensions;
    char fields[CFG_MAX_CHANNELS][CFG_NAME_LEN];            // channel names in channel order; required
    int n_fields;
    int transform[CFG_MAX_CHANNELS];                        // per channel CfgTransform (YAML map {channel: fn}; CFG_TF_NONE = identity)
    double stats_mean[CFG_MAX_CHANNELS];                    // key stats.mean: per-channel mean after transform; required
    int n_stats_mean;
    double stats_std[CFG_MAX_CHANNELS];                     // key stats.std: per-channel std after transform (> 0); required
    int n_stats_std;
    int augment[CFG_MAX_AUGMENT];                           // CfgAugment, applied in this order
    int n_augment;
} CfgDataset;

// `ae`: DCAE (spec §2, §8.2)
typedef struct {
    char name[CFG_NAME_LEN];            // run/model name
    int arch;                           // CfgAeArch
    int lat_channels;                   // C_lat (compression = C_pix * 32^2 / C_lat)
    int hid_channels[CFG_MAX_LEVELS];   // h_i channels per level
    int n_hid_channels;                 // number of levels L
    int hid_blocks[CFG_MAX_LEVELS];     // ResBlocks per level (n_hid_blocks == n_hid_channels)
    int n_hid_blocks;
    int attention_heads[CFG_MAX_LEVELS];// YAML map {level: heads}; heads at level i, 0 = no attention
    int ffn_factor;                     // ResBlock FFN width multiplier
    double dropout;                     // dropout probability in ResBlocks (training only)
    int norm;                           // CfgNorm
    int groups;                         // groups for norm: group
    int saturation;                     // CfgSaturation (latent bound, spec §2.4)
    double latent_noise;                // std of N(0, I) added to z before decoding when noisy
    int identity_init;                  // bool: resampling/latent convs start near identity
    int kernel_size;                    // conv kernel (odd)
    int stride;                         // spatial down/up factor per level
    int patch_size;                     // input patch (pixel-unshuffle) size
    int pixel_shuffle;                  // bool: (un)shuffle resampling instead of strided convs
    int periodic;                       // bool: circular padding
    int checkpointing;                  // bool: activation recomputation (memory only)
    int loss_losses[CFG_MAX_LOSSES];    // key loss.losses: CfgAeLoss terms
    int n_loss_losses;
    double loss_weights[CFG_MAX_LOSSES];// key loss.weights: one weight per term
    int n_loss_weights;
} CfgAe;

// `denoiser` / `surrogate`: ViT (spec §4, §8.3). schedule_* and loss_* are denoiser-only keys
// (the surrogate schema has no such keys; they stay 0 in cfg->surrogate).
typedef struct {
    char name[CFG_NAME_LEN];
    int arch;                 // CfgVitArch
    int emb_features;         // M: time/label embedding width
    int hid_channels;         // D: token width
    int hid_blocks;           // transformer blocks
    int ffn_factor;           // MLP width = ffn_factor * D
    int attention_heads;      // heads (D % heads == 0)
    int qk_norm;              // bool: RMSNorm on q and k
    int rope;                 // bool: rotary position embedding
    int patch_size;           // spatial patch (time patch is 1)
    double dropout;
    int checkpointing;        // bool (memory only)
    int schedule_name;        // key schedule.name: CfgSchedule (spec §3.1)
    double schedule_sigma_min;// key schedule.sigma_min
    double schedule_sigma_max;// key schedule.sigma_max
    double schedule_scale;    // key schedule.scale: a in sigma = exp(a logit(u) + b) (log_logit)
    double schedule_shift;    // key schedule.shift: b (log_logit)
    int loss_distribution;    // key loss.distribution: CfgTDist, p(t) for training (spec §3.4)
    double loss_a;            // key loss.a
    double loss_b;            // key loss.b
} CfgVit;

// `ae_optim` / `dm_optim` / `ns_optim` (spec §6.1-6.4, §8.5)
typedef struct {
    int optimizer;                    // CfgOptimizer
    double learning_rate;             // base LR (stepped once per epoch by the scheduler)
    double weight_decay;              // decoupled weight decay
    double betas[CFG_MAX_BETAS];      // adamw: 2 (beta1, beta2); psgd: 1 (momentum); soap: 3
    int n_betas;
    double eps;                       // AdamW/SOAP epsilon
    int scheduler;                    // CfgLrScheduler (epoch-wise)
    int warmup;                       // warmup epochs
    double grad_clip;                 // max global gradient L2 norm; .inf = no clipping
    int precondition_frequency;       // psgd/soap: steps between preconditioner updates
    double precondition_frequency_decay; // psgd
    int precondition_size;            // psgd/soap: largest dimension that gets a dense preconditioner
    int precondition_warmup;          // soap
    int merge_dims;                   // bool: psgd/soap merge tensor dims
} CfgOptim;

// `ae_train` / `dm_train` / `ns_train` (spec §6.1, §8.6). Sizes are GLOBAL (all ranks together).
typedef struct {
    int epochs;             // E
    int epoch_size;         // training samples per epoch
    int batch_size;         // global batch (all ranks, all micro-batches)
    int accumulation;       // micro-batches per optimizer step (divides batch_size)
    int seed;               // run seed (shuffles, augmentation, noise)
    int checkpoint_every;   // epochs between checkpoints (the last epoch is always saved)
    int valid_epoch_size;   // key valid.epoch_size: validation samples per epoch (0: none)
    int valid_batch_size;   // key valid.batch_size
} CfgTrain;

// `trajectory` (spec §1.4, §3.4, §8.4)
typedef struct {
    int length;             // states per window L
    int stride;             // time steps between consecutive window states
    double context_lmbda;   // key context.lmbda: Poisson rate of the number of context states
    double context_rho;     // key context.rho: probability the context is the first states
    int context_atleast;    // key context.atleast: minimum context states
} CfgTrajectory;

// `cache` (spec §1.5, §8.8)
typedef struct {
    int repeat_train;       // augmented copies of each train trajectory
    int repeat_valid;       // copies of each valid trajectory
} CfgCache;

// `stats` (spec §1.2, §8.10)
typedef struct {
    int samples;            // random training snapshots averaged
    int seed;
} CfgStats;

// `eval` (spec §5, §8.9)
typedef struct {
    int split;                      // CfgSplit
    int array;                      // number of uniform random trajectory draws (deduplicated)
    int indices[CFG_MAX_INDICES];   // explicit trajectory indices; non-empty replaces `array`
    int n_indices;
    int start;                      // first evaluated time step
    int context;                    // context states of the first window
    int overlap;                    // states shared by consecutive windows
    int samples;                    // ensemble members per trajectory
    int guidance;                   // CfgGuidance
    int sampling_algorithm;         // key sampling.algorithm: CfgSampler
    int sampling_steps;             // key sampling.steps
    int seed;
    int decode_chunks;              // decode a rollout in this many chunks (memory)
    int emulators[3];               // CfgEmulator: which models eval scores
    int n_emulators;
} CfgEval;

// `run`
typedef struct {
    char dir[CFG_PATH_LEN];         // run directory: ae/, dm/, ns/, eval/, config.yaml; required
    char name[CFG_NAME_LEN];        // display name (empty: basename of dir)
    char ae_run[CFG_PATH_LEN];      // AE run directory to use (empty: <dir>/ae)
    int stages[CFG_MAX_STAGES];     // CfgStage, in order, for `lola pipeline`
    int n_stages;
} CfgRun;

// `dist`: gradient averaging over ranks (src/gradsync.h); not a LoLa setting.
typedef struct {
    int bucket_size;        // elements per gradient all-reduce bucket
    double timeout;         // seconds a collective may take before the job ends
} CfgDist;

typedef struct {
    CfgDataset dataset;
    CfgAe ae;
    CfgVit denoiser;
    CfgVit surrogate;
    CfgOptim ae_optim, dm_optim, ns_optim;
    CfgTrain ae_train, dm_train, ns_train;
    CfgTrajectory trajectory;
    CfgCache cache;
    CfgStats stats;
    CfgEval eval;
    CfgRun run;
    CfgDist dist;
} Config;

// ---------------------------------------------------------------------------------------------
// API

// A configuration error: `text` is the whole message "file:line: key: what is wrong" (parts that
// do not apply are left out); the parts are also given separately.
typedef struct {
    char text[2048];
    char file[CFG_PATH_LEN]; // config file, or "command line" for overrides, "" if none
    int line;                // 1-based line (override position for the command line); 0 = none
    char key[192];           // dotted key, "" if none
    char msg[1024];          // what is wrong
    char hint[512];          // what to try ("" if nothing to add)
} ConfigError;

// Every key at its default (LoLa HEAD values, spec §8); required keys are left empty.
void config_defaults(Config *cfg);

// Loads a configuration: defaults, then the file at `path` (with its `defaults:` includes;
// NULL = no file), then the `key=value` overrides in order, then config_validate. Returns 0 on
// success; -1 with *err filled on the first error (cfg is then unspecified). err may be NULL.
int config_load_ex(Config *cfg, const char *path, int n_overrides, char *const *overrides, ConfigError *err);
// Same, but a failure ends the job through lola_die ("error: file:line: key: message" + HINT).
void config_load(Config *cfg, const char *path, int n_overrides, char *const *overrides);

// Applies `key=value` overrides to an existing config (no validation). 0 / -1 with *err.
int config_apply_overrides(Config *cfg, int n, char *const *overrides, ConfigError *err);

// Checks every value against its range, required keys and the cross-key rules (list lengths
// agree, heads divide widths, betas match the optimizer...). 0 / -1 with *err (no line numbers).
int config_validate(const Config *cfg, ConfigError *err);

// Writes every key as YAML (a complete config that config_load reads back to the same Config).
void config_write_yaml(const Config *cfg, FILE *out);
// The same text in a malloc'd NUL-terminated string (caller frees), e.g. for checkpoints.
char *config_yaml_string(const Config *cfg);

// Prints the keys of the given sections (space-separated names; NULL = all) with type,
// default, allowed values/range and help, as `lola <command> --help` shows them.
void config_print_help(FILE *out, const char *sections);

// First key whose value differs between a and b (NULL if all equal). For tests and resume checks.
const char *config_diff(const Config *a, const Config *b);

#ifdef __cplusplus
}
#endif
#endif
