// test_well.c: tests of the Well reader (well.c), transforms, augmentations, sampler and stats.
//
//   test_well                      unit tests that need no files (indexing arithmetic, transforms,
//                                  augmentation laws against a naive sequential reference, shards)
//   test_well --fixtures DIR       tests on the h5py fixtures (tests/make_well_fixture.py DIR)
//   test_well dump ROOT PHYS SPLIT L STRIDE IDX OUT [AUGS SEED [clhw]]
//                                  writes sample IDX to OUT (raw float32) and OUT.txt (location,
//                                  augmentation steps, label) for tests/well_h5py_compare.py
//   test_well open ROOT PHYS SPLIT [check_finite] [L STRIDE]   opens and reads every sample
//   test_well statslen | permute ROOT PHYS   bad-input drivers (they must die with a message)
//   test_well mpio ROOT PHYS SPLIT OUTPREFIX  (under mpirun) MPI-IO open, each rank dumps a sample
// PHYS and AUGS are comma-separated lists ("-" = none).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "common.h"
#include "sampler.h"
#include "test.h"
#include "transform.h"
#include "well.h"
#include "wellstats.h"

#ifdef LOLA_MPI
#include <mpi.h>
#endif

// ---------------------------------------------------------------------------------------------
// Helpers

static int split_list(char *s, const char **out, int max) {
    int n = 0;
    if (!s || strcmp(s, "-") == 0) return 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
    return n;
}

static void open_split(WellSplit *s, const char *root, const char *phys_csv, const char *split, int check_finite) {
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s", phys_csv);
    const char *phys[8];
    int np = split_list(buf, phys, 8);
    WellSpec sp = {0};
    sp.root = root;
    sp.physics = phys;
    sp.n_physics = np;
    sp.split = split;
    sp.check_finite = check_finite;
    well_open(s, &sp);
}

static const char *base(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

// The fixture value code (tests/make_well_fixture.py).
static float code_value(int f, int64_t b, int64_t t, int64_t p, int c, int negate) {
    int64_t code = (((f * 4 + b) * 16 + t) * 64 + p) * 8 + c;
    float v = (float)code + 0.25f;
    return negate ? -v : v;
}

// A synthetic split (no files) for the pure augmentation tests: t0 fields, one t1, optional t2.
static void synth_split(WellSplit *s, int D, const int64_t *shape, int n_t0, int with_t1, int with_t2, int bc[][2]) {
    memset(s, 0, sizeof(*s));
    s->n_dims = D;
    s->frame_size = 1;
    const char *dn[3] = {"x", "y", "z"};
    for (int d = 0; d < D; d++) {
        s->shape[d] = shape[d];
        s->frame_size *= shape[d];
        snprintf(s->dim_names[d], WELL_NAME_LEN, "%s", dn[d]);
    }
    snprintf(s->grid_type, sizeof(s->grid_type), "cartesian");
    snprintf(s->split, sizeof(s->split), "synthetic");
    int orders[8], nf = 0;
    for (int i = 0; i < n_t0; i++) orders[nf++] = 0;
    if (with_t1) orders[nf++] = 1;
    if (with_t2) orders[nf++] = 2;
    s->n_fields = nf;
    for (int f = 0; f < nf; f++) {
        WellField *fd = &s->fields[f];
        snprintf(fd->name, WELL_NAME_LEN, "f%d", f);
        fd->order = orders[f];
        fd->ncomp = orders[f] == 0 ? 1 : orders[f] == 1 ? D : D * D;
        fd->sample_varying = 1;
        fd->channel0 = s->n_channels;
        for (int k = 0; k < fd->ncomp; k++) {
            WellChannel *ch = &s->channels[s->n_channels++];
            ch->field = f;
            ch->k = k;
            ch->comp[0] = fd->order == 1 ? k : k / D;
            ch->comp[1] = fd->order == 2 ? k % D : 0;
            snprintf(ch->name, sizeof(ch->name), "c%d", s->n_channels - 1);
        }
    }
    static WellFile file;
    memset(&file, 0, sizeof(file));
    for (int d = 0; d < D; d++) {
        file.bc[d][0] = bc[d][0];
        file.bc[d][1] = bc[d][1];
    }
    file.n_traj = 1;
    file.n_steps = 1;
    static char path[] = "synthetic.h5";
    file.path = path;
    s->files = &file;
    s->n_files = 1;
    s->label_dim = 2 * D;
}

// raw layout (fields one after another, (nframes, P, ncomp)) -> channel-first (nframes, C, P)
static void raw_to_lchw(const WellSplit *s, const float *raw, int nf, float *out) {
    const int64_t P = s->frame_size;
    int64_t fb = 0;
    for (int f = 0; f < s->n_fields; f++) {
        const int nc = s->fields[f].ncomp;
        for (int l = 0; l < nf; l++)
            for (int64_t p = 0; p < P; p++)
                for (int k = 0; k < nc; k++) out[((int64_t)l * s->n_channels + s->fields[f].channel0 + k) * P + p] = raw[fb + ((int64_t)l * P + p) * nc + k];
        fb += (int64_t)nf * P * nc;
    }
}

// Naive sequential reference of the_well's augmentations on a channel-first (nf, C, shape) tensor
// with explicit shape n[] (changes under permute). Follows torch.flip / movedim+index_select /
// torch.roll literally, one op at a time.
typedef struct {
    int D;
    int64_t n[3];
} Shape;

static void unflat(int64_t p, const Shape *sh, int64_t *idx) {
    for (int d = sh->D - 1; d >= 0; d--) {
        idx[d] = p % sh->n[d];
        p /= sh->n[d];
    }
}
static int64_t flat(const int64_t *idx, const Shape *sh) {
    int64_t p = 0;
    for (int d = 0; d < sh->D; d++) p = p * sh->n[d] + idx[d];
    return p;
}

static void ref_step(const WellSplit *s, Shape *sh, float *x, int nf, const AugStep *st, float *tmp) {
    const int C = s->n_channels, D = sh->D;
    int64_t P = 1;
    for (int d = 0; d < D; d++) P *= sh->n[d];
    memcpy(tmp, x, sizeof(float) * (size_t)(nf * C * P));
    Shape nsh = *sh;
    if (st->kind == AUG_PERMUTE)
        for (int j = 0; j < D; j++) nsh.n[j] = sh->n[st->v[j]];
    for (int l = 0; l < nf; l++)
        for (int c = 0; c < C; c++) {
            const WellChannel *ch = &s->channels[c];
            const WellField *fd = &s->fields[ch->field];
            for (int64_t q = 0; q < P; q++) {
                int64_t oi[3], ii[3];
                unflat(q, &nsh, oi); // output index
                int src_c = c;
                float sign = 1.0f;
                if (st->kind == AUG_FLIP) {
                    for (int d = 0; d < D; d++) ii[d] = st->v[d] ? sh->n[d] - 1 - oi[d] : oi[d];
                    int flips = 0;
                    if (fd->order >= 1) flips += st->v[ch->comp[0]];
                    if (fd->order == 2) flips += st->v[ch->comp[1]];
                    if (flips % 2) sign = -1.0f;
                } else if (st->kind == AUG_PERMUTE) {
                    for (int j = 0; j < D; j++) ii[st->v[j]] = oi[j]; // movedim(source=p, dest=id)
                    if (fd->order == 1) src_c = fd->channel0 + st->v[ch->comp[0]];
                    if (fd->order == 2) src_c = fd->channel0 + st->v[ch->comp[0]] * D + st->v[ch->comp[1]];
                } else if (st->kind == AUG_ROLL) {
                    for (int d = 0; d < D; d++) ii[d] = ((oi[d] - st->v[d]) % sh->n[d] + sh->n[d]) % sh->n[d];
                } else {
                    for (int d = 0; d < D; d++) ii[d] = oi[d];
                }
                x[((int64_t)l * C + c) * P + q] = sign * tmp[((int64_t)l * C + src_c) * P + flat(ii, sh)];
            }
        }
    *sh = nsh;
}

static void ref_apply(const WellSplit *s, const AugPlan *p, float *x, int nf) {
    Shape sh = {s->n_dims, {s->shape[0], s->shape[1], s->shape[2]}};
    float *tmp = LOLA_NEW(float, (int64_t)nf * s->n_channels * s->frame_size);
    for (int i = 0; i < p->n_steps; i++) ref_step(s, &sh, x, nf, &p->steps[i], tmp);
    free(tmp);
}

static int equal_bits(const float *a, const float *b, int64_t n, int64_t *where) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (where) *where = i;
            return 0;
        }
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Unit tests (no files)

