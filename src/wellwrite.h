// wellwrite.h: writing The Well's HDF5 schema with the exact HDF5 types h5py produces, and The
// Well's stats.yaml. Reference: /work/shared/reference/the-well-format.md §1.2 (schema), §1.3 (types),
// §1.4 (contiguous, uncompressed float32), §1.5 (stats).
//
// Types (§1.3): str -> variable-length UTF-8 string (scalar space); list[str] -> same type, 1-D;
// bool -> H5T_ENUM {FALSE 0, TRUE 1} over int8; int -> int64; float -> float64; an empty list ->
// float64 of shape (0) (what numpy makes of []); field data -> float32, contiguous, no filters.
//
// A file is written to "<path>.tmp" and renamed to <path> by wellw_close, so an interrupted run
// never replaces a good file with a partial one. HDF5 errors end the job naming the file and object.
// Not thread-safe (serial HDF5): call from one thread, and not while a well.h loader reads.
#ifndef LOLA_WELLWRITE_H
#define LOLA_WELLWRITE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- typed attribute helpers (obj: a file, group or dataset id). Each dies on failure. ----------
void wellw_attr_str(hid_t obj, const char *name, const char *value);
// n == 0 writes the empty-list form: float64, shape (0).
void wellw_attr_strs(hid_t obj, const char *name, const char *const *values, int n);
void wellw_attr_bool(hid_t obj, const char *name, int value);
void wellw_attr_bools(hid_t obj, const char *name, const int *values, int n);
void wellw_attr_i64(hid_t obj, const char *name, int64_t value);
void wellw_attr_f64(hid_t obj, const char *name, double value);
// The h5py boolean type (enum over int8, FALSE 0, TRUE 1). Caller closes it with H5Tclose.
hid_t wellw_bool_type(void);

// ---- one Well file -----------------------------------------------------------------------------
#define WELLW_MAX_DIMS 3
#define WELLW_MAX_FIELDS 8
#define WELLW_MAX_PARAMS 4
#define WELLW_MAX_BCS 6

typedef struct {
    const char *group;   // e.g. "x_open", "y_periodic", "y_wall_dirichlet"
    const char *bc_type; // "OPEN", "PERIODIC" or "WALL"
    int dim;             // index into dim_names; the mask has that dim's length, first and last True
} WellwBC;

typedef struct {
    const char *dataset_name;                // root @dataset_name
    int n_dims;                              // 1..3
    const char *dim_names[WELLW_MAX_DIMS];   // "x", "y", ("z")
    int dim_sizes[WELLW_MAX_DIMS];           // N per dim
    const float *coords[WELLW_MAX_DIMS];     // coordinate values, dim_sizes[d] each
    int n_time;                              // T
    const float *time;                       // T values (not sample-varying)
    int64_t n_traj;                          // B (>= 1)
    int n_params;                            // constant simulation parameters (root attr + /scalars)
    const char *param_names[WELLW_MAX_PARAMS];
    double param_values[WELLW_MAX_PARAMS];   // written as float64
    int n_bcs;
    WellwBC bcs[WELLW_MAX_BCS];
    int n_t0, n_t1;                          // sample- and time-varying fields of order 0 and 1
    const char *t0_names[WELLW_MAX_FIELDS];  // in channel order (t0_fields@field_names)
    const char *t1_names[WELLW_MAX_FIELDS];
} WellwSpec;

typedef struct {
    hid_t file;
    hid_t t0[WELLW_MAX_FIELDS], t1[WELLW_MAX_FIELDS];
    WellwSpec spec;
    size_t n_space;     // product of dim_sizes
    int64_t n_written;  // trajectories stored so far
    char *path, *tmp_path;
} WellwFile;

// Creates <path>.tmp with the whole schema (attributes, dimensions, BCs, scalars, empty t2 group)
// and the field datasets t0 (B,T,N...) and t1 (B,T,N...,D), float32 contiguous. Dies on error.
void wellw_create(WellwFile *w, const char *path, const WellwSpec *spec);
// Stores trajectory b: t0[f] holds (T, N...) floats, t1[f] holds (T, N..., D), in spec order.
void wellw_put_traj(WellwFile *w, int64_t b, const float *const *t0, const float *const *t1);
// Checks that every trajectory was written, closes, renames <path>.tmp to <path>.
void wellw_close(WellwFile *w);

// ---- stats.yaml (§1.5) ---------------------------------------------------------------------------
// Per file and per component: count, mean, population variance over (trajectory, time, space),
// for the fields and for the frame differences x[:,1:] - x[:,:-1]; files combined as a mixture
// weighted by count: mean = Σ w μ, std = sqrt(Σ w (σ² + μ²) - mean²), rms = sqrt(Σ w (σ² + μ²)).
typedef struct {
    double n, shift, s1, s2; // count, shift K, Σ(x-K), Σ(x-K)² (shifted sums limit cancellation)
} WellwMoments;

typedef struct {
    int n_fields;                        // t0 fields then t1 fields
    int n_t0;                            // fields [0, n_t0) are t0 (scalars), the rest t1 (vectors)
    const char *names[2 * WELLW_MAX_FIELDS];
    int ncomp[2 * WELLW_MAX_FIELDS];     // 1 for t0, D for t1
    int n_comp_total;
    WellwMoments *cur, *cur_d;           // current file, per component (fields / deltas)
    int n_files;
    double *file_n, *file_mu, *file_var; // per file and component: count, mean, variance (fields)
    double *file_dn, *file_dmu, *file_dvar; // same for deltas
} WellwStats;

void wellw_stats_init(WellwStats *st, const WellwSpec *spec);
void wellw_stats_begin_file(WellwStats *st);
// Adds one trajectory (same layout as wellw_put_traj): T frames of n_space points.
void wellw_stats_add_traj(WellwStats *st, int T, size_t n_space, const float *const *t0, const float *const *t1);
void wellw_stats_end_file(WellwStats *st);
// Combined statistics, per component (n_comp_total values each, fields in init order).
void wellw_stats_result(const WellwStats *st, double *mean, double *std, double *rms, double *mean_d, double *std_d,
                        double *rms_d);
// Writes stats.yaml (block YAML, keys sorted, values %.4E; a t1 field is a list of D values).
// Dies when no file was added. Warns when a std is <= 1e-4 (The Well asserts std > 1e-4).
void wellw_stats_write_yaml(const WellwStats *st, const char *path);
void wellw_stats_free(WellwStats *st);

#ifdef __cplusplus
}
#endif
#endif
