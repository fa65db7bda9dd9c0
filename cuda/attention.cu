// attention.cu: multi-head softmax attention (nn.h), fp32, exact (no approximation).
//
// Version 1: per sample and per chunk of heads, strided-batched cuBLAS GEMMs over the heads plus
// a row softmax kernel. The score matrix of a chunk lives in scratch (hc * N * N floats, capped
// at 64 Mi floats per buffer); only the per-row log-sum-exp (B, H, N) is saved for backward, and
// the backward recomputes the probabilities from it (flash-attention style, but through GEMMs).
//   forward : S = scale Q K^T; P = softmax(S) (lse saved); O = P V
//   backward: S = scale Q K^T; P = exp(S - lse); dV = P^T dO; dP = dO V^T;
//             dS = P (dP - rowsum(dO * O)); dQ = scale dS K; dK = scale dS^T Q
// Deterministic: GEMMs and fixed-order warp reductions only.
//
// Precision (nn_cuda.h): fp32 and tf32 run the SGEMMs above (TF32 per the cuBLAS math mode). bf16
// (autocast semantics, like torch's bf16 SDPA) casts q, k, v and dO to bf16 per sample, runs the
// four GEMM kinds as cublasGemmStridedBatchedEx with bf16 operands and fp32 outputs (fp32
// accumulation), keeps S, the softmax, the log-sum-exp, dP and Di = rowsum(dO * O) in fp32, and
// rounds P (for O = P V and dV = P^T dO) and dS (for dQ, dK) to bf16 as the GEMM operands they are.
#include <math.h>

#include "precision.cuh"

// The fused kernels (flash_attention.cu, LOLA_ATTENTION=flash|auto): 1 when they ran the call, 0
// when this file's GEMM path must (fp32 mode, unsupported head size or device).
int lcu_flash_attention_forward(float *out, float *save, const float *qkv, int B, int N, int H, int dh);
int lcu_flash_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out, const float *save,
                                 int B, int N, int H, int dh);

#define ATT_WARPS 8
// Largest score buffer (floats) of one head chunk; nn_cuda_set_attention_chunk changes it (tests).
static size_t att_cap_floats = (size_t)64 << 20;
extern "C" void nn_cuda_set_attention_chunk(size_t floats) { att_cap_floats = floats ? floats : ((size_t)64 << 20); }

extern "C" size_t attention_save_floats(int B, int N, int H) { return (size_t)B * H * N; }

// Row softmax in place on rows of length N; lse[row] = max + log(sum exp(s - max)).
__global__ void softmax_rows_kernel(float *S, float *lse, size_t rows, int N) {
    size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *s = S + row * N;
    float mx = -INFINITY;
    for (int j = lane; j < N; j += 32) mx = fmaxf(mx, s[j]);
    mx = lcu_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < N; j += 32) sum += expf(s[j] - mx);
    sum = lcu_warp_sum(sum);
    float inv = 1.0f / sum;
    for (int j = lane; j < N; j += 32) s[j] = expf(s[j] - mx) * inv;
    if (lane == 0) lse[row] = mx + logf(sum);
}

// P = exp(S - lse) in place.
__global__ void probs_from_lse_kernel(float *S, const float *lse, size_t rows, int N) {
    size_t n = rows * (size_t)N;
    GRID_STRIDE(i, n) S[i] = expf(S[i] - lse[i / N]);
}

// dS = P (dP - Di) in place of P, Di = sum_d dO[i, d] O[i, d] over the head's dh values.
// Rows are (head hh of the chunk, query i); dO and O rows have stride D, head offset hh * dh.
__global__ void dscores_kernel(float *P, const float *dP, const float *dO, const float *O, int hc, int N, int D,
                               int dh) {
    size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (size_t)hc * N) return;
    int hh = (int)(row / N), i = (int)(row % N);
    const float *go = dO + (size_t)i * D + (size_t)hh * dh, *o = O + (size_t)i * D + (size_t)hh * dh;
    float di = 0.0f;
    for (int d = lane; d < dh; d += 32) di += go[d] * o[d];
    di = lcu_warp_sum(di);
    float *p = P + row * N;
    const float *dp = dP + row * N;
    for (int j = lane; j < N; j += 32) p[j] = p[j] * (dp[j] - di);
}

