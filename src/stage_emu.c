// stage_emu.c: `lola train-dm` and `lola train-ns` (lola-spec.md 3.4, 4.5, 6; LoLa
// experiments/train_diffusion.py and train_surrogate.py) over the latent cache.
//
// A sample is a window of trajectory.length latent states at trajectory.stride (latents.h), with
// its label, a random context mask (LoLa random_context_mask: lambda, rho, atleast) and, for the
// DM, a noise level t ~ p(t) and Gaussian noise. Every random number of a sample is drawn from
// (seed, stream position) (train.h), so the global batch does not depend on the rank count.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "common.h"
#include "denoiser.h"
#include "dist.h"
#include "latents.h"
#include "nn.h"
#include "order.h"
#include "stages.h"
#include "train.h"

void emu_config_from(const Config *cfg, EmuKind kind, int channels, int n_axes, const int *window, int label_features,
                     EmuConfig *out) {
    const CfgVit *v = kind == EMU_DM ? &cfg->denoiser : &cfg->surrogate;
    const char *sec = kind == EMU_DM ? "denoiser" : "surrogate";
    memset(out, 0, sizeof *out);
    if (v->patch_size != 1)
        lola_die_hint("set patch_size=1 (latent models)", "%s.patch_size=%d: only patch size 1 runs in this build", sec, v->patch_size);
    out->kind = kind;
    out->emb_features = v->emb_features;
    out->label_features = label_features;
    ViTConfig *c = &out->vit;
    c->spatial = n_axes;
    for (int i = 0; i < n_axes; i++) {
        c->shape[i] = window[i];
        c->patch[i] = 1;
    }
    c->in_channels = c->cond_channels = c->out_channels = channels;
    c->hid_channels = v->hid_channels;
    c->hid_blocks = v->hid_blocks;
    c->heads = v->attention_heads;
    c->ffn_factor = v->ffn_factor;
    c->mod_features = (kind == EMU_DM || label_features > 0) ? v->emb_features : 0;
    c->qk_norm = v->qk_norm;
    c->rope = v->rope;
    c->dropout = (float)v->dropout;
    c->checkpointing = v->checkpointing;
    const CfgVit *d = &cfg->denoiser;
    out->schedule.kind = d->schedule_name == CFG_SCHEDULE_LOG_LINEAR ? SCHED_LOG_LINEAR : SCHED_LOG_LOGIT;
    out->schedule.sigma_min = d->schedule_sigma_min;
    out->schedule.sigma_max = d->schedule_sigma_max;
    out->schedule.scale = d->schedule_scale;
    out->schedule.shift = d->schedule_shift;
}

void ae_identity(const Config *cfg, int pix_channels, char *ae_id, size_t cap) {
    Dcae m;
    ae_load(cfg, pix_channels, &m, ae_id, cap);
    dcae_destroy(&m);
}

// The cache directories of a split, one per physics directory, in config order.
static void cache_dirs(const Config *cfg, const char *split, char dirs[][CFG_PATH_LEN * 2], const char **ptrs) {
    char ae[CFG_PATH_LEN + 16];
    ae_dir(cfg, ae, sizeof ae);
    for (int i = 0; i < cfg->dataset.n_physics; i++) {
        snprintf(dirs[i], CFG_PATH_LEN * 2, "%s/cache/%s/%s", ae, cfg->dataset.physics[i], split);
        ptrs[i] = dirs[i];
    }
}

void latents_open_split(const Config *cfg, const char *split, const char *ae_id, LatentSet *s) {
    char dirs[CFG_MAX_PHYSICS][CFG_PATH_LEN * 2];
    const char *ptrs[CFG_MAX_PHYSICS];
    cache_dirs(cfg, split, dirs, ptrs);
    latent_open(s, ptrs, cfg->dataset.n_physics, ae_id);
}

typedef struct {
    const Config *cfg;
    EmuKind kind;
    LatentSet train, valid;
    ShuffleOrder otrain, ovalid;
    Emulator model;
    TimePrior prior;
    int C, L, D;
    size_t win, S; // floats per window, points per state (h*w)
    int max_batch;
    float *h_x, *h_label, *h_frame, *h_mask;
    float *x, *label, *mask, *eps;
    double *sigma;
    uint64_t seed;
} EmuTask;

