// wellwrite.c: The Well's HDF5 schema and stats.yaml (see wellwrite.h).
#include "wellwrite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

// Ends the job when an HDF5 call returned a negative id/status, naming what was being written.
#define WW_CHECK(expr, ...)                                                                                    \
    do {                                                                                                      \
        if ((expr) < 0) lola_die_hint("the HDF5 error stack above names the failing call", __VA_ARGS__);     \
    } while (0)

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = LOLA_NEW(char, n);
    memcpy(d, s, n);
    return d;
}

// ---- attributes ----------------------------------------------------------------------------------

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    WW_CHECK(t, "HDF5: cannot create the string type");
    WW_CHECK(H5Tset_size(t, H5T_VARIABLE), "HDF5: H5Tset_size(H5T_VARIABLE)");
    WW_CHECK(H5Tset_cset(t, H5T_CSET_UTF8), "HDF5: H5Tset_cset(UTF8)");
    WW_CHECK(H5Tset_strpad(t, H5T_STR_NULLTERM), "HDF5: H5Tset_strpad");
    return t;
}

hid_t wellw_bool_type(void) {
    hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
    WW_CHECK(t, "HDF5: cannot create the bool enum type");
    int8_t v = 0;
    WW_CHECK(H5Tenum_insert(t, "FALSE", &v), "HDF5: enum insert FALSE");
    v = 1;
    WW_CHECK(H5Tenum_insert(t, "TRUE", &v), "HDF5: enum insert TRUE");
    return t;
}

// Creates attribute `name` of file type `ftype` (rank 0, or rank 1 of length n) on obj and writes buf,
// whose elements have memory type `mtype`.
static void write_attr2(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int rank, hsize_t n, const void *buf) {
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    WW_CHECK(space, "HDF5: dataspace for attribute '%s'", name);
    hid_t a = H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    WW_CHECK(a, "HDF5: cannot create attribute '%s'", name);
    if (!(rank == 1 && n == 0)) WW_CHECK(H5Awrite(a, mtype, buf), "HDF5: cannot write attribute '%s'", name);
    H5Aclose(a);
    H5Sclose(space);
}
static void write_attr(hid_t obj, const char *name, hid_t type, int rank, hsize_t n, const void *buf) {
    write_attr2(obj, name, type, type, rank, n, buf);
}

void wellw_attr_str(hid_t obj, const char *name, const char *value) {
    hid_t t = vlen_str_type();
    write_attr(obj, name, t, 0, 1, &value);
    H5Tclose(t);
}

void wellw_attr_strs(hid_t obj, const char *name, const char *const *values, int n) {
    if (n == 0) { // numpy turns [] into a float64 array of shape (0) (§1.3)
        write_attr(obj, name, H5T_IEEE_F64LE, 1, 0, NULL);
        return;
    }
    hid_t t = vlen_str_type();
    write_attr(obj, name, t, 1, (hsize_t)n, values);
    H5Tclose(t);
}

void wellw_attr_bool(hid_t obj, const char *name, int value) {
    hid_t t = wellw_bool_type();
    int8_t v = value ? 1 : 0;
    write_attr(obj, name, t, 0, 1, &v);
    H5Tclose(t);
}

void wellw_attr_bools(hid_t obj, const char *name, const int *values, int n) {
    hid_t t = wellw_bool_type();
    int8_t v[16];
    if (n > 16) lola_die("wellw_attr_bools: '%s' has %d entries (max 16)", name, n);
    for (int i = 0; i < n; i++) v[i] = values[i] ? 1 : 0;
    write_attr(obj, name, t, 1, (hsize_t)n, v);
    H5Tclose(t);
}

void wellw_attr_i64(hid_t obj, const char *name, int64_t value) {
    write_attr2(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &value);
}

void wellw_attr_f64(hid_t obj, const char *name, double value) {
    write_attr2(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, 1, &value);
}

// ---- file ------------------------------------------------------------------------------------------

