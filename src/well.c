// well.c: The Well reader: discovery, schema validation, indexing, window reads (see well.h).
#include "well.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "augment.h"
#include "common.h"
#include "transform.h"

#if defined(LOLA_HDF5_PARALLEL) && !defined(H5_HAVE_PARALLEL)
#error "LOLA_HDF5_PARALLEL is set but this HDF5 was built without parallel (MPI-IO) support"
#endif
#if defined(LOLA_MPI) && defined(LOLA_HDF5_PARALLEL) && defined(H5_HAVE_PARALLEL)
#include <mpi.h>
#define WELL_MPIO 1
#else
#define WELL_MPIO 0
#endif

// ---------------------------------------------------------------------------------------------
// HDF5 lock and error capture

static pthread_mutex_t g_h5_mutex = PTHREAD_MUTEX_INITIALIZER;
void well_h5_lock(void) { pthread_mutex_lock(&g_h5_mutex); }
void well_h5_unlock(void) { pthread_mutex_unlock(&g_h5_mutex); }

// Innermost HDF5 error description of the current error stack (the most specific one, e.g.
// "truncated file: eof = ..."), or "" when the stack is empty.
static char g_h5_msg[512];
static herr_t h5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    (void)data;
    if (e->desc && e->desc[0]) snprintf(g_h5_msg, sizeof(g_h5_msg), "%s (in %s)", e->desc, e->func_name ? e->func_name : "?");
    return 0;
}
static const char *h5_msg(void) {
    // Downward = from the API call to where the error was detected: keep the last one visited.
    g_h5_msg[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, h5_walk_cb, NULL);
    H5Eclear2(H5E_DEFAULT);
    return g_h5_msg[0] ? g_h5_msg : "no HDF5 error detail";
}
static void h5_quiet(void) {
    static int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); // we print our own messages
        done = 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute helpers. `ctx` is "file:object" for messages.

typedef struct {
    const char *path; // file path
    const char *obj;  // group or dataset path inside the file
} Ctx;

#define CTX_FMT "%s: %s"
#define CTX_ARGS(c) (c)->path, (c)->obj

static hid_t open_attr(hid_t loc, const char *name, const Ctx *c) {
    htri_t ex = H5Aexists(loc, name);
    if (ex <= 0)
        lola_die_hint("the file does not follow The Well's schema (the-well-format.md §1.2)",
                      CTX_FMT ": missing attribute '%s'", CTX_ARGS(c), name);
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) lola_die(CTX_FMT ": cannot open attribute '%s': %s", CTX_ARGS(c), name, h5_msg());
    return a;
}

static int64_t attr_npoints(hid_t a) {
    hid_t sp = H5Aget_space(a);
    int64_t n = (int64_t)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    return n;
}

// Reads a string or list of strings. Returns the count; *out receives malloc'ed strings.
// A zero-length attribute of any class is an empty list (h5py writes [] as float64 (0)).
static int read_attr_strings(hid_t loc, const char *name, char ***out, const Ctx *c) {
    hid_t a = open_attr(loc, name, c);
    int64_t n = attr_npoints(a);
    *out = NULL;
    if (n == 0) {
        H5Aclose(a);
        return 0;
    }
    hid_t ft = H5Aget_type(a);
    if (H5Tget_class(ft) != H5T_STRING)
        lola_die(CTX_FMT ": attribute '%s' should be a string or list of strings", CTX_ARGS(c), name);
    char **res = LOLA_NEW(char *, n);
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));
        char **buf = LOLA_NEW(char *, n);
        if (H5Aread(a, mt, buf) < 0) lola_die(CTX_FMT ": cannot read attribute '%s': %s", CTX_ARGS(c), name, h5_msg());
        for (int64_t i = 0; i < n; i++) res[i] = strdup(buf[i] ? buf[i] : "");
        hid_t sp = H5Aget_space(a);
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
        H5Sclose(sp);
        free(buf);
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz);
        char *buf = LOLA_NEW(char, (size_t)n * sz + 1);
        if (H5Aread(a, mt, buf) < 0) lola_die(CTX_FMT ": cannot read attribute '%s': %s", CTX_ARGS(c), name, h5_msg());
        for (int64_t i = 0; i < n; i++) {
            res[i] = LOLA_NEW(char, sz + 1);
            memcpy(res[i], buf + i * sz, sz);
            res[i][sz] = 0;
        }
        free(buf);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    *out = res;
    return (int)n;
}

static void free_strings(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void read_attr_string(hid_t loc, const char *name, char *dst, size_t cap, const Ctx *c) {
    char **v;
    int n = read_attr_strings(loc, name, &v, c);
    if (n != 1) lola_die(CTX_FMT ": attribute '%s' should be one string, found %d values", CTX_ARGS(c), name, n);
    snprintf(dst, cap, "%s", v[0]);
    free_strings(v, n);
}

static double read_attr_number(hid_t loc, const char *name, const Ctx *c, int want_int) {
    hid_t a = open_attr(loc, name, c);
    if (attr_npoints(a) != 1) lola_die(CTX_FMT ": attribute '%s' should be a single number", CTX_ARGS(c), name);
    hid_t ft = H5Aget_type(a);
    H5T_class_t cl = H5Tget_class(ft);
    if (cl != H5T_INTEGER && (want_int || cl != H5T_FLOAT))
        lola_die(CTX_FMT ": attribute '%s' should be %s", CTX_ARGS(c), name, want_int ? "an integer" : "a number");
    double v = 0;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) lola_die(CTX_FMT ": cannot read attribute '%s': %s", CTX_ARGS(c), name, h5_msg());
    H5Tclose(ft);
    H5Aclose(a);
    return v;
}

