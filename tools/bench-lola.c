// bench-lola.c: the project's benchmark (DESIGN.md §9): every workload of the performance table,
// measured on whichever backend is linked (CPU build: the CPU; CUDA build: the GPU), printed next to
// the PyTorch reference measured on one H200 (tools/anchor-pytorch-h200.json) with the ratio, the
// goal and the model FLOP utilisation.
//
// Workloads (--workload a,b,c; default all), models built from the real configs through the config
// system (configs/euler.yaml, configs/rayleigh_benard.yaml), synthetic tensors of the real shapes,
// random initialisation:
//   ae-euler   AE training, paper-era DCAE (237.6 M), Euler 5x512x512, batch 8          samples/s
//   ae-euler-psgd  the same with PSGD-Kron, LoLa's AE optimizer (see "PSGD workloads")  samples/s
//   ae-rb      AE training, Rayleigh-Benard 4x512x128, batch 32                          samples/s
//   ae-rb-psgd the same with PSGD-Kron                                                   samples/s
//   dit-euler  DM training, vit_large denoiser (222.9 M), latents 64x5x16x16, 5 labels,
//              batch 32                                                                   samples/s
//   dit-rb     DM training, latents 64x5x16x4, 6 labels, batch 32                        samples/s
//   eval-dm    LoLa's evaluation speed (eval.py `speed`): (rollout + decode) / (members x states)
//              on Euler: 26 states, context 1, eval.samples (16) members, AB 16 steps, decoding
//              in eval.decode_chunks (4) chunks of members, as `lola eval` does it  ms/state/member
//   eval-ns    the same with the neural solver (1 member)                               ms/state
//   window16   one emulation window of the DM: 4 new states, AB 16, eval.samples members ms/window
//   window1    the same with 1 member                                                    ms/window
//   window-ns  one window of the neural solver, 1 member                                 ms/window
// A training step is what src/train.c does per batch (tools/bench.h): zero grads, forward, loss,
// backward, global-norm clip 1, AdamW (the dm_optim section: lr 1e-4, betas 0.9/0.99). ae-euler and
// ae-rb train the AE with AdamW too (LoLa's AE default is PSGD-Kron) because the reference measured
// AdamW; their -psgd twins measure the AE step with PSGD-Kron.
// PSGD workloads (ae-euler-psgd, ae-rb-psgd): the AE step of ae-euler / ae-rb with the optimizer
// `lola train-ae` builds: train_config_from (src/stage_ae.c) on the config's ae_train / ae_optim
// sections, then optim_init_table (PSGD-Kron, src/psgd.h: learning rate, betas [0.9], weight decay,
// clip, precondition_frequency, _decay, _size); ae_optim.optimizer must be psgd (else exit 2). They
// have no PyTorch reference (it measured AdamW): reference columns "-" / nan, no goal, no ratio,
// comparable=0 at every size. Under the row the table prints (1) the speed as a multiple of the
// AdamW twin's when that ran in the same invocation (RESULT vs_adamw=), (2) the optimizer steps k
// of the timed rounds and how many of them updated the preconditioner (PsgdState.last_updated after
// each step; skipped non-finite steps counted apart) next to the schedule's mean p(k) over those k,
// (3) the mean step time with and without an update and, when both kinds were timed, the speed
// expected at the schedule's floor p = 1/precondition_frequency: B / ((1 - p) t_plain + p t_update).
// heavyball's schedule p(k) = max(1/64, 0.999^k) (LoLa's values) updates on nearly every early step
// and on 1 step in 64 from k = 4157 on (the first 1.6 % of LoLa's 262 144 AE steps). --psgd-step K
// sets the optimizer's step counter so that the first warm-up step is k = K: default 1, a fresh
// `lola train-ae` (~99 % update steps: the upper end of PSGD's cost, and the update path a first GPU
// run must exercise); --psgd-step steady starts at the floor (k = 4157 with LoLa's values), the
// regime of ~98 % of a training run. The schedule is deterministic in k (random.Random(0x172381 ^ k))
// so runs are reproducible; a short steady run times few or no update steps (e.g. none in
// k = 4158..4211), which makes its figure the lower end of the cost: read it with the update count,
// or time more steps. The state at step K is a fresh one (identity factors, zero momentum); a step's
// cost does not depend on the values. flops_per_value and MFU count the model's FLOPs only (as for
// AdamW), so MFU falls with the optimizer's overhead.
// Default list: the PSGD workloads are in "all". They are LoLa's actual AE training cost; each takes
// as long as its AdamW twin, setup + warm-up + --rounds x --seconds, bounded by --max-seconds like
// every workload (measured on 2 CPU threads with the defaults: ~10-12 s each at --size tiny or
// small; all 11 workloads at tiny 1 min 42 s; the smoke test --seconds 0.1 --rounds 1 ~3 s); and
// they put the first timing of PSGD's GPU ops into the GPU script's benchmark run (tests/gpu/run.sh
// splits its time over the --list count).
// An eval unit is one trajectory exactly as src/stage_eval.c runs it (rollout_run, the sampler over
// the members, every state decoded chunk by chunk and copied to the host); the inverse
// normalisation and the metrics are not timed (LoLa's timed region is rollout + decode). LoLa
// decodes all members x states latents at the end in 4 chunks (of 104 for Euler); `lola eval`
// decodes each state as it is produced, in chunks of members (4 x 4 members per state): the same
// FLOPs in smaller batches and bounded memory. Window units are one emulator call of that rollout
// (no decode).
// Reference notes (tools/anchor-pytorch-h200.json): its top-level DiT (222 820 928 parameters) and
// NS (204 859 456) had no label embedding and its ae_* keys are the HEAD AE (313 M, no attention);
// the rows use the paper-era AE keys, the DiT keys (the label MLP is < 0.01 % of the FLOPs) and the
// windows as measured. The eval rows come from the paper-era section (torch.compile denoiser).
// Reference columns: ref-TF32 = eager TF32, ref-bf16 = eager bf16 autocast, ref-best = torch.compile
// + bf16 autocast (DESIGN.md 9), ref-other = a figure of another or an unrecorded setting: the
// DiT Euler torch.compile TF32 figure (59.8, DESIGN.md 9's "TF32" for that row) and the eval and
// window figures, whose precision the reference does not record. The table prints each row's
// settings under it (WORKLOADS[].ref_note, .mem_what); RESULT/JSON carry ref_other too. The goal
// and the ratio are shown only where the run is comparable (paper size, no --set except the
// memory-only checkpointing keys); else "n/c".
//
// Sizes (--size): paper (default on CUDA builds) = the shapes above; small (default on CPU builds)
// and tiny shrink widths, depths, resolution, batch and members through config overrides (SIZES
// below) but run exactly the same code; the reference columns are then not comparable (no goal,
// no ratio: "n/c"). --set key=value (repeatable) adds config overrides after the size's own; with
// any --set the reference columns are not comparable either (also at the paper size), except
// ae./denoiser./surrogate.checkpointing, which change memory and time only. A bad --set
// is reported with its text and its position among the --set options (exit 2).
//
// Measurement: each workload runs in its own child process (fork; the parent never initialises
// the backend), so its peak memory is its own and a failure (e.g. out of device memory: nn_alloc
// ends the process) is reported and the next workload runs. Per workload: --warmup units first
// (default 2 training steps, 1 trajectory / window), then --rounds rounds, each running units until
// --seconds of wall time have passed (at least one unit; nn_sync after each unit); the value of
// every round is printed and the median is the result. --max-seconds bounds a workload (setup
// included): rounds are dropped to fit (down to one round of one unit), a workload whose warm-up
// leaves no room for one more unit is skipped with the reason, and a child still running at
// 1.5 x max-seconds + 30 s is stopped (SIGKILL) and reported as skipped.
// Before allocating, the known memory need (parameters, gradients, optimizer state: AdamW's two
// moments, or PSGD's momentum, factors, caches and scratch (optim_state_floats, psgd_state_floats),
// activation arena) is printed ("# NAME: memory: needs at least ... GB") and compared with the free
// memory (CUDA: device free memory; CPU: MemAvailable); the workload is skipped with both numbers
// when it cannot fit. Paper sizes: dit-euler 62.9 GB on the CPU backend (its attention keeps the
// probabilities), 36.0 GB on the CUDA backend (log-sum-exp only), ae-euler 21.6 GB, ae-euler-psgd
// 22.5 GB (PSGD state + scratch 2.79 GB vs AdamW's 1.90 GB), eval-dm 7.1 GB.
//
// Numbers: peak memory = nn_bytes_peak (on every backend it includes the grow-only op scratch)
// in GB (1e9 bytes, like the reference). FLOPs from the analytic model (2 x MACs of convolutions
// and matmuls, lola-spec.md §2.6, §4.3, §10.5): training = 3 x forward per sample; eval = the
// emulator evaluations (calls x sampler evaluations x members) + one decoder pass per state and
// member; MFU = achieved FLOP/s / --peak-tflops (790: the dense bf16 ceiling measured on an H200,
// DESIGN.md §9). The model's numbers at the paper sizes are printed next to lola-spec.md's, and the
// parameter counts of the paper configs next to the spec's exact counts (a mismatch is an error).
// "x best" = our speed / the best reference speed (> 1: faster than every reference setting; for
// ms figures it is ref_ms / our_ms).
//
// Output: a table (one row per workload), then one line per workload
//   RESULT workload=NAME size=S status=ok|skipped|failed unit=U value=V rounds=a,b,c batch=B params=P
//          flops_per_value=F tflops=T mfu=M peak_gb=G maxrss_mb=R threads=N [loss=L] ref_tf32=..
//          ref_bf16=.. ref_best=.. ref_other=.. ref_peak_gb=.. ref_peak2_gb=.. comparable=0|1 goal=..
//          ratio_best=.. backend="..."
// (loss: the last training step's loss, training workloads that ran only; goal and ratio_best are
// nan when not comparable; missing reference figures are nan)
// PSGD rows add, before ref_tf32: psgd_step_start=K (--psgd-step) psgd_step_first= psgd_step_last=
// (the timed steps k) psgd_steps= psgd_updates= psgd_skipped= psgd_update_share= (updates / steps)
// psgd_p_mean= (the schedule's mean p(k) over them) psgd_ms_update= psgd_ms_plain= (mean timed step
// with / without an update, nan: none) psgd_steady_step= (first k at the floor, -1: never)
// psgd_steady_value= (the speed expected at the floor, nan unless both kinds were timed)
// psgd_state_gb= vs_adamw= (speed / the AdamW twin's in this run, nan when it did not run)
// (CPU builds add cpu_value=: the value from process CPU seconds of all threads instead of wall
// seconds, the figure to read on a shared, oversubscribed machine; cf. tools/bench-train.c)
// and with --json FILE the same as JSON. Exit status 0 when every selected workload ran or was
// skipped for time/memory and the paper counts match the spec; 1 otherwise (a failed workload, a
// mismatch, an unreadable/malformed reference file or a missing key); 2 on bad options (including
// a bad --set).
//
// Usage: build/bench-lola [--workload LIST] [--size tiny|small|paper] [--seconds S] [--rounds R]
//          [--warmup N] [--max-seconds S] [--anchor FILE | --no-anchor] [--configs DIR]
//          [--set key=value]... [--json FILE] [--peak-tflops T] [--seed N] [--psgd-step K|steady] [--list]
// Threads: OMP_NUM_THREADS (CPU). CUDA math: LOLA_PRECISION=fp32|tf32|bf16 and the other switches of
// cuda/README.md; the "backend:" line and RESULT backend= name the mode.
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench.h"
#include "common.h"
#include "config.h"
#include "dcae.h"
#include "denoiser.h"
#include "diffusion.h"
#include "nn.h"
#include "optim.h"
#include "psgd.h"
#include "rollout.h"
#include "stages.h"
#ifdef LOLA_BACKEND_CUDA
#include "../cuda/nn_cuda.h"
#endif

#define MAX_SETS 32
#define MAX_ROUNDS 64

