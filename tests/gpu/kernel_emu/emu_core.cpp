// emu_core.cpp: the execution side of the CUDA emulation (cuda_emu.h): kernel launches (fibers
// with block and warp barriers), shared memory, device memory (nn_alloc, scratch, guard bands),
// the runtime's copies, the kernel registry and the report printed when the program ends.
#include <cstdarg>
#include <map>
#include <pthread.h>
#include <memory>
#include <set>
#include <string>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "cuda_emu.h"

#include "common.h"

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 gridDim, blockDim;
bool emu_in_kernel = false;
int emu_ulp_mode = [] {
    const char *s = getenv("EMU_ULP");
    return s && *s ? atoi(s) : 1;
}();

uint64_t emu_hash64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------------------------
// Errors of the emulated code (undefined behaviour on the device): counted, the first few printed.

static long n_errors = 0, n_bad_launches = 0, n_launches = 0, n_host_ptrs = 0, n_guard_hits = 0, n_api_errors = 0;
static const char *cur_kernel = "(host code)";
bool emu_quiet = false;  // selftest.cu: the errors it plants are counted, not printed
bool emu_report = true;  // selftest.cu: no report at exit

__attribute__((format(printf, 2, 3))) static void emu_error(long *counter, const char *fmt, ...) {
    static long printed = 0;
    ++*counter;
    if (emu_quiet || ++printed > 40) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  emu: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
}

// Misuse of a library API (emu_cublas.cpp, emu_cudnn.cpp, emu_cublaslt.cpp).
void emu_api_error(const char *fmt, ...) {
    static long printed = 0;
    n_api_errors++;
    if (emu_quiet || ++printed > 40) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "  emu: API misuse: ");
    vfprintf(stdout, fmt, ap);
    fprintf(stdout, "\n");
    va_end(ap);
    fflush(stdout);
}

// ---------------------------------------------------------------------------------------------
// Fibers: one per thread of the block, switched on the launching OS thread.

#if defined(__x86_64__)
// emu_ctx_switch(&save_sp, new_sp): saves the callee-saved registers, MXCSR and the x87 control
// word on the current stack, stores its pointer, continues on new_sp (System V ABI).
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    endbr64
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .globl emu_ctx_trampoline
    .type emu_ctx_trampoline, @function
emu_ctx_trampoline:
    endbr64
    callq *%r12
    ud2
    .size emu_ctx_trampoline, .-emu_ctx_trampoline
)");
extern "C" void emu_ctx_switch(void **save_sp, void *new_sp);
extern "C" void emu_ctx_trampoline(void);
struct Ctx {
    void *sp = nullptr;
};
#else
struct Ctx {
    ucontext_t uc;
};
#endif

enum { F_READY, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };

struct Fiber {
    Ctx ctx;
    char *stack = nullptr; // lowest usable address
    size_t stack_size = 0;
    void *fake_stack = nullptr; // AddressSanitizer's per-fiber state
    uint3 tid;
    unsigned lin = 0;
    int state = F_DONE;
    const char *waits_in = "";
    uint64_t shfl_value = 0, shfl_result = 0; // this lane's value in the pending exchange; what it receives
    int shfl_src = -1;
};

// Lanes of a warp that wait in __shfl*_sync / __syncwarp with the same mask (a group completes when
// every lane of its mask has arrived; disjoint groups may wait at the same time, as in divergent code).
struct WarpGroup {
    unsigned mask = 0, arrived = 0;
    const char *what = "";
};
struct Warp {
    unsigned exist = 0, exited = 0;
    std::vector<WarpGroup> groups;
};

struct SharedRegion {
    void *p;
    size_t bytes;
    const char *name;
};

struct Launch {
    const char *name;
    dim3 grid, block;
    size_t smem;
    unsigned nthreads;
    const std::function<void()> *fn;
    std::vector<Warp> warps;
    unsigned alive = 0, exited = 0, bar_arrived = 0;
    int bar_or = 0, bar_and = 1, bar_count = 0, bar_phase = 0, bar_res[2][3] = {{0, 0, 0}, {0, 0, 0}};
    bool dir = false, exit_barrier_reported = false;
    std::vector<SharedRegion> shared;
    char *dyn = nullptr;
};

static Ctx sched_ctx;
static const void *sched_stack_lo = nullptr;
static size_t sched_stack_size = 0;
static std::vector<std::unique_ptr<Fiber>> fibers;
static Fiber *cur = nullptr;
static Launch *L = nullptr;
static std::vector<unsigned> ready; // FIFO of fiber indices
static size_t ready_head = 0;

static size_t stack_bytes() {
#ifdef EMU_ASAN
    return (size_t)512 << 10;
#else
    return (size_t)128 << 10;
#endif
}

static Fiber *fiber_slot(unsigned i) {
    while (fibers.size() <= i) {
        auto f = std::make_unique<Fiber>();
        size_t page = (size_t)sysconf(_SC_PAGESIZE), size = stack_bytes();
        char *m = (char *)mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                               -1, 0);
        if (m == MAP_FAILED) lola_die("emu: cannot map a fiber stack of %zu bytes", size);
        mprotect(m, page, PROT_NONE); // guard page: a stack overflow faults
        f->stack = m + page;
        f->stack_size = size;
        fibers.push_back(std::move(f));
    }
    return fibers[i].get();
}

