// bench-train.c: CPU (or whichever backend is linked) training throughput of the small models,
// the lola-c side of tools/bench-train.sh (tools/bench_train_torch.py is the PyTorch side, same
// shapes, same options, same output line).
//
// One workload per run (so the process's peak RSS belongs to that workload):
//   ae  DCAE (dcae.h) on synthetic (B, pix, S, S) fields, VRMSE loss (eps 1e-2), dropout on
//   dm  diffusion emulator (denoiser.h) on synthetic latents (B, C, L, h, w): per step a fresh
//       log-logit sigma per sample (t ~ U(0,1)), fresh eps, the DenoiserLoss (F-objective form)
//   ns  neural-solver emulator, same shapes, loss mean((x - y_hat)^2)
// Each step = zero grads + forward + loss + backward + global-norm clip (1.0) + AdamW
// (lr 1e-4, betas 0.9/0.999, eps 1e-8, wd 0), i.e. what src/train.c does per batch without data
// loading. Synthetic data (x, mask, label) are drawn once; masks are LoLa's random context masks
// (lambda 1, rho 0.66, at least 1), one per sample.
//
// Timing: --warmup steps first, then --rounds rounds, each running steps until --seconds of wall
// time have passed (at least 2 steps); samples/s of every round is printed, the median is the
// result. cpu_samples_per_s = samples per second of process CPU time (all threads), median
// round: on a shared, oversubscribed machine it shows the work per sample independent of how
// long the process waited for a core (with 1 thread it is the unloaded-machine rate).
// Threads: OMP_NUM_THREADS (nn_init).
//
// Output (last line, parsed by tools/bench-train.sh):
//   RESULT impl=lola workload=ae batch=8 params=N threads=T samples_per_s=MEDIAN rounds=a,b,c
//          cpu_samples_per_s=C gflops=G peak_nn_mib=P maxrss_mib=R flops_per_sample=F
// gflops = samples/s x analytic training FLOPs per sample: 3 x forward FLOPs (forward + backward
// at twice the forward), the forward from dcae_encoder_flops + dcae_decoder_flops /
// emu_forward_flops (2 x MACs of matmuls and convs; norms and activations not counted).
//
// Usage: build/bench-train --workload ae|dm|ns [options], see usage() or --help.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"
#include "common.h"
#include "dcae.h"
#include "denoiser.h"
#include "nn.h"
#include "optim.h"

typedef struct {
    const char *workload;
    int batch;
    double seconds;
    int rounds, warmup;
    uint64_t seed;
    // AE
    int pix, size, lat, levels, heads_last;
    int hid[DCAE_MAX_LEVELS], blocks[DCAE_MAX_LEVELS];
    // emulators
    int chan, L, h, w, D, vit_blocks, vit_heads, emb, label;
    float dropout;
} Opts;

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s --workload ae|dm|ns [options]\n"
            "  --batch B          samples per step (default ae 8, dm/ns 16)\n"
            "  --seconds S        wall seconds per timed round (default 3)\n"
            "  --rounds R         timed rounds; the median is reported (default 3)\n"
            "  --warmup W         untimed steps first (default 3)\n"
            "  --seed N           data / init seed (default 1)\n"
            "  --dropout P        dropout of both models (default 0.05, LoLa's)\n"
            " AE: --pix C (5) --size S (64: S x S fields) --lat C (16) --hid 32,64,128,256\n"
            "     --blocks 1,1,1,1 --heads-last H (4: attention heads at the last level, 0 = none)\n"
            " DM/NS: --chan C (16) --L 5 --h 8 --w 8 --D 128 --vit-blocks 4 --vit-heads 4 --emb 64\n"
            "     --label 5 (label features, 0 = none)\n",
            argv0);
    exit(2);
}

// "32,64,128" -> out[], returns the count; dies on a bad list.
static int parse_list(const char *s, int *out, int cap, const char *what) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || n >= cap) lola_die("bench-train: bad %s list '%s' (comma-separated, at most %d non-negative ints)", what, s, cap);
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') lola_die("bench-train: bad %s list '%s'", what, s);
    }
    return n;
}

static void parse(Opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->workload = NULL;
    o->batch = 0;
    o->seconds = 3.0, o->rounds = 3, o->warmup = 3, o->seed = 1;
    o->pix = 5, o->size = 64, o->lat = 16, o->heads_last = 4, o->levels = 4;
    int h[4] = {32, 64, 128, 256};
    for (int i = 0; i < 4; i++) o->hid[i] = h[i], o->blocks[i] = 1;
    o->chan = 16, o->L = 5, o->h = 8, o->w = 8, o->D = 128, o->vit_blocks = 4, o->vit_heads = 4, o->emb = 64, o->label = 5;
    o->dropout = 0.05f;
    int nblocks = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(argv[0]);
        if (i + 1 >= argc) usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(a, "--workload")) o->workload = v;
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--seconds")) o->seconds = atof(v);
        else if (!strcmp(a, "--rounds")) o->rounds = atoi(v);
        else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dropout")) o->dropout = (float)atof(v);
        else if (!strcmp(a, "--pix")) o->pix = atoi(v);
        else if (!strcmp(a, "--size")) o->size = atoi(v);
        else if (!strcmp(a, "--lat")) o->lat = atoi(v);
        else if (!strcmp(a, "--hid")) o->levels = parse_list(v, o->hid, DCAE_MAX_LEVELS, "--hid");
        else if (!strcmp(a, "--blocks")) nblocks = parse_list(v, o->blocks, DCAE_MAX_LEVELS, "--blocks");
        else if (!strcmp(a, "--heads-last")) o->heads_last = atoi(v);
        else if (!strcmp(a, "--chan")) o->chan = atoi(v);
        else if (!strcmp(a, "--L")) o->L = atoi(v);
        else if (!strcmp(a, "--h")) o->h = atoi(v);
        else if (!strcmp(a, "--w")) o->w = atoi(v);
        else if (!strcmp(a, "--D")) o->D = atoi(v);
        else if (!strcmp(a, "--vit-blocks")) o->vit_blocks = atoi(v);
        else if (!strcmp(a, "--vit-heads")) o->vit_heads = atoi(v);
        else if (!strcmp(a, "--emb")) o->emb = atoi(v);
        else if (!strcmp(a, "--label")) o->label = atoi(v);
        else {
            fprintf(stderr, "bench-train: unknown option '%s'\n", a);
            usage(argv[0]);
        }
    }
    if (!o->workload || (strcmp(o->workload, "ae") && strcmp(o->workload, "dm") && strcmp(o->workload, "ns")))
        lola_die_hint("pass --workload ae, dm or ns", "bench-train: missing or unknown workload '%s'", o->workload ? o->workload : "");
    if (nblocks != o->levels) lola_die("bench-train: --blocks has %d entries but --hid has %d levels", nblocks, o->levels);
    if (o->batch <= 0) o->batch = strcmp(o->workload, "ae") ? 16 : 8;
    if (o->rounds < 1) o->rounds = 1;
    if (o->rounds > 64) o->rounds = 64;
    if (o->warmup < 0) o->warmup = 0;
    if (o->seconds <= 0) lola_die("bench-train: --seconds must be > 0 (got %g)", o->seconds);
}