// ---------------------------------------------------------------------------------------------
// Reference file: a small self-contained JSON reader that validates the whole document and looks
// up one number by a dotted key path ("paper_era.ae_paper_euler_params").

typedef struct {
    const char *p, *end, *start;
    char err[200];
    const char *err_at;
} Js;

static int js_fail(Js *j, const char *what) {
    if (!j->err[0]) {
        snprintf(j->err, sizeof j->err, "%s", what);
        j->err_at = j->p;
    }
    return -1;
}

static void js_ws(Js *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

// A string into out (truncated to cap - 1); returns 1 when truncated, 0 when whole, -1 on error.
static int js_string(Js *j, char *out, size_t cap) {
    if (j->p >= j->end || *j->p != '"') return js_fail(j, "expected a string");
    j->p++;
    size_t n = 0;
    int trunc = 0;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if ((unsigned char)c < 0x20) return js_fail(j, "control character inside a string");
        if (c == '\\') {
            if (j->p >= j->end) break;
            char e = *j->p++;
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u':
                for (int k = 0; k < 4; k++, j->p++)
                    if (j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p) || !*j->p)
                        return js_fail(j, "bad \\u escape in a string");
                c = '?';
                break;
            default: j->p--; return js_fail(j, "bad escape in a string");
            }
        }
        if (n + 1 < cap) out[n++] = c;
        else trunc = 1;
    }
    if (j->p >= j->end) return js_fail(j, "unterminated string");
    j->p++;
    if (cap) out[n] = '\0';
    return trunc;
}

static int js_number(Js *j, double *v) {
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-') j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "expected a value");
    if (*j->p == '0') j->p++;
    else
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "bad number (digit expected after '.')");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return js_fail(j, "bad number (exponent digits expected)");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    char buf[64];
    size_t n = (size_t)(j->p - s);
    if (n >= sizeof buf) return js_fail(j, "number too long");
    memcpy(buf, s, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    return 0;
}

// Parses one value. path: NULL = not looking; "" = this value is the target; "a.b" = look for key
// a in this object, then b below it. *found: 1 number found (*out), 2 found but not a number.
static int js_value(Js *j, const char *path, double *out, int *found, int depth) {
    if (depth > 64) return js_fail(j, "nesting deeper than 64");
    js_ws(j);
    if (j->p >= j->end) return js_fail(j, "unexpected end of file");
    char c = *j->p;
    int target = path && !path[0];
    if (c == '{' || c == '[') {
        int obj = c == '{';
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
            j->p++;
            if (target) *found = 2;
            return 0;
        }
        for (;;) {
            const char *sub = NULL;
            if (obj) {
                js_ws(j);
                char key[256];
                int t = js_string(j, key, sizeof key);
                if (t < 0) return -1;
                js_ws(j);
                if (j->p >= j->end || *j->p != ':') return js_fail(j, "expected ':' after a key");
                j->p++;
                if (path && path[0] && !t) {
                    const char *dot = strchr(path, '.');
                    size_t len = dot ? (size_t)(dot - path) : strlen(path);
                    if (strlen(key) == len && !strncmp(key, path, len)) sub = dot ? dot + 1 : "";
                }
            }
            if (js_value(j, sub, out, found, depth + 1) < 0) return -1;
            js_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
                j->p++;
                break;
            }
            return js_fail(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
        if (target) *found = 2;
        return 0;
    }
    if (c == '"') {
        char tmp[8];
        if (js_string(j, tmp, sizeof tmp) < 0) return -1;
        if (target) *found = 2;
        return 0;
    }
    static const char *const lit[3] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t n = strlen(lit[k]);
        if ((size_t)(j->end - j->p) >= n && !strncmp(j->p, lit[k], n)) {
            j->p += n;
            if (target) *found = 2;
            return 0;
        }
    }
    double v;
    if (js_number(j, &v) < 0) return -1;
    if (target) *out = v, *found = 1;
    return 0;
}

typedef struct {
    char path[PATH_MAX + 128];
    char *text;
    size_t len;
} Anchor;

