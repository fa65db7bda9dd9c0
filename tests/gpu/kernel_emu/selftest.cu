// selftest.cu: checks of the CUDA emulation itself (cuda_emu.h, emu_core.cpp), compiled through
// rewrite.py like the backend's files and run by run.sh before the sections: thread and warp
// layout of 3-D blocks, barriers and their reductions, shuffles (xor, down, up, idx, widths,
// disjoint masks), that a missing __syncthreads gives a wrong result in one of the thread orders,
// that shared memory starts as NaN, FMA contraction in device code only, the ulp perturbation of
// device math only inside kernels; and that each kind of device error is reported: a barrier after
// an exit, bad or mismatched shuffle masks, a deadlock, launches outside CUDA's limits (threads,
// grid, __launch_bounds__, static and dynamic shared memory), host pointers as kernel arguments and
// in copies, writes past device buffers and past dynamic shared memory. PASS / FAIL lines as
// tests/test.h; exit status 0 when all pass.
#include <math.h>

#include "cuda_common.cuh"

void *emu_dev_alloc(size_t bytes, int fill, const char *what);
void emu_dev_free(void *p, const char *who);
void emu_counters(long c[4]);
void emu_reset_counters(void);
extern bool emu_quiet, emu_report;

static int n_pass = 0, n_fail = 0;
#define EXPECT(cond, ...)                                                                                             \
    do {                                                                                                             \
        bool ok_ = (cond);                                                                                           \
        printf("%s emu selftest: ", ok_ ? "PASS" : "FAIL");                                                          \
        printf(__VA_ARGS__);                                                                                         \
        printf("\n");                                                                                                \
        ok_ ? n_pass++ : n_fail++;                                                                                   \
    } while (0)

// error counters added since the last call: errors, bad launches, host pointers, guard hits
static void delta(long d[4]) {
    static long last[4] = {0, 0, 0, 0};
    long c[4];
    emu_counters(c);
    for (int i = 0; i < 4; i++) d[i] = c[i] - last[i], last[i] = c[i];
}

// ---------------------------------------------------------------------------------------------
// Layout, barriers, shuffles

__global__ void layout_kernel(int *out) {
    int lin = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    int base = __shfl_sync(0xffffffffu, lin, 0); // lane 0 of this thread's warp
    out[blockIdx.x * 64 + lin] = lin * 1000 + base;
}

#define NB 128
__global__ void neighbour_kernel(float *out, int sync) {
    __shared__ float sh[NB];
    int t = threadIdx.x;
    sh[t] = (float)(t + 1);
    if (sync) __syncthreads();
    out[blockIdx.x * NB + t] = sh[(t + 1) % NB];
}

__global__ void barrier_reduce_kernel(int *out) {
    int t = threadIdx.x;
    out[0] = __syncthreads_or(t == 77);
    out[1] = __syncthreads_and(t != 77);
    out[2] = __syncthreads_count(t % 3 == 0);
    __syncthreads();
    out[3] = __syncthreads_and(1);
}

__global__ void shuffle_kernel(int *out) {
    int lane = threadIdx.x & 31;
    int s = lane;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    int down = __shfl_down_sync(0xffffffffu, lane, 3, 16); // within 16-lane segments
    int up = __shfl_up_sync(0xffffffffu, lane, 5);
    int idx = __shfl_sync(0xffffffffu, lane * 2, 31 - lane);
    int half; // divergent halves with disjoint masks
    if (lane < 16) half = __shfl_xor_sync(0x0000ffffu, lane, 1);
    else half = __shfl_xor_sync(0xffff0000u, lane, 2);
    double d = __shfl_xor_sync(0xffffffffu, (double)lane + 0.25, 1);
    out[threadIdx.x * 6 + 0] = s;
    out[threadIdx.x * 6 + 1] = down;
    out[threadIdx.x * 6 + 2] = up;
    out[threadIdx.x * 6 + 3] = idx;
    out[threadIdx.x * 6 + 4] = half;
    out[threadIdx.x * 6 + 5] = (int)(d * 4.0);
}

