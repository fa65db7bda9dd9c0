// test_config.c: the configuration system (src/config.h): defaults, presets, YAML traps, errors
// (each names file, line and key), composition, overrides, validation, round trip, help.
// Run from the repository root (tests/run.sh does): the presets are read from configs/.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "nn.h"
#include "optim.h"
#include "test.h"

static char g_dir[256];

// Writes text to g_dir/name (creating sub-directories); returns the path (static rotating buffers).
static const char *put(const char *name, const char *text) {
    static char bufs[8][512];
    static int k = 0;
    char *p = bufs[k++ % 8];
    snprintf(p, 512, "%s/%s", g_dir, name);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", p);
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    lola_mkdirs(dir);
    FILE *f = fopen(p, "wb");
    if (!f) lola_die("cannot write %s", p);
    fputs(text, f);
    fclose(f);
    return p;
}

// The required keys (in base.yaml, next to the test files).
#define BASE_KEYS                            \
    "dataset:\n"                             \
    "  name: t\n"                            \
    "  physics: [p]\n"                       \
    "  fields: [a, b]\n"                     \
    "  stats: {mean: [0, 0], std: [1, 1]}\n" \
    "run: {dir: /tmp/x}\n"
// 6 lines that include base.yaml: files below start with it and count their own lines from 7.
#define BASE "defaults: [base]\n# 2\n# 3\n# 4\n# 5\n# 6\n"

static Config g_cfg;
static ConfigError g_err;

static int load(const char *path, int n, char **ov) { return config_load_ex(&g_cfg, path, n, ov, &g_err); }

// Expects loading `path` (+ overrides) to fail with a message naming file_part, line (if > 0),
// key (if non-NULL) and containing msg_part.
static void expect_error(const char *name, const char *path, int n, char **ov, const char *file_part, int line,
                         const char *key, const char *msg_part) {
    int rc = load(path, n, ov);
    char want_pos[600];
    if (line > 0) snprintf(want_pos, sizeof want_pos, "%s:%d: ", file_part, line);
    else snprintf(want_pos, sizeof want_pos, "%s", file_part);
    int ok = rc == -1 && strstr(g_err.text, want_pos) && (!key || strstr(g_err.text, key)) &&
             strstr(g_err.text, msg_part);
    if (!ok) printf("  got rc %d: %s\n  want '%s' + key '%s' + '%s'\n", rc, g_err.text, want_pos, key ? key : "",
                    msg_part);
    CHECK(ok, "error: %s", name);
    if (ok) printf("    -> %s%s%s\n", g_err.text, g_err.hint[0] ? "  HINT: " : "", g_err.hint);
}

static void expect_ok(const char *name, const char *path, int n, char **ov) {
    int rc = load(path, n, ov);
    if (rc) printf("  error: %s\n", g_err.text);
    CHECK(rc == 0, "loads: %s", name);
}

// ---------------------------------------------------------------------------------------------