static void fiber_main(void);

static void fiber_init(Fiber *f) {
#ifdef EMU_ASAN
    __asan_unpoison_memory_region(f->stack, f->stack_size);
#endif
#if defined(__x86_64__)
    uintptr_t top = ((uintptr_t)f->stack + f->stack_size) & ~(uintptr_t)15;
    uintptr_t *r = (uintptr_t *)(top - 24); // return slot: 8 mod 16, so the trampoline sees an aligned stack
    r[0] = (uintptr_t)emu_ctx_trampoline;
    r[-1] = 0;                        // rbp
    r[-2] = 0;                        // rbx
    r[-3] = (uintptr_t)fiber_main;    // r12: called by the trampoline
    r[-4] = r[-5] = r[-6] = 0;        // r13, r14, r15
    uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(*(uint16_t *)&csr[1]));
    memcpy(&r[-7], csr, 8);
    f->ctx.sp = &r[-7];
#else
    getcontext(&f->ctx.uc);
    f->ctx.uc.uc_stack.ss_sp = f->stack;
    f->ctx.uc.uc_stack.ss_size = f->stack_size;
    f->ctx.uc.uc_link = nullptr;
    makecontext(&f->ctx.uc, fiber_main, 0);
#endif
    f->fake_stack = nullptr;
}

static void switch_ctx(Ctx *from, Ctx *to) {
#if defined(__x86_64__)
    emu_ctx_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
}

// Scheduler -> fiber f, until f waits or finishes.
static void run_fiber(Fiber *f) {
    cur = f;
    threadIdx = f->tid;
#ifdef EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, f->stack, f->stack_size);
    switch_ctx(&sched_ctx, &f->ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    switch_ctx(&sched_ctx, &f->ctx);
#endif
    cur = nullptr;
}

// Fiber -> scheduler (dying: the fiber never runs again).
static void yield_fiber(Fiber *f, bool dying) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(dying ? nullptr : &f->fake_stack, sched_stack_lo, sched_stack_size);
    switch_ctx(&f->ctx, &sched_ctx);
    __sanitizer_finish_switch_fiber(f->fake_stack, &sched_stack_lo, &sched_stack_size);
#else
    (void)dying;
    switch_ctx(&f->ctx, &sched_ctx);
#endif
    threadIdx = f->tid;
}

static void push_ready(unsigned i) { ready.push_back(i); }

// Makes the fibers that satisfy `pred` ready, in the block's current order.
template <typename P> static void release(P pred) {
    unsigned n = L->nthreads;
    for (unsigned k = 0; k < n; k++) {
        unsigned i = L->dir ? n - 1 - k : k;
        Fiber *f = fibers[i].get();
        if (pred(f)) f->state = F_READY, push_ready(i);
    }
}

static void release_block_barrier(void) {
    int s = L->bar_phase & 1;
    L->bar_res[s][0] = L->bar_or, L->bar_res[s][1] = L->bar_and, L->bar_res[s][2] = L->bar_count;
    L->bar_phase++;
    L->bar_arrived = 0, L->bar_or = 0, L->bar_and = 1, L->bar_count = 0;
    release([](Fiber *f) { return f->state == F_WAIT_BLOCK; });
    L->dir = !L->dir;
}

static void block_where(char *buf, size_t cap);

// Group g of warp w is complete: every lane receives the value of its source lane, then they run on.
static void release_warp(unsigned w, size_t g) {
    Warp &W = L->warps[w];
    WarpGroup G = W.groups[g];
    W.groups.erase(W.groups.begin() + (long)g);
    for (unsigned lane = 0; lane < 32; lane++) {
        if (!(G.arrived >> lane & 1u)) continue;
        Fiber *f = fibers[(w << 5) | lane].get();
        int src = f->shfl_src;
        if (src < 0) f->shfl_result = f->shfl_value;
        else if (G.mask >> src & 1u) f->shfl_result = fibers[(w << 5) | (unsigned)src]->shfl_value;
        else {
            char where[200];
            uint3 t = threadIdx;
            threadIdx = f->tid;
            block_where(where, sizeof where);
            threadIdx = t;
            emu_error(&n_errors, "%s: %s reads lane %d, which is not in the mask 0x%08x (undefined value)", where,
                      G.what, src, G.mask);
            f->shfl_result = ~(uint64_t)0; // NaN
        }
    }
    release([&](Fiber *f) { return (f->lin >> 5) == w && (G.arrived >> (f->lin & 31) & 1u) && f->state == F_WAIT_WARP; });
}

static void block_where(char *buf, size_t cap) {
    snprintf(buf, cap, "%s, block (%u, %u, %u), thread (%u, %u, %u)", cur_kernel, blockIdx.x, blockIdx.y, blockIdx.z,
             threadIdx.x, threadIdx.y, threadIdx.z);
}

