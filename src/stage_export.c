// stage_export.c: weights interop with the PyTorch reference (DESIGN.md 4): `lola export` writes
// a stage's checkpoint as a safetensors file that LoLa's module loads with
// `model.load_state_dict(safetensors.torch.load_file(path))` (strict), and `lola import` turns
// such a file (ours, or one converted from a LoLa .pth by tools/pth2safetensors.py) into a
// checkpoint our trainer and evaluator accept.
//
// The model of a stage is built from the config exactly as the stages build it (dcae_config_from,
// emu_config_from); its ParamTable rows carry PyTorch's state_dict names. The state_dict also
// holds non-parameter buffers, which the export adds at their state_dict positions (before the
// first parameter of the module that owns them) and the import verifies and drops:
//   AE     <ResBlock>.norm.eps                       0-d, 1e-5 (lola/nn/layers.py LayerNorm)
//   DM/NS  <vit>positional_embedding.0.freqs         (D/2,)  SineEncoding(hid_channels)
//   DM     backbone.time_embedding.0.freqs           (M/2,)  SineEncoding(emb_features)
// with f_k = omega^(-k/(n-1)), omega = 1e3, k = 0..n-1 (n = features/2), computed like LoLa's
// lola/nn/embedding.py: numpy linspace(0, 1, n) (k * (1/(n-1)), last = 1) in float64, then
// omega ** -k in float64, rounded to float32.
//
// Two model dimensions are properties of the dataset, not of the config: the label width
// D_label (n_scalars + 2 n_dims) and the number of token axes S (time + spatial axes). We read
// them from the weights themselves, D_label = columns of <...>label_embedding.0.weight (0 when the
// model has no label embedding) and S = columns of <vit>positional_embedding.2.weight / D, and
// cross-check them with the metadata keys "label_features" / "spatial" when present. Opening the
// dataset instead would make export/import depend on the data being mounted (and on a collective
// MPI open); every other row still has to match the config. The latent width C_lat is the
// config's ae.lat_channels (the latent cache the emulators train on has that many channels).
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "commands.h"
#include "common.h"
#include "dist.h"
#include "safetensors.h"
#include "stages.h"

#define EXPORT_FORMAT_VERSION "lola-c/1"
#define SINE_OMEGA 1e3

typedef struct {
    char name[PARAM_NAME_MAX];
    char parent[PARAM_NAME_MAX]; // module prefix "a.b."; the buffer precedes the first row with it
    int ndim;                    // 0 (eps) or 1 (freqs)
    int64_t shape[1];
    float *vals;
    size_t n;
    int before_row;              // table row it precedes (table.n = at the end)
} ExpBuf;

typedef struct {
    char stage[4];
    int is_emu;
    EmuKind kind;
    DcaeConfig dc;
    Emulator emu;       // emu_build: table + offsets only
    ParamTable ae_table;
    ParamTable *table;  // &ae_table or &emu.table
    ExpBuf *bufs;
    int nbuf;
    StMeta *meta;       // config keys that fix the model (export writes, import compares)
    int n_meta;
    int label_features, spatial;
} ModelSpec;

// Looks up a tensor's shape by name in the source (HDF5 checkpoint or safetensors file).
typedef int (*ShapeFn)(void *ctx, const char *name, int *ndim, int64_t *shape);

// ---- helpers -----------------------------------------------------------------------------------

static void say_error(const char *fmt, ...) LOLA_PRINTF(1, 2);
static void say_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void meta_add(ModelSpec *s, const char *key, const char *fmt, ...) LOLA_PRINTF(3, 4);
static void meta_add(ModelSpec *s, const char *key, const char *fmt, ...) {
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    s->meta = realloc(s->meta, (size_t)(s->n_meta + 1) * sizeof *s->meta);
    if (!s->meta) lola_die("out of memory");
    s->meta[s->n_meta].key = strdup(key);
    s->meta[s->n_meta].value = strdup(v);
    if (!s->meta[s->n_meta].key || !s->meta[s->n_meta].value) lola_die("out of memory");
    s->n_meta++;
}