// ---------------------------------------------------------------------------------------------
// The model of the workload, built from the options; the step itself is train_bench_step (bench.h).

static void bench_setup(TrainBench *b, const Opts *o) {
    OptimConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPTIM_ADAMW;
    oc.lr = 1e-4f, oc.beta1 = 0.9f, oc.beta2 = 0.999f, oc.eps = 1e-8f, oc.weight_decay = 0.0f;
    oc.grad_clip = 1.0f;
    if (!strcmp(o->workload, "ae")) {
        DcaeConfig c;
        memset(&c, 0, sizeof c);
        c.pix_channels = o->pix;
        c.lat_channels = o->lat;
        c.levels = o->levels;
        for (int i = 0; i < o->levels; i++) c.hid_channels[i] = o->hid[i], c.hid_blocks[i] = o->blocks[i];
        c.attention_heads[o->levels - 1] = o->heads_last;
        c.ffn_factor = 1;
        c.kernel_size = 3;
        c.dropout = o->dropout;
        c.saturation = SAT_SOFTCLIP2;
        c.identity_init = 1;
        c.norm_eps = 1e-5f;
        c.latent_noise = 0.01f;
        dcae_config_check(&c);
        train_bench_ae(b, &c, o->batch, o->size, o->size, &oc, o->seed);
    } else {
        EmuKind kind = !strcmp(o->workload, "dm") ? EMU_DM : EMU_NS;
        int win[3] = {o->L, o->h, o->w};
        EmuConfig c;
        emu_config_lola(&c, kind, "vit_small", o->chan, 3, win, o->label);
        c.emb_features = o->emb;
        c.vit.hid_channels = o->D;
        c.vit.hid_blocks = o->vit_blocks;
        c.vit.heads = o->vit_heads;
        c.vit.mod_features = (kind == EMU_DM || o->label > 0) ? o->emb : 0;
        c.vit.dropout = o->dropout;
        train_bench_emu(b, &c, o->batch, 1.0, 0.66, 1, &oc, o->seed);
    }
}

int main(int argc, char **argv) {
    Opts o;
    parse(&o, argc, argv);
    nn_init(-1);
    TrainBench b;
    bench_setup(&b, &o);
    printf("# bench-train lola: workload %s, backend %s, batch %d, %zu parameters, %.3f GFLOP/sample (train)\n",
           o.workload, nn_backend_name(), o.batch, b.nparams, b.flops_per_sample * 1e-9);
    fflush(stdout);
    double t0 = lola_time();
    for (int i = 0; i < o.warmup; i++) train_bench_step(&b);
    nn_sync();
    printf("# warm-up %d steps %.2f s, loss %.5f\n", o.warmup, lola_time() - t0, b.last_loss);
    double rate[64], cpu_rate[64];
    for (int r = 0; r < o.rounds; r++) {
        int steps = 0;
        double start = lola_time(), el = 0, cstart = bench_cpu_time();
        while (steps < 2 || el < o.seconds) {
            train_bench_step(&b);
            nn_sync();
            steps++;
            el = lola_time() - start;
        }
        rate[r] = (double)steps * o.batch / el;
        cpu_rate[r] = (double)steps * o.batch / (bench_cpu_time() - cstart);
        printf("# round %d: %d steps in %.2f s, %.2f samples/s, %.2f samples per CPU-second, loss %.5f\n", r, steps, el,
               rate[r], cpu_rate[r], b.last_loss);
        fflush(stdout);
    }
    double med = bench_median(rate, o.rounds);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf("RESULT impl=lola workload=%s batch=%d params=%zu threads=%d samples_per_s=%.3f rounds=", o.workload, o.batch,
           b.nparams, threads, med);
    for (int r = 0; r < o.rounds; r++) printf("%s%.2f", r ? "," : "", rate[r]);
    printf(" cpu_samples_per_s=%.3f", bench_median(cpu_rate, o.rounds));
    printf(" gflops=%.2f peak_nn_mib=%.1f maxrss_mib=%.1f flops_per_sample=%.6g\n", med * b.flops_per_sample * 1e-9,
           nn_bytes_peak() / 1048576.0, ru.ru_maxrss / 1024.0, b.flops_per_sample);
    train_bench_free(&b);
    return 0;
}
