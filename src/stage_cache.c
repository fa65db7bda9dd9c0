// stage_cache.c: `lola cache` (lola-spec.md 1.5, LoLa experiments/cache_latents.py).
//
// Encodes every train and valid trajectory with the trained AE (eval mode, saturation on) into
// <ae dir>/cache/<physics>/<split>/<Well file name>: `repeat` augmented copies of each train
// trajectory (cache.repeat_train, 4) and cache.repeat_valid (1) of each valid one. As in LoLa the
// dataset's random augmentations are applied to the valid split too, and a repeat is redrawn
// while it equals (torch.allclose) an earlier repeat of the same trajectory.
// Ranks split the work by input file (file f goes to rank f mod R); a file whose cache is
// complete and made by the current AE is skipped, anything else (missing, a killed job's .tmp,
// another AE's cache) is rebuilt.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "dist.h"
#include "latents.h"
#include "nn.h"
#include "stages.h"

#define CACHE_MAX_REDRAWS 1000

// torch.allclose(a, b) with rtol 1e-5, atol 1e-8.
static int allclose(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-8f + 1e-5f * fabsf(b[i]))) return 0;
    return 1;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

// Encodes x (T, C, H, W) host into z (T, C_lat, h, w) host in chunks of `chunk` frames.
static void encode_trajectory(Dcae *m, const float *x, float *z, int T, int C, int H, int W, int chunk,
                              float *dx, float *dz) {
    int L = m->cfg.levels, h = H >> (L - 1), w = W >> (L - 1), Cl = m->cfg.lat_channels;
    size_t xs = (size_t)C * H * W, zs = (size_t)Cl * h * w;
    for (int t0 = 0; t0 < T; t0 += chunk) {
        int b = T - t0 < chunk ? T - t0 : chunk;
        nn_to_backend(dx, x + (size_t)t0 * xs, (size_t)b * xs);
        dcae_encode(m, dz, dx, b, H, W);
        nn_to_host(z + (size_t)t0 * zs, dz, (size_t)b * zs);
    }
}

static void cache_split(const Config *cfg, Dcae *m, const char *ae_id, const char *split, int repeat, const char *cache_root) {
    WellSplit s;
    open_split(cfg, split, &s);
    if (s.n_dims != 2) lola_die("cache: only 2-D datasets are supported");
    AugmentList aug;
    augment_from_config(cfg, &aug, 1);
    augment_check(&aug, &s);
    Preprocess pre;
    preprocess_from_config(cfg, s.n_channels, &pre);
    const int C = s.n_channels, H = (int)s.shape[0], W = (int)s.shape[1], R = dist_size(), rank = dist_rank();
    const int L = m->cfg.levels, Cl = m->cfg.lat_channels;
    int64_t hw[2] = {H >> (L - 1), W >> (L - 1)};
    // Frames encoded per batch: as many as fit in ~4M input floats (the whole 64x64 trajectory;
    // 3 frames at 512x512), at least 1.
    int chunk = (int)(((int64_t)1 << 22) / ((int64_t)C * H * W));
    if (chunk < 1) chunk = 1;
    if (chunk > 128) chunk = 128;
    float *dx = nn_alloc((size_t)chunk * C * H * W), *dz = nn_alloc((size_t)chunk * Cl * hw[0] * hw[1]);
    uint64_t seed = (uint64_t)(uint32_t)cfg->ae_train.seed ^ (strcmp(split, "train") == 0 ? 0x7472ULL : 0x7661ULL);
    int done_files = 0, skipped = 0;
    double t0 = lola_time();
    for (int f = 0; f < s.n_files; f++) {
        if (f % R != rank) continue;
        WellFile *wf = &s.files[f];
        char dir[CFG_PATH_LEN * 2], path[CFG_PATH_LEN * 3];
        snprintf(dir, sizeof dir, "%s/%s/%s", cache_root, s.physics_names[wf->physics], split);
        lola_mkdirs(dir);
        snprintf(path, sizeof path, "%s/%s", dir, base_name(wf->path));
        if (latent_file_valid(path, ae_id)) {
            skipped++;
            continue;
        }
        if (lola_exists(path)) log_all("cache: rebuilding %s (incomplete or made by another autoencoder)", path);
        const int64_t T = wf->n_steps, n = wf->n_traj;
        size_t xs = (size_t)T * C * H * W;
        float *x = LOLA_NEW(float, xs), *z = LOLA_NEW(float, (size_t)T * Cl * hw[0] * hw[1]);
        float *visited = LOLA_NEW(float, (size_t)repeat * xs);
        float label[64];
        LatentWriter lw;
        latent_writer_open(&lw, path, n * repeat, T, Cl, 2, hw, s.label_dim, ae_id, wf->path, repeat);
        for (int64_t i = 0; i < n; i++) {
            Rng rng = rng_child(seed, ((uint64_t)f << 32) ^ (uint64_t)i);
            for (int j = 0; j < repeat; j++) {
                AugPlan plan;
                int tries = 0;
                for (;;) {
                    augment_draw(&plan, &aug, &s, f, &rng);
                    well_read_trajectory(&s, f, i, &plan, &pre, WELL_LCHW, x);
                    int dup = 0;
                    for (int k = 0; k < j && !dup; k++) dup = allclose(x, visited + (size_t)k * xs, xs);
                    if (!dup) break;
                    if (++tries >= CACHE_MAX_REDRAWS)
                        lola_die_hint("lower cache.repeat_train/repeat_valid or add random augmentations to dataset.augment",
                                      "cache: %s trajectory %lld: no augmentation different from the %d earlier repeat(s) after %d draws",
                                      wf->path, (long long)i, j, CACHE_MAX_REDRAWS);
                }
                memcpy(visited + (size_t)j * xs, x, xs * sizeof(float));
                augment_label(&plan, &s, f, i, label);
                encode_trajectory(m, x, z, (int)T, C, H, W, chunk, dx, dz);
                latent_writer_put(&lw, i * repeat + j, z, label);
            }
        }
        latent_writer_close(&lw);
        free(x);
        free(z);
        free(visited);
        done_files++;
        log_all("cache: %s/%s/%s: %lld trajectories x %d repeat(s) encoded", s.physics_names[wf->physics], split,
                base_name(wf->path), (long long)n, repeat);
    }
    nn_free(dx);
    nn_free(dz);
    int64_t counts[2] = {done_files, skipped};
    dist_allreduce_sum_int64(counts, 2);
    log_info("cache %s: %lld file(s) encoded, %lld already complete, %.1f s", split, (long long)counts[0], (long long)counts[1],
             lola_time() - t0);
    well_close(&s);
}

int stage_cache(const Config *cfg) {
    WellSplit probe;
    open_split(cfg, "train", &probe);
    int C = probe.n_channels;
    well_close(&probe);
    Dcae m;
    char ae_id[128];
    ae_load(cfg, C, &m, ae_id, sizeof ae_id);
    char dir[CFG_PATH_LEN + 16], root[CFG_PATH_LEN + 32];
    ae_dir(cfg, dir, sizeof dir);
    snprintf(root, sizeof root, "%s/cache", dir);
    log_info("cache: autoencoder %s (%s)", dir, ae_id);
    log_info("cache: backend %s, %d rank%s", nn_backend_name(), dist_size(), dist_size() == 1 ? "" : "s");
    cache_split(cfg, &m, ae_id, "train", cfg->cache.repeat_train, root);
    cache_split(cfg, &m, ae_id, "valid", cfg->cache.repeat_valid, root);
    dist_barrier();
    dcae_destroy(&m);
    return 0;
}