static void test_defaults(void) {
    Config c;
    config_defaults(&c);
    CHECK(c.ae.lat_channels == 64 && c.ae.n_hid_channels == 6 && c.ae.hid_channels[5] == 1024 &&
              c.ae.n_hid_blocks == 6 && c.ae.hid_blocks[0] == 3,
          "defaults: ae widths (spec 8.2)");
    int att = 0;
    for (int i = 0; i < CFG_MAX_LEVELS; i++) att |= c.ae.attention_heads[i];
    CHECK(att == 0 && c.ae.saturation == CFG_SAT_SOFTCLIP2 && c.ae.norm == CFG_NORM_LAYER && c.ae.identity_init == 1 &&
              fabs(c.ae.dropout - 0.05) < 1e-15 && fabs(c.ae.latent_noise - 0.01) < 1e-15,
          "defaults: ae HEAD attention {} and shared settings");
    CHECK(c.ae.n_loss_losses == 1 && c.ae.loss_losses[0] == CFG_AE_LOSS_VRMSE && c.ae.loss_weights[0] == 1.0,
          "defaults: ae loss vrmse [1.0]");
    CHECK(c.ae_optim.optimizer == CFG_OPTIM_PSGD && c.ae_optim.learning_rate == 1e-5 && c.ae_optim.n_betas == 1 &&
              c.ae_optim.betas[0] == 0.9 && c.ae_optim.precondition_frequency == 64,
          "defaults: ae_optim psgd lr 1e-5 betas [0.9]");
    CHECK(c.dm_optim.optimizer == CFG_OPTIM_ADAMW && c.dm_optim.learning_rate == 1e-4 && c.dm_optim.n_betas == 2 &&
              c.dm_optim.betas[1] == 0.99 && c.ns_optim.optimizer == CFG_OPTIM_ADAMW && c.dm_optim.eps == 1e-8 &&
              c.dm_optim.grad_clip == 1.0 && c.dm_optim.scheduler == CFG_LRS_COSINE,
          "defaults: dm/ns_optim adamw 1e-4 (0.9, 0.99) eps 1e-8 clip 1 cosine");
    CHECK(c.ae_train.epochs == 1024 && c.ae_train.batch_size == 64 && c.ae_train.epoch_size == 16384 &&
              c.dm_train.epochs == 4096 && c.dm_train.batch_size == 256 && c.ns_train.epochs == 4096 &&
              c.dm_train.valid_epoch_size == 4096 && c.ae_train.valid_batch_size == 256,
          "defaults: per-stage train sizes (spec 6.1)");
    CHECK(c.trajectory.length == 5 && c.trajectory.stride == 4 && c.trajectory.context_lmbda == 1.0 &&
              c.trajectory.context_rho == 0.66 && c.trajectory.context_atleast == 1,
          "defaults: trajectory 5/4 context (1.0, 0.66, 1)");
    CHECK(c.cache.repeat_train == 4 && c.cache.repeat_valid == 1 && c.stats.samples == 1024, "defaults: cache, stats");
    CHECK(c.eval.array == 64 && c.eval.samples == 16 && c.eval.sampling_algorithm == CFG_SAMPLER_AB &&
              c.eval.sampling_steps == 16 && c.eval.split == CFG_SPLIT_TEST && c.eval.guidance == CFG_GUIDANCE_NONE &&
              c.eval.context == 1 && c.eval.overlap == 1,
          "defaults: eval (spec 5.1)");
    CHECK(c.denoiser.hid_channels == 1024 && c.denoiser.attention_heads == 8 && c.denoiser.hid_blocks == 16 &&
              c.denoiser.emb_features == 256 && c.denoiser.schedule_sigma_min == 1e-3 &&
              c.denoiser.schedule_sigma_max == 1e3 && c.denoiser.loss_distribution == CFG_TDIST_UNIFORM &&
              c.denoiser.loss_b == 1.0,
          "defaults: denoiser vit_large, log_logit [1e-3, 1e3], uniform");
    CHECK(c.surrogate.hid_channels == 1024 && c.surrogate.schedule_sigma_max == 0.0,
          "defaults: surrogate has no schedule keys");
    CHECK(c.run.dir[0] == 0 && c.dataset.n_physics == 0 && c.run.n_stages == 5 &&
              c.run.stages[0] == CFG_STAGE_TRAIN_AE && c.run.stages[4] == CFG_STAGE_EVAL,
          "defaults: required keys empty, pipeline stages");
    ConfigError e;
    CHECK(config_validate(&c, &e) == -1 && strstr(e.text, "dataset.name") && strstr(e.text, "missing required key"),
          "defaults alone fail validation on the first required key");
    // Enum orders shared with other headers (a cast converts).
    CHECK((int)CFG_SAT_NONE == (int)SAT_NONE && (int)CFG_SAT_SOFTCLIP2 == (int)SAT_SOFTCLIP2 &&
              (int)CFG_SAT_SOFTCLIP == (int)SAT_SOFTCLIP &&
              (int)CFG_SAT_TANH == (int)SAT_TANH && (int)CFG_SAT_ARCSINH == (int)SAT_ARCSINH &&
              (int)CFG_SAT_RMSNORM == (int)SAT_RMSNORM,
          "enum: CfgSaturation == nn.h SAT_*");
    CHECK((int)CFG_OPTIM_ADAMW == (int)OPTIM_ADAMW && (int)CFG_OPTIM_PSGD == (int)OPTIM_PSGD &&
              (int)CFG_OPTIM_SOAP == (int)OPTIM_SOAP && (int)CFG_LRS_NONE == (int)LR_NONE &&
              (int)CFG_LRS_COSINE == (int)LR_COSINE && (int)CFG_LRS_LINEAR == (int)LR_LINEAR &&
              (int)CFG_LRS_EXPONENTIAL == (int)LR_EXPONENTIAL,
          "enum: CfgOptimizer / CfgLrScheduler == optim.h");
    CHECK(!strcmp(cfg_saturation_names[CFG_SAT_SOFTCLIP2], "softclip2") &&
              !strcmp(cfg_stage_names[CFG_STAGE_TRAIN_DM], "train-dm") && cfg_split_names[3] == NULL,
          "enum: name tables");
}

static void test_presets(void) {
    expect_ok("configs/euler.yaml", "configs/euler.yaml", 0, NULL);
    const Config *c = &g_cfg;
    CHECK(!strcmp(c->dataset.name, "euler_all") && c->dataset.n_physics == 2 &&
              !strcmp(c->dataset.physics[1], "euler_multi_quadrants_periodicBC") && c->dataset.n_fields == 5 &&
              !strcmp(c->dataset.fields[3], "momentum_x"),
          "euler: dataset euler_all");
    CHECK(c->dataset.transform[0] == CFG_TF_LOG1P && c->dataset.transform[2] == CFG_TF_LOG1P &&
              c->dataset.transform[3] == CFG_TF_NONE && c->dataset.stats_mean[0] == 1.20 &&
              c->dataset.stats_std[4] == 0.52 && c->dataset.n_augment == 3 && c->dataset.augment[2] == CFG_AUG_ROLL,
          "euler: transform, stats, augment (spec 1.2-1.3)");
    CHECK(c->ae.attention_heads[5] == 8 && c->ae.attention_heads[4] == 0 && c->ae.hid_channels[0] == 64,
          "euler: paper-era AE attention {5: 8}");
    CHECK(c->ae_optim.optimizer == CFG_OPTIM_PSGD && c->ae_optim.learning_rate == 1e-5 &&
              c->dm_optim.optimizer == CFG_OPTIM_ADAMW && c->ns_optim.learning_rate == 1e-4,
          "euler: optimizers per stage");
    CHECK(c->ns_train.epochs == 4096 && c->ns_train.batch_size == 256 && c->ns_train.valid_epoch_size == 4096 &&
              c->ae_train.batch_size == 64,
          "euler: ns_train via merge key <<: *emulator_train");
    CHECK(c->eval.decode_chunks == 4 && c->eval.start == 0 && !strcmp(c->run.dir, "runs/euler"), "euler: eval, run");
    expect_ok("configs/rayleigh_benard.yaml", "configs/rayleigh_benard.yaml", 0, NULL);
    CHECK(!strcmp(c->dataset.name, "rayleigh_benard") && c->dataset.n_fields == 4 &&
              c->dataset.transform[0] == CFG_TF_NONE && c->dataset.stats_mean[0] == 0.38 &&
              c->dataset.augment[0] == CFG_AUG_LOG_SCALARS && c->eval.start == 32 && c->eval.decode_chunks == 1 &&
              c->ae.attention_heads[5] == 8 && c->ae_optim.learning_rate == 1e-5,
          "rayleigh_benard: dataset swapped, rest from euler");

    // Every component file loads into its section.
    static const char *const parts[][2] = {
        {"dataset", "dataset/euler_open"}, {"dataset", "dataset/euler_periodic"},
        {"dataset", "dataset/euler_all"}, {"dataset", "dataset/rayleigh_benard"},
        {"ae", "ae/dcae_f32c64_large"}, {"ae", "ae/dcae_f32c64_small"},
        {"ae.loss", "ae/loss/vrmse"}, {"ae.loss", "ae/loss/mse"}, {"ae.loss", "ae/loss/mae"},
        {"denoiser", "denoiser/vit_large"}, {"denoiser", "denoiser/vit_small"},
        {"denoiser.schedule", "denoiser/schedule/log_logit"}, {"denoiser.schedule", "denoiser/schedule/log_linear"},
        {"denoiser.loss", "denoiser/loss/uniform"}, {"denoiser.loss", "denoiser/loss/beta"},
        {"denoiser.loss", "denoiser/loss/kumaraswamy"}, {"surrogate", "surrogate/vit_large"},
        {"surrogate", "surrogate/vit_small"}, {"ae_optim", "optim/adamw"}, {"ae_optim", "optim/psgd"},
        {"ae_optim", "optim/soap"},
    };
    char cwd[400];
    if (!getcwd(cwd, sizeof cwd)) lola_die("getcwd");
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char text[1200];
        snprintf(text, sizeof text, "defaults:\n  - base\n  - %s: %s/configs/%s\n", parts[i][0], cwd, parts[i][1]);
        expect_ok(parts[i][1], put("part.yaml", text), 0, NULL);
    }
    CHECK(g_cfg.ae_optim.optimizer == CFG_OPTIM_SOAP && g_cfg.ae_optim.n_betas == 3 &&
              g_cfg.ae_optim.precondition_frequency == 16,
          "optim/soap.yaml values");
}