static void test_indexing_arithmetic(void) {
    CHECK(well_windows_per_traj(101, 5, 4) == 85, "windows: Euler T=101 L=5 stride 4 -> 85");
    CHECK(well_windows_per_traj(200, 5, 4) == 184, "windows: RB T=200 L=5 stride 4 -> 184");
    CHECK(well_windows_per_traj(50, 5, 1) == 46, "windows: TGC T=50 L=5 stride 1 -> 46");
    CHECK(well_windows_per_traj(101, 1, 1) == 101, "windows: AE snapshots T=101 -> 101");
    CHECK(well_windows_per_traj(10, 5, 4) == 0, "windows: too short -> 0 (floored)");
    CHECK(well_windows_per_traj(17, 5, 4) == 1, "windows: exactly (L-1)*stride+1 steps -> 1");
    // Files with different trajectory counts and steps: B = {3, 1, 2}, T = {9, 7, 9}, L = 2, s = 3
    WellSplit s;
    memset(&s, 0, sizeof(s));
    WellFile files[3];
    memset(files, 0, sizeof(files));
    int64_t B[3] = {3, 1, 2}, T[3] = {9, 7, 9};
    char names[3][8] = {"a", "b", "c"};
    for (int f = 0; f < 3; f++) {
        files[f].n_traj = B[f];
        files[f].n_steps = T[f];
        files[f].path = names[f];
    }
    s.files = files;
    s.n_files = 3;
    WellWindows w;
    well_windows_init(&w, &s, 2, 3);
    CHECK(w.per_traj[0] == 6 && w.per_traj[1] == 4 && w.per_traj[2] == 6, "windows per file {6,4,6}");
    CHECK(w.offset[0] == 0 && w.offset[1] == 18 && w.offset[2] == 22 && w.n_samples == 34, "file offsets {0,18,22}, len 34");
    struct {
        int64_t idx;
        int f;
        int64_t b, t;
    } cases[] = {{0, 0, 0, 0}, {5, 0, 0, 5}, {6, 0, 1, 0}, {17, 0, 2, 5}, {18, 1, 0, 0}, {21, 1, 0, 3}, {22, 2, 0, 0}, {28, 2, 1, 0}, {33, 2, 1, 5}};
    int ok = 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        WellLoc l = well_locate(&w, cases[i].idx);
        if (l.file != cases[i].f || l.traj != cases[i].b || l.start != cases[i].t) {
            ok = 0;
            printf("  idx %lld -> (%d, %lld, %lld), expected (%d, %lld, %lld)\n", (long long)cases[i].idx, l.file, (long long)l.traj,
                   (long long)l.start, cases[i].f, (long long)cases[i].b, (long long)cases[i].t);
        }
    }
    CHECK(ok, "locate: hand-computed (file, trajectory, start) for 9 indices");
    ok = 1;
    int64_t prev = -1;
    for (int64_t i = 0; i < w.n_samples; i++) {
        WellLoc l = well_locate(&w, i);
        if (well_global_index(&w, l) != i) ok = 0;
        // order: file-major, then trajectory, then start
        int64_t key = ((int64_t)l.file * 100 + l.traj) * 100 + l.start;
        if (key <= prev) ok = 0;
        prev = key;
    }
    CHECK(ok, "locate/global_index round trip, file-major then trajectory then start");
    well_windows_free(&w);
}