static void emu_load_batch(EmuTask *t, int valid, int64_t start, int n) {
    LatentSet *s = valid ? &t->valid : &t->train;
    ShuffleOrder *o = valid ? &t->ovalid : &t->otrain;
    const CfgTrajectory *tr = &t->cfg->trajectory;
    for (int i = 0; i < n; i++) {
        int64_t pos = start + i;
        latent_read_window(s, order_get(o, pos), t->h_x + (size_t)i * t->win, t->h_label + (size_t)i * t->D);
        Rng rng = rng_child(t->seed ^ (valid ? 0x76616cULL : 0x747261ULL), (uint64_t)pos);
        context_mask_sample(t->h_frame + (size_t)i * t->L, t->L, tr->context_lmbda, tr->context_rho, tr->context_atleast, &rng, NULL);
        if (t->kind == EMU_DM) {
            double u = time_prior_sample(&t->prior, &rng);
            t->sigma[i] = schedule_sigma(&t->model.cfg.schedule, u);
            nn_randn(t->eps + (size_t)i * t->win, t->win, rng_hash(t->seed ^ (valid ? 0x6e76ULL : 0x6e74ULL), (uint64_t)pos));
        }
    }
    context_mask_expand(t->h_mask, t->h_frame, n, t->C, t->L, t->S);
    nn_to_backend(t->x, t->h_x, (size_t)n * t->win);
    nn_to_backend(t->mask, t->h_mask, (size_t)n * t->win);
    nn_to_backend(t->label, t->h_label, (size_t)n * t->D);
}

static double emu_train_batch(void *ctx, int64_t start, int n, int64_t step, float grad_scale) {
    EmuTask *t = (EmuTask *)ctx;
    emu_load_batch(t, 0, start, n);
    // Dropout masks per sample: a function of (run seed, block, stream position start + b) only.
    uint64_t dseed = t->seed ^ 0xd20900ULL;
    emu_reserve(&t->model, n, 1);
    double loss;
    if (t->kind == EMU_DM) {
        loss = emu_dm_loss(&t->model, t->x, t->mask, t->label, t->sigma, t->eps, 0, n, 1, dseed, (uint64_t)start);
        emu_dm_backward(&t->model, grad_scale);
    } else {
        loss = emu_ns_loss(&t->model, t->x, t->mask, t->label, n, 1, dseed, (uint64_t)start);
        emu_ns_backward(&t->model, grad_scale);
    }
    (void)step;
    return loss;
}

static double emu_valid_batch(void *ctx, int64_t start, int n) {
    EmuTask *t = (EmuTask *)ctx;
    emu_load_batch(t, 1, start, n);
    emu_reserve(&t->model, n, 1);
    if (t->kind == EMU_DM) return emu_dm_loss(&t->model, t->x, t->mask, t->label, t->sigma, t->eps, 0, n, 0, 0, 0);
    return emu_ns_loss(&t->model, t->x, t->mask, t->label, n, 0, 0, 0);
}