// Bools: h5py writes enum {FALSE=0, TRUE=1} over int8; plain integers are accepted too.
static void read_bool_values(hid_t id, int is_attr, int *out, int64_t n, const Ctx *c, const char *what) {
    hid_t ft = is_attr ? H5Aget_type(id) : H5Dget_type(id);
    H5T_class_t cl = H5Tget_class(ft);
    if (cl != H5T_ENUM && cl != H5T_INTEGER && cl != H5T_BITFIELD)
        lola_die(CTX_FMT ": %s should be boolean (HDF5 enum FALSE/TRUE)", CTX_ARGS(c), what);
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    size_t sz = H5Tget_size(mt);
    unsigned char *buf = LOLA_NEW(unsigned char, (size_t)(n > 0 ? n : 1) * sz);
    herr_t e = is_attr ? H5Aread(id, mt, buf) : H5Dread(id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (e < 0) lola_die(CTX_FMT ": cannot read %s: %s", CTX_ARGS(c), what, h5_msg());
    for (int64_t i = 0; i < n; i++) {
        int nz = 0;
        for (size_t b = 0; b < sz; b++) nz |= buf[i * sz + b] != 0;
        out[i] = nz;
    }
    free(buf);
    H5Tclose(mt);
    H5Tclose(ft);
}

static int read_attr_bool(hid_t loc, const char *name, const Ctx *c) {
    hid_t a = open_attr(loc, name, c);
    if (attr_npoints(a) != 1) lola_die(CTX_FMT ": attribute '%s' should be a single boolean", CTX_ARGS(c), name);
    int v;
    char what[128];
    snprintf(what, sizeof(what), "attribute '%s'", name);
    read_bool_values(a, 1, &v, 1, c, what);
    H5Aclose(a);
    return v;
}

static int read_attr_bools(hid_t loc, const char *name, int *out, int maxn, const Ctx *c) {
    hid_t a = open_attr(loc, name, c);
    int64_t n = attr_npoints(a);
    if (n > maxn) lola_die(CTX_FMT ": attribute '%s' has %lld entries (at most %d)", CTX_ARGS(c), name, (long long)n, maxn);
    char what[128];
    snprintf(what, sizeof(what), "attribute '%s'", name);
    read_bool_values(a, 1, out, n, c, what);
    H5Aclose(a);
    return (int)n;
}

static hid_t open_group(hid_t loc, const char *name, const Ctx *c) {
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex <= 0)
        lola_die_hint("the file does not follow The Well's schema (the-well-format.md §1.2)",
                      CTX_FMT ": missing group '%s'", CTX_ARGS(c), name);
    H5O_info_t info;
    if (H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_GROUP)
        lola_die(CTX_FMT ": '%s' should be a group", CTX_ARGS(c), name);
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0) lola_die(CTX_FMT ": cannot open group '%s': %s", CTX_ARGS(c), name, h5_msg());
    return g;
}

static hid_t open_dset(hid_t loc, const char *name, const Ctx *c) {
    htri_t ex = H5Lexists(loc, name, H5P_DEFAULT);
    if (ex <= 0)
        lola_die_hint("the file does not follow The Well's schema (the-well-format.md §1.2)",
                      CTX_FMT ": missing dataset '%s'", CTX_ARGS(c), name);
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) lola_die(CTX_FMT ": cannot open dataset '%s': %s", CTX_ARGS(c), name, h5_msg());
    return d;
}

static int dset_shape(hid_t d, hsize_t *dims) {
    hid_t sp = H5Dget_space(d);
    int r = H5Sget_simple_extent_ndims(sp);
    if (r > 8) r = 8;
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return r;
}

static void shape_str(const hsize_t *dims, int r, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "(");
    for (int i = 0; i < r && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, i ? ", %llu" : "%llu", (unsigned long long)dims[i]);
    if (r == 1 && n < cap) n += (size_t)snprintf(buf + n, cap - n, ",");
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

// ---------------------------------------------------------------------------------------------
// Discovery

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

// LoLa's get_well_dataset: <root>/<physics> or <root>/datasets/<physics>, then <split> or
// data/<split>; realpath'd (the filters see the resolved full path, as in the reference).
static void resolve_split_dir(const WellSpec *sp, const char *physics, char *out) {
    char a[2 * PATH_MAX], b[3 * PATH_MAX];
    snprintf(a, sizeof(a), "%s/%s", sp->root, physics);
    if (!is_dir(a)) {
        snprintf(a, sizeof(a), "%s/datasets/%s", sp->root, physics);
        if (!is_dir(a))
            lola_die_hint("set the dataset root (server.datasets) to the directory holding the physics directories",
                          "physics directory %s/%s does not exist (nor %s/datasets/%s)", sp->root, physics, sp->root, physics);
    }
    snprintf(b, sizeof(b), "%s/%s", a, sp->split);
    if (!is_dir(b)) {
        snprintf(b, sizeof(b), "%s/data/%s", a, sp->split);
        if (!is_dir(b)) lola_die("split directory %s/data/%s does not exist (nor %s/%s)", a, sp->split, a, sp->split);
    }
    if (!realpath(b, out)) lola_die("cannot resolve %s: %s", b, strerror(errno));
}

static int list_files(const WellSpec *sp, const char *dir, char ***out) {
    DIR *dp = opendir(dir);
    if (!dp) lola_die("cannot list %s: %s", dir, strerror(errno));
    int n = 0, cap = 16;
    char **v = LOLA_NEW(char *, cap);
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!has_suffix(e->d_name, ".h5") && !has_suffix(e->d_name, ".hdf5")) continue;
        char full[2 * PATH_MAX];
        snprintf(full, sizeof(full), "%s/%s", dir, e->d_name);
        if (sp->n_include > 0) {
            int keep = 0;
            for (int i = 0; i < sp->n_include; i++) keep |= strstr(full, sp->include_filters[i]) != NULL;
            if (!keep) continue;
        }
        int drop = 0;
        for (int i = 0; i < sp->n_exclude; i++) drop |= strstr(full, sp->exclude_filters[i]) != NULL;
        if (drop) continue;
        if (n == cap) {
            cap *= 2;
            v = realloc(v, sizeof(char *) * (size_t)cap);
            if (!v) lola_die("out of memory listing %s", dir);
        }
        v[n++] = strdup(full);
    }
    closedir(dp);
    qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *out = v;
    return n;
}

// ---------------------------------------------------------------------------------------------
// Per-file schema reading

