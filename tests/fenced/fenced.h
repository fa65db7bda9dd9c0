// fenced.h: the runtime of the fenced backend (tests/fenced/fenced.c), used by the generated op
// wrappers (gen_fenced.sh -> $(BUILD)/fenced/gen/fenced_ops.c). Not part of the op contract.
//
// The fenced backend is the CPU backend behind a memory fence: every nn_alloc buffer lives in
// one reserved region that is PROT_NONE whenever no nn.h op runs, so host code that reads or
// writes backend memory directly faults (and is reported with a backtrace), and every pointer
// argument of an op is checked (backend buffer or NULL; host_* parameters must be host memory).
// On the CPU backend both mistakes silently work; on CUDA both crash. See cuda/README.md.
#ifndef LOLA_FENCED_H
#define LOLA_FENCED_H

#include <stddef.h>

extern int fence_ready;
// Reserves the region and installs the fault handler (once).
void fence_init(void);
#define FENCE_INIT()                                                                               \
    do {                                                                                           \
        if (!fence_ready) fence_init();                                                            \
    } while (0)

// Pointer argument `param` of op `op` to elements of elem bytes (4: float *, 2: the uint16_t * of
// packed bf16 buffers, which are carved from nn_alloc float buffers) must be NULL or inside a live
// nn_alloc buffer and elem-aligned there; with has_extent, [p, p + extent elements) must lie
// inside that same buffer. Dies with the op, the parameter, the address and what is wrong otherwise.
void fence_check_dev(const char *op, const char *param, const void *p, size_t elem, int has_extent, size_t extent);
// A host_* parameter: must not point into the fenced region (NULL is allowed).
void fence_check_host(const char *op, const char *param, const void *p);
// Make the used part of the region readable/writable for op `op` (ops are not reentrant: a second
// open before the close is reported), and PROT_NONE again after it.
void fence_open(const char *op);
void fence_close(void);

#endif