static void test_transforms(void) {
    const int C = 5;
    int kinds[5] = {TF_LOG1P, TF_LOG, TF_LOG_EPS, TF_ARCSINH, TF_NONE};
    float mean[5] = {1.2f, 0.6f, 0.58f, 0.f, -0.5f}, sd[5] = {0.51f, 0.27f, 0.29f, 0.53f, 2.f};
    Preprocess p;
    preprocess_init(&p, C, kinds, mean, 5, sd, 5, "test");
    CHECK(transform_parse("log1p") == TF_LOG1P && transform_parse("log_eps") == TF_LOG_EPS && transform_parse("arcsinh") == TF_ARCSINH &&
              transform_parse("log") == TF_LOG && transform_parse("sqrt") == -1,
          "transform names parse");
    CHECK_CLOSE(preprocess_value(&p, 0, 1.0f), (log1p(1.0) - 1.2) / 0.51, 1e-6, 1e-6, "log1p then z-score");
    CHECK_CLOSE(preprocess_value(&p, 2, 0.0f), (log(1e-6) - 0.58) / 0.29, 1e-4, 1e-6, "log_eps: log(x + 1e-6)");
    CHECK_CLOSE(preprocess_value(&p, 3, -2.0f), asinh(-2.0) / 0.53, 1e-6, 1e-6, "arcsinh");
    // the fast float log1p / log: <= 1 ulp against double precision over a wide sweep
    double worst_l1p = 0, worst_log = 0;
    int special_ok = 1;
    for (int64_t i = 0; i < 2000000; i++) {
        // log-spaced magnitudes 1e-30 .. 1e30, both signs for log1p (x > -1)
        double e = -30.0 + 60.0 * (double)i / 2000000.0;
        float x = (float)pow(10.0, e);
        float y1 = transform_fast_log1pf(x), y2 = transform_fast_logf(x);
        double r1 = log1p((double)x), r2 = log((double)x);
        double u1 = fabs((double)nextafterf((float)r1, INFINITY) - (float)r1), u2 = fabs((double)nextafterf((float)r2, INFINITY) - (float)r2);
        if (u1 > 0 && fabs(y1 - r1) / u1 > worst_l1p) worst_l1p = fabs(y1 - r1) / u1;
        if (u2 > 0 && fabs(y2 - r2) / u2 > worst_log) worst_log = fabs(y2 - r2) / u2;
        float xn = -x;
        if (xn > -1.0f) {
            float y3 = transform_fast_log1pf(xn);
            double r3 = log1p((double)xn), u3 = fabs((double)nextafterf((float)r3, INFINITY) - (float)r3);
            if (u3 > 0 && fabs(y3 - r3) / u3 > worst_l1p) worst_l1p = fabs(y3 - r3) / u3;
        }
    }
    special_ok = isnan(transform_fast_log1pf(-2.0f)) && isinf(transform_fast_log1pf(-1.0f)) && isinf(transform_fast_logf(0.0f)) &&
                 transform_fast_logf(1e-40f) == logf(1e-40f) && isnan(transform_fast_logf(NAN)) && isinf(transform_fast_log1pf(INFINITY));
    printf("  fast log1p worst error %.3f ulp, fast log %.3f ulp\n", worst_l1p, worst_log);
    CHECK(worst_l1p <= 1.0 && worst_log <= 1.0 && special_ok, "float log1p/log kernels within 1 ulp; -1, <-1, 0, subnormal, inf, nan as libm");
    // array path == value path, and round trip
    const int64_t inner = 257, outer = 3;
    float *x = LOLA_NEW(float, outer * C * inner), *y = LOLA_NEW(float, outer * C * inner);
    Rng r = rng_seed(7);
    for (int64_t i = 0; i < outer * C * inner; i++) {
        int c = (int)((i / inner) % C);
        double u = rng_uniform(&r);
        x[i] = (float)(c == 3 || c == 4 ? (u - 0.5) * 20 : u * 5 + 1e-3);
    }
    memcpy(y, x, sizeof(float) * (size_t)(outer * C * inner));
    preprocess_forward(&p, y, outer, inner);
    int same = 1;
    for (int64_t i = 0; i < outer * C * inner; i++) {
        float v = preprocess_value(&p, (int)((i / inner) % C), x[i]);
        if (memcmp(&v, &y[i], 4)) same = 0;
    }
    CHECK(same, "preprocess_forward equals preprocess_value bit for bit");
    preprocess_inverse(&p, y, outer, inner);
    double worst = 0;
    for (int64_t i = 0; i < outer * C * inner; i++) {
        double e = fabs((double)y[i] - x[i]) / (fabs(x[i]) + 1e-3);
        if (e > worst) worst = e;
    }
    printf("  inverse round trip worst relative error %.3g\n", worst);
    CHECK(worst < 2e-5, "inverse(forward(x)) == x up to float32 rounding (all 4 transforms + none)");
    free(x);
    free(y);
}

// gather with plan vs naive reference, on random data
static int check_plan_vs_ref(const WellSplit *s, const AugPlan *plan, int nf, uint64_t seed) {
    const int64_t n = (int64_t)nf * s->n_channels * s->frame_size;
    float *raw = LOLA_NEW(float, n), *got = LOLA_NEW(float, n), *ref = LOLA_NEW(float, n);
    Rng r = rng_seed(seed);
    for (int64_t i = 0; i < n; i++) raw[i] = (float)(rng_uniform(&r) * 2 - 1);
    augment_gather(plan, NULL, s, raw, nf, got, (int64_t)s->n_channels * s->frame_size, s->frame_size);
    raw_to_lchw(s, raw, nf, ref);
    ref_apply(s, plan, ref, nf);
    int64_t where = -1;
    int ok = equal_bits(got, ref, n, &where);
    if (!ok) printf("  mismatch at %lld: got %g ref %g\n", (long long)where, got[where], ref[where]);
    free(raw);
    free(got);
    free(ref);
    return ok;
}

