// fenced.c: the runtime of the fenced backend: the CPU backend's ops behind a memory fence, so a
// machine without a GPU can prove that host code never touches backend memory directly (on CUDA
// that memory is on the device) and never hands a host pointer to an op. See fenced.h and the
// section "Checking without a GPU" of cuda/README.md.
//
// Memory: one region of LOLA_FENCE_GIB GiB (default 64) of address space is reserved
// (PROT_NONE, MAP_NORESERVE: costs nothing until used). nn_alloc hands out page-aligned,
// page-rounded blocks of it first-fit; a block on the memory of a freed one is zeroed before the
// next op (host code cannot look earlier), so every buffer starts zero-filled. Outside ops the used
// part of the region is PROT_NONE; each op opens it (PROT_READ|PROT_WRITE), rounded up to 2 MiB,
// and closes it again. The region asks for transparent huge pages (MADV_HUGEPAGE): one mprotect
// then rewrites one page-table entry per 2 MiB instead of 512 (measured on the tiny train-ns of
// tests/t_fenced.sh, 17 MiB used: 646 us -> 8 us of mprotect per op). Freed memory is kept (like a
// caching allocator).
// A fault inside the region is reported ("host code touched backend memory at ...", the buffer,
// a backtrace) and the process aborts.
//
// Byte counters: nn_bytes_in_use counts n * 4 per live nn_alloc buffer (not the page rounding)
// plus the CPU backend's op scratch, exactly what the CPU backend reports.
//
// Test hook: LOLA_FENCE_SELFTEST=touch reads backend memory from host code right after the first
// op (must die with the message above); LOLA_FENCE_SELFTEST=host passes a malloc'd pointer to
// nn_fill at the first op (must die naming nn_fill and its parameter x). Used by tests/t_fenced.sh
// to prove the fence also fires inside a real (MPI) run.
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "cpu_nn.h"
#include "fenced.h"
#include "nn.h"

typedef struct {
    size_t off;   // from the region base, page-aligned
    size_t span;  // page-rounded size reserved for the block (>= 1 page)
    size_t bytes; // n * sizeof(float) as requested
    int dirty;    // reuses memory of a freed block: zeroed at the next fence_open
} Block;

// The opened part of the region is rounded up to this (2 MiB): with transparent huge pages
// (MADV_HUGEPAGE) each mprotect then changes one page-table entry per 2 MiB instead of 512.
#define FENCE_HUGE ((size_t)2 << 20)

int fence_ready = 0;
static char *g_base;           // the reserved region
static size_t g_cap;           // its size in bytes
static size_t g_page;          // page size
static Block *g_blocks;        // live blocks, sorted by off
static size_t g_nblocks, g_blocks_cap;
static size_t g_top;           // end of the highest live block (bytes from base, page multiple)
static size_t g_touched;       // end of the part ever opened (memory below may hold old data)
static size_t g_ndirty;        // live blocks with dirty = 1
static size_t g_open_len;      // bytes opened by fence_open, 0 when closed
static const char *g_open_op;  // the op running (NULL when closed)
static size_t g_user_bytes;    // sum of Block.bytes
static size_t g_peak;          // high-water mark of g_user_bytes + CPU scratch
static int g_selftest;         // 1 = touch, 2 = host (LOLA_FENCE_SELFTEST)
// LOLA_FENCE_STATS=1: counters printed at exit (ops, time in mprotect, largest region use)
static int g_stats;
static size_t st_ops, st_max_top, st_max_blocks, st_allocs;
static double st_prot_s;

// ---------------------------------------------------------------------------------------------
// Reporting (also used from the signal handler, which aborts right after: stack buffers,
// snprintf, write(2))

static void put(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w, n -= (size_t)w;
    }
}

static void backtrace_to_stderr(void) {
    void *frames[64];
    int n = backtrace(frames, 64);
    put("fenced backend: backtrace (innermost first; build with -rdynamic for names):\n");
    backtrace_symbols_fd(frames, n, 2);
}

LOLA_PRINTF(1, 2) LOLA_NORETURN static void fence_die(const char *fmt, ...) {
    char msg[1024];
    int k = snprintf(msg, sizeof msg, "[rank %d pid %d] fenced backend: ", lola_log_rank, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    if (k > 0 && (size_t)k < sizeof msg) vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    put(msg);
    put("\n");
    backtrace_to_stderr();
    signal(SIGABRT, SIG_DFL);
    abort();
}

// The live block whose span holds offset o (NULL if none). Binary search.
static Block *find_block(size_t o) {
    size_t lo = 0, hi = g_nblocks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g_blocks[mid].off <= o) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return NULL;
    Block *b = &g_blocks[lo - 1];
    return o < b->off + b->span ? b : NULL;
}

static int in_region(const void *p) {
    return g_base && (const char *)p >= g_base && (const char *)p < g_base + g_cap;
}