static void test_traps(void) {
    // 7: numbers typed by the key
    expect_ok("float spellings",
              put("f.yaml", BASE "dm_optim: {learning_rate: 1e-5, weight_decay: 1E3, grad_clip: .inf, eps: 5.e-7}\n"
                                 "ns_optim: {learning_rate: .5, grad_clip: +.Inf}\n"
                                 "ae: {dropout: 0, latent_noise: 2}\n"),
              0, NULL);
    CHECK(g_cfg.dm_optim.learning_rate == 1e-5 && g_cfg.dm_optim.weight_decay == 1000.0 &&
              isinf(g_cfg.dm_optim.grad_clip) && g_cfg.dm_optim.eps == 5e-7 && g_cfg.ns_optim.learning_rate == 0.5 &&
              isinf(g_cfg.ns_optim.grad_clip) && g_cfg.ae.dropout == 0.0 && g_cfg.ae.latent_noise == 2.0,
          "1e-5, 1E3, .inf, 5.e-7, .5, +.Inf, integers as floats");
    expect_error("-.inf is a number (then out of range)", put("f.yaml", BASE "denoiser:\n  schedule: {shift: -.inf}\n"),
                 0, NULL, "f.yaml", 8, "denoiser.schedule.shift", "-.inf is not allowed (expected a finite number");
    expect_error(".nan refused", put("f.yaml", BASE "ae:\n  latent_noise: .nan\n"), 0, NULL, "f.yaml", 8,
                 "ae.latent_noise", ".nan is not allowed");
    expect_error("inf without the dot", put("f.yaml", BASE "dm_optim:\n  grad_clip: inf\n"), 0, NULL, "f.yaml", 8,
                 "dm_optim.grad_clip", "expected a number, got 'inf'");
    expect_error("quoted float is a string", put("f.yaml", BASE "dm_optim:\n  learning_rate: \"1e-5\"\n"), 0, NULL,
                 "f.yaml", 8, "dm_optim.learning_rate", "quoted string");
    expect_error("overflowing float", put("f.yaml", BASE "dm_optim:\n  learning_rate: 1e999\n"), 0, NULL, "f.yaml", 8,
                 "dm_optim.learning_rate", "overflows");
    expect_ok("quoted float-looking string", put("s.yaml", BASE "run: {dir: d, name: \"1e-5\"}\n"), 0, NULL);
    CHECK(!strcmp(g_cfg.run.name, "1e-5"), "\"1e-5\" for a string key is the string 1e-5");
    expect_ok("yes/no for strings", put("s.yaml", BASE "run: {dir: d, name: no}\ndataset: {fields: [yes, off], "
                                                       "stats: {mean: [0, 0], std: [1, 1]}, name: on}\n"),
              0, NULL);
    CHECK(!strcmp(g_cfg.run.name, "no") && !strcmp(g_cfg.dataset.fields[0], "yes") &&
              !strcmp(g_cfg.dataset.fields[1], "off") && !strcmp(g_cfg.dataset.name, "on"),
          "no / yes / off / on stay strings for string keys (Norway problem)");
    static const char *const yes11[] = {"yes", "no", "on", "off", "y", "n", "Yes", "NO"};
    for (int i = 0; i < 8; i++) {
        char text[512], name[64];
        snprintf(text, sizeof text, BASE "ae:\n  identity_init: %s\n", yes11[i]);
        snprintf(name, sizeof name, "'%s' is not a boolean", yes11[i]);
        expect_error(name, put("b.yaml", text), 0, NULL, "b.yaml", 8, "ae.identity_init", "use true or false");
    }
    expect_ok("true/false spellings", put("b.yaml", BASE "ae: {identity_init: False, periodic: TRUE}\n"), 0, NULL);
    CHECK(g_cfg.ae.identity_init == 0 && g_cfg.ae.periodic == 1, "False / TRUE");
    expect_error("quoted bool", put("b.yaml", BASE "ae:\n  periodic: \"true\"\n"), 0, NULL, "b.yaml", 8, "ae.periodic",
                 "quoted string");
    expect_error("1e3 for an int", put("i.yaml", BASE "ae:\n  lat_channels: 1e3\n"), 0, NULL, "i.yaml", 8,
                 "ae.lat_channels", "expected an integer, got '1e3'");
    expect_error("16.0 for an int", put("i.yaml", BASE "ae:\n  lat_channels: 16.0\n"), 0, NULL, "i.yaml", 8,
                 "ae.lat_channels", "expected an integer");
    expect_error("quoted int", put("i.yaml", BASE "ae:\n  lat_channels: '16'\n"), 0, NULL, "i.yaml", 8,
                 "ae.lat_channels", "quoted string");
    expect_error("int overflow", put("i.yaml", BASE "ae:\n  lat_channels: 99999999999\n"), 0, NULL, "i.yaml", 8,
                 "ae.lat_channels", "does not fit");
    expect_error("null for an int", put("i.yaml", BASE "ae:\n  lat_channels:\n"), 0, NULL, "i.yaml", 8,
                 "ae.lat_channels", "missing value");
    expect_ok("null means unset", put("n.yaml", BASE "eval: {guidance: null, indices: ~}\ndataset:\n  include_filters:\n"),
              0, NULL);
    CHECK(g_cfg.eval.guidance == CFG_GUIDANCE_NONE && g_cfg.eval.n_indices == 0 && g_cfg.dataset.n_include_filters == 0,
          "null -> none / empty list");
    expect_error("null enum without none", put("n.yaml", BASE "ae:\n  norm: ~\n"), 0, NULL, "n.yaml", 8, "ae.norm",
                 "missing value");

    // Anchors, aliases, merge keys
    expect_ok("anchors and aliases",
              put("a.yaml", BASE "dm_optim: &o {learning_rate: 3e-4, betas: [0.8, 0.9]}\nns_optim: *o\n"
                                 "ae: {hid_channels: &w [8, 16], hid_blocks: *w}\n"),
              0, NULL);
    CHECK(g_cfg.ns_optim.learning_rate == 3e-4 && g_cfg.ns_optim.betas[0] == 0.8 && g_cfg.ae.hid_blocks[1] == 16 &&
              g_cfg.ae.n_hid_blocks == 2,
          "alias copies a section and a list");
    expect_ok("merge key", put("m.yaml", BASE "dm_train: &t {epochs: 9, batch_size: 32, epoch_size: 64}\n"
                                             "ns_train:\n  <<: *t\n  epochs: 7\n"),
              0, NULL);
    CHECK(g_cfg.ns_train.epochs == 7 && g_cfg.ns_train.batch_size == 32 && g_cfg.ns_train.epoch_size == 64,
          "<< merges the anchor; the mapping's own key wins");
    expect_ok("merge list", put("m.yaml", BASE "dm_train: &a {epochs: 1, batch_size: 2, epoch_size: 8}\n"
                                             "ns_train: &b {epochs: 3, epoch_size: 4, batch_size: 4}\n"
                                             "ae_train:\n  <<: [*a, *b]\n"),
              0, NULL);
    CHECK(g_cfg.ae_train.epochs == 1 && g_cfg.ae_train.batch_size == 2 && g_cfg.ae_train.epoch_size == 8,
          "<< [*a, *b]: earlier mappings win (YAML merge)");
    expect_error("merge of a scalar", put("m.yaml", BASE "ae:\n  <<: 3\n"), 0, NULL, "m.yaml", 8, "ae",
                 "merge key '<<' takes a mapping");

    // Billion laughs: 9 levels of 9 aliases = 9^9 expansions; refused fast.
    char bomb[4096];
    size_t o = (size_t)snprintf(bomb, sizeof bomb, "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (int l = 1; l <= 8; l++) {
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "a%d: &a%d [", l, l);
        for (int j = 0; j < 9; j++) o += (size_t)snprintf(bomb + o, sizeof bomb - o, "%s*a%d", j ? "," : "", l - 1);
        o += (size_t)snprintf(bomb + o, sizeof bomb - o, "]\n");
    }
    const char *bp = put("laughs.yaml", bomb);
    double t0 = lola_time();
    int rc = load(bp, 0, NULL);
    double dt = lola_time() - t0;
    CHECK(rc == -1 && strstr(g_err.text, "laughs.yaml:") && strstr(g_err.text, "more than 100000 nodes") &&
              strstr(g_err.text, "alias"),
          "billion laughs refused: %s", g_err.text);
    CHECK(dt < 0.5, "billion laughs refused in %.4f s (< 0.5 s)", dt);
    expect_error("recursive alias", put("rec.yaml", BASE "ae:\n  hid_channels: &r [1, *r]\n"), 0, NULL, "rec.yaml", 0,
                 NULL, "deeper than 64 levels");
    char deep[1000] = "ae: {hid_channels: ";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    for (int i = 0; i < 100; i++) strcat(deep, "]");
    strcat(deep, "}\n");
    expect_error("deep nesting", put("deep.yaml", deep), 0, NULL, "deep.yaml:1:", 0, NULL, "deeper than 64 levels");
    expect_error("two documents", put("two.yaml", BASE "---\nae: {lat_channels: 3}\n"), 0, NULL, "two.yaml", 7, NULL,
                 "more than one YAML document");
}