typedef struct {
    char dataset_name[256];
    char grid_type[WELL_NAME_LEN];
    int n_dims;
    int64_t shape[WELL_MAX_DIMS];
    char dim_names[WELL_MAX_DIMS][WELL_NAME_LEN];
    int n_fields;
    WellField fields[WELL_MAX_CHANNELS];
    int n_scalars;
    char scalar_names[WELL_MAX_SCALARS][WELL_NAME_LEN];
} FileSchema;

static const char *GROUPS[3] = {"t0_fields", "t1_fields", "t2_fields"};

typedef struct {
    int64_t n_dims;
    char names[WELL_MAX_DIMS][WELL_NAME_LEN];
    int64_t sizes[WELL_MAX_DIMS];
    int bc[WELL_MAX_DIMS][2];
    const char *path;
    int error;
} BcWalk;

static herr_t bc_iter(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    BcWalk *w = (BcWalk *)data;
    char obj[256];
    snprintf(obj, sizeof(obj), "/boundary_conditions/%s", name);
    Ctx c = {w->path, obj};
    hid_t bg = open_group(g, name, &(Ctx){w->path, "/boundary_conditions"});
    char type[64];
    read_attr_string(bg, "bc_type", type, sizeof(type), &c);
    for (char *p = type; *p; p++) *p = (char)toupper((unsigned char)*p);
    int code;
    if (strcmp(type, "WALL") == 0) code = WELL_WALL;
    else if (strcmp(type, "OPEN") == 0) code = WELL_OPEN;
    else if (strcmp(type, "PERIODIC") == 0) code = WELL_PERIODIC;
    else lola_die(CTX_FMT ": bc_type '%s' is not WALL, OPEN or PERIODIC", CTX_ARGS(&c), type);
    char **dims;
    int nd = read_attr_strings(bg, "associated_dims", &dims, &c);
    if (nd < 1 || nd > WELL_MAX_DIMS) lola_die(CTX_FMT ": associated_dims has %d entries", CTX_ARGS(&c), nd);
    int axis[WELL_MAX_DIMS];
    hsize_t want[WELL_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        axis[i] = -1;
        for (int d = 0; d < w->n_dims; d++)
            if (strcmp(dims[i], w->names[d]) == 0) axis[i] = d;
        if (axis[i] < 0) lola_die(CTX_FMT ": associated dim '%s' is not one of /dimensions@spatial_dims", CTX_ARGS(&c), dims[i]);
        want[i] = (hsize_t)w->sizes[axis[i]];
    }
    hid_t md = open_dset(bg, "mask", &c);
    hsize_t mdims[8];
    int mr = dset_shape(md, mdims);
    int ok = mr == nd;
    for (int i = 0; ok && i < nd; i++) ok = mdims[i] == want[i];
    if (!ok) {
        char s1[96], s2[96];
        shape_str(mdims, mr, s1, sizeof(s1));
        shape_str(want, nd, s2, sizeof(s2));
        lola_die(CTX_FMT "/mask: shape %s, expected %s (the associated dims' sizes)", CTX_ARGS(&c), s1, s2);
    }
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= (int64_t)mdims[i];
    int *mask = LOLA_NEW(int, n);
    char what[300];
    snprintf(what, sizeof(what), "dataset %s/mask", obj);
    read_bool_values(md, 0, mask, n, &c, what);
    H5Dclose(md);
    // the_well _padding_bcs: per associated dim, slice at index 0 / -1 of that dim; all() for WALL,
    // any() otherwise.
    for (int i = 0; i < nd; i++) {
        for (int side = 0; side < 2; side++) {
            int64_t idx_fix = side == 0 ? 0 : (int64_t)mdims[i] - 1;
            int all = 1, any = 0;
            for (int64_t e = 0; e < n; e++) {
                int64_t r = e, id = 0;
                for (int j = nd - 1; j >= 0; j--) {
                    int64_t q = r % (int64_t)mdims[j];
                    r /= (int64_t)mdims[j];
                    if (j == i) id = q;
                }
                if (id != idx_fix) continue;
                all &= mask[e];
                any |= mask[e];
            }
            int hit = code == WELL_WALL ? all : any;
            if (hit) w->bc[axis[i]][side] = code;
        }
    }
    free(mask);
    free_strings(dims, nd);
    H5Gclose(bg);
    return 0;
}

