// stage_ae.c: `lola train-ae` (lola-spec.md 6, LoLa experiments/train_ae.py) and the config glue
// shared by the stages (stages.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "common.h"
#include "dist.h"
#include "nn.h"
#include "order.h"
#include "stages.h"
#include "train.h"

// ---------------------------------------------------------------------------------------------
// Config glue

void run_path(const Config *cfg, const char *sub, char *out, size_t cap) {
    if (snprintf(out, cap, "%s/%s", cfg->run.dir, sub) >= (int)cap) lola_die("run path too long: %s/%s", cfg->run.dir, sub);
}

void ae_dir(const Config *cfg, char *out, size_t cap) {
    if (cfg->run.ae_run[0]) snprintf(out, cap, "%s", cfg->run.ae_run);
    else run_path(cfg, "ae", out, cap);
}

void open_split(const Config *cfg, const char *split, WellSplit *s) {
    const char *phys[CFG_MAX_PHYSICS], *inc[CFG_MAX_FILTERS], *exc[CFG_MAX_FILTERS];
    for (int i = 0; i < cfg->dataset.n_physics; i++) phys[i] = cfg->dataset.physics[i];
    for (int i = 0; i < cfg->dataset.n_include_filters; i++) inc[i] = cfg->dataset.include_filters[i];
    for (int i = 0; i < cfg->dataset.n_exclude_filters; i++) exc[i] = cfg->dataset.exclude_filters[i];
    WellSpec spec = {0};
    spec.root = cfg->dataset.root;
    spec.physics = phys;
    spec.n_physics = cfg->dataset.n_physics;
    spec.split = split;
    spec.include_filters = inc;
    spec.n_include = cfg->dataset.n_include_filters;
    spec.exclude_filters = exc;
    spec.n_exclude = cfg->dataset.n_exclude_filters;
    well_open(s, &spec);
    if (s->n_channels != cfg->dataset.n_fields)
        lola_die_hint("make dataset.fields list the channels of the files, in The Well's order",
                      "dataset '%s' split %s has %d channels but dataset.fields lists %d", cfg->dataset.name, split,
                      s->n_channels, cfg->dataset.n_fields);
    for (int c = 0; c < s->n_channels; c++)
        if (strcmp(s->channels[c].name, cfg->dataset.fields[c]) != 0)
            lola_die_hint("make dataset.fields list the channels of the files, in The Well's order",
                          "dataset '%s' split %s: channel %d is '%s' but dataset.fields[%d] is '%s'", cfg->dataset.name,
                          split, c, s->channels[c].name, c, cfg->dataset.fields[c]);
}

void preprocess_from_config(const Config *cfg, int channels, Preprocess *p) {
    float mean[CFG_MAX_CHANNELS], std[CFG_MAX_CHANNELS];
    int kinds[CFG_MAX_CHANNELS];
    for (int i = 0; i < cfg->dataset.n_stats_mean; i++) mean[i] = (float)cfg->dataset.stats_mean[i];
    for (int i = 0; i < cfg->dataset.n_stats_std; i++) std[i] = (float)cfg->dataset.stats_std[i];
    for (int i = 0; i < channels && i < CFG_MAX_CHANNELS; i++) {
        switch (cfg->dataset.transform[i]) {
        case CFG_TF_LOG: kinds[i] = TF_LOG; break;
        case CFG_TF_LOG_EPS: kinds[i] = TF_LOG_EPS; break;
        case CFG_TF_LOG1P: kinds[i] = TF_LOG1P; break;
        case CFG_TF_ARCSINH: kinds[i] = TF_ARCSINH; break;
        default: kinds[i] = TF_NONE; break;
        }
    }
    preprocess_init(p, channels, kinds, mean, cfg->dataset.n_stats_mean, std, cfg->dataset.n_stats_std, "the config's dataset.stats");
}

void augment_from_config(const Config *cfg, AugmentList *a, int keep_random) {
    const char *names[CFG_MAX_AUGMENT];
    int n = 0;
    for (int i = 0; i < cfg->dataset.n_augment; i++) {
        int k = cfg->dataset.augment[i];
        if (!keep_random && k != CFG_AUG_LOG_SCALARS) continue;
        names[n++] = cfg_augment_names[k];
    }
    augment_list_init(a, names, n, "dataset.augment");
}

