// dist.c: see dist.h. Two builds of one file: with -DLOLA_MPI every function calls MPI; without
// it they are single-process identities (and dist_init refuses multi-task launches).
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#ifdef LOLA_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;
static int g_mpi_on = 0; // 1 between a successful MPI init and MPI_Finalize

// ---------------------------------------------------------------------------------------------
// What the launcher says: how many tasks were started (independent of MPI).

static int env_int(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s || !s[0]) return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > INT_MAX) return 0;
    *out = (int)v;
    return 1;
}

int dist_launcher_size(const char **what) {
    // Open MPI's mpirun, MPICH/Intel MPI hydra and Slurm's PMI/PMI2, MVAPICH2.
    static const char *direct[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        int v;
        if (env_int(direct[i], &v) && v > 1) {
            if (what) *what = direct[i];
            return v;
        }
    }
    // Slurm: SLURM_NTASKS is also exported to the batch script (where SLURM_PROCID=0 is set too),
    // and a serial program run there directly is fine. Only a task *inside an srun step* counts:
    // srun sets SLURM_STEP_ID (or SLURM_STEPID) and SLURM_STEP_NUM_TASKS besides SLURM_PROCID.
    // (Deliberate refinement of "SLURM_NTASKS > 1 with SLURM_PROCID set": the batch step has
    // SLURM_PROCID=0 and SLURM_NTASKS=N but is one process.)
    int procid;
    if (env_int("SLURM_PROCID", &procid) && (getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID"))) {
        int v;
        if (env_int("SLURM_STEP_NUM_TASKS", &v) && v > 1) {
            if (what) *what = "SLURM_STEP_NUM_TASKS";
            return v;
        }
        if (env_int("SLURM_NTASKS", &v) && v > 1) {
            if (what) *what = "SLURM_NTASKS";
            return v;
        }
    }
    if (what) *what = NULL;
    return 1;
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_local_rank(void) { return g_local_rank; }
int dist_local_size(void) { return g_local_size; }
int dist_is_mpi(void) { return g_mpi_on; }

#ifdef LOLA_MPI
// =============================================================================================
// MPI build

void dist_mpi_check_at(const char *file, int line, int err, const char *call) {
    if (err == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) len = snprintf(msg, sizeof msg, "unknown MPI error");
    msg[len < (int)sizeof msg ? len : (int)sizeof msg - 1] = '\0';
    lola_die_at(file, line, "MPI call %s failed (error %d): %s", call, err, msg);
}

static void mpi_abort_hook(int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

// The environment switches that change a backend's arithmetic or memory layout (cuda/README.md,
// README "GPU switches"). Ranks that disagree would average gradients of different computations,
// so dist_init refuses them.
static const char *const rank_switches[] = {"LOLA_PRECISION", "LOLA_TF32",  "LOLA_ACTIVATIONS",  "LOLA_GEMM",
                                            "LOLA_ATTENTION", "LOLA_CONV",  "LOLA_CONV_LAYOUT",  "LOLA_DETERMINISTIC",
                                            "LOLA_BF16_CACHE"};
#define N_RANK_SWITCHES ((int)(sizeof rank_switches / sizeof rank_switches[0]))
#define SWITCH_VALUE_MAX 64

// Dies (on every rank) when the switches above differ between ranks, naming the first variable,
// a rank and its value and rank 0's. A collective: every rank calls it from dist_init.
static void check_rank_switches(void) {
    char mine[N_RANK_SWITCHES][SWITCH_VALUE_MAX];
    uint64_t h = 1469598103934665603ull; // FNV-1a over "VAR=value\n" for every switch
    for (int i = 0; i < N_RANK_SWITCHES; i++) {
        const char *v = getenv(rank_switches[i]);
        snprintf(mine[i], SWITCH_VALUE_MAX, "%s", v ? v : "(unset)");
        char line[SWITCH_VALUE_MAX + 64];
        snprintf(line, sizeof line, "%s=%s\n", rank_switches[i], v ? v : "");
        for (const char *c = line; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    }
    uint64_t lo = h, hi = h;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
    if (lo == hi) return;
    char *all = (char *)lola_calloc((size_t)g_size * sizeof mine, 1);
    MPI_CHECK(MPI_Allgather(mine, (int)sizeof mine, MPI_CHAR, all, (int)sizeof mine, MPI_CHAR, MPI_COMM_WORLD));
    for (int r = 1; r < g_size; r++)
        for (int i = 0; i < N_RANK_SWITCHES; i++) {
            const char *v0 = all + (size_t)i * SWITCH_VALUE_MAX;
            const char *vr = all + (size_t)r * sizeof mine + (size_t)i * SWITCH_VALUE_MAX;
            if (strcmp(v0, vr))
                lola_die_hint("export the same LOLA_* switches to every rank (e.g. in the sbatch script, before srun)",
                              "environment variable %s differs between ranks: rank %d has '%s', rank 0 has '%s' (the "
                              "ranks would average gradients of different computations)",
                              rank_switches[i], r, vr, v0);
        }
    lola_die("the LOLA_* switches differ between ranks (hashes %llx / %llx), but no value differs in its first %d "
             "characters", (unsigned long long)lo, (unsigned long long)hi, SWITCH_VALUE_MAX - 1);
}

void dist_init(int *argc, char ***argv) {
    int init = 0;
    MPI_Initialized(&init);
    if (init) return;
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    g_mpi_on = 1;
    lola_abort_hook = mpi_abort_hook;
    // Errors come back as codes so MPI_CHECK can decode them and abort the whole job itself.
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_size));
    lola_log_rank = g_rank;
    lola_log_size = g_size;

    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node));
    MPI_CHECK(MPI_Comm_rank(node, &g_local_rank));
    MPI_CHECK(MPI_Comm_size(node, &g_local_size));
    MPI_CHECK(MPI_Comm_free(&node));

    if (provided < MPI_THREAD_FUNNELED)
        log_warn("MPI provides thread level %d < MPI_THREAD_FUNNELED; OpenMP regions never call MPI, "
                 "continuing", provided);

    const char *var = NULL;
    int launched = dist_launcher_size(&var);
    if (g_size == 1 && launched > 1)
        lola_die_hint("launch with `srun --mpi=pmix ...` (see `srun --mpi=list`) or `mpirun -np N ...`",
                      "MPI sees 1 rank but the launcher started %d tasks (%s=%d): the launcher and the MPI "
                      "library do not talk (srun without PMI/PMIx support?); every task would run the "
                      "whole job on its own", launched, var, launched);
    check_rank_switches();
}