static hid_t new_group(hid_t parent, const char *name, const char *path) {
    hid_t g = H5Gcreate2(parent, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    WW_CHECK(g, "%s: cannot create group '%s'", path, name);
    return g;
}

// 1-D float32 dataset with the two Well flags.
static void coord_dataset(hid_t g, const char *name, const float *v, int n, int time_varying, const char *path) {
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    WW_CHECK(d, "%s: cannot create /dimensions/%s", path, name);
    WW_CHECK(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "%s: cannot write /dimensions/%s", path, name);
    wellw_attr_bool(d, "sample_varying", 0);
    wellw_attr_bool(d, "time_varying", time_varying);
    H5Dclose(d);
    H5Sclose(sp);
}

// Field dataset (B, T, N..., [D]) float32, contiguous, no fill writes, with its Well attributes.
static hid_t field_dataset(hid_t g, const char *name, const WellwSpec *sp, int order, const char *path) {
    hsize_t dims[2 + WELLW_MAX_DIMS + 1];
    int r = 0;
    dims[r++] = (hsize_t)sp->n_traj;
    dims[r++] = (hsize_t)sp->n_time;
    for (int d = 0; d < sp->n_dims; d++) dims[r++] = (hsize_t)sp->dim_sizes[d];
    if (order == 1) dims[r++] = (hsize_t)sp->n_dims;
    hid_t space = H5Screate_simple(r, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    WW_CHECK(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "%s: contiguous layout", path);
    WW_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "%s: fill time", path);
    hid_t d = H5Dcreate2(g, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    WW_CHECK(d, "%s: cannot create field dataset t%d_fields/%s", path, order, name);
    int dv[WELLW_MAX_DIMS] = {1, 1, 1};
    wellw_attr_bools(d, "dim_varying", dv, sp->n_dims);
    wellw_attr_bool(d, "sample_varying", 1);
    wellw_attr_bool(d, "time_varying", 1);
    H5Pclose(dcpl);
    H5Sclose(space);
    return d;
}

void wellw_create(WellwFile *w, const char *path, const WellwSpec *sp) {
    memset(w, 0, sizeof *w);
    if (sp->n_dims < 1 || sp->n_dims > WELLW_MAX_DIMS) lola_die("%s: n_dims = %d (must be 1..3)", path, sp->n_dims);
    if (sp->n_traj < 1) lola_die("%s: n_trajectories = %lld (must be >= 1)", path, (long long)sp->n_traj);
    if (sp->n_time < 1) lola_die("%s: %d time steps (must be >= 1)", path, sp->n_time);
    if (sp->n_t0 > WELLW_MAX_FIELDS || sp->n_t1 > WELLW_MAX_FIELDS || sp->n_params > WELLW_MAX_PARAMS ||
        sp->n_bcs > WELLW_MAX_BCS)
        lola_die("%s: too many fields/parameters/BCs in the spec", path);
    w->spec = *sp;
    w->path = dup_str(path);
    size_t n = strlen(path) + 8;
    w->tmp_path = LOLA_NEW(char, n);
    snprintf(w->tmp_path, n, "%s.tmp", path);
    w->n_space = 1;
    for (int d = 0; d < sp->n_dims; d++) w->n_space *= (size_t)sp->dim_sizes[d];

    hid_t f = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) lola_die_hint("check that the directory exists and is writable", "cannot create HDF5 file %s", w->tmp_path);
    w->file = f;
    const char *p = w->tmp_path;
    // root attributes
    wellw_attr_str(f, "dataset_name", sp->dataset_name);
    wellw_attr_str(f, "grid_type", "cartesian");
    wellw_attr_i64(f, "n_spatial_dims", sp->n_dims);
    wellw_attr_i64(f, "n_trajectories", sp->n_traj);
    wellw_attr_strs(f, "simulation_parameters", sp->param_names, sp->n_params);
    for (int i = 0; i < sp->n_params; i++) wellw_attr_f64(f, sp->param_names[i], sp->param_values[i]);
    // /dimensions
    hid_t g = new_group(f, "dimensions", p);
    wellw_attr_strs(g, "spatial_dims", sp->dim_names, sp->n_dims);
    coord_dataset(g, "time", sp->time, sp->n_time, 1, p);
    for (int d = 0; d < sp->n_dims; d++) coord_dataset(g, sp->dim_names[d], sp->coords[d], sp->dim_sizes[d], 0, p);
    H5Gclose(g);
    // /boundary_conditions
    g = new_group(f, "boundary_conditions", p);
    hid_t bt = wellw_bool_type();
    for (int i = 0; i < sp->n_bcs; i++) {
        const WellwBC *bc = &sp->bcs[i];
        if (bc->dim < 0 || bc->dim >= sp->n_dims) lola_die("%s: BC '%s' names dim %d", p, bc->group, bc->dim);
        hid_t b = new_group(g, bc->group, p);
        const char *ad = sp->dim_names[bc->dim];
        wellw_attr_strs(b, "associated_dims", &ad, 1);
        wellw_attr_strs(b, "associated_fields", NULL, 0);
        wellw_attr_str(b, "bc_type", bc->bc_type);
        wellw_attr_bool(b, "sample_varying", 0);
        wellw_attr_bool(b, "time_varying", 0);
        hsize_t nm = (hsize_t)sp->dim_sizes[bc->dim];
        int8_t *mask = LOLA_NEW(int8_t, nm);
        mask[0] = 1;
        mask[nm - 1] = 1;
        hid_t ms = H5Screate_simple(1, &nm, NULL);
        hid_t md = H5Dcreate2(b, "mask", bt, ms, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        WW_CHECK(md, "%s: cannot create boundary_conditions/%s/mask", p, bc->group);
        WW_CHECK(H5Dwrite(md, bt, H5S_ALL, H5S_ALL, H5P_DEFAULT, mask), "%s: cannot write %s/mask", p, bc->group);
        H5Dclose(md);
        H5Sclose(ms);
        free(mask);
        H5Gclose(b);
    }
    H5Tclose(bt);
    H5Gclose(g);
    // /scalars: constant parameters, shape (), float64
    g = new_group(f, "scalars", p);
    wellw_attr_strs(g, "field_names", sp->param_names, sp->n_params);
    for (int i = 0; i < sp->n_params; i++) {
        hid_t ss = H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(g, sp->param_names[i], H5T_IEEE_F64LE, ss, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        WW_CHECK(d, "%s: cannot create scalars/%s", p, sp->param_names[i]);
        WW_CHECK(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &sp->param_values[i]),
                "%s: cannot write scalars/%s", p, sp->param_names[i]);
        wellw_attr_bool(d, "sample_varying", 0);
        wellw_attr_bool(d, "time_varying", 0);
        H5Dclose(d);
        H5Sclose(ss);
    }
    H5Gclose(g);
    // /t0_fields, /t1_fields, /t2_fields (empty)
    g = new_group(f, "t0_fields", p);
    wellw_attr_strs(g, "field_names", sp->t0_names, sp->n_t0);
    for (int i = 0; i < sp->n_t0; i++) w->t0[i] = field_dataset(g, sp->t0_names[i], sp, 0, p);
    H5Gclose(g);
    g = new_group(f, "t1_fields", p);
    wellw_attr_strs(g, "field_names", sp->t1_names, sp->n_t1);
    for (int i = 0; i < sp->n_t1; i++) w->t1[i] = field_dataset(g, sp->t1_names[i], sp, 1, p);
    H5Gclose(g);
    g = new_group(f, "t2_fields", p);
    wellw_attr_strs(g, "field_names", NULL, 0);
    H5Gclose(g);
}

static void put_one(WellwFile *w, hid_t d, int64_t b, int order, const float *data, const char *name) {
    const WellwSpec *sp = &w->spec;
    hsize_t start[6] = {0}, count[6];
    int r = 0;
    start[0] = (hsize_t)b;
    count[r++] = 1;
    count[r++] = (hsize_t)sp->n_time;
    for (int k = 0; k < sp->n_dims; k++) count[r++] = (hsize_t)sp->dim_sizes[k];
    if (order == 1) count[r++] = (hsize_t)sp->n_dims;
    hid_t fs = H5Dget_space(d);
    WW_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL), "%s: hyperslab of %s", w->tmp_path, name);
    hid_t ms = H5Screate_simple(r, count, NULL);
    WW_CHECK(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, data), "%s: cannot write trajectory %lld of t%d_fields/%s",
            w->tmp_path, (long long)b, order, name);
    H5Sclose(ms);
    H5Sclose(fs);
}