__global__ void uninit_shared_kernel(float *out) {
    __shared__ float sh[64];
    if (threadIdx.x == 0) out[blockIdx.x] = sh[5]; // never written: undefined
    __syncthreads();
    sh[5] = 1.0f;
}

__device__ float fma_expr(float a, float b, float c) { return a * b + c; }
__device__ float rn_expr(float a, float b, float c) { return __fadd_rn(__fmul_rn(a, b), c); }
__global__ void arith_kernel(float *out, const float *in) {
    float a = in[0], b = in[1], c = in[2];
    out[0] = fma_expr(a, b, c);
    out[1] = rn_expr(a, b, c);
}
static float host_expr(float a, float b, float c) { return a * b + c; }

__global__ void expf_kernel(float *out, const float *x, int n) {
    GRID_STRIDE(i, (size_t)n) out[i] = expf(x[i]);
}

// ---------------------------------------------------------------------------------------------
// Device errors the emulation must report

__global__ void exit_then_barrier_kernel(float *x) {
    if (threadIdx.x == 3) return;
    __syncthreads();
    x[threadIdx.x] = 1.0f;
}
__global__ void mask_without_caller_kernel(int *out) {
    out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1, 0); // lanes 16..31 are not in the mask
}
__global__ void source_outside_mask_kernel(int *out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 20);
}
__global__ void overlapping_masks_kernel(int *out) {
    int lane = threadIdx.x & 31;
    if (lane < 8) out[lane] = __shfl_xor_sync(0x000000ffu, lane, 1);
    else out[lane] = __shfl_xor_sync(0xffffffffu, lane, 1); // overlaps the group of lanes 0..7
}
__global__ void deadlock_kernel(int *out) {
    if (threadIdx.x % 2) __syncthreads();
    else __syncwarp();
    out[threadIdx.x] = 1;
}
__global__ void exited_lanes_kernel(int *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}
__global__ void partial_warp_kernel(float *out) {
    out[threadIdx.x] = lcu_block_sum(1.0f); // blockDim 48: the full mask names lanes that do not exist
}
__global__ void simple_kernel(float *x) { x[threadIdx.x] = 2.0f; }
__global__ void __launch_bounds__(128) bounded_kernel(float *x) { x[threadIdx.x] = 3.0f; }
__global__ void big_static_shared_kernel(float *x) {
    __shared__ float big[10240]; // 40 KiB
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    x[threadIdx.x] = big[(threadIdx.x + 1) % blockDim.x];
}
__global__ void dyn_shared_kernel(float *x, int n) {
    extern __shared__ float dyn[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) dyn[i] = (float)i;
    __syncthreads();
    x[threadIdx.x] = dyn[0];
}
__global__ void past_end_kernel(float *x, size_t n) {
    GRID_STRIDE(i, n + 1) x[i] = 5.0f; // one element too many
}

