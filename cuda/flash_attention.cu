// flash_attention.cu: fused ("flash") multi-head attention for the tf32 and bf16 modes of the CUDA
// backend (LOLA_ATTENTION=flash|auto, nn_cuda.h), FlashAttention-2 style, on tensor cores through
// the WMMA API. attention.cu calls in here first and keeps its GEMM path for everything else
// (fp32 mode, other head sizes, devices below compute capability 8.0).
//
// Contract (src/nn.h, as attention.cu): qkv (B, N, 3D) packed [q | k | v], D = H*dh, head h =
// columns h*dh..(h+1)*dh of each part (row stride 3D, read in place); out (B, N, D); save = the
// log-sum-exp lse (B, H, N) of every score row, the same meaning and size as the GEMM path's, so
// forward and backward can each run here or there independently; dqkv (B, N, 3D) overwritten.
// No mask, scale = 1/sqrt(dh).
//
// Recurrences. Scores s_ij = scale * (q_i . k_j) (fp32 accumulation, one fp32 product by scale, as
// the GEMM path's alpha). Forward, query row i, key tiles t = 1..T of 64 keys:
//     m_t   = max(m_{t-1}, max_{j in t} s_ij)                     m_0 = -inf
//     alpha = exp(m_{t-1} - m_t)                                  (0 on the first tile)
//     p_ij  = exp(s_ij - m_t)                                     fp32
//     l_t   = alpha l_{t-1} + sum_{j in t} p_ij                   fp32 p (not the rounded one)
//     O_t   = alpha O_{t-1} + sum_{j in t} rnd(p_ij) v_j          rnd = the mode's MMA operand rounding
//     out_i = O_T / l_T,  lse_i = m_T + log(l_T)
// Backward, with D_i = rowsum(dO_i * O_i) precomputed in fp32 (fa_rowdot_kernel):
//     p_ij = exp(s_ij - lse_i),  dp_ij = dO_i . v_j,  ds_ij = p_ij (dp_ij - D_i)      fp32
//     dV_j = sum_i rnd(p_ij) dO_i,  dK_j = scale sum_i rnd(ds_ij) q_i,  dQ_i = scale sum_j rnd(ds_ij) k_j
// Kernel 1 (flash_bwd_dkdv_kernel) owns a tile of 64 keys and loops over all query tiles: dK, dV.
// Kernel 2 (flash_bwd_dq_kernel) owns a tile of 64 queries and loops over all key tiles: dQ. S and
// dP are computed in both (7 tile GEMMs per query/key tile pair instead of 5), and in exchange
// every output element is accumulated by one warp in a fixed order and written once: no atomics,
// results are bit-identical from run to run.
//
// Precision. bf16: q, k, v, dO are rounded to bf16 (round to nearest even, like the GEMM path's
// casts) when staged into shared memory, p and ds when written as MMA operands; m16n16k16
// fragments, fp32 accumulation. tf32: the same with wmma::__float_to_tf32 (round to nearest) and
// m16n16k8 fragments; operands stay floats whose low 13 bits are zero. Softmax statistics, lse,
// D_i, dp and ds before rounding are fp32. These are the operand roundings of the GEMM path, with
// one difference: the forward rounds the unnormalised exp(s_ij - m_t), the GEMM path the
// normalised probability (the same relative rounding per element), and the rescalings by alpha add
// fp32 errors; tests/gpu/test_gpu_ops.c derives both terms. fp32 mode never comes here: it is the
// exact parity reference (attention.cu).
//
// Tiling. A block of 4 warps (128 threads) owns a tile of 64 rows of one (b, h) (blockIdx = (tile,
// h, b)); warp w owns rows 16w..16w+15, the M = 16 of a WMMA fragment. The block stages the other
// side's 64-row tiles into shared memory one after the other (all threads load, converting fp32 to
// the operand type; rows past N are zero, so the MMAs never read uninitialised memory). Per tile,
// a warp computes its 16 x 64 block of S (and dP) with 4 accumulator fragments, stores them to its
// own fp32 tile in shared memory (the fragment layout is opaque), does the elementwise math there
// with a known layout (lane pair 2r, 2r+1 owns row r; lane 2r+e the columns e, e+2, ..., 62+e; the
// pair combines its halves with one shuffle), writes the rounded p / ds tile and multiplies it
// into its accumulators. Keys past N get p = 0 explicitly; rows past N are computed on zeros and
// never written. The forward O accumulator lives in shared memory (it is rescaled by alpha per row
// each tile); the dK, dV and dQ accumulators stay in registers (fragments) and leave through the
// warp's fp32 tile at the end.
//
// Shared memory per block (T = bf16 or float; every region a multiple of 32 bytes, as WMMA wants
// 256-bit aligned fragment pointers; fragments start at rows multiple of 16 and columns multiple
// of 16 (bf16) or 8 (tf32) elements, i.e. at multiples of 32 bytes too; each row is padded by 16
// bytes to spread the banks):
//   forward : Q, K, V tiles (64 x (dh+pad) T); per warp S (16 x 68 fp32), P (16 x (64+pad) T),
//             O accumulator (16 x (dh+4) fp32)
//   dK dV   : K, V, Q, dO tiles; per warp S^T and dP^T (16 x 68 fp32), P^T and dS^T (16 x (64+pad) T);
//             lse and D of the query tile (2 x 64 fp32)
//   dQ      : Q, dO, K, V tiles; per warp S, dP (fp32), dS (T)
// Forward / dK dV / dQ at dh = 128: 110 / 120.5 / 111 KiB (bf16), 166 / 200.5 / 183 KiB (tf32); at
// dh = 64: 70 / 88.5 / 79 KiB (bf16), 102 / 136.5 / 119 KiB (tf32). Above the default 48 KiB, so
// each kernel opts in (cudaFuncAttributeMaxDynamicSharedMemorySize; up to 227 KiB on sm_90, where
// bf16 at dh = 128 fits 2 blocks per SM). A device whose opt-in limit is smaller (A100: 163 KiB,
// too small for tf32 at dh = 128) falls back to the GEMM path (fa_usable).
//
// Without a GPU: tests/gpu/flash_emu/ compiles the kernel part of this file on the host
// (FA_KERNELS_ONLY: no CUDA headers, no host part; FA_SMEM redefined) with the CUDA features it
// uses emulated, and checks the kernels against a double-precision reference.
#include <math.h>
#include <stdint.h>

