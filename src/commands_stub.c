// commands_stub.c: WEAK default definitions of the commands of commands.h. Each unimplemented
// command says so and exits 2; a strong definition elsewhere in src/ replaces it at link time
// (build/lola links liblola.a with --whole-archive). cmd_pipeline's default here is real: it runs
// run.stages through the commands in order.
#include "commands.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"

#define LOLA_WEAK __attribute__((weak))

int cmd_not_implemented(const char *name) {
    if (lola_log_rank == 0) fprintf(stderr, "lola %s: not implemented yet in this build\n", name);
    return 2;
}

LOLA_WEAK int cmd_stats(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("stats"); }
LOLA_WEAK int cmd_train_ae(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("train-ae"); }
LOLA_WEAK int cmd_cache(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("cache"); }
LOLA_WEAK int cmd_train_dm(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("train-dm"); }
LOLA_WEAK int cmd_train_ns(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("train-ns"); }
LOLA_WEAK int cmd_eval(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("eval"); }
LOLA_WEAK int cmd_export(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("export"); }
LOLA_WEAK int cmd_import(const Config *cfg, int argc, char **argv) { return cmd_not_implemented("import"); }

LOLA_WEAK void info_models(const Config *cfg, FILE *out) {
    (void)cfg;
    fprintf(out, "model sizes: not implemented yet in this build\n");
}

// Runs cfg->run.stages in order; stops at the first stage that does not return 0 and returns its
// status. Rank 0 first writes the resolved config to <run.dir>/config.yaml. Each stage resumes or
// skips work that is already done (that is the stage's job).
LOLA_WEAK int cmd_pipeline(const Config *cfg, int argc, char **argv) {
    if (argc > 0) {
        if (lola_log_rank == 0) fprintf(stderr, "lola pipeline: unexpected argument '%s'\n", argv[0]);
        return 2;
    }
    if (dist_rank() == 0) {
        lola_mkdirs(cfg->run.dir);
        char path[CFG_PATH_LEN + 32];
        snprintf(path, sizeof path, "%s/config.yaml", cfg->run.dir);
        char *yaml = config_yaml_string(cfg);
        lola_write_atomic(path, yaml, strlen(yaml));
        free(yaml);
    }
    dist_barrier();
    for (int i = 0; i < cfg->run.n_stages; i++) {
        int st = cfg->run.stages[i];
        LolaCommandFn fn = NULL;
        switch ((CfgStage)st) {
        case CFG_STAGE_STATS: fn = cmd_stats; break;
        case CFG_STAGE_TRAIN_AE: fn = cmd_train_ae; break;
        case CFG_STAGE_CACHE: fn = cmd_cache; break;
        case CFG_STAGE_TRAIN_DM: fn = cmd_train_dm; break;
        case CFG_STAGE_TRAIN_NS: fn = cmd_train_ns; break;
        case CFG_STAGE_EVAL: fn = cmd_eval; break;
        }
        if (!fn) lola_die("run.stages[%d]: unknown stage %d", i, st);
        log_info("== pipeline stage %d/%d: %s ==", i + 1, cfg->run.n_stages, cfg_stage_names[st]);
        double t0 = lola_time();
        int rc = fn(cfg, 0, NULL);
        if (rc != 0) {
            log_info("== pipeline: stage %s returned %d; stopping ==", cfg_stage_names[st], rc);
            return rc;
        }
        log_info("== pipeline stage %s done in %.1f s ==", cfg_stage_names[st], lola_time() - t0);
    }
    return 0;
}
