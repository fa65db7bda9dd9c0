// well.h: the reader of The Well's HDF5 files (PolymathicAI/the_well v1.0.0 schema, as LoLa reads
// them). Reference: shared/reference/the-well-format.md §1-§2, lola-spec.md §1.
//
// A WellSplit is the files of one split (train/valid/test) over one or more physics directories:
//   <root>/<physics>/data/<split>/*.h5|*.hdf5     (also <root>/datasets/<physics>/data/<split>)
// Files are filtered by substring on the full path (include: keep a file if ANY include filter
// occurs; exclude: drop it if ANY exclude filter occurs), sorted bytewise (strcmp) per physics
// directory, and the physics directories are concatenated in config order. This is LoLa's
// get_well_multi_dataset = ConcatDataset([WellDataset(physics) for physics in config order]), so
// euler_all = every openBC file, then every periodicBC file.
//
// Schema checks at open (each error names the file, the group/dataset and the attribute): root
// attributes dataset_name, grid_type, n_spatial_dims, n_trajectories; /dimensions@spatial_dims,
// /dimensions/time and one coordinate dataset per spatial dim; /boundary_conditions/<g> with
// @bc_type, @associated_dims and a mask; /scalars@field_names and one dataset per name;
// /t0_fields, /t1_fields, /t2_fields with @field_names and, per field, @sample_varying,
// @time_varying, @dim_varying and the rank/shape they imply (leading axis = n_trajectories,
// time axis = len(time), spatial axes = coordinate lengths, D trailing component axes per order).
// Within one physics directory every file must share dataset_name, n_spatial_dims and the
// resolution (as WellDataset asserts); across physics directories the resolution, the channel list
// and the constant-scalar names must agree (so samples can be batched).
//
// Channels (The Well's order, §2.2): the time-varying t0 fields in t0_fields@field_names order,
// then every t1 field's components (x, y[, z]), then t2 fields (row-major ij). Time-constant fields
// are not channels (they would be The Well's constant_fields, which LoLa ignores). Fields must be
// full-resolution in space (dim_varying all true); sample_varying false is supported.
//
// Boundary codes (WALL 0, OPEN 1, PERIODIC 2) are built from the masks as the_well's
// _padding_bcs does at HEAD (§2.2): start OPEN everywhere; for each BC group in name order and each
// associated dim, if the mask slice at index 0 (resp. -1) of that dim is true (all true for WALL,
// any true for the others), set [dim][0] (resp. [dim][1]). v1.0.0 started from 0 (WALL) instead;
// the two agree whenever the mask ends are set, as in every LoLa dataset.
//
// Constant scalars: the non-time-varying entries of scalars@field_names, in that order (shape ()
// or (n_trajectories,) when sample-varying). Label θ = scalars (after log_scalars) ++ bc flattened
// [ax0_lo, ax0_hi, ax1_lo, ax1_hi, ...] (augment.h computes it after augmentation).
//
// Indexing (§2.1, identical to WellDataset): a window is L frames at time stride s starting at t0;
// windows per trajectory W_f = T_f - (L-1)*s (must be > 0 in every file); global index order is
// file-major, then trajectory, then start: idx = off_f + traj*W_f + t0, len = Σ B_f*W_f.
//
// Output layout: float32, channel-first per sample. WELL_LCHW writes (L, C, H, W[, Z]) (with L = 1
// that is (C, H, W), so a batch of AE samples is (B, C, H, W)); WELL_CLHW writes (C, L, H, W[, Z])
// (so a batch of pixel-space windows is (B, C, L, H, W) as the emulators want). H is the first
// spatial axis (x), W the second (y, contiguous), as stored in the file.
//
// Threads and HDF5: the HDF5 library here is not thread-safe. Every HDF5 call in well.c is made
// under one process-wide mutex (well_h5_lock/unlock). Any other module that calls HDF5 while a
// BatchLoader (sampler.h) may be reading must take the same lock around its calls.
//
// Parallel I/O: when compiled with MPI and a parallel HDF5 (LOLA_MPI and H5_HAVE_PARALLEL; the
// Makefile's LOLA_HDF5_PARALLEL asks for it explicitly) and MPI is initialised with more than one
// rank in MPI_COMM_WORLD, files are opened read-only with the MPI-IO driver (H5Pset_fapl_mpio on
// MPI_COMM_WORLD) and all reads are independent (H5FD_MPIO_INDEPENDENT). H5Fopen and H5Fclose are
// then COLLECTIVE: well_open and well_close must be called by every rank, with the same spec,
// even by a rank that will read nothing. Dataset/attribute opens are metadata reads done by every
// rank in the same order inside well_open. Reads (well_read_*) are independent: any rank, any time.
// Otherwise each rank opens the files read-only with the default (sec2) driver.
// File locking: read-only opens must work on file systems without locks (Lustre/GPFS mounts with
// flock off): H5Pset_file_locking(fapl, false, true) is used (HDF5 >= 1.10.7); with an older HDF5
// set HDF5_USE_FILE_LOCKING=FALSE in the environment instead.
#ifndef LOLA_WELL_H
#define LOLA_WELL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WELL_MAX_DIMS 3
#define WELL_MAX_CHANNELS 64
#define WELL_MAX_SCALARS 16
#define WELL_NAME_LEN 64