static void fiber_main(void) {
    Fiber *f = cur;
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_stack_lo, &sched_stack_size);
#endif
    (*L->fn)();
    // The thread has finished: it leaves every barrier.
    f->state = F_DONE;
    L->alive--, L->exited++;
    Warp &W = L->warps[f->lin >> 5];
    unsigned bit = 1u << (f->lin & 31);
    W.exited |= bit;
    for (size_t g = 0; g < W.groups.size(); g++)
        if (W.groups[g].mask & bit) {
            char where[200];
            block_where(where, sizeof where);
            emu_error(&n_errors, "%s: the thread exits while lanes 0x%08x of its warp wait for it in %s (mask 0x%08x)",
                      where, W.groups[g].arrived, W.groups[g].what, W.groups[g].mask);
            W.groups[g].mask &= ~bit;
            if (W.groups[g].arrived == W.groups[g].mask) {
                release_warp(f->lin >> 5, g);
                break;
            }
        }
    if (L->bar_arrived && !L->exit_barrier_reported) {
        char where[200];
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: the thread exits while %u threads of the block wait in __syncthreads (a barrier must "
                  "be reached by every thread of the block)", where, L->bar_arrived);
        L->exit_barrier_reported = true;
    }
    if (L->bar_arrived && L->bar_arrived == L->alive) release_block_barrier();
    yield_fiber(f, true);
    abort(); // never resumed
}

int emu_block_barrier(int pred, int kind) {
    Fiber *f = cur;
    if (!f) lola_die("emu: __syncthreads outside a kernel");
    if (L->exited && !L->exit_barrier_reported) {
        char where[200];
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: __syncthreads after %u threads of the block exited (a barrier must be reached by "
                  "every thread of the block)", where, L->exited);
        L->exit_barrier_reported = true;
    }
    L->bar_arrived++;
    L->bar_or |= pred != 0, L->bar_and &= pred != 0, L->bar_count += pred != 0;
    int s = L->bar_phase & 1;
    f->state = F_WAIT_BLOCK, f->waits_in = "__syncthreads";
    if (L->bar_arrived == L->alive) release_block_barrier();
    yield_fiber(f, false);
    return kind == 1 ? L->bar_res[s][0] : kind == 2 ? L->bar_res[s][1] : kind == 3 ? L->bar_res[s][2] : 0;
}

uint64_t emu_warp_exchange(unsigned mask, uint64_t bits, int src, const char *what) {
    Fiber *f = cur;
    if (!f) lola_die("emu: %s outside a kernel", what);
    unsigned lane = f->lin & 31, w = f->lin >> 5, bit = 1u << lane;
    Warp &W = L->warps[w];
    char where[200];
    if (!(mask & bit)) {
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: %s with mask 0x%08x, which does not name the calling lane %u", where, what, mask,
                  lane);
    }
    if (mask & ~W.exist) {
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: %s with mask 0x%08x names lanes that do not exist (the warp has lanes 0x%08x: "
                  "blockDim not a multiple of 32)", where, what, mask, W.exist);
    }
    unsigned m = (mask & W.exist) | bit;
    if (m & W.exited) {
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: %s with mask 0x%08x names lanes that have exited (0x%08x)", where, what, mask,
                  m & W.exited);
        m &= ~W.exited;
    }
    size_t g = 0;
    for (; g < W.groups.size(); g++) {
        if (W.groups[g].mask == m) break;
        if (W.groups[g].mask & m) {
            block_where(where, sizeof where);
            emu_error(&n_errors, "%s: %s with mask 0x%08x while lanes 0x%08x of the warp wait in %s with mask 0x%08x "
                      "(the masks of one exchange must agree)", where, what, m, W.groups[g].arrived,
                      W.groups[g].what, W.groups[g].mask);
            return src < 0 ? bits : ~(uint64_t)0;
        }
    }
    if (g == W.groups.size()) {
        W.groups.push_back(WarpGroup{});
        W.groups[g].mask = m, W.groups[g].what = what;
    }
    f->shfl_value = bits, f->shfl_src = src;
    W.groups[g].arrived |= bit;
    f->state = F_WAIT_WARP, f->waits_in = what;
    if (W.groups[g].arrived == W.groups[g].mask) release_warp(w, g);
    yield_fiber(f, false);
    return f->shfl_result;
}

// ---------------------------------------------------------------------------------------------
// Shared memory

// (function statics: registrations run from other files' static initialisers)
static std::set<void *> &known_shared_set() {
    static std::set<void *> &s = *new std::set<void *>;
    return s;
}

void emu_shared_decl(void *p, size_t bytes, const char *name) {
    if (!L) lola_die("emu: __shared__ %s declared outside a kernel", name);
    for (const SharedRegion &r : L->shared)
        if (r.p == p) return;
    L->shared.push_back(SharedRegion{p, bytes, name});
    if (known_shared_set().insert(p).second) memset(p, 0xFF, bytes); // undefined before its first write
}