static void test_augment_laws(void) {
    // 2-D Euler-like: 3 t0 + momentum, 4x4, asymmetric BCs to see swaps
    WellSplit s;
    int64_t shape[3] = {4, 4, 1};
    int bc[3][2] = {{WELL_WALL, WELL_OPEN}, {WELL_PERIODIC, WELL_PERIODIC}, {0, 0}};
    synth_split(&s, 2, shape, 3, 1, 0, bc);
    const int64_t P = s.frame_size, C = s.n_channels;
    float *raw = LOLA_NEW(float, C * P), *a = LOLA_NEW(float, C * P), *b = LOLA_NEW(float, C * P), *id = LOLA_NEW(float, C * P);
    for (int64_t i = 0; i < C * P; i++) raw[i] = (float)(i + 1);
    AugPlan p;
    augment_identity(&p, &s, 0);
    augment_gather(&p, NULL, &s, raw, 1, id, C * P, P);
    // flip twice = identity
    AugStep fx = {AUG_FLIP, {1, 0, 0}}, fy = {AUG_FLIP, {0, 1, 0}};
    augment_apply_step(&p, &fx);
    augment_apply_step(&p, &fy);
    augment_apply_step(&p, &fx);
    augment_apply_step(&p, &fy);
    augment_gather(&p, NULL, &s, raw, 1, a, C * P, P);
    CHECK(equal_bits(a, id, C * P, NULL) && p.bc[0][0] == WELL_WALL && p.bc[0][1] == WELL_OPEN, "flip twice = identity (data and BCs)");
    // flip x: data mirrored along x, momentum_x negated, momentum_y not, BC row 0 swapped
    augment_identity(&p, &s, 0);
    augment_apply_step(&p, &fx);
    augment_gather(&p, NULL, &s, raw, 1, a, C * P, P);
    int ok_data = 1, ok_mx = 1, ok_my = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            int64_t q = i * 4 + j, qf = (3 - i) * 4 + j;
            for (int c = 0; c < 3; c++) ok_data &= a[c * P + q] == id[c * P + qf];
            ok_mx &= a[3 * P + q] == -id[3 * P + qf];
            ok_my &= a[4 * P + q] == id[4 * P + qf];
        }
    CHECK(ok_data, "flip x mirrors scalar fields along x");
    CHECK(ok_mx && ok_my, "flip x negates momentum_x only");
    CHECK(p.bc[0][0] == WELL_OPEN && p.bc[0][1] == WELL_WALL && p.bc[1][0] == WELL_PERIODIC, "flip x swaps the x BC pair only");
    float lab[4];
    augment_label(&p, &s, 0, 0, lab);
    CHECK(lab[0] == 1 && lab[1] == 0 && lab[2] == 2 && lab[3] == 2, "label after flip x = [1, 0, 2, 2]");
    // flip y negates momentum_y only
    augment_identity(&p, &s, 0);
    augment_apply_step(&p, &fy);
    augment_gather(&p, NULL, &s, raw, 1, a, C * P, P);
    ok_mx = ok_my = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            ok_mx &= a[3 * P + i * 4 + j] == id[3 * P + i * 4 + 3 - j];
            ok_my &= a[4 * P + i * 4 + j] == -id[4 * P + i * 4 + 3 - j];
        }
    CHECK(ok_mx && ok_my, "flip y negates momentum_y only");
    // permute (1, 0): transpose, swap momentum components, swap BC rows
    AugStep pm = {AUG_PERMUTE, {1, 0, 0}};
    augment_identity(&p, &s, 0);
    augment_apply_step(&p, &pm);
    augment_gather(&p, NULL, &s, raw, 1, a, C * P, P);
    int ok_t = 1, ok_c = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            for (int c = 0; c < 3; c++) ok_t &= a[c * P + i * 4 + j] == id[c * P + j * 4 + i];
            ok_c &= a[3 * P + i * 4 + j] == id[4 * P + j * 4 + i] && a[4 * P + i * 4 + j] == id[3 * P + j * 4 + i];
        }
    CHECK(ok_t, "permute transposes the data");
    CHECK(ok_c, "permute reorders the momentum components (new x = old y)");
    CHECK(p.bc[0][0] == WELL_PERIODIC && p.bc[1][0] == WELL_WALL && p.bc[1][1] == WELL_OPEN, "permute permutes the BC rows");
    // roll: only the periodic axis (y here) is rolled by augment_draw
    AugmentList al;
    const char *rn[1] = {"random_axis_roll"};
    augment_list_init(&al, rn, 1, "test");
    int only_y = 1, nonzero = 0;
    for (uint64_t k = 0; k < 200; k++) {
        Rng r = rng_seed(k);
        augment_draw(&p, &al, &s, 0, &r);
        only_y &= p.steps[0].v[0] == 0 && p.steps[0].v[1] >= 0 && p.steps[0].v[1] < 4;
        nonzero += p.steps[0].v[1] != 0;
    }
    CHECK(only_y && nonzero > 100, "roll draws a shift in [0, size) for the periodic axis only (%d/200 nonzero)", nonzero);
    AugStep ry = {AUG_ROLL, {0, 1, 0}};
    augment_identity(&p, &s, 0);
    augment_apply_step(&p, &ry);
    augment_gather(&p, NULL, &s, raw, 1, a, C * P, P);
    int ok_r = 1;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) ok_r &= a[c * P + i * 4 + j] == id[c * P + i * 4 + (j + 3) % 4];
    CHECK(ok_r, "roll by 1 along y: out[i][j] = in[i][(j - 1) mod n] (torch.roll), no sign change");
    // log_scalars quirk
    CHECK(augment_logs_scalar("Rayleigh") && augment_logs_scalar("prandtl") && augment_logs_scalar("RHO0") && augment_logs_scalar("rho0"),
          "log_scalars logs rayleigh, prandtl, rho0 (any case)");
    CHECK(!augment_logs_scalar("T0") && !augment_logs_scalar("t0") && !augment_logs_scalar("Z") && !augment_logs_scalar("gamma"),
          "log_scalars does NOT log T0 (LoLa compares key.lower() with \"T0\"), nor Z or gamma");
    // draw statistics: flip p = 0.5 per axis; permutation uniform
    const char *all[3] = {"random_axis_flip", "random_axis_permute", "random_axis_roll"};
    augment_list_init(&al, all, 3, "test");
    int flips[2] = {0, 0}, perms = 0;
    const int N = 4000;
    for (int k = 0; k < N; k++) {
        Rng r = rng_seed(1000 + (uint64_t)k);
        augment_draw(&p, &al, &s, 0, &r);
        flips[0] += p.steps[0].v[0];
        flips[1] += p.steps[0].v[1];
        perms += p.steps[1].v[0] == 1;
    }
    CHECK(fabs(flips[0] / (double)N - 0.5) < 0.03 && fabs(flips[1] / (double)N - 0.5) < 0.03 && fabs(perms / (double)N - 0.5) < 0.03,
          "flip p=0.5 per axis (%.3f, %.3f), permutation uniform (%.3f swapped)", flips[0] / (double)N, flips[1] / (double)N, perms / (double)N);
    // composed plan == sequential reference, for random draws, 2-D and 3-D with t1 and t2 fields
    int ok2 = 1, ok3 = 1;
    for (uint64_t k = 0; k < 60; k++) {
        Rng r = rng_seed(77 + k);
        augment_draw(&p, &al, &s, 0, &r);
        ok2 &= check_plan_vs_ref(&s, &p, 2, k);
    }
    CHECK(ok2, "2-D: flip+permute+roll composed into one gather == the_well's ops applied one by one (60 draws)");
    WellSplit s3;
    int64_t shape3[3] = {3, 3, 3};
    int bc3[3][2] = {{WELL_PERIODIC, WELL_PERIODIC}, {WELL_OPEN, WELL_WALL}, {WELL_PERIODIC, WELL_PERIODIC}};
    synth_split(&s3, 3, shape3, 2, 1, 1, bc3);
    const char *many[6] = {"log_scalars", "random_axis_roll", "random_axis_flip", "random_axis_permute", "random_axis_roll", "random_axis_flip"};
    augment_list_init(&al, many, 6, "test");
    for (uint64_t k = 0; k < 60; k++) {
        Rng r = rng_seed(500 + k);
        augment_draw(&p, &al, &s3, 0, &r);
        ok3 &= check_plan_vs_ref(&s3, &p, 2, k);
    }
    CHECK(ok3, "3-D with t1 and t2 fields: roll/flip/permute/roll/flip composition == sequential reference (60 draws)");
    // 3-D permutations uniform over 6
    const char *pn[1] = {"random_axis_permute"};
    augment_list_init(&al, pn, 1, "test");
    int cnt[3][3][3] = {{{0}}};
    for (int k = 0; k < 6000; k++) {
        Rng r = rng_seed(9000 + (uint64_t)k);
        augment_draw(&p, &al, &s3, 0, &r);
        cnt[p.steps[0].v[0]][p.steps[0].v[1]][p.steps[0].v[2]]++;
    }
    int uni = 1;
    int perm6[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < 6; i++) uni &= abs(cnt[perm6[i][0]][perm6[i][1]][perm6[i][2]] - 1000) < 120;
    CHECK(uni, "3-D permutation uniform over the 6 orders");
    free(raw);
    free(a);
    free(b);
    free(id);
}

