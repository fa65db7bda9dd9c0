// well-euler: generates The Well's euler_multi_quadrants_{openBC,periodicBC} datasets with the real
// 2-D compressible Euler solver of src/euler.c, in The Well's HDF5 schema (src/wellwrite.c).
// Reference: /work/shared/reference/the-well-format.md §1 (schema), §1.5 (stats), §4.1 (generation),
// §6 (mini-well downsampling).
//
// Usage: well-euler --out ROOT [--resolution 64] [--trajectories 40] [--seed 1] [--bc open|periodic|both]
//          [--frames 101] [--t-max 1.5] [--gammas 1.13,1.4,...] [--internal-resolution M]
//          [--cfl 0.4] [--limiter minmod|mc] [--rho-range LO,HI] [--p-range LO,HI]
//          [--rho-spread S] [--p-spread S] [--u-max U]
//          [--quadrant-prob P] [--parallel auto|traj|rows]
//
// Trajectory counts and splits (our choice, the-well-format.md §1.1 splits each parameter file
// 0.8/0.1/0.1 by trajectory): --trajectories is the number of trajectories per BC family in total.
// Trajectory k (0-based) goes to gamma file k mod G (G = number of gammas), as its trajectory
// m = k div G. A gamma file with n trajectories is split by trajectory into valid = test =
// round(0.1 n), raised to 1 each when n >= 3 (so every split directory gets every gamma file), and
// train = the rest; n = 2 gives train 1 + test 1, n = 1 gives train 1. Trajectories m are assigned in
// order train, valid, test. Example: 40 per family, 10 gammas -> 4 per file -> 2/1/1 per file ->
// 20/10/10 per family; 500 per gamma file -> 400/50/50 as in The Well.
// A split that gets no trajectory of some gamma file has no file for that gamma (warned).
//
// Determinism: trajectory (bc, gamma, m) starts from rng_child(seed, euler_traj_tag(bc, gamma
// index in The Well's table, m)), so the bytes depend neither on the rank/thread counts nor on
// --trajectories (a larger set extends a smaller one; only the split boundaries move).
//
// Output: ROOT/euler_multi_quadrants_<bc>BC/data/{train,valid,test}/
//   euler_multi_quadrants_<bc>BC_gamma_<γ>_<gas>.hdf5, and ROOT/<dataset>/stats.yaml over the train
// split. Coordinates: cell centres of the internal grid, strided like the mini well's x[::f]
// (x_i = (f i + 1/2)/M); time t_k = k t_max/(frames-1).
//
// MPI: under mpirun the trajectories are spread round-robin over the ranks (global job order:
// family, split, gamma file, trajectory); every rank computes its own and sends them to rank 0,
// which writes every file (serial HDF5) and the stats. Use OMP_NUM_THREADS so ranks x threads
// matches the cores.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "euler.h"
#include "wellwrite.h"

#ifdef LOLA_MPI
#include <mpi.h>
#endif

static const char *SPLITS[3] = {"train", "valid", "test"};
static const char *BC_NAMES[2] = {"open", "periodic"};

typedef struct {
    const char *out;
    int resolution, internal, frames, n_traj, n_gammas, bc_mask;
    uint64_t seed;
    double t_max, cfl;
    int gamma_idx[EULER_N_GAMMAS]; // indices into The Well's table
    EulerLimiter limiter;
    EulerICParams ic;
    int par_mode; // 0 auto, 1 trajectories, 2 rows
} Args;

static void usage(void) {
    printf("usage: well-euler --out ROOT [--resolution 64] [--trajectories 40] [--seed 1] [--bc open|periodic|both]\n"
           "                  [--frames 101] [--t-max 1.5] [--gammas 1.13,1.4,...] [--internal-resolution M]\n"
           "                  [--cfl 0.4] [--limiter minmod|mc] [--rho-range LO,HI] [--p-range LO,HI]\n"
           "                  [--rho-spread S] [--p-spread S] [--u-max U]\n"
           "                  [--quadrant-prob P] [--parallel auto|traj|rows]\n"
           "--trajectories: per BC family in total, round-robin over the gamma files, each file split\n"
           "  80/10/10 by trajectory with >= 1 valid and test trajectory when it has >= 3.\n"
           "--internal-resolution M: solve at M x M (a multiple of --resolution) and downsample like the\n"
           "  mini well (Gaussian sigma=(f-1)/2, nearest edge, stride f). Default: M = resolution.\n"
           "--parallel: OpenMP threads run whole trajectories (traj; the default while threads x one\n"
           "  trajectory's output fit in 1 GiB) or split the rows of one trajectory (rows). The output\n"
           "  bytes are the same either way.\n");
}