static int train_emulator(const Config *cfg, EmuKind kind) {
    const char *name = kind == EMU_DM ? "dm" : "ns";
    EmuTask t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.kind = kind;
    WellSplit probe;
    open_split(cfg, "train", &probe);
    int C_pix = probe.n_channels;
    int64_t pix_h = probe.n_dims >= 2 ? probe.shape[0] : 0, pix_w = probe.n_dims >= 2 ? probe.shape[1] : 0;
    well_close(&probe);
    char ae_id[128];
    ae_identity(cfg, C_pix, ae_id, sizeof ae_id);
    latents_open_split(cfg, "train", ae_id, &t.train);
    latents_open_split(cfg, "valid", ae_id, &t.valid);
    // The caches must hold this AE's latents (C_lat, H / 2^(levels-1), W / 2^(levels-1)): files
    // that agree with each other but not with the AE would otherwise train a model eval cannot use.
    const int lv = cfg->ae.n_hid_channels;
    const LatentSet *sets[2] = {&t.train, &t.valid};
    for (int k = 0; k < 2; k++)
        if (sets[k]->channels != cfg->ae.lat_channels || sets[k]->n_spatial != 2 || sets[k]->spatial[0] != (pix_h >> (lv - 1)) ||
            sets[k]->spatial[1] != (pix_w >> (lv - 1)))
            lola_die_hint("rerun `lola cache` with this config's autoencoder",
                          "train-%s: latent cache '%s' holds %d x %lld x %lld latents, the autoencoder makes %d x %lld x %lld", name,
                          sets[k]->files[0].path, sets[k]->channels, (long long)sets[k]->spatial[0],
                          (long long)(sets[k]->n_spatial > 1 ? sets[k]->spatial[1] : 0), cfg->ae.lat_channels,
                          (long long)(pix_h >> (lv - 1)), (long long)(pix_w >> (lv - 1)));
    if (t.valid.channels != t.train.channels || t.valid.label_dim != t.train.label_dim || t.valid.spatial[0] != t.train.spatial[0])
        lola_die("train-%s: the train and valid latent caches disagree in shape", name);
    t.L = cfg->trajectory.length;
    int64_t ntrain = latent_index(&t.train, t.L, cfg->trajectory.stride);
    int64_t nvalid = latent_index(&t.valid, t.L, cfg->trajectory.stride);
    t.C = t.train.channels;
    t.D = t.train.label_dim;
    t.S = (size_t)(t.train.state_size / t.C);
    t.win = (size_t)t.C * t.L * t.S;
    int window[VIT_MAX_AXES] = {t.L};
    for (int k = 0; k < t.train.n_spatial; k++) window[1 + k] = (int)t.train.spatial[k];
    EmuConfig ec;
    emu_config_from(cfg, kind, t.C, 1 + t.train.n_spatial, window, t.D, &ec);
    const CfgTrain *tr = kind == EMU_DM ? &cfg->dm_train : &cfg->ns_train;
    const CfgOptim *op = kind == EMU_DM ? &cfg->dm_optim : &cfg->ns_optim;
    t.seed = (uint64_t)(uint32_t)tr->seed;
    emu_create(&t.model, &ec);
    emu_init_params(&t.model, t.seed);
    if (kind == EMU_DM) {
        t.prior.kind = cfg->denoiser.loss_distribution == CFG_TDIST_BETA ? PRIOR_BETA
                       : cfg->denoiser.loss_distribution == CFG_TDIST_KUMARASWAMY ? PRIOR_KUMARASWAMY : PRIOR_UNIFORM;
        t.prior.a = cfg->denoiser.loss_a;
        t.prior.b = cfg->denoiser.loss_b;
    }
    order_init(&t.otrain, ntrain, t.seed);
    order_init(&t.ovalid, nvalid, t.seed ^ 0x76616c6964ULL);
    int R = dist_size();
    int micro = tr->batch_size / (tr->accumulation > 0 ? tr->accumulation : 1) / R, vmicro = tr->valid_batch_size / R;
    t.max_batch = micro > vmicro ? micro : vmicro;
    if (t.max_batch < 1) t.max_batch = 1;
    size_t nb = (size_t)t.max_batch;
    t.h_x = LOLA_NEW(float, nb * t.win);
    t.h_mask = LOLA_NEW(float, nb * t.win);
    t.h_label = LOLA_NEW(float, nb * t.D);
    t.h_frame = LOLA_NEW(float, nb * t.L);
    t.sigma = LOLA_NEW(double, nb);
    t.x = nn_alloc(nb * t.win);
    t.mask = nn_alloc(nb * t.win);
    t.eps = nn_alloc(nb * t.win);
    t.label = nn_alloc(nb * (size_t)t.D);

    char dir[CFG_PATH_LEN + 16], b1[32];
    run_path(cfg, name, dir, sizeof dir);
    log_info("train-%s: %lld train / %lld valid windows of %d x %d x %lld latents (%d label features), %s %s parameters, %d rank(s)",
             name, (long long)ntrain, (long long)nvalid, t.C, t.L, (long long)t.S, t.D, kind == EMU_DM ? "denoiser" : "surrogate",
             fmt_count(b1, sizeof b1, t.model.table.total), R);
    log_info("train-%s: activations %.1f MiB per rank at batch %d (%s)", name,
             emu_arena_floats(&t.model, t.max_batch, 1) * 4.0 / 1048576.0, t.max_batch,
             ec.vit.checkpointing ? "checkpointing: blocks recomputed in the backward" : "all blocks kept");
    char *yaml = config_yaml_string(cfg);
    if (dist_rank() == 0) {
        lola_mkdirs(dir);
        char p[CFG_PATH_LEN + 32];
        snprintf(p, sizeof p, "%s/config.yaml", dir);
        lola_write_atomic(p, yaml, strlen(yaml));
    }
    TrainTask task = {name, &t.model.table, t.model.params, t.model.grads, &t, emu_train_batch, emu_valid_batch, NULL};
    TrainConfig tc;
    train_config_from(cfg, tr, op, dir, &tc);
    tc.config_yaml = yaml;
    int rc = train_run(&task, &tc, NULL);
    free(yaml);
    nn_free(t.x);
    nn_free(t.mask);
    nn_free(t.eps);
    nn_free(t.label);
    free(t.h_x);
    free(t.h_mask);
    free(t.h_label);
    free(t.h_frame);
    free(t.sigma);
    order_free(&t.otrain);
    order_free(&t.ovalid);
    emu_destroy(&t.model);
    latent_close(&t.train);
    latent_close(&t.valid);
    return rc;
}

int stage_train_dm(const Config *cfg) { return train_emulator(cfg, EMU_DM); }
int stage_train_ns(const Config *cfg) { return train_emulator(cfg, EMU_NS); }