static void js_where(const Anchor *a, const char *at, int *line, int *col) {
    *line = 1, *col = 1;
    for (const char *q = a->text; q < at && q < a->text + a->len; q++) {
        if (*q == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

// Reads and validates the whole file; dies naming the file and the place of the first error.
static void anchor_load(Anchor *a, const char *path) {
    memset(a, 0, sizeof *a);
    snprintf(a->path, sizeof a->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f)
        lola_die_hint("pass --anchor FILE (the PyTorch reference, tools/anchor-pytorch-h200.json) or --no-anchor",
                      "cannot read the reference file '%s': %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 22)) lola_die("reference file '%s': unreadable or larger than 4 MiB", path);
    a->text = LOLA_NEW(char, (size_t)n + 1);
    a->len = fread(a->text, 1, (size_t)n, f);
    fclose(f);
    Js j = {a->text, a->text + a->len, a->text, {0}, NULL};
    int found = 0;
    double v;
    int rc = js_value(&j, NULL, &v, &found, 0);
    if (rc == 0) {
        js_ws(&j);
        if (j.p != j.end) rc = js_fail(&j, "text after the JSON value");
    }
    if (rc < 0) {
        int line, col;
        js_where(a, j.err_at, &line, &col);
        lola_die_hint("pass a valid JSON file with --anchor, or --no-anchor", "reference file '%s' is not valid JSON: line %d column %d: %s",
                      path, line, col, j.err);
    }
}

// The number at a dotted key; dies naming the file and the key when it is missing or not a number.
static double anchor_get(const Anchor *a, const char *key) {
    Js j = {a->text, a->text + a->len, a->text, {0}, NULL};
    int found = 0;
    double v = 0;
    js_value(&j, key, &v, &found, 0);
    if (found == 0)
        lola_die_hint("use the reference file of this repository (tools/anchor-pytorch-h200.json) or --no-anchor",
                      "reference file '%s': key '%s' not found", a->path, key);
    if (found != 1 || !isfinite(v)) lola_die("reference file '%s': key '%s' is not a finite number", a->path, key);
    // Every reference figure is a speed, a time or a memory size.
    if (v <= 0) lola_die("reference file '%s': key '%s' is %g, expected a positive number", a->path, key, v);
    return v;
}

// ---------------------------------------------------------------------------------------------
// Workloads

typedef enum { W_AE_TRAIN = 0, W_EMU_TRAIN, W_EVAL, W_WINDOW } WKind;

typedef struct {
    const char *name;
    WKind kind;
    int rb;          // 0 Euler, 1 Rayleigh-Benard
    EmuKind emu;     // emulator workloads
    int members;     // eval / window: 0 = eval.samples of the config
    const char *unit;
    int higher_better;
    const char *what;
    // Reference keys (NULL = no such measurement), one per table column: ref-TF32 = eager TF32,
    // ref-bf16 = eager bf16 autocast, ref-best = torch.compile + bf16 autocast (DESIGN.md 9: only
    // "best" adds torch.compile), ref-other = a figure of another or an unrecorded setting (said in
    // ref_note); peak memory: two figures (settings in mem_what).
    const char *k_tf32, *k_bf16, *k_best, *k_other, *k_mem_a, *k_mem_b;
    const char *mem_what;  // the settings of the ref-GB figures ("TF32/best"), NULL = none
    const char *ref_note;  // where the row's reference figures differ from the column headers
    double goal;     // DESIGN.md §9 (0 = none); same unit
    double goal_gb;  // peak memory goal (0 = none)
    int psgd;        // AE training with the config's PSGD-Kron (ae_optim) instead of AdamW
} Workload;

// Provenance of every reference figure (tools/anchor-pytorch-h200.json, its "note" fields, and
// DESIGN.md 9). The DiT Euler TF32 figure of DESIGN.md 9 (59.8) is torch.compile TF32: it is shown
// as ref-other, and the ref-TF32 column holds the eager TF32 figure (48.4), like every other row.
// The eval and window figures have no recorded precision: they are ref-other, not TF32.
static const Workload WORKLOADS[] = {
    {"ae-euler", W_AE_TRAIN, 0, EMU_DM, 0, "samples/s", 1, "AE training, paper-era DCAE, Euler",
     "paper_era.ae_paper_euler_train_tf32_samples_per_s", "paper_era.ae_paper_euler_train_bf16_samples_per_s",
     "best_pytorch.ae_paper_euler_train_compiled_bf16_samples_per_s", NULL, "paper_era.ae_paper_euler_train_tf32_peak_GB",
     "best_pytorch.ae_paper_euler_train_compiled_bf16_peak_GB", "eager TF32 / compiled bf16", NULL, 100, 10, 0},
    {"ae-euler-psgd", W_AE_TRAIN, 0, EMU_DM, 0, "samples/s", 1, "AE training as ae-euler, PSGD-Kron (ae_optim, as lola train-ae)", NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, "no reference (PyTorch was measured with AdamW)", 0, 0, 1},
    {"ae-rb", W_AE_TRAIN, 1, EMU_DM, 0, "samples/s", 1, "AE training, paper-era DCAE, Rayleigh-Benard",
     "paper_era.ae_paper_rb_train_tf32_samples_per_s", "paper_era.ae_paper_rb_train_bf16_samples_per_s", NULL, NULL,
     "paper_era.ae_paper_rb_train_tf32_peak_GB", "paper_era.ae_paper_rb_train_bf16_peak_GB", "eager TF32 / eager bf16", NULL, 400, 0, 0},
    {"ae-rb-psgd", W_AE_TRAIN, 1, EMU_DM, 0, "samples/s", 1, "AE training as ae-rb, PSGD-Kron (ae_optim, as lola train-ae)", NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, "no reference (PyTorch was measured with AdamW)", 0, 0, 1},
    {"dit-euler", W_EMU_TRAIN, 0, EMU_DM, 0, "samples/s", 1, "DM training, vit_large denoiser, Euler latents",
     "dit_train_eager_tf32_samples_per_s", "dit_train_eager_bf16_samples_per_s", "best_pytorch.dit_euler_train_compiled_bf16_samples_per_s",
     "dit_train_compiled_tf32_samples_per_s", "dit_train_peak_mem_GB", NULL, "setting not recorded",
     "ref-other = torch.compile TF32 (the 59.8 of DESIGN.md 9)", 300, 0, 0},
    {"dit-rb", W_EMU_TRAIN, 1, EMU_DM, 0, "samples/s", 1, "DM training, vit_large denoiser, RB latents",
     "paper_era.dit_rb_train_eager_tf32_samples_per_s", "paper_era.dit_rb_train_eager_bf16_samples_per_s", NULL, NULL, NULL, NULL, NULL, NULL,
     1000, 0, 0},
    {"eval-dm", W_EVAL, 0, EMU_DM, 0, "ms/state/member", 0, "evaluation speed, diffusion (rollout + decode), Euler", NULL, NULL, NULL,
     "paper_era.euler_eval_ldm_ms_per_state_per_member", NULL, NULL, NULL,
     "ref-other = LoLa eval.py speed, torch.compile denoiser, precision not recorded", 6, 0, 0},
    {"eval-ns", W_EVAL, 0, EMU_NS, 1, "ms/state", 0, "evaluation speed, neural solver (rollout + decode), Euler", NULL, NULL, NULL,
     "paper_era.euler_eval_lns_ms_per_state", NULL, NULL, NULL,
     "ref-other = LoLa eval.py speed (the anchor's note: torch.compile), precision not recorded", 2, 0, 0},
    {"window16", W_WINDOW, 0, EMU_DM, 0, "ms/window", 0, "one DM emulation window (AB), eval.samples members", NULL, NULL, NULL,
     "ldm_window_ens16_ab16_ms", NULL, NULL, NULL, "ref-other = one window as measured, precision and torch.compile not recorded", 250, 0, 0},
    {"window1", W_WINDOW, 0, EMU_DM, 1, "ms/window", 0, "one DM emulation window (AB), 1 member", NULL, NULL, NULL, "ldm_window_ens1_ab16_ms",
     NULL, NULL, NULL, "ref-other = one window as measured, precision and torch.compile not recorded", 25, 0, 0},
    {"window-ns", W_WINDOW, 0, EMU_NS, 1, "ms/window", 0, "one neural-solver window, 1 member", NULL, NULL, NULL, "lns_window_ens1_ms", NULL,
     NULL, NULL, "ref-other = one window as measured, precision and torch.compile not recorded", 0, 0, 0},
};
#define N_WORKLOADS ((int)(sizeof WORKLOADS / sizeof WORKLOADS[0]))

// Data shapes (not in the configs: they come from the data files; lola-spec.md §1.1, §10.1).
#define EULER_LABELS 5
#define RB_LABELS 6
#define EULER_STEPS 101 // time steps per Euler trajectory (eval: start 0, stride 4 -> 26 states)

// Sizes: pixel grid per dataset, batches, and the config overrides that shrink the models.
typedef struct {
    const char *name;
    int euler_hw[2], rb_hw[2];
    int ae_batch_euler, ae_batch_rb, dit_batch;
    const char *overrides[16];
} SizePreset;

static const SizePreset SIZES[] = {
    {"paper", {512, 512}, {512, 128}, 8, 32, 32, {NULL}},
    {"small", {128, 128}, {128, 32}, 4, 8, 8,
     {"ae.hid_channels=[16,32,64,128]", "ae.hid_blocks=[1,1,1,1]", "ae.attention_heads={3: 4}", "ae.lat_channels=16",
      "denoiser.hid_channels=64", "denoiser.hid_blocks=2", "denoiser.attention_heads=2", "denoiser.emb_features=64",
      "surrogate.hid_channels=64", "surrogate.hid_blocks=2", "surrogate.attention_heads=2", "surrogate.emb_features=64",
      "eval.samples=4", NULL}},
    {"tiny", {32, 32}, {32, 8}, 2, 4, 4,
     {"ae.hid_channels=[8,16,32]", "ae.hid_blocks=[1,1,1]", "ae.attention_heads={2: 2}", "ae.lat_channels=8",
      "denoiser.hid_channels=32", "denoiser.hid_blocks=2", "denoiser.attention_heads=2", "denoiser.emb_features=16",
      "surrogate.hid_channels=32", "surrogate.hid_blocks=2", "surrogate.attention_heads=2", "surrogate.emb_features=16",
      "eval.samples=4", NULL}},
};

typedef struct {
    const char *workloads;
    const SizePreset *size;
    double seconds, max_seconds, peak_tflops;
    int rounds, warmup; // warmup < 0: per-kind default
    const char *anchor, *configs, *json;
    int no_anchor;
    const char *sets[MAX_SETS];
    int n_sets;
    uint64_t seed;
    int64_t psgd_step;  // PSGD workloads: optimizer step k of the first warm-up step; 0 = "steady"
    char root[PATH_MAX + 64];
} Opts;

// What a child reports (shared memory).
typedef struct {
    int status; // 0 none, 1 ok, 2 skipped, 3 failed
    char note[512];
    char backend[200];
    double value;
    double cpu_value;       // the value from process CPU seconds (all threads) instead of wall time
    double rounds[MAX_ROUNDS];
    int n_rounds;
    double flops_per_value; // FLOPs per sample (training), per state per member (eval), per window
    double tflops, mfu;
    double peak_gb, maxrss_mb;
    double params;          // parameters of the measured model(s)
    int batch, threads;
    double setup_s, warmup_s, unit_s;
    double loss;
    // PSGD workloads (psgd = 1): the optimizer steps k of the timed rounds and what the schedule did
    int psgd;
    int64_t psgd_k_start;       // k of the first warm-up step (--psgd-step)
    int64_t psgd_k0, psgd_k1;   // first and last timed step k
    int64_t psgd_k_steady;      // first k with p(k) = 1/precondition_frequency (-1: never)
    int psgd_steps, psgd_updates, psgd_skipped; // timed optimizer steps, those that updated the preconditioner, skipped steps
    double psgd_p_mean;         // mean p(k) over the timed steps (the schedule's expected update share)
    double psgd_min_prob;       // 1 / precondition_frequency
    double psgd_ms_update, psgd_ms_plain; // mean timed step with / without a preconditioner update (NAN: none)
    double psgd_state_gb;       // PSGD state + scratch (backend, GB)
} Result;

// ---------------------------------------------------------------------------------------------
// Options

static void usage(FILE *out) {
    fprintf(out,
            "usage: bench-lola [options]   (DESIGN.md 9 benchmark; see the header of tools/bench-lola.c)\n"
            "  --workload LIST     comma-separated workloads (default all; --list shows them)\n"
            "  --size S            tiny | small | paper (default: paper on CUDA builds, small on CPU)\n"
            "  --seconds S         wall seconds per timed round (default 3)\n"
            "  --rounds R          timed rounds, the median is reported (default 3, at most %d)\n"
            "  --warmup N          untimed units first (default 2 training steps, 1 trajectory/window)\n"
            "  --max-seconds S     time budget per workload, setup included (default 0 = none)\n"
            "  --anchor FILE       PyTorch reference (default <repo>/tools/anchor-pytorch-h200.json)\n"
            "  --no-anchor         no reference columns\n"
            "  --configs DIR       config directory with euler.yaml and rayleigh_benard.yaml (default <repo>/configs)\n"
            "  --set key=value     extra config override for both configs (repeatable)\n"
            "  --json FILE         also write the results as JSON\n"
            "  --peak-tflops T     MFU denominator in TFLOP/s (default 790, H200 dense bf16, DESIGN.md 9)\n"
            "  --seed N            init / data seed (default 1)\n"
            "  --psgd-step K       PSGD workloads: optimizer step k of the first warm-up step (default 1, a fresh\n"
            "                      train-ae); 'steady': the first k with p(k) = 1/precondition_frequency (4157)\n"
            "  --list              list the workloads and exit\n",
            MAX_ROUNDS);
}

static const SizePreset *size_find(const char *name) {
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
        if (!strcmp(SIZES[i].name, name)) return &SIZES[i];
    return NULL;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// Repository root: the working directory when it holds configs/euler.yaml, else the directory
// above the binary's (build/bench-lola -> .), else ".".
static void find_root(char *out, size_t cap, const char *argv0) {
    if (file_exists("configs/euler.yaml") || file_exists("tools/anchor-pytorch-h200.json")) {
        snprintf(out, cap, ".");
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) exe[n] = '\0';
    else if (!realpath(argv0, exe)) exe[0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s/../configs/euler.yaml", exe);
        if (file_exists(cand)) {
            snprintf(cand, sizeof cand, "%s/..", exe);
            char real[PATH_MAX];
            snprintf(out, cap, "%s", realpath(cand, real) ? real : cand);
            return;
        }
    }
    snprintf(out, cap, ".");
}

static double parse_num(const char *opt, const char *v, double lo, double hi) {
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "bench-lola: %s '%s': expected a number in [%g, %g]\n", opt, v, lo, hi);
        exit(2);
    }
    return x;
}

static int workload_index(const char *name) {
    for (int i = 0; i < N_WORKLOADS; i++)
        if (!strcmp(WORKLOADS[i].name, name)) return i;
    return -1;
}

// Comma list -> selected[] flags; dies naming an unknown workload.
static void select_workloads(const char *list, int *sel) {
    if (!list) {
        for (int i = 0; i < N_WORKLOADS; i++) sel[i] = 1;
        return;
    }
    memset(sel, 0, sizeof(int) * N_WORKLOADS);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    int any = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = workload_index(t);
        if (k < 0) {
            char names[512] = "";
            for (int i = 0; i < N_WORKLOADS; i++) {
                strcat(names, i ? ", " : "");
                strcat(names, WORKLOADS[i].name);
            }
            fprintf(stderr, "error: bench-lola: unknown workload '%s' in --workload '%s'\nHINT: workloads are %s\n", t, list, names);
            exit(2);
        }
        sel[k] = 1, any = 1;
    }
    if (!any) {
        fprintf(stderr, "error: bench-lola: --workload '%s' names no workload\n", list);
        exit(2);
    }
}

static void parse(Opts *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
#ifdef LOLA_BACKEND_CUDA
    o->size = size_find("paper");
#else
    o->size = size_find("small");
#endif
    o->seconds = 3, o->rounds = 3, o->warmup = -1, o->peak_tflops = 790, o->seed = 1, o->psgd_step = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(a, "--list")) {
            for (int k = 0; k < N_WORKLOADS; k++) printf("%-13s %-16s %s\n", WORKLOADS[k].name, WORKLOADS[k].unit, WORKLOADS[k].what);
            exit(0);
        }
        if (!strcmp(a, "--no-anchor")) {
            o->no_anchor = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench-lola: option '%s' needs a value (or is unknown)\n", a);
            usage(stderr);
            exit(2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--workload") || !strcmp(a, "--workloads")) o->workloads = v;
        else if (!strcmp(a, "--size")) {
            o->size = size_find(v);
            if (!o->size) {
                fprintf(stderr, "error: bench-lola: --size '%s': expected tiny, small or paper\n", v);
                exit(2);
            }
        } else if (!strcmp(a, "--seconds")) o->seconds = parse_num(a, v, 1e-3, 1e6);
        else if (!strcmp(a, "--rounds")) o->rounds = (int)parse_num(a, v, 1, MAX_ROUNDS);
        else if (!strcmp(a, "--warmup")) o->warmup = (int)parse_num(a, v, 0, 1000);
        else if (!strcmp(a, "--max-seconds")) o->max_seconds = parse_num(a, v, 0, 1e7);
        else if (!strcmp(a, "--anchor")) o->anchor = v;
        else if (!strcmp(a, "--configs")) o->configs = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--peak-tflops")) o->peak_tflops = parse_num(a, v, 1e-6, 1e9);
        else if (!strcmp(a, "--seed")) o->seed = (uint64_t)parse_num(a, v, 0, 1e18);
        else if (!strcmp(a, "--psgd-step")) {
            char *end;
            double k = strtod(v, &end);
            if (!strcmp(v, "steady")) o->psgd_step = 0;
            else if (end != v && !*end && k >= 1 && k <= 1e12 && k == floor(k)) o->psgd_step = (int64_t)k;
            else {
                fprintf(stderr, "error: bench-lola: --psgd-step '%s': expected an optimizer step k >= 1 or 'steady'\n", v);
                exit(2);
            }
        }
        else if (!strcmp(a, "--set")) {
            if (o->n_sets >= MAX_SETS) {
                fprintf(stderr, "error: bench-lola: more than %d --set overrides\n", MAX_SETS);
                exit(2);
            }
            o->sets[o->n_sets++] = v;
        } else {
            fprintf(stderr, "bench-lola: unknown option '%s'\n", a);
            usage(stderr);
            exit(2);
        }
    }
    find_root(o->root, sizeof o->root, argv[0]);
}

// ---------------------------------------------------------------------------------------------
// Model configurations of the workloads

typedef struct {
    Config euler, rb;             // measured (size overrides applied)
    Config euler_paper, rb_paper; // the configs as shipped (paper sizes)
} Configs;

// Loads `path` as shipped (paper = 1) or with the size's overrides followed by the user's --set
// ones. A config-file error ends the run through config_load (exit 1). An error caused by a --set
// (a bad override, or one that makes the config invalid) is a bad option: it is reported with the
// --set's own text and position among the user's --set options (not its index in the combined
// override list, which starts with the size preset's), and the exit status is 2.
static void load_config(Config *c, const char *path, const SizePreset *sz, const Opts *o, int paper) {
    char *ov[16 + MAX_SETS];
    int n = 0, n_size = 0;
    if (!paper) {
        for (int i = 0; sz->overrides[i]; i++) ov[n++] = (char *)sz->overrides[i];
        n_size = n;
        for (int i = 0; i < o->n_sets; i++) ov[n++] = (char *)o->sets[i];
    }
    if (o->n_sets == 0 || paper) {
        config_load(c, path, n, ov);
        return;
    }
    ConfigError err;
    if (config_load_ex(c, path, n, ov, &err) == 0) return;
    int k = !strcmp(err.file, "command line") && err.line > n_size ? err.line - n_size : 0; // 1-based --set
    if (k == 0 && config_load_ex(c, path, n_size, ov, NULL) != 0) config_load(c, path, n_size, ov); // not the --set: die as usual
    char what[1400];
    if (err.key[0]) snprintf(what, sizeof what, "%s: %s", err.key, err.msg);
    else snprintf(what, sizeof what, "%s", err.msg);
    if (k > 0)
        fprintf(stderr, "error: bench-lola: --set '%s' (--set number %d of %d): %s\n", o->sets[k - 1], k, o->n_sets, what);
    else
        fprintf(stderr, "error: bench-lola: the --set overrides (%d) make %s invalid: %s\n", o->n_sets, path, what);
    fprintf(stderr, "HINT: %s\n", err.hint[0] ? err.hint : "--set takes key=value, e.g. --set eval.samples=4 (`lola train-ae --help` lists the keys)");
    exit(2);
}

// Pixel grid (H, W) and latent grid (h, w) of a dataset at a size.
static void grids(const Config *c, const SizePreset *sz, int rb, int *H, int *W, int *h, int *w) {
    const int *hw = rb ? sz->rb_hw : sz->euler_hw;
    int f = 1 << (c->ae.n_hid_channels - 1);
    *H = hw[0], *W = hw[1];
    if (*H % f || *W % f)
        lola_die_hint("choose ae.hid_channels with fewer levels for this size", "bench-lola: the %dx%d grid is not divisible by the AE's factor %d",
                      *H, *W, f);
    *h = *H / f, *w = *W / f;
}

static void emu_config_of(const Config *c, const SizePreset *sz, int rb, EmuKind kind, EmuConfig *ec) {
    int H, W, h, w;
    grids(c, sz, rb, &H, &W, &h, &w);
    int window[3] = {c->trajectory.length, h, w};
    emu_config_from(c, kind, c->ae.lat_channels, 3, window, rb ? RB_LABELS : EULER_LABELS, ec);
}

static OptimConfig adamw_of(const Config *c) {
    const CfgOptim *o = &c->dm_optim;
    OptimConfig oc;
    memset(&oc, 0, sizeof oc);
    oc.kind = OPTIM_ADAMW;
    oc.lr = (float)o->learning_rate;
    oc.beta1 = o->n_betas > 0 ? (float)o->betas[0] : 0.9f;
    oc.beta2 = o->n_betas > 1 ? (float)o->betas[1] : 0.999f;
    oc.eps = o->eps > 0 ? (float)o->eps : 1e-8f;
    oc.weight_decay = (float)o->weight_decay;
    oc.grad_clip = isfinite(o->grad_clip) ? (float)o->grad_clip : 0.0f;
    return oc;
}

// The AE optimizer exactly as `lola train-ae` builds it: the OptimConfig that train_config_from
// (src/stage_ae.c) fills from ae_train / ae_optim (PSGD-Kron: learning rate, betas [0.9], weight
// decay, clip, precondition_frequency, _decay, _size). The PSGD workloads require ae_optim.optimizer
// psgd (checked in main).
static OptimConfig ae_optim_of(const Config *c) {
    TrainConfig tc;
    train_config_from(c, &c->ae_train, &c->ae_optim, "", &tc);
    return tc.optim;
}

// heavyball's update probability p(k) = max(1/frequency, decay^k) reaches its floor at this k;
// -1 when it never does (decay 1 with frequency > 1).
static int64_t psgd_steady_step(const PsgdConfig *c) {
    if (c->min_prob >= 1.0 || c->prob_decay <= 0.0) return 1;
    if (c->prob_decay >= 1.0) return -1;
    double k = ceil(log(c->min_prob) / log(c->prob_decay));
    int64_t K = k < 1 ? 1 : (int64_t)k;
    while (K > 1 && psgd_update_probability(c, K - 1) <= c->min_prob) K--; // exact in double arithmetic
    while (psgd_update_probability(c, K) > c->min_prob) K++;
    return K;
}

static SamplerConfig sampler_of(const Config *c) {
    int a = c->eval.sampling_algorithm;
    SamplerConfig s = sampler_default(a == CFG_SAMPLER_AB     ? SAMPLER_AB
                                      : a == CFG_SAMPLER_DDIM ? SAMPLER_DDIM
                                      : a == CFG_SAMPLER_DDPM ? SAMPLER_DDPM
                                      : a == CFG_SAMPLER_EAB  ? SAMPLER_EAB
                                                              : SAMPLER_PC);
    s.steps = c->eval.sampling_steps;
    return s;
}

// States of LoLa's Euler evaluation (lola-spec.md 5.1): x[max(0, start - (c-1) stride) :: stride].
static int eval_states(const Config *c) {
    int fs = c->eval.start - (c->eval.context - 1) * c->trajectory.stride;
    if (fs < 0) fs = 0;
    return (EULER_STEPS - 1 - fs) / c->trajectory.stride + 1;
}

static int eval_members(const Config *c, const Workload *w) {
    if (w->members > 0) return w->members;
    return c->eval.samples > 0 ? c->eval.samples : 1;
}

// ---------------------------------------------------------------------------------------------
// Eval / window units (the emulate + decode path of src/stage_eval.c, on synthetic latents)

typedef struct {
    const Config *cfg;
    Dcae ae;
    Emulator emu;
    int dm, with_ae;
    int C, Lw, h, w, pix, H, W;
    size_t S;
    int members, L_tot, chunk;
    SamplerConfig scfg;
    float *mask, *h_mask, *label, *work; // backend mask (members, C, Lw, S), label, sampler scratch
    uint64_t *seeds;
    float *z_ctx;                        // host (C, context, S)
    float *d_z, *d_y, *h_y;              // decode buffers (chunk members)
    float *y, *x_hat;                    // window units: backend (members, C, Lw, S)
    uint64_t unit;
} EvalBench;

// The emulator call of stage_eval.c's dm_emulate / ns_emulate: expand the frame mask, then the
// DM sampler over the members (initial noise and sampler noise seeded per member) or one NS pass.
static void eb_emulate(void *ctx, float *x_hat, const float *y, const float *frame_mask, int call, int first) {
    EvalBench *e = (EvalBench *)ctx;
    int B = e->members;
    size_t nm = (size_t)e->C * e->Lw * e->S, n = (size_t)B * nm;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < e->C; c++)
            for (int l = 0; l < e->Lw; l++)
                for (size_t p = 0; p < e->S; p++) e->h_mask[(((size_t)b * e->C + c) * e->Lw + l) * e->S + p] = frame_mask[l];
    nn_to_backend(e->mask, e->h_mask, n);
    emu_reserve(&e->emu, B, 0);
    if (e->dm) {
        uint64_t seed = rng_hash(rng_hash(0xe7a1ULL, e->unit), (uint64_t)call), init = rng_hash(seed, 1),
                 noise = rng_hash(seed, 2);
        for (int b = 0; b < B; b++) {
            sampler_init_state(x_hat + (size_t)b * nm, nm, &e->scfg, &e->emu.cfg.schedule, rng_hash(init, (uint64_t)b));
            e->seeds[b] = rng_hash(noise, (uint64_t)b);
        }
        EmuDenoiseCtx dc = {&e->emu, e->mask, y, e->label, B};
        sampler_run_members(&e->scfg, &e->emu.cfg.schedule, emu_denoise_fn, &dc, x_hat, n, B, e->seeds, e->work);
    } else {
        emu_ns_predict(&e->emu, x_hat, y, e->mask, e->label, B);
    }
    (void)first;
}

// stage_eval.c's decode_members: every produced state of every member decoded (noisy = false) in
// chunks of members and copied to the host.
static void eb_sink(void *ctx, int t, const float *states) {
    EvalBench *e = (EvalBench *)ctx;
    size_t zs = (size_t)e->C * e->S, xs = (size_t)e->pix * e->H * e->W;
    for (int s0 = 0; s0 < e->members; s0 += e->chunk) {
        int b = e->members - s0 < e->chunk ? e->members - s0 : e->chunk;
        nn_to_backend(e->d_z, states + (size_t)s0 * zs, (size_t)b * zs);
        dcae_decode(&e->ae, e->d_y, e->d_z, b, e->h, e->w, 0, 0);
        nn_to_host(e->h_y + (size_t)s0 * xs, e->d_y, (size_t)b * xs);
    }
    (void)t;
}

static void eval_unit(void *ctx) {
    EvalBench *e = (EvalBench *)ctx;
    RolloutConfig rc = {e->Lw, e->cfg->eval.context, e->cfg->eval.overlap, e->C, e->S, e->members};
    rollout_run(&rc, eb_emulate, e, e->z_ctx, e->L_tot, eb_sink, e);
    e->unit++;
}

static void window_unit(void *ctx) {
    EvalBench *e = (EvalBench *)ctx;
    float frame[64];
    for (int l = 0; l < e->Lw; l++) frame[l] = l < e->cfg->eval.context ? 1.0f : 0.0f;
    eb_emulate(e, e->x_hat, e->y, frame, 0, 0);
    e->unit++;
}

static void train_unit(void *ctx) { train_bench_step((TrainBench *)ctx); }

// PSGD workloads: each step is also timed on its own and classified by what the optimizer did
// (PsgdState.last_updated), over the timed rounds only (timed is set after the warm-up).
typedef struct {
    TrainBench tb;
    int timed;
    int64_t k0, k1;              // first and last timed optimizer step k
    int steps, updates, skipped; // timed optimizer steps; of them with a preconditioner update; skipped (non-finite norm)
    double s_update, s_plain;    // seconds of the timed steps with / without an update
    double p_sum;                // sum of p(k) over the timed steps
} PsgdBench;

static void psgd_unit(void *ctx) {
    PsgdBench *p = (PsgdBench *)ctx;
    int64_t t0 = p->tb.opt.t;
    double u0 = lola_time();
    train_bench_step(&p->tb);
    nn_sync(); // measure() syncs too; here it closes this step's own time
    double dt = lola_time() - u0;
    if (!p->timed) return;
    if (p->tb.opt.t == t0) { // optim_step skipped the step (non-finite gradient norm)
        p->skipped++;
        return;
    }
    const PsgdState *s = p->tb.opt.psgd;
    int64_t k = p->tb.opt.t;
    if (!p->steps) p->k0 = k;
    p->k1 = k;
    p->steps++;
    p->p_sum += psgd_update_probability(&s->cfg, k);
    if (s->last_updated) p->updates++, p->s_update += dt;
    else p->s_plain += dt;
}

static void psgd_begin_timed(void *ctx) { ((PsgdBench *)ctx)->timed = 1; }

// ---------------------------------------------------------------------------------------------
// Memory check before allocating

// Free memory where the workload's buffers go: CUDA device free memory, else MemAvailable.
static double free_bytes(void) {
#ifdef LOLA_BACKEND_CUDA
    size_t f = 0, t = 0;
    nn_cuda_mem_info(&f, &t);
    return (double)f;
#else
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return INFINITY;
    char line[256];
    double kb = INFINITY;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
#endif
}

// 1 when `need` bytes (the known lower bound) fit; else fills the skip note and returns 0.
// `what` names the parts counted. The need is printed either way ("# NAME: memory: ...").
static int memory_fits(const Workload *w, double need, const char *what, Result *r) {
    double avail = free_bytes();
    printf("# %s: memory: needs at least %.4g GB (%s), %.4g GB free\n", w->name, need / 1e9, what, avail / 1e9);
    fflush(stdout);
    if (need <= 0.95 * avail) return 1;
    r->status = 2;
    snprintf(r->note, sizeof r->note, "needs at least %.2f GB (%s), %.2f GB free", need / 1e9, what, avail / 1e9);
    return 0;
}

static double peak_backend_bytes(void) {
    return (double)nn_bytes_peak(); // every backend counts its op scratch in it (nn.h)
}

// ---------------------------------------------------------------------------------------------
// Timing (child)

typedef void (*UnitFn)(void *ctx);

// Runs warm-up and rounds; per_unit = samples per unit (higher_better) or divisor of the unit time
// (members x states for eval, 1 for a window); value per round in the workload's unit. timed
// (may be NULL) is called once between the warm-up and the first timed round.
static void measure(const Opts *o, const Workload *w, UnitFn fn, UnitFn timed, void *ctx, double per_unit, double t_start, Result *r) {
    int warm = o->warmup >= 0 ? o->warmup : (w->kind == W_AE_TRAIN || w->kind == W_EMU_TRAIN ? 2 : 1);
    double t0 = lola_time(), unit = 0;
    int done = 0;
    for (int i = 0; i < warm; i++) {
        if (o->max_seconds > 0 && i > 0 && lola_time() - t_start + unit > o->max_seconds) break;
        double u0 = lola_time();
        fn(ctx);
        nn_sync();
        unit = lola_time() - u0;
        done++;
    }
    r->warmup_s = lola_time() - t0;
    r->unit_s = unit;
    printf("# %s: warm-up %d unit(s) %.3f s%s\n", w->name, done, r->warmup_s, done < warm ? " (cut short by --max-seconds)" : "");
    fflush(stdout);
    int rounds = o->rounds;
    if (o->max_seconds > 0) {
        double left = o->max_seconds - (lola_time() - t_start);
        double per_round = o->seconds > unit ? o->seconds + unit : unit; // a round overshoots by < 1 unit
        int fit = per_round > 0 ? (int)floor(left / per_round) : rounds;
        if (left <= 0 || (done > 0 && left < unit)) {
            r->status = 2;
            snprintf(r->note, sizeof r->note,
                     "one round needs at least one unit of %.3f s but %.2f s of --max-seconds %g are left after setup and warm-up", unit,
                     left > 0 ? left : 0.0, o->max_seconds);
            return;
        }
        if (fit < 1) {
            snprintf(r->note, sizeof r->note, "1 round of 1 unit instead of %d rounds of %g s to fit --max-seconds %g", rounds, o->seconds,
                     o->max_seconds);
            rounds = 1;
        } else if (fit < rounds) {
            snprintf(r->note, sizeof r->note, "rounds reduced from %d to %d to fit --max-seconds %g", rounds, fit, o->max_seconds);
            rounds = fit;
        }
    }
    double cpu_rounds[MAX_ROUNDS];
    int k = 0;
    if (timed) timed(ctx);
    for (; k < rounds; k++) {
        if (k > 0 && o->max_seconds > 0 && lola_time() - t_start + unit > o->max_seconds) {
            size_t l = strlen(r->note);
            snprintf(r->note + l, sizeof r->note - l, "%s%d of %d rounds run: --max-seconds %g reached", l ? "; " : "", k, o->rounds,
                     o->max_seconds);
            break;
        }
        int units = 0;
        double s0 = lola_time(), el = 0, c0 = bench_cpu_time();
        while (units < 1 || (el < o->seconds && !(o->max_seconds > 0 && lola_time() - t_start + unit > o->max_seconds))) {
            fn(ctx);
            nn_sync();
            units++;
            el = lola_time() - s0;
        }
        unit = el / units; // the latest unit time predicts the next
        r->rounds[k] = w->higher_better ? units * per_unit / el : el * 1e3 / (units * per_unit);
        double cel = bench_cpu_time() - c0;
        cpu_rounds[k] = w->higher_better ? units * per_unit / cel : cel * 1e3 / (units * per_unit);
        printf("# %s: round %d: %d unit(s) in %.3f s: %.4g %s\n", w->name, k, units, el, r->rounds[k], w->unit);
        fflush(stdout);
    }
    r->n_rounds = k;
    r->value = bench_median(r->rounds, k);
    r->cpu_value = bench_median(cpu_rounds, k);
    r->tflops = (w->higher_better ? r->value * r->flops_per_value : r->flops_per_value / (r->value * 1e-3)) * 1e-12;
    r->mfu = r->tflops / o->peak_tflops;
    r->status = 1;
}

// Builds and measures workload w (runs in the child process).
static void run_workload(const Opts *o, const Configs *cs, const Workload *w, Result *r) {
    double t_start = lola_time();
    nn_init(-1);
    snprintf(r->backend, sizeof r->backend, "%s", nn_backend_name()); // on CUDA it names the precision mode
    r->threads = 1;
#ifdef _OPENMP
    r->threads = omp_get_max_threads();
#endif
    const Config *c = w->rb ? &cs->rb : &cs->euler;
    const SizePreset *sz = o->size;
    int H, W, h, w_;
    grids(c, sz, w->rb, &H, &W, &h, &w_);
    int pix = c->dataset.n_fields;
    OptimConfig oc = adamw_of(c);
    if (w->kind == W_AE_TRAIN) {
        DcaeConfig dc;
        dcae_config_from(c, pix, &dc);
        int B = w->rb ? sz->ae_batch_rb : sz->ae_batch_euler;
        double P = (double)dcae_param_count(&dc);
        if (w->psgd) oc = ae_optim_of(c);
        if (w->psgd && oc.kind != OPTIM_PSGD) lola_die("bench-lola: %s: ae_optim.optimizer is not psgd", w->name); // main checks first
        // Optimizer state: AdamW's two moments, or PSGD's momentum, factors, caches and scratch.
        ParamTable pt;
        memset(&pt, 0, sizeof pt);
        dcae_build_table(&dc, &pt);
        double opt_floats = (double)optim_state_floats(&oc, &pt);
        ptable_free(&pt);
        double need = 4.0 * (2 * P + opt_floats + (double)dcae_arena_floats(&dc, B, H, W) + 2.0 * B * pix * H * W);
        r->batch = B, r->params = P;
        printf("# %s: training layout: %s activation storage%s, %.1f MiB of activations per sample (src/dcae.c)\n", w->name,
               nn_bf16_activations() ? "bf16" : "fp32", dc.checkpointing ? ", ae.checkpointing (ResBlocks recomputed)" : "",
               ((double)dcae_arena_floats(&dc, 2, H, W) - (double)dcae_arena_floats(&dc, 1, H, W)) * 4.0 / 1048576.0);
        if (!memory_fits(w, need,
                         w->psgd ? "parameters, gradients, PSGD state and scratch, activations" : "parameters, gradients, optimizer state, activations",
                         r))
            return;
        if (!w->psgd) {
            TrainBench tb;
            train_bench_ae(&tb, &dc, B, H, W, &oc, o->seed);
            r->flops_per_value = tb.flops_per_sample;
            r->setup_s = lola_time() - t_start;
            printf("# %s: DCAE %.0f parameters, input %dx%dx%d, batch %d, setup %.2f s\n", w->name, P, pix, H, W, B, r->setup_s);
            fflush(stdout);
            measure(o, w, train_unit, NULL, &tb, B, t_start, r);
            r->loss = tb.last_loss;
            return;
        }
        static PsgdBench pb; // static: the child's only one
        memset(&pb, 0, sizeof pb);
        train_bench_ae(&pb.tb, &dc, B, H, W, &oc, o->seed);
        const PsgdConfig *pc = &pb.tb.opt.psgd->cfg;
        r->psgd = 1;
        r->psgd_min_prob = pc->min_prob;
        r->psgd_k_steady = psgd_steady_step(pc);
        r->psgd_state_gb = 4.0 * opt_floats / 1e9;
        if (o->psgd_step == 0 && r->psgd_k_steady < 0) {
            r->status = 3;
            snprintf(r->note, sizeof r->note, "--psgd-step steady: p(k) = max(1/%g, %g^k) never reaches its floor", 1.0 / pc->min_prob,
                     pc->prob_decay);
            return;
        }
        r->psgd_k_start = o->psgd_step > 0 ? o->psgd_step : r->psgd_k_steady;
        pb.tb.opt.t = r->psgd_k_start - 1; // optim_step counts this step as k = psgd_k_start
        r->flops_per_value = pb.tb.flops_per_sample;
        r->setup_s = lola_time() - t_start;
        printf("# %s: DCAE %.0f parameters, input %dx%dx%d, batch %d, PSGD-Kron lr %g beta %g, p(k) = max(1/%g, %g^k) (floor from k = %lld), "
               "dense axes <= %d, state + scratch %.3f GB, first step k = %lld, setup %.2f s\n",
               w->name, P, pix, H, W, B, oc.lr, pc->beta, 1.0 / pc->min_prob, pc->prob_decay, (long long)r->psgd_k_steady, pc->max_size,
               r->psgd_state_gb, (long long)r->psgd_k_start, r->setup_s);
        fflush(stdout);
        measure(o, w, psgd_unit, psgd_begin_timed, &pb, B, t_start, r);
        r->loss = pb.tb.last_loss;
        r->psgd_k0 = pb.k0, r->psgd_k1 = pb.k1;
        r->psgd_steps = pb.steps, r->psgd_updates = pb.updates, r->psgd_skipped = pb.skipped;
        r->psgd_p_mean = pb.steps ? pb.p_sum / pb.steps : NAN;
        r->psgd_ms_update = pb.updates ? 1e3 * pb.s_update / pb.updates : NAN;
        r->psgd_ms_plain = pb.steps > pb.updates ? 1e3 * pb.s_plain / (pb.steps - pb.updates) : NAN;
        return;
    }
    if (w->kind == W_EMU_TRAIN) {
        EmuConfig ec;
        emu_config_of(c, sz, w->rb, w->emu, &ec);
        int B = sz->dit_batch;
        Emulator probe;
        emu_build(&probe, &ec);
        double P = (double)probe.table.total;
        double need = 4.0 * (4 * P + (double)emu_arena_floats(&probe, B, 1) + 2.0 * B * ec.vit.in_channels * vit_tokens(&ec.vit));
        emu_destroy(&probe);
        r->batch = B, r->params = P;
        if (!memory_fits(w, need, "parameters, gradients, optimizer state, activations", r)) return;
        TrainBench tb;
        const CfgTrajectory *tr = &c->trajectory;
        train_bench_emu(&tb, &ec, B, tr->context_lmbda, tr->context_rho, tr->context_atleast, &oc, o->seed);
        r->flops_per_value = tb.flops_per_sample;
        r->setup_s = lola_time() - t_start;
        printf("# %s: %s %.0f parameters, latents %dx%dx%dx%d, %d label features, batch %d, setup %.2f s\n", w->name,
               w->emu == EMU_DM ? "denoiser" : "solver", P, ec.vit.in_channels, ec.vit.shape[0], ec.vit.shape[1], ec.vit.shape[2],
               ec.label_features, B, r->setup_s);
        fflush(stdout);
        measure(o, w, train_unit, NULL, &tb, B, t_start, r);
        r->loss = tb.last_loss;
        return;
    }
    // Eval and window units.
    EvalBench e;
    memset(&e, 0, sizeof e);
    e.cfg = c;
    e.dm = w->emu == EMU_DM;
    e.with_ae = w->kind == W_EVAL;
    e.C = c->ae.lat_channels, e.Lw = c->trajectory.length, e.h = h, e.w = w_, e.S = (size_t)h * w_;
    e.pix = pix, e.H = H, e.W = W;
    e.members = eval_members(c, w);
    e.L_tot = eval_states(c);
    e.scfg = sampler_of(c);
    int dchunks = c->eval.decode_chunks > 0 ? c->eval.decode_chunks : 1;
    e.chunk = (e.members + dchunks - 1) / dchunks;
    if (e.chunk < 1) e.chunk = 1;
    if (e.Lw > 64) lola_die("bench-lola: trajectory.length %d > 64", e.Lw);
    EmuConfig ec;
    emu_config_of(c, sz, w->rb, w->emu, &ec);
    DcaeConfig dc;
    dcae_config_from(c, pix, &dc);
    size_t win = (size_t)e.C * e.Lw * e.S, nwin = (size_t)e.members * win;
    Emulator probe;
    emu_build(&probe, &ec);
    double Pe = (double)probe.table.total, Pa = e.with_ae ? (double)dcae_param_count(&dc) : 0;
    double need = 4.0 * (2 * Pe + (double)emu_arena_floats(&probe, e.members, 0) + 4.0 * nwin);
    emu_destroy(&probe);
    if (e.with_ae) need += 4.0 * (2 * Pa + (double)dcae_eval_arena_floats(&dc, e.chunk, H, W)); // decode only
    r->batch = e.members, r->params = Pe + Pa;
    if (!memory_fits(w, need, e.with_ae ? "parameters, activations, windows, decoder arena" : "parameters, activations, windows", r)) return;
    emu_create(&e.emu, &ec);
    emu_init_params(&e.emu, o->seed);
    e.mask = nn_alloc(nwin);
    e.h_mask = LOLA_NEW(float, nwin);
    if (ec.label_features > 0) e.label = bench_randn((size_t)e.members * ec.label_features, o->seed ^ 0x3333);
    if (e.dm) e.work = nn_alloc(sampler_work_floats(&e.scfg, nwin));
    e.seeds = LOLA_NEW(uint64_t, e.members);
    double fwd = emu_forward_flops(&ec), evals = e.dm ? sampler_evaluations(&e.scfg) : 1;
    if (e.with_ae) {
        dcae_create(&e.ae, &dc);
        dcae_init_params(&e.ae, o->seed);
        e.d_z = nn_alloc((size_t)e.chunk * e.C * e.S);
        e.d_y = nn_alloc((size_t)e.chunk * pix * H * W);
        e.h_y = LOLA_NEW(float, (size_t)e.members * pix * H * W);
        int ctx = c->eval.context;
        e.z_ctx = LOLA_NEW(float, (size_t)e.C * ctx * e.S);
        Rng rng = rng_seed(o->seed ^ 0x4444);
        for (size_t i = 0; i < (size_t)e.C * ctx * e.S; i++) e.z_ctx[i] = (float)rng_normal(&rng);
        RolloutConfig rc = {e.Lw, ctx, c->eval.overlap, e.C, e.S, e.members};
        int calls = rollout_calls(&rc, e.L_tot);
        // FLOPs per state per member: calls x evaluations x forward / states + one decode.
        r->flops_per_value = calls * evals * fwd / e.L_tot + dcae_decoder_flops(&dc, H, W);
        r->setup_s = lola_time() - t_start;
        printf("# %s: %s %.0f + DCAE %.0f parameters, %d states (%d calls of %d evaluations), %d member(s), latents %dx%dx%dx%d, "
               "decode %dx%dx%d in chunks of %d, setup %.2f s\n",
               w->name, e.dm ? "denoiser" : "solver", Pe, Pa, e.L_tot, calls, (int)evals, e.members, e.C, e.Lw, h, w_, pix, H, W,
               e.chunk, r->setup_s);
        fflush(stdout);
        measure(o, w, eval_unit, NULL, &e, (double)e.members * e.L_tot, t_start, r);
    } else {
        e.y = nn_alloc(nwin);
        e.x_hat = nn_alloc(nwin);
        float *hy = LOLA_NEW(float, nwin);
        Rng rng = rng_seed(o->seed ^ 0x5555);
        for (int b = 0; b < e.members; b++)
            for (int ch = 0; ch < e.C; ch++)
                for (int l = 0; l < c->eval.context; l++)
                    for (size_t p = 0; p < e.S; p++) hy[(((size_t)b * e.C + ch) * e.Lw + l) * e.S + p] = (float)rng_normal(&rng);
        nn_to_backend(e.y, hy, nwin);
        free(hy);
        r->flops_per_value = evals * e.members * fwd;
        r->setup_s = lola_time() - t_start;
        printf("# %s: %s %.0f parameters, one window of %dx%dx%dx%d (context %d), %d evaluation(s), %d member(s), setup %.2f s\n",
               w->name, e.dm ? "denoiser" : "solver", Pe, e.C, e.Lw, h, w_, c->eval.context, (int)evals, e.members, r->setup_s);
        fflush(stdout);
        measure(o, w, window_unit, NULL, &e, 1.0, t_start, r);
    }
}

// ---------------------------------------------------------------------------------------------
// Parent: one child per workload

// Runs workload w in a child; its stderr is relayed and the last line kept for the report.
static void run_child(const Opts *o, const Configs *cs, const Workload *w, Result *r) {
    fflush(stdout);
    fflush(stderr);
    int ep[2];
    if (pipe(ep) != 0) lola_die("bench-lola: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) lola_die("bench-lola: fork: %s", strerror(errno));
    if (pid == 0) {
        close(ep[0]);
        dup2(ep[1], 2);
        close(ep[1]);
        run_workload(o, cs, w, r);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        r->maxrss_mb = ru.ru_maxrss / 1024.0;
        r->peak_gb = peak_backend_bytes() / 1e9;
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    close(ep[1]);
    char last[512] = "", cur[512] = "";
    size_t cl = 0;
    double t0 = lola_time(), kill_after = o->max_seconds > 0 ? 1.5 * o->max_seconds + 30 : 0;
    int status = 0, done = 0, killed = 0, open_ = 1;
    while (!done || open_) {
        if (open_) {
            struct pollfd pf = {ep[0], POLLIN, 0};
            int pr = poll(&pf, 1, 100);
            if (pr > 0) {
                char buf[4096];
                ssize_t n = read(ep[0], buf, sizeof buf);
                if (n <= 0) open_ = 0;
                else {
                    fwrite(buf, 1, (size_t)n, stderr);
                    for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] == '\n') {
                            cur[cl] = '\0';
                            if (cl > 0 && strncmp(cur, "HINT", 4)) memcpy(last, cur, cl + 1);
                            cl = 0;
                        } else if (cl + 1 < sizeof cur) cur[cl++] = buf[i];
                    }
                }
            }
        } else {
            usleep(20000);
        }
        if (!done) {
            pid_t q = waitpid(pid, &status, WNOHANG);
            if (q == pid) done = 1;
            else if (kill_after > 0 && !killed && lola_time() - t0 > kill_after) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        }
    }
    close(ep[0]);
    if (killed) {
        // Out of time, like a skip: the first warm-up unit (or the setup) alone outran the budget.
        r->status = 2;
        snprintf(r->note, sizeof r->note, "stopped after %.0f s (1.5 x --max-seconds + 30 s) before %s", lola_time() - t0,
                 r->warmup_s > 0 ? "a round finished" : "the first warm-up unit finished");
    } else if (WIFSIGNALED(status)) {
        r->status = 3;
        snprintf(r->note, sizeof r->note, "child killed by signal %d (%s)%s%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 last[0] ? ": " : "", last);
    } else if (WEXITSTATUS(status) != 0 || r->status == 0) {
        r->status = 3;
        snprintf(r->note, sizeof r->note, "exit status %d%s%s", WEXITSTATUS(status), last[0] ? ": " : "", last);
    }
}

// ---------------------------------------------------------------------------------------------
// Report

typedef struct {
    double tf32, bf16, best, other, mem_a, mem_b; // NAN = none
} Ref;

static Ref ref_of(const Anchor *a, const Workload *w) {
    Ref f = {NAN, NAN, NAN, NAN, NAN, NAN};
    if (!a) return f;
    if (w->k_tf32) f.tf32 = anchor_get(a, w->k_tf32);
    if (w->k_bf16) f.bf16 = anchor_get(a, w->k_bf16);
    if (w->k_best) f.best = anchor_get(a, w->k_best);
    if (w->k_other) f.other = anchor_get(a, w->k_other);
    if (w->k_mem_a) f.mem_a = anchor_get(a, w->k_mem_a);
    if (w->k_mem_b) f.mem_b = anchor_get(a, w->k_mem_b);
    return f;
}

// The best reference speed in the workload's unit (largest samples/s, smallest ms), over every
// setting the reference measured (all four columns).
static double ref_best(const Workload *w, const Ref *f) {
    double v[4] = {f->tf32, f->bf16, f->best, f->other}, b = NAN;
    for (int i = 0; i < 4; i++)
        if (isfinite(v[i]) && (!isfinite(b) || (w->higher_better ? v[i] > b : v[i] < b))) b = v[i];
    return b;
}

static char *fmt(char *buf, size_t cap, double v) {
    if (!isfinite(v)) snprintf(buf, cap, "-");
    else if (fabs(v) >= 1000) snprintf(buf, cap, "%.0f", v);
    else if (fabs(v) >= 10) snprintf(buf, cap, "%.1f", v);
    else if (fabs(v) >= 1) snprintf(buf, cap, "%.2f", v);
    else snprintf(buf, cap, "%.3g", v);
    return buf;
}

static const char *status_name(int s) { return s == 1 ? "ok" : s == 2 ? "skipped" : s == 3 ? "failed" : "not-run"; }

// Checks a model number against the spec; prints one line; returns 1 on a mismatch.
static int check_line(const char *what, double ours, double spec, double tol_rel, const char *unit, double scale, const char *src) {
    int bad = fabs(ours - spec) > tol_rel * fabs(spec);
    int dec = scale < 1e-10 ? 3 : 1; // TFLOP with 3 decimals, GFLOP with 1
    if (scale == 1)
        printf("  %-44s %15.0f   spec %15.0f   %s  (%s)\n", what, ours, spec, bad ? "MISMATCH" : "equal", src);
    else
        printf("  %-44s %12.*f %-4s spec %10.*f %-4s %+6.2f%%  %s (%s)\n", what, dec, ours * scale, unit, dec, spec * scale, unit,
               100 * (ours - spec) / spec, bad ? "MISMATCH" : "ok", src);
    return bad;
}

// Parameter counts of the paper configs and the FLOP model at the paper sizes vs lola-spec.md.
static int print_model_checks(const Configs *cs) {
    const SizePreset *paper = size_find("paper");
    const Config *e = &cs->euler_paper, *b = &cs->rb_paper;
    int bad = 0;
    DcaeConfig ae_e, ae_b;
    dcae_config_from(e, e->dataset.n_fields, &ae_e);
    dcae_config_from(b, b->dataset.n_fields, &ae_b);
    EmuConfig dm_e, dm_b, ns_e, ns_b;
    emu_config_of(e, paper, 0, EMU_DM, &dm_e);
    emu_config_of(b, paper, 1, EMU_DM, &dm_b);
    emu_config_of(e, paper, 0, EMU_NS, &ns_e);
    emu_config_of(b, paper, 1, EMU_NS, &ns_b);
    printf("Parameter counts of the paper configs (configs/euler.yaml, rayleigh_benard.yaml; C_lat %d) vs lola-spec.md 10.2 / 4.3:\n",
           e->ae.lat_channels);
    bad |= check_line("AE Euler (paper-era DCAE)", (double)dcae_param_count(&ae_e), 237625733, 0, "", 1, "10.2, checkpoint");
    bad |= check_line("AE Rayleigh-Benard", (double)dcae_param_count(&ae_b), 237624580, 0, "", 1, "10.2, checkpoint");
    bad |= check_line("DM vit_large Euler (5 labels)", (double)emu_param_count(&dm_e), 222888256, 0, "", 1, "4.3");
    bad |= check_line("DM vit_large Rayleigh-Benard (6 labels)", (double)emu_param_count(&dm_b), 222888512, 0, "", 1, "4.3");
    bad |= check_line("NS vit_large Rayleigh-Benard (6 labels)", (double)emu_param_count(&ns_b), 222756928, 0, "", 1, "10.2, checkpoint");
    bad |= check_line("NS vit_large Euler (5 labels)", (double)emu_param_count(&ns_e), 222756928 - 256, 0, "", 1,
                      "4.3 formula: RB - 1 label x 256");
    int H = paper->euler_hw[0], W = paper->euler_hw[1], Hb = paper->rb_hw[0], Wb = paper->rb_hw[1];
    double enc_e = dcae_encoder_flops(&ae_e, H, W), dec_e = dcae_decoder_flops(&ae_e, H, W);
    double enc_b = dcae_encoder_flops(&ae_b, Hb, Wb), dec_b = dcae_decoder_flops(&ae_b, Hb, Wb);
    double f_dm_e = emu_forward_flops(&dm_e), f_dm_b = emu_forward_flops(&dm_b), f_ns_e = emu_forward_flops(&ns_e);
    printf("FLOP model (forward per sample, 2 x MACs) at the paper sizes vs lola-spec.md 2.6 / 4.3 / 10.5 / 7.1:\n");
    bad |= check_line("AE encoder, Euler 5x512x512", enc_e, 700.8e9, 2e-3, "GF", 1e-9, "2.6");
    bad |= check_line("AE decoder, Euler", dec_e, 700.8e9, 2e-3, "GF", 1e-9, "2.6");
    bad |= check_line("AE encoder, RB 4x512x128", enc_b, 175.0e9, 2e-3, "GF", 1e-9, "2.6");
    bad |= check_line("AE decoder, RB", dec_b, 175.0e9, 2e-3, "GF", 1e-9, "2.6");
    bad |= check_line("DM vit_large, Euler 64x5x16x16 (1280 tokens)", f_dm_e, 631.3e9, 2e-3, "GF", 1e-9, "4.3");
    bad |= check_line("DM vit_large, RB 64x5x16x4 (320 tokens)", f_dm_b, 137.7e9, 2e-3, "GF", 1e-9, "4.3");
    printf("  (informational, spec values rounded:)\n");
    check_line("AE training per sample, Euler (3 x fwd)", 3 * (enc_e + dec_e), 4.2e12, 0.02, "TF", 1e-12, "2.6, approx.");
    check_line("AE training per sample, RB", 3 * (enc_b + dec_b), 1.05e12, 0.02, "TF", 1e-12, "2.6, approx.");
    check_line("DiT training per sample, Euler (3 x fwd)", 3 * f_dm_e, 3 * 631e9, 0.02, "TF", 1e-12, "DESIGN 9");
    check_line("eval DM per state per member, Euler", 7.0 * 16 * f_dm_e / 26 + dec_e, 3.42e12, 0.02, "TF", 1e-12, "7.1");
    check_line("eval NS per state, Euler", 7.0 * f_ns_e / 26 + dec_e, 0.87e12, 0.02, "TF", 1e-12, "7.1");
    return bad;
}

// 1 for a --set that changes memory only, never the model or its results: the checkpointing keys
// (blocks recomputed in the backward; bit-identical, tests/test_dcae.c, tests/test_vit.c).
static int memory_only_set(const char *kv) {
    static const char *keys[] = {"ae.checkpointing=", "denoiser.checkpointing=", "surrogate.checkpointing="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strncmp(kv, keys[i], strlen(keys[i]))) return 1;
    return 0;
}

// The reference figures are comparable only at the paper size with the configs as they are (no --set
// other than the memory-only ones).
static int comparable(const Opts *o) {
    if (strcmp(o->size->name, "paper")) return 0;
    for (int i = 0; i < o->n_sets; i++)
        if (!memory_only_set(o->sets[i])) return 0;
    return 1;
}

// 1 when the workload has a PyTorch reference figure at all (the PSGD workloads have none).
static int has_ref(const Workload *w) { return w->k_tf32 || w->k_bf16 || w->k_best || w->k_other || w->k_mem_a || w->k_mem_b; }

// A row is comparable when the run is and the workload has a reference.
static int row_comparable(const Opts *o, const Workload *w) { return comparable(o) && has_ref(w); }

// The speed ratio to the best reference (NAN when not comparable, not measured or no reference).
static double ratio_of(const Opts *o, const Workload *w, const Result *r, const Ref *f) {
    double best = ref_best(w, f);
    if (r->status != 1 || !row_comparable(o, w) || !isfinite(best)) return NAN;
    return w->higher_better ? r->value / best : best / r->value;
}

// The goal of DESIGN.md 9 when the run is comparable to it, else NAN.
static double goal_of(const Opts *o, const Workload *w) { return w->goal > 0 && row_comparable(o, w) ? w->goal : NAN; }

// The AdamW workload a PSGD workload pairs with (same dataset), or -1.
static int adamw_twin(const Workload *w) {
    for (int i = 0; i < N_WORKLOADS; i++)
        if (WORKLOADS[i].kind == W_AE_TRAIN && !WORKLOADS[i].psgd && WORKLOADS[i].rb == w->rb) return i;
    return -1;
}

// PSGD speed / the AdamW twin's speed when both ran in this invocation, else NAN.
static double vs_adamw(const Workload *w, const int *sel, const Result *res, int i) {
    int j = w->psgd ? adamw_twin(w) : -1;
    if (j < 0 || !sel[j] || res[j].status != 1 || res[i].status != 1) return NAN;
    return res[i].value / res[j].value;
}

// Expected speed at the schedule's floor p = 1/frequency from the timed steps with and without a
// preconditioner update: B / ((1 - p) t_plain + p t_update); NAN unless both kinds were timed.
static double psgd_steady_value(const Result *r) {
    double p = r->psgd_min_prob, t = (1 - p) * r->psgd_ms_plain + p * r->psgd_ms_update;
    return r->status == 1 && isfinite(t) && t > 0 ? r->batch * 1e3 / t : NAN;
}

// The lines printed under a PSGD row: the cost next to AdamW and the schedule over the timed steps.
static void print_psgd_lines(const Opts *o, const Workload *w, const int *sel, const Result *res, int i) {
    const Result *r = &res[i];
    char b[4][32];
    int j = adamw_twin(w);
    double ratio = vs_adamw(w, sel, res, i);
    if (r->status != 1) return;
    if (isfinite(ratio))
        printf("  -> %s: %.3g x the speed of %s (AdamW) in this run (%s vs %s %s)\n", w->name, ratio, WORKLOADS[j].name, fmt(b[0], 32, r->value),
               fmt(b[1], 32, res[j].value), w->unit);
    else
        printf("  -> %s: no %s (AdamW) result in this run for the ratio (--workload %s,%s)\n", w->name, j >= 0 ? WORKLOADS[j].name : "AdamW",
               j >= 0 ? WORKLOADS[j].name : "?", w->name);
    char steady[96];
    if (r->psgd_k_steady > 0) snprintf(steady, sizeof steady, "p = 1/%g from k = %lld", 1.0 / r->psgd_min_prob, (long long)r->psgd_k_steady);
    else snprintf(steady, sizeof steady, "p never reaches 1/%g", 1.0 / r->psgd_min_prob);
    printf("  -> timed optimizer steps k = %lld..%lld (--psgd-step %lld%s; %s): preconditioner updated on %d of %d (%.0f%%; schedule's mean "
           "p(k) %.1f%%)%s\n",
           (long long)r->psgd_k0, (long long)r->psgd_k1, (long long)r->psgd_k_start, o->psgd_step == 0 ? " = steady" : "", steady,
           r->psgd_updates, r->psgd_steps, r->psgd_steps ? 100.0 * r->psgd_updates / r->psgd_steps : 0.0, 100 * r->psgd_p_mean,
           r->psgd_skipped ? " (+ skipped non-finite steps)" : "");
    double sv = psgd_steady_value(r);
    char proj[96] = "";
    if (isfinite(sv)) snprintf(proj, sizeof proj, "; expected at p = 1/%g: %s %s", 1.0 / r->psgd_min_prob, fmt(b[2], 32, sv), w->unit);
    const char *hint = isfinite(sv) ? ""
                       : r->psgd_updates == 0 ? " (no update among the timed steps: more --seconds / --rounds time some)"
                                              : " (--psgd-step steady times the steps without updates)";
    printf("  -> step %s ms with an update, %s ms without%s%s\n", fmt(b[0], 32, r->psgd_ms_update), fmt(b[1], 32, r->psgd_ms_plain), proj,
           hint);
}

static void print_table(const Opts *o, const Anchor *a, const int *sel, const Result *res) {
    int paper = comparable(o);
    printf("\n== bench-lola: size %s%s ==\n", o->size->name,
           paper ? ""
           : strcmp(o->size->name, "paper")
               ? " (the reference columns are the PyTorch H200 figures at the paper sizes: not comparable, no goal, no ratio)"
               : " (--set changed the paper configs: the reference columns are not comparable, no goal, no ratio)");
    printf("%-13s %-16s %9s %8s %8s %8s %9s %7s %7s %8s %9s %8s %s\n", "workload", "unit", "ours", "ref-TF32", "ref-bf16", "ref-best",
           "ref-other", "goal", "x-best", "MFU", "peak-GB", "ref-GB", "status");
    char b[12][32];
    for (int i = 0; i < N_WORKLOADS; i++) {
        if (!sel[i]) continue;
        const Workload *w = &WORKLOADS[i];
        const Result *r = &res[i];
        Ref f = ref_of(a, w);
        double ratio = ratio_of(o, w, r, &f);
        char goal[48] = "-", refgb[80] = "-", mfu[32] = "-";
        if (w->goal > 0) {
            if (paper) snprintf(goal, sizeof goal, "%s%g", w->higher_better ? ">=" : "<=", w->goal);
            else snprintf(goal, sizeof goal, "n/c");
        }
        if (isfinite(f.mem_a)) {
            if (isfinite(f.mem_b)) snprintf(refgb, sizeof refgb, "%s/%s", fmt(b[1], 32, f.mem_a), fmt(b[2], 32, f.mem_b));
            else snprintf(refgb, sizeof refgb, "%s", fmt(b[1], 32, f.mem_a));
        }
        if (r->status == 1) snprintf(mfu, sizeof mfu, "%.3g%%", 100 * r->mfu);
        char ratio_s[32];
        if (isfinite(ratio)) snprintf(ratio_s, sizeof ratio_s, "%.3g", ratio);
        else snprintf(ratio_s, sizeof ratio_s, "%s", paper || !has_ref(w) ? "-" : "n/c");
        printf("%-13s %-16s %9s %8s %8s %8s %9s %7s %7s %8s %9s %8s %s%s%s\n", w->name, w->unit,
               r->status == 1 ? fmt(b[3], 32, r->value) : "-", fmt(b[4], 32, f.tf32), fmt(b[5], 32, f.bf16), fmt(b[6], 32, f.best),
               fmt(b[8], 32, f.other), goal, ratio_s, mfu, r->status == 1 || r->peak_gb > 0 ? fmt(b[7], 32, r->peak_gb) : "-", refgb,
               status_name(r->status), r->note[0] ? ": " : "", r->note);
        if (w->psgd) print_psgd_lines(o, w, sel, res, i);
    }
    printf("x-best: our speed / the best reference speed of any column (>1 = faster than every PyTorch setting); MFU: model FLOP/s / %g "
           "TFLOP/s;\npeak-GB: backend peak (ours, GB = 1e9 B), ref-GB: the reference's peaks (settings below); goals: DESIGN.md 9 (AE Euler memory goal <= 10 GB)%s.\n",
           o->peak_tflops, paper ? "" : "; n/c: not comparable (size or --set differ from the reference's)");
    if (!a) return;
    printf("Reference settings (%s: PyTorch LoLa 073f636 + azula 0.3.1, torch 2.11, one H200):\n"
           "  ref-TF32 = eager, TF32; ref-bf16 = eager, bf16 autocast; ref-best = torch.compile + bf16 autocast; ref-other and ref-GB per row:\n",
           a->path);
    for (int i = 0; i < N_WORKLOADS; i++) {
        const Workload *w = &WORKLOADS[i];
        if (!sel[i] || (!w->ref_note && !w->mem_what)) continue;
        printf("  %-13s %s%s%s%s\n", w->name, w->ref_note ? w->ref_note : "", w->ref_note && w->mem_what ? "; " : "",
               w->mem_what ? "ref-GB = " : "", w->mem_what ? w->mem_what : "");
    }
}

// s as a JSON string (quotes and backslashes escaped, control characters as spaces).
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc((unsigned char)*p >= 0x20 ? *p : ' ', f);
    }
    fputc('"', f);
}