enum { WELL_WALL = 0, WELL_OPEN = 1, WELL_PERIODIC = 2 };
typedef enum { WELL_LCHW = 0, WELL_CLHW = 1 } WellLayout;

// What to open. Arrays are borrowed for the duration of well_open only.
typedef struct {
    const char *root;                  // directory holding the physics directories
    const char *const *physics;        // physics directory names, in concatenation order
    int n_physics;
    const char *split;                 // "train", "valid" or "test"
    const char *const *include_filters;
    int n_include;
    const char *const *exclude_filters;
    int n_exclude;
    int check_finite;                  // 1: every read scans for NaN/Inf and dies naming where
    int force_serial;                  // 1: never use the MPI-IO driver
} WellSpec;

// One stored field dataset (a t0/t1/t2 entry), in channel order.
typedef struct {
    char name[WELL_NAME_LEN];
    int order;          // tensor order 0, 1, 2
    int ncomp;          // D^order components (interleaved last in the file)
    int sample_varying; // leading trajectory axis present
    int channel0;       // its first channel
} WellField;

// One channel of a sample.
typedef struct {
    char name[WELL_NAME_LEN + 8]; // e.g. "momentum_x", "T_xy"
    int field;                    // index into WellSplit.fields
    int k;                        // component index within the field (0 for t0; i*D+j for t2)
    int comp[2];                  // component axes (order 1: comp[0]; order 2: comp[0], comp[1])
} WellChannel;

// One file of the split. HDF5 ids are stored as int64_t (hid_t) to keep HDF5 out of this header.
typedef struct {
    char *path;
    int physics;                         // index of its physics directory in the spec
    int64_t n_traj;                      // n_trajectories
    int64_t n_steps;                     // T = len(dimensions/time)
    int bc[WELL_MAX_DIMS][2];            // boundary codes [dim][lo, hi]
    int scalars_per_traj;                // 1 if any constant scalar is sample-varying
    double *scalars;                     // [scalars_per_traj ? n_traj : 1][n_scalars]
    int64_t fid;                         // HDF5 file id
    int64_t *dset;                       // [n_fields] open dataset ids
    int64_t *space;                      // [n_fields] their file dataspaces
    int64_t field_shape[WELL_MAX_CHANNELS][8]; // stored shape of each field dataset
    int field_rank[WELL_MAX_CHANNELS];
} WellFile;

typedef struct {
    int n_files;
    WellFile *files;
    int n_physics;
    char **physics_names;                       // [n_physics]
    char **dataset_names;                       // [n_physics] root @dataset_name of each physics
    char grid_type[WELL_NAME_LEN];              // "cartesian" (geometric augmentations need it)
    int n_dims;                                 // spatial dims D
    int64_t shape[WELL_MAX_DIMS];               // spatial sizes (x, y[, z])
    char dim_names[WELL_MAX_DIMS][WELL_NAME_LEN];
    int64_t frame_size;                         // prod(shape): points per channel per frame
    int n_fields;
    WellField fields[WELL_MAX_CHANNELS];
    int n_channels;
    WellChannel channels[WELL_MAX_CHANNELS];
    int n_scalars;                              // constant scalars (label prefix)
    char scalar_names[WELL_MAX_SCALARS][WELL_NAME_LEN];
    int label_dim;                              // n_scalars + 2 * n_dims
    int check_finite;
    int mpio;                                   // 1 when files were opened with the MPI-IO driver
    char split[16];
} WellSplit;

