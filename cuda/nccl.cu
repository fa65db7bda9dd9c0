// nccl.cu: the NCCL transport of the gradient averaging (src/gradsync.h, "Device transport").
//
// * Bootstrap over MPI: rank 0 draws the ncclUniqueId, dist_bcast sends it to every rank, and
//   every rank calls ncclCommInitRankConfig with config.blocking = 0, then polls
//   ncclCommGetAsyncError until the communicator is ready, an error is reported, or the timeout
//   (dist.timeout) passes. Non-blocking mode is what makes a timeout possible at all: a blocking
//   communicator can hang inside an NCCL call forever.
// * One GPU per rank: the backend's device, chosen by nn_init(dist_local_rank()) (cuda/memory.cu:
//   node-local rank mod visible devices). Before NCCL starts, every rank publishes (host name, PCI
//   bus id) and two ranks on one GPU end the job with a clear message (NCCL itself would hang or
//   fail with "duplicate GPU").
// * Streams: the backend's ops all run on ONE stream, the legacy default stream (memory.cu). The
//   averages run on a second stream created cudaStreamNonBlocking (a blocking stream would be
//   implicitly synchronised with the legacy stream: every later compute kernel would wait for the
//   running all-reduce, i.e. no overlap) at the highest priority (NCCL's few CTAs get SMs ahead of
//   the backward kernels). For each bucket: record `ready` on the compute stream (it captures every
//   op issued so far, so the bucket's last gradient write), make the communication stream wait for
//   it, ncclAllReduce(in place, ncclFloat, ncclAvg) there, and record a per-bucket `done` event.
//   lola_nccl_wait_all makes the compute stream wait for the last `done` (so the optimizer and the
//   next nn_zero of the gradients are ordered after the averages), then polls the `done` events
//   in order with cudaEventQuery + ncclCommGetAsyncError: never a blocking synchronise, so a peer
//   that died or hangs ends in "bucket k did not complete within T s" instead of a hang.
// * Counts are ELEMENTS (ncclFloat), not bytes.
// * Any NCCL error or timeout: print the reason, ncclCommAbort (guarded by a 30 s alarm: some NCCL
//   versions can hang in abort), then lola_die -> MPI_Abort ends every rank.
// Non-blocking communicators: any NCCL call may return ncclInProgress; the next NCCL call on the
// communicator may only be made once ncclCommGetAsyncError reports success (nccl_settle).
//
// Without LOLA_HAVE_NCCL (no nccl.h, or tests/gpu/build.sh's MPI-free build) this file compiles
// to nothing and gradsync.c uses the host-staged MPI path.
#include "cuda_common.cuh"
#include "gradsync.h"

#ifdef LOLA_HAVE_NCCL
#include <nccl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "dist.h"

namespace {

struct Started { // one average started in the current step
    int bucket;
    size_t offset, count;
};

struct NcclState {
    int refs = 0;
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;      // communication stream (non-blocking, high priority)
    cudaEvent_t ready = nullptr;        // compute stream -> communication stream handoff
    std::vector<cudaEvent_t> done;      // per started average, reused from step to step
    std::vector<Started> started;       // this step's averages in start order
};
NcclState N;

void sleep_us(long us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, nullptr);
}

void abort_alarm(int) {
    static const char m[] = "error: ncclCommAbort did not return within 30 s; ending the job without it\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    dist_abort(1);
}

// Prints the reason, aborts the communicator (if any), then ends the whole job.
[[noreturn]] void nccl_fail(const char *file, int line, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] void nccl_fail(const char *file, int line, const char *hint, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (N.comm) {
        fprintf(stderr, "[rank %d] NCCL failure (%s); aborting the NCCL communicator\n", dist_rank(), msg);
        fflush(stderr);
        signal(SIGALRM, abort_alarm);
        alarm(30);
        ncclCommAbort(N.comm);
        alarm(0);
        N.comm = nullptr;
    }
    lola_die_hint_at(file, line, hint, "%s", msg);
}

const char *kHintPeers = "another rank died, hangs or is much slower (see its messages); NCCL_DEBUG=WARN (or INFO) "
                         "shows NCCL's view; raise dist.timeout if the network is just slow";