static void test_errors(void) {
    expect_error("unknown key + suggestion", put("e.yaml", BASE "ae:\n  lat_chanels: 16\n"), 0, NULL, "e.yaml", 8,
                 "ae.lat_chanels", "unknown key (did you mean 'ae.lat_channels'?)");
    expect_error("unknown section + suggestion", put("e.yaml", BASE "optim:\n  learning_rate: 1e-4\n"), 0, NULL,
                 "e.yaml", 7, "optim", "did you mean one of 'ae_optim', 'dm_optim', 'ns_optim'?");
    expect_error("key in the wrong section", put("e.yaml", BASE "dataset:\n  lat_channels: 16\n"), 0, NULL, "e.yaml",
                 8, "dataset.lat_channels", "did you mean 'ae.lat_channels'?");
    expect_error("wrong type: int", put("e.yaml", BASE "ae:\n  lat_channels: abc\n"), 0, NULL, "e.yaml", 8,
                 "ae.lat_channels", "expected an integer, got 'abc'");
    expect_error("wrong type: list", put("e.yaml", BASE "ae:\n  hid_channels: 64\n"), 0, NULL, "e.yaml", 8,
                 "ae.hid_channels", "expected a list");
    expect_error("wrong type: scalar", put("e.yaml", BASE "ae:\n  lat_channels: [1, 2]\n"), 0, NULL, "e.yaml", 8,
                 "ae.lat_channels", "got a list");
    expect_error("wrong type: section", put("e.yaml", BASE "ae: 3\n"), 0, NULL, "e.yaml", 7, "ae", "is a section");
    expect_error("wrong type: list element", put("e.yaml", BASE "ae:\n  hid_channels: [64,\n    x]\n"), 0, NULL,
                 "e.yaml", 9, "ae.hid_channels[1]", "expected an integer, got 'x'");
    expect_error("out of range", put("e.yaml", BASE "ae:\n  dropout: 1.5\n"), 0, NULL, "e.yaml", 8, "ae.dropout",
                 "1.5 is out of range [0, 1)");
    expect_error("out of range int", put("e.yaml", BASE "ae:\n  lat_channels: 0\n"), 0, NULL, "e.yaml", 8,
                 "ae.lat_channels", "0 is out of range [1, 4096]");
    expect_error("out of range element", put("e.yaml", BASE "dm_optim:\n  betas: [0.9, 1.0]\n"), 0, NULL, "e.yaml", 8,
                 "dm_optim.betas[1]", "out of range [0, 1)");
    expect_error("not an allowed value", put("e.yaml", BASE "ae:\n  saturation: softclip3\n"), 0, NULL, "e.yaml", 8,
                 "ae.saturation", "'softclip3' is not one of: none, softclip2");
    CHECK(strstr(g_err.text, "did you mean 'softclip2'?") != NULL, "enum suggestion");
    expect_error("enum list element", put("e.yaml", BASE "dataset:\n  augment: [random_axis_flip, flip]\n"), 0, NULL,
                 "e.yaml", 8, "dataset.augment[1]", "'flip' is not one of");
    expect_error("too many entries", put("e.yaml", BASE "dm_optim:\n  betas: [0.1, 0.2, 0.3, 0.4]\n"), 0, NULL, "e.yaml",
                 8, "dm_optim.betas", "at most 3");
    expect_error("string too long",
                 put("e.yaml", BASE "dataset:\n  name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"),
                 0, NULL, "e.yaml", 8, "dataset.name", "at most 63");
    expect_error("NUL in a string", put("e.yaml", BASE "run:\n  name: \"a\\0b\"\n"), 0, NULL, "e.yaml", 8, "run.name",
                 "NUL");
    expect_error("duplicate key", put("e.yaml", BASE "ae:\n  lat_channels: 16\n  dropout: 0.1\n  lat_channels: 4\n"), 0,
                 NULL, "e.yaml", 10, "ae.lat_channels", "duplicate key in one mapping (first given on line 8)");
    expect_error("duplicate section", put("e.yaml", BASE "ae: {}\nae: {}\n"), 0, NULL, "e.yaml", 8, "ae",
                 "duplicate key");
    expect_error("duplicate map key", put("e.yaml", BASE "ae:\n  attention_heads: {5: 8,\n    5: 4}\n"), 0, NULL,
                 "e.yaml", 9, "ae.attention_heads", "duplicate map key 5");
    expect_error("map key out of range", put("e.yaml", BASE "ae:\n  attention_heads: {8: 8}\n"), 0, NULL, "e.yaml", 8,
                 "ae.attention_heads", "map key 8 is out of range [0, 7]");
    expect_error("map key not an int", put("e.yaml", BASE "dataset:\n  transform: {x: log1p}\n"), 0, NULL, "e.yaml", 8,
                 "dataset.transform", "map keys must be integers");
    expect_error("map value", put("e.yaml", BASE "dataset:\n  transform: {0: log2}\n"), 0, NULL, "e.yaml", 8,
                 "dataset.transform[0]", "'log2' is not one of");
    expect_error("missing required key", put("e.yaml", "dataset: {name: t, physics: [p], fields: [a], "
                                                       "stats: {mean: [0], std: [1]}}\n"),
                 0, NULL, "e.yaml", 0, "run.dir", "missing required key");
    expect_error("missing required list", put("e.yaml", "dataset: {name: t, fields: [a], stats: {mean: [0], std: [1]}}\n"
                                                        "run: {dir: x}\n"),
                 0, NULL, "e.yaml", 0, "dataset.physics", "missing required key");
    expect_error("required key set to null", put("e.yaml", BASE "run:\n  dir: ~\n"), 0, NULL, "e.yaml", 0, "run.dir",
                 "missing required key");
    char path[600];
    snprintf(path, sizeof path, "%s/does_not_exist.yaml", g_dir);
    expect_error("unreadable file (missing)", path, 0, NULL, "does_not_exist.yaml", 0, NULL,
                 "No such file or directory");
    expect_error("unreadable file (a directory)", g_dir, 0, NULL, g_dir, 0, NULL, "Is a directory");
    expect_error("non-YAML: syntax", put("e.yaml", BASE "ae:\n  hid_channels: [1, 2\n  lat_channels: 4\n"), 0, NULL,
                 "e.yaml", 9, NULL, "YAML syntax error at column");
    expect_error("non-YAML: tab indentation", put("e.yaml", BASE "ae:\n\tlat_channels: 4\n"), 0, NULL, "e.yaml", 8,
                 NULL, "YAML syntax error");
    const char binary[] = "\x89PNG\r\n\x1a\n\x01\x02\x03";
    expect_error("non-YAML: binary", put("e.png", binary), 0, NULL, "e.png", 0, NULL, "not a valid YAML text");
    expect_error("non-YAML: plain text", put("e.txt", "Hello, this is not a config.\n"), 0, NULL, "e.txt", 1, NULL,
                 "top level must be a mapping");
    expect_error("empty file: valid YAML, required keys missing", put("empty.yaml", ""), 0, NULL, "empty.yaml", 0,
                 "dataset.name", "missing required key");
}