// Reads and validates one file; fills its WellFile (opened datasets) and FileSchema.
static void read_file_schema(WellFile *wf, FileSchema *fs, hid_t fid) {
    const char *path = wf->path;
    Ctx root = {path, "/"};
    read_attr_string(fid, "dataset_name", fs->dataset_name, sizeof(fs->dataset_name), &root);
    read_attr_string(fid, "grid_type", fs->grid_type, sizeof(fs->grid_type), &root);
    double nd = read_attr_number(fid, "n_spatial_dims", &root, 1);
    if (nd < 1 || nd > WELL_MAX_DIMS) lola_die("%s: n_spatial_dims = %g (supported: 1..%d)", path, nd, WELL_MAX_DIMS);
    fs->n_dims = (int)nd;
    double nt = read_attr_number(fid, "n_trajectories", &root, 1);
    if (nt < 1) lola_die("%s: n_trajectories = %g (must be >= 1)", path, nt);
    wf->n_traj = (int64_t)nt;
    {
        char **params;
        int np = read_attr_strings(fid, "simulation_parameters", &params, &root);
        free_strings(params, np);
    }

    // /dimensions
    hid_t dg = open_group(fid, "dimensions", &root);
    Ctx dctx = {path, "/dimensions"};
    char **sd;
    int nsd = read_attr_strings(dg, "spatial_dims", &sd, &dctx);
    if (nsd != fs->n_dims)
        lola_die("%s: /dimensions@spatial_dims has %d names but n_spatial_dims = %d", path, nsd, fs->n_dims);
    {
        hid_t td = open_dset(dg, "time", &dctx);
        hsize_t dims[8];
        int r = dset_shape(td, dims);
        if (r < 1 || r > 2) lola_die("%s: /dimensions/time has rank %d (expected (T,) or (B, T))", path, r);
        wf->n_steps = (int64_t)dims[r - 1];
        if (wf->n_steps < 1) lola_die("%s: /dimensions/time is empty", path);
        H5Dclose(td);
    }
    for (int d = 0; d < fs->n_dims; d++) {
        snprintf(fs->dim_names[d], WELL_NAME_LEN, "%s", sd[d]);
        hid_t xd = open_dset(dg, sd[d], &dctx);
        hsize_t dims[8];
        int r = dset_shape(xd, dims);
        if (r < 1) lola_die("%s: /dimensions/%s is a scalar (expected a coordinate array)", path, sd[d]);
        fs->shape[d] = (int64_t)dims[r - 1];
        H5Dclose(xd);
    }
    free_strings(sd, nsd);
    H5Gclose(dg);

    // /boundary_conditions
    {
        hid_t bg = open_group(fid, "boundary_conditions", &root);
        BcWalk w;
        memset(&w, 0, sizeof(w));
        w.n_dims = fs->n_dims;
        w.path = path;
        for (int d = 0; d < fs->n_dims; d++) {
            snprintf(w.names[d], WELL_NAME_LEN, "%s", fs->dim_names[d]);
            w.sizes[d] = fs->shape[d];
            w.bc[d][0] = w.bc[d][1] = WELL_OPEN; // open unless a mask says otherwise
        }
        hsize_t idx = 0;
        if (H5Literate(bg, H5_INDEX_NAME, H5_ITER_INC, &idx, bc_iter, &w) < 0)
            lola_die("%s: cannot iterate /boundary_conditions: %s", path, h5_msg());
        memcpy(wf->bc, w.bc, sizeof(w.bc));
        H5Gclose(bg);
    }

    // /scalars: constant ones (not time-varying) are the label prefix.
    {
        hid_t sg = open_group(fid, "scalars", &root);
        Ctx sctx = {path, "/scalars"};
        char **names;
        int n = read_attr_strings(sg, "field_names", &names, &sctx);
        fs->n_scalars = 0;
        double vals[WELL_MAX_SCALARS];
        int sv[WELL_MAX_SCALARS];
        hid_t ds[WELL_MAX_SCALARS];
        for (int i = 0; i < n; i++) {
            char obj[256];
            snprintf(obj, sizeof(obj), "/scalars/%s", names[i]);
            Ctx c = {path, obj};
            hid_t d = open_dset(sg, names[i], &sctx);
            int tv = read_attr_bool(d, "time_varying", &c);
            int s_v = read_attr_bool(d, "sample_varying", &c);
            if (tv) {
                H5Dclose(d);
                continue; // time-varying scalars are not part of LoLa's label
            }
            if (fs->n_scalars >= WELL_MAX_SCALARS) lola_die("%s: more than %d constant scalars", path, WELL_MAX_SCALARS);
            hsize_t dims[8];
            int r = dset_shape(d, dims);
            int ok = s_v ? (r == 1 && (int64_t)dims[0] == wf->n_traj) : (r == 0 || (r == 1 && dims[0] == 1));
            if (!ok) {
                char sh[96];
                shape_str(dims, r, sh, sizeof(sh));
                lola_die(CTX_FMT ": shape %s, expected %s", CTX_ARGS(&c), sh, s_v ? "(n_trajectories,)" : "()");
            }
            int k = fs->n_scalars++;
            snprintf(fs->scalar_names[k], WELL_NAME_LEN, "%s", names[i]);
            sv[k] = s_v;
            ds[k] = d;
            if (!s_v) {
                if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &vals[k]) < 0)
                    lola_die(CTX_FMT ": cannot read: %s", CTX_ARGS(&c), h5_msg());
            }
        }
        int any_sv = 0;
        for (int k = 0; k < fs->n_scalars; k++) any_sv |= sv[k];
        wf->scalars_per_traj = any_sv;
        int64_t rows = any_sv ? wf->n_traj : 1;
        wf->scalars = LOLA_NEW(double, rows * (fs->n_scalars > 0 ? fs->n_scalars : 1));
        for (int k = 0; k < fs->n_scalars; k++) {
            if (sv[k]) {
                double *tmp = LOLA_NEW(double, wf->n_traj);
                if (H5Dread(ds[k], H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
                    lola_die("%s: /scalars/%s: cannot read: %s", path, fs->scalar_names[k], h5_msg());
                for (int64_t b = 0; b < rows; b++) wf->scalars[b * fs->n_scalars + k] = tmp[b];
                free(tmp);
            } else {
                for (int64_t b = 0; b < rows; b++) wf->scalars[b * fs->n_scalars + k] = vals[k];
            }
            H5Dclose(ds[k]);
        }
        free_strings(names, n);
        H5Gclose(sg);
    }

    // /t0_fields, /t1_fields, /t2_fields
    fs->n_fields = 0;
    hid_t dsets[WELL_MAX_CHANNELS];
    for (int order = 0; order < 3; order++) {
        hid_t g = open_group(fid, GROUPS[order], &root);
        char gobj[32];
        snprintf(gobj, sizeof(gobj), "/%s", GROUPS[order]);
        Ctx gctx = {path, gobj};
        char **names;
        int n = read_attr_strings(g, "field_names", &names, &gctx);
        for (int i = 0; i < n; i++) {
            char obj[256];
            snprintf(obj, sizeof(obj), "/%s/%s", GROUPS[order], names[i]);
            Ctx c = {path, obj};
            hid_t d = open_dset(g, names[i], &gctx);
            int tv = read_attr_bool(d, "time_varying", &c);
            int s_v = read_attr_bool(d, "sample_varying", &c);
            int dv[8];
            int ndv = read_attr_bools(d, "dim_varying", dv, 8, &c);
            if (ndv != fs->n_dims)
                lola_die(CTX_FMT ": dim_varying has %d entries but n_spatial_dims = %d", CTX_ARGS(&c), ndv, fs->n_dims);
            if (!tv) {
                H5Dclose(d); // a time-constant field: The Well's constant_fields, unused by LoLa
                continue;
            }
            for (int k = 0; k < ndv; k++)
                if (!dv[k])
                    lola_die(CTX_FMT ": fields constant along a spatial dim (dim_varying false) are not supported", CTX_ARGS(&c));
            hid_t ft = H5Dget_type(d);
            if (H5Tget_class(ft) != H5T_FLOAT) lola_die(CTX_FMT ": field data must be floating point", CTX_ARGS(&c));
            H5Tclose(ft);
            // expected shape: [B] [T] N_1..N_D  D^order
            hsize_t want[8];
            int r = 0;
            if (s_v) want[r++] = (hsize_t)wf->n_traj;
            want[r++] = (hsize_t)wf->n_steps;
            for (int k = 0; k < fs->n_dims; k++) want[r++] = (hsize_t)fs->shape[k];
            for (int k = 0; k < order; k++) want[r++] = (hsize_t)fs->n_dims;
            hsize_t dims[8];
            int dr = dset_shape(d, dims);
            char s1[128], s2[128];
            shape_str(dims, dr, s1, sizeof(s1));
            shape_str(want, r, s2, sizeof(s2));
            if (dr != r)
                lola_die_hint("t0 fields are (B, T, N_x, N_y[, N_z]), t1 add a trailing axis of size D, t2 two",
                              CTX_FMT ": rank %d (shape %s), expected rank %d %s for a %s field", CTX_ARGS(&c), dr, s1, r, s2,
                              order == 0 ? "scalar (t0)" : order == 1 ? "vector (t1)" : "tensor (t2)");
            if (s_v && dims[0] != want[0])
                lola_die(CTX_FMT ": holds %llu trajectories (shape %s) but the root attribute n_trajectories = %lld",
                         CTX_ARGS(&c), (unsigned long long)dims[0], s1, (long long)wf->n_traj);
            if (dims[s_v] != want[s_v])
                lola_die(CTX_FMT ": holds %llu time steps (shape %s) but /dimensions/time has %lld",
                         CTX_ARGS(&c), (unsigned long long)dims[s_v], s1, (long long)wf->n_steps);
            for (int k = 0; k < r; k++)
                if (dims[k] != want[k]) lola_die(CTX_FMT ": shape %s, expected %s", CTX_ARGS(&c), s1, s2);
            if (fs->n_fields >= WELL_MAX_CHANNELS) lola_die("%s: too many fields", path);
            WellField *f = &fs->fields[fs->n_fields];
            memset(f, 0, sizeof(*f));
            snprintf(f->name, WELL_NAME_LEN, "%s", names[i]);
            f->order = order;
            f->ncomp = order == 0 ? 1 : order == 1 ? fs->n_dims : fs->n_dims * fs->n_dims;
            f->sample_varying = s_v;
            wf->field_rank[fs->n_fields] = dr;
            for (int k = 0; k < dr; k++) wf->field_shape[fs->n_fields][k] = (int64_t)dims[k];
            dsets[fs->n_fields] = d;
            fs->n_fields++;
        }
        free_strings(names, n);
        H5Gclose(g);
    }
    if (fs->n_fields == 0) lola_die("%s: no time-varying field in /t0_fields, /t1_fields, /t2_fields", path);
    wf->dset = LOLA_NEW(int64_t, fs->n_fields);
    wf->space = LOLA_NEW(int64_t, fs->n_fields);
    for (int f = 0; f < fs->n_fields; f++) {
        wf->dset[f] = dsets[f];
        wf->space[f] = H5Dget_space(dsets[f]);
    }
}

