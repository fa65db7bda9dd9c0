// main.c: the lola command line (DESIGN.md §2).
//
//   lola <command> -c CONFIG [key=value ...] [args ...]
//   lola <command> --help        keys the command reads: type, default, allowed values, help
//   lola --help                  commands
//
// One table lists the commands (name, function, one-line help, the config sections it reads, the
// stage whose optim/train sections LoLa's short override names refer to). The functions are in
// commands.h; unimplemented ones are weak stubs (commands_stub.c) that exit 2.
// Exit status: 0 ok, 1 error (lola_die), 2 usage error / not implemented, 3 requeue (train.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buildinfo.h"
#include "commands.h"
#include "common.h"
#include "config.h"
#include "dist.h"
#include "nn.h"

typedef struct {
    const char *name;
    LolaCommandFn fn;
    const char *help;     // one line
    const char *sections; // config sections the command reads (space-separated; NULL = all)
    const char *stage;    // "ae"/"dm"/"ns": `optim.`, `train.`, `valid.` overrides mean this stage's
    int needs_config;     // 1: -c CONFIG is required
} Command;

static const Command commands[] = {
    {"info", cmd_info, "build features, the resolved configuration and model sizes", NULL, NULL, 0},
    {"stats", cmd_stats, "per-channel mean/std of the training data after transforms (LoLa get_stats)",
     "dataset stats run", NULL, 1},
    {"train-ae", cmd_train_ae, "train the autoencoder", "dataset ae ae_optim ae_train run dist", "ae", 1},
    {"cache", cmd_cache, "encode train/valid trajectories into the latent cache", "dataset ae ae_train cache run", NULL,
     1},
    {"train-dm", cmd_train_dm, "train the latent diffusion model", "dataset denoiser dm_optim dm_train trajectory run dist",
     "dm", 1},
    {"train-ns", cmd_train_ns, "train the latent neural solver", "dataset surrogate ns_optim ns_train trajectory run dist",
     "ns", 1},
    {"eval", cmd_eval, "ensemble rollouts on the test split, metrics and figures",
     "dataset ae denoiser surrogate trajectory eval run", NULL, 1},
    {"pipeline", cmd_pipeline, "run.stages in order, resuming whatever is already done", NULL, NULL, 1},
    {"export", cmd_export, "export weights to safetensors (PyTorch state_dict names)", "dataset ae denoiser surrogate run",
     NULL, 1},
    {"import", cmd_import, "import weights from safetensors", "dataset ae denoiser surrogate run", NULL, 1},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static int is_root(void) { return lola_log_rank == 0; }

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: lola <command> -c CONFIG [key=value ...]\n"
            "       lola <command> --help     every key the command reads, with type, default and help\n"
            "\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\nCONFIG is a YAML file (see configs/README.md); presets: configs/euler.yaml, "
            "configs/rayleigh_benard.yaml.\n"
            "Overrides use dotted keys and come after the file: ae.lat_channels=16 ae_optim.learning_rate=1e-5\n"
            "ae.hid_channels=[64,128,256] ae.attention_heads='{5: 8}' run.dir=runs/x.\n"
            "Exit status: 0 ok, 1 error, 2 usage error or not implemented, 3 stopped for requeue.\n");
}

static void print_command_help(const Command *c, FILE *out) {
    fprintf(out, "usage: lola %s %s[key=value ...]\n%s\n", c->name, c->needs_config ? "-c CONFIG " : "[-c CONFIG] ",
            c->help);
    fprintf(out, "\nOverrides: dotted keys after the config file, e.g. ae.lat_channels=16; lists and maps in YAML\n"
                 "flow syntax: ae.hid_channels=[64,128] ae.attention_heads='{5: 8}'.\n");
    if (c->stage)
        fprintf(out, "For this command LoLa's short names work too: optim.X means %s_optim.X, train.X means\n"
                     "%s_train.X and valid.X means %s_train.valid.X.\n",
                c->stage, c->stage, c->stage);
    fprintf(out, "\nKeys (key = default    [type]  help); sections: %s\n", c->sections ? c->sections : "all");
    config_print_help(out, c->sections);
}