static long parse_int(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        lola_die("%s: '%s' is not an integer in [%ld, %ld]", opt, v, lo, hi);
    return x;
}
static double parse_double(const char *opt, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) lola_die("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    return x;
}
static void parse_pair(const char *opt, const char *v, double *a, double *b) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    char *c = strchr(buf, ',');
    if (!c) lola_die("%s: '%s' must be LO,HI", opt, v);
    *c = 0;
    *a = parse_double(opt, buf, 1e-9, 1e9);
    *b = parse_double(opt, c + 1, 1e-9, 1e9);
    if (!(*b >= *a)) lola_die("%s: '%s' needs LO <= HI", opt, v);
}

static Args parse_args(int argc, char **argv) {
    Args a;
    memset(&a, 0, sizeof a);
    a.resolution = 64;
    a.frames = 101;
    a.n_traj = 40;
    a.seed = 1;
    a.bc_mask = 3;
    a.t_max = 1.5;
    a.cfl = 0.4;
    a.limiter = EULER_LIMITER_MINMOD;
    a.ic = euler_ic_default();
    a.n_gammas = EULER_N_GAMMAS;
    for (int i = 0; i < EULER_N_GAMMAS; i++) a.gamma_idx[i] = i;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage();
            exit(0);
        }
        if (i + 1 >= argc) lola_die_hint("run well-euler --help", "option %s needs a value", o);
        const char *v = argv[++i];
        if (!strcmp(o, "--out")) a.out = v;
        else if (!strcmp(o, "--resolution")) a.resolution = (int)parse_int(o, v, 2, 1 << 14);
        else if (!strcmp(o, "--internal-resolution")) a.internal = (int)parse_int(o, v, 2, 1 << 15);
        else if (!strcmp(o, "--trajectories")) a.n_traj = (int)parse_int(o, v, 1, 1 << 24);
        else if (!strcmp(o, "--seed")) a.seed = (uint64_t)parse_int(o, v, 0, (long)(~0UL >> 1));
        else if (!strcmp(o, "--frames")) a.frames = (int)parse_int(o, v, 2, 100000);
        else if (!strcmp(o, "--t-max")) a.t_max = parse_double(o, v, 1e-9, 1e6);
        else if (!strcmp(o, "--cfl")) a.cfl = parse_double(o, v, 1e-6, 1.0);
        else if (!strcmp(o, "--u-max")) a.ic.u_max = parse_double(o, v, 0.0, 100.0);
        else if (!strcmp(o, "--quadrant-prob")) a.ic.p_quadrants = parse_double(o, v, 0.0, 1.0);
        else if (!strcmp(o, "--rho-range")) parse_pair(o, v, &a.ic.rho_lo, &a.ic.rho_hi);
        else if (!strcmp(o, "--p-range")) parse_pair(o, v, &a.ic.p_lo, &a.ic.p_hi);
        else if (!strcmp(o, "--rho-spread")) a.ic.rho_spread = parse_double(o, v, 0.0, 10.0);
        else if (!strcmp(o, "--p-spread")) a.ic.p_spread = parse_double(o, v, 0.0, 10.0);
        else if (!strcmp(o, "--parallel")) {
            if (!strcmp(v, "auto")) a.par_mode = 0;
            else if (!strcmp(v, "traj")) a.par_mode = 1;
            else if (!strcmp(v, "rows")) a.par_mode = 2;
            else lola_die("--parallel: '%s' (use auto, traj or rows)", v);
        } else if (!strcmp(o, "--limiter")) {
            if (!strcmp(v, "minmod")) a.limiter = EULER_LIMITER_MINMOD;
            else if (!strcmp(v, "mc")) a.limiter = EULER_LIMITER_MC;
            else lola_die("--limiter: '%s' (use minmod or mc)", v);
        } else if (!strcmp(o, "--bc")) {
            if (!strcmp(v, "open")) a.bc_mask = 1;
            else if (!strcmp(v, "periodic")) a.bc_mask = 2;
            else if (!strcmp(v, "both")) a.bc_mask = 3;
            else lola_die("--bc: '%s' (use open, periodic or both)", v);
        } else if (!strcmp(o, "--gammas")) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            a.n_gammas = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                double g = parse_double(o, tok, 1.0, 10.0);
                int gi = euler_gamma_index(g);
                if (gi < 0)
                    lola_die_hint("The Well's gammas: 1.13,1.22,1.3,1.33,1.365,1.4,1.404,1.453,1.597,1.76",
                                  "--gammas: %s is not one of The Well's ten gamma values", tok);
                for (int k = 0; k < a.n_gammas; k++)
                    if (a.gamma_idx[k] == gi) lola_die("--gammas: %s listed twice", tok);
                a.gamma_idx[a.n_gammas++] = gi;
            }
            if (a.n_gammas == 0) lola_die("--gammas: empty list");
        } else {
            lola_die_hint("run well-euler --help", "unknown option %s", o);
        }
    }
    if (!a.out) lola_die_hint("run well-euler --help", "--out ROOT is required");
    if (a.internal == 0) a.internal = a.resolution;
    if (a.internal % a.resolution != 0 || a.internal < a.resolution)
        lola_die("--internal-resolution %d must be a multiple of --resolution %d", a.internal, a.resolution);
    if (a.internal / a.resolution > 25) lola_die("--internal-resolution: factor %d too large (max 25)", a.internal / a.resolution);
    return a;
}