// ---------------------------------------------------------------------------------------------
// Open / close

static int use_mpio(const WellSpec *sp) {
#if WELL_MPIO
    if (sp->force_serial) return 0;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) return 0;
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size > 1;
#else
    (void)sp;
    return 0;
#endif
}

static hid_t open_h5(const char *path, int mpio) {
    if (access(path, R_OK) != 0) lola_die("cannot read %s: %s", path, strerror(errno));
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1); // read-only: no locks (works on lock-less parallel FS)
#endif
#if WELL_MPIO
    if (mpio) H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL); // => H5Fopen is collective
#else
    (void)mpio;
#endif
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fid < 0) {
        const char *m = h5_msg(); // before any other HDF5 call resets the error stack
        lola_die_hint("check that the file is complete (re-download or re-generate it) and is an HDF5 file",
                      "cannot open %s as HDF5 (truncated, corrupt or not HDF5): %s", path, m);
    }
    H5Pclose(fapl);
    return fid;
}

void well_open(WellSplit *s, const WellSpec *sp) {
    memset(s, 0, sizeof(*s));
    if (!sp->root || !sp->split || sp->n_physics < 1) lola_die("well_open: root, split and at least one physics are required");
    well_h5_lock();
    h5_quiet();
    snprintf(s->split, sizeof(s->split), "%s", sp->split);
    s->check_finite = sp->check_finite;
    s->mpio = use_mpio(sp);
    s->n_physics = sp->n_physics;
    s->physics_names = LOLA_NEW(char *, sp->n_physics);
    s->dataset_names = LOLA_NEW(char *, sp->n_physics);
    // discovery
    int total = 0;
    char ***lists = LOLA_NEW(char **, sp->n_physics);
    int *counts = LOLA_NEW(int, sp->n_physics);
    for (int p = 0; p < sp->n_physics; p++) {
        s->physics_names[p] = strdup(sp->physics[p]);
        char dir[PATH_MAX];
        resolve_split_dir(sp, sp->physics[p], dir);
        counts[p] = list_files(sp, dir, &lists[p]);
        if (counts[p] == 0)
            lola_die_hint("check the path, the split name and dataset.include_filters / exclude_filters",
                          "no *.h5 or *.hdf5 files in %s%s", dir, (sp->n_include || sp->n_exclude) ? " after the include/exclude filters" : "");
        total += counts[p];
    }
    s->n_files = total;
    s->files = LOLA_NEW(WellFile, total);
    int fi = 0;
    FileSchema first, cur, phys_first;
    for (int p = 0; p < sp->n_physics; p++) {
        for (int i = 0; i < counts[p]; i++, fi++) {
            WellFile *wf = &s->files[fi];
            wf->path = lists[p][i];
            wf->physics = p;
            wf->fid = open_h5(wf->path, s->mpio);
            memset(&cur, 0, sizeof(cur));
            read_file_schema(wf, &cur, (hid_t)wf->fid);
            if (i == 0) {
                phys_first = cur;
                s->dataset_names[p] = strdup(cur.dataset_name);
            } else {
                // as WellDataset._build_metadata: one dataset_name, ndims, resolution per directory
                if (strcmp(cur.dataset_name, phys_first.dataset_name) != 0)
                    lola_die("%s: dataset_name '%s' differs from '%s' in %s (one dataset per directory)", wf->path,
                             cur.dataset_name, phys_first.dataset_name, s->files[fi - i].path);
            }
            if (fi == 0) {
                first = cur;
                continue;
            }
            const char *ref = s->files[0].path;
            if (cur.n_dims != first.n_dims)
                lola_die("%s: n_spatial_dims = %d but %s has %d", wf->path, cur.n_dims, ref, first.n_dims);
            for (int d = 0; d < cur.n_dims; d++)
                if (cur.shape[d] != first.shape[d] || strcmp(cur.dim_names[d], first.dim_names[d]) != 0)
                    lola_die("%s: resolution/axes differ: dim %d is %s=%lld but %s has %s=%lld (multiple resolutions in one split)",
                             wf->path, d, cur.dim_names[d], (long long)cur.shape[d], ref, first.dim_names[d], (long long)first.shape[d]);
            if (cur.n_fields != first.n_fields) lola_die("%s: %d fields but %s has %d", wf->path, cur.n_fields, ref, first.n_fields);
            for (int f = 0; f < cur.n_fields; f++)
                if (strcmp(cur.fields[f].name, first.fields[f].name) != 0 || cur.fields[f].order != first.fields[f].order ||
                    cur.fields[f].sample_varying != first.fields[f].sample_varying)
                    lola_die("%s: field %d is '%s' (t%d) but in %s it is '%s' (t%d); all files must have the same fields in the same order",
                             wf->path, f, cur.fields[f].name, cur.fields[f].order, ref, first.fields[f].name, first.fields[f].order);
            if (cur.n_scalars != first.n_scalars) lola_die("%s: %d constant scalars but %s has %d", wf->path, cur.n_scalars, ref, first.n_scalars);
            for (int k = 0; k < cur.n_scalars; k++)
                if (strcmp(cur.scalar_names[k], first.scalar_names[k]) != 0)
                    lola_die("%s: constant scalar %d is '%s' but in %s it is '%s'", wf->path, k, cur.scalar_names[k], ref, first.scalar_names[k]);
        }
        free(lists[p]);
    }
    free(lists);
    free(counts);
    // split-level metadata from the first file
    snprintf(s->grid_type, sizeof(s->grid_type), "%s", first.grid_type);
    s->n_dims = first.n_dims;
    s->frame_size = 1;
    for (int d = 0; d < first.n_dims; d++) {
        s->shape[d] = first.shape[d];
        snprintf(s->dim_names[d], WELL_NAME_LEN, "%s", first.dim_names[d]);
        s->frame_size *= first.shape[d];
    }
    s->n_fields = first.n_fields;
    s->n_channels = 0;
    for (int f = 0; f < first.n_fields; f++) {
        s->fields[f] = first.fields[f];
        s->fields[f].channel0 = s->n_channels;
        const int D = s->n_dims;
        for (int k = 0; k < s->fields[f].ncomp; k++) {
            if (s->n_channels >= WELL_MAX_CHANNELS) lola_die("%s: more than %d channels", s->files[0].path, WELL_MAX_CHANNELS);
            WellChannel *ch = &s->channels[s->n_channels++];
            memset(ch, 0, sizeof(*ch));
            ch->field = f;
            ch->k = k;
            if (s->fields[f].order == 0) {
                memcpy(ch->name, s->fields[f].name, WELL_NAME_LEN);
            } else if (s->fields[f].order == 1) {
                ch->comp[0] = k;
                snprintf(ch->name, sizeof(ch->name), "%s_%s", s->fields[f].name, s->dim_names[k]);
            } else {
                ch->comp[0] = k / D;
                ch->comp[1] = k % D;
                char nm[3 * WELL_NAME_LEN + 4];
                snprintf(nm, sizeof(nm), "%s_%s%s", s->fields[f].name, s->dim_names[k / D], s->dim_names[k % D]);
                if (strlen(nm) >= sizeof(ch->name)) lola_die("%s: channel name '%s' too long", s->files[0].path, nm);
                memcpy(ch->name, nm, strlen(nm) + 1);
            }
        }
    }
    s->n_scalars = first.n_scalars;
    for (int k = 0; k < first.n_scalars; k++) snprintf(s->scalar_names[k], WELL_NAME_LEN, "%s", first.scalar_names[k]);
    s->label_dim = s->n_scalars + 2 * s->n_dims;
    well_h5_unlock();
}

