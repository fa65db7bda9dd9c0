// checkpoint.c: see checkpoint.h.
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5attr.h"
#include "wellwrite.h"

// ---- small typed attribute helpers -------------------------------------------------------------


static void write_tensor(hid_t group, const ParamSpec *r, const float *data, const char *path) {
    hsize_t dims[PARAM_MAX_DIMS];
    for (int d = 0; d < r->ndim; d++) dims[d] = (hsize_t)r->shape[d];
    hid_t sp = H5Screate_simple(r->ndim, dims, NULL);
    hid_t ds = H5Dcreate2(group, r->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data + r->offset) < 0)
        lola_die("checkpoint '%s': cannot write tensor %s", path, r->name);
    H5Dclose(ds);
    H5Sclose(sp);
}

static void write_group(hid_t file, const char *gname, const ParamTable *t, const float *buf, const char *path) {
    hid_t g = H5Gcreate2(file, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) lola_die("checkpoint '%s': cannot create group %s", path, gname);
    for (int i = 0; i < t->n; i++) write_tensor(g, &t->rows[i], buf, path);
    H5Gclose(g);
}

// Writes the extra optimizer tensors under /optim/<group>/ (intermediate groups created).
static void write_extra(hid_t optim, const CheckpointExtra *ex, const char *path) {
    hid_t g = H5Gcreate2(optim, ex->group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) lola_die("checkpoint '%s': cannot create group /optim/%s", path, ex->group);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    for (int i = 0; i < ex->n; i++) {
        const CheckpointTensor *t = &ex->t[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], t->ndim > 1 ? (hsize_t)t->shape[1] : 1};
        hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
            lola_die("checkpoint '%s': cannot write tensor /optim/%s/%s", path, ex->group, t->name);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Pclose(lcpl);
    H5Gclose(g);
}

void checkpoint_save(const char *path, const CheckpointMeta *meta, const ParamTable *table,
                     const float *params, const float *m, const float *v, const char *config_yaml) {
    // Unchanged format: moments only as a pair.
    checkpoint_save_ex(path, meta, table, params, m && v ? m : NULL, m && v ? v : NULL, NULL, config_yaml);
}

void checkpoint_save_ex(const char *path, const CheckpointMeta *meta, const ParamTable *table,
                        const float *params, const float *m, const float *v, const CheckpointExtra *extra,
                        const char *config_yaml) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) lola_die("checkpoint path too long: %s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) lola_die_hint("check that the run directory exists and is writable", "cannot create checkpoint '%s'", tmp);
    wellw_attr_str(f, "format", CHECKPOINT_FORMAT);
    wellw_attr_i64(f, "format_version", CHECKPOINT_VERSION);
    wellw_attr_str(f, "kind", meta->kind);
    wellw_attr_i64(f, "step", meta->step);
    wellw_attr_i64(f, "epoch", meta->epoch);
    wellw_attr_i64(f, "samples", meta->samples);
    wellw_attr_f64(f, "best_valid", meta->best_valid);
    wellw_attr_i64(f, "seed", (int64_t)meta->seed);
    wellw_attr_i64(f, "optim_t", meta->optim_t);
    wellw_attr_str(f, "optimizer", meta->optimizer[0] ? meta->optimizer : "adamw");
    wellw_attr_i64(f, "param_count", (int64_t)table->total);
    if (config_yaml) wellw_attr_str(f, "config", config_yaml);
    write_group(f, "params", table, params, tmp);
    if (m || v || (extra && extra->n > 0)) {
        hid_t g = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (m) write_group(g, "m", table, m, tmp);
        if (v) write_group(g, "v", table, v, tmp);
        if (extra && extra->n > 0) write_extra(g, extra, tmp);
        H5Gclose(g);
    }
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(f) < 0) lola_die("checkpoint '%s': flush/close failed", tmp);
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) lola_die("checkpoint '%s': fsync failed: %s", tmp, strerror(errno));
    close(fd);
    if (rename(tmp, path) != 0) lola_die("checkpoint: rename '%s' -> '%s' failed: %s", tmp, path, strerror(errno));
    // Make the rename itself durable: fsync the directory.
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else strcpy(dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
}

