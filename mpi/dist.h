// dist.h: ranks and collectives. One rank per GPU (or per CPU process on CPU builds).
//
// Built with -DLOLA_MPI (the Makefile defines it when `mpicc --showme` works) these functions
// call MPI; without it they are the single-process identities, and dist_init() refuses to start
// when the environment says the job was launched as several tasks (see dist_init), so a serial
// binary never silently runs N independent copies of one job.
//
// Errors: every MPI call goes through MPI_CHECK (dist.c), which decodes the error code with
// MPI_Error_string and ends the WHOLE job through lola_die -> MPI_Abort, so no rank is left
// waiting in a collective after another one died (llm.c lesson 5).
//
// Counts are element counts (size_t); messages larger than INT_MAX elements are split.
// All collectives must be called by every rank in the same order (MPI semantics).
#ifndef LOLA_DIST_H
#define LOLA_DIST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Starts MPI (MPI_Init_thread, MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP
// threads never do), sets lola_log_rank/lola_log_size (common.h), installs lola_abort_hook =
// MPI_Abort, computes the node-local rank. Safe to call once; argc/argv may be NULL.
// Dies (exit 1, clear message) when:
//   - built without MPI but launched as several tasks (OMPI_COMM_WORLD_SIZE, PMI_SIZE,
//     MV2_COMM_WORLD_SIZE > 1, or inside an srun step with SLURM_STEP_NUM_TASKS / SLURM_NTASKS > 1);
//   - built with MPI, MPI reports 1 rank, but the launcher started several tasks (srun without
//     PMI/PMIx support: every task would be its own 1-rank job).
void dist_init(int *argc, char ***argv);
// Finalizes MPI (after a barrier). Safe to call without dist_init and more than once.
void dist_finalize(void);

int dist_rank(void);       // 0..size-1 (0 before dist_init)
int dist_size(void);       // number of ranks (1 before dist_init / without MPI)
int dist_local_rank(void); // rank among the ranks sharing this node (MPI_COMM_TYPE_SHARED)
int dist_local_size(void); // ranks on this node
int dist_is_mpi(void);     // 1 when MPI is initialised and running (built with MPI)

// Ends the whole job with exit code `code` (MPI_Abort when MPI runs, exit otherwise).
void dist_abort(int code);

void dist_barrier(void);

// In-place sums over ranks of n elements (the result is identical on every rank).
void dist_allreduce_sum_float(float *buf, size_t n);
void dist_allreduce_sum_double(double *buf, size_t n);
void dist_allreduce_sum_int64(int64_t *buf, size_t n);
// Max / min of one int over ranks ("all ranks agree" decisions: e.g. min over "file ok").
int dist_allreduce_max_int(int v);
int dist_allreduce_min_int(int v);
// Logical OR / AND of a flag over ranks (any rank saw a NaN -> every rank skips the update).
int dist_any(int flag);
int dist_all(int flag);

// Broadcast `bytes` bytes from rank `root` to every rank (in place).
void dist_bcast(void *buf, size_t bytes, int root);
// Every rank contributes `bytes` bytes; recv (size * bytes) receives them in rank order.
void dist_allgather(const void *send, void *recv, size_t bytes);
// Every rank contributes one double / int64; out (size entries) receives them in rank order.
void dist_allgather_double(double v, double *out);
void dist_allgather_int64(int64_t v, int64_t *out);
// Every rank sends `bytes` bytes (0 allowed); root receives them in rank order into recv, rank r's
// at byte offset counts[0] + ... + counts[r-1]. counts (size entries, counts[r] = rank r's `bytes`)
// and recv are read on root only (NULL elsewhere). Dies when a total or offset exceeds INT_MAX
// (MPI_Gatherv counts are int) or when counts[root] != bytes on root.
void dist_gatherv(const void *send, size_t bytes, void *recv, const size_t *counts, int root);

// Nonblocking in-place sum (gradient buckets, src/gradsync.c). dist_iallreduce_sum_float starts
// the sum over ranks of n floats in buf and returns a handle; buf must be neither read nor written
// until dist_wait returns. Every rank must start the same requests in the same order (MPI rules:
// blocking collectives may be issued in between, in the same order everywhere). Returns NULL when
// there is nothing to communicate (1 rank, or a build without MPI), which dist_test / dist_wait
// accept. More than 2^30 elements are split into several MPI requests behind one handle.
typedef struct DistRequest DistRequest;
DistRequest *dist_iallreduce_sum_float(float *buf, size_t n);
// 1 when the request has completed (also drives MPI's progress engine: Open MPI moves
// nonblocking collectives forward only inside MPI calls). Does not free the handle.
int dist_test(DistRequest *r);
// Waits for completion and frees the handle. timeout_s > 0: polls (MPI_Testall, short sleeps)
// and returns -1 without freeing when the request is still incomplete after timeout_s seconds
// (the caller reports it and ends the job); timeout_s <= 0 waits without limit. Returns 0 when done.
int dist_wait(DistRequest *r, double timeout_s);

// Number of tasks the launcher says it started (environment variables above), 1 if none.
// `what` (may be NULL) receives the name of the variable that decided it.
int dist_launcher_size(const char **what);

#ifdef LOLA_MPI
// MPI_CHECK(MPI_Xxx(...)): on a non-success return code, prints file:line, the call, the code and
// its MPI_Error_string text, then aborts the whole job (MPI_Abort). Requires MPI_ERRORS_RETURN on
// the communicator (dist_init sets it on MPI_COMM_WORLD).
void dist_mpi_check_at(const char *file, int line, int err, const char *call);
#define MPI_CHECK(call) dist_mpi_check_at(__FILE__, __LINE__, (call), #call)
#endif

#ifdef __cplusplus
}
#endif
#endif