void well_close(WellSplit *s) {
    well_h5_lock();
    for (int i = 0; i < s->n_files; i++) {
        WellFile *wf = &s->files[i];
        for (int f = 0; f < s->n_fields; f++) {
            if (wf->space) H5Sclose((hid_t)wf->space[f]);
            if (wf->dset) H5Dclose((hid_t)wf->dset[f]);
        }
        if (wf->fid > 0) H5Fclose((hid_t)wf->fid); // collective under MPI-IO
        free(wf->dset);
        free(wf->space);
        free(wf->scalars);
        free(wf->path);
    }
    well_h5_unlock();
    free(s->files);
    for (int p = 0; p < s->n_physics; p++) {
        free(s->physics_names[p]);
        free(s->dataset_names[p]);
    }
    free(s->physics_names);
    free(s->dataset_names);
    memset(s, 0, sizeof(*s));
}

// ---------------------------------------------------------------------------------------------
// Indexing

int64_t well_windows_per_traj(int64_t n_steps, int L, int stride) {
    int64_t w = n_steps - (int64_t)(L - 1) * stride;
    return w > 0 ? w : 0;
}

void well_windows_init(WellWindows *w, const WellSplit *s, int L, int stride) {
    if (L < 1) lola_die("window length L = %d (must be >= 1)", L);
    if (stride < 1) lola_die("window stride = %d (must be >= 1)", stride);
    w->L = L;
    w->stride = stride;
    w->offset = LOLA_NEW(int64_t, s->n_files + 1);
    w->per_traj = LOLA_NEW(int64_t, s->n_files > 0 ? s->n_files : 1);
    int64_t off = 0;
    for (int f = 0; f < s->n_files; f++) {
        int64_t W = well_windows_per_traj(s->files[f].n_steps, L, stride);
        if (W <= 0)
            lola_die_hint("use a shorter window (trajectory.length) or a smaller stride",
                          "a window of %d frames at stride %d needs %lld time steps, but %s has only %lld",
                          L, stride, (long long)((int64_t)(L - 1) * stride + 1), s->files[f].path, (long long)s->files[f].n_steps);
        w->per_traj[f] = W;
        w->offset[f] = off;
        off += s->files[f].n_traj * W;
    }
    w->offset[s->n_files] = off;
    w->n_samples = off;
    w->n_files_ = s->n_files;
}

