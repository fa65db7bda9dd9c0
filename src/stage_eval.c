// stage_eval.c: `lola eval` (lola-spec.md 5; LoLa experiments/eval.py).
//
// For each selected test trajectory: load it whole, subsample x = x[max(0, start - (c-1)*stride)
// :: stride], pre-process, encode every state, decode them (x_ae, noisy = false), then score, in
// physical units, four methods against the truth and (relative rows) against x_ae:
//   autoencoder  the reconstruction x_ae (what the emulators can at best reach)
//   persistence  the last context state repeated (x_hat_t = x_{c-1}): the do-nothing baseline
//   diffusion    the latent DM rollout (eval.samples members, sampler eval.sampling.*)
//   surrogate    the latent neural-solver rollout (deterministic: one member)
// Metrics per (method, trajectory, field, state t >= c-1, relative) go to eval/stats.csv
// (metrics.h), lead time = (t - c + 1) * stride. Rollout states are decoded and scored as they are
// produced (rollout.h sink), so memory is bounded by one state of the ensemble.
// Speed (seconds per generated state per member) times the rollout and the decoding only.
//
// Trajectory selection: eval.indices when given, else eval.array draws u of Python's
// random.random() after random.seed(eval.seed), index floor(u * N), deduplicated (sorted).
//
// Ranks (R > 1). Trajectory k (k-th selected) is owned by rank k mod R, which loads and encodes it
// and computes all its rows. Two ways to run the diffusion ensemble:
//   members over ranks (when a denoiser is scored and eval.samples S >= R): rank r rolls out
//     members [r S / R, (r + 1) S / R) of every trajectory (>= 1 each since S >= R). The owner
//     broadcasts the encoded context states and the label; each scored state is decoded on every
//     rank and its members gathered (dist_gatherv, in member order) on the owner, which scores the
//     whole ensemble as a 1-rank run does. Memory: one decoded state of the ensemble on the owner.
//   trajectories over ranks (otherwise: few members, many trajectories): the owner rolls out all S
//     members of its trajectories alone, no communication until the end.
// The autoencoder, persistence and surrogate rows are computed by the owner only, in both modes.
// Random numbers do not depend on R: member m of call `call` starts from noise seeded by
// rng_hash(rng_hash(rng_hash(traj_seed, call), 1), m) and a stochastic sampler's k-th noise is
// seeded by rng_hash(rng_hash(rng_hash(rng_hash(traj_seed, call), 2), m), k) (sampler_run_members).
// So the rows equal those of a 1-rank run whatever R and the split, speed aside: bitwise on the
// CPU backend, where a member's forward pass does not depend on its batch (tests/t_eval_ranks.sh);
// a GPU BLAS choosing kernels by batch size may change the last bits. Speed is each rank's own
// rollout + decode time per state per member of its batch (gathers and metrics excluded); a row
// carries its owner's measurement. Rows are gathered on rank 0 in trajectory order.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "common.h"
#include "denoiser.h"
#include "diffusion.h"
#include "dist.h"
#include "metrics.h"
#include "nn.h"
#include "pyrandom.h"
#include "report.h"
#include "rollout.h"
#include "stages.h"

enum { M_AE = 0, M_PERSIST, M_DM, M_NS, N_METHODS };
static const char *const method_names[N_METHODS] = {"autoencoder", "persistence", "diffusion", "surrogate"};

typedef struct {
    const Config *cfg;
    WellSplit *split;
    Dcae *ae;
    Emulator *dm, *ns;
    Preprocess pre;
    SpectrumPlan spec;
    int C, H, W, Cl, h, w, L_tot, context, stride;
    int64_t index;          // global trajectory index
    const float *x_phys;    // (L_tot, C, H, W)
    const float *x_ae;      // (L_tot, C, H, W) physical
    // current method
    int method, members;    // members: the scored ensemble size
    int local, m0;          // members rolled out and decoded on this rank, global index of the first
    int gather;             // 1: states are gathered on rank `owner`, which scores them
    int owner, is_owner;    // the rank owning the current trajectory; 1 on it
    float *d_z, *d_y;       // backend decode buffers (chunk members)
    float *h_v;             // (local, C, H, W) physical prediction of one state
    float *h_all;           // (members, C, H, W) gathered state (members over ranks only)
    size_t *counts;         // bytes of one decoded state from each rank (members over ranks only)
    float *h_field;         // (members, H*W)
    int decode_chunk;
    double t_decode, t_metrics, t_gather;
    // rollout
    float *mask, *y_label, *work; // backend
    float *h_mask;
    uint64_t *seeds;        // (local) per-member sampler noise seeds
    SamplerConfig scfg;
    uint64_t traj_seed;
    // output
    char *rows, *mrows; // all rows; the current method's rows (without the speed column)
    size_t rows_len, rows_cap, mrows_len, mrows_cap;
    FrameSet *frames; // figure frames (NULL when not recorded for this trajectory)
} Eval;