void dcae_config_from(const Config *cfg, int pix_channels, DcaeConfig *out) {
    const CfgAe *a = &cfg->ae;
    memset(out, 0, sizeof *out);
    if (a->norm != CFG_NORM_LAYER) lola_die_hint("set ae.norm=layer", "ae.norm=group is not implemented (LoLa's configs use layer)");
    if (!a->pixel_shuffle) lola_die_hint("set ae.pixel_shuffle=true", "ae.pixel_shuffle=false (strided convs) is not implemented (unused by LoLa)");
    if (a->periodic) lola_die_hint("set ae.periodic=false", "ae.periodic=true (circular padding) is not implemented (LoLa's AEs pad with zeros)");
    if (a->stride != 2 || a->patch_size != 1)
        lola_die("ae.stride=%d / ae.patch_size=%d: only stride 2 and patch_size 1 (LoLa's DCAE) are implemented", a->stride, a->patch_size);
    out->pix_channels = pix_channels;
    out->lat_channels = a->lat_channels;
    out->levels = a->n_hid_channels;
    for (int i = 0; i < a->n_hid_channels; i++) {
        out->hid_channels[i] = a->hid_channels[i];
        out->hid_blocks[i] = a->hid_blocks[i];
        out->attention_heads[i] = a->attention_heads[i];
    }
    out->ffn_factor = a->ffn_factor;
    out->kernel_size = a->kernel_size;
    out->dropout = (float)a->dropout;
    out->saturation = a->saturation; // CfgSaturation has nn.h SAT_* order
    out->identity_init = a->identity_init;
    out->norm_eps = 1e-5f;
    out->latent_noise = (float)a->latent_noise;
    out->checkpointing = a->checkpointing;
    dcae_config_check(out);
}

