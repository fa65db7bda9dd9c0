// latents.c: see latents.h.
#include "latents.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "h5attr.h"
#include "wellwrite.h"

void latent_writer_open(LatentWriter *w, const char *final_path, int64_t n_traj, int64_t n_steps, int channels,
                        int n_spatial, const int64_t *spatial, int label_dim, const char *ae_id,
                        const char *source, int repeat) {
    memset(w, 0, sizeof *w);
    if (snprintf(w->final_path, sizeof w->final_path, "%s", final_path) >= (int)sizeof w->final_path ||
        snprintf(w->tmp_path, sizeof w->tmp_path, "%s.tmp", final_path) >= (int)sizeof w->tmp_path)
        lola_die("latent cache path too long: %s", final_path);
    if (n_spatial < 1 || n_spatial > LATENT_MAX_SPATIAL) lola_die("latent cache: %d spatial axes", n_spatial);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(w->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) lola_die_hint("check that the run directory is writable", "cannot create latent cache file '%s'", w->tmp_path);
    hsize_t dims[2 + 1 + LATENT_MAX_SPATIAL];
    dims[0] = (hsize_t)n_traj;
    dims[1] = (hsize_t)n_steps;
    dims[2] = (hsize_t)channels;
    w->state_size = channels;
    for (int d = 0; d < n_spatial; d++) {
        dims[3 + d] = (hsize_t)spatial[d];
        w->state_size *= spatial[d];
    }
    hid_t sp = H5Screate_simple(3 + n_spatial, dims, NULL);
    hid_t ds = H5Dcreate2(f, "state", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    hsize_t ldims[2] = {(hsize_t)n_traj, (hsize_t)label_dim};
    sp = H5Screate_simple(2, ldims, NULL);
    hid_t dl = H5Dcreate2(f, "label", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    if (ds < 0 || dl < 0) lola_die("latent cache '%s': cannot create datasets state/label", w->tmp_path);
    wellw_attr_str(f, "ae_id", ae_id ? ae_id : "");
    wellw_attr_str(f, "source", source ? source : "");
    wellw_attr_i64(f, "repeat", repeat);
    w->fid = f;
    w->dstate = ds;
    w->dlabel = dl;
    w->n_traj = n_traj;
    w->n_steps = n_steps;
    w->label_dim = label_dim;
}

// Writes rows [i, i+1) of a dataset whose rows hold row_size floats.
static void write_row(hid_t ds, int64_t i, int rank, const float *data, const char *path, const char *what) {
    hid_t fs = H5Dget_space(ds);
    hsize_t dims[8], start[8] = {0}, count[8];
    H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int d = 0; d < rank; d++) count[d] = dims[d];
    start[0] = (hsize_t)i;
    count[0] = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    if (H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, data) < 0)
        lola_die("latent cache '%s': cannot write %s row %lld", path, what, (long long)i);
    H5Sclose(ms);
    H5Sclose(fs);
}

void latent_writer_put(LatentWriter *w, int64_t i, const float *state, const float *label) {
    if (i < 0 || i >= w->n_traj) lola_die("latent cache '%s': row %lld out of range [0, %lld)", w->tmp_path, (long long)i, (long long)w->n_traj);
    hid_t fs = H5Dget_space(w->dstate);
    int rank = H5Sget_simple_extent_ndims(fs);
    H5Sclose(fs);
    write_row(w->dstate, i, rank, state, w->tmp_path, "state");
    write_row(w->dlabel, i, 2, label, w->tmp_path, "label");
}