// bf16 mode: the same three kernels, writing their results as bf16 GEMM operands.
// Pb = bf16(softmax(S)) row-wise (S unchanged), lse as above.
__global__ void softmax_rows_bf16_kernel(const float *S, float *lse, lcu_bf16 *Pb, size_t rows, int N) {
    size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *s = S + row * N;
    lcu_bf16 *pb = Pb + row * N;
    float mx = -INFINITY;
    for (int j = lane; j < N; j += 32) mx = fmaxf(mx, s[j]);
    mx = lcu_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < N; j += 32) sum += expf(s[j] - mx);
    sum = lcu_warp_sum(sum);
    float inv = 1.0f / sum;
    for (int j = lane; j < N; j += 32) pb[j] = __float2bfloat16_rn(expf(s[j] - mx) * inv);
    if (lane == 0) lse[row] = mx + logf(sum);
}

// Pb = bf16(exp(S - lse)).
__global__ void probs_bf16_kernel(lcu_bf16 *Pb, const float *S, const float *lse, size_t rows, int N) {
    size_t n = rows * (size_t)N;
    GRID_STRIDE(i, n) Pb[i] = __float2bfloat16_rn(expf(S[i] - lse[i / N]));
}

// dSb = bf16(P (dP - Di)) with P = exp(S - lse) recomputed in fp32 (rows as in dscores_kernel).
__global__ void dscores_bf16_kernel(lcu_bf16 *dSb, const float *S, const float *lse, const float *dP, const float *dO,
                                    const float *O, int hc, int N, int D, int dh) {
    size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= (size_t)hc * N) return;
    int hh = (int)(row / N), i = (int)(row % N);
    const float *go = dO + (size_t)i * D + (size_t)hh * dh, *o = O + (size_t)i * D + (size_t)hh * dh;
    float di = 0.0f;
    for (int d = lane; d < dh; d += 32) di += go[d] * o[d];
    di = lcu_warp_sum(di);
    float l = lse[row];
    const float *s = S + row * N, *dp = dP + row * N;
    lcu_bf16 *ds = dSb + row * N;
    for (int j = lane; j < N; j += 32) ds[j] = __float2bfloat16_rn(expf(s[j] - l) * (dp[j] - di));
}

static int head_chunk(int N, int H) {
    size_t per = (size_t)N * N;
    size_t hc = att_cap_floats / (per ? per : 1);
    if (hc < 1) hc = 1;
    if (hc > (size_t)H) hc = H;
    return (int)hc;
}

static void check_att(const char *fn, int B, int N, int H, int dh) {
    if (B <= 0 || N <= 0 || H <= 0 || dh <= 0) lola_die("%s: bad shape B=%d N=%d H=%d dh=%d", fn, B, N, H, dh);
}

// bf16 forward: per sample, q/k/v cast once; per head chunk S (fp32) = scale Qb Kb^T, Pb and lse,
// O = Pb Vb (fp32).
static void attention_forward_bf16(float *out, float *save, const float *qkv, int B, int N, int H, int dh) {
    int D = H * dh, D3 = 3 * D, hcmax = head_chunk(N, H);
    long long NN = (long long)N * N;
    float scale = 1.0f / sqrtf((float)dh);
    float *S = (float *)lcu_scratch(LCU_SCR_ATTN_S, (size_t)hcmax * NN * sizeof(float));
    lcu_bf16 *Pb = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_P, (size_t)hcmax * NN * sizeof(lcu_bf16));
    for (int b = 0; b < B; b++) {
        const lcu_bf16 *qb = lcu_bf16_of(LCU_SCR_BF16_A, qkv + (size_t)b * N * D3, (size_t)N * D3);
        float *ob = out + (size_t)b * N * D;
        for (int h0 = 0; h0 < H; h0 += hcmax) {
            int hc = H - h0 < hcmax ? H - h0 : hcmax;
            const lcu_bf16 *Q = qb + (size_t)h0 * dh, *K = Q + D, *V = Q + 2 * D;
            lcu_gemm_batched_dt(0, 1, N, N, dh, scale, Q, D3, dh, K, D3, dh, CUDA_R_16BF, 0.0f, S, N, NN, hc);
            size_t rows = (size_t)hc * N;
            softmax_rows_bf16_kernel<<<lcu_cdiv(rows, ATT_WARPS), 32 * ATT_WARPS, 0, lcu_stream()>>>(
                S, save + ((size_t)b * H + h0) * N, Pb, rows, N);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched_dt(0, 0, N, dh, N, 1.0f, Pb, N, NN, V, D3, dh, CUDA_R_16BF, 0.0f, ob + (size_t)h0 * dh, D,
                                dh, hc);
        }
    }
}

