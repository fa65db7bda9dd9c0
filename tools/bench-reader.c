// bench-reader: throughput of the Well reader beside the raw read throughput of the same bytes.
//
// Usage: bench-reader ROOT PHYS[,PHYS...] [--split train] [--samples N] [--seed S] [--no-cold]
//                     [--no-aug] [--no-transform] [--threads N]
//   --no-aug/--no-transform show what each stage costs; --threads: loader workers (default 2)
//
// For two workloads over a shuffled order of the split's samples:
//   AE       single frames (L = 1), as the autoencoder reads them;
//   window   5 frames at stride 4, as the pixel-space emulators read them;
// it measures, on the same sample list:
//   reader   source_read: hyperslab reads through HDF5 + augmentation (flip, permute when square,
//            roll) + transform (log1p on the first three channels when there are >= 5, as Euler)
//            + z-score, into (L, C, H, W) float32;
//   raw      plain pread() of exactly the bytes the reader needs (each field's contiguous frame
//            ranges, located with H5Dget_offset), no HDF5, no processing;
// once with the page cache dropped for the data files (posix_fadvise DONTNEED before each pass:
// "cold", both from the disk) and once with the files cached ("warm"), and prints samples/s and
// MB/s (MB = 10^6 bytes of float32 sample data) side by side with the ratio reader/raw.
// Needs contiguous (unchunked, unfiltered) datasets for the raw path, as every Well writer makes.
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "sampler.h"
#include "transform.h"
#include "well.h"

typedef struct {
    int fd;
    haddr_t *off; // per field: byte offset of the dataset data
} RawFile;

static void drop_cache(const WellSplit *s, RawFile *rf) {
    for (int f = 0; f < s->n_files; f++) {
        fdatasync(rf[f].fd);
        posix_fadvise(rf[f].fd, 0, 0, POSIX_FADV_DONTNEED);
    }
}

static void warm_cache(const WellSplit *s, RawFile *rf) {
    static char buf[1 << 20];
    for (int f = 0; f < s->n_files; f++) {
        off_t o = 0;
        ssize_t n;
        while ((n = pread(rf[f].fd, buf, sizeof(buf), o)) > 0) o += n;
    }
}

// raw pread of the bytes of sample idx into dst (fields one after another, as the reader's raw buffer)
static void raw_read(const WellSplit *s, RawFile *rf, const WellWindows *w, int64_t idx, char *dst) {
    WellLoc l = well_locate(w, idx);
    const WellFile *wf = &s->files[l.file];
    for (int f = 0; f < s->n_fields; f++) {
        const size_t frame = (size_t)s->frame_size * (size_t)s->fields[f].ncomp * sizeof(float);
        for (int t = 0; t < w->L; t++) {
            int64_t step = l.start + (int64_t)t * w->stride;
            off_t pos = (off_t)rf[l.file].off[f] + (off_t)((l.traj * wf->n_steps + step) * (int64_t)frame);
            size_t done = 0;
            while (done < frame) {
                ssize_t n = pread(rf[l.file].fd, dst + done, frame - done, pos + (off_t)done);
                if (n <= 0) lola_die("pread %s failed", wf->path);
                done += (size_t)n;
            }
            dst += frame;
        }
    }
}

typedef struct {
    double reader_s, raw_s, loader_s;
    int64_t loader_n;
} Timing;

static int g_threads = 2;

