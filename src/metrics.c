// metrics.c: see metrics.h. Frequencies, bin edges and band edges are computed in float32 the
// way PyTorch does (fftfreq, linspace, bucketize, logspace), so bin membership matches LoLa's
// evaluation; spectra and errors are accumulated in float64.
#include "metrics.h"

#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

const char *const band_names[N_BANDS] = {"low", "mid", "high", "sub"};

// numpy/torch fftfreq(n)[i] in float32: i/n for i < ceil(n/2), (i - n)/n after.
static float fftfreq(int i, int n) {
    int half = (n - 1) / 2 + 1;
    int j = i < half ? i : i - n;
    return (float)j * (1.0f / (float)n);
}

// torch.linspace(start, end, steps) in float32 (symmetric evaluation from both ends).
static float linspace_at(float start, float end, int steps, int i) {
    float step = (end - start) / (float)(steps - 1);
    int halfway = steps / 2;
    return i < halfway ? start + step * (float)i : end - step * (float)(steps - 1 - i);
}

void spectrum_plan_init(SpectrumPlan *sp, int ndim, const int *shape) {
    memset(sp, 0, sizeof *sp);
    if (ndim < 1 || ndim > 3) lola_die("spectrum: %d spatial axes (1..3 supported)", ndim);
    sp->ndim = ndim;
    sp->P = 1;
    int mn = shape[0];
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 2) lola_die("spectrum: axis %d has size %d (need >= 2)", d, shape[d]);
        sp->shape[d] = shape[d];
        sp->P *= (size_t)shape[d];
        if (shape[d] < mn) mn = shape[d];
    }
    sp->B = (int)floor(sqrt((double)ndim) * (double)mn / 2.0);
    if (sp->B < 1) lola_die("spectrum: grid too small for isotropic binning");
    // |k| in float32 over the full grid, row-major.
    float *kiso = LOLA_NEW(float, sp->P);
    float kmax = 0.0f;
    for (size_t p = 0; p < sp->P; p++) {
        size_t r = p;
        float k2 = 0.0f;
        for (int d = ndim - 1; d >= 0; d--) {
            int i = (int)(r % (size_t)shape[d]);
            r /= (size_t)shape[d];
            float f = fftfreq(i, shape[d]);
            k2 += f * f;
        }
        kiso[p] = sqrtf(k2);
        if (kiso[p] > kmax) kmax = kiso[p];
    }
    float *edges = LOLA_NEW(float, sp->B + 1);
    for (int i = 0; i <= sp->B; i++) edges[i] = linspace_at(0.0f, kmax, sp->B + 1, i);
    sp->index = LOLA_NEW(int, sp->P);
    sp->count = LOLA_NEW(int64_t, sp->B + 1);
    for (size_t p = 0; p < sp->P; p++) {
        // bucketize (right=False): smallest i with x <= edges[i].
        int lo = 0, hi = sp->B + 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (kiso[p] <= edges[mid]) hi = mid; else lo = mid + 1;
        }
        if (lo > sp->B) lo = sp->B; // cannot happen: kmax is the last edge
        sp->index[p] = lo;
        sp->count[lo]++;
    }
    sp->k = LOLA_NEW(float, sp->B);
    for (int b = 0; b < sp->B; b++) sp->k[b] = edges[b + 1];
    // torch.logspace(log2(k[0]), -1, 4, base=2) in float32.
    float l0 = log2f(sp->k[0]);
    for (int i = 0; i < 4; i++) sp->band[i] = powf(2.0f, linspace_at(l0, -1.0f, 4, i));
    free(kiso);
    free(edges);
    sp->work = (double *)fftw_malloc(sizeof(fftw_complex) * sp->P);
    if (!sp->work) lola_die("spectrum: out of memory");
    int n[3] = {shape[0], ndim > 1 ? shape[1] : 1, ndim > 2 ? shape[2] : 1};
    sp->fft_plan = fftw_plan_dft(ndim, n, (fftw_complex *)sp->work, (fftw_complex *)sp->work, FFTW_FORWARD, FFTW_ESTIMATE);
    if (!sp->fft_plan) lola_die("spectrum: FFTW could not plan a %d-D transform", ndim);
}