// bf16 backward: per sample, q/k/v and dO cast once; per head chunk S = scale Qb Kb^T, Pb from lse,
// dV = Pb^T dOb, dP = dOb Vb^T (fp32), dSb (over Pb), dQ = scale dSb Kb, dK = scale dSb^T Qb.
static void attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *save, int B, int N, int H, int dh) {
    int D = H * dh, D3 = 3 * D, hcmax = head_chunk(N, H);
    long long NN = (long long)N * N;
    float scale = 1.0f / sqrtf((float)dh);
    float *S = (float *)lcu_scratch(LCU_SCR_ATTN_S, (size_t)hcmax * NN * sizeof(float));
    float *dP = (float *)lcu_scratch(LCU_SCR_ATTN_DP, (size_t)hcmax * NN * sizeof(float));
    lcu_bf16 *Pb = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_P, (size_t)hcmax * NN * sizeof(lcu_bf16));
    for (int b = 0; b < B; b++) {
        const lcu_bf16 *qb = lcu_bf16_of(LCU_SCR_BF16_A, qkv + (size_t)b * N * D3, (size_t)N * D3);
        const lcu_bf16 *gb = lcu_bf16_of(LCU_SCR_BF16_B, dout + (size_t)b * N * D, (size_t)N * D);
        float *dq = dqkv + (size_t)b * N * D3;
        const float *gob = dout + (size_t)b * N * D, *ob = out + (size_t)b * N * D;
        for (int h0 = 0; h0 < H; h0 += hcmax) {
            int hc = H - h0 < hcmax ? H - h0 : hcmax;
            size_t rows = (size_t)hc * N;
            const lcu_bf16 *Q = qb + (size_t)h0 * dh, *K = Q + D, *V = Q + 2 * D, *gOb = gb + (size_t)h0 * dh;
            float *dQ = dq + (size_t)h0 * dh, *dK = dQ + D, *dV = dQ + 2 * D;
            const float *gO = gob + (size_t)h0 * dh, *O = ob + (size_t)h0 * dh;
            const float *lse = save + ((size_t)b * H + h0) * N;
            lcu_gemm_batched_dt(0, 1, N, N, dh, scale, Q, D3, dh, K, D3, dh, CUDA_R_16BF, 0.0f, S, N, NN, hc);
            probs_bf16_kernel<<<lcu_grid(rows * N), LCU_THREADS, 0, lcu_stream()>>>(Pb, S, lse, rows, N);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched_dt(1, 0, N, dh, N, 1.0f, Pb, N, NN, gOb, D, dh, CUDA_R_16BF, 0.0f, dV, D3, dh, hc);
            lcu_gemm_batched_dt(0, 1, N, N, dh, 1.0f, gOb, D, dh, V, D3, dh, CUDA_R_16BF, 0.0f, dP, N, NN, hc);
            dscores_bf16_kernel<<<lcu_cdiv(rows, ATT_WARPS), 32 * ATT_WARPS, 0, lcu_stream()>>>(Pb, S, lse, dP, gO, O,
                                                                                             hc, N, D, dh);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched_dt(0, 0, N, dh, N, scale, Pb, N, NN, K, D3, dh, CUDA_R_16BF, 0.0f, dQ, D3, dh, hc);
            lcu_gemm_batched_dt(1, 0, N, dh, N, scale, Pb, N, NN, Q, D3, dh, CUDA_R_16BF, 0.0f, dK, D3, dh, hc);
        }
    }
}

