// gradsync.h: gradient averaging over ranks, bucketed and overlapped with the backward pass
// (DESIGN.md 5; llm.c lesson 9, per-block overlap on a second stream).
//
// The parameter gradients are ONE contiguous buffer (params.h, ParamTable order). It is cut into
// fixed buckets of `bucket` elements from offset 0: bucket k = [k*bucket, min((k+1)*bucket, n)).
// During the backward pass of the LAST micro-batch of an optimizer step (gradients of earlier
// micro-batches are not final) the models announce which gradient ranges are final:
//
//     train loop:   gradsync_arm(gs)                 before the last micro-batch's train_batch
//     model:        gradsync_ready(grads, lo, hi)     grads[lo, hi) will not be written again
//     train loop:   gradsync_finish(gs)               after it: grads = mean over ranks
//
// As soon as every element of a bucket has been announced, the bucket's average is started
// asynchronously; gradsync_finish starts the remaining buckets and waits for all of them.
// Announcements are RANGES, not "from X to the end", and may come in any order: the emulators'
// time/label embeddings sit after the ViT in the table but are final only after the ViT's
// backward (they consume dmod of every block), so a suffix-only hook would never overlap
// anything for the diffusion model. Each element may be announced at most once per step.
//
// Transports (chosen once at gradsync_create):
//   * 1 rank: no communication at all (the bookkeeping and misuse checks still run).
//   * CPU backend with MPI: MPI_Iallreduce (sum, in place) per bucket, then x (1/R) per bucket.
//   * CUDA backend with NCCL: ncclAllReduce(ncclFloat, ncclAvg, in place) per bucket on a second
//     (non-blocking, high-priority) CUDA stream that first waits for an event recorded on the
//     compute stream; finish makes the compute stream wait for the communication stream and polls
//     for completion with a timeout (cuda/nccl.cu).
//   * CUDA backend without NCCL: at finish, the whole buffer is staged through the host and summed
//     with MPI_Allreduce, then scaled (no overlap).
// Per element the arithmetic is the old full-buffer average's: a sum over ranks then x (1/R)
// (MPI), or NCCL's average; bucketing changes which elements travel together, never how one
// element is reduced. Every rank must make the same calls in the same order (the models'
// announcements are deterministic functions of the parameter table, so they are).
//
// Errors: misuse (arm twice, finish without arm, a range outside the buffer, an element announced
// twice, two armed instances) dies with a message naming the call and the ranges. A collective
// that does not complete within `timeout_s` seconds, or an NCCL error, ends the whole job
// (ncclCommAbort on CUDA, then MPI_Abort through lola_die) with the bucket and the elapsed time.
#ifndef LOLA_GRADSYNC_H
#define LOLA_GRADSYNC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRADSYNC_DEFAULT_BUCKET ((size_t)1 << 24) // elements (64 MiB of fp32)
#define GRADSYNC_DEFAULT_TIMEOUT 600.0            // seconds

enum {
    GRADSYNC_FORCE = 1,  // use the transport even with 1 rank (tests: exercises MPI / NCCL paths)
    GRADSYNC_VERIFY = 2, // tests: no communication; every announced range is copied to the host
                         // and compared with the buffer at finish (a model that writes a gradient
                         // after announcing it final shows up as mismatches, see GradSyncStats)
};

typedef struct GradSync GradSync;

// Collective (every rank calls it, same n): grads is the backend gradient buffer of n floats.
// bucket >= 1 elements (0 = GRADSYNC_DEFAULT_BUCKET), timeout_s > 0 (<= 0 = default). On CUDA
// builds with NCCL and several ranks this creates the NCCL communicator (bootstrapped over MPI).
GradSync *gradsync_create(float *grads, size_t n, size_t bucket, double timeout_s);
GradSync *gradsync_create_ex(float *grads, size_t n, size_t bucket, double timeout_s, int flags);
// Collective; destroys the communicator. Dies when called while armed.
void gradsync_destroy(GradSync *gs);

// Before the last micro-batch's backward of a step. Dies if already armed or if another instance
// is armed.
void gradsync_arm(GradSync *gs);
// The model hook: gradients grads[lo, hi) (element offsets into the parameter buffer whose base is
// `grads`) will not be written again in this backward. A no-op when no instance is armed or the
// armed instance reduces another buffer (e.g. a model's backward outside training). lo == hi is a
// no-op. Dies on lo > hi, hi > n, or an element announced twice since gradsync_arm.
void gradsync_ready(const float *grads, size_t lo, size_t hi);
// Starts the buckets not started yet, waits for all, leaves the mean over ranks in the buffer (on
// the compute stream's timeline) and disarms. Dies when not armed.
void gradsync_finish(GradSync *gs);

typedef struct {
    size_t n, bucket;
    int buckets;         // number of buckets
    int ranks;
    const char *transport; // "none", "mpi", "nccl", "host-staged", "verify"
    // of the last finished (or the current) step:
    int early;           // buckets started by gradsync_ready, before gradsync_finish
    int launched;        // buckets started in total
    size_t announced;    // elements announced final by gradsync_ready
    size_t mismatches;   // VERIFY: announced elements that changed after their announcement
    size_t first_mismatch; // VERIFY: offset of the first such element (valid if mismatches > 0)
} GradSyncStats;
void gradsync_stats(const GradSync *gs, GradSyncStats *out);
// 1 when bucket k has been started in the current (armed) step. For tests.
int gradsync_bucket_started(const GradSync *gs, int k);

// ---- Device transport: implemented by cuda/nccl.cu (CUDA builds with LOLA_HAVE_NCCL only) -----
// One communicator over all ranks, one device per rank (the backend's, chosen by
// nn_init(dist_local_rank())). Ops are ordered on the backend's compute stream as described above.
void lola_nccl_init(double timeout_s);
void lola_nccl_destroy(double timeout_s);
// Starts the in-place average of buf[0, count) (device memory) as bucket `bucket` starting at
// element `offset` of the gradient buffer (both for messages only).
void lola_nccl_allreduce_avg(float *buf, size_t count, int bucket, size_t offset, double timeout_s);
// Waits (polling, at most timeout_s) for every average started since the last wait; afterwards
// the compute stream is ordered after them.
void lola_nccl_wait_all(double timeout_s);

#ifdef __cplusplus
}
#endif
#endif