static int fail(char *err, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

// Reads group/<row name> for every row of t into buf; checks shapes and that no extra tensors exist.
static int read_group(hid_t file, const char *gname, const ParamTable *t, float *buf, const char *path,
                      char *err, size_t cap) {
    hid_t g = H5Gopen2(file, gname, H5P_DEFAULT);
    if (g < 0) return fail(err, cap, "checkpoint '%s': missing group /%s", path, gname);
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) { H5Gclose(g); return fail(err, cap, "checkpoint '%s': unreadable group /%s", path, gname); }
    for (int i = 0; i < t->n; i++) {
        const ParamSpec *r = &t->rows[i];
        if (H5Lexists(g, r->name, H5P_DEFAULT) <= 0) {
            H5Gclose(g);
            return fail(err, cap, "checkpoint '%s': tensor /%s/%s is missing (the file was made for another model or config)",
                        path, gname, r->name);
        }
        hid_t ds = H5Dopen2(g, r->name, H5P_DEFAULT);
        hid_t sp = H5Dget_space(ds);
        int nd = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[8] = {0};
        int ok = nd == r->ndim && nd <= 8;
        if (ok) {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            for (int d = 0; d < nd; d++) ok = ok && dims[d] == (hsize_t)r->shape[d];
        }
        if (!ok) {
            char want[128] = "", got[128] = "";
            for (int d = 0; d < r->ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)r->shape[d]);
            if (nd > 0 && nd <= 8) { H5Sget_simple_extent_dims(sp, dims, NULL);
                for (int d = 0; d < nd; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", d ? "," : "", (unsigned long long)dims[d]); }
            H5Sclose(sp); H5Dclose(ds); H5Gclose(g);
            return fail(err, cap, "checkpoint '%s': tensor /%s/%s has shape (%s), the config expects (%s)", path, gname, r->name, got, want);
        }
        herr_t rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + r->offset);
        H5Sclose(sp);
        H5Dclose(ds);
        if (rc < 0) { H5Gclose(g); return fail(err, cap, "checkpoint '%s': cannot read tensor /%s/%s (truncated or corrupt file?)", path, gname, r->name); }
    }
    if (info.nlinks != (hsize_t)t->n) {
        H5Gclose(g);
        return fail(err, cap, "checkpoint '%s': /%s holds %llu tensors, the config's model has %d (another model or config?)",
                    path, gname, (unsigned long long)info.nlinks, t->n);
    }
    H5Gclose(g);
    return 0;
}

// The root attributes into meta (absent ones stay 0; best_valid inf).
static void read_meta(hid_t f, const char *kind, CheckpointMeta *meta) {
    int64_t i64 = 0;
    memset(meta, 0, sizeof *meta);
    snprintf(meta->kind, sizeof meta->kind, "%s", kind);
    h5attr_read_i64(f, "step", &meta->step);
    h5attr_read_i64(f, "epoch", &meta->epoch);
    h5attr_read_i64(f, "samples", &meta->samples);
    meta->best_valid = INFINITY;
    h5attr_read_f64(f, "best_valid", &meta->best_valid);
    if (h5attr_read_i64(f, "seed", &i64) == 0) meta->seed = (uint64_t)i64;
    h5attr_read_i64(f, "optim_t", &meta->optim_t);
    char *o = h5attr_read_str(f, "optimizer");
    snprintf(meta->optimizer, sizeof meta->optimizer, "%s", o ? o : "");
    free(o);
}

int checkpoint_read_meta(const char *path, CheckpointMeta *meta) {
    hid_t f = lola_exists(path) ? h5_open_readonly(path) : -1;
    if (f < 0) return -1;
    char *fmt = h5attr_read_str(f, "format"), *k = h5attr_read_str(f, "kind");
    int rc = fmt && strcmp(fmt, CHECKPOINT_FORMAT) == 0 ? 0 : -1;
    if (rc == 0) read_meta(f, k ? k : "", meta);
    free(fmt);
    free(k);
    H5Fclose(f);
    return rc;
}