// Split sizes of a gamma file holding n trajectories (see the header comment).
static void split_counts(int n, int cnt[3]) {
    int v = (int)floor(0.1 * n + 0.5), t = v;
    if (n >= 3) {
        if (v < 1) v = 1;
        if (t < 1) t = 1;
    } else {
        v = 0;
        t = n == 2 ? 1 : 0;
    }
    cnt[0] = n - v - t;
    cnt[1] = v;
    cnt[2] = t;
}

// One output file: family bc, gamma file g (position in the --gammas list), split s, trajectories
// m0 .. m0+n-1 of that gamma file; job0 = global job index of its first trajectory.
typedef struct {
    int bc, g, split, m0, n;
    int64_t job0;
} FileJob;

static void dataset_name(int bc, char *buf, size_t n) {
    snprintf(buf, n, "euler_multi_quadrants_%sBC", BC_NAMES[bc]);
}

// Trajectory buffer: energy | density | pressure (frames*n*n each) | momentum (frames*n*n*2).
typedef struct {
    float *buf;
    size_t nf; // frames*n*n
    EulerTrajInfo info;
} Traj;

static void compute_traj(const Args *a, const FileJob *fj, int b, Traj *t) {
    EulerTrajSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.n = a->resolution;
    sp.factor = a->internal / a->resolution;
    sp.frames = a->frames;
    sp.t_max = a->t_max;
    int gi = a->gamma_idx[fj->g];
    sp.gamma = euler_gamma_values[gi];
    sp.bc = fj->bc ? EULER_BC_PERIODIC : EULER_BC_OPEN;
    sp.limiter = a->limiter;
    sp.cfl = a->cfl;
    sp.ic = a->ic;
    uint64_t tag = euler_traj_tag(fj->bc, gi, fj->m0 + b);
    float *p = t->buf;
    euler_run_trajectory(&sp, a->seed, tag, p, p + t->nf, p + 2 * t->nf, p + 3 * t->nf, &t->info);
}

