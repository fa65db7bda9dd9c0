// memory.c: CPU backend setup, threads, the bf16 activation switch (LOLA_ACTIVATIONS), memory
// (nn_alloc & co.), scratch buffers, byte counters. Backend memory on the CPU is ordinary host
// memory, 64-byte aligned.
#include <omp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#include "common.h"
#include "cpu.h"
#include "nn.h"

// ---------------------------------------------------------------------------------------------
// Initialisation and threads

static int cpu_initialised = 0;
static int cpu_nthreads = 1;

// bf16 activation storage (nn.h): the switch, and whether the environment was read / a setter
// called. LOLA_ACTIVATIONS is read at the first initialisation only, like every switch of the CUDA
// backend (its nn_init runs once), so a later nn_init never undoes nn_set_bf16_activations.
static int act_bf16 = 0, act_env_read = 0, act_set = 0;

// LOLA_ACTIVATIONS=fp32|bf16 (case-insensitive): 0 or 1; unset or empty: dflt. Dies otherwise.
static int env_activations(int dflt) {
    static const char *const names[] = {"fp32", "bf16"};
    return lola_env_choice("LOLA_ACTIVATIONS", names, 2, dflt,
                           "the storage of the activations saved for backward; unset: fp32 on the CPU backend");
}

void cpu_ensure_init(void) {
    if (cpu_initialised) return;
    if (!act_env_read) { // checked even after a setter call: a bad value is always an error
        act_env_read = 1;
        int env = env_activations(0);
        if (!act_set) act_bf16 = env;
    }
    // One thread pool only: OpenMP. OpenBLAS runs single-threaded inside our OpenMP blocks
    // (cpu_gemm), see cpu.h. Another CBLAS must be made single-threaded through its own
    // environment (MKL_NUM_THREADS=1, BLIS_NUM_THREADS=1, ...).
#ifdef LOLA_BLAS_OPENBLAS
    openblas_set_num_threads(1);
#endif
    cpu_nthreads = omp_get_max_threads();
    if (cpu_nthreads < 1) cpu_nthreads = 1;
    cpu_initialised = 1;
#ifndef LOLA_CPU_RENAME_H // not in the renamed copies (the GPU tests' reference, the fenced build)
    // The CUDA backend's precision switches (cuda/nn_cuda.h) do not exist here: say so once rather
    // than let a user believe a CPU run used them.
    static int warned = 0; // once per process (nn_init initialises again)
    const char *prec = getenv("LOLA_PRECISION"), *tf32 = getenv("LOLA_TF32");
    if (!warned++ && ((prec && prec[0] && strcasecmp(prec, "fp32")) || (tf32 && tf32[0] && strcmp(tf32, "0"))))
        log_info("warning: LOLA_PRECISION=%s LOLA_TF32=%s ignored: the CPU backend computes in fp32 (the switches are "
                 "for CUDA builds, cuda/README.md)\n",
                 prec ? prec : "(unset)", tf32 ? tf32 : "(unset)");
#endif
}

int cpu_threads(void) {
    cpu_ensure_init();
    return cpu_nthreads;
}

// OMP_NUM_THREADS is honoured by the OpenMP runtime itself (default: all available cores);
// we only pin OpenBLAS to one thread. local_rank is unused on the CPU.
void nn_init(int local_rank) {
    (void)local_rank;
    cpu_initialised = 0;
    cpu_ensure_init();
}

int nn_bf16_activations(void) {
    cpu_ensure_init();
    return act_bf16;
}

void nn_set_bf16_activations(int on) {
    cpu_ensure_init();
    act_bf16 = on != 0;
    act_set = 1;
}

const char *nn_backend_name(void) {
    static char name[160];
    cpu_ensure_init();
    // openblas_get_config() is e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64":
    // keep the first two words.
#ifdef LOLA_BLAS_NAME
    char blas[64] = LOLA_BLAS_NAME;
#else
    char blas[64] = "CBLAS";
#endif
    const char *cfg = NULL;
#ifdef LOLA_BLAS_OPENBLAS
    cfg = openblas_get_config();
#endif
    if (cfg) {
        int words = 0;
        size_t i = 0;
        for (; cfg[i] && i < sizeof blas - 1; i++) {
            if (cfg[i] == ' ' && ++words == 2) break;
            blas[i] = cfg[i];
        }
        blas[i] = 0;
    }
    snprintf(name, sizeof name, "cpu (%s, %d thread%s%s)", blas, cpu_nthreads, cpu_nthreads == 1 ? "" : "s",
             act_bf16 ? ", bf16 activations" : "");
    return name;
}