void dist_finalize(void) {
    if (!g_mpi_on) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
    g_mpi_on = 0;
    lola_abort_hook = NULL;
}

void dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_mpi_on) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1);
}

void dist_barrier(void) {
    if (g_mpi_on) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

// Largest element count per MPI call (counts are int).
#define DIST_CHUNK ((size_t)1 << 30)

static void allreduce_chunked(void *buf, size_t n, size_t elem, MPI_Datatype type, MPI_Op op) {
    if (!g_mpi_on || g_size == 1) return;
    char *p = (char *)buf;
    for (size_t off = 0; off < n; off += DIST_CHUNK) {
        size_t k = n - off < DIST_CHUNK ? n - off : DIST_CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p + off * elem, (int)k, type, op, MPI_COMM_WORLD));
    }
}

void dist_allreduce_sum_float(float *buf, size_t n) { allreduce_chunked(buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM); }
void dist_allreduce_sum_double(double *buf, size_t n) { allreduce_chunked(buf, n, sizeof *buf, MPI_DOUBLE, MPI_SUM); }
void dist_allreduce_sum_int64(int64_t *buf, size_t n) { allreduce_chunked(buf, n, sizeof *buf, MPI_INT64_T, MPI_SUM); }

int dist_allreduce_max_int(int v) {
    allreduce_chunked(&v, 1, sizeof v, MPI_INT, MPI_MAX);
    return v;
}

int dist_allreduce_min_int(int v) {
    allreduce_chunked(&v, 1, sizeof v, MPI_INT, MPI_MIN);
    return v;
}

void dist_bcast(void *buf, size_t bytes, int root) {
    if (!g_mpi_on) {
        if (root != 0) lola_die("dist_bcast: root %d does not exist in a 1-rank run", root);
        return;
    }
    char *p = (char *)buf;
    size_t off = 0;
    do { // a zero-byte broadcast still validates the root on every rank
        size_t k = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        MPI_CHECK(MPI_Bcast(p + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
        off += k;
    } while (off < bytes);
}

void dist_allgather(const void *send, void *recv, size_t bytes) {
    if (!g_mpi_on || g_size == 1) {
        if (recv != send && bytes) memmove(recv, send, bytes);
        return;
    }
    if (bytes > (size_t)INT_MAX)
        lola_die("dist_allgather: %zu bytes per rank exceeds the MPI count limit (%d)", bytes, INT_MAX);
    MPI_CHECK(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD));
}

void dist_gatherv(const void *send, size_t bytes, void *recv, const size_t *counts, int root) {
    if (root < 0 || root >= g_size) lola_die("dist_gatherv: root %d outside [0, %d)", root, g_size);
    if (bytes > (size_t)INT_MAX) lola_die("dist_gatherv: %zu bytes from rank %d exceed the MPI count limit (%d)", bytes, g_rank, INT_MAX);
    if (g_rank == root && counts[root] != bytes)
        lola_die("dist_gatherv: root %d sends %zu bytes but counts[%d] = %zu", root, bytes, root, counts[root]);
    if (!g_mpi_on || g_size == 1) {
        if (recv != send && bytes) memmove(recv, send, bytes);
        return;
    }
    int *cnt = NULL, *disp = NULL;
    if (g_rank == root) {
        cnt = (int *)lola_calloc((size_t)g_size, sizeof(int));
        disp = (int *)lola_calloc((size_t)g_size, sizeof(int));
        size_t off = 0;
        for (int r = 0; r < g_size; r++) {
            if (counts[r] > (size_t)INT_MAX || off > (size_t)INT_MAX - counts[r])
                lola_die("dist_gatherv: %zu bytes gathered on rank %d exceed the MPI count limit (%d)", off + counts[r], root, INT_MAX);
            cnt[r] = (int)counts[r];
            disp[r] = (int)off;
            off += counts[r];
        }
    }
    MPI_CHECK(MPI_Gatherv(send, (int)bytes, MPI_BYTE, recv, cnt, disp, MPI_BYTE, root, MPI_COMM_WORLD));
    free(cnt);
    free(disp);
}

struct DistRequest {
    int n;            // MPI requests (chunks of at most DIST_CHUNK elements)
    MPI_Request req[]; // n entries
};

DistRequest *dist_iallreduce_sum_float(float *buf, size_t n) {
    if (!g_mpi_on || g_size == 1 || n == 0) return NULL;
    size_t chunks = (n + DIST_CHUNK - 1) / DIST_CHUNK;
    DistRequest *r = (DistRequest *)lola_calloc(1, sizeof(DistRequest) + chunks * sizeof(MPI_Request));
    r->n = (int)chunks;
    for (size_t c = 0; c < chunks; c++) {
        size_t off = c * DIST_CHUNK, k = n - off < DIST_CHUNK ? n - off : DIST_CHUNK;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r->req[c]));
    }
    return r;
}