// Computes jobs[0..nb) into slots[0..nb): concurrently (one thread per trajectory) or one by one.
static void compute_batch(const Args *a, const FileJob *files, int n_files, const int64_t *jobs, int nb, Traj *slots,
                          int par_traj) {
#pragma omp parallel for schedule(dynamic, 1) if (par_traj && nb > 1)
    for (int k = 0; k < nb; k++) {
        int fi = 0;
        while (fi + 1 < n_files && files[fi + 1].job0 <= jobs[k]) fi++;
        compute_traj(a, &files[fi], (int)(jobs[k] - files[fi].job0), &slots[k]);
    }
}

#ifdef LOLA_MPI
static void check_count(size_t n) {
    if (n > 2147483647UL) lola_die("trajectory message of %zu floats exceeds MPI's int count", n);
}
#endif

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    Args a = parse_args(argc, argv);
    const int rank = dist_rank(), P = dist_size();
    const int N = a.resolution, T = a.frames, f = a.internal / a.resolution;
    const size_t nf = (size_t)T * N * N, msg = 5 * nf;

    // ---- plan: files and global job order -------------------------------------------------------
    FileJob *files = LOLA_NEW(FileJob, 2 * 3 * EULER_N_GAMMAS);
    int n_files = 0;
    int64_t n_jobs = 0;
    for (int bc = 0; bc < 2; bc++) {
        if (!(a.bc_mask & (1 << bc))) continue;
        for (int s = 0; s < 3; s++)
            for (int g = 0; g < a.n_gammas; g++) {
                int n_g = a.n_traj / a.n_gammas + (g < a.n_traj % a.n_gammas ? 1 : 0);
                int cnt[3];
                split_counts(n_g, cnt);
                if (cnt[s] == 0) {
                    if (n_g > 0 || s == 0)
                        log_warn("%s: no %s trajectory for gamma %s (%d in that gamma file); no file written", "well-euler",
                                 SPLITS[s], euler_gamma_strings[a.gamma_idx[g]], n_g);
                    continue;
                }
                FileJob *fj = &files[n_files++];
                fj->bc = bc;
                fj->g = g;
                fj->split = s;
                fj->m0 = s == 0 ? 0 : (s == 1 ? cnt[0] : cnt[0] + cnt[1]);
                fj->n = cnt[s];
                fj->job0 = n_jobs;
                n_jobs += cnt[s];
            }
    }
    log_info("well-euler: %d x %d (internal %d, factor %d), %d frames to t=%g, %d trajectories per BC family over %d "
             "gamma files, seed %llu, limiter %s, CFL %g, %d rank(s) x %d thread(s)",
             N, N, a.internal, f, T, a.t_max, a.n_traj, a.n_gammas, (unsigned long long)a.seed,
             a.limiter == EULER_LIMITER_MC ? "mc" : "minmod", a.cfl, P, omp_get_max_threads());
    log_info("well-euler: IC sampler: quadrants p=%g, rho level log-uniform [%g, %g] x exp(+-%g), p level [%g, %g] x "
             "exp(+-%g), |u|,|v| <= %g",
             a.ic.p_quadrants, a.ic.rho_lo, a.ic.rho_hi, a.ic.rho_spread, a.ic.p_lo, a.ic.p_hi, a.ic.p_spread, a.ic.u_max);

    // coordinates and time (identical in every file)
    float *coord = LOLA_NEW(float, N), *time = LOLA_NEW(float, T);
    for (int i = 0; i < N; i++) coord[i] = (float)(((double)f * i + 0.5) / (double)a.internal);
    for (int k = 0; k < T; k++) time[k] = (float)(a.t_max * (double)k / (double)(T - 1));

    // parallel mode: several trajectories at once (one thread each) on small grids, OpenMP over rows
    // of one trajectory on large grids. Either way the bytes are the same.
    // auto: whole trajectories per thread whenever their output buffers (threads x 5 x frames x N²
    // floats) fit in 1 GiB, since per-loop OpenMP barriers on one grid scale poorly (and very badly
    // on a loaded machine); otherwise rows.
    const int nthreads = omp_get_max_threads();
    int par_traj = a.par_mode == 1 || (a.par_mode == 0 && (double)nthreads * (double)msg * sizeof(float) <= 1073741824.0);
    const int K = par_traj ? omp_get_max_threads() : 1;
    if (par_traj) omp_set_max_active_levels(1);
    if (a.par_mode == 2) euler_set_omp_min_cells(0); // rows requested: split every grid
    Traj *slots = LOLA_NEW(Traj, K);
    int64_t *slot_job = LOLA_NEW(int64_t, K);
    for (int k = 0; k < K; k++) {
        slots[k].buf = LOLA_NEW(float, msg);
        slots[k].nf = nf;
        slot_job[k] = -1;
    }
    int64_t *batch = LOLA_NEW(int64_t, K);
    log_info("well-euler: %s", par_traj ? "parallel over trajectories (one thread each)" : "parallel over grid rows");
    double t_start = lola_time();
    int64_t tot_steps = 0, tot_floor = 0, tot_hll = 0;

    if (rank == 0) {
        Traj recv;
        recv.buf = LOLA_NEW(float, msg);
        recv.nf = nf;
        // directories
        char path[4096], name[128];
        for (int bc = 0; bc < 2; bc++) {
            if (!(a.bc_mask & (1 << bc))) continue;
            dataset_name(bc, name, sizeof name);
            for (int s = 0; s < 3; s++) {
                snprintf(path, sizeof path, "%s/%s/data/%s", a.out, name, SPLITS[s]);
                lola_mkdirs(path);
            }
        }
        WellwStats st;
        int stats_bc = -1;
        for (int fi = 0; fi < n_files; fi++) {
            const FileJob *fj = &files[fi];
            const int gi = a.gamma_idx[fj->g];
            dataset_name(fj->bc, name, sizeof name);
            WellwSpec sp;
            memset(&sp, 0, sizeof sp);
            sp.dataset_name = name;
            sp.n_dims = 2;
            sp.dim_names[0] = "x";
            sp.dim_names[1] = "y";
            sp.dim_sizes[0] = sp.dim_sizes[1] = N;
            sp.coords[0] = sp.coords[1] = coord;
            sp.n_time = T;
            sp.time = time;
            sp.n_traj = fj->n;
            sp.n_params = 1;
            sp.param_names[0] = "gamma";
            sp.param_values[0] = euler_gamma_values[gi];
            sp.n_bcs = 2;
            sp.bcs[0] = (WellwBC){fj->bc ? "x_periodic" : "x_open", fj->bc ? "PERIODIC" : "OPEN", 0};
            sp.bcs[1] = (WellwBC){fj->bc ? "y_periodic" : "y_open", fj->bc ? "PERIODIC" : "OPEN", 1};
            sp.n_t0 = 3;
            sp.t0_names[0] = "energy";
            sp.t0_names[1] = "density";
            sp.t0_names[2] = "pressure";
            sp.n_t1 = 1;
            sp.t1_names[0] = "momentum";
            if (fj->split == 0 && stats_bc != fj->bc) {
                wellw_stats_init(&st, &sp);
                stats_bc = fj->bc;
            }
            snprintf(path, sizeof path, "%s/%s/data/%s/%s_gamma_%s_%s.hdf5", a.out, name, SPLITS[fj->split], name,
                     euler_gamma_strings[gi], euler_gas_names[gi]);
            WellwFile w;
            wellw_create(&w, path, &sp);
            if (fj->split == 0) wellw_stats_begin_file(&st);
            double tf = lola_time();
            int64_t fsteps = 0;
            for (int b = 0; b < fj->n; b++) {
                const int64_t job = fj->job0 + b;
                const int owner = (int)(job % P);
                Traj *t = NULL;
                if (owner == 0) {
                    for (int k = 0; k < K; k++)
                        if (slot_job[k] == job) t = &slots[k];
                    if (!t) { // compute the next batch of this rank's own jobs, starting at `job`
                        int nb = 0;
                        for (int64_t j = job; j < n_jobs && nb < K; j += P) batch[nb++] = j;
                        compute_batch(&a, files, n_files, batch, nb, slots, par_traj);
                        for (int k = 0; k < K; k++) slot_job[k] = k < nb ? batch[k] : -1;
                        t = &slots[0];
                    }
                } else {
#ifdef LOLA_MPI
                    double info[4];
                    t = &recv;
                    MPI_CHECK(MPI_Recv(t->buf, (int)msg, MPI_FLOAT, owner, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
                    MPI_CHECK(MPI_Recv(info, 4, MPI_DOUBLE, owner, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
                    t->info.steps = (int64_t)info[0];
                    t->info.n_floor = (int64_t)info[1];
                    t->info.n_hll = (int64_t)info[2];
                    t->info.seconds = info[3];
#else
                    lola_die("internal: job owner %d without MPI", owner);
#endif
                }
                const float *t0[3] = {t->buf, t->buf + nf, t->buf + 2 * nf};
                const float *t1[1] = {t->buf + 3 * nf};
                wellw_put_traj(&w, b, t0, t1);
                if (fj->split == 0) wellw_stats_add_traj(&st, T, (size_t)N * N, t0, t1);
                fsteps += t->info.steps;
                tot_steps += t->info.steps;
                tot_floor += t->info.n_floor;
                tot_hll += t->info.n_hll;
            }
            wellw_close(&w);
            if (fj->split == 0) wellw_stats_end_file(&st);
            log_info("  %-5s %s: %d traj (m %d..%d), %lld steps, %.1f s", SPLITS[fj->split], strrchr(path, '/') + 1, fj->n,
                     fj->m0, fj->m0 + fj->n - 1, (long long)fsteps, lola_time() - tf);
            // stats when this family's last train file is done
            int last_train = fj->split == 0 && (fi + 1 == n_files || files[fi + 1].split != 0 || files[fi + 1].bc != fj->bc);
            if (last_train) {
                snprintf(path, sizeof path, "%s/%s/stats.yaml", a.out, name);
                wellw_stats_write_yaml(&st, path);
                double v[6][8];
                wellw_stats_result(&st, v[0], v[1], v[2], v[3], v[4], v[5]);
                static const char *comp[5] = {"energy", "density", "pressure", "momentum_x", "momentum_y"};
                log_info("  %s train moments (%d files):", name, st.n_files);
                for (int c = 0; c < 5; c++)
                    log_info("    %-10s mean %+.4E std %.4E rms %.4E | delta mean %+.4E std %.4E", comp[c], v[0][c], v[1][c],
                             v[2][c], v[3][c], v[4][c]);
                wellw_stats_free(&st);
                stats_bc = -1;
            }
        }
        free(recv.buf);
    } else {
#ifdef LOLA_MPI
        // worker: compute own jobs (job % P == rank) in batches, send each to rank 0 in job order
        check_count(msg);
        int64_t j = rank;
        while (j < n_jobs) {
            int nb = 0;
            for (; j < n_jobs && nb < K; j += P) batch[nb++] = j;
            compute_batch(&a, files, n_files, batch, nb, slots, par_traj);
            for (int k = 0; k < nb; k++) {
                Traj *t = &slots[k];
                tot_steps += t->info.steps;
                tot_floor += t->info.n_floor;
                tot_hll += t->info.n_hll;
                double info[4] = {(double)t->info.steps, (double)t->info.n_floor, (double)t->info.n_hll, t->info.seconds};
                MPI_CHECK(MPI_Send(t->buf, (int)msg, MPI_FLOAT, 0, 1, MPI_COMM_WORLD));
                MPI_CHECK(MPI_Send(info, 4, MPI_DOUBLE, 0, 2, MPI_COMM_WORLD));
            }
        }
#endif
    }
    int64_t sums[3] = {tot_steps, tot_floor, tot_hll};
    dist_allreduce_sum_int64(sums, 3);
    log_info("well-euler: %lld trajectories in %d files, %lld RK steps, %lld floor activations, %lld HLL fallbacks, "
             "%.1f s",
             (long long)n_jobs, n_files, (long long)sums[0], (long long)sums[1], (long long)sums[2], lola_time() - t_start);
    for (int k = 0; k < K; k++) free(slots[k].buf);
    free(slots);
    free(slot_job);
    free(batch);
    free(files);
    free(coord);
    free(time);
    dist_finalize();
    return 0;
}