int main(void) {
    emu_report = false; // (its own PASS / FAIL lines instead)
    long d[4];
    delta(d);
    // 3-D blocks: linear index x + y bx + z bx by, warps of 32 consecutive linear indices
    int *io = (int *)emu_dev_alloc(4096 * sizeof(int), 0, "selftest ints");
    layout_kernel<<<2, dim3(8, 4, 2)>>>(io);
    int bad = 0;
    for (int b = 0; b < 2; b++)
        for (int l = 0; l < 64; l++) bad += io[b * 64 + l] != l * 1000 + (l & ~31);
    EXPECT(bad == 0, "block (8, 4, 2): linear thread index and warp lane 0 (%d wrong)", bad);

    float *fo = (float *)emu_dev_alloc(4096 * sizeof(float), 0, "selftest floats");
    neighbour_kernel<<<2, NB>>>(fo, 1);
    bad = 0;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < NB; t++) bad += fo[b * NB + t] != (float)((t + 1) % NB + 1);
    EXPECT(bad == 0, "shared memory exchange with __syncthreads: every thread reads its neighbour's value (%d wrong)", bad);
    neighbour_kernel<<<2, NB>>>(fo, 0);
    int wrong0 = 0, wrong1 = 0;
    for (int t = 0; t < NB; t++) wrong0 += fo[t] != (float)((t + 1) % NB + 1), wrong1 += fo[NB + t] != (float)((t + 1) % NB + 1);
    EXPECT(wrong0 > 0 && wrong1 > 0, "without the __syncthreads the exchange goes wrong in both thread orders (%d and %d "
           "of %d threads read an unwritten value)", wrong0, wrong1, NB);

    barrier_reduce_kernel<<<1, 256>>>(io);
    EXPECT(io[0] == 1 && io[1] == 0 && io[2] == 86 && io[3] == 1, "__syncthreads_or / _and / _count: %d %d %d %d (1 0 86 1)",
           io[0], io[1], io[2], io[3]);

    shuffle_kernel<<<1, 64>>>(io);
    bad = 0;
    for (int t = 0; t < 64; t++) {
        int lane = t & 31, *o = io + t * 6;
        int down = (lane & 15) + 3 < 16 ? lane + 3 : lane, up = lane >= 5 ? lane - 5 : lane;
        int half = lane < 16 ? lane ^ 1 : lane ^ 2;
        bad += o[0] != 496 || o[1] != down || o[2] != up || o[3] != (31 - lane) * 2 || o[4] != half ||
               o[5] != (lane ^ 1) * 4 + 1;
    }
    EXPECT(bad == 0, "shuffles: xor butterfly sum, down / up with widths, indexed, disjoint masks, doubles (%d lanes wrong)", bad);

    uninit_shared_kernel<<<3, 32>>>(fo);
    EXPECT(isnan(fo[0]) && isnan(fo[1]) && isnan(fo[2]), "shared memory reads NaN before it is written, in every block");

    float *in = (float *)emu_dev_alloc(16, 0, "selftest in");
    in[0] = 1.0f + 0x1p-12f, in[1] = 1.0f + 0x1p-12f, in[2] = -1.0f;
    arith_kernel<<<1, 1>>>(fo, in);
    float fused = fmaf(in[0], in[1], in[2]), twice = (float)(in[0] * in[1]) + in[2];
#ifdef EMU_CONTRACT
    EXPECT(fo[0] == fused && fo[1] == twice && host_expr(in[0], in[1], in[2]) == twice,
           "device a*b + c contracts to an FMA (%a), __fadd_rn(__fmul_rn) does not (%a), host code does not", fo[0], fo[1]);
#else
    EXPECT(fo[1] == twice, "__fadd_rn(__fmul_rn) rounds twice (%a; no FMA on this host: no contraction)", fo[1]);
    (void)fused, (void)host_expr;