void *emu_dyn_shared(void) {
    if (!L) lola_die("emu: extern __shared__ outside a kernel");
    if (!L->smem) {
        char where[200];
        block_where(where, sizeof where);
        emu_error(&n_errors, "%s: uses dynamic shared memory, but the launch gave 0 bytes", where);
    }
    return L->dyn;
}

// ---------------------------------------------------------------------------------------------
// Device memory: exact-size buffers between guard bands (filled with a pattern, or poisoned for
// AddressSanitizer), registered so that kernel arguments and copies can be checked.

namespace {
struct Region {
    size_t bytes;
    char *base;
    std::string what;
};
enum { GUARD = 64, FRONT = 256 };
const unsigned char GUARD_BYTE = 0x7F; // 3.4e38 as a float, 1.4e306 as a double: loud when read
std::map<uintptr_t, Region> &regions = *new std::map<uintptr_t, Region>; // (used after main starts only)
size_t dev_bytes = 0, dev_peak = 0;
long n_allocs = 0;

// The region holding [p, p + bytes) (bytes = 0: p may be its end), or nullptr.
const std::pair<const uintptr_t, Region> *find_region(const void *p, size_t bytes) {
    uintptr_t a = (uintptr_t)p;
    auto it = regions.upper_bound(a);
    if (it == regions.begin()) return nullptr;
    --it;
    if (a + bytes <= it->first + it->second.bytes) return &*it;
    return nullptr;
}

bool guards_intact(uintptr_t lo, const Region &r, char *msg, size_t cap) {
#ifdef EMU_ASAN
    (void)lo, (void)r, (void)msg, (void)cap;
    return true; // the guards are poisoned: AddressSanitizer reports the access itself
#else
    const unsigned char *f = (const unsigned char *)lo - GUARD, *b = (const unsigned char *)lo + r.bytes;
    for (int i = GUARD - 1; i >= 0; i--)
        if (f[i] != GUARD_BYTE) {
            snprintf(msg, cap, "%d bytes before", GUARD - i);
            return false;
        }
    for (int i = GUARD - 1; i >= 0; i--)
        if (b[i] != GUARD_BYTE) {
            snprintf(msg, cap, "%d bytes after the end of", i + 1);
            return false;
        }
    return true;
#endif
}

void check_guards(const char *after) {
    char msg[64];
    for (auto &kv : regions)
        if (!guards_intact(kv.first, kv.second, msg, sizeof msg)) {
            emu_error(&n_guard_hits, "%s wrote %s %s (%zu bytes at %p)", after, msg, kv.second.what.c_str(),
                      kv.second.bytes, (void *)kv.first);
            unsigned char *f = (unsigned char *)kv.first - GUARD, *b = (unsigned char *)kv.first + kv.second.bytes;
            memset(f, GUARD_BYTE, GUARD), memset(b, GUARD_BYTE, GUARD); // report each write once
        }
}
} // namespace

// bytes of device memory (256-byte aligned, as cudaMalloc), filled with `fill`.
void *emu_dev_alloc(size_t bytes, int fill, const char *what) {
    size_t total = FRONT + ((bytes + GUARD + 255) & ~(size_t)255);
    char *base = (char *)aligned_alloc(256, total);
    if (!base) lola_die("emu: out of host memory allocating %zu bytes of emulated device memory (%s)", bytes, what);
    char *p = base + FRONT;
    memset(p - GUARD, GUARD_BYTE, GUARD);
    memset(p + bytes, GUARD_BYTE, GUARD);
    memset(p, fill, bytes);
#ifdef EMU_ASAN
    __asan_poison_memory_region(base, FRONT);
    __asan_poison_memory_region(p + bytes, total - FRONT - bytes);
#endif
    regions[(uintptr_t)p] = Region{bytes, base, what};
    dev_bytes += bytes, n_allocs++;
    if (dev_bytes > dev_peak) dev_peak = dev_bytes;
    return p;
}

void emu_dev_free(void *p, const char *who) {
    auto it = regions.find((uintptr_t)p);
    if (it == regions.end()) lola_die("%s: %p was not returned by nn_alloc (or was freed twice)", who, p);
    char msg[64];
    if (!guards_intact(it->first, it->second, msg, sizeof msg))
        emu_error(&n_guard_hits, "something wrote %s %s (%zu bytes at %p), seen when it was freed", msg,
                  it->second.what.c_str(), it->second.bytes, p);
    size_t total = FRONT + ((it->second.bytes + GUARD + 255) & ~(size_t)255);
#ifdef EMU_ASAN
    __asan_unpoison_memory_region(it->second.base, total);
#endif
    memset(it->second.base, 0xFF, total);
    free(it->second.base);
    dev_bytes -= it->second.bytes;
    regions.erase(it);
}