#ifndef FA_KERNELS_ONLY
#include <mma.h>

#include "precision.cuh"
#endif

using namespace nvcuda;

// The kernels' dynamic shared memory.
#ifndef FA_SMEM
#define FA_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

// bf16 and tf32 WMMA need compute capability 8.0; for older targets the kernels compile empty and
// the host never launches them (fa_usable checks the device).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FA_DEVICE_OK 1
#else
#define FA_DEVICE_OK 0
#endif

namespace {

constexpr int FA_WARPS = 4;
constexpr int FA_THREADS = 32 * FA_WARPS;
constexpr int FA_TILE = 16 * FA_WARPS; // rows of a block's own tile = rows of each tile it loops over
constexpr int FA_LDF = FA_TILE + 4;    // row stride (floats) of the per-warp fp32 16 x 64 tiles

// Operand element type: bf16, or float holding tf32 values.
template <typename T> struct FaElem;
template <> struct FaElem<__nv_bfloat16> {
    static constexpr int PAD = 8; // row padding in elements (16 bytes; ldm must be a multiple of 8)
    static __device__ __forceinline__ __nv_bfloat16 cvt(float v) { return __float2bfloat16_rn(v); }
};
template <> struct FaElem<float> {
    static constexpr int PAD = 4; // 16 bytes; ldm a multiple of 4
    static __device__ __forceinline__ float cvt(float v) {
#if FA_DEVICE_OK
        return wmma::__float_to_tf32(v);
#else
        return v;
#endif
    }
};

#if FA_DEVICE_OK
constexpr unsigned FA_FULL = 0xffffffffu;

// Fragments: A row-major (M x K), B row-major (K x N) or column-major (B^T of a row-major tile);
// KS = the k of one MMA (m16n16k16 for bf16, m16n16k8 for tf32).
template <typename T> struct FaFrag;
template <> struct FaFrag<__nv_bfloat16> {
    static constexpr int KS = 16;
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> A;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> Brow;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> Bcol;
    typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> C;
};
template <> struct FaFrag<float> {
    static constexpr int KS = 8;
    typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> A;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> Brow;
    typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> Bcol;
    typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> C;
};
#endif

// Shared-memory layout (bytes) of the three kernels for operand type T and head size DH.
template <typename T, int DH> struct FaLayout {
    static_assert(DH % 16 == 0, "DH must be a multiple of 16");
    static constexpr int LDT = DH + FaElem<T>::PAD;      // staged 64 x DH tiles (Q, K, V, dO)
    static constexpr int LDP = FA_TILE + FaElem<T>::PAD; // per-warp rounded p / ds (16 x 64)
    static constexpr int LDO = DH + 4;                   // per-warp fp32 O accumulator (16 x DH)
    static constexpr size_t TILE = sizeof(T) * FA_TILE * LDT;
    static constexpr size_t WF = sizeof(float) * 16 * FA_LDF;
    static constexpr size_t WP = sizeof(T) * 16 * LDP;
    static constexpr size_t WO = sizeof(float) * 16 * LDO;
    static constexpr size_t FWD_WARP = WF + WP + WO;   // S, P, O
    static constexpr size_t KV_WARP = 2 * WF + 2 * WP; // S^T, dP^T, P^T, dS^T
    static constexpr size_t DQ_WARP = 2 * WF + WP;     // S, dP, dS
    static constexpr size_t FWD = 3 * TILE + FA_WARPS * FWD_WARP;
    static constexpr size_t KV = 4 * TILE + FA_WARPS * KV_WARP + 2 * sizeof(float) * FA_TILE;
    static constexpr size_t DQ = 4 * TILE + FA_WARPS * DQ_WARP;
    static constexpr size_t MAX = FWD > KV ? (FWD > DQ ? FWD : DQ) : (KV > DQ ? KV : DQ);
    static_assert(TILE % 32 == 0 && WF % 32 == 0 && WP % 32 == 0 && WO % 32 == 0,
                  "WMMA fragment pointers must stay 32-byte aligned");
};

// Stages rows [0, rows) of a 64 x DH fp32 matrix (row stride lds floats) into dst (row stride ldd
// elements), rounded to T; rows rows..63 become zero. All threads of the block take part.
// vec: src and lds allow float4 loads (16-byte aligned rows).
template <typename T, int DH>
__device__ __forceinline__ void fa_stage(T *dst, int ldd, const float *src, size_t lds, int rows, int vec) {
    typedef FaElem<T> E;
    if (vec) {
        constexpr int Q4 = DH / 4;
        for (int idx = threadIdx.x; idx < FA_TILE * Q4; idx += FA_THREADS) {
            const int r = idx / Q4, c = (idx % Q4) * 4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < rows) v = *reinterpret_cast<const float4 *>(src + (size_t)r * lds + c);
            T *d = dst + r * ldd + c;
            d[0] = E::cvt(v.x), d[1] = E::cvt(v.y), d[2] = E::cvt(v.z), d[3] = E::cvt(v.w);
        }
    } else {
        for (int idx = threadIdx.x; idx < FA_TILE * DH; idx += FA_THREADS) {
            const int r = idx / DH, c = idx % DH;
            dst[r * ldd + c] = E::cvt(r < rows ? src[(size_t)r * lds + c] : 0.0f);
        }
    }
}