static Timing run(WellSplit *s, RawFile *rf, SampleSource *src, const int64_t *order, int64_t n, int cold) {
    Timing t;
    float *x = LOLA_NEW(float, src->sample_floats);
    float lab[64];
    char *raw = (char *)LOLA_NEW(float, src->sample_floats);
    if (cold) drop_cache(s, rf);
    else warm_cache(s, rf);
    double t0 = lola_time();
    for (int64_t i = 0; i < n; i++) raw_read(s, rf, &src->win, order[i], raw);
    t.raw_s = lola_time() - t0;
    if (cold) drop_cache(s, rf);
    t0 = lola_time();
    for (int64_t i = 0; i < n; i++) source_read(src, order[i], sampler_aug_seed(1, 0, i), x, lab, NULL);
    t.reader_s = lola_time() - t0;
    // the BatchLoader: reader thread (double buffering) + g_threads workers per batch
    if (cold) drop_cache(s, rf);
    LoaderConfig lc = {0};
    lc.src = src;
    lc.batch = 8;
    lc.rank = 0;
    lc.ranks = 1;
    lc.shuffle = 1;
    lc.seed = 3;
    lc.prefetch = 1;
    lc.threads = g_threads;
    BatchLoader *bl = loader_create(&lc);
    int64_t nb = n / lc.batch > 0 ? n / lc.batch : 1;
    t0 = lola_time();
    for (int64_t i = 0; i < nb; i++) loader_next(bl);
    t.loader_s = lola_time() - t0;
    t.loader_n = nb * lc.batch;
    loader_destroy(bl);
    free(x);
    free(raw);
    return t;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench-reader ROOT PHYS[,PHYS...] [--split train] [--samples N] [--seed S] [--no-cold] [--no-aug] [--no-transform] [--threads N]\n");
        return 2;
    }
    const char *split = "train";
    int64_t nsamp = 200;
    uint64_t seed = 1;
    int do_cold = 1, no_aug = 0, no_tf = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--split") && i + 1 < argc) split = argv[++i];
        else if (!strcmp(argv[i], "--samples") && i + 1 < argc) nsamp = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-cold")) do_cold = 0;
        else if (!strcmp(argv[i], "--no-aug")) no_aug = 1;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) g_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-transform")) no_tf = 1;
        else lola_die("bench-reader: unknown argument '%s'", argv[i]);
    }
    char phys_buf[1024];
    snprintf(phys_buf, sizeof(phys_buf), "%s", argv[2]);
    const char *phys[16];
    int np = 0;
    for (char *tok = strtok(phys_buf, ","); tok && np < 16; tok = strtok(NULL, ",")) phys[np++] = tok;
    WellSpec sp = {0};
    sp.root = argv[1];
    sp.physics = phys;
    sp.n_physics = np;
    sp.split = split;
    sp.force_serial = 1;
    WellSplit s;
    well_open(&s, &sp);
    well_print(&s);
    RawFile *rf = LOLA_NEW(RawFile, s.n_files);
    for (int f = 0; f < s.n_files; f++) {
        rf[f].fd = open(s.files[f].path, O_RDONLY);
        if (rf[f].fd < 0) lola_die("cannot open %s", s.files[f].path);
        rf[f].off = LOLA_NEW(haddr_t, s.n_fields);
        for (int k = 0; k < s.n_fields; k++) {
            rf[f].off[k] = H5Dget_offset((hid_t)s.files[f].dset[k]);
            if (rf[f].off[k] == HADDR_UNDEF) lola_die("%s: field %s is not contiguous (raw path needs it)", s.files[f].path, s.fields[k].name);
        }
    }
    // augmentations: flip, permute (square grids), roll; transform: log1p on channels 0..2 (Euler)
    const char *augn[3] = {"random_axis_flip", "random_axis_permute", "random_axis_roll"};
    int square = s.n_dims < 2 || s.shape[0] == s.shape[1];
    const char *augs[3] = {augn[0], square ? augn[1] : augn[2], augn[2]};
    AugmentList al;
    augment_list_init(&al, augs, no_aug ? 0 : square ? 3 : 2, "bench");
    int kinds[WELL_MAX_CHANNELS] = {0};
    float mean[WELL_MAX_CHANNELS], sd[WELL_MAX_CHANNELS];
    for (int c = 0; c < s.n_channels; c++) {
        kinds[c] = (s.n_channels >= 5 && c < 3) ? TF_LOG1P : TF_NONE;
        mean[c] = 0.5f;
        sd[c] = 0.25f;
    }
    Preprocess pre;
    preprocess_init(&pre, s.n_channels, kinds, mean, s.n_channels, sd, s.n_channels, "bench");
    struct {
        const char *name;
        int L, stride;
    } wl[2] = {{"AE (1 frame)", 1, 1}, {"window (5 frames, stride 4)", 5, 4}};
    printf("\n%-28s %-5s %9s %9s %6s | %9s %9s %6s | %9s %9s\n", "workload", "cache", "reader/s", "MB/s", "%raw", "loader/s", "MB/s", "%raw",
           "raw/s", "raw MB/s");
    for (int k = 0; k < 2; k++) {
        SampleSource src;
        source_init(&src, &s, wl[k].L, wl[k].stride, no_tf ? NULL : &pre, &al, WELL_LCHW);
        int64_t n = nsamp < src.win.n_samples ? nsamp : src.win.n_samples;
        int64_t *order = LOLA_NEW(int64_t, src.win.n_samples);
        sampler_order(order, src.win.n_samples, 1, seed, k);
        const double mb = (double)src.sample_floats * 4.0 / 1e6;
        for (int cold = do_cold; cold >= 0; cold--) {
            Timing t = run(&s, rf, &src, order, n, cold);
            double rs = n / t.reader_s, ws = n / t.raw_s, ls = t.loader_n / t.loader_s;
            printf("%-28s %-5s %9.1f %9.1f %5.0f%% | %9.1f %9.1f %5.0f%% | %9.1f %9.1f\n", wl[k].name, cold ? "cold" : "warm", rs, rs * mb,
                   100.0 * rs / ws, ls, ls * mb, 100.0 * ls / ws, ws, ws * mb);
            fflush(stdout);
        }
        free(order);
        source_free(&src);
    }
    printf("(%lld samples per pass, %.2f MB per AE sample. reader = source_read on one thread: HDF5 hyperslab + %s + %s;\n"
           " loader = BatchLoader, reader thread + %d workers, batches of 8; raw = pread of the same bytes, one thread)\n",
           (long long)nsamp, (double)s.n_channels * s.frame_size * 4 / 1e6, no_aug ? "no augmentation" : "flip/permute/roll",
           no_tf ? "no transform" : "log1p/z-score", g_threads);
    for (int f = 0; f < s.n_files; f++) {
        close(rf[f].fd);
        free(rf[f].off);
    }
    free(rf);
    well_close(&s);
    return 0;
}