void spectrum_plan_free(SpectrumPlan *sp) {
    if (sp->fft_plan) fftw_destroy_plan((fftw_plan)sp->fft_plan);
    fftw_free(sp->work);
    free(sp->spec);
    free(sp->index);
    free(sp->count);
    free(sp->k);
    memset(sp, 0, sizeof *sp);
}

// Orthonormal FFT of real x (P) into out (P complex, interleaved re/im).
static void fft_ortho(SpectrumPlan *sp, const float *x, double *out) {
    double s = 1.0 / sqrt((double)sp->P);
    for (size_t p = 0; p < sp->P; p++) {
        sp->work[2 * p] = (double)x[p] * s;
        sp->work[2 * p + 1] = 0.0;
    }
    fftw_execute((fftw_plan)sp->fft_plan);
    memcpy(out, sp->work, 2 * sp->P * sizeof(double));
}

// Bin means over bins 1..B of per-frequency values (P) into out (B); bin 0 (|k| = 0) is dropped
// and empty bins give 0 (torch: scatter_add / clip(counts, min=1)).
static void binned_mean(const SpectrumPlan *sp, const double *vals, double *out /* B */) {
    double *acc = LOLA_NEW(double, sp->B + 1);
    for (size_t p = 0; p < sp->P; p++) acc[sp->index[p]] += vals[p];
    for (int b = 1; b <= sp->B; b++) out[b - 1] = acc[b] / (double)(sp->count[b] > 0 ? sp->count[b] : 1);
    free(acc);
}

void isotropic_power_spectrum(SpectrumPlan *sp, const float *x, double *out) {
    double *F = LOLA_NEW(double, 2 * sp->P), *pw = LOLA_NEW(double, sp->P);
    fft_ortho(sp, x, F);
    for (size_t p = 0; p < sp->P; p++) pw[p] = F[2 * p] * F[2 * p] + F[2 * p + 1] * F[2 * p + 1];
    binned_mean(sp, pw, out);
    free(F);
    free(pw);
}

// Pixel-space moments and skill of ensemble v against u.
static void pixel_metrics(const float *u, const float *vbar, const float *v, int S, size_t P, StateMetrics *m) {
    double su = 0, su2 = 0, sv = 0, se = 0;
    for (size_t p = 0; p < P; p++) {
        double a = u[p];
        su += a;
        su2 += a * a;
        sv += vbar[p];
        double d = a - (double)vbar[p];
        se += d * d;
    }
    double mean = su / (double)P;
    double var = 0;
    for (size_t p = 0; p < P; p++) {
        double d = (double)u[p] - mean;
        var += d * d;
    }
    var /= (double)(P > 1 ? P - 1 : 1);
    double mse = se / (double)P;
    m->m1 = mean;
    m->m2 = su2 / (double)P;
    m->rmse = sqrt(mse);
    m->nrmse = sqrt(mse / (m->m2 + 1e-6));
    m->vrmse = sqrt(mse / (var + 1e-6));
    m->re_total = 1.0 - sv / su;
    if (S > 1) {
        double ss = 0;
        for (int s = 0; s < S; s++)
            for (size_t p = 0; p < P; p++) {
                double d = (double)v[(size_t)s * P + p] - (double)vbar[p];
                ss += d * d;
            }
        ss /= (double)S * (double)P;
        m->spread = sqrt((double)(S + 1) / (double)(S - 1) * ss);
    } else {
        m->spread = 0.0;
    }
}