// Appends s to the growable buffer (*buf, *len, *cap).
static void buf_append(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = 2 * (*cap + n + 1024);
        *buf = (char *)realloc(*buf, *cap);
        if (!*buf) lola_die("out of memory collecting eval rows");
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

// Row of the current method, without its speed column (added by flush_method).
static void write_row(Eval *e, int field, int t, int relative, const StateMetrics *m) {
    char line[1024];
    int lead = (t - e->context + 1) * e->stride;
    int n = snprintf(line, sizeof line, "%s,%lld,%s,%d,%s,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g", method_names[e->method],
                     (long long)e->index, e->split->channels[field].name, lead, relative ? "True" : "False", m->m1, m->m2,
                     m->spread, m->rmse, m->nrmse, m->vrmse, m->re_total);
    for (int b = 0; b < N_BANDS; b++) n += snprintf(line + n, sizeof line - n, ",%.9g", m->rmse_p[b]);
    for (int b = 0; b < N_BANDS; b++) n += snprintf(line + n, sizeof line - n, ",%.9g", m->rmse_c[b]);
    snprintf(line + n, sizeof line - n, "\n");
    buf_append(&e->mrows, &e->mrows_len, &e->mrows_cap, line);
}

// Moves the current method's rows to the output, appending the speed column (s per state per member).
static void flush_method(Eval *e, double speed) {
    char num[48];
    snprintf(num, sizeof num, ",%.6g\n", speed);
    for (char *p = e->mrows, *end = e->mrows + e->mrows_len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        *nl = '\0';
        buf_append(&e->rows, &e->rows_len, &e->rows_cap, p);
        buf_append(&e->rows, &e->rows_len, &e->rows_cap, num);
        p = nl + 1;
    }
    e->mrows_len = 0;
}

// Scores state t of the current method: v (members, C, H, W) physical.
static void score_state(Eval *e, int t, const float *v) {
    if (t < e->context - 1) return;
    double t0 = lola_time();
    size_t P = (size_t)e->H * e->W;
    for (int c = 0; c < e->C; c++) {
        for (int s = 0; s < e->members; s++) memcpy(e->h_field + (size_t)s * P, v + ((size_t)s * e->C + c) * P, P * sizeof(float));
        StateMetrics ma, mr;
        state_metrics(&e->spec, e->x_phys + ((size_t)t * e->C + c) * P, e->x_ae + ((size_t)t * e->C + c) * P, e->h_field,
                      e->members, &ma, &mr);
        write_row(e, c, t, 0, &ma);
        write_row(e, c, t, 1, &mr);
    }
    if (e->frames) frameset_offer(e->frames, e->method, t, v);
    e->t_metrics += lola_time() - t0;
}

// Decodes the local members' states (local, C_lat, h, w) host latents into e->h_v (physical).
static void decode_members(Eval *e, const float *z) {
    size_t zs = (size_t)e->Cl * e->h * e->w, xs = (size_t)e->C * e->H * e->W;
    double t0 = lola_time();
    for (int s0 = 0; s0 < e->local; s0 += e->decode_chunk) {
        int b = e->local - s0 < e->decode_chunk ? e->local - s0 : e->decode_chunk;
        nn_to_backend(e->d_z, z + (size_t)s0 * zs, (size_t)b * zs);
        dcae_decode(e->ae, e->d_y, e->d_z, b, e->h, e->w, 0, 0);
        nn_to_host(e->h_v + (size_t)s0 * xs, e->d_y, (size_t)b * xs);
    }
    preprocess_inverse(&e->pre, e->h_v, e->local, (int64_t)e->H * e->W);
    e->t_decode += lola_time() - t0;
}

// Members over ranks: gathers state t (e->h_v, local members) of every rank on the owner, in
// member order, and scores it there. Called by every rank for the same states in the same order
// (a rank without members sends nothing).
static void gather_state(Eval *e, int t) {
    double t0 = lola_time();
    size_t bytes = (size_t)e->local * e->C * e->H * e->W * sizeof(float);
    dist_gatherv(e->h_v, bytes, e->is_owner ? e->h_all : NULL, e->is_owner ? e->counts : NULL, e->owner);
    e->t_gather += lola_time() - t0;
    if (e->is_owner) score_state(e, t, e->h_all);
}

static void sink(void *ctx, int t, const float *states) {
    Eval *e = (Eval *)ctx;
    decode_members(e, states);
    if (!e->gather) score_state(e, t, e->h_v);
    else if (t >= e->context - 1) gather_state(e, t); // unscored context states are not gathered
}

static void expand_mask(Eval *e, const float *frame_mask, int B) {
    size_t S = (size_t)e->h * e->w;
    int Wn = e->cfg->trajectory.length;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < e->Cl; c++)
            for (int l = 0; l < Wn; l++)
                for (size_t p = 0; p < S; p++) e->h_mask[(((size_t)b * e->Cl + c) * Wn + l) * S + p] = frame_mask[l];
    nn_to_backend(e->mask, e->h_mask, (size_t)B * e->Cl * Wn * S);
}

