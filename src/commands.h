// commands.h: the subcommands of build/lola (DESIGN.md §2). main.c parses the command line, loads
// the configuration (config.h: -c FILE plus key=value overrides) and calls one of these with the
// resolved, validated Config and the remaining positional arguments (argv[0..argc-1], no program
// or command name). Every rank calls the command. Return value = process exit status:
// 0 done, 1 failure (most failures die through lola_die instead), 2 usage error or not
// implemented, LOLA_EXIT_REQUEUE (train.h: stopped on a signal after checkpointing).
//
// Every command is implemented in src/: cmd_info in main.c, the stage commands and info_models
// in cmd_stages.c, export/import in stage_export.c.
#ifndef LOLA_COMMANDS_H
#define LOLA_COMMANDS_H

#include <stdio.h>

#include "config.h"

typedef int (*LolaCommandFn)(const Config *cfg, int argc, char **argv);

int cmd_info(const Config *cfg, int argc, char **argv);     // main.c (cfg may be NULL: no -c given)
int cmd_stats(const Config *cfg, int argc, char **argv);    // per-channel mean/std (LoLa get_stats)
int cmd_train_ae(const Config *cfg, int argc, char **argv); // train the autoencoder
int cmd_cache(const Config *cfg, int argc, char **argv);    // encode train/valid into the latent cache
int cmd_train_dm(const Config *cfg, int argc, char **argv); // train the latent diffusion model
int cmd_train_ns(const Config *cfg, int argc, char **argv); // train the latent neural solver
int cmd_eval(const Config *cfg, int argc, char **argv);     // ensemble rollouts + metrics
int cmd_pipeline(const Config *cfg, int argc, char **argv); // run.stages in order, resuming what is done
int cmd_export(const Config *cfg, int argc, char **argv);   // weights -> safetensors
int cmd_import(const Config *cfg, int argc, char **argv);   // safetensors -> weights

// `lola info`'s model table: each model's parameter count, FLOPs and memory per sample.
void info_models(const Config *cfg, FILE *out);

#endif
