// adamw.c: one AdamW step over a flat parameter buffer (nn.h), with torch.optim.AdamW's
// (non-fused, non-amsgrad) arithmetic order:
//   p *= 1 - lr*wd                       (decoupled weight decay, before the moment update)
//   m = m + (1 - b1) (g - m)   (torch's lerp_, = b1 m + (1 - b1) g);  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc1 = 1 - b1^t, bc2 = 1 - b2^t
// which equals the nn.h formula p -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
#include <math.h>

#include "cpu.h"
#include "nn.h"

CPU_KERNEL static void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1,
                                    float b2, float eps, float decay, float step, float sqrt_bc2) {
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = m[i] + (1.0f - b1) * (gi - m[i]);
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * (mi / (sqrtf(vi) / sqrt_bc2 + eps)); // torch: addcdiv_(m, denom, -step)
    }
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                  float b2, float eps, float wd, int t) {
    if (t < 1) lola_die("adamw_update: step count t = %d, need t >= 1", t);
    double bc1 = 1.0 - pow((double)b1, t), bc2 = 1.0 - pow((double)b2, t);
    float step = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    float decay = (float)(1.0 - (double)lr * wd);
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK)
        adamw_kernel(p + i, g + i, m + i, v + i, cpu_min_size(CPU_CHUNK, n - i), b1, b2, eps, decay,
                     step, sqrt_bc2);
}