static void test_cross(void) {
    expect_error("stats count", put("x.yaml", BASE "dataset:\n  stats:\n    mean: [0, 0, 0]\n"), 0, NULL, "x.yaml", 9,
                 "dataset.stats.mean", "has 3 values but dataset.fields has 2 channels");
    expect_error("transform channel", put("x.yaml", BASE "dataset:\n  transform: {4: log}\n"), 0, NULL, "x.yaml", 8,
                 "dataset.transform", "channel 4 does not exist");
    expect_error("hid_blocks length", put("x.yaml", BASE "ae:\n  hid_blocks: [1, 2]\n"), 0, NULL, "x.yaml", 8,
                 "ae.hid_blocks", "has 2 levels but ae.hid_channels has 6");
    expect_error("attention level", put("x.yaml", BASE "ae:\n  hid_channels: [8, 16]\n  hid_blocks: [1, 1]\n"
                                                       "  attention_heads: {5: 8}\n"),
                 0, NULL, "x.yaml", 10, "ae.attention_heads", "level 5 does not exist");
    expect_error("attention heads divide", put("x.yaml", BASE "ae:\n  attention_heads: {5: 7}\n"), 0, NULL, "x.yaml", 8,
                 "ae.attention_heads", "7 heads do not divide hid_channels[5] = 1024");
    expect_error("even kernel", put("x.yaml", BASE "ae:\n  kernel_size: 4\n"), 0, NULL, "x.yaml", 8, "ae.kernel_size",
                 "must be odd");
    expect_error("loss weights", put("x.yaml", BASE "ae:\n  loss:\n    losses: [mse, mae]\n"), 0, NULL, "x.yaml", 0,
                 "ae.loss.weights", "has 1 weights but ae.loss.losses has 2");
    expect_error("betas per optimizer", put("x.yaml", BASE "dm_optim:\n  optimizer: psgd\n"), 0, NULL, "x.yaml", 0,
                 "dm_optim.betas", "optimizer psgd takes 1 beta, got 2");
    expect_error("vit heads", put("x.yaml", BASE "surrogate:\n  attention_heads: 3\n"), 0, NULL, "x.yaml", 8,
                 "surrogate.attention_heads", "3 heads do not divide hid_channels = 1024");
    expect_error("sigma order", put("x.yaml", BASE "denoiser:\n  schedule: {sigma_max: 1e-4}\n"), 0, NULL, "x.yaml", 8,
                 "denoiser.schedule.sigma_max", "must be larger than sigma_min");
    expect_error("beta needs a > 0", put("x.yaml", BASE "denoiser:\n  loss: {distribution: beta}\n"), 0, NULL, "x.yaml",
                 0, "denoiser.loss.a", "beta(a, b) needs a > 0");
    expect_error("accumulation divides", put("x.yaml", BASE "ae_train:\n  accumulation: 3\n"), 0, NULL, "x.yaml", 8,
                 "ae_train.accumulation", "3 micro-batches do not divide batch_size = 64");
    expect_error("eval context", put("x.yaml", BASE "eval:\n  context: 5\n"), 0, NULL, "x.yaml", 8, "eval.context",
                 "leave nothing to predict");
    // Programmatic edits are validated too (no file positions then).
    expect_ok("base", put("ok.yaml", BASE), 0, NULL);
    Config c = g_cfg;
    ConfigError e;
    CHECK(config_validate(&c, &e) == 0, "config_validate accepts a loaded config");
    c.ae.lat_channels = 0;
    CHECK(config_validate(&c, &e) == -1 && strstr(e.text, "ae.lat_channels") && strstr(e.text, "out of range"),
          "config_validate: programmatic out-of-range value: %s", e.text);
    c = g_cfg;
    c.eval.sampling_algorithm = 17;
    CHECK(config_validate(&c, &e) == -1 && strstr(e.text, "eval.sampling.algorithm"),
          "config_validate: enum out of range: %s", e.text);
}