void wellw_put_traj(WellwFile *w, int64_t b, const float *const *t0, const float *const *t1) {
    if (b < 0 || b >= w->spec.n_traj)
        lola_die("%s: trajectory index %lld out of range [0, %lld)", w->path, (long long)b, (long long)w->spec.n_traj);
    for (int i = 0; i < w->spec.n_t0; i++) put_one(w, w->t0[i], b, 0, t0[i], w->spec.t0_names[i]);
    for (int i = 0; i < w->spec.n_t1; i++) put_one(w, w->t1[i], b, 1, t1[i], w->spec.t1_names[i]);
    w->n_written++;
}

void wellw_close(WellwFile *w) {
    if (w->n_written != w->spec.n_traj)
        lola_die("%s: %lld of %lld trajectories written; not renaming the partial file", w->tmp_path,
                 (long long)w->n_written, (long long)w->spec.n_traj);
    for (int i = 0; i < w->spec.n_t0; i++) H5Dclose(w->t0[i]);
    for (int i = 0; i < w->spec.n_t1; i++) H5Dclose(w->t1[i]);
    WW_CHECK(H5Fflush(w->file, H5F_SCOPE_GLOBAL), "%s: flush failed", w->tmp_path);
    WW_CHECK(H5Fclose(w->file), "%s: close failed", w->tmp_path);
    if (rename(w->tmp_path, w->path) != 0) lola_die("cannot rename %s to %s", w->tmp_path, w->path);
    free(w->path);
    free(w->tmp_path);
    memset(w, 0, sizeof *w);
}

