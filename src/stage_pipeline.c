// stage_pipeline.c: `lola stats` and `lola pipeline`.
//
// pipeline runs the stages listed in run.stages (default: train-ae, cache, train-dm, train-ns,
// eval) in order, in one run directory. Every stage resumes or skips by itself: training stages
// continue from <stage>/state.h5 (and return at once when their epochs are done), the cache skips
// files that are complete for the current AE, and eval is skipped when eval/stats.csv is newer
// than every checkpoint it scores. A stage stopped by a signal (SIGUSR1/SIGTERM) ends the pipeline
// with LOLA_EXIT_REQUEUE so that the batch system requeues the job, which then resumes.
// The `stats` stage (LoLa get_stats) writes <run>/stats.yaml and, within the pipeline, replaces
// dataset.stats for the stages that follow.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "dist.h"
#include "stages.h"
#include "train.h"
#include "wellstats.h"

static int stats_into(const Config *cfg, Config *out) {
    WellSplit s;
    open_split(cfg, "train", &s);
    Preprocess tf;
    int kinds[CFG_MAX_CHANNELS];
    Preprocess full;
    preprocess_from_config(cfg, s.n_channels, &full);
    for (int c = 0; c < s.n_channels; c++) kinds[c] = full.kind[c];
    preprocess_init(&tf, s.n_channels, kinds, NULL, 0, NULL, 0, "dataset.transform");
    WellStats st;
    wellstats_compute(&s, &tf, cfg->stats.samples, (uint64_t)(uint32_t)cfg->stats.seed, &st);
    char path[CFG_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/stats.yaml", cfg->run.dir);
    if (dist_rank() == 0) {
        lola_mkdirs(cfg->run.dir);
        wellstats_write_yaml(path, &s, &tf, &st);
    }
    char line[4096];
    int o = snprintf(line, sizeof line, "stats: %lld snapshots -> %s\n  mean", (long long)st.n_snapshots, path);
    for (int c = 0; c < s.n_channels; c++) o += snprintf(line + o, sizeof line - o, " %.4f", st.mean[c]);
    o += snprintf(line + o, sizeof line - o, "\n  std ");
    for (int c = 0; c < s.n_channels; c++) o += snprintf(line + o, sizeof line - o, " %.4f", st.std[c]);
    log_info("%s", line);
    if (out) {
        out->dataset.n_stats_mean = out->dataset.n_stats_std = s.n_channels;
        for (int c = 0; c < s.n_channels; c++) {
            out->dataset.stats_mean[c] = st.mean[c];
            out->dataset.stats_std[c] = st.std[c];
        }
    }
    well_close(&s);
    return 0;
}

int stage_stats(const Config *cfg) { return stats_into(cfg, NULL); }

static double mtime(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    return (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec;
}

// 1 when eval/stats.csv exists and is newer than the checkpoints it scores.
static int eval_done(const Config *cfg) {
    char p[CFG_PATH_LEN + 64];
    snprintf(p, sizeof p, "%s/eval/stats.csv", cfg->run.dir);
    double t = mtime(p);
    if (t < 0) return 0;
    char ae[CFG_PATH_LEN + 16];
    ae_dir(cfg, ae, sizeof ae);
    snprintf(p, sizeof p, "%s/state.h5", ae);
    if (mtime(p) > t) return 0;
    const char *subs[2] = {"dm/state.h5", "ns/state.h5"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", cfg->run.dir, subs[i]);
        if (mtime(p) > t) return 0;
    }
    return 1;
}

int stage_pipeline(const Config *cfg_in) {
    Config cfg = *cfg_in;
    if (cfg.run.n_stages == 0) lola_die_hint("list the stages, e.g. run.stages=[train-ae,cache,train-dm,train-ns,eval]", "run.stages is empty");
    if (dist_rank() == 0) {
        lola_mkdirs(cfg.run.dir);
        char p[CFG_PATH_LEN + 32];
        snprintf(p, sizeof p, "%s/config.yaml", cfg.run.dir);
        char *yaml = config_yaml_string(&cfg);
        lola_write_atomic(p, yaml, strlen(yaml));
        free(yaml);
    }
    double t0 = lola_time();
    for (int i = 0; i < cfg.run.n_stages; i++) {
        int st = cfg.run.stages[i], rc = 0;
        const char *name = cfg_stage_names[st];
        double ts = lola_time();
        log_info("==== pipeline stage %d/%d: %s ====", i + 1, cfg.run.n_stages, name);
        switch (st) {
        case CFG_STAGE_STATS: rc = stats_into(&cfg, &cfg); break;
        case CFG_STAGE_TRAIN_AE: rc = stage_train_ae(&cfg); break;
        case CFG_STAGE_CACHE: rc = stage_cache(&cfg); break;
        case CFG_STAGE_TRAIN_DM: rc = stage_train_dm(&cfg); break;
        case CFG_STAGE_TRAIN_NS: rc = stage_train_ns(&cfg); break;
        case CFG_STAGE_EVAL:
            if (eval_done(&cfg)) log_info("pipeline: eval/stats.csv is newer than every checkpoint: eval skipped");
            else rc = stage_eval(&cfg);
            break;
        default: lola_die("pipeline: unknown stage %d", st);
        }
        if (rc != 0) {
            log_info("pipeline: stage %s stopped (exit code %d); rerun the same command to resume", name, rc);
            return rc;
        }
        log_info("==== %s done in %.1f s ====", name, lola_time() - ts);
    }
    log_info("pipeline complete in %.1f s: %s", lola_time() - t0, cfg.run.dir);
    return 0;
}