// Opens, validates and indexes the split; dies with a message naming the file/group/attribute on
// any problem (no file found, schema error, truncated or unreadable file, inconsistent files).
// Collective under MPI-IO (see above).
void well_open(WellSplit *s, const WellSpec *spec);
// Closes every file (collective under MPI-IO) and frees the split.
void well_close(WellSplit *s);

// Process-wide lock serialising HDF5 calls (see header comment). Not recursive.
void well_h5_lock(void);
void well_h5_unlock(void);

// Window indexing for windows of L frames at time stride `stride`.
typedef struct {
    int L, stride;
    int64_t n_samples;   // Σ_f B_f * W_f
    int64_t *offset;     // [n_files + 1] first global index of each file, offset[n_files] = n_samples
    int64_t *per_traj;   // [n_files] W_f = T_f - (L-1)*stride
    int n_files_;
} WellWindows;

typedef struct {
    int file;
    int64_t traj, start;
} WellLoc;

// Windows per trajectory T - (L-1)*stride, floored at 0.
int64_t well_windows_per_traj(int64_t n_steps, int L, int stride);
// Builds the index; dies if L < 1, stride < 1, or a file's trajectories are shorter than the
// window ((L-1)*stride + 1 steps), naming the file and its step count.
void well_windows_init(WellWindows *w, const WellSplit *s, int L, int stride);
void well_windows_free(WellWindows *w);
// Global index -> (file, trajectory, start). Dies when idx is out of [0, n_samples).
WellLoc well_locate(const WellWindows *w, int64_t idx);
// (file, trajectory, start) -> global index.
int64_t well_global_index(const WellWindows *w, WellLoc loc);

// Floats per sample for L frames: L * n_channels * frame_size.
int64_t well_sample_floats(const WellSplit *s, int L);

struct AugPlan;
struct Preprocess;

// Reads L frames t = start, start+stride, ... of trajectory `traj` of file `file` into `out`
// (physical units, float32) in `layout`. With `plan` (augment.h, may be NULL) the augmentation is
// applied to every frame; with `pre` (transform.h, may be NULL) the per-channel transform and
// z-score follow it (LoLa order: augment in physical units, then field_preprocess).
// One HDF5 hyperslab read per field (count L, stride `stride` along time). Dies (naming file,
// trajectory, time and channel) on a read error, on an out-of-range window, and when
// check_finite is on and a value is NaN/Inf.
void well_read_window(WellSplit *s, int file, int64_t traj, int64_t start, int L, int stride,
                      const struct AugPlan *plan, const struct Preprocess *pre, WellLayout layout,
                      float *out);
// Same for the window with global index idx of w.
void well_read_sample(WellSplit *s, const WellWindows *w, int64_t idx, const struct AugPlan *plan,
                      const struct Preprocess *pre, WellLayout layout, float *out);
// Whole trajectory: T_file frames (stride 1), read in chunks of frames to bound the scratch
// memory. out holds T * C * frame_size floats.
void well_read_trajectory(WellSplit *s, int file, int64_t traj, const struct AugPlan *plan,
                          const struct Preprocess *pre, WellLayout layout, float *out);

// Constant scalars of (file, trajectory) in scalars@field_names order (float64, as stored).
const double *well_scalars(const WellSplit *s, int file, int64_t traj);
// Index of the channel named `name`, or -1.
int well_channel_index(const WellSplit *s, const char *name);
// Prints a summary (files, channels, BCs, scalars) with log_info.
void well_print(const WellSplit *s);
// 1 when reads may run on a thread other than the one that called MPI_Init: always without the
// MPI-IO driver; with it only when MPI provides MPI_THREAD_MULTIPLE.
int well_reads_thread_safe(const WellSplit *s);
// Releases this thread's read scratch buffer (the reader keeps one per thread).
void well_thread_scratch_free(void);

#ifdef __cplusplus
}
#endif
#endif