// nn.h's allocation on the emulated device (replaces the CPU backend's, weakened by run.sh).
extern "C" float *nn_alloc(size_t n) {
    if (n > SIZE_MAX / sizeof(float)) lola_die("nn_alloc: %zu floats overflow size_t", n);
    char what[64];
    snprintf(what, sizeof what, "an nn_alloc buffer of %zu floats", n);
    return (float *)emu_dev_alloc(n * sizeof(float), 0, what);
}
// memory.cu's nn_free tells the bf16 weight cache (precision.cu, when emulated) first.
void lcu_note_free(const void *p, size_t bytes) __attribute__((weak));
extern "C" void nn_free(float *p) {
    if (!p) return;
    auto it = regions.find((uintptr_t)p);
    if (it != regions.end() && lcu_note_free) lcu_note_free(p, it->second.bytes);
    emu_dev_free(p, "nn_free");
}
extern "C" size_t nn_bytes_in_use(void) { return dev_bytes; }
extern "C" size_t nn_bytes_peak(void) { return dev_peak; }

void emu_check_device_ptr(const void *p, const char *kernel, int arg) {
    if (!p || find_region(p, 0)) return;
    emu_error(&n_host_ptrs, "launch of %s: argument %d (%p) is not in device memory (a host pointer, or a freed "
              "buffer: the kernel would fault)", kernel, arg, p);
}
bool emu_is_device_range(const void *p, size_t bytes) { return p && find_region(p, bytes); }
void emu_check_device_range(const void *p, size_t bytes, const char *what) {
    if (find_region(p, bytes)) return;
    emu_error(&n_host_ptrs, "%s: [%p, +%zu bytes) is not inside one device buffer", what, p, bytes);
}
void emu_check_host_range(const void *p, size_t bytes, const char *what) {
    if (!bytes) return;
    uintptr_t a = (uintptr_t)p;
    auto it = regions.upper_bound(a + bytes - 1);
    if (it != regions.begin()) {
        --it;
        if (it->first < a + bytes && a < it->first + it->second.bytes) {
            emu_error(&n_host_ptrs, "%s: [%p, +%zu bytes) is device memory where host memory is expected", what, p,
                      bytes);
        }
    }
}

// An invalid copy (as the device would refuse or fault on) is reported and not done.
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
    if (!bytes) return cudaSuccess;
    long before = n_host_ptrs;
    bool sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    bool dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    if (sd) emu_check_device_range(s, bytes, "cudaMemcpyAsync source");
    else emu_check_host_range(s, bytes, "cudaMemcpyAsync source");
    if (dd) emu_check_device_range(d, bytes, "cudaMemcpyAsync destination");
    else emu_check_host_range(d, bytes, "cudaMemcpyAsync destination");
    if (n_host_ptrs != before) return cudaErrorInvalidValue;
    memmove(d, s, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *d, int v, size_t bytes, cudaStream_t) {
    if (!bytes) return cudaSuccess;
    long before = n_host_ptrs;
    emu_check_device_range(d, bytes, "cudaMemsetAsync");
    if (n_host_ptrs != before) return cudaErrorInvalidValue;
    memset(d, v, bytes);
    return cudaSuccess;
}

// ---------------------------------------------------------------------------------------------
// Launches

namespace {
struct KernelInfo {
    std::string file;
    long launches = 0;
};
std::map<std::string, KernelInfo> &kernel_map() { // a function static: filled by other files' static initialisers
    static std::map<std::string, KernelInfo> &m = *new std::map<std::string, KernelInfo>;
    return m;
}
#define kernels kernel_map()
const size_t SMEM_LIMIT = 48 * 1024; // per block without cudaFuncSetAttribute (none of these files opts in)
} // namespace

int emu_register_kernels(const char *file, const char *names) {
    std::string s(names), base(file);
    size_t sl = base.rfind('/');
    if (sl != std::string::npos) base = base.substr(sl + 1);
    for (size_t p = 0; p < s.size();) {
        size_t e = s.find(',', p);
        if (e == std::string::npos) e = s.size();
        if (e > p) kernels[s.substr(p, e - p)].file = base;
        p = e + 1;
    }
    return 0;
}