// ---- statistics --------------------------------------------------------------------------------------

void wellw_stats_init(WellwStats *st, const WellwSpec *sp) {
    memset(st, 0, sizeof *st);
    for (int i = 0; i < sp->n_t0; i++) {
        st->names[st->n_fields] = sp->t0_names[i];
        st->ncomp[st->n_fields++] = 1;
    }
    st->n_t0 = sp->n_t0;
    for (int i = 0; i < sp->n_t1; i++) {
        st->names[st->n_fields] = sp->t1_names[i];
        st->ncomp[st->n_fields++] = sp->n_dims;
    }
    for (int i = 0; i < st->n_fields; i++) st->n_comp_total += st->ncomp[i];
    st->cur = LOLA_NEW(WellwMoments, st->n_comp_total);
    st->cur_d = LOLA_NEW(WellwMoments, st->n_comp_total);
}

void wellw_stats_begin_file(WellwStats *st) {
    memset(st->cur, 0, sizeof(WellwMoments) * st->n_comp_total);
    memset(st->cur_d, 0, sizeof(WellwMoments) * st->n_comp_total);
}

// Adds n values x[k*stride] to m (shift fixed at the first value of the file).
static void acc(WellwMoments *m, const float *x, size_t n, size_t stride) {
    if (n == 0) return;
    if (m->n == 0) m->shift = x[0];
    double K = m->shift, s1 = 0, s2 = 0;
    for (size_t k = 0; k < n; k++) {
        double v = (double)x[k * stride] - K;
        s1 += v;
        s2 += v * v;
    }
    m->n += (double)n;
    m->s1 += s1;
    m->s2 += s2;
}

static void acc_delta(WellwMoments *m, const float *x, int T, size_t n_space, size_t stride) {
    // frame differences x[t] - x[t-1], t = 1..T-1 (stride 1 in time, §1.5)
    double s1 = 0, s2 = 0;
    for (int t = 1; t < T; t++) {
        const float *a = x + (size_t)t * n_space * stride, *b = x + (size_t)(t - 1) * n_space * stride;
        for (size_t k = 0; k < n_space; k++) {
            double v = (double)a[k * stride] - (double)b[k * stride];
            s1 += v;
            s2 += v * v;
        }
    }
    m->n += (double)(T - 1) * (double)n_space;
    m->s1 += s1;
    m->s2 += s2;
}

void wellw_stats_add_traj(WellwStats *st, int T, size_t n_space, const float *const *t0, const float *const *t1) {
    for (int f = 0, c = 0; f < st->n_fields; f++) {
        const int D = st->ncomp[f];
        const float *x = f < st->n_t0 ? t0[f] : t1[f - st->n_t0];
        for (int k = 0; k < D; k++, c++) {
            acc(&st->cur[c], x + k, (size_t)T * n_space, (size_t)D);
            acc_delta(&st->cur_d[c], x + k, T, n_space, (size_t)D);
        }
    }
}

static void push(double **a, int n, const double *v, int m) {
    *a = realloc(*a, sizeof(double) * (size_t)(n + 1) * m);
    if (!*a) lola_die("out of memory (stats)");
    memcpy(*a + (size_t)n * m, v, sizeof(double) * m);
}