// Band errors from the reference spectrum Fu, the members' spectra Fv (S x 2P) and their binned
// mean power Pv (B).
static void band_errors(SpectrumPlan *sp, const double *Fu, const double *Fv, int S, const double *Pv, StateMetrics *m) {
    const int B = sp->B;
    const size_t P = sp->P;
    double *tmp = LOLA_NEW(double, P), *Pu = LOLA_NEW(double, B), *C = LOLA_NEW(double, B), *Cs = LOLA_NEW(double, B);
    for (size_t p = 0; p < P; p++) tmp[p] = Fu[2 * p] * Fu[2 * p] + Fu[2 * p + 1] * Fu[2 * p + 1];
    binned_mean(sp, tmp, Pu);
    for (int b = 0; b < B; b++) C[b] = 0.0;
    for (int s = 0; s < S; s++) {
        const double *F = Fv + (size_t)s * 2 * P;
        for (size_t p = 0; p < P; p++) {
            // |u_hat * conj(v_hat)| = |u_hat| |v_hat|
            double re = Fu[2 * p] * F[2 * p] + Fu[2 * p + 1] * F[2 * p + 1];
            double im = Fu[2 * p + 1] * F[2 * p] - Fu[2 * p] * F[2 * p + 1];
            tmp[p] = sqrt(re * re + im * im);
        }
        binned_mean(sp, tmp, Cs);
        for (int b = 0; b < B; b++) C[b] += Cs[b] / (double)S;
    }
    for (int i = 0; i < N_BANDS; i++) {
        double sum_p = 0, sum_c = 0;
        int cnt = 0;
        for (int b = 0; b < B; b++) {
            float k = sp->k[b];
            int in = i < 3 ? (sp->band[i] <= k && k <= sp->band[i + 1]) : (sp->band[3] <= k);
            if (!in) continue;
            double ep = 1.0 - (Pv[b] + 1e-6) / (Pu[b] + 1e-6);
            double ec = 1.0 - (C[b] + 1e-6) / sqrt(Pu[b] * Pv[b] + 1e-12);
            sum_p += ep * ep;
            sum_c += ec * ec;
            cnt++;
        }
        m->rmse_p[i] = cnt ? sqrt(sum_p / cnt) : NAN;
        m->rmse_c[i] = cnt ? sqrt(sum_c / cnt) : NAN;
    }
    free(tmp);
    free(Pu);
    free(C);
    free(Cs);
}

void state_metrics(SpectrumPlan *sp, const float *u_true, const float *u_ae, const float *v, int S,
                   StateMetrics *out_abs, StateMetrics *out_rel) {
    const size_t P = sp->P;
    if (S < 1) lola_die("state_metrics: ensemble size %d", S);
    if (sp->spec_members < S + 2) {
        free(sp->spec);
        sp->spec = LOLA_NEW(double, (size_t)(S + 2) * 2 * P);
        sp->spec_members = S + 2;
    }
    float *vbar = LOLA_NEW(float, P);
    for (size_t p = 0; p < P; p++) {
        double a = 0;
        for (int s = 0; s < S; s++) a += v[(size_t)s * P + p];
        vbar[p] = (float)(a / S);
    }
    double *Fv = sp->spec, *Fu = sp->spec + (size_t)S * 2 * P, *Fa = Fu + 2 * P;
    double *pw = LOLA_NEW(double, P), *Pv = LOLA_NEW(double, sp->B), *Ps = LOLA_NEW(double, sp->B);
    for (int b = 0; b < sp->B; b++) Pv[b] = 0;
    for (int s = 0; s < S; s++) {
        double *F = Fv + (size_t)s * 2 * P;
        fft_ortho(sp, v + (size_t)s * P, F);
        for (size_t p = 0; p < P; p++) pw[p] = F[2 * p] * F[2 * p] + F[2 * p + 1] * F[2 * p + 1];
        binned_mean(sp, pw, Ps);
        for (int b = 0; b < sp->B; b++) Pv[b] += Ps[b] / (double)S;
    }
    pixel_metrics(u_true, vbar, v, S, P, out_abs);
    fft_ortho(sp, u_true, Fu);
    band_errors(sp, Fu, Fv, S, Pv, out_abs);
    if (u_ae && out_rel) {
        pixel_metrics(u_ae, vbar, v, S, P, out_rel);
        fft_ortho(sp, u_ae, Fa);
        band_errors(sp, Fa, Fv, S, Pv, out_rel);
    }
    free(vbar);
    free(pw);
    free(Pv);
    free(Ps);
}