void emu_launch_fn(dim3 grid, dim3 block, size_t smem, const char *name, unsigned bound,
                   const std::function<void()> &check, const std::function<void()> &fn) {
    if (L) lola_die("emu: launch of %s from inside the kernel %s (dynamic parallelism is not emulated)", name,
                    cur_kernel);
    static pthread_t launcher = pthread_self(); // the emulation's state belongs to one OS thread
    if (!pthread_equal(launcher, pthread_self()))
        lola_die("emu: launch of %s from a second OS thread (inside an OpenMP region?): not emulated", name);
    n_launches++;
    std::string key(name);
    size_t lt = key.find('<');
    if (lt != std::string::npos) key = key.substr(0, lt);
    kernels[key].launches++;
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    bool bad = block.x < 1 || block.y < 1 || block.z < 1 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
               threads > 1024 || grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 2147483647u || grid.y > 65535 ||
               grid.z > 65535 || (bound && threads > bound) || smem > SMEM_LIMIT;
    if (bad) {
        char lb[48] = "";
        if (bound) snprintf(lb, sizeof lb, " (__launch_bounds__ %u)", bound);
        emu_error(&n_bad_launches, "launch of %s: grid (%u, %u, %u), block (%u, %u, %u)%s, %zu bytes of dynamic "
                  "shared memory: outside CUDA's limits (the launch fails on the device; not run)", name, grid.x,
                  grid.y, grid.z, block.x, block.y, block.z, lb, smem);
        return;
    }
    cur_kernel = name;
    check();
    Launch launch;
    L = &launch;
    launch.name = name, launch.grid = grid, launch.block = block, launch.smem = smem, launch.fn = &fn;
    launch.nthreads = (unsigned)threads;
    unsigned nw = (launch.nthreads + 31) / 32;
    launch.warps.resize(nw);
    for (unsigned w = 0; w < nw; w++) {
        unsigned lanes = launch.nthreads - w * 32 < 32 ? launch.nthreads - w * 32 : 32;
        launch.warps[w].exist = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    }
    // Dynamic shared memory between guard bands, the one after it as long as a block's shared memory
    // can be (the device faults on an access past the block's allocation); checked after the grid.
    const size_t tail = SMEM_LIMIT + GUARD;
    std::vector<unsigned char> dyn(GUARD + smem + tail, GUARD_BYTE);
    memset(dyn.data() + GUARD, 0xFF, smem);
    launch.dyn = smem ? (char *)dyn.data() + GUARD : nullptr;
#ifdef EMU_ASAN
    __asan_poison_memory_region(dyn.data(), GUARD);
    __asan_poison_memory_region(dyn.data() + GUARD + smem, tail);
#endif
    for (unsigned i = 0; i < launch.nthreads; i++) {
        Fiber *f = fiber_slot(i);
        f->lin = i;
        f->tid = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
    }
    gridDim = grid, blockDim = block;
    emu_in_kernel = true;
    unsigned long long nb = 0;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++, nb++) {
                blockIdx = uint3{bx, by, bz};
                launch.alive = launch.nthreads, launch.exited = 0, launch.bar_arrived = 0;
                launch.bar_or = 0, launch.bar_and = 1, launch.bar_count = 0;
                launch.exit_barrier_reported = false;
                for (Warp &W : launch.warps) W.groups.clear(), W.exited = 0;
                launch.dir = nb & 1; // odd blocks start their threads in reverse order
                ready.clear(), ready_head = 0;
                for (unsigned k = 0; k < launch.nthreads; k++) {
                    unsigned i = launch.dir ? launch.nthreads - 1 - k : k;
                    fiber_init(fibers[i].get());
                    fibers[i]->state = F_READY;
                    ready.push_back(i);
                }
                while (ready_head < ready.size()) {
                    Fiber *f = fibers[ready[ready_head++]].get();
                    if (ready_head > 4096 && ready_head * 2 > ready.size()) { // keep the queue short
                        ready.erase(ready.begin(), ready.begin() + (long)ready_head);
                        ready_head = 0;
                    }
                    run_fiber(f);
                }
                if (launch.alive) { // every remaining thread waits for something that cannot happen
                    std::string w;
                    int shown = 0;
                    for (unsigned i = 0; i < launch.nthreads && shown < 4; i++) {
                        Fiber *f = fibers[i].get();
                        if (f->state == F_DONE) continue;
                        char b[160];
                        snprintf(b, sizeof b, "%sthread %u in %s", shown ? ", " : "", i, f->waits_in);
                        w += b, shown++;
                    }
                    emu_error(&n_errors, "%s, block (%u, %u, %u): deadlock: %u threads wait forever (%s%s); the "
                              "block is abandoned", name, bx, by, bz, launch.alive, w.c_str(),
                              launch.alive > 4 ? ", ..." : "");
                }
                // Shared memory is undefined at the start of the next block.
                for (const SharedRegion &r : launch.shared) memset(r.p, 0xFF, r.bytes);
                if (smem) memset(launch.dyn, 0xFF, smem);
            }
    emu_in_kernel = false;
#ifdef EMU_ASAN
    __asan_unpoison_memory_region(dyn.data(), dyn.size());
#else // (poisoned with ASAN=1: AddressSanitizer reports the access itself)
    for (size_t i = 0; i < dyn.size(); i++)
        if (dyn[i] != GUARD_BYTE && (i < GUARD || i >= GUARD + smem)) {
            emu_error(&n_guard_hits, "%s: wrote outside its %zu bytes of dynamic shared memory (%zd bytes %s it)",
                      name, smem, i < GUARD ? (ssize_t)(GUARD - i) : (ssize_t)(i - GUARD - smem + 1),
                      i < GUARD ? "before" : "after the end of");
            break;
        }
#endif
    size_t stat = 0;
    for (const SharedRegion &r : launch.shared) stat += r.bytes;
    if (stat + smem > SMEM_LIMIT)
        emu_error(&n_bad_launches, "launch of %s: %zu bytes of static + %zu of dynamic shared memory > the 48 KiB a "
                  "block gets without cudaFuncSetAttribute (the launch fails on the device)", name, stat, smem);
    L = nullptr;
    cur_kernel = "(host code)";
    check_guards(name);
}