static void test_composition(void) {
    put("comp/configs/base.yaml", BASE_KEYS "ae:\n  lat_channels: 8\n  attention_heads: {5: 8}\n");
    put("comp/configs/a.yaml", "ae: {lat_channels: 16, ffn_factor: 2}\n");
    put("comp/configs/b.yaml", "defaults:\n  - c\nae: {lat_channels: 32}\n");
    put("comp/configs/c.yaml", "ae: {groups: 8, ffn_factor: 3}\n");
    put("comp/configs/opt/fast.yaml", "learning_rate: 0.5\nbetas: [0.5, 0.6]\n");
    put("comp/configs/sub/other/nested.yaml", "defaults:\n  - opt/fast\n"); // found through the configs/ root
    const char *top = put("comp/configs/sub/top.yaml",
                          "defaults:\n"
                          "  - base\n"              // configs root
                          "  - a.yaml\n"
                          "  - b\n"                 // includes c
                          "  - dm_optim: opt/fast\n" // section package
                          "  - ns_optim: other/nested\n"
                          "ae:\n"
                          "  ffn_factor: 4\n");
    expect_ok("composition", top, 0, NULL);
    CHECK(g_cfg.ae.lat_channels == 32, "later include wins (b over a over base)");
    CHECK(g_cfg.ae.ffn_factor == 4, "the file's own key wins over every include");
    CHECK(g_cfg.ae.groups == 8, "nested include (b -> c)");
    CHECK(g_cfg.dm_optim.learning_rate == 0.5 && g_cfg.dm_optim.betas[1] == 0.6 && g_cfg.dm_optim.n_betas == 2,
          "`section: path` puts the file under the section");
    CHECK(g_cfg.ns_optim.learning_rate == 0.5, "nested include inside a section resolves via configs/");
    CHECK(g_cfg.ae.attention_heads[5] == 8, "values from the first include survive");
    // A list/map value is replaced whole.
    expect_ok("map replaced", put("comp/configs/clear.yaml", "defaults: [base]\nae: {attention_heads: {}}\n"), 0, NULL);
    CHECK(g_cfg.ae.attention_heads[5] == 0, "attention_heads: {} clears {5: 8}");
    // Diamond includes are fine.
    put("comp/configs/d1.yaml", "defaults: [c]\n");
    put("comp/configs/d2.yaml", "defaults: [c]\n");
    expect_ok("diamond", put("comp/configs/diamond.yaml", "defaults: [base, d1, d2]\n"), 0, NULL);
    // Cycles
    put("comp/configs/cyc_a.yaml", "defaults:\n  - cyc_b\n" BASE);
    put("comp/configs/cyc_b.yaml", "ae: {}\ndefaults:\n  - cyc_a\n");
    char want[600];
    expect_error("include cycle", put("comp/configs/cyc_top.yaml", "defaults: [cyc_a]\n"), 0, NULL, "cyc_b.yaml", 3,
                 "defaults", "include cycle:");
    snprintf(want, sizeof want, "cyc_a.yaml -> %s/comp/configs/cyc_b.yaml -> %s/comp/configs/cyc_a.yaml", g_dir, g_dir);
    CHECK(strstr(g_err.text, want) != NULL, "cycle chain printed: %s", g_err.text);
    expect_error("self include", put("comp/configs/self.yaml", "defaults: [self]\n"), 0, NULL, "self.yaml", 1,
                 "defaults", "include cycle");
    expect_error("missing include", put("comp/configs/miss.yaml", "defaults:\n  - base\n  - nope/never\n"), 0, NULL,
                 "miss.yaml", 3, "defaults", "cannot find included file 'nope/never' (tried:");
    expect_error("bad package", put("comp/configs/pkg.yaml", "defaults:\n  - optim: opt/fast\n"), 0, NULL, "pkg.yaml", 2,
                 "defaults", "'optim' is not a section");
    expect_error("defaults not a list", put("comp/configs/dl.yaml", "defaults: base\n"), 0, NULL, "dl.yaml", 1,
                 "defaults", "expected a list");
    put("comp/configs/bad_inner.yaml", "ae:\n  dropout: 2\n");
    expect_error("error inside an include points there", put("comp/configs/inc_err.yaml", "defaults: [bad_inner]\n"), 0,
                 NULL, "bad_inner.yaml", 2, "ae.dropout", "out of range");
}

