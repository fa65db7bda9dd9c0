// loss.c: reconstruction losses (nn.h, lola-spec.md 2.5; lola.autoencoder.AutoEncoderLoss).
// Each returns the loss in float64 and, when dpred != NULL, writes (=) dpred = grad_scale * dL/dpred.
// Sums are float64, over fixed chunks combined in order (independent of the thread count).
#include <math.h>

#include "cpu.h"
#include "nn.h"

// Shared driver for the elementwise losses: kind 0 = squared error, 1 = absolute error.
static double pointwise_loss(float *dpred, const float *pred, const float *target, size_t n,
                             float grad_scale, int kind) {
    if (n == 0) lola_die("%s: empty tensor", kind ? "mae_loss" : "mse_loss");
    size_t nchunks = (n + CPU_RED_CHUNK - 1) / CPU_RED_CHUNK;
    double *part = (double *)cpu_scratch(SCRATCH_RED, 2 * nchunks);
    float gs = (float)(grad_scale / (double)n);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CPU_RED_CHUNK, i1 = i0 + CPU_RED_CHUNK < n ? i0 + CPU_RED_CHUNK : n;
        double s = 0.0;
        if (kind == 0) {
#pragma omp simd reduction(+ : s)
            for (size_t i = i0; i < i1; i++) {
                float d = pred[i] - target[i];
                s += (double)d * d;
            }
            if (dpred)
                for (size_t i = i0; i < i1; i++) dpred[i] = 2.0f * gs * (pred[i] - target[i]);
        } else {
#pragma omp simd reduction(+ : s)
            for (size_t i = i0; i < i1; i++) s += fabsf(pred[i] - target[i]);
            if (dpred)
                for (size_t i = i0; i < i1; i++) {
                    float d = pred[i] - target[i];
                    dpred[i] = d > 0.0f ? gs : (d < 0.0f ? -gs : 0.0f);
                }
        }
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < nchunks; c++) s += part[c];
    return s / (double)n;
}

double mse_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale) {
    return pointwise_loss(dpred, pred, target, n, grad_scale, 0);
}

double mae_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale) {
    return pointwise_loss(dpred, pred, target, n, grad_scale, 1);
}

// VRMSE: for each row (b, c) of HW pixels,
//   l_bc = sqrt(mse_bc / (var_t + eps)), mse_bc = mean (p - t)^2, var_t = unbiased variance of t,
// loss = mean_bc l_bc. Gradient: dl_bc/dp_i = (p_i - t_i) / (HW (var_t + eps) l_bc); it is set to
// 0 for a row with l_bc = 0 (torch's sqrt backward would give NaN there).
double vrmse_loss(float *dpred, const float *pred, const float *target, int B, int C, int HW,
                  float eps, float grad_scale) {
    if (B < 1 || C < 1 || HW < 2)
        lola_die("vrmse_loss: shape B=%d C=%d HW=%d; the unbiased variance needs HW >= 2", B, C, HW);
    int rows = B * C;
    double *lrow = (double *)cpu_scratch(SCRATCH_RED, 2 * (size_t)rows);
#pragma omp parallel for schedule(static) if ((size_t)rows * HW >= CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *p = pred + (size_t)r * HW, *t = target + (size_t)r * HW;
        double st = 0.0, sq = 0.0, se = 0.0;
#pragma omp simd reduction(+ : st)
        for (int i = 0; i < HW; i++) st += t[i];
        double mt = st / HW;
#pragma omp simd reduction(+ : sq, se)
        for (int i = 0; i < HW; i++) {
            double dt = t[i] - mt, d = (double)p[i] - t[i];
            sq += dt * dt;
            se += d * d;
        }
        double den = sq / (HW - 1) + eps; // var_t + eps
        double l = sqrt(se / HW / den);
        lrow[r] = l;
        if (dpred) {
            float k = l > 0.0 ? (float)(grad_scale / ((double)rows * HW * den * l)) : 0.0f;
            float *g = dpred + (size_t)r * HW;
            for (int i = 0; i < HW; i++) g[i] = k * (p[i] - t[i]);
        }
    }
    double s = 0.0;
    for (int r = 0; r < rows; r++) s += lrow[r];
    return s / rows;
}