static void test_shards(void) {
    const int64_t n = 103;
    int64_t *o1 = LOLA_NEW(int64_t, n), *o2 = LOLA_NEW(int64_t, n);
    sampler_order(o1, n, 1, 42, 3);
    sampler_order(o2, n, 1, 42, 3);
    int perm = 1;
    char *seen = LOLA_NEW(char, n);
    for (int64_t i = 0; i < n; i++) {
        if (o1[i] < 0 || o1[i] >= n || seen[o1[i]]) perm = 0;
        else seen[o1[i]] = 1;
    }
    CHECK(perm && memcmp(o1, o2, sizeof(int64_t) * n) == 0, "epoch order is a permutation and a function of (seed, epoch)");
    sampler_order(o2, n, 1, 42, 4);
    CHECK(memcmp(o1, o2, sizeof(int64_t) * n) != 0, "a new epoch reshuffles");
    sampler_order(o2, n, 0, 42, 4);
    int ident = 1;
    for (int64_t i = 0; i < n; i++) ident &= o2[i] == i;
    CHECK(ident, "no shuffle: identity order");
    for (int R = 1; R <= 3; R++) {
        int64_t per = shard_per_rank(n, R);
        memset(seen, 0, (size_t)n);
        int disjoint = 1;
        int64_t total = 0;
        for (int r = 0; r < R; r++)
            for (int64_t i = 0; i < per; i++) {
                int64_t idx = o1[shard_position(i, r, R)];
                if (seen[idx]) disjoint = 0;
                seen[idx] = 1;
                total++;
            }
        // coverage: exactly the first per*R entries of the global order
        int cover = 1;
        for (int64_t q = 0; q < n; q++) cover &= seen[o1[q]] == (q < per * R);
        CHECK(disjoint && cover && per == n / R && total == per * R,
              "R=%d: shards disjoint, %lld each, together = the first %lld of the same global order", R, (long long)per, (long long)(per * R));
    }
    // a global batch of 6: step k holds the same samples for R = 1, 2, 3 (b = 6, 3, 2)
    int same = 1;
    for (int64_t k = 0; k < n / 6; k++) {
        int64_t sets[3][6];
        for (int R = 1; R <= 3; R++) {
            int b = 6 / R, m = 0;
            for (int r = 0; r < R; r++)
                for (int j = 0; j < b; j++) sets[R - 1][m++] = o1[shard_position(k * b + j, r, R)];
        }
        for (int R = 1; R < 3; R++)
            for (int i = 0; i < 6; i++) {
                int found = 0;
                for (int j = 0; j < 6; j++) found |= sets[R][i] == sets[0][j];
                same &= found;
            }
    }
    CHECK(same, "fixed global batch 6: each step covers the same samples for R = 1, 2, 3");
    free(o1);
    free(o2);
    free(seen);
}

// ---------------------------------------------------------------------------------------------
// Fixture tests

static int check_values(WellSplit *s, const WellWindows *w, int64_t idx, const float *x, WellLayout layout) {
    WellLoc l = well_locate(w, idx);
    const int64_t P = s->frame_size;
    const int C = s->n_channels;
    for (int t = 0; t < w->L; t++)
        for (int c = 0; c < C; c++) {
            const WellChannel *ch = &s->channels[c];
            int neg = s->fields[ch->field].order > 0 && ch->k % 2 == 1;
            for (int64_t p = 0; p < P; p++) {
                int64_t o = layout == WELL_LCHW ? ((int64_t)t * C + c) * P + p : ((int64_t)c * w->L + t) * P + p;
                float want = code_value(l.file, l.traj, l.start + (int64_t)t * w->stride, p, c, neg);
                if (x[o] != want) {
                    printf("  idx %lld (file %d traj %lld start %lld) frame %d channel %s point %lld: got %.2f want %.2f\n", (long long)idx,
                           l.file, (long long)l.traj, (long long)l.start, t, ch->name, (long long)p, x[o], want);
                    return 0;
                }
            }
        }
    return 1;
}