// Completes an NCCL call on the non-blocking communicator: ncclInProgress is polled with
// ncclCommGetAsyncError until success, an error, or timeout_s seconds.
void nccl_settle(ncclResult_t r, const char *call, const char *what, double timeout_s, const char *file, int line) {
    double t0 = lola_time();
    long spin = 0;
    while (r == ncclInProgress) {
        if (lola_time() - t0 > timeout_s)
            nccl_fail(file, line, kHintPeers, "%s (%s) still in progress after %.1f s (dist.timeout = %g s)", call, what,
                      lola_time() - t0, timeout_s);
        if (++spin > 1000) sleep_us(50);
        ncclResult_t state = ncclInProgress;
        ncclResult_t q = N.comm ? ncclCommGetAsyncError(N.comm, &state) : ncclInvalidUsage;
        r = q != ncclSuccess ? q : state;
    }
    if (r != ncclSuccess)
        nccl_fail(file, line, kHintPeers, "%s (%s) failed: NCCL error %d (%s): %s", call, what, (int)r, ncclGetErrorString(r),
                  ncclGetLastError(N.comm));
}
#define NCCL_SETTLE(call, what, timeout) nccl_settle((call), #call, (what), (timeout), __FILE__, __LINE__)

// Every rank's (host, GPU PCI bus id); ends the job when two ranks of one host share a GPU.
void check_one_gpu_per_rank(int dev) {
    struct Where {
        char host[96];
        char bus[32];
    } me, *all;
    memset(&me, 0, sizeof me);
    if (gethostname(me.host, sizeof me.host - 1) != 0) snprintf(me.host, sizeof me.host, "?");
    CUDA_CHECK(cudaDeviceGetPCIBusId(me.bus, (int)sizeof me.bus - 1, dev));
    int R = dist_size();
    all = (Where *)lola_calloc((size_t)R, sizeof(Where));
    dist_allgather(&me, all, sizeof me);
    for (int i = 0; i < R; i++)
        for (int j = i + 1; j < R; j++)
            if (!strcmp(all[i].host, all[j].host) && !strcmp(all[i].bus, all[j].bus)) {
                if (dist_rank() == i)
                    lola_die_hint("start one rank per GPU (srun --ntasks-per-node=GPUS --gpus-per-task=1, or mpirun "
                                  "-npernode GPUS) and check CUDA_VISIBLE_DEVICES",
                                  "ranks %d and %d both use the GPU %s on %s: NCCL needs a GPU of its own for every rank",
                                  i, j, all[i].bus, all[i].host);
                dist_barrier(); // rank i ends the job (MPI_Abort)
                lola_die("ranks %d and %d share a GPU (rank %d reports it)", i, j, i);
            }
    free(all);
}

} // namespace

extern "C" void lola_nccl_init(double timeout_s) {
    if (N.refs++ > 0) return;
    lcu_ensure_init(); // the device: nn_init(local rank), normally called by main() after dist_init
    int dev = -1, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceCount(&count));
    int lr = dist_local_rank(), want = count > 0 ? lr % count : 0;
    if (dev != want)
        lola_die("the CUDA backend runs on device %d, but node-local rank %d should use device %d of %d: "
                 "nn_init(dist_local_rank()) must run before the first GPU call (main.c does it)",
                 dev, lr, want, count);
    check_one_gpu_per_rank(dev);

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (dist_rank() == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess)
            lola_die_hint("NCCL_DEBUG=WARN shows why; NCCL_SOCKET_IFNAME selects the bootstrap network interface",
                          "ncclGetUniqueId failed: NCCL error %d (%s)", (int)r, ncclGetErrorString(r));
    }
    dist_bcast(&id, sizeof id, 0);

    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0; // every call returns at once; we poll (and can time out / abort)
    cfg.commName = "lola-gradients";
    N.comm = nullptr;
    double t0 = lola_time();
    ncclResult_t r = ncclCommInitRankConfig(&N.comm, dist_size(), id, dist_rank(), &cfg);
    char what[96];
    snprintf(what, sizeof what, "rank %d of %d on device %d", dist_rank(), dist_size(), dev);
    NCCL_SETTLE(r, what, timeout_s);

    int prio_lo = 0, prio_hi = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&prio_lo, &prio_hi));
    CUDA_CHECK(cudaStreamCreateWithPriority(&N.stream, cudaStreamNonBlocking, prio_hi));
    CUDA_CHECK(cudaEventCreateWithFlags(&N.ready, cudaEventDisableTiming));
    N.started.clear();
    if (lcu_verbose()) {
        int v = 0;
        ncclGetVersion(&v);
        fprintf(stderr, "[nccl] rank %d of %d: communicator ready on device %d in %.2f s (NCCL %d)\n", dist_rank(),
                dist_size(), dev, lola_time() - t0, v);
    }
}