int dist_test(DistRequest *r) {
    if (!r) return 1;
    int done = 0;
    MPI_CHECK(MPI_Testall(r->n, r->req, &done, MPI_STATUSES_IGNORE));
    return done;
}

int dist_wait(DistRequest *r, double timeout_s) {
    if (!r) return 0;
    if (timeout_s <= 0) {
        MPI_CHECK(MPI_Waitall(r->n, r->req, MPI_STATUSES_IGNORE));
    } else {
        // Poll so that a peer that never joins ends in a clear error instead of a hang. Spin
        // first (a bucket usually completes within microseconds of the last one), then sleep
        // 20 us between tests to leave the core to other ranks / threads.
        double t0 = lola_time();
        for (long spin = 0; !dist_test(r); spin++) {
            if (spin < 1000) continue;
            if (lola_time() - t0 > timeout_s) return -1;
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
    free(r);
    return 0;
}

#else
// =============================================================================================
// Serial build (no MPI): one process; collectives are identities.

void dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *var = NULL;
    int launched = dist_launcher_size(&var);
    if (launched > 1)
        lola_die_hint("rebuild with MPI (install Open MPI: `make deps`, or `module load openmpi`; "
                      "`make config` must show MPI ✓), or run a single task",
                      "this lola binary was built WITHOUT MPI but was launched as %d tasks (%s=%d); "
                      "refusing to start: every task would run the whole job on its own and they "
                      "would overwrite each other's checkpoints", launched, var, launched);
    g_rank = 0;
    g_size = 1;
    g_local_rank = 0;
    g_local_size = 1;
}

void dist_finalize(void) {}

void dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    exit(code ? code : 1);
}

void dist_barrier(void) {}
void dist_allreduce_sum_float(float *buf, size_t n) { (void)buf; (void)n; }
void dist_allreduce_sum_double(double *buf, size_t n) { (void)buf; (void)n; }
void dist_allreduce_sum_int64(int64_t *buf, size_t n) { (void)buf; (void)n; }
int dist_allreduce_max_int(int v) { return v; }
int dist_allreduce_min_int(int v) { return v; }

void dist_bcast(void *buf, size_t bytes, int root) {
    (void)buf;
    (void)bytes;
    if (root != 0) lola_die("dist_bcast: root %d does not exist in a 1-rank run", root);
}

void dist_allgather(const void *send, void *recv, size_t bytes) {
    if (recv != send && bytes) memmove(recv, send, bytes);
}

void dist_gatherv(const void *send, size_t bytes, void *recv, const size_t *counts, int root) {
    if (root != 0) lola_die("dist_gatherv: root %d does not exist in a 1-rank run", root);
    if (counts[0] != bytes) lola_die("dist_gatherv: root 0 sends %zu bytes but counts[0] = %zu", bytes, counts[0]);
    if (recv != send && bytes) memmove(recv, send, bytes);
}

DistRequest *dist_iallreduce_sum_float(float *buf, size_t n) {
    (void)buf;
    (void)n;
    return NULL;
}
int dist_test(DistRequest *r) { return r == NULL; }
int dist_wait(DistRequest *r, double timeout_s) {
    (void)timeout_s;
    if (r) lola_die("dist_wait: a request handle in a build without MPI (internal error)");
    return 0;
}
#endif

// ---------------------------------------------------------------------------------------------
// Built on the primitives above (both builds).

int dist_any(int flag) { return dist_allreduce_max_int(flag ? 1 : 0); }
int dist_all(int flag) { return dist_allreduce_min_int(flag ? 1 : 0); }

void dist_allgather_double(double v, double *out) { dist_allgather(&v, out, sizeof v); }
void dist_allgather_int64(int64_t v, int64_t *out) { dist_allgather(&v, out, sizeof v); }