static void int_list(char *out, size_t cap, const int *v, int n) {
    size_t L = 0;
    out[0] = 0;
    L += (size_t)snprintf(out + L, cap - L, "[");
    for (int i = 0; i < n && L < cap; i++) L += (size_t)snprintf(out + L, cap - L, "%s%d", i ? ", " : "", v[i]);
    if (L < cap) snprintf(out + L, cap - L, "]");
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t L = (size_t)snprintf(out, cap, "(");
    for (int d = 0; d < ndim && L < cap; d++) L += (size_t)snprintf(out + L, cap - L, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (L < cap) snprintf(out + L, cap - L, "%s)", ndim == 1 ? "," : "");
}

// SineEncoding frequencies as LoLa computes them (see the top of this file).
static void sine_freqs(float *f, size_t n) {
    const double step = n > 1 ? 1.0 / (double)(n - 1) : 0.0;
    for (size_t k = 0; k < n; k++) {
        double x = n > 1 && k == n - 1 ? 1.0 : (double)k * step;
        f[k] = (float)pow(SINE_OMEGA, -x);
    }
}

static void add_buf(ModelSpec *s, const char *name, int ndim, size_t n, const float *vals) {
    s->bufs = realloc(s->bufs, (size_t)(s->nbuf + 1) * sizeof *s->bufs);
    if (!s->bufs) lola_die("out of memory");
    ExpBuf *b = &s->bufs[s->nbuf++];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", name);
    // parent module: drop the last two components ("norm.eps" -> owner ResBlock, "0.freqs" -> the Sequential)
    snprintf(b->parent, sizeof b->parent, "%s", name);
    for (int cut = 0; cut < 2; cut++) {
        char *dot = strrchr(b->parent, '.');
        if (dot) *dot = 0;
        else b->parent[0] = 0;
    }
    if (b->parent[0]) strcat(b->parent, ".");
    b->ndim = ndim;
    b->shape[0] = (int64_t)n;
    b->n = n;
    b->vals = LOLA_NEW(float, n);
    memcpy(b->vals, vals, n * sizeof(float));
}

static void spec_free(ModelSpec *s) {
    if (s->is_emu) emu_destroy(&s->emu);
    else ptable_free(&s->ae_table);
    for (int i = 0; i < s->nbuf; i++) free(s->bufs[i].vals);
    free(s->bufs);
    for (int i = 0; i < s->n_meta; i++) {
        free(s->meta[i].key);
        free(s->meta[i].value);
    }
    free(s->meta);
    memset(s, 0, sizeof *s);
}

static const char *stage_check(const char *stage) {
    if (!stage) return "no stage given";
    if (strcmp(stage, "ae") && strcmp(stage, "dm") && strcmp(stage, "ns")) return "unknown stage";
    return NULL;
}

static void stage_dir(const Config *cfg, const char *stage, char *out, size_t cap) {
    if (!strcmp(stage, "ae")) ae_dir(cfg, out, cap);
    else run_path(cfg, stage, out, cap);
}

// Parses a non-negative decimal int; -1 when s is not one.
static int parse_int(const char *s) {
    if (!s || !*s) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000000) return -1;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

// Builds the stage's model from the config (+ D_label and S from the weights, see the top).
// meta_src: the safetensors file being imported (its "label_features" / "spatial" are the
// fallback and the cross-check), or NULL. Problems are printed; returns their number.
static int spec_build(const Config *cfg, const char *stage, ShapeFn fn, void *ctx, const StFile *meta_src, ModelSpec *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->stage, sizeof s->stage, "%s", stage);
    int problems = 0;
    meta_add(s, "format", "pt");
    meta_add(s, "format_version", EXPORT_FORMAT_VERSION);
    meta_add(s, "producer", "lola-c");
    meta_add(s, "stage", "%s", stage);
    if (!strcmp(stage, "ae")) {
        if (cfg->dataset.n_fields < 1) lola_die("export/import ae: dataset.fields is empty (the AE's pixel channels)");
        dcae_config_from(cfg, cfg->dataset.n_fields, &s->dc);
        dcae_build_table(&s->dc, &s->ae_table);
        s->table = &s->ae_table;
        int nb = dcae_norm_eps_name(&s->dc, 0, NULL, 0);
        const float eps = s->dc.norm_eps;
        for (int b = 0; b < nb; b++) {
            char name[PARAM_NAME_MAX];
            dcae_norm_eps_name(&s->dc, b, name, sizeof name);
            add_buf(s, name, 0, 1, &eps);
        }
        const CfgAe *a = &cfg->ae;
        char l[512];
        meta_add(s, "pix_channels", "%d", s->dc.pix_channels);
        meta_add(s, "ae.lat_channels", "%d", a->lat_channels);
        int_list(l, sizeof l, a->hid_channels, a->n_hid_channels);
        meta_add(s, "ae.hid_channels", "%s", l);
        int_list(l, sizeof l, a->hid_blocks, a->n_hid_blocks);
        meta_add(s, "ae.hid_blocks", "%s", l);
        size_t L = (size_t)snprintf(l, sizeof l, "{");
        int first = 1;
        for (int i = 0; i < CFG_MAX_LEVELS && L < sizeof l; i++)
            if (a->attention_heads[i] > 0) {
                L += (size_t)snprintf(l + L, sizeof l - L, "%s%d: %d", first ? "" : ", ", i, a->attention_heads[i]);
                first = 0;
            }
        if (L < sizeof l) snprintf(l + L, sizeof l - L, "}");
        meta_add(s, "ae.attention_heads", "%s", l);
        meta_add(s, "ae.ffn_factor", "%d", a->ffn_factor);
        meta_add(s, "ae.kernel_size", "%d", a->kernel_size);
        meta_add(s, "ae.saturation", "%s", cfg_saturation_names[a->saturation]);
    } else {
        s->is_emu = 1;
        s->kind = !strcmp(stage, "dm") ? EMU_DM : EMU_NS;
        const int dm = s->kind == EMU_DM;
        const CfgVit *v = dm ? &cfg->denoiser : &cfg->surrogate;
        const char *sec = dm ? "denoiser" : "surrogate";
        const char *vit_prefix = dm ? "backbone.backbone." : "backbone.";
        const char *lab0 = dm ? "backbone.label_embedding.0.weight" : "label_embedding.0.weight";
        const char *lab2 = dm ? "backbone.label_embedding.2.weight" : "label_embedding.2.weight";
        char pe[PARAM_NAME_MAX];
        snprintf(pe, sizeof pe, "%spositional_embedding.2.weight", vit_prefix);
        int nd;
        int64_t sh[8];
        int L = -1, S = -1;
        if (fn(ctx, lab0, &nd, sh) == 0) {
            if (nd == 2 && sh[1] >= 0 && sh[1] <= 4096) L = (int)sh[1];
        } else if (fn(ctx, lab2, &nd, sh) != 0) {
            L = 0; // no label embedding at all
        }
        if (fn(ctx, pe, &nd, sh) == 0 && nd == 2 && v->hid_channels > 0 && sh[1] % v->hid_channels == 0 &&
            sh[1] / v->hid_channels >= 1 && sh[1] / v->hid_channels <= VIT_MAX_AXES)
            S = (int)(sh[1] / v->hid_channels);
        if (meta_src) {
            int mL = parse_int(st_meta(meta_src, "label_features")), mS = parse_int(st_meta(meta_src, "spatial"));
            if (mL >= 0 && L >= 0 && mL != L) {
                say_error("%s: metadata label_features = %d but %s has %d columns", meta_src->path, mL, lab0, L);
                problems++;
            }
            if (mS >= 0 && S >= 0 && mS != S) {
                say_error("%s: metadata spatial = %d but %s implies %d token axes", meta_src->path, mS, pe, S);
                problems++;
            }
            if (L < 0 && mL >= 0) L = mL;
            if (S < 0 && mS >= 1 && mS <= VIT_MAX_AXES) S = mS;
        }
        if (L < 0) {
            say_error("%s: cannot tell the label width: %s is missing or not 2-D (and no 'label_features' metadata)", stage, lab0);
            problems++;
            L = 0;
        }
        if (S < 0) S = 3; // 2-D data (L, h, w); a mismatch is reported row by row
        s->label_features = L;
        s->spatial = S;
        int window[VIT_MAX_AXES];
        window[0] = cfg->trajectory.length > 0 ? cfg->trajectory.length : 1;
        for (int i = 1; i < VIT_MAX_AXES; i++) window[i] = 1;
        EmuConfig ec;
        emu_config_from(cfg, s->kind, cfg->ae.lat_channels, S, window, L, &ec);
        emu_build(&s->emu, &ec);
        s->table = &s->emu.table;
        const int D = ec.vit.hid_channels, M = ec.emb_features;
        float *f = LOLA_NEW(float, (size_t)(D > M ? D : M));
        char name[PARAM_NAME_MAX];
        snprintf(name, sizeof name, "%spositional_embedding.0.freqs", vit_prefix);
        sine_freqs(f, (size_t)D / 2);
        add_buf(s, name, 1, (size_t)D / 2, f);
        if (dm) {
            sine_freqs(f, (size_t)M / 2);
            add_buf(s, "backbone.time_embedding.0.freqs", 1, (size_t)M / 2, f);
        }
        free(f);
        char key[96];
#define VMETA(field, fmt, val)                                  \
    do {                                                        \
        snprintf(key, sizeof key, "%s.%s", sec, field);         \
        meta_add(s, key, fmt, val);                             \
    } while (0)
        VMETA("hid_channels", "%d", v->hid_channels);
        VMETA("hid_blocks", "%d", v->hid_blocks);
        VMETA("attention_heads", "%d", v->attention_heads);
        VMETA("emb_features", "%d", v->emb_features);
        VMETA("ffn_factor", "%d", v->ffn_factor);
        VMETA("qk_norm", "%s", v->qk_norm ? "true" : "false");
        VMETA("rope", "%s", v->rope ? "true" : "false");
        VMETA("patch_size", "%d", v->patch_size);
#undef VMETA
        meta_add(s, "channels", "%d", cfg->ae.lat_channels);
        meta_add(s, "label_features", "%d", L);
        meta_add(s, "spatial", "%d", S);
    }
    meta_add(s, "param_count", "%zu", s->table->total);
    // Buffer positions in state_dict order.
    for (int b = 0; b < s->nbuf; b++) {
        ExpBuf *e = &s->bufs[b];
        size_t L = strlen(e->parent);
        e->before_row = s->table->n;
        for (int r = 0; r < s->table->n; r++)
            if (!strncmp(s->table->rows[r].name, e->parent, L)) {
                e->before_row = r;
                break;
            }
    }
    return problems;
}