// ---------------------------------------------------------------------------------------------
// The fault handler

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    (void)uctx;
    char msg[768];
    const char *a = (const char *)si->si_addr;
    if (in_region(a)) {
        size_t o = (size_t)(a - g_base);
        Block *b = find_block(o);
        if (g_open_op) // the region is open up to g_open_len: this access went beyond it
            snprintf(msg, sizeof msg,
                     "[rank %d pid %d] fenced backend: backend memory at %p, beyond every live buffer, was "
                     "touched while op %s was running (an op reading or writing past its buffers?)",
                     lola_log_rank, (int)getpid(), (const void *)a, g_open_op);
        else if (b && o < b->off + b->bytes)
            snprintf(msg, sizeof msg,
                     "[rank %d pid %d] fenced backend: host code touched backend memory at %p (inside an "
                     "allocation of %zu floats at %p, float offset %zu)",
                     lola_log_rank, (int)getpid(), (const void *)a, b->bytes / sizeof(float),
                     (void *)(g_base + b->off), (o - b->off) / sizeof(float));
        else if (b)
            snprintf(msg, sizeof msg,
                     "[rank %d pid %d] fenced backend: host code touched backend memory at %p (%zu bytes "
                     "past the end of an allocation of %zu floats at %p)",
                     lola_log_rank, (int)getpid(), (const void *)a, o - b->off - b->bytes,
                     b->bytes / sizeof(float), (void *)(g_base + b->off));
        else
            snprintf(msg, sizeof msg,
                     "[rank %d pid %d] fenced backend: host code touched backend memory at %p (not inside "
                     "any live allocation: freed or never allocated)",
                     lola_log_rank, (int)getpid(), (const void *)a);
        put(msg);
        put("\nfenced backend: backend memory is device memory on CUDA: read it with nn_to_host, write it "
            "with nn_to_backend, or use an nn.h op\n");
        backtrace_to_stderr();
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    // Not ours: report, then let the default action happen (SA_RESETHAND: the faulting
    // instruction runs again with the default handler).
    snprintf(msg, sizeof msg, "[rank %d pid %d] fenced backend: signal %d at %p (not backend memory)\n",
             lola_log_rank, (int)getpid(), sig, (const void *)a);
    put(msg);
    backtrace_to_stderr();
}

static void install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

// ---------------------------------------------------------------------------------------------
// Initialisation

static void print_stats(void);

void fence_init(void) {
    if (fence_ready) return;
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    double gib = 64.0;
    const char *e = getenv("LOLA_FENCE_GIB");
    if (e && *e) {
        char *end;
        gib = strtod(e, &end);
        if (*end || !(gib >= 0.001 && gib <= 65536.0))
            lola_die("LOLA_FENCE_GIB='%s': expected the fenced region's size in GiB (0.001 .. 65536)", e);
    }
    size_t cap = (size_t)(gib * 1073741824.0);
    cap = (cap + FENCE_HUGE - 1) / FENCE_HUGE * FENCE_HUGE;
    void *p = MAP_FAILED;
    // Halve the default reservation until the kernel grants it (address-space limits), down to
    // 1 GiB; a size given in LOLA_FENCE_GIB is tried as it is. One huge page more, for alignment.
    for (;; cap /= 2) {
        p = mmap(NULL, cap + FENCE_HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED || (e && *e) || cap / 2 < ((size_t)1 << 30)) break;
    }
    if (p == MAP_FAILED)
        lola_die("fenced backend: cannot reserve %.3f GiB of address space: %s (set LOLA_FENCE_GIB)",
                 cap / 1073741824.0, strerror(errno));
    g_base = (char *)(((uintptr_t)p + FENCE_HUGE - 1) & ~(uintptr_t)(FENCE_HUGE - 1));
    g_cap = cap;
    madvise(g_base, g_cap, MADV_HUGEPAGE); // best effort (EINVAL without THP support)
    const char *st = getenv("LOLA_FENCE_SELFTEST");
    if (st && *st) {
        if (!strcmp(st, "touch")) g_selftest = 1;
        else if (!strcmp(st, "host")) g_selftest = 2;
        else lola_die("LOLA_FENCE_SELFTEST='%s': expected touch or host", st);
    }
    // backtrace() loads libgcc on its first call (malloc): do it now, not in the handler.
    void *frames[2];
    backtrace(frames, 2);
    install_handler();
    const char *se = getenv("LOLA_FENCE_STATS");
    if (se && *se && strcmp(se, "0")) {
        g_stats = 1;
        atexit(print_stats);
    }
    fence_ready = 1;
}

// ---------------------------------------------------------------------------------------------
// Checks

