// transform.c: LoLa's field_preprocess / field_postprocess (see transform.h).
#include "transform.h"

#include <math.h>
#include <string.h>

#include "common.h"

static const char *TF_NAMES[] = {"none", "log", "log_eps", "log1p", "arcsinh"};

int transform_parse(const char *name) {
    if (!name || !name[0]) return TF_NONE;
    for (int k = 0; k < 5; k++)
        if (strcmp(name, TF_NAMES[k]) == 0) return k;
    return -1;
}

const char *transform_name(int kind) { return (kind >= 0 && kind < 5) ? TF_NAMES[kind] : "?"; }

void preprocess_init(Preprocess *p, int C, const int *kinds, const float *mean, int n_mean,
                     const float *std, int n_std, const char *what) {
    if (!what) what = "dataset config";
    memset(p, 0, sizeof(*p));
    if (C < 1 || C > PRE_MAX_CHANNELS) lola_die("%s: %d channels (must be 1..%d)", what, C, PRE_MAX_CHANNELS);
    p->n_channels = C;
    for (int c = 0; c < C; c++) {
        int k = kinds ? kinds[c] : TF_NONE;
        if (k < TF_NONE || k > TF_ARCSINH) lola_die("%s: transform code %d for channel %d is not valid", what, k, c);
        p->kind[c] = k;
    }
    if ((mean == NULL) != (std == NULL))
        lola_die("%s: stats.mean and stats.std must be given together", what);
    if (!mean) return;
    if (n_mean != C)
        lola_die_hint("give one value per channel, in the dataset's channel order",
                      "%s: stats.mean has %d values but the dataset has %d channels", what, n_mean, C);
    if (n_std != C)
        lola_die_hint("give one value per channel, in the dataset's channel order",
                      "%s: stats.std has %d values but the dataset has %d channels", what, n_std, C);
    for (int c = 0; c < C; c++) {
        if (!isfinite(mean[c])) lola_die("%s: stats.mean[%d] = %g is not finite", what, c, mean[c]);
        if (!(std[c] > 0.0f) || !isfinite(std[c]))
            lola_die("%s: stats.std[%d] = %g must be a finite value > 0", what, c, std[c]);
        p->mean[c] = mean[c];
        p->std[c] = std[c];
    }
    p->normalize = 1;
}

static inline float tf_fwd(int kind, float x) {
    switch (kind) {
    case TF_LOG: return logf(x);
    case TF_LOG_EPS: return logf(x + 1e-6f);
    case TF_LOG1P: return log1pf(x);
    case TF_ARCSINH: return asinhf(x);
    default: return x;
    }
}

static inline float tf_inv(int kind, float y) {
    switch (kind) {
    case TF_LOG: return expf(y);
    case TF_LOG_EPS: return expf(y) - 1e-6f;
    case TF_LOG1P: return expm1f(y);
    case TF_ARCSINH: return sinhf(y);
    default: return y;
    }
}

float preprocess_value(const Preprocess *p, int c, float x) {
    float y = tf_fwd(p->kind[c], x);
    if (p->normalize) y = (y - p->mean[c]) / p->std[c];
    return y;
}

float postprocess_value(const Preprocess *p, int c, float y) {
    if (p->normalize) y = y * p->std[c] + p->mean[c];
    return tf_inv(p->kind[c], y);
}

// One loop per transform kind so the compiler keeps the inner loops branch-free.
#define TF_LOOP(EXPR)                                                                             \
    do {                                                                                          \
        if (norm)                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                     \
                float x = sign * src[i];                                                          \
                dst[i] = ((EXPR) - m) / s;                                                        \
            }                                                                                     \
        else                                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                     \
                float x = sign * src[i];                                                          \
                dst[i] = (EXPR);                                                                  \
            }                                                                                     \
    } while (0)

void preprocess_channel(const Preprocess *p, int c, float sign, const float *src, float *dst, int64_t n) {
    const int norm = p->normalize;
    const float m = p->mean[c], s = p->std[c];
    switch (p->kind[c]) {
    case TF_LOG: TF_LOOP(logf(x)); break;
    case TF_LOG_EPS: TF_LOOP(logf(x + 1e-6f)); break;
    case TF_LOG1P: TF_LOOP(log1pf(x)); break;
    case TF_ARCSINH: TF_LOOP(asinhf(x)); break;
    default:
        if (!norm && sign == 1.0f) {
            if (dst != src) memmove(dst, src, (size_t)n * sizeof(float));
        } else {
            TF_LOOP(x);
        }
        break;
    }
}

void preprocess_forward(const Preprocess *p, float *x, int64_t outer, int64_t inner) {
    const int C = p->n_channels;
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < C; c++) {
            float *v = x + (o * C + c) * inner;
            preprocess_channel(p, c, 1.0f, v, v, inner);
        }
}

void preprocess_inverse(const Preprocess *p, float *x, int64_t outer, int64_t inner) {
    const int C = p->n_channels;
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < C; c++) {
            float *v = x + (o * C + c) * inner;
            const int k = p->kind[c];
            const float m = p->mean[c], s = p->std[c];
            if (p->normalize)
                for (int64_t i = 0; i < inner; i++) v[i] = v[i] * s + m;
            if (k != TF_NONE)
                for (int64_t i = 0; i < inner; i++) v[i] = tf_inv(k, v[i]);
        }
}