static void test_fixture_euler(const char *root) {
    WellSplit s;
    open_split(&s, root, "euler_multi_quadrants_openBC,euler_multi_quadrants_periodicBC", "train", 1);
    well_print(&s);
    const char *want_files[5] = {"euler_multi_quadrants_openBC_gamma_1.13_C3H8_16.hdf5", "euler_multi_quadrants_openBC_gamma_1.365_Dry_air_1000.hdf5",
                                 "euler_multi_quadrants_openBC_gamma_1.4_Dry_air_20.hdf5", "euler_multi_quadrants_periodicBC_gamma_1.22_C2H6_15.hdf5",
                                 "euler_multi_quadrants_periodicBC_gamma_1.4_Dry_air_20.hdf5"};
    int ok = s.n_files == 5;
    for (int i = 0; ok && i < 5; i++) ok = strcmp(base(s.files[i].path), want_files[i]) == 0;
    CHECK(ok, "euler_all: 5 files, openBC then periodicBC, each sorted bytewise (1.13 < 1.365 < 1.4)");
    int64_t B[5] = {3, 1, 2, 1, 2}, T[5] = {9, 7, 9, 9, 9};
    double g[5] = {1.13, 1.365, 1.4, 1.22, 1.4};
    ok = 1;
    for (int i = 0; i < 5; i++) ok &= s.files[i].n_traj == B[i] && s.files[i].n_steps == T[i] && well_scalars(&s, i, 0)[0] == g[i];
    CHECK(ok, "n_trajectories, steps and gamma per file");
    const char *chn[5] = {"energy", "density", "pressure", "momentum_x", "momentum_y"};
    ok = s.n_channels == 5;
    for (int c = 0; ok && c < 5; c++) ok = strcmp(s.channels[c].name, chn[c]) == 0;
    CHECK(ok, "channel order energy, density, pressure, momentum_x, momentum_y (field_names, not HDF5 key order)");
    ok = 1;
    for (int i = 0; i < 5; i++) {
        int code = i < 3 ? WELL_OPEN : WELL_PERIODIC;
        ok &= s.files[i].bc[0][0] == code && s.files[i].bc[0][1] == code && s.files[i].bc[1][0] == code && s.files[i].bc[1][1] == code;
    }
    CHECK(ok, "BC codes: openBC files all OPEN (1), periodicBC files all PERIODIC (2)");
    float lab[5];
    augment_label(NULL, &s, 3, 0, lab);
    CHECK(s.label_dim == 5 && fabsf(lab[0] - 1.22f) < 1e-7f && lab[1] == 2 && lab[2] == 2 && lab[3] == 2 && lab[4] == 2, "label = [gamma, 2, 2, 2, 2] for a periodic file");
    CHECK(s.n_scalars == 1 && strcmp(s.scalar_names[0], "gamma") == 0 && strcmp(s.grid_type, "cartesian") == 0 && s.shape[0] == 6 && s.shape[1] == 6,
          "scalars [gamma], cartesian 6x6");
    // windows: L = 3 at stride 2 -> W = T - 4 = {5, 3, 5, 5, 5}; len = 15 + 3 + 10 + 5 + 10 = 43
    WellWindows w;
    well_windows_init(&w, &s, 3, 2);
    CHECK(w.n_samples == 43 && w.offset[1] == 15 && w.offset[2] == 18 && w.offset[3] == 28 && w.offset[4] == 33, "windows L=3 stride 2: 43 samples, offsets 0,15,18,28,33");
    WellLoc l = well_locate(&w, 17);
    CHECK(l.file == 1 && l.traj == 0 && l.start == 2, "index 17 -> file 1, trajectory 0, start 2");
    l = well_locate(&w, 24);
    CHECK(l.file == 2 && l.traj == 1 && l.start == 1, "index 24 -> file 2, trajectory 1, start 1");
    float *x = LOLA_NEW(float, well_sample_floats(&s, 9));
    int allok = 1;
    for (int64_t i = 0; i < w.n_samples; i++) {
        well_read_sample(&s, &w, i, NULL, NULL, WELL_LCHW, x);
        allok &= check_values(&s, &w, i, x, WELL_LCHW);
    }
    CHECK(allok, "every window (43) holds the values of its (file, trajectory, time, point, channel), layout (L, C, H, W)");
    allok = 1;
    for (int64_t i = 0; i < w.n_samples; i += 5) {
        well_read_sample(&s, &w, i, NULL, NULL, WELL_CLHW, x);
        allok &= check_values(&s, &w, i, x, WELL_CLHW);
    }
    CHECK(allok, "layout (C, L, H, W) holds the same values");
    // whole trajectory of the 7-step file
    well_read_trajectory(&s, 1, 0, NULL, NULL, WELL_LCHW, x);
    WellWindows wt;
    well_windows_init(&wt, &s, 7, 1);
    CHECK(check_values(&s, &wt, wt.offset[1], x, WELL_LCHW), "whole-trajectory read (7 frames) of file 1");
    well_windows_free(&wt);
    // augmented + transformed read == reference applied to the plain read
    AugmentList al;
    const char *aug[3] = {"random_axis_flip", "random_axis_permute", "random_axis_roll"};
    augment_list_init(&al, aug, 3, "test");
    int kinds[5] = {TF_LOG1P, TF_LOG1P, TF_LOG1P, TF_NONE, TF_NONE};
    float mean[5] = {1.2f, 0.6f, 0.58f, 0.f, 0.f}, sd[5] = {0.51f, 0.27f, 0.29f, 0.53f, 0.52f};
    Preprocess pre;
    preprocess_init(&pre, 5, kinds, mean, 5, sd, 5, "test");
    const int64_t n = well_sample_floats(&s, 3);
    float *ref = LOLA_NEW(float, n);
    int okaug = 1, rolled = 0;
    for (int64_t i = 0; i < w.n_samples; i++) {
        WellLoc q = well_locate(&w, i);
        AugPlan p;
        Rng r = rng_seed(123 + (uint64_t)i);
        augment_draw(&p, &al, &s, q.file, &r);
        rolled += p.steps[2].v[0] != 0 || p.steps[2].v[1] != 0;
        if (q.file < 3) okaug &= p.steps[2].v[0] == 0 && p.steps[2].v[1] == 0; // open files never roll
        well_read_sample(&s, &w, i, &p, &pre, WELL_LCHW, x);
        well_read_sample(&s, &w, i, NULL, NULL, WELL_LCHW, ref);
        ref_apply(&s, &p, ref, 3);
        for (int t = 0; t < 3; t++)
            for (int c = 0; c < 5; c++)
                for (int64_t k = 0; k < s.frame_size; k++) {
                    float *v = &ref[((int64_t)t * 5 + c) * s.frame_size + k];
                    *v = preprocess_value(&pre, c, *v);
                }
        int64_t where;
        if (!equal_bits(x, ref, n, &where)) {
            okaug = 0;
            printf("  sample %lld differs at %lld: %g vs %g\n", (long long)i, (long long)where, x[where], ref[where]);
        }
    }
    CHECK(okaug && rolled > 0, "augmented+transformed windows == reference ops on the plain read, bit for bit (rolls only on periodic files)");
    // label after augmentation: BC pair swapped by flips is visible only with asymmetric BCs (unit test);
    // here the label must keep gamma and the (symmetric) codes
    well_windows_free(&w);
    // loader: prefetch == synchronous; R = 1, 2, 3 see the same global batches and data
    SampleSource src;
    source_init(&src, &s, 1, 1, &pre, &al, WELL_LCHW);
    CHECK(src.win.n_samples == 79, "AE snapshots: 3*9 + 7 + 2*9 + 9 + 2*9 = 79");
    LoaderConfig lc = {0};
    lc.src = &src;
    lc.batch = 6;
    lc.rank = 0;
    lc.ranks = 1;
    lc.shuffle = 1;
    lc.seed = 5;
    lc.prefetch = 1;
    BatchLoader *la = loader_create(&lc);
    lc.prefetch = 0;
    BatchLoader *lb = loader_create(&lc);
    const int64_t spe = loader_steps_per_epoch(la);
    CHECK(spe == 13, "steps per epoch = floor(79 / 6) = 13");
    int same = 1;
    const int64_t bfl = 6 * src.sample_floats;
    float *keep = LOLA_NEW(float, bfl);
    int64_t idx_r1[40][6];
    float lab_r1[40][6][5];
    float *data_r1 = LOLA_NEW(float, 40 * bfl);
    for (int k = 0; k < 30; k++) {
        const Batch *ba = loader_next(la);
        memcpy(keep, ba->x, sizeof(float) * (size_t)bfl);
        const Batch *bb = loader_next(lb);
        same &= ba->epoch == bb->epoch && ba->step == bb->step && memcmp(ba->index, bb->index, 6 * sizeof(int64_t)) == 0 &&
                memcmp(keep, bb->x, sizeof(float) * (size_t)bfl) == 0 && memcmp(ba->label, bb->label, 6 * 5 * sizeof(float)) == 0;
        same &= ba->epoch == k / 13 && ba->step == k % 13;
        memcpy(idx_r1[k], ba->index, sizeof(idx_r1[k]));
        memcpy(lab_r1[k], ba->label, sizeof(lab_r1[k]));
        memcpy(data_r1 + k * bfl, ba->x, sizeof(float) * (size_t)bfl);
    }
    CHECK(same, "prefetching loader == synchronous loader over 30 batches (2+ epochs)");
    loader_destroy(la);
    loader_destroy(lb);
    int across = 1;
    for (int R = 2; R <= 3; R++) {
        BatchLoader *lr[3];
        for (int r = 0; r < R; r++) {
            LoaderConfig c2 = lc;
            c2.batch = 6 / R;
            c2.rank = r;
            c2.ranks = R;
            c2.prefetch = r == 0;
            lr[r] = loader_create(&c2);
        }
        for (int k = 0; k < 13; k++) {
            for (int r = 0; r < R; r++) {
                const Batch *b = loader_next(lr[r]);
                for (int j = 0; j < b->n; j++) {
                    int found = -1;
                    for (int q = 0; q < 6; q++)
                        if (idx_r1[k][q] == b->index[j]) found = q;
                    if (found < 0) {
                        across = 0;
                        continue;
                    }
                    // same global position -> same augmentation -> same data and label
                    across &= memcmp(b->x + (int64_t)j * src.sample_floats, data_r1 + k * bfl + (int64_t)found * src.sample_floats,
                                     sizeof(float) * (size_t)src.sample_floats) == 0;
                    across &= memcmp(b->label + j * 5, lab_r1[k][found], 5 * sizeof(float)) == 0;
                }
            }
        }
        for (int r = 0; r < R; r++) loader_destroy(lr[r]);
    }
    CHECK(across, "R = 2, 3 ranks (global batch 6): every step has the same samples, augmentations and labels as R = 1");
    free(keep);
    free(data_r1);
    source_free(&src);
    // stats: all 79 snapshots == brute force over every snapshot
    WellStats st;
    Preprocess tf;
    preprocess_init(&tf, 5, kinds, NULL, 0, NULL, 0, "test");
    wellstats_compute(&s, &tf, 1000, 9, &st);
    WellWindows w1;
    well_windows_init(&w1, &s, 1, 1);
    double m1[5] = {0}, m2[5] = {0};
    for (int64_t i = 0; i < w1.n_samples; i++) {
        well_read_sample(&s, &w1, i, NULL, &tf, WELL_LCHW, x);
        for (int c = 0; c < 5; c++) {
            double a = 0, b2 = 0;
            for (int64_t k = 0; k < s.frame_size; k++) {
                a += x[c * s.frame_size + k];
                b2 += (double)x[c * s.frame_size + k] * x[c * s.frame_size + k];
            }
            m1[c] += a / s.frame_size / w1.n_samples;
            m2[c] += b2 / s.frame_size / w1.n_samples;
        }
    }
    int okst = st.n_snapshots == 79;
    for (int c = 0; c < 5; c++) {
        okst &= fabs(st.mean[c] - m1[c]) <= 1e-9 * fabs(m1[c]) + 1e-9;
        okst &= fabs(st.std[c] - sqrt(m2[c] - m1[c] * m1[c])) <= 1e-7 * fabs(st.std[c]) + 1e-9;
    }
    CHECK(okst, "stats over all 79 snapshots: mean and sqrt(E[x^2] - E[x]^2) after log1p match a brute-force pass");
    CHECK(st.min[0] == (double)transform_fast_log1pf(0.25f) && st.max[3] > 0 && st.min[4] < 0, "stats min/max after the transform (energy min = log1p(0.25))");
    WellStats st2;
    wellstats_compute(&s, &tf, 20, 9, &st2);
    WellStats st3;
    wellstats_compute(&s, &tf, 20, 9, &st3);
    CHECK(st2.n_snapshots == 20 && memcmp(st2.mean, st3.mean, sizeof(st2.mean)) == 0 && st2.mean[0] != st.mean[0],
          "stats from 20 random snapshots: reproducible for a seed, differs from the full pass");
    char path[512];
    snprintf(path, sizeof(path), "%s/../stats.yaml", root);
    wellstats_write_yaml(path, &s, &tf, &st);
    FILE *fp = fopen(path, "r");
    char text[4096] = {0};
    size_t got = fp ? fread(text, 1, sizeof(text) - 1, fp) : 0;
    if (fp) fclose(fp);
    char want[256];
    snprintf(want, sizeof(want), "\nmean: [%.8g, ", st.mean[0]);
    CHECK(got > 0 && strstr(text, want) && strstr(text, "\nstd: [") && strstr(text, "# channels: [energy, density, pressure, momentum_x, momentum_y]"),
          "stats.yaml has 'mean: [...]' and 'std: [...]' with the channel names in a comment");
    printf("%s", text);
    well_windows_free(&w1);
    free(ref);
    free(x);
    well_close(&s);
}