int checkpoint_load(const char *path, const char *kind, const ParamTable *table, float *params,
                    float *m, float *v, CheckpointMeta *meta, int *has_optim, char *err, size_t cap) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!lola_exists(path)) return fail(err, cap, "checkpoint '%s' does not exist", path);
    hid_t f = h5_open_readonly(path);
    if (f < 0) return fail(err, cap, "checkpoint '%s' is not a readable HDF5 file (truncated or foreign file?)", path);
    int rc = -1;
    char *fmt = h5attr_read_str(f, "format"), *k = NULL;
    int64_t ver = 0;
    if (!fmt || strcmp(fmt, CHECKPOINT_FORMAT) != 0) {
        fail(err, cap, "checkpoint '%s' is not a lola-c checkpoint (attribute 'format' is %s)", path, fmt ? fmt : "missing");
        goto done;
    }
    if (h5attr_read_i64(f, "format_version", &ver) < 0 || ver != CHECKPOINT_VERSION) {
        fail(err, cap, "checkpoint '%s' has format_version %lld, this build reads %d", path, (long long)ver, CHECKPOINT_VERSION);
        goto done;
    }
    k = h5attr_read_str(f, "kind");
    if (!k || (kind && strcmp(k, kind) != 0)) {
        fail(err, cap, "checkpoint '%s' holds a '%s' model, expected '%s'", path, k ? k : "?", kind);
        goto done;
    }
    if (meta) read_meta(f, k, meta);
    if (read_group(f, "params", table, params, path, err, cap) < 0) goto done;
    if (has_optim) *has_optim = 0;
    if (m || v) {
        if (H5Lexists(f, "optim", H5P_DEFAULT) > 0) {
            hid_t g = H5Gopen2(f, "optim", H5P_DEFAULT);
            int r1 = m ? read_group(g, "m", table, m, path, err, cap) : 0;
            int r2 = r1 == 0 && v ? read_group(g, "v", table, v, path, err, cap) : r1;
            H5Gclose(g);
            if (r1 < 0 || r2 < 0) goto done;
            if (has_optim) *has_optim = 1;
        } else {
            if (m) memset(m, 0, table->total * sizeof(float));
            if (v) memset(v, 0, table->total * sizeof(float));
        }
    }
    rc = 0;
done:
    free(fmt);
    free(k);
    H5Fclose(f);
    return rc;
}

int checkpoint_load_extra(const char *path, const CheckpointExtra *extra, char *err, size_t cap) {
    if (!extra || extra->n == 0) return 0;
    hid_t f = h5_open_readonly(path);
    if (f < 0) return fail(err, cap, "checkpoint '%s' cannot be opened (truncated or corrupt file?)", path);
    char gname[256];
    snprintf(gname, sizeof gname, "optim/%s", extra->group);
    hid_t g = H5Lexists(f, "optim", H5P_DEFAULT) > 0 && H5Lexists(f, gname, H5P_DEFAULT) > 0
                  ? H5Gopen2(f, gname, H5P_DEFAULT) : -1;
    if (g < 0) {
        H5Fclose(f);
        return fail(err, cap, "checkpoint '%s' has no /%s group (made with another optimizer, or weights only?)", path, gname);
    }
    int rc = 0;
    for (int i = 0; i < extra->n && rc == 0; i++) {
        const CheckpointTensor *t = &extra->t[i];
        // Each path component must exist before H5Dopen2 (H5Lexists fails on a missing parent).
        int found = 1;
        char part[sizeof t->name];
        for (const char *c = t->name; found && (c = strchr(c, '/')) != NULL; c++) {
            snprintf(part, sizeof part, "%.*s", (int)(c - t->name), t->name);
            found = H5Lexists(g, part, H5P_DEFAULT) > 0;
        }
        if (!found || H5Lexists(g, t->name, H5P_DEFAULT) <= 0) {
            rc = fail(err, cap, "checkpoint '%s': tensor /%s/%s is missing (another model or optimizer config?)", path, gname, t->name);
            break;
        }
        hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
        hid_t sp = H5Dget_space(ds);
        int nd = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[2] = {0, 0};
        int ok = nd == t->ndim;
        if (ok) {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            ok = dims[0] == (hsize_t)t->shape[0] && (nd < 2 || dims[1] == (hsize_t)t->shape[1]);
        }
        if (!ok)
            rc = fail(err, cap, "checkpoint '%s': tensor /%s/%s has %d dims (%llu, %llu), expected %d (%lld, %lld)", path, gname,
                      t->name, nd, (unsigned long long)dims[0], (unsigned long long)dims[1], t->ndim, (long long)t->shape[0],
                      (long long)(t->ndim > 1 ? t->shape[1] : 0));
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
            rc = fail(err, cap, "checkpoint '%s': cannot read tensor /%s/%s (truncated or corrupt file?)", path, gname, t->name);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Gclose(g);
    H5Fclose(f);
    return rc;
}

char *checkpoint_read_config(const char *path) {
    hid_t f = h5_open_readonly(path);
    if (f < 0) return NULL;
    char *s = h5attr_read_str(f, "config");
    H5Fclose(f);
    return s;
}