// The DM sampler over this rank's members m0 .. m0 + local - 1. Every member's initial noise and
// sampler noise are seeded by (trajectory, call, global member index) only, so a member's
// trajectory does not depend on how the ensemble is split over ranks (see the header).
static void dm_emulate(void *ctx, float *x_hat, const float *y, const float *frame_mask, int call, int first) {
    Eval *e = (Eval *)ctx;
    int B = e->local;
    size_t nm = (size_t)e->Cl * e->cfg->trajectory.length * e->h * e->w, n = (size_t)B * nm;
    expand_mask(e, frame_mask, B);
    emu_reserve(e->dm, B, 0);
    uint64_t seed = rng_hash(e->traj_seed, (uint64_t)call), init = rng_hash(seed, 1), noise = rng_hash(seed, 2);
    for (int b = 0; b < B; b++) {
        sampler_init_state(x_hat + (size_t)b * nm, nm, &e->scfg, &e->dm->cfg.schedule, rng_hash(init, (uint64_t)(e->m0 + b)));
        e->seeds[b] = rng_hash(noise, (uint64_t)(e->m0 + b));
    }
    EmuDenoiseCtx dc = {e->dm, e->mask, y, e->y_label, B};
    sampler_run_members(&e->scfg, &e->dm->cfg.schedule, emu_denoise_fn, &dc, x_hat, n, B, e->seeds, e->work);
    (void)first;
}

static void ns_emulate(void *ctx, float *x_hat, const float *y, const float *frame_mask, int call, int first) {
    Eval *e = (Eval *)ctx;
    expand_mask(e, frame_mask, 1);
    emu_reserve(e->ns, 1, 0);
    emu_ns_predict(e->ns, x_hat, y, e->mask, e->y_label, 1);
    (void)call;
    (void)first;
}

// Selected global trajectory indices (sorted, deduplicated) into out; returns the count.
static int select_trajectories(const Config *cfg, int64_t N, int64_t *out, int cap) {
    int n = 0;
    if (cfg->eval.n_indices > 0) {
        for (int i = 0; i < cfg->eval.n_indices; i++) {
            if (cfg->eval.indices[i] < 0 || cfg->eval.indices[i] >= N)
                lola_die_hint("eval.indices are global trajectory indices of the split (file-major)",
                              "eval.indices[%d] = %d is outside the %s split's %lld trajectories", i, cfg->eval.indices[i],
                              cfg_split_names[cfg->eval.split], (long long)N);
            out[n++] = cfg->eval.indices[i];
        }
    } else {
        PyRandom r;
        pyrandom_seed(&r, (uint64_t)(uint32_t)cfg->eval.seed);
        for (int i = 0; i < cfg->eval.array && n < cap; i++) out[n++] = (int64_t)(pyrandom_random(&r) * (double)N);
    }
    // sort + dedupe
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int64_t t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || out[m - 1] != out[i]) out[m++] = out[i];
    return m;
}