// ---------------------------------------------------------------------------------------------
// Byte counters (nn_alloc buffers plus the ops' scratch buffers)

static atomic_size_t bytes_in_use = 0, bytes_peak = 0;

void cpu_account_bytes(ptrdiff_t delta) {
    size_t now = atomic_fetch_add(&bytes_in_use, (size_t)delta) + (size_t)delta;
    size_t peak = atomic_load(&bytes_peak);
    while (now > peak && !atomic_compare_exchange_weak(&bytes_peak, &peak, now)) {
    }
}

size_t nn_bytes_in_use(void) { return atomic_load(&bytes_in_use); }
size_t nn_bytes_peak(void) { return atomic_load(&bytes_peak); }

// ---------------------------------------------------------------------------------------------
// Allocation. Layout: [padding][size_t bytes][void *base] | 64-byte aligned data.

#define ALLOC_ALIGN 64

typedef struct {
    size_t bytes;
    void *base;
} AllocHeader;

static float *aligned_calloc(size_t n, const char *what) {
    if (n > (SIZE_MAX - 2 * ALLOC_ALIGN) / sizeof(float))
        lola_die("nn_alloc: %s of %zu floats overflows size_t", what, n);
    size_t bytes = n * sizeof(float);
    // calloc: large blocks come straight from mmap as zero pages, so untouched memory is free.
    char *base = calloc(1, bytes + sizeof(AllocHeader) + ALLOC_ALIGN);
    if (!base)
        lola_die_hint("reduce the batch size or the model size",
                      "nn_alloc: out of host memory allocating %s of %zu floats (%.3f GiB); "
                      "%.3f GiB already in use",
                      what, n, bytes / 1073741824.0, nn_bytes_in_use() / 1073741824.0);
    uintptr_t p = ((uintptr_t)(base + sizeof(AllocHeader)) + ALLOC_ALIGN - 1) & ~(uintptr_t)(ALLOC_ALIGN - 1);
    AllocHeader *h = (AllocHeader *)p - 1;
    h->bytes = bytes;
    h->base = base;
    cpu_account_bytes((ptrdiff_t)bytes);
    return (float *)p;
}

static void aligned_free(float *p) {
    if (!p) return;
    AllocHeader *h = (AllocHeader *)p - 1;
    cpu_account_bytes(-(ptrdiff_t)h->bytes);
    free(h->base);
}

float *nn_alloc(size_t n) { return aligned_calloc(n, "a buffer"); }
void nn_free(float *p) { aligned_free(p); }

void nn_zero(float *x, size_t n) {
    if (n < CPU_PAR_MIN) {
        memset(x, 0, n * sizeof(float));
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = 0.0f;
}

void nn_copy(float *dst, const float *src, size_t n) {
    if (dst == src || n == 0) return;
    memmove(dst, src, n * sizeof(float));
}
void nn_to_backend(float *dst, const float *host_src, size_t n) { nn_copy(dst, host_src, n); }
void nn_to_host(float *host_dst, const float *src, size_t n) { nn_copy(host_dst, src, n); }
void nn_sync(void) {}

// ---------------------------------------------------------------------------------------------
// Scratch: grow-only, one buffer per slot, module-level (ops are not reentrant, see cpu.h).

static float *scratch_ptr[SCRATCH_N];
static size_t scratch_cap[SCRATCH_N];

float *cpu_scratch(int slot, size_t n) {
    if (slot < 0 || slot >= SCRATCH_N) lola_die("cpu_scratch: bad slot %d", slot);
    if (n > scratch_cap[slot]) {
        aligned_free(scratch_ptr[slot]);
        // grow by at least 1/8 to avoid many small re-allocations
        size_t cap = n + n / 8;
        scratch_ptr[slot] = aligned_calloc(cap, "an op scratch buffer");
        scratch_cap[slot] = cap;
    }
    return scratch_ptr[slot];
}