// FNV-1a over the parameter bytes: identifies the AE that made a latent cache.
static uint64_t params_hash(const float *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n * sizeof(float); i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

void ae_load(const Config *cfg, int pix_channels, Dcae *m, char *ae_id, size_t cap) {
    DcaeConfig dc;
    dcae_config_from(cfg, pix_channels, &dc);
    dcae_create(m, &dc);
    char dir[CFG_PATH_LEN + 16], path[CFG_PATH_LEN + 32], err[2048];
    ae_dir(cfg, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/state.h5", dir);
    if (!lola_exists(path)) lola_die_hint("run `lola train-ae` first (or set run.ae_run)", "autoencoder checkpoint '%s' does not exist", path);
    float *h = LOLA_NEW(float, m->table.total);
    CheckpointMeta meta;
    if (checkpoint_load(path, "ae", &m->table, h, NULL, NULL, &meta, NULL, err, sizeof err) != 0)
        lola_die_hint("the ae section of the config must match the one the AE was trained with", "%s", err);
    nn_to_backend(m->params, h, m->table.total);
    if (ae_id) snprintf(ae_id, cap, "ae step %lld params %016llx", (long long)meta.step, (unsigned long long)params_hash(h, m->table.total));
    free(h);
}

// ---------------------------------------------------------------------------------------------
// The AE training task

typedef struct {
    const Config *cfg;
    WellSplit train, valid;
    WellWindows wtrain, wvalid;
    ShuffleOrder otrain, ovalid;
    AugmentList aug;
    Preprocess pre;
    Dcae model;
    int C, H, W;
    int max_batch;
    float *host_x;        // (max_batch, C, H, W) host staging
    float *x, *dy, *dtmp; // backend (max_batch, C, H, W)
    uint64_t seed;
} AeTask;

// Reads n samples at stream positions start.. of split (train: augmented) into t->x.
static void ae_load_batch(AeTask *t, int valid, int64_t start, int n) {
    WellSplit *s = valid ? &t->valid : &t->train;
    WellWindows *w = valid ? &t->wvalid : &t->wtrain;
    ShuffleOrder *o = valid ? &t->ovalid : &t->otrain;
    size_t sample = (size_t)t->C * t->H * t->W;
    for (int i = 0; i < n; i++) {
        int64_t pos = start + i;
        WellLoc loc = well_locate(w, order_get(o, pos));
        AugPlan plan;
        Rng rng = rng_child(t->seed ^ (valid ? 0x5a5a5a5aULL : 0), (uint64_t)pos);
        augment_draw(&plan, &t->aug, s, loc.file, &rng);
        well_read_window(s, loc.file, loc.traj, loc.start, 1, 1, &plan, &t->pre, WELL_LCHW, t->host_x + (size_t)i * sample);
    }
    nn_to_backend(t->x, t->host_x, (size_t)n * sample);
}

// Weighted sum of the configured losses of y against x; writes dy (= d loss / dy * grad_scale) when
// dy != NULL. Returns the loss.
static double ae_loss(AeTask *t, const float *y, int n, float *dy, float grad_scale) {
    const CfgAe *a = &t->cfg->ae;
    size_t total = (size_t)n * t->C * t->H * t->W;
    double loss = 0;
    for (int k = 0; k < a->n_loss_losses; k++) {
        float w = (float)a->loss_weights[k];
        float *g = dy ? (k == 0 ? dy : t->dtmp) : NULL;
        double l = 0;
        switch (a->loss_losses[k]) {
        case CFG_AE_LOSS_VRMSE: l = vrmse_loss(g, y, t->x, n, t->C, t->H * t->W, 1e-2f, grad_scale * w); break;
        case CFG_AE_LOSS_MSE: l = mse_loss(g, y, t->x, total, grad_scale * w); break;
        case CFG_AE_LOSS_MAE: l = mae_loss(g, y, t->x, total, grad_scale * w); break;
        default: lola_die_hint("use ae.loss.losses from [vrmse, mse, mae]", "AE loss 'similarity' is not implemented");
        }
        if (dy && k > 0) nn_axpy(dy, 1.0f, t->dtmp, total);
        loss += w * l;
    }
    return loss;
}

static double ae_train_batch(void *ctx, int64_t start, int n, int64_t step, float grad_scale) {
    AeTask *t = (AeTask *)ctx;
    ae_load_batch(t, 0, start, n);
    // Dropout masks per sample: a function of (run seed, block, stream position start + b) only.
    dcae_forward(&t->model, t->x, n, t->H, t->W, DCAE_TRAIN, t->seed ^ 0xd20900u, (uint64_t)start);
    double loss = ae_loss(t, dcae_output(&t->model), n, t->dy, grad_scale);
    dcae_backward(&t->model, t->dy, NULL, NULL);
    (void)step;
    return loss;
}

static double ae_valid_batch(void *ctx, int64_t start, int n) {
    AeTask *t = (AeTask *)ctx;
    ae_load_batch(t, 1, start, n);
    dcae_forward(&t->model, t->x, n, t->H, t->W, DCAE_EVAL, 0, 0);
    return ae_loss(t, dcae_output(&t->model), n, NULL, 1.0f);
}

static void optim_config_from(const CfgOptim *o, const CfgTrain *tr, OptimConfig *out) {
    memset(out, 0, sizeof *out);
    out->kind = (OptimKind)o->optimizer;
    out->lr = (float)o->learning_rate;
    out->beta1 = o->n_betas > 0 ? (float)o->betas[0] : 0.9f;
    out->beta2 = o->n_betas > 1 ? (float)o->betas[1] : 0.999f;
    out->eps = (float)o->eps;
    out->weight_decay = (float)o->weight_decay;
    out->grad_clip = isfinite(o->grad_clip) ? (float)o->grad_clip : 0.0f;
    out->sched = (LrSchedule)o->scheduler;
    out->epochs = tr->epochs;
    out->warmup = o->warmup;
    out->precond_frequency = o->precondition_frequency; // PSGD-Kron (src/psgd.h)
    out->precond_decay = o->precondition_frequency_decay;
    out->precond_size = o->precondition_size;
    out->merge_dims = o->merge_dims;
}

void train_config_from(const Config *cfg, const CfgTrain *tr, const CfgOptim *o, const char *dir, TrainConfig *out) {
    memset(out, 0, sizeof *out);
    out->epochs = tr->epochs;
    out->epoch_size = tr->epoch_size;
    out->batch_size = tr->batch_size;
    out->accumulation = tr->accumulation;
    out->valid_size = tr->valid_epoch_size;
    out->valid_batch = tr->valid_batch_size;
    out->seed = (uint64_t)(uint32_t)tr->seed;
    optim_config_from(o, tr, &out->optim);
    out->dir = dir;
    out->log_every = 0;
    out->checkpoint_every = tr->checkpoint_every;
    const char *stop = getenv("LOLA_STOP_AFTER_STEPS");
    if (stop) out->stop_after_steps = atoll(stop);
    out->grad_bucket = (size_t)cfg->dist.bucket_size;
    out->grad_timeout = cfg->dist.timeout;
}

int stage_train_ae(const Config *cfg) {
    AeTask t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    open_split(cfg, "train", &t.train);
    open_split(cfg, "valid", &t.valid);
    if (t.train.n_dims != 2) lola_die("train-ae: only 2-D datasets are supported (got %d spatial axes)", t.train.n_dims);
    t.C = t.train.n_channels;
    t.H = (int)t.train.shape[0];
    t.W = (int)t.train.shape[1];
    well_windows_init(&t.wtrain, &t.train, 1, 1);
    well_windows_init(&t.wvalid, &t.valid, 1, 1);
    t.seed = (uint64_t)(uint32_t)cfg->ae_train.seed;
    order_init(&t.otrain, t.wtrain.n_samples, t.seed);
    order_init(&t.ovalid, t.wvalid.n_samples, t.seed ^ 0x76616c6964ULL);
    augment_from_config(cfg, &t.aug, 1);
    augment_check(&t.aug, &t.train);
    preprocess_from_config(cfg, t.C, &t.pre);

    DcaeConfig dc;
    dcae_config_from(cfg, t.C, &dc);
    dcae_create(&t.model, &dc);
    dcae_init_params(&t.model, t.seed);
    int R = dist_size();
    const CfgTrain *tr = &cfg->ae_train;
    int micro = tr->batch_size / (tr->accumulation > 0 ? tr->accumulation : 1) / R;
    int vmicro = tr->valid_batch_size / R;
    t.max_batch = micro > vmicro ? micro : vmicro;
    if (t.max_batch < 1) t.max_batch = 1;
    size_t sample = (size_t)t.C * t.H * t.W;
    t.host_x = LOLA_NEW(float, (size_t)t.max_batch * sample);
    t.x = nn_alloc((size_t)t.max_batch * sample);
    t.dy = nn_alloc((size_t)t.max_batch * sample);
    t.dtmp = nn_alloc((size_t)t.max_batch * sample);

    char dir[CFG_PATH_LEN + 16];
    ae_dir(cfg, dir, sizeof dir);
    char b1[32];
    log_info("train-ae: %s, %d channels %dx%d, %lld train / %lld valid snapshots, DCAE %s parameters, %d rank(s)",
             cfg->dataset.name, t.C, t.H, t.W, (long long)t.wtrain.n_samples, (long long)t.wvalid.n_samples,
             fmt_count(b1, sizeof b1, t.model.table.total), R);
    log_info("train-ae: activations %.1f MiB per rank at batch %d (%s storage, %s)",
             (double)dcae_arena_floats(&dc, micro > 0 ? micro : 1, t.H, t.W) * 4.0 / 1048576.0, micro > 0 ? micro : 1,
             nn_bf16_activations() ? "bf16" : "fp32",
             dc.checkpointing ? "checkpointing: ResBlocks recomputed in the backward" : "all ResBlock tensors kept");
    char *yaml = config_yaml_string(cfg);
    TrainTask task = {"ae", &t.model.table, t.model.params, t.model.grads, &t, ae_train_batch, ae_valid_batch, NULL};
    TrainConfig tc;
    train_config_from(cfg, tr, &cfg->ae_optim, dir, &tc);
    tc.config_yaml = yaml;
    if (dist_rank() == 0) {
        lola_mkdirs(dir);
        char p[CFG_PATH_LEN + 32];
        snprintf(p, sizeof p, "%s/config.yaml", dir);
        lola_write_atomic(p, yaml, strlen(yaml));
    }
    int rc = train_run(&task, &tc, NULL);
    free(yaml);
    nn_free(t.x);
    nn_free(t.dy);
    nn_free(t.dtmp);
    free(t.host_x);
    dcae_destroy(&t.model);
    order_free(&t.otrain);
    order_free(&t.ovalid);
    well_windows_free(&t.wtrain);
    well_windows_free(&t.wvalid);
    well_close(&t.train);
    well_close(&t.valid);
    return rc;
}
