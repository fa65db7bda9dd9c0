// cuda_emu.h: host emulation of the CUDA features the kernels of cuda/flash_attention.cu use, so
// that they can run (slowly) on a machine without a GPU (flash_emu.cpp):
// * one std::thread per CUDA thread, blocks one after the other; __syncthreads / __syncwarp are
//   std::barrier waits of the block / the warp; shuffles go through an exchange array;
// * WMMA: a fragment holds its whole 16 x k / k x 16 / 16 x 16 tile, kept by lane 0 only (the
//   other lanes' copies are never used: the kernels only load, multiply and store fragments);
//   loads and stores check WMMA's rules (256-bit aligned pointer, ldm a multiple of 16 bytes);
//   tf32 operands lose their low 13 bits as on the tensor cores, __float_to_tf32 rounds to nearest
//   (ties away); EMU_EXACT turns both off, making the tf32 kernels plain fp32 (exact checks);
// * dynamic shared memory is a fresh allocation of exactly the launch's size per block, filled
//   with 0xff bytes (NaN as float and as bf16), so reading what no thread wrote shows up as NaN,
//   and AddressSanitizer sees overruns.
// What it cannot show: the real fragment layouts (the kernels never depend on them), timing,
// occupancy, register spills, and races that a different interleaving would expose.
#pragma once
#define FA_KERNELS_ONLY 1
#include <algorithm>
#include <barrier>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

struct emu_dim3 { unsigned x, y, z; };
inline thread_local emu_dim3 threadIdx, blockIdx;
struct EmuBlock {
    std::barrier<> *block;
    std::vector<std::barrier<> *> warp;
    std::vector<float> xch;
    unsigned char *smem;
};
inline thread_local EmuBlock *ctx;
#define FA_SMEM(name) unsigned char *name = ctx->smem

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __align__(x) alignas(x)
inline void __syncthreads() { ctx->block->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ctx->warp[threadIdx.x >> 5]->arrive_and_wait(); }
inline float __shfl_sync(unsigned, float v, int src) {
    int w = threadIdx.x >> 5, l = threadIdx.x & 31;
    ctx->xch[w * 32 + l] = v;
    __syncwarp();
    float r = ctx->xch[w * 32 + src];
    __syncwarp();
    return r;
}
inline float __shfl_xor_sync(unsigned m, float v, int x) { return __shfl_sync(m, v, (threadIdx.x & 31) ^ x); }
inline float __fmul_rn(float a, float b) { return a * b; }
using std::min;
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct __nv_bfloat16 { uint16_t u; };
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}
inline float emu_bf2f(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.u << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}
template <typename T> T lcu_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

namespace nvcuda {
namespace wmma {
struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision { struct tf32 {}; }
enum layout_t { mem_row_major, mem_col_major };
inline float __float_to_tf32(float v) {
#ifdef EMU_EXACT
    return v;
#else
    uint32_t u; // cvt.rna: round to nearest, ties away from zero, 10 stored mantissa bits
    memcpy(&u, &v, 4);
    u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&v, &u, 4);
    return v;
#endif
}
template <typename Use, int M, int N, int K, typename T, typename L = void> struct fragment {
    static constexpr int R = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int C = std::is_same<Use, matrix_a>::value ? K : N;
    float v[R * C];
};
inline int emu_lane() { return threadIdx.x & 31; }
template <typename E, typename T> inline float emu_get(const E *p) {
    if constexpr (std::is_same<E, __nv_bfloat16>::value) return emu_bf2f(*p);
    else {
        float v = *p;
#ifndef EMU_EXACT
        if constexpr (std::is_same<T, precision::tf32>::value) { // the tensor core ignores the low 13 bits
            uint32_t u;
            memcpy(&u, &v, 4);
            u &= ~0x1fffu;
            memcpy(&v, &u, 4);
        }
#endif
        return v;
    }
}
inline void emu_check(const void *p, unsigned ldm, size_t esz) {
    if ((uintptr_t)p % 32 || (ldm * esz) % 16) {
        fprintf(stderr, "WMMA alignment violated: ptr %p (mod 32 = %d), ldm %u x %zu bytes\n", p, (int)((uintptr_t)p % 32),
                ldm, esz);
        abort();
    }
}
template <typename Use, int M, int N, int K, typename T, typename L, typename E>
void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const E *p, unsigned ldm) {
    emu_check(p, ldm, sizeof(E));
    if (emu_lane()) return;
    typedef fragment<Use, M, N, K, T, L> F;
    for (int r = 0; r < F::R; r++)
        for (int c = 0; c < F::C; c++)
            f.v[r * F::C + c] = emu_get<E, T>(std::is_same<L, row_major>::value ? p + (size_t)r * ldm + c : p + (size_t)c * ldm + r);
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float, void> &f, const float *p, unsigned ldm, layout_t lay) {
    emu_check(p, ldm, 4);
    assert(lay == mem_row_major);
    if (emu_lane()) return;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) f.v[r * N + c] = p[(size_t)r * ldm + c];
}
template <int M, int N, int K>
void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float, void> &f, unsigned ldm, layout_t lay) {
    emu_check(p, ldm, 4);
    assert(lay == mem_row_major);
    if (emu_lane()) return;
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) p[(size_t)r * ldm + c] = f.v[r * N + c];
}
template <int M, int N, int K> void fill_fragment(fragment<accumulator, M, N, K, float, void> &f, float v) {
    if (emu_lane()) return;
    for (int i = 0; i < M * N; i++) f.v[i] = v;
}
template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float, void> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
              const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float, void> &c) {
    if (emu_lane()) return;
    float out[M * N];
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = c.v[m * N + n];
            for (int k = 0; k < K; k++) s += a.v[m * K + k] * b.v[k * N + n];
            out[m * N + n] = s;
        }
    memcpy(d.v, out, sizeof out);
}
} // namespace wmma
} // namespace nvcuda

// Runs fn() as a grid of blocks of `threads` threads with `smem` bytes of dynamic shared memory
// (filled with 0xff bytes: NaN as float and as bf16, so reads of unwritten memory show up).
template <typename Fn> void emu_launch(emu_dim3 grid, unsigned threads, size_t smem, Fn fn) {
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                EmuBlock b;
                std::barrier<> blk(threads);
                b.block = &blk;
                std::vector<std::barrier<> *> ws;
                for (unsigned w = 0; w < threads / 32; w++) ws.push_back(new std::barrier<>(32));
                b.warp = ws;
                b.xch.assign(threads, 0.0f);
                b.smem = smem ? (unsigned char *)::operator new[](smem, std::align_val_t(128)) : nullptr;
                if (smem) memset(b.smem, 0xff, smem);
                std::vector<std::thread> th;
                for (unsigned t = 0; t < threads; t++)
                    th.emplace_back([&, t] {
                        threadIdx = {t, 0, 0};
                        blockIdx = {bx, by, bz};
                        ctx = &b;
                        fn();
                    });
                for (auto &x : th) x.join();
                for (auto *w : ws) delete w;
                if (smem) ::operator delete[](b.smem, std::align_val_t(128));
            }
}