void latent_writer_close(LatentWriter *w) {
    wellw_attr_i64(w->fid, "complete", 1);
    H5Dclose(w->dstate);
    H5Dclose(w->dlabel);
    if (H5Fflush(w->fid, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(w->fid) < 0) lola_die("latent cache '%s': close failed", w->tmp_path);
    int fd = open(w->tmp_path, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) lola_die("latent cache '%s': fsync failed: %s", w->tmp_path, strerror(errno));
    close(fd);
    if (rename(w->tmp_path, w->final_path) != 0)
        lola_die("latent cache: rename '%s' -> '%s' failed: %s", w->tmp_path, w->final_path, strerror(errno));
    memset(w, 0, sizeof *w);
}

// Copies string attribute `name` into out (cap bytes): 0, or -1 when absent.
static int get_str_attr(hid_t obj, const char *name, char *out, size_t cap) {
    char *v = h5attr_read_str(obj, name);
    if (!v) return -1;
    snprintf(out, cap, "%s", v);
    free(v);
    return 0;
}


int latent_file_valid(const char *path, const char *ae_id) {
    hid_t f = h5_open_readonly(path);
    if (f < 0) return 0;
    int64_t complete = 0;
    char id[256] = "";
    int ok = h5attr_read_i64(f, "complete", &complete) == 0 && complete == 1 && get_str_attr(f, "ae_id", id, sizeof id) == 0 &&
             (!ae_id || strcmp(id, ae_id) == 0);
    H5Fclose(f);
    return ok;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Appends the sorted cache file paths of dir to names.
static void list_dir(const char *dir, char ***names, int *n, int *cap) {
    DIR *d = opendir(dir);
    if (!d) lola_die_hint("run `lola cache` first (or the pipeline's cache stage)", "latent cache directory '%s' cannot be read: %s", dir, strerror(errno));
    int first = *n;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t L = strlen(e->d_name);
        int h5 = L > 3 && strcmp(e->d_name + L - 3, ".h5") == 0, hdf5 = L > 5 && strcmp(e->d_name + L - 5, ".hdf5") == 0;
        if (!h5 && !hdf5) continue;
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 16;
            *names = (char **)realloc(*names, (size_t)*cap * sizeof(char *));
        }
        size_t need = strlen(dir) + L + 2;
        (*names)[*n] = (char *)malloc(need);
        snprintf((*names)[*n], need, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n == first) lola_die_hint("run `lola cache` first", "latent cache directory '%s' holds no .h5/.hdf5 files", dir);
    qsort(*names + first, (size_t)(*n - first), sizeof(char *), cmp_str);
}

void latent_open(LatentSet *s, const char *const *dirs, int n_dirs, const char *ae_id) {
    memset(s, 0, sizeof *s);
    char **names = NULL;
    int n = 0, cap = 0;
    for (int i = 0; i < n_dirs; i++) list_dir(dirs[i], &names, &n, &cap);
    s->files = LOLA_NEW(LatentFile, n);
    s->n_files = n;
    for (int i = 0; i < n; i++) {
        LatentFile *lf = &s->files[i];
        lf->path = names[i];
        hid_t f = h5_open_readonly(lf->path);
        if (f < 0) lola_die("latent cache '%s' is not a readable HDF5 file (truncated?)", lf->path);
        int64_t complete = 0;
        if (h5attr_read_i64(f, "complete", &complete) != 0 || complete != 1)
            lola_die_hint("delete it and rerun `lola cache`", "latent cache '%s' is incomplete (written by a job that did not finish)", lf->path);
        char id[256] = "";
        get_str_attr(f, "ae_id", id, sizeof id);
        if (ae_id && strcmp(id, ae_id) != 0)
            lola_die_hint("rerun `lola cache` with the current autoencoder",
                          "latent cache '%s' was made by another autoencoder (%s), the current one is %s", lf->path, id, ae_id);
        if (i == 0) snprintf(s->ae_id, sizeof s->ae_id, "%s", id);
        if (H5Lexists(f, "state", H5P_DEFAULT) <= 0) lola_die("latent cache '%s': dataset 'state' is missing", lf->path);
        if (H5Lexists(f, "label", H5P_DEFAULT) <= 0) lola_die("latent cache '%s': dataset 'label' is missing", lf->path);
        hid_t ds = H5Dopen2(f, "state", H5P_DEFAULT), dl = H5Dopen2(f, "label", H5P_DEFAULT);
        hid_t sp = H5Dget_space(ds);
        int rank = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[8] = {0};
        if (rank < 4 || rank > 3 + LATENT_MAX_SPATIAL)
            lola_die("latent cache '%s': 'state' has rank %d, expected (N, T, C, h, w[, z])", lf->path, rank);
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        sp = H5Dget_space(dl);
        hsize_t ld[2] = {0};
        if (H5Sget_simple_extent_ndims(sp) != 2) lola_die("latent cache '%s': 'label' must be 2-D (N, D)", lf->path);
        H5Sget_simple_extent_dims(sp, ld, NULL);
        H5Sclose(sp);
        if (ld[0] != dims[0])
            lola_die("latent cache '%s': 'label' has %llu rows but 'state' has %llu trajectories", lf->path,
                     (unsigned long long)ld[0], (unsigned long long)dims[0]);
        lf->n_traj = (int64_t)dims[0];
        lf->n_steps = (int64_t)dims[1];
        if (i == 0) {
            s->channels = (int)dims[2];
            s->n_spatial = rank - 3;
            s->state_size = s->channels;
            for (int k = 0; k < s->n_spatial; k++) {
                s->spatial[k] = (int64_t)dims[3 + k];
                s->state_size *= s->spatial[k];
            }
            s->label_dim = (int)ld[1];
        } else {
            int same = rank - 3 == s->n_spatial && (int)dims[2] == s->channels && (int)ld[1] == s->label_dim;
            for (int k = 0; same && k < s->n_spatial; k++) same = (int64_t)dims[3 + k] == s->spatial[k];
            if (!same) lola_die("latent cache '%s': shape disagrees with '%s' (channels, grid or label size)", lf->path, s->files[0].path);
        }
        lf->fid = f;
        lf->dstate = ds;
        lf->dlabel = dl;
    }
    free(names);
}

void latent_close(LatentSet *s) {
    for (int i = 0; i < s->n_files; i++) {
        H5Dclose(s->files[i].dstate);
        H5Dclose(s->files[i].dlabel);
        H5Fclose(s->files[i].fid);
        free(s->files[i].path);
    }
    free(s->files);
    free(s->offsets);
    memset(s, 0, sizeof *s);
}

int64_t latent_index(LatentSet *s, int window, int stride) {
    if (window < 1 || stride < 1) lola_die("latent windows: bad window %d / stride %d", window, stride);
    s->window = window;
    s->stride = stride;
    free(s->offsets);
    s->offsets = LOLA_NEW(int64_t, s->n_files + 1);
    for (int i = 0; i < s->n_files; i++) {
        int64_t W = s->files[i].n_steps - (int64_t)(window - 1) * stride;
        if (W <= 0)
            lola_die("latent cache '%s': trajectories have %lld states, shorter than one window of %d states at stride %d",
                     s->files[i].path, (long long)s->files[i].n_steps, window, stride);
        s->offsets[i + 1] = s->offsets[i] + s->files[i].n_traj * W;
    }
    return s->offsets[s->n_files];
}

void latent_read_window(LatentSet *s, int64_t idx, float *out, float *label) {
    if (!s->offsets) lola_die("latent_read_window before latent_index");
    if (idx < 0 || idx >= s->offsets[s->n_files]) lola_die("latent window %lld out of range [0, %lld)", (long long)idx, (long long)s->offsets[s->n_files]);
    int f = 0;
    while (s->offsets[f + 1] <= idx) f++;
    LatentFile *lf = &s->files[f];
    int64_t local = idx - s->offsets[f], W = lf->n_steps - (int64_t)(s->window - 1) * s->stride;
    int64_t traj = local / W, t0 = local % W;
    int rank = 3 + s->n_spatial;
    hsize_t start[8] = {0}, stride[8], count[8];
    for (int d = 0; d < rank; d++) stride[d] = 1;
    start[0] = (hsize_t)traj;
    start[1] = (hsize_t)t0;
    stride[1] = (hsize_t)s->stride;
    count[0] = 1;
    count[1] = (hsize_t)s->window;
    count[2] = (hsize_t)s->channels;
    for (int k = 0; k < s->n_spatial; k++) count[3 + k] = (hsize_t)s->spatial[k];
    size_t plane = (size_t)(s->state_size / s->channels);
    float *tmp = LOLA_NEW(float, (size_t)s->window * (size_t)s->state_size);
    hid_t fs = H5Dget_space(lf->dstate);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, stride, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    if (H5Dread(lf->dstate, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, tmp) < 0)
        lola_die("latent cache '%s': cannot read trajectory %lld states %lld.. (truncated file?)", lf->path, (long long)traj, (long long)t0);
    H5Sclose(ms);
    H5Sclose(fs);
    // (L, C, P) -> (C, L, P)
    for (int l = 0; l < s->window; l++)
        for (int c = 0; c < s->channels; c++)
            memcpy(out + ((size_t)c * s->window + l) * plane, tmp + ((size_t)l * s->channels + c) * plane, plane * sizeof(float));
    free(tmp);
    if (label) {
        fs = H5Dget_space(lf->dlabel);
        hsize_t ls[2] = {(hsize_t)traj, 0}, lc[2] = {1, (hsize_t)s->label_dim};
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, ls, NULL, lc, NULL);
        ms = H5Screate_simple(2, lc, NULL);
        if (H5Dread(lf->dlabel, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, label) < 0)
            lola_die("latent cache '%s': cannot read label %lld", lf->path, (long long)traj);
        H5Sclose(ms);
        H5Sclose(fs);
    }
}
