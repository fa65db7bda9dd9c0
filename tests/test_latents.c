// test_latents.c: latent cache files: write/read round trip, window indexing (T - (L-1)*stride
// windows per trajectory, file-major order), and refusal of incomplete, foreign and misshapen caches.
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "latents.h"
#include "test.h"

static char dir[256];

// Value of trajectory i, state t, channel c, point p: distinctive so indexing errors show.
static float val(int file, int64_t i, int64_t t, int c, int p) { return (float)(file * 100000 + i * 1000 + t * 10 + c) + 0.001f * p; }

static void write_file(const char *name, int file, int64_t n, int64_t T, int C, const char *ae_id, int complete) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int64_t sp[2] = {2, 3};
    LatentWriter w;
    latent_writer_open(&w, path, n, T, C, 2, sp, 5, ae_id, "src.hdf5", 1);
    float *state = LOLA_NEW(float, (size_t)T * C * 6), label[5];
    for (int64_t i = 0; i < n; i++) {
        for (int64_t t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < 6; p++) state[(t * C + c) * 6 + p] = val(file, i, t, c, p);
        for (int k = 0; k < 5; k++) label[k] = (float)(file * 10 + i + k);
        latent_writer_put(&w, i, state, label);
    }
    free(state);
    if (complete) latent_writer_close(&w);
    else {
        H5Dclose(w.dstate); H5Dclose(w.dlabel); H5Fclose(w.fid);
        char final[600];
        snprintf(final, sizeof final, "%s/%s", dir, name);
        rename(w.tmp_path, final); // simulate a file left without the completion mark
    }
}

static void open_dir(void *arg) {
    LatentSet s;
    const char *d = (const char *)arg;
    latent_open(&s, &d, 1, "ae-1");
}

static void open_short(void *arg) {
    LatentSet s;
    const char *d = (const char *)arg;
    latent_open(&s, &d, 1, NULL);
    latent_index(&s, 5, 4);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/lola_test_latents_%d", (int)getpid());
    lola_mkdirs(dir);
    write_file("a.h5", 0, 2, 20, 3, "ae-1", 1);
    write_file("b.h5", 1, 3, 18, 3, "ae-1", 1);
    LatentSet s;
    const char *dirs[1] = {dir};
    latent_open(&s, dirs, 1, "ae-1");
    CHECK(s.n_files == 2 && s.channels == 3 && s.spatial[0] == 2 && s.spatial[1] == 3 && s.label_dim == 5, "open: files, channels, grid, label size");
    int64_t n = latent_index(&s, 5, 4);
    // windows per trajectory: 20 - 16 = 4 (file a), 18 - 16 = 2 (file b) -> 2*4 + 3*2 = 14
    CHECK(n == 14, "window count 2*(20-16) + 3*(18-16) = 14 (got %lld)", (long long)n);
    float win[3 * 5 * 6], label[5];
    // global index 9 -> file b (offset 8), local 1 -> trajectory 0, start 1
    latent_read_window(&s, 9, win, label);
    int ok = 1;
    for (int c = 0; c < 3; c++)
        for (int l = 0; l < 5; l++)
            for (int p = 0; p < 6; p++) ok &= win[(c * 5 + l) * 6 + p] == val(1, 0, 1 + 4 * l, c, p);
    CHECK(ok, "window 9 = file b, trajectory 0, start 1, states 1,5,9,13,17 in (C, L, h, w) layout");
    CHECK(label[0] == 10.0f && label[4] == 14.0f, "label of file b trajectory 0");
    latent_read_window(&s, 7, win, label);
    ok = 1;
    for (int l = 0; l < 5; l++) ok &= win[l * 6] == val(0, 1, 3 + 4 * l, 0, 0);
    CHECK(ok, "window 7 = file a, trajectory 1, start 3");
    latent_close(&s);
    char path[512];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    CHECK(latent_file_valid(path, "ae-1") && !latent_file_valid(path, "ae-2"), "latent_file_valid checks completion and AE identity");

    CHECK_DIES(open_dir, "/nonexistent/cache/dir", "cannot be read", "missing cache directory is refused");
    write_file("c.h5", 2, 1, 20, 3, "ae-2", 1);
    CHECK_DIES(open_dir, dir, "made by another autoencoder", "a cache from another AE is refused");
    snprintf(path, sizeof path, "%s/c.h5", dir);
    unlink(path);
    write_file("c.h5", 2, 1, 20, 3, "ae-1", 0);
    CHECK_DIES(open_dir, dir, "incomplete", "a half-written cache file is refused");
    unlink(path);
    write_file("c.h5", 2, 1, 20, 4, "ae-1", 1);
    CHECK_DIES(open_dir, dir, "shape disagrees", "a latent file of the wrong shape is refused");
    unlink(path);
    write_file("c.h5", 2, 1, 10, 3, "ae-1", 1);
    CHECK_DIES(open_short, dir, "shorter than one window", "trajectories shorter than a window are refused");
    unlink(path);
    snprintf(path, sizeof path, "%s/d.h5", dir);
    FILE *fp = fopen(path, "w");
    fputs("not hdf5", fp);
    fclose(fp);
    CHECK_DIES(open_dir, dir, "not a readable HDF5", "a truncated/foreign file is refused");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("cleanup failed\n");
    return test_summary();
}
