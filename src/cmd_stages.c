// cmd_stages.c: the CLI commands of the pipeline stages (commands.h) and `lola info`'s model
// table. Each command checks its positional arguments, installs the stop-signal handlers for
// training stages and calls the stage (stages.h).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "dcae.h"
#include "nn.h"
#include "denoiser.h"
#include "params.h"
#include "stages.h"
#include "train.h"

static int no_args(const char *name, int argc, char **argv) {
    if (argc > 0) {
        if (lola_log_rank == 0) fprintf(stderr, "lola %s: unexpected argument '%s' (settings are key=value overrides)\n", name, argv[0]);
        return 2;
    }
    return 0;
}

int cmd_stats(const Config *cfg, int argc, char **argv) { return no_args("stats", argc, argv) ? 2 : stage_stats(cfg); }
int cmd_cache(const Config *cfg, int argc, char **argv) { return no_args("cache", argc, argv) ? 2 : stage_cache(cfg); }
int cmd_eval(const Config *cfg, int argc, char **argv) { return no_args("eval", argc, argv) ? 2 : stage_eval(cfg); }

int cmd_train_ae(const Config *cfg, int argc, char **argv) {
    if (no_args("train-ae", argc, argv)) return 2;
    train_install_signal_handlers();
    return stage_train_ae(cfg);
}

int cmd_train_dm(const Config *cfg, int argc, char **argv) {
    if (no_args("train-dm", argc, argv)) return 2;
    train_install_signal_handlers();
    return stage_train_dm(cfg);
}

int cmd_train_ns(const Config *cfg, int argc, char **argv) {
    if (no_args("train-ns", argc, argv)) return 2;
    train_install_signal_handlers();
    return stage_train_ns(cfg);
}

int cmd_pipeline(const Config *cfg, int argc, char **argv) {
    if (no_args("pipeline", argc, argv)) return 2;
    train_install_signal_handlers();
    return stage_pipeline(cfg);
}

// Sizes of the reference datasets when the data is not at hand: (H, W) and constant scalars.
static int known_dataset(const Config *cfg, int *H, int *W, int *scalars) {
    const char *p = cfg->dataset.n_physics > 0 ? cfg->dataset.physics[0] : "";
    if (strstr(p, "euler_multi_quadrants")) { *H = 512; *W = 512; *scalars = 1; return 1; }
    if (strstr(p, "rayleigh_benard")) { *H = 512; *W = 128; *scalars = 2; return 1; }
    return 0;
}

void info_models(const Config *cfg, FILE *out) {
    int C = cfg->dataset.n_fields, H = 0, W = 0, scalars = 0, n_dims = cfg->dataset.n_dimensions > 0 ? cfg->dataset.n_dimensions : 2;
    const char *source = "the reference dataset sizes";
    char probe[CFG_PATH_LEN + 256];
    snprintf(probe, sizeof probe, "%s/%s/data/train", cfg->dataset.root, cfg->dataset.n_physics ? cfg->dataset.physics[0] : "");
    if (cfg->dataset.root[0] && lola_exists(probe)) {
        WellSplit s;
        open_split(cfg, "train", &s);
        H = (int)s.shape[0];
        W = (int)s.shape[1];
        scalars = s.n_scalars;
        n_dims = s.n_dims;
        well_close(&s);
        source = "the dataset's files";
    } else if (!known_dataset(cfg, &H, &W, &scalars)) {
        fprintf(out, "models: dataset '%s' not found at '%s' and not a reference dataset: sizes unknown\n", cfg->dataset.name, probe);
        return;
    }
    char b[40];
    DcaeConfig dc;
    dcae_config_from(cfg, C, &dc);
    int f = 1 << (dc.levels - 1), h = H / f, w = W / f, label = scalars + 2 * n_dims;
    fprintf(out, "models (%s: %d channels, %dx%d, latent %dx%dx%d, label %d):\n", source, C, H, W, dc.lat_channels, h, w, label);
    fprintf(out, "autoencoder parameters: %s\n", fmt_count(b, sizeof b, dcae_param_count(&dc)));
    fprintf(out, "  encoder %.1f GFLOP, decoder %.1f GFLOP per sample (forward)\n", dcae_encoder_flops(&dc, H, W) / 1e9,
            dcae_decoder_flops(&dc, H, W) / 1e9);
    // Activation memory per training sample under the four layouts (dcae.c "Activation plan"):
    // storage fp32 / bf16 (nn_bf16_activations) x ae.checkpointing off / on.
    const int bf16_now = nn_bf16_activations(), ckpt_now = dc.checkpointing;
    double per[2][2];
    for (int st = 0; st < 2; st++)
        for (int ck = 0; ck < 2; ck++) {
            DcaeConfig t = dc;
            t.checkpointing = ck;
            nn_set_bf16_activations(st);
            per[st][ck] = ((double)dcae_arena_floats(&t, 2, H, W) - (double)dcae_arena_floats(&t, 1, H, W)) * 4.0 / 1048576.0;
        }
    nn_set_bf16_activations(bf16_now);
    fprintf(out, "  ~%.0f MiB activations per training sample (%s storage%s; this backend)\n", per[bf16_now][ckpt_now],
            bf16_now ? "bf16" : "fp32", ckpt_now ? ", checkpointing" : "");
    fprintf(out, "    storage fp32 / bf16 (LOLA_ACTIVATIONS): %.0f / %.0f MiB; with ae.checkpointing=true: %.0f / %.0f MiB\n",
            per[0][0], per[1][0], per[0][1], per[1][1]);
    int window[3] = {cfg->trajectory.length, h, w};
    for (int k = 0; k < 2; k++) {
        EmuKind kind = k == 0 ? EMU_DM : EMU_NS;
        EmuConfig ec;
        emu_config_from(cfg, kind, dc.lat_channels, 3, window, label, &ec);
        fprintf(out, "%s parameters: %s\n", kind == EMU_DM ? "denoiser" : "surrogate", fmt_count(b, sizeof b, emu_param_count(&ec)));
        // Activations per training sample (fp32) in the configured layout, and in the other one
        // (<section>.checkpointing, vit.c "Activation plan").
        EmuConfig alt = ec;
        alt.vit.checkpointing = !ec.vit.checkpointing;
        fprintf(out, "  %.1f GFLOP per forward per window, ~%.0f MiB activations per training sample (fp32%s; this backend); "
                "with %s.checkpointing=%s: %.0f MiB\n", emu_forward_flops(&ec) / 1e9, emu_train_bytes_per_sample(&ec) / 1048576.0,
                ec.vit.checkpointing ? ", checkpointing" : "", kind == EMU_DM ? "denoiser" : "surrogate",
                alt.vit.checkpointing ? "true" : "false", emu_train_bytes_per_sample(&alt) / 1048576.0);
    }
}