static const Command *find_command(const char *name) {
    for (int i = 0; i < n_commands; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

// LoLa's per-script names: for train-ae, optim.X -> ae_optim.X, train.X -> ae_train.X,
// valid.X -> ae_train.valid.X. Returns a malloc'd string (or a copy).
static char *stage_alias(const char *stage, const char *kv) {
    static const char *const from[] = {"optim.", "train.", "valid."};
    static const char *const to[] = {"%s_optim.", "%s_train.", "%s_train.valid."};
    size_t L = strlen(kv);
    for (int i = 0; stage && i < 3; i++) {
        size_t F = strlen(from[i]);
        if (strncmp(kv, from[i], F) == 0) {
            char pre[64];
            snprintf(pre, sizeof pre, to[i], stage);
            char *out = malloc(strlen(pre) + L - F + 1);
            if (!out) lola_die("out of memory");
            strcpy(out, pre);
            strcat(out, kv + F);
            return out;
        }
    }
    char *out = malloc(L + 1);
    if (!out) lola_die("out of memory");
    memcpy(out, kv, L + 1);
    return out;
}

// ---- info --------------------------------------------------------------------------------------

int cmd_info(const Config *cfg, int argc, char **argv) {
    if (argc > 0) {
        if (is_root()) fprintf(stderr, "lola info: unexpected argument '%s'\n", argv[0]);
        return 2;
    }
    if (!is_root()) return 0;
    printf("== build ==\n");
    buildinfo_print(stdout);
    if (!cfg) {
        printf("\n(no configuration: give -c CONFIG to see the resolved configuration and model sizes)\n");
        return 0;
    }
    const CfgDataset *ds = &cfg->dataset;
    const CfgAe *ae = &cfg->ae;
    printf("\n== configuration ==\n");
    printf("dataset      %s: %d physics dir(s), %d channels (", ds->name, ds->n_physics, ds->n_fields);
    for (int i = 0; i < ds->n_fields; i++) printf("%s%s", i ? ", " : "", ds->fields[i]);
    printf("), root %s\n", ds->root);
    int factor = 1;
    for (int i = 1; i < ae->n_hid_channels; i++) factor *= ae->stride;
    factor *= ae->patch_size;
    int heads = 0;
    for (int i = 0; i < CFG_MAX_LEVELS; i++) heads |= ae->attention_heads[i] != 0;
    printf("autoencoder  %s: %d levels (h_max %d), spatial factor %d, C_lat %d -> compression %.0f, "
           "attention %s\n",
           ae->name, ae->n_hid_channels, ae->n_hid_channels ? ae->hid_channels[ae->n_hid_channels - 1] : 0, factor,
           ae->lat_channels, (double)ds->n_fields * factor * factor / ae->lat_channels, heads ? "yes" : "none");
    printf("denoiser     %s: D %d, %d blocks, %d heads, schedule %s [%g, %g]\n", cfg->denoiser.name,
           cfg->denoiser.hid_channels, cfg->denoiser.hid_blocks, cfg->denoiser.attention_heads,
           cfg_schedule_names[cfg->denoiser.schedule_name], cfg->denoiser.schedule_sigma_min,
           cfg->denoiser.schedule_sigma_max);
    printf("surrogate    %s: D %d, %d blocks, %d heads\n", cfg->surrogate.name, cfg->surrogate.hid_channels,
           cfg->surrogate.hid_blocks, cfg->surrogate.attention_heads);
    const struct {
        const char *name;
        const CfgOptim *o;
        const CfgTrain *t;
    } st[] = {{"train-ae", &cfg->ae_optim, &cfg->ae_train},
              {"train-dm", &cfg->dm_optim, &cfg->dm_train},
              {"train-ns", &cfg->ns_optim, &cfg->ns_train}};
    for (int i = 0; i < 3; i++)
        printf("%-12s %s lr %g (%s), %d epochs x %d samples, batch %d, %lld optimizer steps\n", st[i].name,
               cfg_optimizer_names[st[i].o->optimizer], st[i].o->learning_rate,
               cfg_lr_scheduler_names[st[i].o->scheduler], st[i].t->epochs, st[i].t->epoch_size, st[i].t->batch_size,
               (long long)st[i].t->epochs * (st[i].t->epoch_size / st[i].t->batch_size));
    printf("run          %s, stages:", cfg->run.dir);
    for (int i = 0; i < cfg->run.n_stages; i++) printf(" %s", cfg_stage_names[cfg->run.stages[i]]);
    printf("\n\n== resolved configuration (YAML) ==\n");
    config_write_yaml(cfg, stdout);
    printf("\n== models ==\n");
    // HOOK: parameter counts, FLOPs and memory per sample of each model come from info_models()
    // (commands.h), defined where the models live; the weak default says it is not available yet.
    info_models(cfg, stdout);
    fflush(stdout);
    return 0;
}

// ---- main --------------------------------------------------------------------------------------

// 1 for the options `lola export` / `lola import` take: --stage, --in, --out (also as --x=value).
static int is_weights_option(const char *cmd, const char *a) {
    if (strcmp(cmd, "export") != 0 && strcmp(cmd, "import") != 0) return 0;
    const char *opts[3] = {"--stage", "--in", "--out"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(opts[k]);
        if (!strncmp(a, opts[k], n) && (a[n] == '\0' || a[n] == '=')) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    // One GPU per rank: the CUDA backend takes node-local rank mod visible devices, and must know
    // the rank before its first call (NCCL needs distinct GPUs). One process keeps the backend's
    // lazy start (device 0), so `lola --help` needs no GPU.
    if (dist_size() > 1) nn_init(dist_local_rank());
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        if (argc >= 3 && !strcmp(argv[1], "help") && find_command(argv[2])) {
            if (is_root()) print_command_help(find_command(argv[2]), stdout);
            dist_finalize();
            return 0;
        }
        if (is_root()) print_usage(argc < 2 ? stderr : stdout);
        dist_finalize();
        return argc < 2 ? 2 : 0;
    }
    const Command *cmd = find_command(argv[1]);
    if (!cmd) {
        if (is_root()) {
            fprintf(stderr, "lola: unknown command '%s'\n\n", argv[1]);
            print_usage(stderr);
        }
        dist_finalize();
        return 2;
    }
    const char *config = NULL;
    int help = 0, n_over = 0, n_pos = 0;
    char **over = LOLA_NEW(char *, argc), **pos = LOLA_NEW(char *, argc);
    char bad[300] = "";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) help = 1;
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) snprintf(bad, sizeof bad, "%s needs a file name", a);
            else if (config) snprintf(bad, sizeof bad, "-c given twice");
            else config = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            if (config) snprintf(bad, sizeof bad, "-c given twice");
            else config = a + 9;
        } else if (a[0] == '-' && is_weights_option(cmd->name, a)) {
            // export/import options pass through to the command (which parses them)
            pos[n_pos++] = argv[i];
            if (!strchr(a, '=')) {
                if (i + 1 >= argc) snprintf(bad, sizeof bad, "%s needs a value", a);
                else pos[n_pos++] = argv[++i];
            }
        } else if (a[0] == '-') {
            if (!bad[0]) snprintf(bad, sizeof bad, "unknown option '%.200s'", a);
        } else if (strchr(a, '=')) {
            over[n_over++] = stage_alias(cmd->stage, a);
        } else {
            pos[n_pos++] = argv[i];
        }
    }
    int rc;
    if (help) {
        if (is_root()) print_command_help(cmd, stdout);
        rc = 0;
    } else if (bad[0]) {
        if (is_root()) fprintf(stderr, "lola %s: %s (see `lola %s --help`)\n", cmd->name, bad, cmd->name);
        rc = 2;
    } else if (!config && cmd->needs_config) {
        if (is_root()) fprintf(stderr, "lola %s: -c CONFIG is required (e.g. -c configs/euler.yaml)\n", cmd->name);
        rc = 2;
    } else if (!config && n_over > 0) {
        if (is_root()) fprintf(stderr, "lola %s: overrides need a config file (-c CONFIG)\n", cmd->name);
        rc = 2;
    } else if (!config) {
        rc = cmd->fn(NULL, n_pos, pos);
    } else {
        // Every rank loads the config; if any rank fails, exactly one (the lowest failing rank)
        // prints "error: file:line: key: what is wrong" and all ranks exit 1 together (no rank
        // is left in a collective, no MPI_Abort banner for a typo).
        Config *cfg = LOLA_NEW(Config, 1);
        ConfigError err;
        int bad = config_load_ex(cfg, config, n_over, over, &err) != 0;
        int first = dist_allreduce_min_int(bad ? dist_rank() : dist_size());
        if (first < dist_size()) {
            if (bad && dist_rank() == first) {
                fprintf(stderr, "error: %s\n", err.text);
                if (err.hint[0]) fprintf(stderr, "HINT: %s\n", err.hint);
            }
            rc = 1;
        } else {
            rc = cmd->fn(cfg, n_pos, pos);
        }
        free(cfg);
    }
    for (int i = 0; i < n_over; i++) free(over[i]);
    free(over);
    free(pos);
    dist_finalize();
    return rc;
}
