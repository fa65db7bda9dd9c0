// latents.h: the latent cache (lola-spec.md 1.5, DESIGN.md 6): one HDF5 file per input Well file,
// <run>/ae/cache/<physics>/<split>/<input file name> (same name as the Well file), readable by h5py, with
//   state  float32 (N_traj * repeat, T, C_lat, h, w[, z])   encoded trajectories (saturated latents)
//   label  float32 (N_traj * repeat, D_label)               θ after augmentation
//   @ae_id       identity of the autoencoder that made it (its checkpoint step and a parameter hash)
//   @complete    1, written last; a file without it (a job killed mid-write) is never used
//   @source      path of the input Well file, @repeat
// Files are written under "<name>.tmp" and renamed once complete, so a killed job leaves at most a
// .tmp file, which the next run removes and rebuilds.
//
// Windows (lola-spec.md 1.4, MiniWellDataset): L states at time stride s; per trajectory
// T - (L-1)*s windows; global order file-major, then trajectory, then start.
#ifndef LOLA_LATENTS_H
#define LOLA_LATENTS_H

#include <stdint.h>

#define LATENT_MAX_SPATIAL 3

typedef struct {
    char *path;
    int64_t n_traj, n_steps; // N * repeat, T
    int64_t fid, dstate, dlabel; // HDF5 ids (hid_t)
} LatentFile;

typedef struct {
    int n_files;
    LatentFile *files;
    int channels;                        // C_lat
    int n_spatial;                       // 2 or 3
    int64_t spatial[LATENT_MAX_SPATIAL]; // latent grid
    int64_t state_size;                  // C * prod(spatial): floats per state
    int label_dim;
    char ae_id[128];
    int window, stride;                  // window layout used by the index (set by latent_index)
    int64_t *offsets;                    // [n_files + 1] cumulative window counts
} LatentSet;

// Writer for one cache file.
typedef struct {
    char final_path[4096], tmp_path[4096];
    int64_t fid, dstate, dlabel;
    int64_t n_traj, n_steps, state_size;
    int label_dim;
} LatentWriter;

// Creates <final>.tmp with the datasets sized (n_traj, n_steps, C, spatial...) and (n_traj, label_dim).
void latent_writer_open(LatentWriter *w, const char *final_path, int64_t n_traj, int64_t n_steps, int channels,
                        int n_spatial, const int64_t *spatial, int label_dim, const char *ae_id,
                        const char *source, int repeat);
// Writes trajectory i: state (T, C, spatial...) and label (label_dim).
void latent_writer_put(LatentWriter *w, int64_t i, const float *state, const float *label);
// Marks the file complete, closes it, fsyncs and renames it to its final name.
void latent_writer_close(LatentWriter *w);

// 1 when path is a complete cache file made by the AE ae_id (ae_id NULL: any AE), else 0.
int latent_file_valid(const char *path, const char *ae_id);

// Opens every *.h5 / *.hdf5 cache file of the directories (each sorted bytewise, directories
// concatenated in order, like euler_all = openBC then periodicBC). Dies, naming the file and the problem, on:
// an empty or missing directory, an incomplete file, a file made by another AE (ae_id != NULL and
// different), wrong dataset ranks or shapes, label rows disagreeing with state rows, or files that
// disagree on channels/grid/label size.
void latent_open(LatentSet *s, const char *const *dirs, int n_dirs, const char *ae_id);
void latent_close(LatentSet *s);
// Builds the window index for windows of `window` states at time stride `stride`. Dies when a file's
// trajectories are shorter than one window. Returns the number of windows.
int64_t latent_index(LatentSet *s, int window, int stride);
// Reads window idx (0 <= idx < number of windows) into out (C, L, spatial...) and its label (may be
// NULL). Thread: call from one thread at a time (HDF5 is not thread-safe).
void latent_read_window(LatentSet *s, int64_t idx, float *out, float *label);

#endif