#if FA_DEVICE_OK
// One warp: C (16 x 64 fp32, row stride FA_LDF) = A B^T, A = the warp's 16 rows of a staged tile
// (16 x DH, row stride LDT), B = a staged 64 x DH tile. B^T is B read as a column-major matrix_b:
// element (k, n) of B^T is B[n][k] = B[n * LDT + k].
template <typename T, int DH> __device__ __forceinline__ void fa_mma_abt(float *C, const T *A, const T *B) {
    typedef FaFrag<T> F;
    constexpr int LDT = FaLayout<T, DH>::LDT, KS = FaFrag<T>::KS;
    typename F::C c[4];
#pragma unroll
    for (int n = 0; n < 4; n++) wmma::fill_fragment(c[n], 0.0f);
#pragma unroll
    for (int k0 = 0; k0 < DH; k0 += KS) {
        typename F::A a;
        wmma::load_matrix_sync(a, A + k0, LDT);
#pragma unroll
        for (int n = 0; n < 4; n++) {
            typename F::Bcol bt;
            wmma::load_matrix_sync(bt, B + 16 * n * LDT + k0, LDT);
            wmma::mma_sync(c[n], a, bt, c[n]);
        }
    }
#pragma unroll
    for (int n = 0; n < 4; n++) wmma::store_matrix_sync(C + 16 * n, c[n], FA_LDF, wmma::mem_row_major);
}

// One warp: acc (16 x DH, DH/16 fragments) += A B, A = the warp's rounded 16 x 64 tile (row stride
// LDP), B = a staged 64 x DH tile (row-major, row stride LDT).
template <typename T, int DH>
__device__ __forceinline__ void fa_mma_ab(typename FaFrag<T>::C (&acc)[DH / 16], const T *A, const T *B) {
    typedef FaFrag<T> F;
    constexpr int LDT = FaLayout<T, DH>::LDT, LDP = FaLayout<T, DH>::LDP, KS = FaFrag<T>::KS;
#pragma unroll
    for (int k0 = 0; k0 < FA_TILE; k0 += KS) {
        typename F::A a;
        wmma::load_matrix_sync(a, A + k0, LDP);
#pragma unroll
        for (int n = 0; n < DH / 16; n++) {
            typename F::Brow bm;
            wmma::load_matrix_sync(bm, B + k0 * LDT + 16 * n, LDT);
            wmma::mma_sync(acc[n], a, bm, acc[n]);
        }
    }
}

