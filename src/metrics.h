// metrics.h: LoLa's evaluation metrics for one (field, state) of an ensemble forecast
// (lola-spec.md 5.3; LoLa experiments/eval.py and lola/fourier.py).
//
// All inputs are in physical units, float32, row-major over the spatial grid (P points).
// u is the reference (ground truth, or the AE reconstruction for "relative" rows), v the
// ensemble (S members x P).
#ifndef LOLA_METRICS_H
#define LOLA_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum { BAND_LOW = 0, BAND_MID, BAND_HIGH, BAND_SUB, N_BANDS };
extern const char *const band_names[N_BANDS]; // "low", "mid", "high", "sub"

typedef struct {
    double m1, m2;      // mean(u), mean(u^2)
    double spread;      // sqrt((S+1)/(S-1) mean_{s,p} (v - vbar)^2); 0 when S = 1
    double rmse;        // sqrt(mean_p (u - vbar)^2), skill of the ensemble mean
    double nrmse;       // sqrt(mse / (mean(u^2) + 1e-6))
    double vrmse;       // sqrt(mse / (var_unbiased(u) + 1e-6))
    double re_total;    // 1 - sum_p vbar / sum_p u
    double rmse_p[N_BANDS]; // sqrt(mean over the band's bins of (1 - (Pv+1e-6)/(Pu+1e-6))^2)
    double rmse_c[N_BANDS]; // sqrt(mean over the band's bins of (1 - (C+1e-6)/sqrt(Pu Pv + 1e-12))^2)
} StateMetrics;

// Isotropic binning of a grid's frequency domain, built once per grid shape.
typedef struct {
    int ndim, shape[3];
    size_t P;          // grid points
    int B;             // bins (floor(sqrt(ndim) * min(shape) / 2))
    int *index;        // (P) bin index of every frequency, 0 only for |k| = 0
    int64_t *count;    // (B + 1) frequencies per bin
    float *k;          // (B) frequency of bins 1..B (their upper edges), cycles per pixel
    float band[4];     // band edges: 4 values log-spaced (base 2) from k[0] to 0.5
    void *fft_plan;    // FFTW plan (complex, in place, on work)
    double *work;      // (2 P) complex scratch
    double *spec;      // ((S + 2) * 2P) cached spectra of the members and references
    int spec_members;  // capacity of spec in fields
} SpectrumPlan;

// Builds the binning for an ndim-D grid (1..3 axes). Dies on bad shapes.
void spectrum_plan_init(SpectrumPlan *sp, int ndim, const int *shape);
void spectrum_plan_free(SpectrumPlan *sp);

// Binned isotropic power spectrum of one field x (P): out (B) = bin means of |FFT_ortho(x)|^2
// over bins 1..B (lola/fourier.py isotropic_power_spectrum).
void isotropic_power_spectrum(SpectrumPlan *sp, const float *x, double *out);

// Metrics of ensemble v (S x P) against two references at once: u_true (ground truth) and u_ae
// (AE reconstruction; may be NULL), sharing the members' FFTs. out_rel may be NULL.
void state_metrics(SpectrumPlan *sp, const float *u_true, const float *u_ae, const float *v, int S,
                   StateMetrics *out_abs, StateMetrics *out_rel);

#endif