static void test_overrides(void) {
    const char *base = put("o.yaml", BASE "ae: {lat_channels: 8}\n");
    char *ov[] = {"ae.lat_channels=16",
                  "ae.hid_channels=[8,16,32]",
                  "ae.hid_blocks=[1, 1, 2]",
                  "ae.attention_heads={2: 4}",
                  "dataset.transform={0: log, 1: arcsinh}",
                  "run.name=hello # not a comment: really",
                  "ae_optim.learning_rate=1e-5",
                  "ae={dropout: 0.1, norm: group, groups: 8}",
                  "dataset.stats.std=[2, 3]",
                  "run.dir=\"quoted dir\"",
                  "ae.identity_init=false",
                  "eval.guidance=",
                  "ae.name=null"};
    int n = (int)(sizeof ov / sizeof ov[0]);
    expect_ok("overrides", base, n, ov);
    CHECK(g_cfg.ae.lat_channels == 16, "override beats the file");
    CHECK(g_cfg.ae.n_hid_channels == 3 && g_cfg.ae.hid_channels[2] == 32 && g_cfg.ae.hid_blocks[2] == 2,
          "list overrides [8,16,32]");
    CHECK(g_cfg.ae.attention_heads[2] == 4 && g_cfg.ae.attention_heads[5] == 0, "map override {2: 4}");
    CHECK(g_cfg.dataset.transform[0] == CFG_TF_LOG && g_cfg.dataset.transform[1] == CFG_TF_ARCSINH, "enum map override");
    CHECK(!strcmp(g_cfg.run.name, "hello # not a comment: really"), "string override is the raw text");
    CHECK(g_cfg.ae_optim.learning_rate == 1e-5, "float override 1e-5");
    CHECK(g_cfg.ae.dropout == 0.1 && g_cfg.ae.norm == CFG_NORM_GROUP && g_cfg.ae.groups == 8, "section override");
    CHECK(g_cfg.dataset.stats_std[1] == 3.0, "nested key override");
    CHECK(!strcmp(g_cfg.run.dir, "quoted dir"), "quotes that survive the shell are stripped");
    CHECK(g_cfg.ae.identity_init == 0 && g_cfg.eval.guidance == CFG_GUIDANCE_NONE && g_cfg.ae.name[0] == 0,
          "bool / empty / null overrides");
    char *bad1[] = {"ae.lat_channels=16", "ae.lat_chanels=4"};
    expect_error("unknown override key", base, 2, bad1, "command line", 2, "ae.lat_chanels",
                 "did you mean 'ae.lat_channels'?");
    char *bad2[] = {"ae.lat_channels"};
    expect_error("override without =", base, 1, bad2, "command line", 1, NULL, "is not a key=value override");
    char *bad3[] = {"ae_optim.learning_rate=\"1e-5\""};
    expect_error("quoted float override", base, 1, bad3, "command line", 1, "ae_optim.learning_rate", "quoted string");
    char *bad4[] = {"ae.identity_init=yes"};
    expect_error("yes override", base, 1, bad4, "command line", 1, "ae.identity_init", "use true or false");
    char *bad5[] = {"ae.hid_channels=[1, 2"};
    expect_error("unparsable list override", base, 1, bad5, "command line", 1, "ae.hid_channels", "YAML syntax error");
    char *bad6[] = {"ae.dropout=2"};
    expect_error("out-of-range override", base, 1, bad6, "command line", 1, "ae.dropout", "out of range");
    char *bad7[] = {"defaults=[x]"};
    expect_error("defaults override", base, 1, bad7, "command line", 1, "defaults", "only be listed in config files");
    char *bad8[] = {"ae.hid_blocks=[1]"};
    expect_error("override then validation", base, 1, bad8, "command line", 1, "ae.hid_blocks", "has 1 levels");
    // config_apply_overrides on an existing config
    Config c = g_cfg;
    ConfigError e;
    char *more[] = {"trajectory.stride=1", "eval.indices=[3, 17, 42]"};
    CHECK(config_apply_overrides(&c, 2, more, &e) == 0 && c.trajectory.stride == 1 && c.eval.n_indices == 3 &&
              c.eval.indices[2] == 42,
          "config_apply_overrides");
    // A config with no file at all: only overrides.
    char *only[] = {"dataset.name=x", "dataset.physics=[p]", "dataset.fields=[a]", "dataset.stats.mean=[0]",
                    "dataset.stats.std=[1]", "run.dir=r"};
    CHECK(config_load_ex(&c, NULL, 6, only, &e) == 0 && !strcmp(c.run.dir, "r"), "no file, overrides only");
}

