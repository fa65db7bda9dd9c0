// attention.c: the ViT attention path (nn.h, lola-spec.md 4.2): qk-norm + RoPE on the packed
// qkv buffer, then multi-head softmax attention (no mask, scale 1/sqrt(dh)).
//
// Layout: qkv (B, N, 3D) = [q | k | v] per token, D = H*dh, head h = columns h*dh..(h+1)*dh of
// each part. So the (N, dh) matrix of one head is a strided view with row stride 3D, and the
// GEMMs read it in place (lda = 3D) without any copy.
//
// Attention works on tasks (b, h, block of ATT_ROWS query rows), each with single-threaded
// GEMMs, all tasks in one OpenMP loop:
//   forward   S = scale Q_i K^T -> P_i = softmax(S) (stored in `save`) -> O_i = P_i V
//   backward  phase 1 (query blocks i): dP_i = dO_i V^T, dS_i = scale P_i (dP_i - rowsum(dO_i O_i)),
//                                       dQ_i = dS_i K
//             phase 2 (key blocks j):   dK_j = dS_j^T Q, dV_j = P_j^T dO   (column blocks of dS, P)
// (rowsum(dP P) = rowsum(dO O) since O = P V.) dS lives in the SCRATCH_ATTN scratch for a group
// of (b, h) pairs at a time (bounded memory); not reentrant (cpu.h).
#include <math.h>
#include <omp.h>

#include "cpu.h"
#include "nn.h"

#define ATT_ROWS 64                     // query (or key) rows per task
#define QK_RMS_EPS 1e-5f

// dS of a group of heads: 64 MiB at most (one head minimum). A variable so tests can force groups.
size_t cpu_att_scratch_floats = (size_t)16 << 20;

// ---------------------------------------------------------------------------------------------
// qk-norm + RoPE

// One head vector of dh floats: qn = src * r (r = rstd, 1 when no norm), then each pair (2m, 2m+1)
// rotated by the angle with cosine c[m], sine s[m] (when rope).
static void rope_head_forward(float *dst, const float *src, float r, const float *c, const float *s,
                              int dh, int rope) {
    for (int m = 0; m < dh / 2; m++) {
        float a = src[2 * m] * r, b = src[2 * m + 1] * r;
        if (rope) {
            dst[2 * m] = a * c[m] - b * s[m];
            dst[2 * m + 1] = a * s[m] + b * c[m];
        } else {
            dst[2 * m] = a;
            dst[2 * m + 1] = b;
        }
    }
    if (dh % 2) dst[dh - 1] = src[dh - 1] * r; // odd dh (no rope): last element alone
}

static float rms_rstd(const float *v, int dh) {
    double q = 0.0;
#pragma omp simd reduction(+ : q)
    for (int j = 0; j < dh; j++) q += (double)v[j] * v[j];
    return (float)(1.0 / sqrt(q / dh + QK_RMS_EPS));
}

void qk_norm_rope_forward(float *out, float *rstd, const float *qkv, const float *angle, int B, int N,
                          int H, int dh, int qknorm, int rope) {
    if (rope && dh % 2) lola_die("qk_norm_rope_forward: RoPE needs an even head size, got dh=%d", dh);
    int D = H * dh, half = D / 2, hh = dh / 2;
#pragma omp parallel for schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN / 4)
    for (int n = 0; n < N; n++) {
        // cos/sin of this token's angles, shared by every sample and by q and k
        float cs[rope ? half : 1], sn[rope ? half : 1];
        if (rope)
            for (int m = 0; m < half; m++) {
                cs[m] = cosf(angle[(size_t)n * half + m]);
                sn[m] = sinf(angle[(size_t)n * half + m]);
            }
        for (int b = 0; b < B; b++) {
            size_t row = (size_t)b * N + n;
            const float *src = qkv + row * 3 * D;
            float *dst = out + row * 3 * D;
            for (int part = 0; part < 2; part++) // q heads, then k heads
                for (int h = 0; h < H; h++) {
                    size_t o = (size_t)part * D + (size_t)h * dh;
                    float r = qknorm ? rms_rstd(src + o, dh) : 1.0f;
                    rstd[row * 2 * H + part * H + h] = r;
                    rope_head_forward(dst + o, src + o, r, rope ? cs + h * hh : NULL,
                                      rope ? sn + h * hh : NULL, dh, rope);
                }
            memcpy(dst + 2 * D, src + 2 * D, (size_t)D * sizeof(float)); // v
        }
    }
}