void fence_check_dev(const char *op, const char *param, const void *p, size_t elem, int has_extent, size_t extent) {
    if (!p) return;
    if (!in_region(p))
        fence_die("%s: parameter %s = %p is not backend memory (a host pointer, or memory from another "
                  "allocator): ops take nn_alloc buffers only; stage host data with nn_to_backend / nn_to_host",
                  op, param, p);
    size_t o = (size_t)((const char *)p - g_base);
    Block *b = find_block(o);
    if (!b)
        fence_die("%s: parameter %s = %p is not inside any live nn_alloc buffer (freed, or never allocated)", op,
                  param, p);
    // Units of the messages: floats for float *, "bf16 values" for the 2-byte elements of packed
    // buffers (nn.h "bf16 activation storage"); the buffer itself is always counted in floats.
    const char *unit = elem == sizeof(float) ? "floats" : elem == 2 ? "bf16 values" : "elements";
    size_t at = o - b->off;
    if (elem == 0 || at % elem)
        fence_die("%s: parameter %s = %p is not %s-aligned (byte %zu of a buffer of %zu floats at %p)", op, param, p,
                  elem == sizeof(float) ? "float" : elem == 2 ? "2-byte" : "element", at, b->bytes / sizeof(float),
                  (void *)(g_base + b->off));
    size_t have = at <= b->bytes ? (b->bytes - at) / elem : 0; // elements from p to the end
    if (at > b->bytes || (at == b->bytes && !(has_extent && extent == 0) && b->bytes > 0))
        fence_die("%s: parameter %s = %p points past the end of its buffer (byte offset %zu = float offset %zu of a "
                  "buffer of %zu floats at %p)",
                  op, param, p, at, at / sizeof(float), b->bytes / sizeof(float), (void *)(g_base + b->off));
    if (has_extent && extent > have)
        fence_die("%s: parameter %s = %p covers %zu %s, but its buffer (%zu floats at %p) has only %zu from "
                  "there (%s offset %zu): %zu %s past the end",
                  op, param, p, extent, unit, b->bytes / sizeof(float), (void *)(g_base + b->off), have,
                  elem == sizeof(float) ? "float" : "element", at / elem, extent - have, unit);
}

void fence_check_host(const char *op, const char *param, const void *p) {
    if (!p || !in_region(p)) return;
    fence_die("%s: parameter %s = %p is backend memory, but %s takes host memory there (on CUDA this is a "
              "device pointer): use nn_copy for backend-to-backend copies",
              op, param, p, param);
}

// ---------------------------------------------------------------------------------------------
// The fence

static void update_peak(void) {
    size_t now = g_user_bytes + cpu_nn_bytes_in_use();
    if (now > g_peak) g_peak = now;
}

static void protect(size_t len, int prot, const char *what) {
    double t0 = g_stats ? lola_time() : 0.0;
    if (len && mprotect(g_base, len, prot) != 0)
        fence_die("mprotect(%p, %zu bytes, %s) failed: %s", (void *)g_base, len, what, strerror(errno));
    if (g_stats) st_prot_s += lola_time() - t0;
}

static void print_stats(void) {
    fprintf(stderr,
            "[rank %d] fenced backend: %zu ops, %zu nn_alloc, %.3f s in mprotect (%.1f us per op), largest used span "
            "%.1f MiB, most live buffers %zu, peak %.1f MiB\n",
            lola_log_rank, st_ops, st_allocs, st_prot_s, st_ops ? 1e6 * st_prot_s / (double)st_ops : 0.0,
            st_max_top / 1048576.0, st_max_blocks, nn_bytes_peak() / 1048576.0);
}

static void selftest(void);

void fence_open(const char *op) {
    if (g_open_op)
        fence_die("op %s called while op %s is running: ops are not reentrant (src/nn.h); call them from one "
                  "host thread at a time",
                  op, g_open_op);
    if (g_selftest == 2) selftest();
    g_open_op = op;
    g_open_len = (g_top + FENCE_HUGE - 1) / FENCE_HUGE * FENCE_HUGE;
    st_ops++;
    if (g_top > st_max_top) st_max_top = g_top;
    protect(g_open_len, PROT_READ | PROT_WRITE, "read/write");
    if (g_open_len > g_touched) g_touched = g_open_len;
    // nn_alloc's zero-fill for blocks on reused memory (nobody can read them before an op)
    for (size_t i = 0; g_ndirty && i < g_nblocks; i++)
        if (g_blocks[i].dirty) {
            memset(g_base + g_blocks[i].off, 0, g_blocks[i].span);
            g_blocks[i].dirty = 0;
            g_ndirty--;
        }
}

void fence_close(void) {
    protect(g_open_len, PROT_NONE, "none");
    g_open_len = 0;
    g_open_op = NULL;
    update_peak();
    if (g_selftest == 1) selftest();
}