// One warp: rows row0..row0+15 (those < N) of g (row stride ldg floats), columns 0..DH-1,
// = s * acc, through the warp's fp32 16 x 64 tile stg (four fragments at a time).
template <typename T, int DH>
__device__ __forceinline__ void fa_write_rows(float *g, size_t ldg, typename FaFrag<T>::C (&acc)[DH / 16], float s,
                                              float *stg, int row0, int N) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int n = 0; n < DH / 16; n++) {
        wmma::store_matrix_sync(stg + 16 * (n % 4), acc[n], FA_LDF, wmma::mem_row_major);
        if (n % 4 == 3 || n == DH / 16 - 1) {
            const int c0 = 16 * (n - n % 4), cols = 16 * (n % 4 + 1);
            __syncwarp();
            for (int rr = 0; rr < 16; rr++)
                if (row0 + rr < N)
                    for (int c = lane; c < cols; c += 32)
                        g[(size_t)(row0 + rr) * ldg + c0 + c] = s * stg[rr * FA_LDF + c];
            __syncwarp();
        }
    }
}
#endif

// ---------------------------------------------------------------------------------------------
// Forward: block = 64 query rows of (b, h); loop over key tiles with the online softmax.

template <typename T, int DH>
__global__ void __launch_bounds__(FA_THREADS)
    flash_fwd_kernel(float *out, float *lse, const float *qkv, int N, int H, float scale, int vec) {
#if FA_DEVICE_OK
    typedef FaElem<T> E;
    typedef FaFrag<T> F;
    typedef FaLayout<T, DH> L;
    FA_SMEM(fa_smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, e = lane & 1;
    const int i0 = blockIdx.x * FA_TILE, h = blockIdx.y, b = blockIdx.z, D = H * DH;
    const size_t ld = 3 * (size_t)D;
    const float *base = qkv + (size_t)b * N * ld + (size_t)h * DH; // q of head h, token 0
    T *Qs = (T *)fa_smem, *Ks = Qs + FA_TILE * L::LDT, *Vs = Ks + FA_TILE * L::LDT;
    unsigned char *wb = fa_smem + 3 * L::TILE + warp * L::FWD_WARP;
    float *Sw = (float *)wb;                   // the warp's 16 x 64 scores
    T *Pw = (T *)(wb + L::WF);                 // its rounded p
    float *Ow = (float *)(wb + L::WF + L::WP); // its 16 x DH output accumulator
    const T *Qw = Qs + 16 * warp * L::LDT;

    fa_stage<T, DH>(Qs, L::LDT, base + (size_t)i0 * ld, ld, min(FA_TILE, N - i0), vec);
    for (int k = lane; k < 16 * L::LDO; k += 32) Ow[k] = 0.0f;
    float m_run = -INFINITY, l_run = 0.0f; // statistics of row r (the same in both lanes of the pair)

    for (int j0 = 0; j0 < N; j0 += FA_TILE) {
        const int nj = min(FA_TILE, N - j0);
        __syncthreads(); // no warp reads the previous K, V any more (first pass: Q, O are ready)
        fa_stage<T, DH>(Ks, L::LDT, base + D + (size_t)j0 * ld, ld, nj, vec);
        fa_stage<T, DH>(Vs, L::LDT, base + 2 * (size_t)D + (size_t)j0 * ld, ld, nj, vec);
        __syncthreads();
        fa_mma_abt<T, DH>(Sw, Qw, Ks); // S_w = Q_w K^T (unscaled)
        __syncwarp();
        { // online softmax of row r over this tile
            const float *sr = Sw + r * FA_LDF;
            T *pr = Pw + r * L::LDP;
            float mt = -INFINITY;
            for (int c = e; c < nj; c += 2) mt = fmaxf(mt, __fmul_rn(scale, sr[c]));
            mt = fmaxf(mt, __shfl_xor_sync(FA_FULL, mt, 1));
            const float m_new = fmaxf(m_run, mt); // finite: every tile has a key < N
            const float alpha = expf(m_run - m_new);
            float ls = 0.0f;
            for (int c = e; c < FA_TILE; c += 2) {
                const float p = c < nj ? expf(__fmul_rn(scale, sr[c]) - m_new) : 0.0f;
                pr[c] = E::cvt(p);
                ls += p;
            }
            ls += __shfl_xor_sync(FA_FULL, ls, 1);
            l_run = l_run * alpha + ls;
            m_run = m_new;
            float *orow = Ow + r * L::LDO;
            for (int d = e; d < DH; d += 2) orow[d] *= alpha;
        }
        __syncwarp();
        { // O_w += P_w V
            typename F::C o[DH / 16];
#pragma unroll
            for (int n = 0; n < DH / 16; n++) wmma::load_matrix_sync(o[n], Ow + 16 * n, L::LDO, wmma::mem_row_major);
            fa_mma_ab<T, DH>(o, Pw, Vs);
#pragma unroll
            for (int n = 0; n < DH / 16; n++) wmma::store_matrix_sync(Ow + 16 * n, o[n], L::LDO, wmma::mem_row_major);
        }
    }
    __syncwarp();
    // out = O / l (row by row: lane 2rr holds row rr's l), lse = m + log l
    const float inv = 1.0f / l_run;
    for (int rr = 0; rr < 16; rr++) {
        const float inv_rr = __shfl_sync(FA_FULL, inv, 2 * rr);
        const int i = i0 + 16 * warp + rr;
        if (i < N) {
            float *o = out + ((size_t)b * N + i) * D + (size_t)h * DH;
            for (int d = lane; d < DH; d += 32) o[d] = Ow[rr * L::LDO + d] * inv_rr;
        }
    }
    const int i = i0 + 16 * warp + r;
    if (e == 0 && i < N) lse[((size_t)b * H + h) * N + i] = m_run + logf(l_run);
#else
    (void)out, (void)lse, (void)qkv, (void)N, (void)H, (void)scale, (void)vec;
#endif
}

// ---------------------------------------------------------------------------------------------
// Backward

// Di[(b*H + h)*N + i] = sum_d dO[b, i, h*dh + d] * O[b, i, h*dh + d]: a warp per row, fp32, the
// order of attention.cu's dscores kernels.
__global__ void fa_rowdot_kernel(float *Di, const float *dO, const float *O, int B, int N, int H, int dh) {
    const size_t rows = (size_t)B * H * N, row = (size_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t bh = row / N, b = bh / H;
    const int i = (int)(row % N), h = (int)(bh % H);
    const size_t off = (b * N + i) * (size_t)H * dh + (size_t)h * dh;
    float di = 0.0f;
    for (int d = lane; d < dh; d += 32) di += dO[off + d] * O[off + d];
    di = lcu_warp_sum(di);
    if (lane == 0) Di[row] = di;
}

// dK, dV: block = 64 keys of (b, h); loop over query tiles. Warp w owns keys 16w..16w+15 and
// works on the transposed blocks S^T = K_w Q^T, dP^T = V_w dO^T (16 keys x 64 queries).
template <typename T, int DH>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dkdv_kernel(float *dqkv, const float *qkv, const float *dout, const float *lse, const float *Di, int N,
                          int H, float scale, int vec) {
#if FA_DEVICE_OK
    typedef FaElem<T> E;
    typedef FaFrag<T> F;
    typedef FaLayout<T, DH> L;
    FA_SMEM(fa_smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, e = lane & 1;
    const int j0 = blockIdx.x * FA_TILE, h = blockIdx.y, b = blockIdx.z, D = H * DH;
    const size_t ld = 3 * (size_t)D;
    const float *base = qkv + (size_t)b * N * ld + (size_t)h * DH;   // q of head h, token 0
    const float *gbase = dout + (size_t)b * N * D + (size_t)h * DH; // dO of head h, token 0
    const float *lse_bh = lse + ((size_t)b * H + h) * N, *di_bh = Di + ((size_t)b * H + h) * N;
    T *Ks = (T *)fa_smem, *Vs = Ks + FA_TILE * L::LDT, *Qs = Vs + FA_TILE * L::LDT, *dOs = Qs + FA_TILE * L::LDT;
    unsigned char *wb = fa_smem + 4 * L::TILE + warp * L::KV_WARP;
    float *Sw = (float *)wb, *dPw = (float *)(wb + L::WF);                       // S^T, dP^T
    T *Pw = (T *)(wb + 2 * L::WF), *dSw = (T *)(wb + 2 * L::WF + L::WP);          // rnd(P^T), rnd(dS^T)
    float *lse_s = (float *)(fa_smem + 4 * L::TILE + FA_WARPS * L::KV_WARP), *di_s = lse_s + FA_TILE;

    fa_stage<T, DH>(Ks, L::LDT, base + D + (size_t)j0 * ld, ld, min(FA_TILE, N - j0), vec);
    fa_stage<T, DH>(Vs, L::LDT, base + 2 * (size_t)D + (size_t)j0 * ld, ld, min(FA_TILE, N - j0), vec);
    const T *Kw = Ks + 16 * warp * L::LDT, *Vw = Vs + 16 * warp * L::LDT;
    typename F::C dk[DH / 16], dv[DH / 16];
#pragma unroll
    for (int n = 0; n < DH / 16; n++) wmma::fill_fragment(dk[n], 0.0f), wmma::fill_fragment(dv[n], 0.0f);

    for (int q0 = 0; q0 < N; q0 += FA_TILE) {
        const int nq = min(FA_TILE, N - q0);
        __syncthreads(); // no warp reads the previous Q, dO, lse, D any more (first pass: K, V ready)
        fa_stage<T, DH>(Qs, L::LDT, base + (size_t)q0 * ld, ld, nq, vec);
        fa_stage<T, DH>(dOs, L::LDT, gbase + (size_t)q0 * D, D, nq, vec);
        if (threadIdx.x < FA_TILE) {
            const int t = threadIdx.x;
            lse_s[t] = t < nq ? lse_bh[q0 + t] : 0.0f;
            di_s[t] = t < nq ? di_bh[q0 + t] : 0.0f;
        }
        __syncthreads();
        fa_mma_abt<T, DH>(Sw, Kw, Qs);   // S^T_w  = K_w Q^T   (unscaled)
        fa_mma_abt<T, DH>(dPw, Vw, dOs); // dP^T_w = V_w dO^T
        __syncwarp();
        { // key row r, query columns c: P^T and dS^T; queries >= N get p = 0 (so ds = 0)
            const float *sr = Sw + r * FA_LDF, *dpr = dPw + r * FA_LDF;
            T *pr = Pw + r * L::LDP, *dsr = dSw + r * L::LDP;
            for (int c = e; c < FA_TILE; c += 2) {
                const float p = c < nq ? expf(__fmul_rn(scale, sr[c]) - lse_s[c]) : 0.0f;
                pr[c] = E::cvt(p);
                dsr[c] = E::cvt(p * (dpr[c] - di_s[c]));
            }
        }
        __syncwarp();
        fa_mma_ab<T, DH>(dv, Pw, dOs); // dV_w += P^T_w dO
        fa_mma_ab<T, DH>(dk, dSw, Qs); // dK_w += dS^T_w Q   (scale applied at the end)
    }
    __syncwarp();
    float *gk = dqkv + (size_t)b * N * ld + D + (size_t)h * DH; // dK of head h, token 0 (dV: + D)
    fa_write_rows<T, DH>(gk, ld, dk, scale, Sw, j0 + 16 * warp, N);
    fa_write_rows<T, DH>(gk + D, ld, dv, 1.0f, Sw, j0 + 16 * warp, N);
#else
    (void)dqkv, (void)qkv, (void)dout, (void)lse, (void)Di, (void)N, (void)H, (void)scale, (void)vec;
#endif
}

// dQ: block = 64 queries of (b, h); loop over key tiles. Warp w owns queries 16w..16w+15.
template <typename T, int DH>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dq_kernel(float *dqkv, const float *qkv, const float *dout, const float *lse, const float *Di, int N,
                        int H, float scale, int vec) {
#if FA_DEVICE_OK
    typedef FaElem<T> E;
    typedef FaFrag<T> F;
    typedef FaLayout<T, DH> L;
    FA_SMEM(fa_smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 1, e = lane & 1;
    const int i0 = blockIdx.x * FA_TILE, h = blockIdx.y, b = blockIdx.z, D = H * DH;
    const size_t ld = 3 * (size_t)D;
    const float *base = qkv + (size_t)b * N * ld + (size_t)h * DH;
    const float *gbase = dout + (size_t)b * N * D + (size_t)h * DH;
    T *Qs = (T *)fa_smem, *dOs = Qs + FA_TILE * L::LDT, *Ks = dOs + FA_TILE * L::LDT, *Vs = Ks + FA_TILE * L::LDT;
    unsigned char *wb = fa_smem + 4 * L::TILE + warp * L::DQ_WARP;
    float *Sw = (float *)wb, *dPw = (float *)(wb + L::WF); // S, dP
    T *dSw = (T *)(wb + 2 * L::WF);                       // rnd(dS)

    const int ni = min(FA_TILE, N - i0);
    fa_stage<T, DH>(Qs, L::LDT, base + (size_t)i0 * ld, ld, ni, vec);
    fa_stage<T, DH>(dOs, L::LDT, gbase + (size_t)i0 * D, D, ni, vec);
    const T *Qw = Qs + 16 * warp * L::LDT, *dOw = dOs + 16 * warp * L::LDT;
    const int i = i0 + 16 * warp + r; // this lane pair's query row
    const float lse_r = i < N ? lse[((size_t)b * H + h) * N + i] : 0.0f;
    const float di_r = i < N ? Di[((size_t)b * H + h) * N + i] : 0.0f;
    typename F::C dq[DH / 16];
#pragma unroll
    for (int n = 0; n < DH / 16; n++) wmma::fill_fragment(dq[n], 0.0f);

    for (int j0 = 0; j0 < N; j0 += FA_TILE) {
        const int nj = min(FA_TILE, N - j0);
        __syncthreads(); // no warp reads the previous K, V any more (first pass: Q, dO ready)
        fa_stage<T, DH>(Ks, L::LDT, base + D + (size_t)j0 * ld, ld, nj, vec);
        fa_stage<T, DH>(Vs, L::LDT, base + 2 * (size_t)D + (size_t)j0 * ld, ld, nj, vec);
        __syncthreads();
        fa_mma_abt<T, DH>(Sw, Qw, Ks);   // S_w  = Q_w K^T   (unscaled)
        fa_mma_abt<T, DH>(dPw, dOw, Vs); // dP_w = dO_w V^T
        __syncwarp();
        { // query row r, key columns c; keys >= N get p = 0
            const float *sr = Sw + r * FA_LDF, *dpr = dPw + r * FA_LDF;
            T *dsr = dSw + r * L::LDP;
            for (int c = e; c < FA_TILE; c += 2) {
                const float p = c < nj ? expf(__fmul_rn(scale, sr[c]) - lse_r) : 0.0f;
                dsr[c] = E::cvt(p * (dpr[c] - di_r));
            }
        }
        __syncwarp();
        fa_mma_ab<T, DH>(dq, dSw, Ks); // dQ_w += dS_w K   (scale applied at the end)
    }
    __syncwarp();
    fa_write_rows<T, DH>(dqkv + (size_t)b * N * ld + (size_t)h * DH, ld, dq, scale, Sw, i0 + 16 * warp, N);
#else
    (void)dqkv, (void)qkv, (void)dout, (void)lse, (void)Di, (void)N, (void)H, (void)scale, (void)vec;
#endif
}

} // namespace

#ifndef FA_KERNELS_ONLY
// ---------------------------------------------------------------------------------------------
// Host side

namespace {

long fa_fwd_calls = 0, fa_bwd_calls = 0;
int fa_dev_cc = -1, fa_dev_smem_optin = 0;
int warned_fp32 = 0, warned_dh = 0, warned_dev = 0, warned_grid = 0;

void fa_query_device(void) {
    if (fa_dev_cc >= 0) return;
    int dev = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&fa_dev_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    fa_dev_cc = 10 * major + minor;
}

int fa_supported_dh(int dh) { return dh == 16 || dh == 32 || dh == 64 || dh == 128; }

template <typename T> size_t fa_smem_need(int dh) {
    switch (dh) {
    case 16: return FaLayout<T, 16>::MAX;
    case 32: return FaLayout<T, 32>::MAX;
    case 64: return FaLayout<T, 64>::MAX;
    default: return FaLayout<T, 128>::MAX;
    }
}

// 1 when this call runs the fused kernels: LOLA_ATTENTION flash or auto, tf32 or bf16 mode, dh in
// {16, 32, 64, 128}, B and H within the grid limits, and a device of compute capability >= 8.0
// whose opt-in shared memory holds the kernels' tiles. Otherwise the GEMM path runs; with
// LOLA_ATTENTION=flash each kind of fallback is reported once.
int fa_usable(int B, int H, int dh) {
    const int impl = nn_cuda_attention_impl();
    if (impl == NN_ATTN_GEMM) return 0;
    const int loud = impl == NN_ATTN_FLASH, prec = nn_cuda_precision();
    if (prec == NN_PREC_FP32) {
        if (loud && !warned_fp32++)
            log_warn("note: LOLA_ATTENTION=flash in fp32 mode: fp32 is the exact parity reference, attention stays "
                     "on the GEMM path (the flash kernels run in tf32 and bf16)\n");
        return 0;
    }
    if (!fa_supported_dh(dh)) {
        if (loud && !warned_dh++)
            log_warn("warning: LOLA_ATTENTION=flash: head size dh=%d is not one of the flash kernels' (16, 32, 64, "
                     "128); attention with that head size uses the GEMM path\n", dh);
        return 0;
    }
    if (B > 65535 || H > 65535) {
        if (loud && !warned_grid++)
            log_warn("warning: LOLA_ATTENTION=flash: B=%d, H=%d exceed the grid limit 65535; GEMM path\n", B, H);
        return 0;
    }
    fa_query_device();
    const size_t need = prec == NN_PREC_BF16 ? fa_smem_need<__nv_bfloat16>(dh) : fa_smem_need<float>(dh);
    if (fa_dev_cc < 80 || need > (size_t)fa_dev_smem_optin) {
        if (loud && !warned_dev++)
            log_warn("warning: LOLA_ATTENTION=flash: the device (compute capability %d.%d, %d bytes of opt-in shared "
                     "memory per block) cannot run the flash kernels (cc >= 8.0 and %zu bytes for dh=%d); GEMM "
                     "path\n", fa_dev_cc / 10, fa_dev_cc % 10, fa_dev_smem_optin, need, dh);
        return 0;
    }
    return 1;
}

// Dynamic shared memory above 48 KiB needs the opt-in attribute, once per kernel instantiation.
template <typename K> void fa_opt_in(K kernel, size_t bytes, int *done) {
    if (*done) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done = 1;
}

template <typename T, int DH> void fa_forward_run(float *out, float *save, const float *qkv, int B, int N, int H) {
    typedef FaLayout<T, DH> L;
    static int attr = 0;
    fa_opt_in(flash_fwd_kernel<T, DH>, L::FWD, &attr);
    const int vec = (uintptr_t)qkv % 16 == 0;
    dim3 grid(lcu_cdiv((size_t)N, FA_TILE), (unsigned)H, (unsigned)B);
    flash_fwd_kernel<T, DH><<<grid, FA_THREADS, L::FWD, lcu_stream()>>>(out, save, qkv, N, H, 1.0f / sqrtf((float)DH),
                                                                         vec);
    CUDA_LAUNCH_CHECK();
}

template <typename T, int DH>
void fa_backward_run(float *dqkv, const float *dout, const float *qkv, const float *save, const float *Di, int B, int N,
                     int H) {
    typedef FaLayout<T, DH> L;
    static int attr_kv = 0, attr_q = 0;
    fa_opt_in(flash_bwd_dkdv_kernel<T, DH>, L::KV, &attr_kv);
    fa_opt_in(flash_bwd_dq_kernel<T, DH>, L::DQ, &attr_q);
    const int vec = (uintptr_t)qkv % 16 == 0 && (uintptr_t)dout % 16 == 0;
    const float scale = 1.0f / sqrtf((float)DH);
    dim3 grid(lcu_cdiv((size_t)N, FA_TILE), (unsigned)H, (unsigned)B);
    flash_bwd_dkdv_kernel<T, DH><<<grid, FA_THREADS, L::KV, lcu_stream()>>>(dqkv, qkv, dout, save, Di, N, H, scale, vec);
    CUDA_LAUNCH_CHECK();
    flash_bwd_dq_kernel<T, DH><<<grid, FA_THREADS, L::DQ, lcu_stream()>>>(dqkv, qkv, dout, save, Di, N, H, scale, vec);
    CUDA_LAUNCH_CHECK();
}

template <typename T> void fa_forward_t(float *out, float *save, const float *qkv, int B, int N, int H, int dh) {
    switch (dh) {
    case 16: fa_forward_run<T, 16>(out, save, qkv, B, N, H); break;
    case 32: fa_forward_run<T, 32>(out, save, qkv, B, N, H); break;
    case 64: fa_forward_run<T, 64>(out, save, qkv, B, N, H); break;
    case 128: fa_forward_run<T, 128>(out, save, qkv, B, N, H); break;
    default: lola_die("flash attention: unsupported head size %d", dh);
    }
}

template <typename T>
void fa_backward_t(float *dqkv, const float *dout, const float *qkv, const float *save, const float *Di, int B, int N,
                   int H, int dh) {
    switch (dh) {
    case 16: fa_backward_run<T, 16>(dqkv, dout, qkv, save, Di, B, N, H); break;
    case 32: fa_backward_run<T, 32>(dqkv, dout, qkv, save, Di, B, N, H); break;
    case 64: fa_backward_run<T, 64>(dqkv, dout, qkv, save, Di, B, N, H); break;
    case 128: fa_backward_run<T, 128>(dqkv, dout, qkv, save, Di, B, N, H); break;
    default: lola_die("flash attention: unsupported head size %d", dh);
    }
}

} // namespace

// attention_forward through the fused kernels (attention.cu calls this first). Returns 1 when it
// ran, 0 when the GEMM path must run instead (fa_usable); nothing is written then.
int lcu_flash_attention_forward(float *out, float *save, const float *qkv, int B, int N, int H, int dh) {
    if (!fa_usable(B, H, dh)) return 0;
    if (nn_cuda_precision() == NN_PREC_BF16) fa_forward_t<__nv_bfloat16>(out, save, qkv, B, N, H, dh);
    else fa_forward_t<float>(out, save, qkv, B, N, H, dh);
    fa_fwd_calls++;
    return 1;
}

// attention_backward (dqkv != NULL) through the fused kernels; 1 when it ran, 0 for the GEMM path.
// D_i = rowsum(dO * O) goes to the LCU_SCR_ATTN_DP scratch (the GEMM path's dP slot; B*H*N floats).
int lcu_flash_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *save,
                                 int B, int N, int H, int dh) {
    if (!fa_usable(B, H, dh)) return 0;
    const size_t rows = (size_t)B * H * N;
    float *Di = (float *)lcu_scratch(LCU_SCR_ATTN_DP, rows * sizeof(float));
    fa_rowdot_kernel<<<lcu_cdiv(rows, 8), 256, 0, lcu_stream()>>>(Di, dout, out, B, N, H, dh);
    CUDA_LAUNCH_CHECK();
    if (nn_cuda_precision() == NN_PREC_BF16) fa_backward_t<__nv_bfloat16>(dqkv, dout, qkv, save, Di, B, N, H, dh);
    else fa_backward_t<float>(dqkv, dout, qkv, save, Di, B, N, H, dh);
    fa_bwd_calls++;
    return 1;
}

extern "C" void nn_cuda_flash_attention_stats(long *fwd, long *bwd) {
    if (fwd) *fwd = fa_fwd_calls;
    if (bwd) *bwd = fa_bwd_calls;
}
#endif // FA_KERNELS_ONLY
