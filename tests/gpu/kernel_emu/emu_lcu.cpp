// emu_lcu.cpp: host versions of the backend internals (cuda/cuda_common.cuh, cuda/precision.cuh;
// the real ones are in memory.cu and precision.cu) that the emulated files call, with the same
// contracts: the checks die through lola_die, lcu_scratch is grow-only emulated device memory whose
// contents are undefined (0xFF bytes, NaN, at every call: code that relies on what an earlier op
// left there reads NaN), lcu_sum_partials sums at most 4096 partials in index order, lcu_num_sms is
// EMU_SMS (default 2: small grids, so that the grid-stride loops wrap).
#include "precision.cuh"

void *emu_dev_alloc(size_t bytes, int fill, const char *what);
void emu_dev_free(void *p, const char *who);
cublasHandle_t emu_cublas_handle(void);

void lcu_cuda_check(cudaError_t e, const char *file, int line, const char *call) {
    if (e != cudaSuccess) lola_die_at(file, line, "CUDA error %d in %s", e, call);
}
void lcu_cublas_check(cublasStatus_t s, const char *file, int line, const char *call) {
    if (s != CUBLAS_STATUS_SUCCESS) lola_die_at(file, line, "cuBLAS error %d in %s", (int)s, call);
}
void lcu_ensure_init(void) {}
cudaStream_t lcu_stream(void) { return nullptr; }
cublasHandle_t lcu_cublas(void) { return emu_cublas_handle(); }
cudnnHandle_t lcu_cudnn(void) { return nullptr; }
int lcu_verbose(void) { return 0; }
int lcu_num_sms(void) {
    static int n = [] {
        const char *s = getenv("EMU_SMS");
        return s && atoi(s) > 0 ? atoi(s) : 2;
    }();
    return n;
}

static void *scr[LCU_SCR_N];
static size_t scr_cap[LCU_SCR_N];
void *lcu_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= LCU_SCR_N) lola_die("lcu_scratch: bad slot %d", slot);
    if (bytes > scr_cap[slot]) { // as memory.cu: the old buffer is freed, the new one is 1/8 larger
        if (scr[slot]) emu_dev_free(scr[slot], "lcu_scratch");
        size_t cap = ((bytes + bytes / 8) + 255) & ~(size_t)255;
        char what[64];
        snprintf(what, sizeof what, "scratch slot %d", slot);
        scr[slot] = emu_dev_alloc(cap, 0xFF, what);
        scr_cap[slot] = cap;
    }
    memset(scr[slot], 0xFF, bytes); // contents undefined
    return scr[slot];
}
double lcu_sum_partials(const double *d, int n) {
    double host[4096];
    if (n > 4096) lola_die("lcu_sum_partials: %d partials (max 4096)", n);
    CUDA_CHECK(cudaMemcpyAsync(host, d, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost, lcu_stream()));
    double s = 0.0;
    for (int i = 0; i < n; i++) s += host[i];
    return s;
}

static long n_params = 0, n_writes = 0;
void lcu_note_params(const float *p, size_t n) {
    if (n) emu_check_device_range(p, n * sizeof(float), "lcu_note_params");
    n_params++;
}
void lcu_note_write(const void *p, size_t n) {
    if (n) emu_check_device_range(p, n * sizeof(float), "lcu_note_write");
    n_writes++;
}
void emu_note_stats(long *params_calls, long *write_calls) {
    *params_calls = n_params;
    *write_calls = n_writes;
}
