// config_schema.c: every configuration key, ONE table per section type (see config.h).
// Defaults are LoLa HEAD values (lola-spec.md §8) unless a comment says otherwise; section-level
// `defaults` snippets give the stage-specific values (AE: psgd, lr 1e-5, 1024 epochs, batch 64).
// Rows sharing a dotted prefix ("loss.", "schedule.") must be contiguous (config_write_yaml nests
// them; checked by cfg_schema_check in config.c).
#include "config_schema.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

#define CFG_ENUM_NAME_(id, name) name,
const char *const cfg_transform_names[] = {CFG_TRANSFORM_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_augment_names[] = {CFG_AUGMENT_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_ae_arch_names[] = {CFG_AE_ARCH_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_norm_names[] = {CFG_NORM_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_saturation_names[] = {CFG_SATURATION_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_ae_loss_names[] = {CFG_AE_LOSS_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_vit_arch_names[] = {CFG_VIT_ARCH_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_schedule_names[] = {CFG_SCHEDULE_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_tdist_names[] = {CFG_TDIST_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_optimizer_names[] = {CFG_OPTIMIZER_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_lr_scheduler_names[] = {CFG_LR_SCHEDULER_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_split_names[] = {CFG_SPLIT_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_guidance_names[] = {CFG_GUIDANCE_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_sampler_names[] = {CFG_SAMPLER_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_emulator_names[] = {CFG_EMULATOR_LIST(CFG_ENUM_NAME_) NULL};
const char *const cfg_stage_names[] = {CFG_STAGE_LIST(CFG_ENUM_NAME_) NULL};

// Row builders. S = section struct, m = member.
#define SZ_(S, m) offsetof(S, m), sizeof(((S *)0)->m)
#define R_INT(S, key, m, def, lo, hi, help) {key, CT_INT, def, NULL, lo, hi, 0, help, SZ_(S, m), sizeof(int), 0}
#define R_FLOAT(S, key, m, def, lo, hi, fl, help) \
    {key, CT_FLOAT, def, NULL, lo, hi, fl, help, SZ_(S, m), sizeof(double), 0}
#define R_BOOL(S, key, m, def, help) {key, CT_BOOL, def, NULL, 0, 1, 0, help, SZ_(S, m), sizeof(int), 0}
#define R_STR(S, key, m, def, help) {key, CT_STR, def, NULL, 0, 0, 0, help, SZ_(S, m), sizeof(((S *)0)->m), 0}
#define R_ENUM(S, key, m, def, names, help) {key, CT_ENUM, def, names, 0, 0, 0, help, SZ_(S, m), sizeof(int), 0}
#define R_INTS(S, key, m, def, lo, hi, help) \
    {key, CT_INT_LIST, def, NULL, lo, hi, 0, help, SZ_(S, m), sizeof(int), offsetof(S, n_##m)}
#define R_FLOATS(S, key, m, def, lo, hi, fl, help) \
    {key, CT_FLOAT_LIST, def, NULL, lo, hi, fl, help, SZ_(S, m), sizeof(double), offsetof(S, n_##m)}
#define R_STRS(S, key, m, def, help) \
    {key, CT_STR_LIST, def, NULL, 0, 0, 0, help, SZ_(S, m), sizeof(((S *)0)->m[0]), offsetof(S, n_##m)}
#define R_ENUMS(S, key, m, def, names, help) \
    {key, CT_ENUM_LIST, def, names, 0, 0, 0, help, SZ_(S, m), sizeof(int), offsetof(S, n_##m)}
#define R_IMAP(S, key, m, def, lo, hi, help) {key, CT_INT_MAP, def, NULL, lo, hi, 0, help, SZ_(S, m), sizeof(int), 0}
#define R_EMAP(S, key, m, def, names, help) {key, CT_ENUM_MAP, def, names, 0, 0, 0, help, SZ_(S, m), sizeof(int), 0}

#define BIG 1e9             // "no practical upper bound" for counts
#define FMAX DBL_MAX        // finite float bound
#define OPEN_LO CF_LO_OPEN
#define OPEN_HI CF_HI_OPEN
#define OPEN_BOTH (CF_LO_OPEN | CF_HI_OPEN)

// ---- dataset (spec §1.1-1.3, §8.1) --------------------------------------------------------------
#define S CfgDataset
static const CfgRow dataset_rows[] = {
    R_STR(S, "name", name, NULL, "dataset name (LoLa config name, e.g. euler_all); used in run names and logs"),
    R_STRS(S, "physics", physics, NULL,
           "The Well dataset directories under `root`, concatenated in this order "
           "(e.g. [euler_multi_quadrants_openBC, euler_multi_quadrants_periodicBC])"),
    R_STRS(S, "include_filters", include_filters, "[]",
           "keep only HDF5 files whose name contains one of these substrings (empty: all files)"),
    R_STRS(S, "exclude_filters", exclude_filters, "[]", "drop HDF5 files whose name contains one of these substrings"),
    R_STR(S, "root", root, "datasets",
          "The Well's datasets directory: holds <physics>/data/{train,valid,test}/*.hdf5"),
    R_STRS(S, "dimensions", dimensions, "[x, y]", "spatial axis names, in the files' axis order"),
    R_STRS(S, "fields", fields, NULL,
           "channel names in channel order (time-varying scalar fields first, then vector components _x, _y)"),
    R_EMAP(S, "transform", transform, "{}", cfg_transform_names,
           "per-channel transform before normalisation, map {channel: fn} (log_eps = log(x + 1e-6))"),
    R_FLOATS(S, "stats.mean", stats_mean, NULL, -FMAX, FMAX, 0, "per-channel mean after the transform (one per field)"),
    R_FLOATS(S, "stats.std", stats_std, NULL, 0, FMAX, OPEN_LO, "per-channel std after the transform (one per field, > 0)"),
    R_ENUMS(S, "augment", augment, "[]", cfg_augment_names,
            "augmentations, applied in order (train; cache applies them to valid too; eval keeps log_scalars)"),
};
#undef S

// ---- ae (spec §2.3-2.5, §8.2) -------------------------------------------------------------------
#define S CfgAe
static const CfgRow ae_rows[] = {
    R_STR(S, "name", name, "dcae_f32c64_large", "model name (logs, exports)"),
    R_ENUM(S, "arch", arch, "dcae", cfg_ae_arch_names, "autoencoder architecture"),
    R_INT(S, "lat_channels", lat_channels, "64", 1, 4096,
          "latent channels C_lat (compression = C_pix * 32^2 / C_lat; LoLa runs 4, 16, 64)"),
    R_INTS(S, "hid_channels", hid_channels, "[64, 128, 256, 512, 768, 1024]", 1, 65536,
           "channels h_i per level (the spatial factor is stride^(levels-1))"),
    R_INTS(S, "hid_blocks", hid_blocks, "[3, 3, 3, 3, 3, 3]", 0, 64, "ResBlocks per level (one per hid_channels entry)"),
    R_IMAP(S, "attention_heads", attention_heads, "{}", 1, 256,
           "self-attention heads per level, map {level: heads}; HEAD {}, paper-era large {5: 8}, small {5: 4} "
           "(attention levels use 1x1 FFN convs)"),
    R_INT(S, "ffn_factor", ffn_factor, "1", 1, 16, "ResBlock FFN width multiplier"),
    R_FLOAT(S, "dropout", dropout, "0.05", 0, 1, OPEN_HI, "dropout probability inside ResBlocks (training only)"),
    R_ENUM(S, "norm", norm, "layer", cfg_norm_names, "ResBlock normalisation: channel LayerNorm or GroupNorm"),
    R_INT(S, "groups", groups, "16", 1, 1024, "groups for norm: group"),
    R_ENUM(S, "saturation", saturation, "softclip2", cfg_saturation_names,
           "latent saturation: softclip2 z/sqrt(1+(z/5)^2), softclip, tanh, arcsinh, rmsnorm, none"),
    R_FLOAT(S, "latent_noise", latent_noise, "0.01", 0, FMAX, 0, "std of the noise added to latents before decoding (noisy decode)"),
    R_BOOL(S, "identity_init", identity_init, "true", "initialise resampling and latent convs close to identity"),
    R_INT(S, "kernel_size", kernel_size, "3", 1, 15, "conv kernel size (odd)"),
    R_INT(S, "stride", stride, "2", 2, 2, "spatial down/up-sampling factor per level (only 2 is implemented)"),
    R_INT(S, "patch_size", patch_size, "1", 1, 64, "input patch size (pixel-unshuffle before the first conv)"),
    R_BOOL(S, "pixel_shuffle", pixel_shuffle, "true", "resample with pixel (un)shuffle + conv"),
    R_BOOL(S, "periodic", periodic, "false", "circular padding in convs"),
    R_BOOL(S, "checkpointing", checkpointing, "false", "recompute activations in the backward pass (memory only)"),
    R_ENUMS(S, "loss.losses", loss_losses, "[vrmse]", cfg_ae_loss_names, "reconstruction loss terms (spec §2.5)"),
    R_FLOATS(S, "loss.weights", loss_weights, "[1.0]", 0, FMAX, 0, "weight of each loss term (one per loss)"),
};
#undef S

// ---- denoiser / surrogate ViT (spec §4.3, §8.3) -------------------------------------------------
#define S CfgVit
#define VIT_ROWS                                                                                              \
    R_STR(S, "name", name, "vit_large", "model name (logs, exports)"),                                        \
    R_ENUM(S, "arch", arch, "vit", cfg_vit_arch_names, "network architecture (LoLa's unet is not implemented)"), \
    R_INT(S, "emb_features", emb_features, "256", 1, 65536, "M: width of the noise/label embedding"),         \
    R_INT(S, "hid_channels", hid_channels, "1024", 1, 65536, "D: token width (vit_large 1024, vit_small 512)"), \
    R_INT(S, "hid_blocks", hid_blocks, "16", 1, 1024, "transformer blocks"),                                 \
    R_INT(S, "ffn_factor", ffn_factor, "4", 1, 64, "MLP hidden width = ffn_factor * D"),                     \
    R_INT(S, "attention_heads", attention_heads, "8", 1, 1024, "attention heads (divides hid_channels)"),      \
    R_BOOL(S, "qk_norm", qk_norm, "true", "RMSNorm on queries and keys"),                                     \
    R_BOOL(S, "rope", rope, "true", "rotary position embedding on (time, space) coordinates"),               \
    R_INT(S, "patch_size", patch_size, "1", 1, 64, "spatial patch size (time is never patched)"),            \
    R_FLOAT(S, "dropout", dropout, "0.05", 0, 1, OPEN_HI, "dropout probability (training only)"),             \
    R_BOOL(S, "checkpointing", checkpointing, "false", "recompute activations in the backward pass (memory only)")
static const CfgRow denoiser_rows[] = {
    VIT_ROWS,
    R_ENUM(S, "schedule.name", schedule_name, "log_logit", cfg_schedule_names,
           "noise schedule sigma(t) (spec §3.1): log_logit exp(a logit(u) + b), log_linear log-uniform"),
    R_FLOAT(S, "schedule.sigma_min", schedule_sigma_min, "1e-3", 0, FMAX, OPEN_LO, "sigma at t = 0"),
    R_FLOAT(S, "schedule.sigma_max", schedule_sigma_max, "1e3", 0, FMAX, OPEN_LO, "sigma at t = 1"),
    R_FLOAT(S, "schedule.scale", schedule_scale, "1.0", 0, FMAX, OPEN_LO, "a of log_logit"),
    R_FLOAT(S, "schedule.shift", schedule_shift, "0.0", -FMAX, FMAX, 0, "b of log_logit"),
    R_ENUM(S, "loss.distribution", loss_distribution, "uniform", cfg_tdist_names,
           "training distribution p(t) (spec §3.4): uniform(a, b), beta(a, b), kumaraswamy(a, b)"),
    R_FLOAT(S, "loss.a", loss_a, "0.0", 0, FMAX, 0, "first parameter of p(t) (uniform: low; beta/kumaraswamy: a > 0)"),
    R_FLOAT(S, "loss.b", loss_b, "1.0", 0, FMAX, OPEN_LO, "second parameter of p(t) (uniform: high <= 1)"),
};
static const CfgRow surrogate_rows[] = {VIT_ROWS};
#undef S

// ---- optim (spec §6.1-6.4, §8.5) ----------------------------------------------------------------
#define S CfgOptim
static const CfgRow optim_rows[] = {
    R_ENUM(S, "optimizer", optimizer, "adamw", cfg_optimizer_names, "optimizer (psgd = PSGD-Kron, soap = SOAP)"),
    R_FLOAT(S, "learning_rate", learning_rate, "1e-4", 0, FMAX, OPEN_LO, "base learning rate"),
    R_FLOAT(S, "weight_decay", weight_decay, "0.0", 0, FMAX, 0, "decoupled weight decay"),
    R_FLOATS(S, "betas", betas, "[0.9, 0.99]", 0, 1, OPEN_HI,
             "momentum coefficients: adamw [b1, b2], psgd [momentum], soap [b1, b2, shampoo beta]"),
    R_FLOAT(S, "eps", eps, "1e-8", 0, 1, OPEN_LO, "epsilon of AdamW / SOAP"),
    R_ENUM(S, "scheduler", scheduler, "cosine", cfg_lr_scheduler_names,
           "learning-rate schedule over epochs (stepped once per epoch): cosine, linear, exponential (to 1e-3 lr), none"),
    R_INT(S, "warmup", warmup, "0", 0, BIG, "warmup epochs"),
    R_FLOAT(S, "grad_clip", grad_clip, "1.0", 0, INFINITY, OPEN_LO,
            "max global gradient L2 norm (.inf: no clipping; steps with a non-finite norm are always skipped)"),
    R_INT(S, "precondition_frequency", precondition_frequency, "64", 1, BIG,
          "psgd/soap: steps between preconditioner updates (LoLa psgd 64, soap 16)"),
    R_FLOAT(S, "precondition_frequency_decay", precondition_frequency_decay, "0.999", 0, 1, 0,
            "psgd: decay of the preconditioner update probability"),
    R_INT(S, "precondition_size", precondition_size, "4096", 1, BIG,
          "psgd/soap: largest dimension given a dense preconditioner"),
    R_INT(S, "precondition_warmup", precondition_warmup, "0", 0, BIG, "soap: preconditioner warmup steps"),
    R_BOOL(S, "merge_dims", merge_dims, "false", "psgd/soap: merge tensor dimensions before preconditioning"),
};
#undef S

// ---- train (spec §6.1, §8.6) --------------------------------------------------------------------
#define S CfgTrain
static const CfgRow train_rows[] = {
    R_INT(S, "epochs", epochs, "4096", 1, BIG, "epochs E (the LR schedule spans them)"),
    R_INT(S, "epoch_size", epoch_size, "16384", 1, BIG, "training samples per epoch"),
    R_INT(S, "batch_size", batch_size, "256", 1, BIG, "global batch size (all ranks and micro-batches together)"),
    R_INT(S, "accumulation", accumulation, "1", 1, 4096, "micro-batches per optimizer step (divides batch_size)"),
    R_INT(S, "seed", seed, "0", 0, 2147483647, "run seed (data order, augmentation, noise, masks, dropout)"),
    R_INT(S, "checkpoint_every", checkpoint_every, "1", 1, BIG, "epochs between checkpoints (the last epoch is always saved)"),
    R_INT(S, "valid.epoch_size", valid_epoch_size, "4096", 0, BIG, "validation samples per epoch (0: no validation)"),
    R_INT(S, "valid.batch_size", valid_batch_size, "256", 1, BIG, "global validation batch size"),
};
#undef S

// ---- trajectory (spec §1.4, §3.4, §8.4) ---------------------------------------------------------
#define S CfgTrajectory
static const CfgRow trajectory_rows[] = {
    R_INT(S, "length", length, "5", 2, 64, "states per emulator window L"),
    R_INT(S, "stride", stride, "4", 1, 1000, "time steps between consecutive states of a window (TGC: 1)"),
    R_FLOAT(S, "context.lmbda", context_lmbda, "1.0", 0, FMAX, 0,
            "Poisson rate of the random number of context states: c = (Poisson(lmbda) mod (L - atleast)) + atleast"),
    R_FLOAT(S, "context.rho", context_rho, "0.66", 0, 1, 0, "probability that the context is the first states (else the last)"),
    R_INT(S, "context.atleast", context_atleast, "1", 1, 63, "minimum number of context states"),
};
#undef S

// ---- cache (spec §1.5, §8.8) --------------------------------------------------------------------
#define S CfgCache
static const CfgRow cache_rows[] = {
    R_INT(S, "repeat_train", repeat_train, "4", 1, 1024, "augmented copies of each train trajectory in the latent cache"),
    R_INT(S, "repeat_valid", repeat_valid, "1", 1, 1024, "copies of each valid trajectory in the latent cache"),
};
#undef S

// ---- stats (spec §1.2, §8.10) -------------------------------------------------------------------
#define S CfgStats
static const CfgRow stats_rows[] = {
    R_INT(S, "samples", samples, "1024", 1, BIG, "random training snapshots averaged by `lola stats`"),
    R_INT(S, "seed", seed, "0", 0, 2147483647, "seed of the snapshot draw"),
};
#undef S

// ---- eval (spec §5, §8.9) -----------------------------------------------------------------------
#define S CfgEval
static const CfgRow eval_rows[] = {
    R_ENUM(S, "split", split, "test", cfg_split_names, "split evaluated"),
    R_INT(S, "array", array, "64", 1, 1000000,
          "number of uniform random trajectory draws (Python random.seed(seed), floor(u * N), deduplicated)"),
    R_INTS(S, "indices", indices, "[]", 0, 2147483647, "explicit trajectory indices; non-empty replaces `array`"),
    R_INT(S, "start", start, "0", 0, BIG, "first evaluated time step (LoLa: Euler 0, RB 16/32, TGC 0/4)"),
    R_INT(S, "context", context, "1", 1, 63, "context states of the first window (1..3 in LoLa)"),
    R_INT(S, "overlap", overlap, "1", 1, 63, "states shared by consecutive windows (LoLa: = context)"),
    R_INT(S, "samples", samples, "16", 1, 65536, "ensemble members per trajectory"),
    R_ENUM(S, "guidance", guidance, "none", cfg_guidance_names, "observation guidance (spec §3.7)"),
    R_ENUM(S, "sampling.algorithm", sampling_algorithm, "ab", cfg_sampler_names,
           "diffusion sampler (ab = Adams-Bashforth order 3)"),
    R_INT(S, "sampling.steps", sampling_steps, "16", 1, 100000, "sampler steps"),
    R_INT(S, "seed", seed, "0", 0, 2147483647, "evaluation seed (trajectory draws and per-trajectory noise)"),
    R_INT(S, "decode_chunks", decode_chunks, "1", 1, 4096, "decode each rollout in this many chunks (LoLa: Euler 4, TGC 16, else 1)"),
    R_ENUMS(S, "emulators", emulators, "[dm, ns]", cfg_emulator_names,
            "models evaluated: dm (diffusion), ns (neural solver), ae (autoencoding only)"),
};
#undef S

// ---- run ----------------------------------------------------------------------------------------
#define S CfgRun
static const CfgRow run_rows[] = {
    R_STR(S, "dir", dir, NULL, "run directory: ae/, dm/, ns/, eval/ and config.yaml live here"),
    R_STR(S, "name", name, "", "display name (empty: the run directory's basename)"),
    R_STR(S, "ae_run", ae_run, "", "autoencoder run directory used by cache/train-dm/train-ns/eval (empty: <dir>/ae)"),
    R_ENUMS(S, "stages", stages, "[train-ae, cache, train-dm, train-ns, eval]", cfg_stage_names,
            "stages `lola pipeline` runs, in order (each resumes or skips when already done)"),
};
#undef S

// ---- dist (src/gradsync.h; not a LoLa setting) ----------------------------------------------------
#define S CfgDist
static const CfgRow dist_rows[] = {
    R_INT(S, "bucket_size", bucket_size, "16777216", 1, 1073741824,
          "gradient all-reduce bucket in ELEMENTS (fp32): buckets start averaging during the backward as soon "
          "as their gradients are final (NCCL on GPUs, MPI on CPUs); default 2^24 = 64 MiB"),
    R_FLOAT(S, "timeout", timeout, "600", 0, 1e6, OPEN_LO,
            "seconds a gradient collective (and the NCCL start-up) may take before the whole job ends with a "
            "message naming the bucket"),
};
#undef S

#define SECTION(name, help, rows, member, defaults) \
    {name, help, rows, (int)(sizeof(rows) / sizeof(rows[0])), offsetof(Config, member), defaults}

const CfgSection cfg_sections[] = {
    SECTION("dataset", "The Well dataset, transforms, normalisation, augmentation", dataset_rows, dataset, NULL),
    SECTION("ae", "DCAE autoencoder (+ loss)", ae_rows, ae, NULL),
    SECTION("denoiser", "latent diffusion ViT (+ schedule, loss)", denoiser_rows, denoiser, NULL),
    SECTION("surrogate", "latent neural-solver ViT", surrogate_rows, surrogate, NULL),
    // AE stage: LoLa train_ae.yaml (psgd) with the README's learning rate 1e-5.
    SECTION("ae_optim", "optimizer of train-ae", optim_rows, ae_optim, "{optimizer: psgd, learning_rate: 1e-5, betas: [0.9]}"),
    SECTION("dm_optim", "optimizer of train-dm", optim_rows, dm_optim, NULL),
    SECTION("ns_optim", "optimizer of train-ns", optim_rows, ns_optim, NULL),
    SECTION("ae_train", "epochs and batches of train-ae", train_rows, ae_train, "{epochs: 1024, batch_size: 64}"),
    SECTION("dm_train", "epochs and batches of train-dm", train_rows, dm_train, NULL),
    SECTION("ns_train", "epochs and batches of train-ns", train_rows, ns_train, NULL),
    SECTION("trajectory", "latent windows of the emulators (train-dm, train-ns, eval)", trajectory_rows, trajectory, NULL),
    SECTION("cache", "latent cache (lola cache)", cache_rows, cache, NULL),
    SECTION("stats", "normalisation statistics (lola stats)", stats_rows, stats, NULL),
    SECTION("eval", "ensemble rollouts and metrics (lola eval)", eval_rows, eval, NULL),
    SECTION("run", "run directory and pipeline", run_rows, run, NULL),
    SECTION("dist", "gradient averaging over ranks (train-ae, train-dm, train-ns)", dist_rows, dist, NULL),
};
const int cfg_nsections = (int)(sizeof(cfg_sections) / sizeof(cfg_sections[0]));
