// loss.cu: MSE, MAE and VRMSE losses (lola-spec.md 2.5). The loss value is reduced in double
// through per-block partials summed on the host in order (deterministic); the gradient is written
// in the same pass when dpred != NULL.
#include <math.h>

#include "cuda_common.cuh"

#define LOSS_MAX_BLOCKS 1024

static unsigned loss_grid(size_t n) {
    size_t b = (n + LCU_THREADS - 1) / LCU_THREADS;
    if (b > LOSS_MAX_BLOCKS) b = LOSS_MAX_BLOCKS;
    return b ? (unsigned)b : 1;
}

// kind 0: squared error, gradient 2 (p - t) * gs / n; kind 1: absolute error, sign(p - t) * gs / n.
__global__ void pointwise_loss_kernel(double *partials, float *dpred, const float *pred, const float *target,
                                      size_t n, float gscale, int kind) {
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        float d = pred[i] - target[i];
        if (kind == 0) {
            acc += (double)d * (double)d;
            if (dpred) dpred[i] = 2.0f * d * gscale;
        } else {
            acc += fabs((double)d);
            if (dpred) dpred[i] = (d > 0.0f ? gscale : (d < 0.0f ? -gscale : 0.0f));
        }
    }
    acc = lcu_block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

static double pointwise_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale,
                             int kind) {
    if (!n) lola_die("%s_loss: empty input", kind ? "mae" : "mse");
    lcu_ensure_init();
    unsigned g = loss_grid(n);
    double *part = (double *)lcu_scratch(LCU_SCR_RED, LOSS_MAX_BLOCKS * sizeof(double));
    float gs = (float)((double)grad_scale / (double)n);
    pointwise_loss_kernel<<<g, LCU_THREADS, 0, lcu_stream()>>>(part, dpred, pred, target, n, gs, kind);
    CUDA_LAUNCH_CHECK();
    return lcu_sum_partials(part, (int)g) / (double)n;
}

extern "C" double mse_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale) {
    return pointwise_loss(dpred, pred, target, n, grad_scale, 0);
}
extern "C" double mae_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale) {
    return pointwise_loss(dpred, pred, target, n, grad_scale, 1);
}

// VRMSE: one block per (b, c) row of HW pixels. r = sqrt(mse / (var_unbiased(t) + eps));
// loss = mean over rows of r; d r / d p_i = (p_i - t_i) / (HW (var + eps) r) (0 where r = 0).
__global__ void vrmse_kernel(double *rows, float *dpred, const float *pred, const float *target, int HW,
                             float eps, double gscale_rows) {
    size_t base = (size_t)blockIdx.x * HW;
    const float *p = pred + base, *t = target + base;
    double s = 0.0;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) s += t[i];
    double mean = lcu_block_sum(s) / HW;
    double sv = 0.0, se = 0.0;
    for (int i = threadIdx.x; i < HW; i += blockDim.x) {
        double dt = (double)t[i] - mean, d = (double)p[i] - (double)t[i];
        sv += dt * dt;
        se += d * d;
    }
    double var = lcu_block_sum(sv) / (HW - 1);
    double mse = lcu_block_sum(se) / HW;
    double r = sqrt(mse / (var + eps));
    if (threadIdx.x == 0) rows[blockIdx.x] = r;
    if (dpred) {
        float k = r > 0.0 ? (float)(gscale_rows / ((double)HW * (var + eps) * r)) : 0.0f;
        for (int i = threadIdx.x; i < HW; i += blockDim.x) dpred[base + i] = (p[i] - t[i]) * k;
    }
}

extern "C" double vrmse_loss(float *dpred, const float *pred, const float *target, int B, int C, int HW,
                             float eps, float grad_scale) {
    if (B <= 0 || C <= 0 || HW < 2) lola_die("vrmse_loss: bad shape B=%d C=%d HW=%d (need HW >= 2)", B, C, HW);
    lcu_ensure_init();
    int rows = B * C;
    double *r = (double *)lcu_scratch(LCU_SCR_RED, (size_t)rows * sizeof(double) + 8);
    vrmse_kernel<<<rows, 512, 0, lcu_stream()>>>(r, dpred, pred, target, HW, eps, (double)grad_scale / rows);
    CUDA_LAUNCH_CHECK();
    // rows can exceed lcu_sum_partials' limit: sum in chunks, in order.
    double s = 0.0;
    for (int i = 0; i < rows; i += 4096) s += lcu_sum_partials(r + i, rows - i < 4096 ? rows - i : 4096);
    return s / rows;
}
