// transform.h: LoLa's per-channel field pre-processing (lola/data.py field_preprocess /
// field_postprocess; lola-spec.md §1.2):
//   forward: x_c <- transform_c(x_c); x_c <- (x_c - mean_c) / std_c
//   inverse: x_c <- x_c * std_c + mean_c; x_c <- transform_c^{-1}(x_c)
// Transforms: log (inverse exp), log_eps = log(x + 1e-6) (inverse exp(y) - 1e-6), log1p (inverse
// expm1), arcsinh (inverse sinh). Computed in float32 like the PyTorch reference: the division is a
// true division by std (no max(std, 1e-4) clamp: that is The Well's own normalisation, which LoLa
// disables). The inverse is the exact mathematical inverse; a round trip is exact up to float32
// rounding.
#ifndef LOLA_TRANSFORM_H
#define LOLA_TRANSFORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PRE_MAX_CHANNELS 64

typedef enum { TF_NONE = 0, TF_LOG = 1, TF_LOG_EPS = 2, TF_LOG1P = 3, TF_ARCSINH = 4 } TransformKind;

typedef struct Preprocess {
    int n_channels;
    int normalize;                    // 0: transforms only (what get_stats measures)
    int kind[PRE_MAX_CHANNELS];       // TransformKind per channel
    float mean[PRE_MAX_CHANNELS];
    float std[PRE_MAX_CHANNELS];
} Preprocess;

// "log", "log_eps", "log1p", "arcsinh" (or "none"/"" -> TF_NONE). Returns -1 for anything else.
int transform_parse(const char *name);
const char *transform_name(int kind);

// Builds the pre-processing for C channels. kinds: C entries (NULL = no transform). mean/std:
// n_mean/n_std values each, or NULL for no normalisation (both or neither). Dies when a stats
// array has the wrong length ("stats.mean has 4 values but the dataset has 5 channels"), a std is
// not > 0, a value is not finite, or a kind is invalid. `what` names the source in messages (e.g.
// the config file).
void preprocess_init(Preprocess *p, int C, const int *kinds, const float *mean, int n_mean,
                     const float *std, int n_std, const char *what);

// The float32 log1p / log used by the transforms (< 1 ulp; libm for non-positive, inf, nan).
float transform_fast_log1pf(float x);
float transform_fast_logf(float x);

// Single values (channel c) — the reference definitions used by every array path.
float preprocess_value(const Preprocess *p, int c, float x);
float postprocess_value(const Preprocess *p, int c, float y);

// In place on a channel-first array viewed as (outer, C, inner): element (o, c, i) is at
// x[(o*C + c)*inner + i]. (L, C, H, W): outer = L, inner = H*W. (C, L, H, W): outer = 1,
// inner = L*H*W. (B, C, H, W): outer = B.
void preprocess_forward(const Preprocess *p, float *x, int64_t outer, int64_t inner);
void preprocess_inverse(const Preprocess *p, float *x, int64_t outer, int64_t inner);

// Applies the forward transform of channel c to n values (src may equal dst), scaled by `sign`
// first (sign = ±1, used by augmentation to negate vector components before the transform).
void preprocess_channel(const Preprocess *p, int c, float sign, const float *src, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