extern "C" void attention_forward(float *out, float *save, const float *qkv, int B, int N, int H, int dh) {
    check_att("attention_forward", B, N, H, dh);
    lcu_ensure_init();
    if (lcu_flash_attention_forward(out, save, qkv, B, N, H, dh)) return;
    if (nn_cuda_precision() == NN_PREC_BF16) {
        attention_forward_bf16(out, save, qkv, B, N, H, dh);
        return;
    }
    int D = H * dh, D3 = 3 * D, hcmax = head_chunk(N, H);
    long long NN = (long long)N * N;
    float scale = 1.0f / sqrtf((float)dh);
    float *S = (float *)lcu_scratch(LCU_SCR_ATTN_S, (size_t)hcmax * NN * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * N * D3;
        float *ob = out + (size_t)b * N * D;
        for (int h0 = 0; h0 < H; h0 += hcmax) {
            int hc = H - h0 < hcmax ? H - h0 : hcmax;
            const float *Q = q + (size_t)h0 * dh, *K = Q + D, *V = Q + 2 * D;
            lcu_gemm_batched(0, 1, N, N, dh, scale, Q, D3, dh, K, D3, dh, 0.0f, S, N, NN, hc);
            size_t rows = (size_t)hc * N;
            softmax_rows_kernel<<<lcu_cdiv(rows, ATT_WARPS), 32 * ATT_WARPS, 0, lcu_stream()>>>(
                S, save + ((size_t)b * H + h0) * N, rows, N);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched(0, 0, N, dh, N, 1.0f, S, N, NN, V, D3, dh, 0.0f, ob + (size_t)h0 * dh, D, dh, hc);
        }
    }
}

extern "C" void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                                   const float *save, int B, int N, int H, int dh) {
    check_att("attention_backward", B, N, H, dh);
    if (!dqkv) return;
    lcu_ensure_init();
    if (lcu_flash_attention_backward(dqkv, dout, qkv, out, save, B, N, H, dh)) return;
    if (nn_cuda_precision() == NN_PREC_BF16) {
        attention_backward_bf16(dqkv, dout, qkv, out, save, B, N, H, dh);
        return;
    }
    int D = H * dh, D3 = 3 * D, hcmax = head_chunk(N, H);
    long long NN = (long long)N * N;
    float scale = 1.0f / sqrtf((float)dh);
    float *S = (float *)lcu_scratch(LCU_SCR_ATTN_S, (size_t)hcmax * NN * sizeof(float));
    float *dP = (float *)lcu_scratch(LCU_SCR_ATTN_DP, (size_t)hcmax * NN * sizeof(float));
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (size_t)b * N * D3;
        float *dq = dqkv + (size_t)b * N * D3;
        const float *gob = dout + (size_t)b * N * D, *ob = out + (size_t)b * N * D;
        for (int h0 = 0; h0 < H; h0 += hcmax) {
            int hc = H - h0 < hcmax ? H - h0 : hcmax;
            size_t rows = (size_t)hc * N;
            const float *Q = q + (size_t)h0 * dh, *K = Q + D, *V = Q + 2 * D;
            float *dQ = dq + (size_t)h0 * dh, *dK = dQ + D, *dV = dQ + 2 * D;
            const float *gO = gob + (size_t)h0 * dh, *O = ob + (size_t)h0 * dh;
            lcu_gemm_batched(0, 1, N, N, dh, scale, Q, D3, dh, K, D3, dh, 0.0f, S, N, NN, hc);
            probs_from_lse_kernel<<<lcu_grid(rows * N), LCU_THREADS, 0, lcu_stream()>>>(
                S, save + ((size_t)b * H + h0) * N, rows, N);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched(1, 0, N, dh, N, 1.0f, S, N, NN, gO, D, dh, 0.0f, dV, D3, dh, hc);
            lcu_gemm_batched(0, 1, N, N, dh, 1.0f, gO, D, dh, V, D3, dh, 0.0f, dP, N, NN, hc);
            dscores_kernel<<<lcu_cdiv(rows, ATT_WARPS), 32 * ATT_WARPS, 0, lcu_stream()>>>(S, dP, gO, O, hc, N, D, dh);
            CUDA_LAUNCH_CHECK();
            lcu_gemm_batched(0, 0, N, dh, N, scale, S, N, NN, K, D3, dh, 0.0f, dQ, D3, dh, hc);
            lcu_gemm_batched(1, 0, N, dh, N, scale, S, N, NN, Q, D3, dh, 0.0f, dK, D3, dh, hc);
        }
    }
}