// The report's counters (selftest.cu): errors, bad launches, host pointers, guard hits; reset.
void emu_counters(long c[4]) { c[0] = n_errors, c[1] = n_bad_launches, c[2] = n_host_ptrs, c[3] = n_guard_hits; }
void emu_reset_counters(void) { n_errors = n_bad_launches = n_host_ptrs = n_guard_hits = n_api_errors = 0; }
long emu_api_error_count(void) { return n_api_errors; }

// ---------------------------------------------------------------------------------------------
// Report: the emulation's own checks as PASS / FAIL lines (tests/test.h style), when the program
// ends. Always: launch limits, synchronisation errors, pointers, guard bands, library API misuse.
// EMU_REQUIRE (comma-separated) adds: cublas (cuBLAS calls happened, none in a math mode nn.h
// does not allow), tf32 (SGEMMs ran in TF32 mode), params (lcu_note_params and lcu_note_write were
// called), gemm (GEMMs through cuBLAS: fp32 and bf16 GemmEx), batched (strided-batched GEMMs), lt (cuBLASLt matmuls
// with the bias and bias-gradient epilogues, in exact fp32, TF32 and bf16; with EMU_LT_FAIL set:
// none), cudnn (cuDNN ran every direction, and in bf16 and TF32 and NHWC, unless EMU_CUDNN_FAIL
// makes every call fail: then none ran; no misaligned filter pointer reached cuDNN, no
// non-deterministic algorithm ran in deterministic mode, no non-GEMM algorithm with reduced
// precision; with EMU_CUDNN_FAIL=first every refused direction recovered on another algorithm);
// EMU_COVER (comma-separated file names, e.g. elementwise.cu, or kernel names) requires that every
// kernel of those files, and every kernel named, was launched.

void emu_cublas_stats(long *bad_mode, long *tf32_gemms, long *calls);
void emu_cublas_gemm_stats(long *gemms, long *bf16_gemms, long *batched);
void emu_note_stats(long *params_calls, long *write_calls);
struct EmuDnnStats {
    long runs[3], injected, unsupported, walign, nondet_det, nongemm_reduced, tf32, bf16, nhwc, heuristics;
    long refused_keys, recovered_keys;
    const char *mode;
};
void emu_cudnn_stats(EmuDnnStats *s);
struct EmuLtStats {
    long heuristics, matmuls, bias, bgradb, bgrada, tf32, bf16, exact, slow;
};
void emu_lt_stats(EmuLtStats *s);

static bool listed(const char *list, const char *name) {
    if (!list) return false;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = p + strcspn(p, ", ");
        if ((size_t)(e - p) == n && !strncmp(p, name, n)) return true;
        p = *e ? e + 1 : e;
    }
    return false;
}