void wellw_stats_end_file(WellwStats *st) {
    int m = st->n_comp_total;
    double n[64], mu[64], var[64], dn[64], dmu[64], dvar[64];
    if (m > 64) lola_die("stats: %d components (max 64)", m);
    for (int c = 0; c < m; c++) {
        const WellwMoments *a = &st->cur[c], *d = &st->cur_d[c];
        if (a->n == 0) lola_die("stats: file %d has no data for component %d", st->n_files, c);
        double e1 = a->s1 / a->n;
        n[c] = a->n;
        mu[c] = a->shift + e1;
        var[c] = fmax(a->s2 / a->n - e1 * e1, 0.0);
        dn[c] = d->n;
        dmu[c] = d->n > 0 ? d->s1 / d->n : 0.0;
        dvar[c] = d->n > 0 ? fmax(d->s2 / d->n - dmu[c] * dmu[c], 0.0) : 0.0;
    }
    push(&st->file_n, st->n_files, n, m);
    push(&st->file_mu, st->n_files, mu, m);
    push(&st->file_var, st->n_files, var, m);
    push(&st->file_dn, st->n_files, dn, m);
    push(&st->file_dmu, st->n_files, dmu, m);
    push(&st->file_dvar, st->n_files, dvar, m);
    st->n_files++;
}

// Mixture moments over files (weights = count / total count), The Well's compute_statistics.
static void mixture(const WellwStats *st, const double *fn, const double *fmu, const double *fvar, double *mean,
                    double *std, double *rms) {
    int m = st->n_comp_total;
    for (int c = 0; c < m; c++) {
        double tot = 0;
        for (int f = 0; f < st->n_files; f++) tot += fn[(size_t)f * m + c];
        double m1 = 0, m2 = 0;
        for (int f = 0; f < st->n_files; f++) {
            double w = tot > 0 ? fn[(size_t)f * m + c] / tot : 0.0;
            double mu = fmu[(size_t)f * m + c], v = fvar[(size_t)f * m + c];
            m1 += w * mu;
            m2 += w * (v + mu * mu);
        }
        mean[c] = m1;
        std[c] = sqrt(fmax(m2 - m1 * m1, 0.0));
        rms[c] = sqrt(fmax(m2, 0.0));
    }
}

void wellw_stats_result(const WellwStats *st, double *mean, double *std, double *rms, double *mean_d, double *std_d,
                        double *rms_d) {
    mixture(st, st->file_n, st->file_mu, st->file_var, mean, std, rms);
    mixture(st, st->file_dn, st->file_dmu, st->file_dvar, mean_d, std_d, rms_d);
}

void wellw_stats_write_yaml(const WellwStats *st, const char *path) {
    if (st->n_files == 0) lola_die("%s: no train file was added to the statistics", path);
    int m = st->n_comp_total;
    double v[6][64];
    wellw_stats_result(st, v[0], v[4], v[2], v[1], v[5], v[3]); // mean, std, rms, mean_d, std_d, rms_d
    static const char *keys[6] = {"mean", "mean_delta", "rms", "rms_delta", "std", "std_delta"}; // sorted
    int first[2 * WELLW_MAX_FIELDS], order[2 * WELLW_MAX_FIELDS];
    for (int f = 0, c = 0; f < st->n_fields; c += st->ncomp[f], f++) first[f] = c;
    for (int f = 0; f < st->n_fields; f++) order[f] = f;
    for (int a = 1; a < st->n_fields; a++) // sort field names (yaml.dump sort_keys)
        for (int b = a; b > 0 && strcmp(st->names[order[b]], st->names[order[b - 1]]) < 0; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    size_t cap = 4096 + (size_t)m * 6 * 40;
    char *buf = LOLA_NEW(char, cap);
    size_t len = 0;
#define EMIT(...) len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__)
    for (int k = 0; k < 6; k++) {
        EMIT("%s:\n", keys[k]);
        for (int o = 0; o < st->n_fields; o++) {
            int f = order[o], c0 = first[f];
            const int is_vec = f >= st->n_t0; // t1 field: a list of D values
            if (!is_vec) {
                EMIT("  %s: %.4E\n", st->names[f], v[k][c0]);
            } else {
                EMIT("  %s:\n", st->names[f]);
                for (int d = 0; d < st->ncomp[f]; d++) EMIT("  - %.4E\n", v[k][c0 + d]);
            }
        }
    }
#undef EMIT
    if (len >= cap) lola_die("%s: stats text overflow", path);
    for (int c = 0; c < m; c++)
        if (!(v[4][c] > 1e-4)) log_warn("%s: std of component %d is %.3g <= 1e-4 (The Well asserts std > 1e-4)", path, c, v[4][c]);
    lola_write_atomic(path, buf, len);
    free(buf);
}

void wellw_stats_free(WellwStats *st) {
    free(st->cur);
    free(st->cur_d);
    free(st->file_n);
    free(st->file_mu);
    free(st->file_var);
    free(st->file_dn);
    free(st->file_dmu);
    free(st->file_dvar);
    memset(st, 0, sizeof *st);
}