extern "C" void lola_nccl_destroy(double timeout_s) {
    if (N.refs == 0) return;
    if (--N.refs > 0) return;
    if (!N.started.empty()) lola_die("lola_nccl_destroy: %zu averages were never waited for", N.started.size());
    if (N.comm) {
        NCCL_SETTLE(ncclCommFinalize(N.comm), "flushing the gradient communicator", timeout_s);
        ncclResult_t r = ncclCommDestroy(N.comm);
        N.comm = nullptr;
        if (r != ncclSuccess) lola_die("ncclCommDestroy failed: NCCL error %d (%s)", (int)r, ncclGetErrorString(r));
    }
    for (cudaEvent_t e : N.done) CUDA_CHECK(cudaEventDestroy(e));
    N.done.clear();
    if (N.ready) CUDA_CHECK(cudaEventDestroy(N.ready));
    if (N.stream) CUDA_CHECK(cudaStreamDestroy(N.stream));
    N.ready = nullptr;
    N.stream = nullptr;
}

extern "C" void lola_nccl_allreduce_avg(float *buf, size_t count, int bucket, size_t offset, double timeout_s) {
    if (!N.comm) lola_die("lola_nccl_allreduce_avg: no NCCL communicator (lola_nccl_init was not called)");
    if (count == 0) return;
    // The bucket's gradients were written by ops already issued on the compute stream.
    CUDA_CHECK(cudaEventRecord(N.ready, lcu_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(N.stream, N.ready, 0));
    char what[128];
    snprintf(what, sizeof what, "bucket %d, elements [%zu, %zu)", bucket, offset, offset + count);
    NCCL_SETTLE(ncclAllReduce(buf, buf, count, ncclFloat, ncclAvg, N.comm, N.stream), what, timeout_s);
    size_t i = N.started.size();
    if (i == N.done.size()) {
        cudaEvent_t e;
        CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        N.done.push_back(e);
    }
    CUDA_CHECK(cudaEventRecord(N.done[i], N.stream));
    N.started.push_back(Started{bucket, offset, count});
}

extern "C" void lola_nccl_wait_all(double timeout_s) {
    size_t n = N.started.size();
    if (n == 0) return;
    // Everything issued on the compute stream from now on runs after the averages.
    CUDA_CHECK(cudaStreamWaitEvent(lcu_stream(), N.done[n - 1], 0));
    double t0 = lola_time();
    for (size_t i = 0; i < n; i++) {
        const Started &s = N.started[i];
        for (long spin = 0;; spin++) {
            cudaError_t e = cudaEventQuery(N.done[i]);
            if (e == cudaSuccess) break;
            if (e != cudaErrorNotReady)
                nccl_fail(__FILE__, __LINE__, "an earlier kernel may have failed; rerun with CUDA_LAUNCH_BLOCKING=1",
                          "CUDA error %d (%s: %s) while waiting for the gradient average of bucket %d (elements "
                          "[%zu, %zu))",
                          (int)e, cudaGetErrorName(e), cudaGetErrorString(e), s.bucket, s.offset, s.offset + s.count);
            ncclResult_t state = ncclSuccess, q = ncclCommGetAsyncError(N.comm, &state);
            if (q != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
                ncclResult_t r = q != ncclSuccess ? q : state;
                nccl_fail(__FILE__, __LINE__, kHintPeers,
                          "NCCL error %d (%s) during the gradient average of bucket %d (elements [%zu, %zu)): %s",
                          (int)r, ncclGetErrorString(r), s.bucket, s.offset, s.offset + s.count, ncclGetLastError(N.comm));
            }
            double el = lola_time() - t0;
            if (el > timeout_s)
                nccl_fail(__FILE__, __LINE__, kHintPeers,
                          "gradient average (NCCL) of bucket %d (elements [%zu, %zu)) did not complete within %.1f s "
                          "(dist.timeout = %g s); %zu of the %zu averages of this step had completed",
                          s.bucket, s.offset, s.offset + s.count, el, timeout_s, i, n);
            if (spin > 2000) sleep_us(20);
        }
    }
    N.started.clear();
}

#endif // LOLA_HAVE_NCCL