void well_windows_free(WellWindows *w) {
    free(w->offset);
    free(w->per_traj);
    memset(w, 0, sizeof(*w));
}

WellLoc well_locate(const WellWindows *w, int64_t idx) {
    if (idx < 0 || idx >= w->n_samples)
        lola_die("sample index %lld out of range [0, %lld)", (long long)idx, (long long)w->n_samples);
    // searchsorted(offsets, idx, side='right') - 1, skipping files with no windows
    int lo = 0, hi = w->n_files_; // invariant: offset[lo] <= idx < offset[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (w->offset[mid] <= idx) lo = mid;
        else hi = mid;
    }
    WellLoc l;
    l.file = lo;
    int64_t local = idx - w->offset[lo];
    l.traj = local / w->per_traj[lo];
    l.start = local % w->per_traj[lo];
    return l;
}

int64_t well_global_index(const WellWindows *w, WellLoc loc) {
    return w->offset[loc.file] + loc.traj * w->per_traj[loc.file] + loc.start;
}

int64_t well_sample_floats(const WellSplit *s, int L) { return (int64_t)L * s->n_channels * s->frame_size; }

const double *well_scalars(const WellSplit *s, int file, int64_t traj) {
    const WellFile *wf = &s->files[file];
    return wf->scalars + (wf->scalars_per_traj ? traj * s->n_scalars : 0);
}

int well_channel_index(const WellSplit *s, const char *name) {
    for (int c = 0; c < s->n_channels; c++)
        if (strcmp(s->channels[c].name, name) == 0) return c;
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Reads

static _Thread_local float *tl_scratch = NULL;
static _Thread_local size_t tl_cap = 0;

static float *scratch(size_t n) {
    if (n > tl_cap) {
        free(tl_scratch);
        void *p = NULL;
        if (posix_memalign(&p, 64, n * sizeof(float)) != 0) lola_die("out of memory: read buffer of %zu floats", n);
        tl_scratch = (float *)p;
        tl_cap = n;
    }
    return tl_scratch;
}

void well_thread_scratch_free(void) {
    free(tl_scratch);
    tl_scratch = NULL;
    tl_cap = 0;
}

// Raw read of K frames (t0, t0+stride, ...) of every field into raw (fields one after another, each
// (K, P, ncomp)). One hyperslab read per field.
static void read_raw(WellSplit *s, int file, int64_t traj, int64_t t0, int K, int stride, float *raw) {
    WellFile *wf = &s->files[file];
    hid_t dxpl = H5P_DEFAULT;
    well_h5_lock();
#if WELL_MPIO
    if (s->mpio) {
        dxpl = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_INDEPENDENT); // independent: no other rank takes part
    }
#endif
    int64_t fbase = 0;
    for (int f = 0; f < s->n_fields; f++) {
        const WellField *fd = &s->fields[f];
        const int r = wf->field_rank[f];
        hsize_t start[8], cnt[8], str[8];
        int a = 0;
        if (fd->sample_varying) {
            start[a] = (hsize_t)traj;
            cnt[a] = 1;
            str[a++] = 1;
        }
        start[a] = (hsize_t)t0;
        cnt[a] = (hsize_t)K;
        str[a++] = (hsize_t)stride;
        for (; a < r; a++) {
            start[a] = 0;
            cnt[a] = (hsize_t)wf->field_shape[f][a];
            str[a] = 1;
        }
        hid_t fsp = (hid_t)wf->space[f];
        hsize_t n = (hsize_t)K * (hsize_t)s->frame_size * (hsize_t)fd->ncomp;
        hid_t msp = H5Screate_simple(1, &n, NULL);
        herr_t e = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, str, cnt, NULL);
        if (e >= 0) e = H5Dread((hid_t)wf->dset[f], H5T_NATIVE_FLOAT, msp, fsp, dxpl, raw + fbase);
        H5Sclose(msp);
        if (e < 0) {
            const char *m = h5_msg();
            well_h5_unlock();
            lola_die("%s: reading %s/%s trajectory %lld, times %lld..%lld step %d failed: %s", wf->path,
                     GROUPS[fd->order], fd->name, (long long)traj, (long long)t0, (long long)(t0 + (int64_t)(K - 1) * stride), stride, m);
        }
        fbase += (int64_t)n;
    }
    if (dxpl != H5P_DEFAULT) H5Pclose(dxpl);
    well_h5_unlock();
    if (s->check_finite) {
        fbase = 0;
        for (int f = 0; f < s->n_fields; f++) {
            const WellField *fd = &s->fields[f];
            const int64_t n = (int64_t)K * s->frame_size * fd->ncomp;
            for (int64_t i = 0; i < n; i++) {
                float v = raw[fbase + i];
                if (isfinite(v)) continue;
                int64_t comp = i % fd->ncomp, pnt = (i / fd->ncomp) % s->frame_size, l = i / (fd->ncomp * s->frame_size);
                char where[128];
                size_t w = 0;
                int64_t rem = pnt;
                int64_t coord[WELL_MAX_DIMS];
                for (int d = s->n_dims - 1; d >= 0; d--) {
                    coord[d] = rem % s->shape[d];
                    rem /= s->shape[d];
                }
                for (int d = 0; d < s->n_dims; d++)
                    w += (size_t)snprintf(where + w, sizeof(where) - w, "%s%s=%lld", d ? ", " : "", s->dim_names[d], (long long)coord[d]);
                lola_die_hint("the data file holds NaN/Inf; regenerate it or exclude it with dataset.exclude_filters",
                              "non-finite value %g in %s: trajectory %lld, time %lld, channel %s, at (%s)", (double)v,
                              wf->path, (long long)traj, (long long)(t0 + l * stride), s->channels[fd->channel0 + comp].name, where);
            }
            fbase += n;
        }
    }
}