// Per head: undo the rotation on the gradient (g0 c + g1 s, -g0 s + g1 c), accumulate the angle
// gradient dtheta += -g0 o1 + g1 o0 (o the rotated output), then the RMS-norm backward
// dsrc_j = r (gn_j - qn_j mean(gn qn)), qn = src r.
void qk_norm_rope_backward(float *dqkv, float *dangle, const float *dout, const float *qkv,
                           const float *rstd, const float *angle, int B, int N, int H, int dh,
                           int qknorm, int rope) {
    if (rope && dh % 2) lola_die("qk_norm_rope_backward: RoPE needs an even head size, got dh=%d", dh);
    if (!dqkv && !(rope && dangle)) return;
    int D = H * dh, half = D / 2, hh = dh / 2;
#pragma omp parallel for schedule(static) if ((size_t)B * N * D >= CPU_PAR_MIN / 4)
    for (int n = 0; n < N; n++) {
        float cs[rope ? half : 1], sn[rope ? half : 1], gn[dh];
        double da[rope ? half : 1];
        if (rope)
            for (int m = 0; m < half; m++) {
                cs[m] = cosf(angle[(size_t)n * half + m]);
                sn[m] = sinf(angle[(size_t)n * half + m]);
                da[m] = 0.0;
            }
        for (int b = 0; b < B; b++) {
            size_t row = (size_t)b * N + n;
            const float *src = qkv + row * 3 * D, *g = dout + row * 3 * D;
            float *dst = dqkv ? dqkv + row * 3 * D : NULL;
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < H; h++) {
                    size_t o = (size_t)part * D + (size_t)h * dh;
                    float r = rstd[row * 2 * H + part * H + h];
                    const float *x = src + o, *go = g + o;
                    // gradient w.r.t. the normalised, unrotated vector qn
                    for (int m = 0; m < hh; m++) {
                        float g0 = go[2 * m], g1 = go[2 * m + 1];
                        if (rope) {
                            int a = h * hh + m;
                            float c = cs[a], s = sn[a];
                            float q0 = x[2 * m] * r, q1 = x[2 * m + 1] * r;
                            float o0 = q0 * c - q1 * s, o1 = q0 * s + q1 * c;
                            da[a] += (double)g1 * o0 - (double)g0 * o1;
                            gn[2 * m] = g0 * c + g1 * s;
                            gn[2 * m + 1] = -g0 * s + g1 * c;
                        } else {
                            gn[2 * m] = g0;
                            gn[2 * m + 1] = g1;
                        }
                    }
                    if (dh % 2) gn[dh - 1] = go[dh - 1];
                    if (!dst) continue; // only dangle wanted
                    if (qknorm) {
                        double sgq = 0.0;
                        for (int j = 0; j < dh; j++) sgq += (double)gn[j] * x[j] * r;
                        float e = (float)(sgq / dh);
                        for (int j = 0; j < dh; j++) dst[o + j] = r * (gn[j] - x[j] * r * e);
                    } else {
                        for (int j = 0; j < dh; j++) dst[o + j] = gn[j];
                    }
                }
            if (dst) memcpy(dst + 2 * D, g + 2 * D, (size_t)D * sizeof(float)); // v passes through
        }
        if (rope && dangle)
            for (int m = 0; m < half; m++) dangle[(size_t)n * half + m] += (float)da[m];
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax attention

size_t attention_save_floats(int B, int N, int H) { return (size_t)B * H * N * N; }

// In-place numerically stable softmax of each of the `rows` rows of length N (row stride N).
CPU_KERNEL static void softmax_rows(float *S, int rows, int N) {
    for (int i = 0; i < rows; i++) {
        float *s = S + (size_t)i * N;
        float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < N; j++) mx = s[j] > mx ? s[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < N; j++) {
            float e = cpu_expf(s[j] - mx);
            s[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < N; j++) s[j] *= inv;
    }
}

// dS = scale * P * (dP - rowsum(dP P)) in place of dP (rows of length N), with
// rowsum(dP P) = dO . O per row (dO, O: rows of dh floats, row stride D).
CPU_KERNEL static void softmax_backward_rows(float *dS, const float *P, const float *dO, const float *O,
                                             int rows, int N, int dh, int D, float scale) {
    for (int i = 0; i < rows; i++) {
        const float *go = dO + (size_t)i * D, *o = O + (size_t)i * D;
        float di = 0.0f;
        for (int j = 0; j < dh; j++) di += go[j] * o[j];
        float *ds = dS + (size_t)i * N;
        const float *p = P + (size_t)i * N;
        for (int j = 0; j < N; j++) ds[j] = scale * p[j] * (ds[j] - di);
    }
}

static void att_check(const char *who, int B, int N, int H, int dh) {
    if (B < 1 || N < 1 || H < 1 || dh < 1) lola_die("%s: bad shape B=%d N=%d H=%d dh=%d", who, B, N, H, dh);
}

void attention_forward(float *out, float *save, const float *qkv, int B, int N, int H, int dh) {
    att_check("attention_forward", B, N, H, dh);
    cpu_ensure_init();
    int D = H * dh, ld = 3 * D, nblk = (N + ATT_ROWS - 1) / ATT_ROWS;
    float scale = 1.0f / sqrtf((float)dh);
    long ntask = (long)B * H * nblk;
#pragma omp parallel for schedule(dynamic, 1)
    for (long t = 0; t < ntask; t++) {
        int blk = (int)(t % nblk), h = (int)(t / nblk % H), b = (int)(t / nblk / H);
        int i0 = blk * ATT_ROWS, ni = N - i0 < ATT_ROWS ? N - i0 : ATT_ROWS;
        const float *base = qkv + (size_t)b * N * ld + (size_t)h * dh; // q of head h, token 0
        const float *Q = base + (size_t)i0 * ld, *K = base + D, *V = base + 2 * D;
        float *P = save + (((size_t)b * H + h) * N + i0) * N;
        cpu_gemm(0, 1, ni, N, dh, scale, Q, ld, K, ld, 0.0f, P, N); // S = scale Q K^T
        softmax_rows(P, ni, N);
        float *O = out + ((size_t)b * N + i0) * D + (size_t)h * dh;
        cpu_gemm(0, 0, ni, dh, N, 1.0f, P, N, V, ld, 0.0f, O, D); // O = P V
    }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *save, int B, int N, int H, int dh) {
    att_check("attention_backward", B, N, H, dh);
    if (!dqkv) return;
    cpu_ensure_init();
    int D = H * dh, ld = 3 * D, nblk = (N + ATT_ROWS - 1) / ATT_ROWS;
    float scale = 1.0f / sqrtf((float)dh);
    long pairs = (long)B * H;
    long group = (long)(cpu_att_scratch_floats / ((size_t)N * N));
    if (group < 1) group = 1;
    if (group > pairs) group = pairs;
    float *dS_all = cpu_scratch(SCRATCH_ATTN, (size_t)group * N * N);

    for (long g0 = 0; g0 < pairs; g0 += group) {
        long g1 = g0 + group < pairs ? g0 + group : pairs;
        long ntask = (g1 - g0) * nblk;
        // phase 1: per query block i -> dS_i, dQ_i
#pragma omp parallel for schedule(dynamic, 1)
        for (long t = 0; t < ntask; t++) {
            long pr = g0 + t / nblk;
            int blk = (int)(t % nblk), h = (int)(pr % H), b = (int)(pr / H);
            int i0 = blk * ATT_ROWS, ni = N - i0 < ATT_ROWS ? N - i0 : ATT_ROWS;
            const float *base = qkv + (size_t)b * N * ld + (size_t)h * dh;
            const float *K = base + D, *V = base + 2 * D;
            const float *P = save + ((size_t)pr * N + i0) * N;
            float *dS = dS_all + ((size_t)(pr - g0) * N + i0) * N;
            size_t orow = ((size_t)b * N + i0) * D + (size_t)h * dh; // dO_i, O_i
            cpu_gemm(0, 1, ni, N, dh, 1.0f, dout + orow, D, V, ld, 0.0f, dS, N); // dP = dO V^T
            softmax_backward_rows(dS, P, dout + orow, out + orow, ni, N, dh, D, scale);
            float *dQ = dqkv + ((size_t)b * N + i0) * ld + (size_t)h * dh;
            cpu_gemm(0, 0, ni, dh, N, 1.0f, dS, N, K, ld, 0.0f, dQ, ld); // dQ = dS K
        }
        // phase 2: per key block j -> dK_j = dS[:, j]^T Q, dV_j = P[:, j]^T dO
#pragma omp parallel for schedule(dynamic, 1)
        for (long t = 0; t < ntask; t++) {
            long pr = g0 + t / nblk;
            int blk = (int)(t % nblk), h = (int)(pr % H), b = (int)(pr / H);
            int j0 = blk * ATT_ROWS, nj = N - j0 < ATT_ROWS ? N - j0 : ATT_ROWS;
            const float *Q = qkv + (size_t)b * N * ld + (size_t)h * dh;
            const float *dS = dS_all + (size_t)(pr - g0) * N * N + j0;
            const float *P = save + (size_t)pr * N * N + j0;
            const float *dO = dout + (size_t)b * N * D + (size_t)h * dh;
            float *dK = dqkv + ((size_t)b * N + j0) * ld + D + (size_t)h * dh;
            cpu_gemm(1, 0, nj, dh, N, 1.0f, dS, N, Q, ld, 0.0f, dK, ld);
            cpu_gemm(1, 0, nj, dh, N, 1.0f, P, N, dO, D, 0.0f, dK + D, ld);
        }
    }
}
