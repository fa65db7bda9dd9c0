// vit_extra.c: the per-sample coefficient ops nn_rows_axpby and nn_where (nn.h), used by the
// diffusion / surrogate wrappers (denoiser.c) for EDM preconditioning, masked value replacement
// and x * mask.
#include "cpu.h"
#include "nn.h"

void nn_rows_axpby(float *out, const float *a, const float *x, const float *c, const float *y, int B,
                   size_t n) {
    if ((c == NULL) != (y == NULL)) lola_die("nn_rows_axpby: c and y must both be set or both be NULL");
    size_t total = (size_t)B * n;
    if (n == 0) return;
#pragma omp parallel for schedule(static) if (total >= CPU_PAR_MIN)
    for (size_t i = 0; i < total; i++) {
        size_t b = i / n;
        out[i] = y ? a[b] * x[i] + c[b] * y[i] : a[b] * x[i];
    }
}

void nn_where(float *out, const float *m, const float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = m[i] != 0.0f ? x[i] : (y ? y[i] : 0.0f);
}