static void check_window(const WellSplit *s, int file, int64_t traj, int64_t start, int L, int stride) {
    if (file < 0 || file >= s->n_files) lola_die("file index %d out of range [0, %d)", file, s->n_files);
    const WellFile *wf = &s->files[file];
    if (traj < 0 || traj >= wf->n_traj)
        lola_die("%s: trajectory %lld out of range [0, %lld)", wf->path, (long long)traj, (long long)wf->n_traj);
    if (L < 1 || stride < 1) lola_die("window of %d frames at stride %d is not valid", L, stride);
    int64_t last = start + (int64_t)(L - 1) * stride;
    if (start < 0 || last >= wf->n_steps)
        lola_die_hint("use a shorter window (trajectory.length) or a smaller stride",
                      "%s: a window of %d frames at stride %d from time %lld needs time %lld, but the trajectory has %lld steps",
                      wf->path, L, stride, (long long)start, (long long)last, (long long)wf->n_steps);
}

static void layout_strides(const WellSplit *s, int L, WellLayout layout, int64_t *fs, int64_t *cs) {
    if (layout == WELL_CLHW) {
        *fs = s->frame_size;
        *cs = (int64_t)L * s->frame_size;
    } else {
        *fs = (int64_t)s->n_channels * s->frame_size;
        *cs = s->frame_size;
    }
}

// Frames per raw chunk for long reads: about 64 MiB of scratch.
static int chunk_frames(const WellSplit *s, int L) {
    int64_t per = (int64_t)s->n_channels * s->frame_size;
    int64_t k = (int64_t)(16u << 20) / (per > 0 ? per : 1);
    if (k < 1) k = 1;
    return (int)(k < L ? k : L);
}

static void read_frames(WellSplit *s, int file, int64_t traj, int64_t start, int L, int stride, const AugPlan *plan,
                        const Preprocess *pre, WellLayout layout, float *out) {
    check_window(s, file, traj, start, L, stride);
    int64_t fstr, cstr;
    layout_strides(s, L, layout, &fstr, &cstr);
    AugPlan ident;
    if (!plan) {
        augment_identity(&ident, s, file);
        plan = &ident;
    }
    const int K = chunk_frames(s, L);
    float *raw = scratch((size_t)K * (size_t)s->n_channels * (size_t)s->frame_size);
    for (int l0 = 0; l0 < L; l0 += K) {
        int k = L - l0 < K ? L - l0 : K;
        read_raw(s, file, traj, start + (int64_t)l0 * stride, k, stride, raw);
        augment_gather(plan, pre, s, raw, k, out + (int64_t)l0 * fstr, fstr, cstr);
    }
}

void well_read_window(WellSplit *s, int file, int64_t traj, int64_t start, int L, int stride, const AugPlan *plan,
                      const Preprocess *pre, WellLayout layout, float *out) {
    read_frames(s, file, traj, start, L, stride, plan, pre, layout, out);
}

void well_read_sample(WellSplit *s, const WellWindows *w, int64_t idx, const AugPlan *plan, const Preprocess *pre,
                      WellLayout layout, float *out) {
    WellLoc l = well_locate(w, idx);
    read_frames(s, l.file, l.traj, l.start, w->L, w->stride, plan, pre, layout, out);
}

void well_read_trajectory(WellSplit *s, int file, int64_t traj, const AugPlan *plan, const Preprocess *pre,
                          WellLayout layout, float *out) {
    if (file < 0 || file >= s->n_files) lola_die("file index %d out of range [0, %d)", file, s->n_files);
    read_frames(s, file, traj, 0, (int)s->files[file].n_steps, 1, plan, pre, layout, out);
}

int well_reads_thread_safe(const WellSplit *s) {
#if WELL_MPIO
    if (s->mpio) {
        int level = MPI_THREAD_SINGLE;
        MPI_Query_thread(&level);
        return level >= MPI_THREAD_MULTIPLE;
    }
#endif
    (void)s;
    return 1;
}

static const char *bc_name(int c) { return c == WELL_WALL ? "WALL" : c == WELL_OPEN ? "OPEN" : c == WELL_PERIODIC ? "PERIODIC" : "?"; }

void well_print(const WellSplit *s) {
    char buf[1024];
    size_t n = 0;
    for (int c = 0; c < s->n_channels && n < sizeof(buf); c++) n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", c ? ", " : "", s->channels[c].name);
    log_info("well: %s split, %d files over %d physics dir(s), %dD %s grid %lld x %lld%s%s, %d channels [%s]%s", s->split,
             s->n_files, s->n_physics, s->n_dims, s->grid_type, (long long)s->shape[0], (long long)(s->n_dims > 1 ? s->shape[1] : 1),
             s->n_dims > 2 ? " x " : "", s->n_dims > 2 ? "..." : "", s->n_channels, buf, s->mpio ? ", MPI-IO" : "");
    for (int i = 0; i < s->n_files; i++) {
        const WellFile *f = &s->files[i];
        const char *base = strrchr(f->path, '/');
        n = 0;
        for (int d = 0; d < s->n_dims; d++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s=%s/%s", d ? " " : "", s->dim_names[d], bc_name(f->bc[d][0]), bc_name(f->bc[d][1]));
        for (int k = 0; k < s->n_scalars && n < sizeof(buf); k++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s=%g", s->scalar_names[k], well_scalars(s, i, 0)[k]);
        log_info("  [%d] %s: %lld traj x %lld steps, %s", i, base ? base + 1 : f->path, (long long)f->n_traj, (long long)f->n_steps, buf);
    }
}