static void print_results(const Opts *o, const Anchor *a, const int *sel, const Result *res, FILE *json) {
    if (json) {
        fprintf(json, "{\n \"tool\": \"bench-lola\",\n \"size\": \"%s\",\n \"peak_tflops\": %g,\n \"sets\": [", o->size->name,
                o->peak_tflops);
        for (int i = 0; i < o->n_sets; i++) {
            if (i) fprintf(json, ", ");
            json_string(json, o->sets[i]);
        }
        fprintf(json, "],\n \"workloads\": [");
    }
    int first = 1;
    for (int i = 0; i < N_WORKLOADS; i++) {
        if (!sel[i]) continue;
        const Workload *w = &WORKLOADS[i];
        const Result *r = &res[i];
        Ref f = ref_of(a, w);
        double ratio = ratio_of(o, w, r, &f), goal = goal_of(o, w);
        int train = w->kind == W_AE_TRAIN || w->kind == W_EMU_TRAIN, paper = row_comparable(o, w), ok = r->status == 1;
        // PSGD rows: the timed steps k, their preconditioner updates, per-kind step times, the
        // expected speed at the schedule's floor and the ratio to the AdamW twin (NAN: none).
        double share = ok && r->psgd_steps ? (double)r->psgd_updates / r->psgd_steps : NAN, sv = psgd_steady_value(r);
        double vs = vs_adamw(w, sel, res, i), pmean = ok ? r->psgd_p_mean : NAN;
        printf("RESULT workload=%s size=%s status=%s unit=%s value=%.6g rounds=", w->name, o->size->name, status_name(r->status), w->unit,
               r->status == 1 ? r->value : NAN);
        for (int k = 0; k < r->n_rounds; k++) printf("%s%.6g", k ? "," : "", r->rounds[k]);
        if (!r->n_rounds) printf("-");
        printf(" batch=%d params=%.0f flops_per_value=%.6g tflops=%.6g mfu=%.6g peak_gb=%.4f maxrss_mb=%.1f threads=%d", r->batch,
               r->params, r->flops_per_value, r->status == 1 ? r->tflops : NAN, r->status == 1 ? r->mfu : NAN, r->peak_gb, r->maxrss_mb,
               r->threads);
        if (train && r->status == 1) printf(" loss=%.6g", r->loss); // the last training step's loss (eval/window: none)
#ifndef LOLA_BACKEND_CUDA
        printf(" cpu_value=%.6g", r->status == 1 ? r->cpu_value : NAN);
#endif
        if (w->psgd)
            printf(" psgd_step_start=%lld psgd_step_first=%lld psgd_step_last=%lld psgd_steps=%d psgd_updates=%d psgd_skipped=%d "
                   "psgd_update_share=%.6g psgd_p_mean=%.6g psgd_ms_update=%.6g psgd_ms_plain=%.6g psgd_steady_step=%lld "
                   "psgd_steady_value=%.6g psgd_state_gb=%.6g vs_adamw=%.6g",
                   (long long)r->psgd_k_start, (long long)r->psgd_k0, (long long)r->psgd_k1, r->psgd_steps, r->psgd_updates, r->psgd_skipped,
                   share, pmean, ok ? r->psgd_ms_update : NAN, ok ? r->psgd_ms_plain : NAN, (long long)r->psgd_k_steady, sv, r->psgd_state_gb,
                   vs);
        printf(" ref_tf32=%.6g ref_bf16=%.6g ref_best=%.6g ref_other=%.6g ref_peak_gb=%.6g ref_peak2_gb=%.6g comparable=%d goal=%.6g "
               "ratio_best=%.6g backend=\"%s\"\n",
               f.tf32, f.bf16, f.best, f.other, f.mem_a, f.mem_b, paper, goal, ratio, r->backend);
        if (json) {
            // JSON has no NaN: missing numbers are null.
#define JNUM(name, v) (isfinite(v) ? fprintf(json, ", \"%s\": %.9g", name, (double)(v)) : fprintf(json, ", \"%s\": null", name))
            fprintf(json, "%s\n  {\"workload\": \"%s\", \"status\": \"%s\", \"unit\": \"%s\"", first ? "" : ",", w->name, status_name(r->status),
                    w->unit);
            JNUM("value", r->status == 1 ? r->value : NAN);
            fprintf(json, ", \"rounds\": [");
            for (int k = 0; k < r->n_rounds; k++) fprintf(json, "%s%.9g", k ? ", " : "", r->rounds[k]);
            fprintf(json, "], \"batch\": %d", r->batch);
            JNUM("params", r->params);
            JNUM("flops_per_value", r->flops_per_value);
            JNUM("tflops", r->status == 1 ? r->tflops : NAN);
            JNUM("mfu", r->status == 1 ? r->mfu : NAN);
            JNUM("peak_gb", r->peak_gb);
            JNUM("maxrss_mb", r->maxrss_mb);
            fprintf(json, ", \"threads\": %d", r->threads);
#ifndef LOLA_BACKEND_CUDA
            JNUM("cpu_value", r->status == 1 ? r->cpu_value : NAN);
#endif
            JNUM("ref_tf32", f.tf32);
            JNUM("ref_bf16", f.bf16);
            JNUM("ref_best", f.best);
            JNUM("ref_other", f.other);
            JNUM("ref_peak_gb", f.mem_a);
            JNUM("ref_peak2_gb", f.mem_b);
            if (train && r->status == 1) JNUM("loss", r->loss);
            if (w->psgd) {
                fprintf(json, ", \"psgd_step_start\": %lld, \"psgd_step_first\": %lld, \"psgd_step_last\": %lld, \"psgd_steps\": %d, "
                              "\"psgd_updates\": %d, \"psgd_skipped\": %d, \"psgd_steady_step\": %lld",
                        (long long)r->psgd_k_start, (long long)r->psgd_k0, (long long)r->psgd_k1, r->psgd_steps, r->psgd_updates,
                        r->psgd_skipped, (long long)r->psgd_k_steady);
                JNUM("psgd_update_share", share);
                JNUM("psgd_p_mean", pmean);
                JNUM("psgd_ms_update", ok ? r->psgd_ms_update : NAN);
                JNUM("psgd_ms_plain", ok ? r->psgd_ms_plain : NAN);
                JNUM("psgd_steady_value", sv);
                JNUM("psgd_state_gb", r->psgd_state_gb);
                JNUM("vs_adamw", vs);
            }
            fprintf(json, ", \"ref_settings\": ");
            char rs[400];
            snprintf(rs, sizeof rs, "ref_tf32: eager TF32; ref_bf16: eager bf16 autocast; ref_best: torch.compile + bf16 autocast%s%s%s%s",
                     w->ref_note ? "; " : "", w->ref_note ? w->ref_note : "", w->mem_what ? "; ref_peak_gb/ref_peak2_gb: " : "",
                     w->mem_what ? w->mem_what : "");
            json_string(json, rs);
            fprintf(json, ", \"comparable\": %s", paper ? "true" : "false");
            JNUM("goal", goal);
            JNUM("ratio_best", ratio);
            fprintf(json, ", \"note\": ");
            json_string(json, r->note);
            fprintf(json, ", \"backend\": ");
            json_string(json, r->backend);
            fprintf(json, "}");
#undef JNUM
            first = 0;
        }
    }
    if (json) fprintf(json, "\n ]\n}\n");
}