static void test_fixture_others(const char *root) {
    WellSplit s;
    open_split(&s, root, "rayleigh_benard", "train", 0);
    const char *chn[4] = {"buoyancy", "pressure", "velocity_x", "velocity_y"};
    int ok = s.n_channels == 4 && s.shape[0] == 8 && s.shape[1] == 4;
    for (int c = 0; ok && c < 4; c++) ok = strcmp(s.channels[c].name, chn[c]) == 0;
    CHECK(ok, "RB: channels buoyancy, pressure, velocity_x, velocity_y on 8x4");
    CHECK(s.files[0].bc[0][0] == 2 && s.files[0].bc[0][1] == 2 && s.files[0].bc[1][0] == 0 && s.files[0].bc[1][1] == 0, "RB: BC [[2,2],[0,0]] (x periodic, y WALL)");
    AugPlan p;
    augment_identity(&p, &s, 0);
    p.log_scalars = 1;
    float lab[6];
    augment_label(&p, &s, 0, 0, lab);
    CHECK(strstr(s.files[0].path, "Rayleigh_1e6") && fabsf(lab[0] - (float)log(1e6)) < 1e-6f && lab[1] == 0.0f && lab[2] == 2 && lab[3] == 2 &&
              lab[4] == 0 && lab[5] == 0,
          "RB label with log_scalars = [log 1e6, log 1, 2, 2, 0, 0]");
    augment_label(NULL, &s, 1, 0, lab);
    CHECK(lab[0] == 1e8f && lab[1] == 10.0f, "RB label without log_scalars = [1e8, 10, ...]");
    WellWindows w;
    well_windows_init(&w, &s, 5, 2);
    float *x = LOLA_NEW(float, well_sample_floats(&s, 5));
    int allok = 1;
    for (int64_t i = 0; i < w.n_samples; i++) {
        well_read_sample(&s, &w, i, NULL, NULL, WELL_LCHW, x);
        allok &= check_values(&s, &w, i, x, WELL_LCHW);
    }
    CHECK(allok && w.n_samples == 3 * 2, "RB: every 5-frame window at stride 2 holds its values (non-square, W = 10 - 8 = 2)");
    free(x);
    well_windows_free(&w);
    well_close(&s);

    open_split(&s, root, "turbulence_gravity_cooling", "train", 0);
    const char *tn[6] = {"density", "pressure", "temperature", "velocity_x", "velocity_y", "velocity_z"};
    ok = s.n_channels == 6 && s.n_dims == 3;
    for (int c = 0; ok && c < 6; c++) ok = strcmp(s.channels[c].name, tn[c]) == 0;
    CHECK(ok, "3-D: channels density, pressure, temperature, velocity_x, velocity_y, velocity_z");
    augment_identity(&p, &s, 0);
    p.log_scalars = 1;
    float l9[9];
    augment_label(&p, &s, 0, 1, l9);
    ok = fabsf(l9[0] - logf(0.445f)) < 1e-6f && fabsf(l9[1] - 0.1f) < 1e-7f && l9[2] == 100.0f;
    for (int k = 3; k < 9; k++) ok &= l9[k] == 1;
    CHECK(ok, "3-D label with log_scalars = [log rho0, Z, T0 (not logged: LoLa quirk), 1 x 6]");
    well_windows_init(&w, &s, 2, 3);
    x = LOLA_NEW(float, well_sample_floats(&s, 2));
    allok = 1;
    for (int64_t i = 0; i < w.n_samples; i++) {
        well_read_sample(&s, &w, i, NULL, NULL, WELL_CLHW, x);
        allok &= check_values(&s, &w, i, x, WELL_CLHW);
    }
    CHECK(allok && w.n_samples == 4, "3-D: every window holds its values");
    free(x);
    well_windows_free(&w);
    well_close(&s);

    open_split(&s, root, "tensor_demo", "train", 0);
    const char *dn[7] = {"a", "v_x", "v_y", "T_xx", "T_xy", "T_yx", "T_yy"};
    ok = s.n_channels == 7;
    for (int c = 0; ok && c < 7; c++) ok = strcmp(s.channels[c].name, dn[c]) == 0;
    CHECK(ok, "t2: channels a, v_x, v_y, T_xx, T_xy, T_yx, T_yy (time-constant field skipped)");
    float l4[6];
    augment_label(NULL, &s, 0, 1, l4);
    CHECK(s.n_scalars == 2 && l4[0] == 1.5f && l4[1] == 3.0f && l4[2] == 2 && l4[3] == 2 && l4[4] == 1 && l4[5] == 1,
          "sample-varying scalar alpha (trajectory 1 = 1.5), beta; time-varying scalar skipped; BC [[2,2],[1,1]]");
    well_windows_init(&w, &s, 2, 1);
    x = LOLA_NEW(float, well_sample_floats(&s, 2));
    allok = 1;
    for (int64_t i = 0; i < w.n_samples; i++) {
        well_read_sample(&s, &w, i, NULL, NULL, WELL_LCHW, x);
        allok &= check_values(&s, &w, i, x, WELL_LCHW);
    }
    CHECK(allok, "t2 fixture: every window holds its values");
    free(x);
    well_windows_free(&w);
    well_close(&s);
}