// LOLA_FENCE_SELFTEST: deliberate violations (see the top of the file).
static void selftest(void) {
    int kind = g_selftest;
    g_selftest = 0;
    if (kind == 1) {
        if (!g_nblocks) {
            g_selftest = 1; // no buffer yet: try again after the next op
            return;
        }
        volatile float *x = (volatile float *)(g_base + g_blocks[0].off);
        fprintf(stderr, "fenced backend: LOLA_FENCE_SELFTEST=touch: reading backend memory at %p from host code\n",
                (void *)x);
        float v = x[0];
        fprintf(stderr, "fenced backend: LOLA_FENCE_SELFTEST=touch: the read returned %g: THE FENCE DID NOT FIRE\n", v);
        exit(99);
    } else {
        float *h = malloc(16 * sizeof(float));
        fprintf(stderr, "fenced backend: LOLA_FENCE_SELFTEST=host: passing a malloc'd pointer %p to nn_fill\n",
                (void *)h);
        nn_fill(h, 1.0f, 16);
        fprintf(stderr, "fenced backend: LOLA_FENCE_SELFTEST=host: nn_fill accepted it: THE CHECK DID NOT FIRE\n");
        exit(99);
    }
}

// ---------------------------------------------------------------------------------------------
// Memory (nn.h)

float *nn_alloc(size_t n) {
    FENCE_INIT();
    if (g_open_op) fence_die("nn_alloc called while op %s is running", g_open_op);
    if (n > (SIZE_MAX - g_page) / sizeof(float)) lola_die("nn_alloc: a buffer of %zu floats overflows size_t", n);
    size_t bytes = n * sizeof(float);
    size_t span = (bytes + g_page - 1) / g_page * g_page;
    if (span == 0) span = g_page;
    // first fit between live blocks, else after the last one
    size_t at = 0, idx = 0;
    for (; idx < g_nblocks; idx++) {
        if (g_blocks[idx].off - at >= span) break;
        at = g_blocks[idx].off + g_blocks[idx].span;
    }
    if (at > g_cap || g_cap - at < span)
        lola_die_hint("set LOLA_FENCE_GIB to a larger size, or reduce the batch or model size",
                      "nn_alloc (fenced backend): out of reserved address space allocating %zu floats (%.3f GiB); "
                      "%.3f GiB in %zu buffers, region %.3f GiB",
                      n, bytes / 1073741824.0, g_user_bytes / 1073741824.0, g_nblocks, g_cap / 1073741824.0);
    if (g_nblocks == g_blocks_cap) {
        size_t cap = g_blocks_cap ? 2 * g_blocks_cap : 256;
        Block *nb = realloc(g_blocks, cap * sizeof(Block));
        if (!nb) lola_die("nn_alloc (fenced backend): out of host memory for the block table");
        g_blocks = nb, g_blocks_cap = cap;
    }
    memmove(&g_blocks[idx + 1], &g_blocks[idx], (g_nblocks - idx) * sizeof(Block));
    // Memory below g_touched may hold a freed block's data: zeroed at the next fence_open.
    int dirty = at < g_touched;
    g_blocks[idx] = (Block){at, span, bytes, dirty};
    g_ndirty += (size_t)dirty;
    g_nblocks++;
    if (at + span > g_top) g_top = at + span;
    g_user_bytes += bytes;
    update_peak();
    st_allocs++;
    if (g_nblocks > st_max_blocks) st_max_blocks = g_nblocks;
    return (float *)(g_base + at);
}

void nn_free(float *p) {
    FENCE_INIT();
    if (!p) return;
    if (g_open_op) fence_die("nn_free called while op %s is running", g_open_op);
    Block *b = in_region(p) ? find_block((size_t)((char *)p - g_base)) : NULL;
    if (!b || (char *)p != g_base + b->off)
        fence_die("nn_free(%p): not the start of a live nn_alloc buffer (%s)", (void *)p,
                  !in_region(p) ? "host memory" : b ? "a pointer into a buffer" : "freed twice, or never allocated");
    // The pages stay (returning them would split huge pages); a block reusing them is zeroed.
    g_ndirty -= (size_t)b->dirty;
    g_user_bytes -= b->bytes;
    size_t idx = (size_t)(b - g_blocks);
    memmove(&g_blocks[idx], &g_blocks[idx + 1], (g_nblocks - idx - 1) * sizeof(Block));
    g_nblocks--;
    g_top = g_nblocks ? g_blocks[g_nblocks - 1].off + g_blocks[g_nblocks - 1].span : 0;
}

size_t nn_bytes_in_use(void) { return g_user_bytes + cpu_nn_bytes_in_use(); }

size_t nn_bytes_peak(void) {
    update_peak();
    return g_peak;
}

const char *nn_backend_name(void) {
    static char name[256];
    FENCE_INIT();
    snprintf(name, sizeof name, "fenced %s (backend memory PROT_NONE outside ops; tests/fenced/)",
             cpu_nn_backend_name());
    return name;
}
