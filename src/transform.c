// transform.c: LoLa's field_preprocess / field_postprocess (see transform.h).
//
// -fno-trapping-math for this file: lets GCC if-convert and vectorise the log loops. It changes no
// result (IEEE rounding is unchanged); it only stops GCC from preserving FP exception flags.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
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

// Fast logarithm for the transform loops (branch-free, so GCC vectorises the loops; the glibc
// calls do not vectorise and cost ~15 ns each). Argument reduction u = 2^k m with m in
// [sqrt(2)/2, sqrt(2)), then log(m) = log1p(f), f = m - 1, from s = f / (2 + f) with a degree-8
// odd minimax series (the classic fdlibm/FreeBSD logf scheme), plus the rounding error c of
// u = 1 + x for log1p. Error < 1 ulp on positive normal inputs (tests/test_well.c checks <= 1 ulp
// against double log1p/log); PyTorch's own CPU log1p (SLEEF u10) is also a 1-ulp routine, not
// correctly rounded. Inputs outside (0, FLT_MAX] (u) are flagged and recomputed with libm.
typedef union {
    float f;
    int32_t i;
} F32;

static inline float log_core(float u, float c) {
    F32 v = {u};
    int32_t iu = v.i + (0x3f800000 - 0x3f3504f3);
    int32_t k = (iu >> 23) - 0x7f;
    F32 m;
    m.i = (iu & 0x007fffff) + 0x3f3504f3;
    const float f = m.f - 1.0f;
    const float s = f / (2.0f + f);
    const float z = s * s, w = z * z;
    const float t1 = w * (0.40000972152f + w * 0.24279078841f);  // Lg2, Lg4
    const float t2 = z * (0.66666662693f + w * 0.28498786688f);  // Lg1, Lg3
    const float R = t2 + t1;
    const float hfsq = 0.5f * f * f;
    const float dk = (float)k;
    return s * (hfsq + R) + (dk * 9.0580006145e-06f + c) - hfsq + f + dk * 6.9313812256e-01f;
}

// log1p(x): u = 1 + x rounded; c = the part of x lost in that rounding, relative to u.
static inline float fast_log1pf(float x) {
    const float u = 1.0f + x;
    // k = exponent of u after the reduction; k >= 2 <=> bits(u) >= 0x40b504f3 (4 sqrt 2) and
    // k < 25 <=> bits(u) < 0x4c3504f3: float compares, both arms computed then selected (no FP
    // op inside a conditional, so the loop vectorises).
    const float c_hi = 1.0f - (u - x), c_lo = x - (u - 1.0f);
    const float cq = (u >= 5.65685415f ? c_hi : c_lo) / u;
    const float c = cq * (u < 47453132.0f ? 1.0f : 0.0f);
    return log_core(u, c);
}
static inline float fast_logf(float x) { return log_core(x, 0.0f); }
// 1 when the fast routine does not apply to u (u <= 0, subnormal, inf, nan)
static inline int log_bad(float u) { return ((u >= 1.17549435e-38f) & (u <= 3.40282347e+38f)) ^ 1; }

float transform_fast_log1pf(float x) { return log_bad(1.0f + x) ? log1pf(x) : fast_log1pf(x); }
float transform_fast_logf(float x) { return log_bad(x) ? logf(x) : fast_logf(x); }

static inline float tf_fwd(int kind, float x) {
    switch (kind) {
    case TF_LOG: return transform_fast_logf(x);
    case TF_LOG_EPS: return transform_fast_logf(x + 1e-6f);
    case TF_LOG1P: return transform_fast_log1pf(x);
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
// Log loops: the fast kernel on every element (vectorised), an OR of the "bad input" flags, and a
// scalar libm fix-up pass over the rare inputs the fast kernel does not cover (<= -1, 0, inf, nan).
#define LOG_LOOP(UEXPR, FAST, SLOW)                                                               \
    do {                                                                                          \
        int bad = 0;                                                                              \
        if (norm)                                                                                 \
            for (int64_t i = 0; i < n; i++) {                                                     \
                float x = sign * src[i];                                                          \
                bad |= log_bad(UEXPR);                                                            \
                dst[i] = ((FAST) - m) / s;                                                        \
            }                                                                                     \
        else                                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                     \
                float x = sign * src[i];                                                          \
                bad |= log_bad(UEXPR);                                                            \
                dst[i] = (FAST);                                                                  \
            }                                                                                     \
        if (bad)                                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                     \
                float x = sign * src[i];                                                          \
                if (!log_bad(UEXPR)) continue;                                                    \
                float y = SLOW;                                                                   \
                dst[i] = norm ? (y - m) / s : y;                                                  \
            }                                                                                     \
    } while (0)

void preprocess_channel(const Preprocess *p, int c, float sign, const float *src, float *dst, int64_t n) {
    const int norm = p->normalize;
    const float m = p->mean[c], s = p->std[c];
    switch (p->kind[c]) {
    case TF_LOG: LOG_LOOP(x, fast_logf(x), logf(x)); break;
    case TF_LOG_EPS: LOG_LOOP(x + 1e-6f, fast_logf(x + 1e-6f), logf(x + 1e-6f)); break;
    case TF_LOG1P: LOG_LOOP(1.0f + x, fast_log1pf(x), log1pf(x)); break;
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