static void test_round_trip(void) {
    expect_ok("euler for round trip", "configs/euler.yaml", 0, NULL);
    Config a = g_cfg;
    char *yaml = config_yaml_string(&a);
    const char *p = put("rt.yaml", yaml);
    free(yaml);
    expect_ok("written yaml re-parses", p, 0, NULL);
    const char *d = config_diff(&a, &g_cfg);
    CHECK(d == NULL, "round trip euler: identical Config (first difference: %s)", d ? d : "none");
    // Awkward values.
    const char *tricky = put("tricky.yaml", BASE
                             "run:\n  dir: 'a \"quoted\" \\ path: with # and: colons'\n  name: \"tab\\there\\u00e9\"\n"
                             "dataset:\n  stats: {mean: [-1.5e-300, 3.141592653589793], std: [1e300, 4.9e-324]}\n"
                             "  root: ''\n  transform: {1: log_eps}\n"
                             "dm_optim: {grad_clip: .inf, learning_rate: 0.1, weight_decay: 123456789.125}\n"
                             "ae: {dropout: 0.30000000000000004, attention_heads: {0: 1, 7: 256}, "
                             "hid_channels: [1,2,3,4,5,6,7,256], hid_blocks: [0,0,0,0,0,0,0,64]}\n"
                             "eval: {indices: [0, 2147483647], emulators: []}\n");
    expect_ok("tricky values", tricky, 0, NULL);
    a = g_cfg;
    yaml = config_yaml_string(&a);
    p = put("rt2.yaml", yaml);
    expect_ok("tricky values re-parse", p, 0, NULL);
    d = config_diff(&a, &g_cfg);
    CHECK(d == NULL, "round trip tricky values (first difference: %s)", d ? d : "none");
    if (d) printf("%s\n", yaml);
    free(yaml);
    CHECK(!strcmp(g_cfg.run.dir, "a \"quoted\" \\ path: with # and: colons") && g_cfg.dataset.stats_std[1] == 4.9e-324 &&
              isinf(g_cfg.dm_optim.grad_clip) && g_cfg.dataset.transform[1] == CFG_TF_LOG_EPS,
          "tricky values survive");
    Config b = g_cfg;
    b.ae.attention_heads[3] = 2;
    CHECK(config_diff(&a, &b) && !strcmp(config_diff(&a, &b), "ae.attention_heads"), "config_diff finds a change");
}

static void test_help(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_help(f, "ae ae_optim");
    fclose(f);
    CHECK(strstr(buf, "ae.lat_channels = 64") && strstr(buf, "ae.hid_channels = [64, 128, 256, 512, 768, 1024]") &&
              strstr(buf, "ae_optim.optimizer = psgd") && strstr(buf, "latent channels C_lat") &&
              strstr(buf, "int in [1, 4096]") && !strstr(buf, "dataset.name"),
          "help lists the sections' keys with defaults, types and help");
    free(buf);
    f = open_memstream(&buf, &len);
    config_print_help(f, NULL);
    fclose(f);
    CHECK(strstr(buf, "run.dir = (required)") && strstr(buf, "eval.sampling.steps = 16") &&
              strstr(buf, "dm_optim.learning_rate = 0.0001"),
          "help of every section");
    free(buf);
}

// config_load (the dying variant): a bad file ends the process with status 1 and prints
// "error: file:line: key: message" plus the HINT line, exactly like lola_die.
static void test_config_load_dies(void) {
    const char *good = put("live.yaml", BASE "ae:\n  lat_channels: 3\n");
    Config c;
    config_load(&c, good, 0, NULL);
    CHECK(c.ae.lat_channels == 3, "config_load returns on a good file");
    const char *bad = put("die.yaml", BASE "ae:\n  lat_chanels: 3\n");
    char errpath[600];
    snprintf(errpath, sizeof errpath, "%s/die.err", g_dir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(errpath, "w", stderr)) _exit(3);
        config_load(&c, bad, 0, NULL);
        _exit(0); // not reached when config_load dies
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char text[2048] = "";
    FILE *f = fopen(errpath, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    char want[700];
    snprintf(want, sizeof want, "error: %s:8: ae.lat_chanels: unknown key (did you mean 'ae.lat_channels'?)\nHINT: ", bad);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(text, want);
    if (!ok) printf("  got status %d, stderr:\n%s\n", status, text);
    CHECK(ok, "config_load dies with status 1 and 'error: file:line: key: ...' + HINT");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lola_test_config_XXXXXX");
    if (!mkdtemp(g_dir)) lola_die("mkdtemp failed");
    if (!lola_exists("configs/euler.yaml")) lola_die("run from the repository root (configs/euler.yaml not found)");
    put("base.yaml", BASE_KEYS);
    test_defaults();
    test_presets();
    test_traps();
    test_errors();
    test_cross();
    test_composition();
    test_overrides();
    test_round_trip();
    test_help();
    test_config_load_dies();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("(could not remove %s)\n", g_dir);
    return test_summary();
}