static void report(void) {
    if (!emu_report) return;
    int bad = 0;
    const char *tag = getenv("EMU_NAME") && *getenv("EMU_NAME") ? getenv("EMU_NAME") : "kernel_emu";
    const char *req = getenv("EMU_REQUIRE"), *cover = getenv("EMU_COVER");
    long distinct = 0;
    for (auto &kv : kernels) distinct += kv.second.launches > 0;
    printf("%s %s: %ld kernel launches (%ld kernels), %ld outside CUDA's launch limits (grid, block, "
           "__launch_bounds__, 48 KiB shared memory)\n", n_bad_launches ? "FAIL" : "PASS", tag, n_launches, distinct,
           n_bad_launches);
    bad |= n_bad_launches != 0;
    printf("%s %s: %ld synchronisation errors (barrier after an exit, warp masks, deadlocks)\n",
           n_errors ? "FAIL" : "PASS", tag, n_errors);
    bad |= n_errors != 0;
    printf("%s %s: %ld kernel arguments / copies where device memory was expected and is not (or the "
           "reverse)\n", n_host_ptrs ? "FAIL" : "PASS", tag, n_host_ptrs);
    bad |= n_host_ptrs != 0;
    printf("%s %s: %ld library calls with invalid arguments (cuBLAS / cuBLASLt / cuDNN: sizes, leading "
           "dimensions, descriptors, operands outside device memory, overlaps, workspaces, alignment promises)\n",
           n_api_errors ? "FAIL" : "PASS", tag, n_api_errors);
    bad |= n_api_errors != 0;
#ifdef EMU_ASAN
    printf("PASS %s: %ld device allocations, guard bands poisoned for AddressSanitizer\n", tag, n_allocs);
#else
    check_guards("host code");
    printf("%s %s: %ld writes past either end of %ld device allocations (guard bands)\n",
           n_guard_hits ? "FAIL" : "PASS", tag, n_guard_hits, n_allocs);
    bad |= n_guard_hits != 0;
#endif
    if (cover && *cover) {
        std::string missing;
        long nk = 0;
        for (auto &kv : kernels)
            if (listed(cover, kv.second.file.c_str()) || listed(cover, kv.first.c_str())) {
                nk++;
                if (!kv.second.launches) missing += " " + kv.first;
            }
        printf("%s %s: every kernel of %s launched (%ld kernels)%s%s\n", missing.empty() && nk ? "PASS" : "FAIL",
               tag, cover, nk, missing.empty() ? "" : "; never:", missing.c_str());
        bad |= !missing.empty() || !nk;
    }
    long bad_mode, tf32, calls, params, writes;
    emu_cublas_stats(&bad_mode, &tf32, &calls);
    emu_note_stats(&params, &writes);
    if (listed(req, "cublas")) {
        printf("%s %s: %ld cuBLAS calls, %ld in a math mode nn.h does not allow (TF32 only for SGEMM in tf32 "
               "/ bf16 mode)\n", bad_mode || !calls ? "FAIL" : "PASS", tag, calls, bad_mode);
        bad |= bad_mode || !calls;
    }
    if (listed(req, "tf32")) {
        printf("%s %s: %ld SGEMM calls in TF32 mode (nn_gemm / psgd_dense_update in the tf32 / bf16 checks)\n",
               tf32 ? "PASS" : "FAIL", tag, tf32);
        bad |= !tf32;
    }
    if (listed(req, "params")) {
        printf("%s %s: lcu_note_params called %ld times, lcu_note_write %ld times (bf16 weight cache "
               "bookkeeping)\n", params && writes ? "PASS" : "FAIL", tag, params, writes);
        bad |= !params || !writes;
    }
    auto line = [&](bool ok, const char *fmt, auto... a) {
        printf("%s %s: ", ok ? "PASS" : "FAIL", tag);
        printf(fmt, a...);
        printf("\n");
        bad |= !ok;
    };
    if (listed(req, "gemm")) {
        long g, gb, gs;
        emu_cublas_gemm_stats(&g, &gb, &gs);
        line(g > 0 && gb > 0, "%ld cuBLAS GEMMs, %ld of them with bf16 operands (GemmEx), %ld strided-batched", g,
             gb, gs);
    }
    if (listed(req, "batched")) {
        long g, gb, gs;
        emu_cublas_gemm_stats(&g, &gb, &gs);
        line(gs > 0, "%ld strided-batched cuBLAS GEMMs (of %ld)", gs, g);
    }
    if (listed(req, "lt")) {
        EmuLtStats L;
        emu_lt_stats(&L);
        const char *f = getenv("EMU_LT_FAIL");
        if (f && *f && strcmp(f, "none"))
            line(L.matmuls == 0, "cuBLASLt refused by EMU_LT_FAIL=%s: %ld heuristics asked, %ld matmuls ran (0 "
                 "expected: the cuBLAS fallback did the work)", f, L.heuristics, L.matmuls);
        else
            line(L.matmuls > 0 && L.bias > 0 && L.bgradb > 0 && L.tf32 > 0 && L.bf16 > 0 && L.exact > 0,
                 "%ld cuBLASLt matmuls (%ld with the bias epilogue, %ld bias-gradient BGRADB, %ld BGRADA; exact fp32 "
                 "%ld, TF32 %ld, bf16 %ld; %ld on the element-aligned algorithm); %ld heuristics", L.matmuls, L.bias,
                 L.bgradb, L.bgrada, L.exact, L.tf32, L.bf16, L.slow, L.heuristics);
    }
    if (listed(req, "cudnn")) {
        EmuDnnStats D;
        emu_cudnn_stats(&D);
        bool none_ok = strstr(D.mode, "all") || strstr(D.mode, "plan") || strstr(D.mode, "nohandle");
        long r0 = D.runs[0], r1 = D.runs[1], r2 = D.runs[2];
        if (none_ok)
            line(r0 + r1 + r2 == 0, "EMU_CUDNN_FAIL=%s: no cuDNN convolution ran (%ld injected refusals, %ld "
                 "heuristic calls): the fallbacks did the work", D.mode, D.injected, D.heuristics);
        else
            line(r0 > 0 && r1 > 0 && r2 > 0 && D.bf16 > 0 && D.tf32 > 0 && D.nhwc > 0,
                 "cuDNN ran %ld forward, %ld backward-data, %ld backward-filter convolutions (%ld bf16, %ld TF32, "
                 "%ld NHWC; EMU_CUDNN_FAIL=%s: %ld injected refusals, %ld calls of unsupported algorithms)", r0, r1,
                 r2, D.bf16, D.tf32, D.nhwc, D.mode, D.injected, D.unsupported);
        line(D.walign == 0, "%ld cuDNN calls got a filter / filter-gradient pointer not 16-byte aligned (conv.cu "
             "copies misaligned weights to an aligned slot)", D.walign);
        line(D.nondet_det == 0, "%ld non-deterministic cuDNN algorithms ran in deterministic mode", D.nondet_det);
        line(D.nongemm_reduced == 0, "%ld non-GEMM cuDNN algorithms (FFT, Winograd) ran with TF32 / bf16 operands",
             D.nongemm_reduced);
        if (strstr(D.mode, "first"))
            line(D.refused_keys > 0 && D.recovered_keys == D.refused_keys, "EMU_CUDNN_FAIL=first: %ld of %ld "
                 "refused (descriptor, direction) pairs recovered on the next candidate", D.recovered_keys,
                 D.refused_keys);
    }
    fflush(stdout);
    if (bad) _exit(1);
}
static int registered = (atexit(report), 0);