int main(int argc, char **argv) {
    Opts o;
    parse(&o, argc, argv);
    int sel[N_WORKLOADS];
    select_workloads(o.workloads, sel);

    // Reference: every key the selected workloads use is read now, so a bad file fails up front.
    Anchor anchor, *a = NULL;
    char path[PATH_MAX + 128];
    if (!o.no_anchor) {
        if (o.anchor) snprintf(path, sizeof path, "%s", o.anchor);
        else snprintf(path, sizeof path, "%s/tools/anchor-pytorch-h200.json", o.root);
        anchor_load(&anchor, path);
        a = &anchor;
        for (int i = 0; i < N_WORKLOADS; i++)
            if (sel[i]) ref_of(a, &WORKLOADS[i]);
    }

    static Configs cs;
    char ce[PATH_MAX + 128], cr[PATH_MAX + 128];
    snprintf(ce, sizeof ce, "%s/%s", o.configs ? o.configs : o.root, o.configs ? "euler.yaml" : "configs/euler.yaml");
    snprintf(cr, sizeof cr, "%s/%s", o.configs ? o.configs : o.root, o.configs ? "rayleigh_benard.yaml" : "configs/rayleigh_benard.yaml");
    if (!file_exists(ce) || !file_exists(cr))
        lola_die_hint("run from the repository root or pass --configs DIR", "bench-lola: config '%s' or '%s' not found", ce, cr);
    load_config(&cs.euler_paper, ce, o.size, &o, 1);
    load_config(&cs.rb_paper, cr, o.size, &o, 1);
    load_config(&cs.euler, ce, o.size, &o, 0);
    load_config(&cs.rb, cr, o.size, &o, 0);
    for (int i = 0; i < N_WORKLOADS; i++) {
        const Config *c = WORKLOADS[i].rb ? &cs.rb : &cs.euler;
        if (sel[i] && WORKLOADS[i].psgd && c->ae_optim.optimizer != CFG_OPTIM_PSGD) {
            fprintf(stderr, "error: bench-lola: workload %s measures the config's PSGD-Kron, but ae_optim.optimizer of %s is not psgd\n"
                            "HINT: drop the --set that changes ae_optim.optimizer, or leave %s out of --workload\n",
                    WORKLOADS[i].name, WORKLOADS[i].rb ? cr : ce, WORKLOADS[i].name);
            exit(2);
        }
    }

    printf("bench-lola: size %s, configs %s + %s, reference %s\n", o.size->name, ce, cr, a ? a->path : "(none)");
    char warm[64];
    if (o.warmup >= 0) snprintf(warm, sizeof warm, "%d unit(s)", o.warmup);
    else snprintf(warm, sizeof warm, "2 training steps / 1 trajectory or window");
    printf("  timing: warm-up %s, %d round(s) of %g s each, median of the rounds; --max-seconds %g per workload%s\n", warm, o.rounds,
           o.seconds, o.max_seconds, o.max_seconds > 0 ? "" : " (no limit)");
    int bad = print_model_checks(&cs);
    printf("\n");
    // The --json file is opened before the workloads run, so a bad path fails in seconds, not after
    // a whole benchmark.
    FILE *json = NULL;
    if (o.json) {
        json = fopen(o.json, "w");
        if (!json) lola_die("bench-lola: cannot write --json '%s': %s", o.json, strerror(errno));
    }

    // Results live in shared memory written by the children.
    Result *res = mmap(NULL, sizeof(Result) * N_WORKLOADS, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (res == MAP_FAILED) lola_die("bench-lola: mmap: %s", strerror(errno));
    memset(res, 0, sizeof(Result) * N_WORKLOADS);
    int failed = 0;
    char backend[200] = "";
    for (int i = 0; i < N_WORKLOADS; i++) {
        if (!sel[i]) continue;
        const Workload *w = &WORKLOADS[i];
        printf("# %s: %s\n", w->name, w->what);
        run_child(&o, &cs, w, &res[i]);
        Result *r = &res[i];
        char vb[32];
        printf("# %s: %s%s%s%s%s\n", w->name, status_name(r->status), r->status == 1 ? " " : "", r->status == 1 ? fmt(vb, sizeof vb, r->value) : "",
               r->status == 1 ? " " : "", r->status == 1 ? w->unit : "");
        if (r->note[0]) printf("# %s: %s\n", w->name, r->note);
        if (r->status == 3) failed = 1;
        if (r->backend[0]) snprintf(backend, sizeof backend, "%s", r->backend);
        fflush(stdout);
    }
    print_table(&o, a, sel, res);
    printf("backend: %s\n", backend[0] ? backend : "(no workload started)");
    print_results(&o, a, sel, res, json);
    if (json && fclose(json) != 0) lola_die("bench-lola: writing '%s' failed", o.json);
    fflush(stdout); // the RESULT lines before the closing messages on stderr (one log for both)
    if (bad) fprintf(stderr, "bench-lola: the paper configs' parameter counts or FLOPs differ from lola-spec.md (MISMATCH above)\n");
    if (failed) fprintf(stderr, "bench-lola: at least one workload failed (see its note)\n");
    return bad || failed ? 1 : 0;
}