static int load_emulator(const Config *cfg, EmuKind kind, int Cl, int h, int w, int label_dim, Emulator *m) {
    const char *name = kind == EMU_DM ? "dm" : "ns";
    char dir[CFG_PATH_LEN + 16], path[CFG_PATH_LEN + 32], err[2048];
    run_path(cfg, name, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/state.h5", dir);
    if (!lola_exists(path)) {
        log_warn("eval: %s checkpoint '%s' not found: the %s rows are skipped", name, path, kind == EMU_DM ? "diffusion" : "surrogate");
        return 0;
    }
    int window[3] = {cfg->trajectory.length, h, w};
    EmuConfig ec;
    emu_config_from(cfg, kind, Cl, 3, window, label_dim, &ec);
    emu_create(m, &ec);
    float *hp = LOLA_NEW(float, m->table.total);
    CheckpointMeta meta;
    if (checkpoint_load(path, name, &m->table, hp, NULL, NULL, &meta, NULL, err, sizeof err) != 0)
        lola_die_hint("the denoiser/surrogate sections of the config must match the trained model", "%s", err);
    nn_to_backend(m->params, hp, m->table.total);
    free(hp);
    log_info("eval: %s from %s (step %lld)", name, path, (long long)meta.step);
    return 1;
}

// Locates the split's global trajectory idx: *file, *rem (index in the file), *first (the first
// state taken: start - (context - 1) * stride, clamped at 0); returns L_tot, the states evaluated.
// Dies when L_tot <= context.
static int locate_trajectory(const Eval *e, int64_t idx, int *file, int64_t *rem, int *first) {
    const CfgEval *ev = &e->cfg->eval;
    const WellSplit *s = e->split;
    int64_t r = idx;
    int f = 0;
    while (r >= s->files[f].n_traj) r -= s->files[f].n_traj, f++;
    int64_t T = s->files[f].n_steps;
    int fs = ev->start - (ev->context - 1) * e->stride;
    if (fs < 0) fs = 0;
    int L_tot = fs < T ? (int)((T - 1 - fs) / e->stride + 1) : 0;
    if (L_tot <= ev->context)
        lola_die_hint("lower eval.start", "eval: trajectory %lld of '%s' has %lld steps: from step %d at stride %d only %d states remain, need more than the context %d",
                      (long long)idx, s->files[f].path, (long long)T, fs, e->stride, L_tot, ev->context);
    *file = f;
    *rem = r;
    *first = fs;
    return L_tot;
}

// Rolls out method meth (M_DM / M_NS) of the current trajectory from the context latents zc
// (C_lat, context, h*w) over this rank's e->local members; states are scored (or gathered) by the
// sink. Returns the speed: seconds of rollout + decode per state per local member (metrics and
// gathers excluded), or -1 when this rank has no members (it then only takes part in the gathers).
static double rollout_method(Eval *e, int meth, const float *zc) {
    const CfgEval *ev = &e->cfg->eval;
    e->method = meth;
    e->t_decode = e->t_metrics = e->t_gather = 0;
    if (e->local == 0) {
        for (int t = e->context - 1; t < e->L_tot; t++) gather_state(e, t);
        return -1.0;
    }
    RolloutConfig rc = {e->cfg->trajectory.length, ev->context, ev->overlap, e->Cl, (size_t)e->h * e->w, e->local};
    nn_sync();
    double t0 = lola_time();
    rollout_run(&rc, meth == M_DM ? dm_emulate : ns_emulate, e, zc, e->L_tot, sink, e);
    nn_sync();
    return (lola_time() - t0 - e->t_metrics - e->t_gather) / ((double)e->local * e->L_tot);
}

static void summary(const Config *cfg, const char *rows, size_t len, const char *path);

int stage_eval(const Config *cfg) {
    const int rank = dist_rank(), R = dist_size();
    const CfgEval *ev = &cfg->eval;
    Eval e;
    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    WellSplit s;
    open_split(cfg, cfg_split_names[ev->split], &s);
    e.split = &s;
    if (s.n_dims != 2) lola_die("eval: only 2-D datasets are supported");
    e.C = s.n_channels;
    e.H = (int)s.shape[0];
    e.W = (int)s.shape[1];
    preprocess_from_config(cfg, e.C, &e.pre);
    AugmentList aug;
    augment_from_config(cfg, &aug, 0);
    Dcae ae;
    char ae_id[128];
    ae_load(cfg, e.C, &ae, ae_id, sizeof ae_id);
    e.ae = &ae;
    int L = ae.cfg.levels;
    e.Cl = ae.cfg.lat_channels;
    e.h = e.H >> (L - 1);
    e.w = e.W >> (L - 1);
    e.context = ev->context;
    e.stride = cfg->trajectory.stride;
    if (ev->overlap != ev->context) log_warn("eval: overlap %d differs from context %d (LoLa uses overlap = context)", ev->overlap, ev->context);
    Emulator dm, ns;
    int want_dm = 0, want_ns = 0;
    for (int i = 0; i < ev->n_emulators; i++) {
        want_dm |= ev->emulators[i] == CFG_EMU_DM;
        want_ns |= ev->emulators[i] == CFG_EMU_NS;
    }
    int have_dm = want_dm && load_emulator(cfg, EMU_DM, e.Cl, e.h, e.w, s.label_dim, &dm);
    int have_ns = want_ns && load_emulator(cfg, EMU_NS, e.Cl, e.h, e.w, s.label_dim, &ns);
    e.dm = have_dm ? &dm : NULL;
    e.ns = have_ns ? &ns : NULL;
    e.scfg = sampler_default((SamplerKind)(ev->sampling_algorithm == CFG_SAMPLER_AB     ? SAMPLER_AB
                                           : ev->sampling_algorithm == CFG_SAMPLER_DDIM ? SAMPLER_DDIM
                                           : ev->sampling_algorithm == CFG_SAMPLER_DDPM ? SAMPLER_DDPM
                                           : ev->sampling_algorithm == CFG_SAMPLER_EAB  ? SAMPLER_EAB
                                                                                        : SAMPLER_PC));
    e.scfg.steps = ev->sampling_steps;
    if (ev->guidance != CFG_GUIDANCE_NONE)
        lola_die_hint("set eval.guidance=none", "eval.guidance=%s (MMPS observation guidance) is not implemented in this build",
                      cfg_guidance_names[ev->guidance]);

    // Trajectories of the split in global order.
    int64_t N = 0;
    for (int f = 0; f < s.n_files; f++) N += s.files[f].n_traj;
    int64_t *sel = LOLA_NEW(int64_t, ev->array + CFG_MAX_INDICES + 1);
    int nsel = select_trajectories(cfg, N, sel, ev->array + CFG_MAX_INDICES);
    log_info("eval: backend %s, %d rank%s", nn_backend_name(), dist_size(), dist_size() == 1 ? "" : "s");
    log_info("eval: %d trajectories of the %s split (%lld in all), start %d, context %d, %d members, sampler %s x %d",
             nsel, cfg_split_names[ev->split], (long long)N, ev->start, ev->context, ev->samples, cfg_sampler_names[ev->sampling_algorithm],
             ev->sampling_steps);

    SpectrumPlan *sp = &e.spec;
    int shape[2] = {e.H, e.W};
    spectrum_plan_init(sp, 2, shape);
    int S = ev->samples > 0 ? ev->samples : 1;
    // Distribution over ranks (see the header): members over ranks when the denoiser is scored
    // and every rank gets at least one member, else trajectories over ranks.
    const int split = R > 1 && have_dm && S >= R;
    const int m0 = split ? (int)((int64_t)rank * S / R) : 0, m1 = split ? (int)((int64_t)(rank + 1) * S / R) : S;
    const int Bmax = m1 - m0 > 1 ? m1 - m0 : 1; // largest batch rolled out here (the surrogate's is 1)
    if (split) {
        log_info("eval: members split over %d ranks (eval.samples %d >= %d ranks): rank r rolls out diffusion members "
                 "[r*%d/%d, (r+1)*%d/%d) of every trajectory; trajectory k is loaded, encoded and scored on rank k mod %d",
                 R, S, R, S, R, S, R, R);
        log_all("eval: rank %d rolls out diffusion members [%d, %d)", rank, m0, m1);
    } else if (R > 1) {
        log_info("eval: trajectories split over %d ranks (round-robin, all %d members of a trajectory on one rank: %s)", R, S,
                 have_dm ? "eval.samples < ranks" : "no denoiser scored");
    }
    e.decode_chunk = (S + (ev->decode_chunks > 0 ? ev->decode_chunks : 1) - 1) / (ev->decode_chunks > 0 ? ev->decode_chunks : 1);
    if (e.decode_chunk < 1) e.decode_chunk = 1;
    size_t xs = (size_t)e.C * e.H * e.W, zs = (size_t)e.Cl * e.h * e.w;
    const int enc_chunk = e.decode_chunk > 8 ? e.decode_chunk : 8;
    e.d_z = nn_alloc((size_t)enc_chunk * zs);
    e.d_y = nn_alloc((size_t)enc_chunk * xs);
    e.h_v = LOLA_NEW(float, (size_t)Bmax * xs);
    e.h_field = LOLA_NEW(float, (size_t)S * e.H * e.W);
    if (split) {
        e.h_all = LOLA_NEW(float, (size_t)S * xs);
        e.counts = LOLA_NEW(size_t, R);
        for (int r = 0; r < R; r++) e.counts[r] = (size_t)((int64_t)(r + 1) * S / R - (int64_t)r * S / R) * xs * sizeof(float);
    }
    size_t win = (size_t)e.Cl * cfg->trajectory.length * e.h * e.w;
    e.mask = nn_alloc((size_t)Bmax * win);
    e.h_mask = LOLA_NEW(float, (size_t)Bmax * win);
    e.y_label = nn_alloc((size_t)Bmax * s.label_dim);
    e.work = nn_alloc(sampler_work_floats(&e.scfg, (size_t)Bmax * win));
    e.seeds = LOLA_NEW(uint64_t, Bmax);
    // The owner's encoded context states (C_lat, context, h*w), then the label: broadcast when split.
    const size_t ctx_floats = (size_t)ev->context * zs + (size_t)s.label_dim;
    float *ctx_buf = LOLA_NEW(float, ctx_floats), *zc = ctx_buf, *label = ctx_buf + (size_t)ev->context * zs;
    int64_t *blk = LOLA_NEW(int64_t, nsel + 1); // bytes of trajectory k's rows (on its owner)
    double speed_sum[N_METHODS] = {0};
    int speed_n[N_METHODS] = {0};
    char eval_dir[CFG_PATH_LEN + 16];
    run_path(cfg, "eval", eval_dir, sizeof eval_dir);
    if (rank == 0) lola_mkdirs(eval_dir);
    dist_barrier();

    for (int k = 0; k < nsel; k++) {
        e.owner = k % R;
        e.is_owner = e.owner == rank;
        if (!e.is_owner && !split) continue;
        int64_t idx = sel[k], rem;
        int f, first;
        const int L_tot = locate_trajectory(&e, idx, &f, &rem, &first);
        e.index = idx;
        e.L_tot = L_tot;
        e.traj_seed = rng_hash(rng_hash((uint64_t)(uint32_t)ev->seed, (uint64_t)idx), (uint64_t)ev->start);
        const size_t rows0 = e.rows_len;
        float *x = NULL, *xa = NULL;
        FrameSet fs;
        e.frames = NULL;
        if (e.is_owner) {
            int64_t T = s.files[f].n_steps;
            AugPlan plan;
            Rng r0 = rng_seed(0);
            augment_draw(&plan, &aug, &s, f, &r0);
            float *traj = LOLA_NEW(float, (size_t)T * xs), *xn = LOLA_NEW(float, (size_t)L_tot * xs), *z = LOLA_NEW(float, (size_t)L_tot * zs);
            x = LOLA_NEW(float, (size_t)L_tot * xs);
            xa = LOLA_NEW(float, (size_t)L_tot * xs);
            well_read_trajectory(&s, f, rem, &plan, NULL, WELL_LCHW, traj);
            for (int t = 0; t < L_tot; t++) memcpy(x + (size_t)t * xs, traj + (size_t)(first + t * e.stride) * xs, xs * sizeof(float));
            free(traj);
            augment_label(&plan, &s, f, rem, label);
            memcpy(xn, x, (size_t)L_tot * xs * sizeof(float));
            preprocess_forward(&e.pre, xn, L_tot, (int64_t)e.H * e.W);
            // encode + decode every state, in chunks of at most enc_chunk states
            double t_ae = 0;
            for (int t0 = 0, b; t0 < L_tot; t0 += b) {
                b = L_tot - t0 < enc_chunk ? L_tot - t0 : enc_chunk;
                nn_to_backend(e.d_y, xn + (size_t)t0 * xs, (size_t)b * xs);
                dcae_encode(&ae, e.d_z, e.d_y, b, e.H, e.W);
                nn_to_host(z + (size_t)t0 * zs, e.d_z, (size_t)b * zs);
                nn_sync();
                double ta = lola_time();
                dcae_decode(&ae, e.d_y, e.d_z, b, e.h, e.w, 0, 0);
                nn_to_host(xa + (size_t)t0 * xs, e.d_y, (size_t)b * xs);
                t_ae += lola_time() - ta;
            }
            preprocess_inverse(&e.pre, xa, L_tot, (int64_t)e.H * e.W);
            e.x_phys = x;
            e.x_ae = xa;
            if (k == 0) {
                frameset_init(&fs, e.C, e.H, e.W, L_tot, e.context, e.stride);
                e.frames = &fs;
                for (int t = 0; t < L_tot; t++) frameset_offer(&fs, FRAME_TRUTH, t, x + (size_t)t * xs);
            }
            // AE and persistence: one member.
            e.members = 1;
            e.method = M_AE;
            for (int t = 0; t < L_tot; t++) score_state(&e, t, xa + (size_t)t * xs);
            flush_method(&e, t_ae / L_tot);
            e.method = M_PERSIST;
            for (int t = 0; t < L_tot; t++) score_state(&e, t, x + (size_t)(e.context - 1) * xs);
            flush_method(&e, 0.0);
            // The emulators' observation: the encoded context states.
            size_t hw = (size_t)e.h * e.w;
            for (int c = 0; c < e.Cl; c++)
                for (int l = 0; l < ev->context; l++)
                    memcpy(zc + ((size_t)c * ev->context + l) * hw, z + (size_t)l * zs + (size_t)c * hw, hw * sizeof(float));
            free(xn);
            free(z);
        }
        if (split) dist_bcast(ctx_buf, ctx_floats * sizeof(float), e.owner);
        float *hl = LOLA_NEW(float, (size_t)Bmax * s.label_dim);
        for (int b = 0; b < Bmax; b++) memcpy(hl + (size_t)b * s.label_dim, label, s.label_dim * sizeof(float));
        nn_to_backend(e.y_label, hl, (size_t)Bmax * s.label_dim);
        free(hl);
        // Emulators: the diffusion ensemble (over the ranks when split), the surrogate on the owner.
        if (e.dm) {
            e.members = S;
            e.local = m1 - m0;
            e.m0 = m0;
            e.gather = split;
            double speed = rollout_method(&e, M_DM, zc);
            if (speed >= 0) {
                speed_sum[M_DM] += speed;
                speed_n[M_DM]++;
            }
            // An owner without members (only if a split with S < R were allowed) has no speed.
            if (e.is_owner) flush_method(&e, speed >= 0 ? speed : NAN);
        }
        if (e.ns && e.is_owner) {
            e.members = e.local = 1;
            e.m0 = 0;
            e.gather = 0;
            double speed = rollout_method(&e, M_NS, zc);
            speed_sum[M_NS] += speed;
            speed_n[M_NS]++;
            flush_method(&e, speed);
        }
        if (e.is_owner) {
            if (e.frames) {
                char fp[CFG_PATH_LEN + 64];
                snprintf(fp, sizeof fp, "%s/frames.h5", eval_dir);
                frameset_write(&fs, &s, idx, fp);
                frameset_free(&fs);
            }
            log_all("eval: trajectory %lld done (%d states)", (long long)idx, L_tot);
            blk[k] = (int64_t)(e.rows_len - rows0);
        }
        free(x);
        free(xa);
    }
    // Rows to rank 0 in trajectory order: rank r holds the blocks of its trajectories r, r + R, ...
    dist_allreduce_sum_int64(blk, (size_t)nsel); // blk[k] is set on k's owner only
    size_t *lens = LOLA_NEW(size_t, R), *cursor = LOLA_NEW(size_t, R), total = 0;
    for (int k = 0; k < nsel; k++) lens[k % R] += (size_t)blk[k];
    for (int r = 0; r < R; r++) total += lens[r];
    char *gathered = rank == 0 ? (char *)lola_calloc(total + 1, 1) : NULL, *all = NULL;
    dist_gatherv(e.rows, e.rows_len, gathered, rank == 0 ? lens : NULL, 0);
    if (rank == 0) {
        all = (char *)lola_calloc(total + 1, 1);
        for (int r = 1; r < R; r++) cursor[r] = cursor[r - 1] + lens[r - 1];
        size_t o = 0;
        for (int k = 0; k < nsel; k++) {
            memcpy(all + o, gathered + cursor[k % R], (size_t)blk[k]);
            cursor[k % R] += (size_t)blk[k];
            o += (size_t)blk[k];
        }
    }
    double ssum[N_METHODS], scount[N_METHODS];
    for (int m = 0; m < N_METHODS; m++) {
        ssum[m] = speed_sum[m];
        scount[m] = speed_n[m];
    }
    dist_allreduce_sum_double(ssum, N_METHODS);
    dist_allreduce_sum_double(scount, N_METHODS);
    if (rank == 0) {
        char path[CFG_PATH_LEN + 64];
        snprintf(path, sizeof path, "%s/stats.csv", eval_dir);
        const char *header = "method,trajectory,field,lead_time,relative,m1,m2,spread,rmse,nrmse,vrmse,re_total,"
                             "rmse_p_low,rmse_p_mid,rmse_p_high,rmse_p_sub,rmse_c_low,rmse_c_mid,rmse_c_high,rmse_c_sub,speed\n";
        size_t hl = strlen(header);
        char *text = (char *)lola_calloc(hl + total + 1, 1);
        memcpy(text, header, hl);
        memcpy(text + hl, all, total);
        lola_write_atomic(path, text, hl + total);
        free(text);
        log_info("eval: wrote %s", path);
        for (int m = M_DM; m <= M_NS; m++)
            if (scount[m] > 0) log_info("eval: %s speed %.3f ms per generated state per member (rollout + decode)", method_names[m], 1e3 * ssum[m] / scount[m]);
        char spath[CFG_PATH_LEN + 64];
        snprintf(spath, sizeof spath, "%s/summary.txt", eval_dir);
        summary(cfg, all, total, spath);
        report_figures(eval_dir);
    }
    dist_barrier();
    free(all);
    free(gathered);
    free(lens);
    free(cursor);
    free(blk);
    free(ctx_buf);
    free(sel);
    free(e.rows);
    free(e.mrows);
    free(e.h_v);
    free(e.h_all);
    free(e.counts);
    free(e.h_field);
    free(e.h_mask);
    free(e.seeds);
    nn_free(e.d_z);
    nn_free(e.d_y);
    nn_free(e.mask);
    nn_free(e.y_label);
    nn_free(e.work);
    spectrum_plan_free(sp);
    if (have_dm) emu_destroy(&dm);
    if (have_ns) emu_destroy(&ns);
    dcae_destroy(&ae);
    well_close(&s);
    return 0;
}

// Mean VRMSE (relative = False) per method and lead-time bin (lola-spec.md 7.2: Euler bins
// 1-20, 21-60, 61-100; longer rollouts extend the last bin), printed and written to path.
static void summary(const Config *cfg, const char *rows, size_t len, const char *path) {
    const int nb = 4;
    int lo[4] = {1, 21, 61, 101}, hi[4] = {20, 60, 100, 1 << 30};
    double sum[N_METHODS][4] = {{0}};
    long cnt[N_METHODS][4] = {{0}};
    enum { MAX_LEAD = 4096 };
    double *lsum = LOLA_NEW(double, (size_t)N_METHODS * MAX_LEAD); // per method and lead time
    long *lcnt = LOLA_NEW(long, (size_t)N_METHODS * MAX_LEAD);
    const char *p = rows, *end = rows + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        char line[1024];
        size_t n = (size_t)(nl - p) < sizeof line - 1 ? (size_t)(nl - p) : sizeof line - 1;
        memcpy(line, p, n);
        line[n] = 0;
        p = nl + 1;
        char *tok[24];
        int nt = 0;
        for (char *q = strtok(line, ","); q && nt < 24; q = strtok(NULL, ",")) tok[nt++] = q;
        if (nt < 11 || strcmp(tok[4], "False") != 0) continue;
        int m = -1;
        for (int k = 0; k < N_METHODS; k++)
            if (strcmp(tok[0], method_names[k]) == 0) m = k;
        int lead = atoi(tok[3]);
        double v = atof(tok[10]);
        if (m < 0 || lead <= 0 || !isfinite(v)) continue;
        for (int b = 0; b < nb; b++)
            if (lead >= lo[b] && lead <= hi[b]) {
                sum[m][b] += v;
                cnt[m][b]++;
            }
        if (lead < MAX_LEAD) {
            lsum[m * MAX_LEAD + lead] += v;
            lcnt[m * MAX_LEAD + lead]++;
        }
    }
    char buf[4096];
    int o = snprintf(buf, sizeof buf, "mean VRMSE (physical units, %s, vs ground truth) by lead time\n%-12s %10s %10s %10s %10s\n",
                     cfg->dataset.name, "method", "1-20", "21-60", "61-100", "101+");
    for (int m = 0; m < N_METHODS; m++) {
        int any = 0;
        for (int b = 0; b < nb; b++) any |= cnt[m][b] > 0;
        if (!any) continue;
        o += snprintf(buf + o, sizeof buf - o, "%-12s", method_names[m]);
        for (int b = 0; b < nb; b++) {
            if (cnt[m][b]) o += snprintf(buf + o, sizeof buf - o, " %10.4f", sum[m][b] / cnt[m][b]);
            else o += snprintf(buf + o, sizeof buf - o, " %10s", "-");
        }
        o += snprintf(buf + o, sizeof buf - o, "\n");
    }
    // Lead time by lead time: does each emulator beat the do-nothing baseline?
    for (int m = M_DM; m <= M_NS; m++) {
        int n = 0, wins = 0, first_loss = -1;
        for (int lead = 1; lead < MAX_LEAD; lead++) {
            long ce = lcnt[m * MAX_LEAD + lead], cp = lcnt[M_PERSIST * MAX_LEAD + lead];
            if (!ce || !cp) continue;
            n++;
            if (lsum[m * MAX_LEAD + lead] / ce < lsum[M_PERSIST * MAX_LEAD + lead] / cp) wins++;
            else if (first_loss < 0) first_loss = lead;
        }
        if (n == 0) continue;
        if (wins == n) o += snprintf(buf + o, sizeof buf - o, "%s beats persistence at all %d lead times\n", method_names[m], n);
        else
            o += snprintf(buf + o, sizeof buf - o, "%s beats persistence at %d of %d lead times (not at lead time %d)\n",
                          method_names[m], wins, n, first_loss);
    }
    free(lsum);
    free(lcnt);
    log_info("%s", buf);
    lola_write_atomic(path, buf, strlen(buf));
}