// ---- HDF5 shape lookup (export) ----------------------------------------------------------------

static int h5_shape(void *ctx, const char *name, int *ndim, int64_t *shape) {
    hid_t f = *(hid_t *)ctx;
    char path[PARAM_NAME_MAX + 16];
    snprintf(path, sizeof path, "params/%s", name);
    if (H5Lexists(f, "params", H5P_DEFAULT) <= 0 || H5Lexists(f, path, H5P_DEFAULT) <= 0) return -1;
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    int rc = -1;
    if (nd >= 0 && nd <= 8) {
        hsize_t d[8];
        H5Sget_simple_extent_dims(sp, d, NULL);
        for (int k = 0; k < nd; k++) shape[k] = (int64_t)d[k];
        *ndim = nd;
        rc = 0;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

static int st_shape(void *ctx, const char *name, int *ndim, int64_t *shape) {
    const StFile *f = ctx;
    int i = st_find(f, name);
    if (i < 0) return -1;
    *ndim = f->tensors[i].ndim;
    for (int d = 0; d < f->tensors[i].ndim; d++) shape[d] = f->tensors[i].shape[d];
    return 0;
}

// ---- export ------------------------------------------------------------------------------------

int stage_export(const Config *cfg, const char *stage, const char *out_path) {
    const char *bad = stage_check(stage);
    if (bad) {
        say_error("export: %s '%s' (use ae, dm or ns)", bad, stage ? stage : "");
        return 2;
    }
    if (!out_path || !out_path[0]) {
        say_error("export: no output file given");
        return 2;
    }
    char dir[CFG_PATH_LEN + 16], ckpt[CFG_PATH_LEN + 32];
    stage_dir(cfg, stage, dir, sizeof dir);
    snprintf(ckpt, sizeof ckpt, "%s/state.h5", dir);
    if (!lola_exists(ckpt)) {
        say_error("export %s: checkpoint '%s' does not exist\nHINT: train the stage first (lola train-%s), or set run.dir%s",
                  stage, ckpt, stage, !strcmp(stage, "ae") ? " / run.ae_run" : "");
        return 1;
    }
    ModelSpec s;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        say_error("export %s: checkpoint '%s' is not a readable HDF5 file (truncated or foreign file?)", stage, ckpt);
        return 1;
    }
    int problems = spec_build(cfg, stage, h5_shape, &f, NULL, &s);
    H5Fclose(f);
    if (problems) {
        spec_free(&s);
        return 1;
    }
    const ParamTable *t = s.table;
    float *params = LOLA_NEW(float, t->total ? t->total : 1);
    CheckpointMeta meta;
    char err[2048];
    if (checkpoint_load(ckpt, stage, t, params, NULL, NULL, &meta, NULL, err, sizeof err) != 0) {
        say_error("export %s: %s\nHINT: the config's %s section must describe the model that was trained", stage, err,
                  !strcmp(stage, "ae") ? "ae" : !strcmp(stage, "dm") ? "denoiser" : "surrogate");
        free(params);
        spec_free(&s);
        return 1;
    }
    // state_dict order: each buffer before the first parameter of its module.
    int n_out = t->n + s.nbuf, k = 0;
    StOut *out = LOLA_NEW(StOut, n_out);
    for (int r = 0; r <= t->n; r++) {
        for (int b = 0; b < s.nbuf; b++)
            if (s.bufs[b].before_row == r)
                out[k++] = (StOut){s.bufs[b].name, s.bufs[b].ndim, s.bufs[b].shape, s.bufs[b].vals};
        if (r < t->n) out[k++] = (StOut){t->rows[r].name, t->rows[r].ndim, t->rows[r].shape, params + t->rows[r].offset};
    }
    uint64_t bytes = 0;
    int rc = 0;
    if (st_write_f32(out_path, out, n_out, s.meta, s.n_meta, &bytes, err, sizeof err) != 0) {
        say_error("export %s: %s", stage, err);
        rc = 1;
    } else {
        char b1[32];
        log_info("export %s: %s (step %lld) -> %s: %d parameter tensors (%s values) + %d buffers, %.1f MiB fp32", stage, ckpt,
                 (long long)meta.step, out_path, t->n, fmt_count(b1, sizeof b1, t->total), s.nbuf, (double)bytes / 1048576.0);
    }
    free(out);
    free(params);
    spec_free(&s);
    return rc;
}

// ---- import ------------------------------------------------------------------------------------

// Tolerance for a buffer's values by stored precision (they were rounded to it).
static double dtype_rtol(StDtype d) { return d == ST_F16 ? 1e-3 : d == ST_BF16 ? 8e-3 : 1e-6; }

int stage_import(const Config *cfg, const char *stage, const char *in_path, const char *run_dir) {
    const char *bad = stage_check(stage);
    if (bad) {
        say_error("import: %s '%s' (use ae, dm or ns)", bad, stage ? stage : "");
        return 2;
    }
    StFile f;
    char err[2048];
    if (!in_path || st_open(&f, in_path, err, sizeof err) != 0) {
        say_error("import %s: %s", stage, in_path ? err : "no input file given");
        return 1;
    }
    int problems = 0;
    const char *mstage = st_meta(&f, "stage");
    if (mstage && strcmp(mstage, stage) != 0) {
        say_error("%s: holds the '%s' stage (metadata \"stage\"), not '%s'", in_path, mstage, stage);
        problems++;
    }
    ModelSpec s;
    problems += spec_build(cfg, stage, st_shape, &f, &f, &s);
    // Metadata written by our exporter must agree with the config (catches e.g. a different
    // number of attention heads or another saturation, which leave the shapes unchanged).
    for (int i = 0; i < s.n_meta; i++) {
        const char *k = s.meta[i].key, *fv = st_meta(&f, k);
        if (!fv || !strcmp(k, "format") || !strcmp(k, "producer") || !strcmp(k, "format_version")) continue;
        if (strcmp(fv, s.meta[i].value) != 0) {
            say_error("%s: metadata %s = %s but the config gives %s", in_path, k, fv, s.meta[i].value);
            problems++;
        }
    }
    const ParamTable *t = s.table;
    float *params = LOLA_NEW(float, t->total ? t->total : 1);
    int *used = LOLA_NEW(int, f.n ? f.n : 1);
    int converted[ST_N_DTYPES] = {0};
    int64_t nonfinite = 0;
    char a[160], b[160];
    for (int r = 0; r < t->n; r++) {
        const ParamSpec *row = &t->rows[r];
        int i = st_find(&f, row->name);
        if (i < 0) {
            shape_str(a, sizeof a, row->ndim, row->shape);
            say_error("%s: missing tensor %s %s", in_path, row->name, a);
            problems++;
            continue;
        }
        used[i] = 1;
        const StTensor *x = &f.tensors[i];
        int same = x->ndim == row->ndim;
        for (int d = 0; same && d < row->ndim; d++) same = x->shape[d] == row->shape[d];
        if (!same) {
            shape_str(a, sizeof a, x->ndim, x->shape);
            shape_str(b, sizeof b, row->ndim, row->shape);
            say_error("%s: tensor %s has shape %s, the config's model expects %s", in_path, row->name, a, b);
            problems++;
            continue;
        }
        if (!st_dtype_is_float(x->dtype)) {
            say_error("%s: tensor %s has dtype %s, expected a float type (F32; F64, F16, BF16 are converted)", in_path,
                      row->name, st_dtype_name(x->dtype));
            problems++;
            continue;
        }
        if (problems) continue; // keep listing, but do not read data any more
        if (st_read_f32(&f, i, params + row->offset, err, sizeof err) != 0) {
            say_error("import %s: %s", stage, err);
            problems++;
            continue;
        }
        if (x->dtype != ST_F32) converted[x->dtype]++;
        for (size_t e = 0; e < row->numel; e++) nonfinite += !isfinite(params[row->offset + e]);
    }
    // Every other tensor must be one of the module's buffers, with the right shape and values.
    for (int i = 0; i < f.n; i++) {
        if (used[i]) continue;
        const StTensor *x = &f.tensors[i];
        const ExpBuf *e = NULL;
        for (int k = 0; k < s.nbuf && !e; k++)
            if (!strcmp(s.bufs[k].name, x->name)) e = &s.bufs[k];
        shape_str(a, sizeof a, x->ndim, x->shape);
        if (!e) {
            say_error("%s: unexpected tensor %s %s (not a parameter or buffer of the config's %s model)", in_path, x->name, a,
                      stage);
            problems++;
            continue;
        }
        if (x->ndim != e->ndim || x->numel != (int64_t)e->n || (e->ndim == 1 && x->shape[0] != e->shape[0])) {
            shape_str(b, sizeof b, e->ndim, e->shape);
            say_error("%s: buffer %s has shape %s, expected %s", in_path, x->name, a, b);
            problems++;
            continue;
        }
        if (!st_dtype_is_float(x->dtype)) {
            say_error("%s: buffer %s has dtype %s, expected a float type", in_path, x->name, st_dtype_name(x->dtype));
            problems++;
            continue;
        }
        float *v = LOLA_NEW(float, e->n);
        if (st_read_f32(&f, i, v, err, sizeof err) != 0) {
            say_error("import %s: %s", stage, err);
            problems++;
        } else {
            const double rtol = dtype_rtol(x->dtype);
            for (size_t k = 0; k < e->n; k++)
                if (!(fabs((double)v[k] - (double)e->vals[k]) <= rtol * fabs((double)e->vals[k]))) {
                    say_error("%s: buffer %s[%zu] = %.9g, but the model this program runs has %.9g (%s)", in_path, x->name, k,
                              (double)v[k], (double)e->vals[k],
                              strstr(x->name, "eps") ? "LayerNorm eps 1e-5" : "SineEncoding omega 1e3");
                    problems++;
                    break;
                }
        }
        free(v);
    }
    int rc = 1;
    if (problems) {
        say_error("import %s: %d problem(s) in '%s'; nothing written", stage, problems, in_path);
        goto done;
    }
    for (int d = 0; d < ST_N_DTYPES; d++)
        if (converted[d])
            log_info("import %s: converted %d tensor(s) from %s to fp32", stage, converted[d], st_dtype_name((StDtype)d));
    if (nonfinite) log_warn("import %s: %s holds %lld non-finite parameter values (NaN/inf)", stage, in_path, (long long)nonfinite);
    char dir[CFG_PATH_LEN * 2 + 16], ckpt[CFG_PATH_LEN * 2 + 32];
    if (run_dir && run_dir[0]) snprintf(dir, sizeof dir, "%s/%s", run_dir, stage);
    else stage_dir(cfg, stage, dir, sizeof dir);
    snprintf(ckpt, sizeof ckpt, "%s/state.h5", dir);
    if (lola_exists(ckpt)) {
        say_error("import %s: '%s' already exists; nothing written\nHINT: move it away, or import into another run directory",
                  stage, ckpt);
        goto done;
    }
    lola_mkdirs(dir);
    CheckpointMeta meta;
    memset(&meta, 0, sizeof meta);
    snprintf(meta.kind, sizeof meta.kind, "%s", stage);
    meta.best_valid = INFINITY;
    const CfgTrain *tr = !strcmp(stage, "ae") ? &cfg->ae_train : !strcmp(stage, "dm") ? &cfg->dm_train : &cfg->ns_train;
    meta.seed = (uint64_t)(uint32_t)tr->seed;
    snprintf(meta.optimizer, sizeof meta.optimizer, "adamw");
    float *zeros = LOLA_NEW(float, t->total ? t->total : 1);
    char *yaml = config_yaml_string(cfg);
    checkpoint_save(ckpt, &meta, t, params, zeros, zeros, yaml);
    free(yaml);
    free(zeros);
    char b1[32];
    log_info("import %s: %s -> %s: %d tensors (%s values), step 0, optimizer state zero", stage, in_path, ckpt, t->n,
             fmt_count(b1, sizeof b1, t->total));
    rc = 0;
done:
    free(used);
    free(params);
    spec_free(&s);
    st_close(&f);
    return rc;
}

// ---- CLI (commands.h hook) ---------------------------------------------------------------------
//   lola export -c CONFIG STAGE OUT.safetensors            (or --stage STAGE --out FILE)
//   lola import -c CONFIG STAGE IN.safetensors [RUN_DIR]   (or --stage STAGE --in FILE [--out RUN])
// Rank 0 does the work; the other ranks wait for it.

typedef struct {
    const char *stage, *in, *out;
} XArgs;

static int parse_xargs(const char *cmd, int argc, char **argv, int importing, XArgs *x) {
    memset(x, 0, sizeof *x);
    const char *pos[3];
    int np = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--stage") ? &x->stage : !strcmp(a, "--in") ? &x->in : !strcmp(a, "--out") ? &x->out : NULL;
        if (dst) {
            if (i + 1 >= argc) {
                if (lola_log_rank == 0) fprintf(stderr, "lola %s: %s needs a value\n", cmd, a);
                return 2;
            }
            *dst = argv[++i];
        } else if (a[0] == '-') {
            if (lola_log_rank == 0) fprintf(stderr, "lola %s: unknown option '%s'\n", cmd, a);
            return 2;
        } else if (np < 3) {
            pos[np++] = a;
        } else {
            if (lola_log_rank == 0) fprintf(stderr, "lola %s: unexpected argument '%s'\n", cmd, a);
            return 2;
        }
    }
    // Positional: STAGE FILE [RUN_DIR] fill what the options left open.
    int p = 0;
    if (!x->stage && p < np) x->stage = pos[p++];
    if (importing) {
        if (!x->in && p < np) x->in = pos[p++];
        if (!x->out && p < np) x->out = pos[p++];
    } else if (!x->out && p < np) {
        x->out = pos[p++];
    }
    if (p < np) {
        if (lola_log_rank == 0) fprintf(stderr, "lola %s: unexpected argument '%s'\n", cmd, pos[p]);
        return 2;
    }
    if (!x->stage || (importing ? !x->in : !x->out)) {
        if (lola_log_rank == 0)
            fprintf(stderr, importing ? "usage: lola import -c CONFIG STAGE IN.safetensors [RUN_DIR]   (STAGE: ae, dm, ns)\n"
                                      : "usage: lola export -c CONFIG STAGE OUT.safetensors   (STAGE: ae, dm, ns)\n");
        return 2;
    }
    return 0;
}

int cmd_export(const Config *cfg, int argc, char **argv) {
    XArgs x;
    int rc = parse_xargs("export", argc, argv, 0, &x);
    if (rc) return rc;
    rc = dist_rank() == 0 ? stage_export(cfg, x.stage, x.out) : 0;
    dist_barrier();
    return rc;
}

int cmd_import(const Config *cfg, int argc, char **argv) {
    XArgs x;
    int rc = parse_xargs("import", argc, argv, 1, &x);
    if (rc) return rc;
    rc = dist_rank() == 0 ? stage_import(cfg, x.stage, x.in, x.out) : 0;
    dist_barrier();
    return rc;
}