// ---------------------------------------------------------------------------------------------
// Driver modes

static int mode_dump(int argc, char **argv) {
    if (argc < 9) lola_die("usage: test_well dump ROOT PHYS SPLIT L STRIDE IDX OUT [AUGS SEED [clhw]]");
    WellSplit s;
    open_split(&s, argv[2], argv[3], argv[4], 1);
    int L = atoi(argv[5]), stride = atoi(argv[6]);
    int64_t idx = atoll(argv[7]);
    const char *out = argv[8];
    AugmentList al = {0};
    uint64_t seed = 0;
    if (argc > 10) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", argv[9]);
        const char *names[AUG_MAX];
        int n = split_list(buf, names, AUG_MAX);
        augment_list_init(&al, names, n, "dump");
        seed = strtoull(argv[10], NULL, 10);
    }
    WellLayout layout = (argc > 11 && strcmp(argv[11], "clhw") == 0) ? WELL_CLHW : WELL_LCHW;
    SampleSource src;
    source_init(&src, &s, L, stride, NULL, &al, layout);
    float *x = LOLA_NEW(float, src.sample_floats);
    float lab[64];
    AugPlan p;
    source_read(&src, idx, seed, x, lab, &p);
    FILE *f = fopen_check(out, "wb");
    fwrite_check(x, sizeof(float), (size_t)src.sample_floats, f, "sample");
    fclose(f);
    char tp[1024];
    snprintf(tp, sizeof(tp), "%s.txt", out);
    f = fopen_check(tp, "w");
    WellLoc l = well_locate(&src.win, idx);
    fprintf(f, "file %s\ntraj %lld\nstart %lld\nL %d\nstride %d\nchannels %d\nshape", s.files[l.file].path, (long long)l.traj, (long long)l.start, L,
            stride, s.n_channels);
    for (int d = 0; d < s.n_dims; d++) fprintf(f, " %lld", (long long)s.shape[d]);
    fprintf(f, "\nlayout %s\nlabel", layout == WELL_CLHW ? "clhw" : "lchw");
    for (int k = 0; k < s.label_dim; k++) fprintf(f, " %.9g", lab[k]);
    fprintf(f, "\n");
    for (int i = 0; i < p.n_steps; i++) fprintf(f, "step %s %d %d %d\n", augment_name(p.steps[i].kind), p.steps[i].v[0], p.steps[i].v[1], p.steps[i].v[2]);
    fclose(f);
    free(x);
    source_free(&src);
    well_close(&s);
    return 0;
}

static int mode_open(int argc, char **argv) {
    if (argc < 5) lola_die("usage: test_well open ROOT PHYS SPLIT [check_finite] [L STRIDE]");
    WellSplit s;
    int cf = argc > 5 && atoi(argv[5]);
    open_split(&s, argv[2], argv[3], argv[4], cf);
    int L = argc > 7 ? atoi(argv[6]) : 1, stride = argc > 7 ? atoi(argv[7]) : 1;
    WellWindows w;
    well_windows_init(&w, &s, L, stride);
    float *x = LOLA_NEW(float, well_sample_floats(&s, L));
    for (int64_t i = 0; i < w.n_samples; i++) well_read_sample(&s, &w, i, NULL, NULL, WELL_LCHW, x);
    printf("ok: %d files, %lld samples read\n", s.n_files, (long long)w.n_samples);
    free(x);
    well_windows_free(&w);
    well_close(&s);
    return 0;
}

static int mode_statslen(void) {
    Preprocess p;
    float mean[4] = {0.38f, 0.01f, 0, 0}, sd[5] = {0.25f, 0.15f, 0.21f, 0.18f, 1};
    preprocess_init(&p, 5, NULL, mean, 4, sd, 5, "configs/dataset/test.yaml");
    return 0;
}

static int mode_permute(int argc, char **argv) {
    if (argc < 4) lola_die("usage: test_well permute ROOT PHYS");
    WellSplit s;
    open_split(&s, argv[2], argv[3], "train", 0);
    AugmentList al;
    const char *n[1] = {"random_axis_permute"};
    augment_list_init(&al, n, 1, "test");
    SampleSource src;
    source_init(&src, &s, 1, 1, NULL, &al, WELL_LCHW);
    return 0;
}

static int mode_mpio(int argc, char **argv) {
#ifdef LOLA_MPI
    if (argc < 6) lola_die("usage: test_well mpio ROOT PHYS SPLIT OUTPREFIX");
    int prov;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &prov);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    WellSplit s;
    open_split(&s, argv[2], argv[3], argv[4], 1); // collective under MPI-IO
    WellWindows w;
    well_windows_init(&w, &s, 3, 2);
    float *x = LOLA_NEW(float, well_sample_floats(&s, 3));
    int64_t idx = (rank * 7) % w.n_samples;
    well_read_sample(&s, &w, idx, NULL, NULL, WELL_LCHW, x); // independent read
    char path[1024];
    snprintf(path, sizeof(path), "%s.%d.raw", argv[5], rank);
    FILE *f = fopen_check(path, "wb");
    fwrite_check(x, sizeof(float), (size_t)well_sample_floats(&s, 3), f, "sample");
    fclose(f);
    printf("rank %d/%d mpio=%d idx=%lld thread_safe_reads=%d\n", rank, size, s.mpio, (long long)idx, well_reads_thread_safe(&s));
    well_windows_free(&w);
    free(x);
    well_close(&s); // collective
    MPI_Finalize();
    return 0;
#else
    (void)argc;
    (void)argv;
    printf("built without MPI\n");
    return 3;
#endif
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "dump") == 0) return mode_dump(argc, argv);
    if (argc > 1 && strcmp(argv[1], "open") == 0) return mode_open(argc, argv);
    if (argc > 1 && strcmp(argv[1], "statslen") == 0) return mode_statslen();
    if (argc > 1 && strcmp(argv[1], "permute") == 0) return mode_permute(argc, argv);
    if (argc > 1 && strcmp(argv[1], "mpio") == 0) return mode_mpio(argc, argv);
    if (argc > 2 && strcmp(argv[1], "--fixtures") == 0) {
        test_fixture_euler(argv[2]);
        test_fixture_others(argv[2]);
        return test_summary();
    }
    test_indexing_arithmetic();
    test_transforms();
    test_augment_laws();
    test_shards();
    return test_summary();
}
