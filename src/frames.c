// frames.c: FrameSet (report.h): the frames of one evaluated trajectory kept for the figures.
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "report.h"

static const char *const source_names[FRAME_SOURCES] = {"autoencoder", "persistence", "diffusion", "surrogate", "truth"};

void frameset_init(FrameSet *f, int C, int H, int W, int L_tot, int context, int stride) {
    memset(f, 0, sizeof *f);
    f->C = C;
    f->H = H;
    f->W = W;
    f->L_tot = L_tot;
    f->context = context;
    f->stride = stride;
    int avail = L_tot - context; // predicted states t = context .. L_tot-1
    f->n_sel = avail < FRAME_MAX_SEL ? avail : FRAME_MAX_SEL;
    for (int k = 0; k < f->n_sel; k++) f->sel[k] = context - 1 + (int)(((long)(k + 1) * avail + f->n_sel - 1) / f->n_sel);
}

void frameset_offer(FrameSet *f, int source, int t, const float *v) {
    if (source < 0 || source >= FRAME_SOURCES) return;
    for (int k = 0; k < f->n_sel; k++) {
        if (f->sel[k] != t) continue;
        size_t fs = (size_t)f->C * f->H * f->W;
        if (!f->data[source]) f->data[source] = LOLA_NEW(float, (size_t)f->n_sel * fs);
        memcpy(f->data[source] + (size_t)k * fs, v, fs * sizeof(float));
    }
}

void frameset_write(const FrameSet *f, const WellSplit *s, int64_t trajectory, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) lola_die("cannot create '%s'", tmp);
    hsize_t dims[4] = {(hsize_t)f->n_sel, (hsize_t)f->C, (hsize_t)f->H, (hsize_t)f->W};
    for (int src = 0; src < FRAME_SOURCES; src++) {
        if (!f->data[src]) continue;
        hid_t sp = H5Screate_simple(4, dims, NULL);
        hid_t ds = H5Dcreate2(file, source_names[src], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, f->data[src]) < 0)
            lola_die("'%s': cannot write dataset %s", tmp, source_names[src]);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    int64_t lead[FRAME_MAX_SEL], states[FRAME_MAX_SEL];
    for (int k = 0; k < f->n_sel; k++) {
        states[k] = f->sel[k];
        lead[k] = (int64_t)(f->sel[k] - f->context + 1) * f->stride;
    }
    hsize_t n = (hsize_t)f->n_sel;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(file, "lead_times", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, lead);
    H5Aclose(a);
    a = H5Acreate2(file, "states", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, states);
    H5Aclose(a);
    H5Sclose(sp);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hsize_t nc = (hsize_t)f->C;
    const char *names[64];
    for (int c = 0; c < f->C && c < 64; c++) names[c] = s->channels[c].name;
    sp = H5Screate_simple(1, &nc, NULL);
    a = H5Acreate2(file, "fields", st, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, st, names);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(st);
    sp = H5Screate(H5S_SCALAR);
    a = H5Acreate2(file, "trajectory", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &trajectory);
    H5Aclose(a);
    H5Sclose(sp);
    if (H5Fclose(file) < 0) lola_die("'%s': close failed", tmp);
    if (rename(tmp, path) != 0) lola_die("cannot rename '%s' to '%s'", tmp, path);
}

void frameset_free(FrameSet *f) {
    for (int i = 0; i < FRAME_SOURCES; i++) free(f->data[i]);
    memset(f, 0, sizeof *f);
}