#endif

    int n = 1000;
    float *x = (float *)emu_dev_alloc(n * sizeof(float), 0, "selftest x"), *y = (float *)emu_dev_alloc(n * sizeof(float), 0, "y");
    for (int i = 0; i < n; i++) x[i] = -5.0f + 10.0f * i / n;
    expf_kernel<<<2, 128>>>(y, x, n);
    int moved = 0, far = 0;
    for (int i = 0; i < n; i++) {
        float h = expf(x[i]); // host code: glibc's value
        moved += y[i] != h;
        far += fabsf(y[i] - h) > 2.5f * (nextafterf(h, INFINITY) - h);
    }
    EXPECT((emu_ulp_mode ? moved > n / 2 : moved == 0) && far == 0,
           "device expf = glibc's moved by at most 2 ulp inside kernels (%d of %d moved%s), host expf unchanged", moved, n,
           emu_ulp_mode ? "" : ", EMU_ULP=0");
    delta(d);
    EXPECT(d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == 0, "the correct kernels above raised no error (%ld %ld %ld %ld)",
           d[0], d[1], d[2], d[3]);

    // Errors (counted, not printed)
    emu_quiet = true;
    exit_then_barrier_kernel<<<1, 64>>>(fo);
    delta(d);
    EXPECT(d[0] == 1, "reported: __syncthreads after a thread of the block exited");
    mask_without_caller_kernel<<<1, 32>>>(io);
    delta(d);
    EXPECT(d[0] >= 16, "reported: a shuffle mask without the calling lane (%ld, at least one per lane 16..31)", d[0]);
    source_outside_mask_kernel<<<1, 32>>>(io);
    delta(d);
    EXPECT(d[0] == 16 && io[0] == -1, "reported: a shuffle reading a lane outside its mask (%ld of 16 lanes; value NaN / -1)", d[0]);
    overlapping_masks_kernel<<<1, 32>>>(io);
    delta(d);
    EXPECT(d[0] >= 1, "reported: lanes of one warp waiting with overlapping, different masks (%ld)", d[0]);
    deadlock_kernel<<<1, 64>>>(io);
    delta(d);
    EXPECT(d[0] == 1, "reported: a deadlock (odd threads in __syncthreads, even ones in __syncwarp)");
    exited_lanes_kernel<<<1, 32>>>(io);
    delta(d);
    EXPECT(d[0] >= 1, "reported: a full-mask shuffle after half the warp exited (%ld)", d[0]);
    partial_warp_kernel<<<1, 48>>>(fo);
    delta(d);
    EXPECT(d[0] >= 1, "reported: a full-mask shuffle in a partial warp (blockDim 48) (%ld)", d[0]);

    simple_kernel<<<1, 1025>>>(fo);
    simple_kernel<<<1, dim3(1024, 2, 1)>>>(fo);
    simple_kernel<<<1, dim3(1, 1, 65)>>>(fo);
    simple_kernel<<<dim3(1, 65536), 32>>>(fo);
    simple_kernel<<<0, 32>>>(fo);
    bounded_kernel<<<1, 256>>>(fo);
    dyn_shared_kernel<<<1, 32, 48 * 1024 + 4>>>(fo, 4);
    delta(d);
    EXPECT(d[1] == 7, "refused: 1025 threads, 1024 x 2 threads, z = 65, grid y = 65536, an empty grid, 256 threads over "
           "__launch_bounds__(128), 48 KiB + 4 of dynamic shared memory (%ld of 7)", d[1]);
    simple_kernel<<<1, dim3(32, 32, 1)>>>(fo);
    bounded_kernel<<<1, 128>>>(fo);
    dyn_shared_kernel<<<1, 32, 48 * 1024>>>(fo, 4);
    delta(d);
    EXPECT(d[1] == 0 && d[0] == 0, "accepted: 32 x 32 threads, 128 threads with __launch_bounds__(128), 48 KiB of dynamic shared memory");
    big_static_shared_kernel<<<1, 64, 10 * 1024>>>(fo);
    delta(d);
    EXPECT(d[1] == 1, "reported: 40 KiB static + 10 KiB dynamic shared memory > 48 KiB");

    float host[64];
    simple_kernel<<<1, 32>>>(host);
    cudaMemcpyAsync(fo, host, sizeof host, cudaMemcpyDeviceToHost, 0); // wrong direction
    cudaMemcpyAsync(host, fo + 4090, 64, cudaMemcpyDeviceToHost, 0);  // past the end of the buffer
    delta(d);
    EXPECT(d[2] == 4, "reported: a host array as a kernel argument, a copy with the wrong direction (2), a copy past "
           "the end of a device buffer (%ld of 4)", d[2]);
#ifndef __SANITIZE_ADDRESS__ // (with ASAN=1 the guard bands are poisoned: AddressSanitizer stops the program there)
    past_end_kernel<<<2, 64>>>(x, (size_t)n);
    dyn_shared_kernel<<<1, 32, 16>>>(fo, 5);
    delta(d);
    EXPECT(d[3] == 2, "reported: a kernel writing one element past a device buffer, one past its dynamic shared memory (%ld of 2)", d[3]);
#endif
    emu_dev_free(io, "selftest"), emu_dev_free(fo, "selftest"), emu_dev_free(in, "selftest");
    emu_dev_free(x, "selftest"), emu_dev_free(y, "selftest");
    emu_reset_counters(); // the planted errors are not errors of this program
    printf("# emu selftest: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
