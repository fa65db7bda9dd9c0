// test_gpu_ops.c: every op of the CUDA backend (cuda/*.cu) against the CPU backend (src/cpu/*.c,
// the readable reference), on the same random inputs, plus timings of the key ops (--bench).
//
// Both backends define the nn.h names, so the CPU sources are compiled a second time with every
// name prefixed cpu_ (tests/gpu/gen_cpu_ref.sh); this file calls nn_* / conv2d_forward ... on the
// GPU and cpu_nn_* / cpu_conv2d_forward ... on the CPU. CPU backend memory is host memory.
//
// Tolerances: per element |gpu - cpu| <= atol * rms(cpu) + rtol * |cpu|, i.e. atol is relative
// to the tensor's RMS (a gradient of scale 1e-4 gets a proportionate absolute bound). Tight for
// plain fp32 arithmetic (atol 1e-5, rtol 1e-4), looser where long reductions are summed in a
// different order (noted per check). Each line prints how much of the tolerance was used.
// Data movement, dropout masks and the RNG must match bit for bit.
// The reduced-precision modes (tf32, bf16: nn_cuda.h) are checked against a derived rounding-error
// model instead (see "Reduced precision" below), for linear, attention and conv.
//
// Usage: test_gpu_ops [--no-tests] [--big] [--bench] [--bench-quick] [--only s1,s2] [--list]
//   --big     also check larger, model-sized shapes (a few seconds of CPU reference time)
//   --bench   time conv / linear / attention (fp32, tf32, bf16; attention also with the fused
//             kernels, LOLA_ATTENTION=flash) and memory-bound ops at the model shapes
//   --only    run only the named test sections (--list prints them); no coverage check then
//   --print-switches  only nn_init, then print the bf16 activation switch and the precision (the
//             probe that section bf16_switch runs in child processes with their own environment)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "cpu_nn.h"
#include "nn.h"
#include "nn_cuda.h"
#include "rng.h"
#include "test.h"

// ---------------------------------------------------------------------------------------------
// Coverage: every nn.h function must be exercised at least once (names generated from nn.h).

static const char *all_names[] = {
#include "nn_names.inc"
};
#define N_NAMES ((int)(sizeof all_names / sizeof all_names[0]))
static int tested[N_NAMES];

static void covered(const char *name) {
    for (int i = 0; i < N_NAMES; i++)
        if (!strcmp(all_names[i], name)) {
            tested[i] = 1;
            return;
        }
    lola_die("test_gpu_ops: '%s' is not a function of nn.h (typo in the test?)", name);
}

// ---------------------------------------------------------------------------------------------
// Paired buffers: the same tensor on the CPU backend (c, host memory) and on the GPU (g).

typedef struct {
    size_t n;
    float *c, *g;
} Pair;

static Rng R;
static float urand(float lo, float hi) { return lo + (hi - lo) * (float)rng_uniform(&R); }

static Pair pnew(size_t n) {
    Pair p = {n, cpu_nn_alloc(n), nn_alloc(n)};
    return p;
}
static void psync(Pair p) { nn_to_backend(p.g, p.c, p.n); } // CPU content -> GPU
static Pair prand(size_t n, float lo, float hi) {
    Pair p = pnew(n);
    for (size_t i = 0; i < n; i++) p.c[i] = urand(lo, hi);
    psync(p);
    return p;
}
static void pfree(Pair p) {
    cpu_nn_free(p.c);
    nn_free(p.g);
}

static float *host_buf = NULL;
static size_t host_cap = 0;
static const float *gpu_of(const float *g, size_t n) {
    if (n > host_cap) {
        free(host_buf);
        host_buf = LOLA_NEW(float, n);
        host_cap = n;
    }
    nn_to_host(host_buf, g, n);
    return host_buf;
}

// |got - ref| <= atol * rms(ref) + rtol * |ref| for every element; non-finite values must agree.
static int cmp_arrays(const char *what, const float *got, const float *ref, size_t n, double atol, double rtol) {
    double ss = 0.0;
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i])) ss += (double)ref[i] * ref[i], nf++;
    double rms = nf ? sqrt(ss / nf) : 0.0;
    double worst = 0.0, maxerr = 0.0;
    size_t wi = 0, bad_nf = 0;
    for (size_t i = 0; i < n; i++) {
        float g = got[i], r = ref[i];
        if (!isfinite(g) || !isfinite(r)) {
            if (!(isnan(g) && isnan(r)) && g != r) {
                if (!bad_nf) wi = i;
                bad_nf++;
            }
            continue;
        }
        double e = fabs((double)g - r), tol = atol * rms + rtol * fabs((double)r);
        double ratio = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0.0);
        if (ratio > worst) worst = ratio, wi = i;
        if (e > maxerr) maxerr = e;
    }
    int ok = bad_nf == 0 && worst <= 1.0;
    if (!ok)
        printf("  %s: worst element %zu: gpu %.9g cpu %.9g (%zu non-finite mismatches)\n", what, wi, got[wi], ref[wi],
               bad_nf);
    CHECK(ok, "%s  max|err| %.2e, rms(cpu) %.2e, %.1f%% of tolerance (%.0e*rms + %.0e*|ref|)", what, maxerr, rms,
          100.0 * worst, atol, rtol);
    return ok;
}
static int cmp(const char *what, Pair p, double atol, double rtol) {
    return cmp_arrays(what, gpu_of(p.g, p.n), p.c, p.n, atol, rtol);
}
static int cmp_exact(const char *what, Pair p) {
    const float *g = gpu_of(p.g, p.n);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < p.n; i++)
        if (memcmp(&g[i], &p.c[i], sizeof(float))) {
            if (!bad) first = i;
            bad++;
        }
    if (bad) printf("  %s: first mismatch at %zu: gpu %.9g cpu %.9g\n", what, first, g[first], p.c[first]);
    CHECK(bad == 0, "%s  bit-exact (%zu of %zu elements differ)", what, bad, p.n);
    return bad == 0;
}

static int same_bits(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof(float)); }

#define TA 1e-5 // tight: atol (x rms)
#define TR 1e-4 // tight: rtol
// Convolutions: cuDNN may pick Winograd or FFT algorithms for fp32 (exact up to a few 1e-6 of the
// output scale); still 50x tighter than what TF32 would give.
#define CA 2e-5
#define CR 2e-4

static int selfcheck = 0; // make gpu-selfcheck: the CPU backend on both sides (nn_cuda_stub.c)
static int env_prec = 0;  // the precision nn_init read from LOLA_PRECISION / LOLA_TF32
static int env_attn = 0;  // the attention engine nn_init read from LOLA_ATTENTION

// ---------------------------------------------------------------------------------------------
// Reduced precision (LOLA_PRECISION=tf32|bf16): the error model behind the tolerances.
//
// Rounding a value v to the mode's format gives v (1 + e), |e| <= eta: bf16 rounds to nearest
// (even) with 8 significant bits, eta = 2^-8; tf32 has 11 significant bits, eta = 2^-10 allowing
// for truncation (cuBLAS/cuDNN do not document whether the tensor cores' tf32 conversion rounds or
// truncates). A sum of products y = sum_k a_k b_k of rounded operands, accumulated in fp32, is
//     y~ = y + sum_k a_k b_k (e_ak + e_bk) + O(eta^2) + (fp32 accumulation error).
// The e are independent over k, with E e^2 <= eta^2 / 3 (a rounding error uniform within +-eta|v|;
// the second moment of a truncation error is below that too), so the rounding term has standard
// deviation at most
//     sig = eta sqrt(2/3) sqrt(sum_k a_k^2 b_k^2),
// per element, computed by the CPU backend running the same op on the squared operands. The
// relative error of the sum does not grow with K: its sqrt(K) growth is that of sqrt(sum a^2 b^2).
// The term is a sum of bounded, independent, symmetric (round to nearest) parts, hence
// sub-Gaussian: P(|err| > 7 sig) <= 2 exp(-49/2) ~ 5e-11 per element, so Z_SIG = 7 fails by
// chance about once in 10^10 elements, while a wrong operand, layout, stale weight or lost term is
// far outside it. Truncation (tf32) would add a mean part, at most eta/2 per operand: <= eta |y|,
// the relative term rt = eta. A result rounded to bf16 once more (the cuDNN bf16 output) adds at
// most 2^-8 of the rounded value, counted as one more rounded operand in sig. The fp32 tolerance
// of the exact path (TA, TR) is added for the accumulation order.
// q = rms over elements of err / sig is the observed error in model units: ~0.7 for bf16 (round
// to nearest; over mantissas m uniform in [1, 2), the relative rounding error has rms
// eta / sqrt(3) * sqrt(E 1/m^2) = 0.71 eta / sqrt(3)), ~0 when nothing was rounded. A bf16 check
// requires 0.2 < q < 1.2 on the GPU ("bf16 engaged"); the self-check has no reduced precision.
// "Exact" checks feed inputs pre-rounded to the format on the host: then the rounding of the
// inputs is exact (whatever its mode) and a linear must equal the CPU to fp32 order.
#define Z_SIG 7.0

static double prec_eta(int prec) {
    return prec == NN_PREC_BF16 ? 1.0 / 256.0 : prec == NN_PREC_TF32 ? 1.0 / 1024.0 : 0.0;
}

// v rounded to the precision's format (bf16: 7 stored mantissa bits, tf32: 10), nearest even, as
// __float2bfloat16_rn does. Finite inputs only.
static float round_to(float v, int prec) {
    if (prec != NN_PREC_BF16 && prec != NN_PREC_TF32) return v;
    int drop = prec == NN_PREC_BF16 ? 16 : 13;
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t lsb = (u >> drop) & 1u;
    u = (u + ((1u << (drop - 1)) - 1u) + lsb) & ~((1u << drop) - 1u);
    memcpy(&v, &u, 4);
    return v;
}
static void round_pair(Pair p, int prec) {
    for (size_t i = 0; i < p.n; i++) p.c[i] = round_to(p.c[i], prec);
    psync(p);
}
// Host array of the squares of a.
static float *squares(const float *a, size_t n) {
    float *s = LOLA_NEW(float, n);
    for (size_t i = 0; i < n; i++) s[i] = a[i] * a[i];
    return s;
}
// sig[i] = eta sqrt((c * s2[i] + r[i]^2) / 3) in place of s2 (r may be NULL): c rounded operands
// per product, r a result rounded once more.
static void to_sigma(float *s2, size_t n, double eta, double c, const float *r) {
    for (size_t i = 0; i < n; i++) {
        double v = c * s2[i] + (r ? (double)r[i] * r[i] : 0.0);
        s2[i] = (float)(eta * sqrt(v / 3.0));
    }
}

// |gpu - ref| <= Z_SIG sig[i] + extra[i] + rt |ref| + ta rms(ref) + tr |ref| (sig, extra may be NULL:
// 0; extra is a derived deterministic bound, e.g. the flash attention's rescalings). Returns
// q = rms(err / sig) (0 without sig).
static double cmp_model_x(const char *what, Pair p, const float *sig, const float *extra, double rt, double ta,
                          double tr) {
    const float *got = gpu_of(p.g, p.n), *ref = p.c;
    size_t n = p.n, nf = 0, wi = 0, bad_nf = 0, nq = 0;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i])) ss += (double)ref[i] * ref[i], nf++;
    double rms = nf ? sqrt(ss / nf) : 0.0, worst = 0.0, maxerr = 0.0, qs = 0.0;
    for (size_t i = 0; i < n; i++) {
        float g = got[i], r = ref[i];
        if (!isfinite(g) || !isfinite(r)) {
            if (!(isnan(g) && isnan(r)) && g != r) {
                if (!bad_nf) wi = i;
                bad_nf++;
            }
            continue;
        }
        double e = fabs((double)g - r), a = fabs((double)r);
        double tol = (sig ? Z_SIG * sig[i] : 0.0) + (extra ? extra[i] : 0.0) + rt * a + ta * rms + tr * a;
        double ratio = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0.0);
        if (ratio > worst) worst = ratio, wi = i;
        if (e > maxerr) maxerr = e;
        if (sig && sig[i] > 0) qs += (e / sig[i]) * (e / sig[i]), nq++;
    }
    double q = nq ? sqrt(qs / nq) : 0.0;
    int ok = bad_nf == 0 && worst <= 1.0;
    if (!ok)
        printf("  %s: worst element %zu: gpu %.9g cpu %.9g sig %.3g (%zu non-finite mismatches)\n", what, wi, got[wi],
               ref[wi], sig ? sig[wi] : 0.0, bad_nf);
    CHECK(ok, "%s  max|err| %.2e, rms(cpu) %.2e, %.1f%% of tolerance (%g sig + %s%.1e|ref| + %.0e*rms + %.0e|ref|), q %.2f",
          what, maxerr, rms, 100.0 * worst, sig ? Z_SIG : 0.0, extra ? "extra + " : "", rt, ta, tr, q);
    return q;
}
static double cmp_model(const char *what, Pair p, const float *sig, double rt, double ta, double tr) {
    return cmp_model_x(what, p, sig, NULL, rt, ta, tr);
}

// The rounding must be visible in bf16 mode (q in (0.2, 1.2), see above); tf32: q > 0.05 where
// the caller knows tensor cores run (min_tf32 = 1). Skipped in the self-check, and for results of
// fewer than 1000 elements (q of a few correlated elements is too noisy to bound).
static void check_engaged(const char *what, double q, int prec, int min_tf32, size_t n) {
    if (selfcheck || prec == NN_PREC_FP32 || (prec == NN_PREC_TF32 && !min_tf32) || n < 1000) {
        printf("  # %s: q = %.3f (engagement not checked here)\n", what, q);
        return;
    }
    if (prec == NN_PREC_BF16)
        CHECK(q > 0.2 && q < 1.2, "%s: bf16 rounding seen, q = rms(err/sig) = %.3f in (0.2, 1.2)", what, q);
    else
        CHECK(q > 0.05, "%s: tf32 rounding seen, q = rms(err/sig) = %.3f > 0.05", what, q);
}

// Sets the precision; 1 if it took effect (0 in the self-check, where the switch is a no-op).
static int use_precision(int prec) {
    nn_cuda_set_precision(prec);
    int on = nn_cuda_precision() == prec;
    if (!selfcheck && !on) CHECK(on, "nn_cuda_set_precision(%s) takes effect", nn_cuda_precision_name(prec));
    return on;
}

// ---------------------------------------------------------------------------------------------
// Backend, memory

static void test_memory(void) {
    covered("nn_init"), covered("nn_backend_name"), covered("nn_alloc"), covered("nn_free"), covered("nn_zero");
    covered("nn_copy"), covered("nn_to_backend"), covered("nn_to_host"), covered("nn_sync");
    covered("nn_bytes_in_use"), covered("nn_bytes_peak");
    nn_init(0); // second call: must be harmless
    printf("# backend: %s\n# reference: %s\n", nn_backend_name(), cpu_nn_backend_name());
    if (!selfcheck) // (make gpu-selfcheck links the CPU backend twice)
        CHECK(strncmp(nn_backend_name(), "cuda", 4) == 0, "nn_backend_name starts with 'cuda'");
    // nn_bytes_in_use counts op scratch too (the overlapping nn_copy below grows it): compare
    // the nn_alloc part, i.e. minus nn_cuda_scratch_bytes().
    size_t n = 100003, before = nn_bytes_in_use() - nn_cuda_scratch_bytes();
    float *g = nn_alloc(n), *g2 = nn_alloc(n);
    CHECK(nn_bytes_in_use() - nn_cuda_scratch_bytes() == before + 2 * n * sizeof(float),
          "nn_bytes_in_use counts nn_alloc (%zu -> %zu)", before, nn_bytes_in_use() - nn_cuda_scratch_bytes());
    CHECK(nn_bytes_peak() >= nn_bytes_in_use(), "nn_bytes_peak >= nn_bytes_in_use");
    float *h = LOLA_NEW(float, n), *h2 = LOLA_NEW(float, n);
    nn_to_host(h, g, n);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += h[i] != 0.0f;
    CHECK(nz == 0, "nn_alloc returns zero-filled memory (%zu non-zero)", nz);
    for (size_t i = 0; i < n; i++) h[i] = urand(-1, 1);
    nn_to_backend(g, h, n);
    nn_to_host(h2, g, n);
    CHECK(!memcmp(h, h2, n * sizeof(float)), "nn_to_backend / nn_to_host round trip is bit-exact");
    nn_copy(g2, g, n);
    nn_zero(g2 + 10, 100);
    nn_sync();
    nn_to_host(h2, g2, n);
    memset(h + 10, 0, 100 * sizeof(float));
    CHECK(!memcmp(h, h2, n * sizeof(float)), "nn_copy + nn_zero of a sub-range");
    // overlapping copy behaves like memmove, both directions
    nn_to_backend(g, h, n);
    nn_copy(g + 7, g, n - 7);
    memmove(h + 7, h, (n - 7) * sizeof(float));
    nn_to_host(h2, g, n);
    CHECK(!memcmp(h, h2, n * sizeof(float)), "nn_copy with overlap (dst > src) = memmove");
    nn_copy(g, g + 5, n - 5);
    memmove(h, h + 5, (n - 5) * sizeof(float));
    nn_to_host(h2, g, n);
    CHECK(!memcmp(h, h2, n * sizeof(float)), "nn_copy with overlap (dst < src) = memmove");
    nn_free(g);
    nn_free(g2);
    CHECK(nn_bytes_in_use() - nn_cuda_scratch_bytes() == before, "nn_free returns the bytes (%zu)",
          nn_bytes_in_use() - nn_cuda_scratch_bytes());
    if (!selfcheck)
        CHECK(nn_bytes_peak() >= nn_bytes_in_use() && nn_bytes_in_use() >= nn_cuda_scratch_bytes(),
              "nn_bytes_in_use / nn_bytes_peak include the op scratch (%zu scratch bytes)", nn_cuda_scratch_bytes());
    free(h);
    free(h2);
    size_t fb = 0, tb = 0;
    nn_cuda_mem_info(&fb, &tb);
    printf("# device %s: %.1f of %.1f GiB free; precision %s (environment: %s), deterministic %s, conv %s\n",
           nn_cuda_device_name(), fb / 1073741824.0, tb / 1073741824.0, nn_cuda_precision_name(nn_cuda_precision()),
           nn_cuda_precision_name(env_prec), nn_cuda_deterministic() ? "on" : "off",
           nn_cuda_conv_impl() == NN_CONV_IM2COL ? "im2col" : "cudnn");
    // nn_init parsed LOLA_PRECISION / LOLA_TF32 (main kept the result, then set fp32 for the checks)
    const char *ep = getenv("LOLA_PRECISION"), *et = getenv("LOLA_TF32");
    int want = et && et[0] && atoi(et) != 0 ? NN_PREC_TF32 : NN_PREC_FP32;
    if (ep && ep[0]) want = !strcasecmp(ep, "bf16") ? NN_PREC_BF16 : !strcasecmp(ep, "tf32") ? NN_PREC_TF32 : NN_PREC_FP32;
    if (!selfcheck)
        CHECK(env_prec == want, "precision from the environment: %s (LOLA_PRECISION=%s, LOLA_TF32=%s)",
              nn_cuda_precision_name(env_prec), ep ? ep : "", et ? et : "");
    CHECK(nn_cuda_precision() == NN_PREC_FP32 && !nn_cuda_tf32(), "the checks start in exact fp32 (TF32 off)");
    const char *ea = getenv("LOLA_ATTENTION");
    int want_attn = !ea || !ea[0] ? NN_ATTN_GEMM : !strcmp(ea, "flash") ? NN_ATTN_FLASH : NN_ATTN_AUTO;
    if (!selfcheck)
        CHECK(env_attn == want_attn, "attention engine from the environment: %s (LOLA_ATTENTION=%s)",
              nn_cuda_attention_impl_name(env_attn), ea ? ea : "");
    CHECK(nn_cuda_attention_impl() == NN_ATTN_GEMM, "the checks start on the GEMM attention path");
}

// ---------------------------------------------------------------------------------------------
// Elementwise, BLAS-1, reductions

static void test_blas1(void) {
    covered("nn_fill"), covered("nn_scale"), covered("nn_axpy"), covered("nn_add");
    covered("nn_sum_squares"), covered("nn_all_finite");
    size_t n = 100003;
    char name[160];
    for (int off = 0; off < 2; off++) { // off = 1: misaligned pointers (scalar tail path)
        size_t m = n - off;
        Pair x = prand(n, -1, 1), y = prand(n, -1, 1), z = pnew(n);
        cpu_nn_fill(z.c + off, 3.25f, m), nn_fill(z.g + off, 3.25f, m);
        snprintf(name, sizeof name, "nn_fill (offset %d)", off);
        cmp_exact(name, z);
        cpu_nn_scale(x.c + off, -0.37f, m), nn_scale(x.g + off, -0.37f, m);
        snprintf(name, sizeof name, "nn_scale (offset %d)", off);
        cmp_exact(name, x);
        // GPU contracts a*x + y into one FMA, the CPU rounds twice: 1-ulp differences.
        cpu_nn_axpy(y.c + off, 0.77f, x.c + off, m), nn_axpy(y.g + off, 0.77f, x.g + off, m);
        snprintf(name, sizeof name, "nn_axpy (offset %d)", off);
        cmp(name, y, 1e-6, 1e-6);
        psync(y); // the same inputs on both sides for the exact checks below (axpy differs by an ulp)
        cpu_nn_add(z.c + off, x.c + off, y.c + off, m), nn_add(z.g + off, x.g + off, y.g + off, m);
        snprintf(name, sizeof name, "nn_add (offset %d)", off);
        cmp_exact(name, z);
        cpu_nn_add(x.c, x.c, y.c, n), nn_add(x.g, x.g, y.g, n);
        snprintf(name, sizeof name, "nn_add out aliasing a (offset %d)", off);
        cmp_exact(name, x);
        pfree(x), pfree(y), pfree(z);
    }
    Pair x = prand(n, -3, 3);
    double sc = cpu_nn_sum_squares(x.c, n), sg = nn_sum_squares(x.g, n);
    CHECK_CLOSE(sg, sc, 0.0, 1e-12, "nn_sum_squares (double accumulation) %.12g vs %.12g", sg, sc);
    CHECK_CLOSE(nn_sum_squares(x.g + 1, 5), cpu_nn_sum_squares(x.c + 1, 5), 0.0, 1e-12, "nn_sum_squares n=5");
    CHECK(nn_all_finite(x.g, n) == 1 && cpu_nn_all_finite(x.c, n) == 1, "nn_all_finite on finite data");
    x.c[12345] = NAN;
    psync(x);
    CHECK(nn_all_finite(x.g, n) == 0, "nn_all_finite sees a NaN");
    x.c[12345] = 0.0f, x.c[n - 1] = -INFINITY;
    psync(x);
    CHECK(nn_all_finite(x.g, n) == 0, "nn_all_finite sees -Inf in the last element");
    CHECK(nn_all_finite(x.g, n - 1) == 1, "nn_all_finite on the finite prefix");
    pfree(x);
}

// ---------------------------------------------------------------------------------------------
// bf16 activation storage (nn.h): nn_pack_bf16 / nn_unpack_bf16 bit for bit against the CPU
// backend (both use the same integer round-to-nearest-even formula: src/cpu/bf16.c, cuda/bf16.cu),
// every byte of the destination buffers compared, so a write outside [dst, dst + n) is seen too;
// and the switch nn_bf16_activations: LOLA_ACTIVATIONS, the default per precision mode (probed in
// child processes of this program, --print-switches, each with its own environment), the setter.

static uint32_t f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static float u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// Packs host values x (n) with dst / src at element offsets od / os on both backends, then unpacks
// the result into a float buffer at offset os; compares the whole packed and unpacked buffers
// (sentinels around the ranges included) bit for bit. Returns the GPU's unpacked values (host
// memory the caller frees) when rt != NULL.
static int bf16_pack_case(const char *what, const float *x, size_t n, int od, int os, float **rt) {
    size_t pf = ((size_t)od + n + 1) / 2 + 2, uf = (size_t)os + n + 3; // floats of the packed / unpacked buffers
    Pair s = pnew((size_t)os + n + 1), p = pnew(pf), u = pnew(uf);
    memset(s.c, 0x5A, s.n * sizeof(float)), memcpy(s.c + os, x, n * sizeof(float)), psync(s);
    memset(p.c, 0xA5, pf * sizeof(float)), psync(p);
    memset(u.c, 0xC3, uf * sizeof(float)), psync(u);
    cpu_nn_pack_bf16((uint16_t *)p.c + od, s.c + os, n), nn_pack_bf16((uint16_t *)p.g + od, s.g + os, n);
    cpu_nn_unpack_bf16(u.c + os, (uint16_t *)p.c + od, n), nn_unpack_bf16(u.g + os, (uint16_t *)p.g + od, n);
    const float *gp = gpu_of(p.g, pf);
    size_t bad = 0, first = 0;
    const uint16_t *gh = (const uint16_t *)gp, *ch = (const uint16_t *)p.c;
    for (size_t i = 0; i < 2 * pf; i++)
        if (gh[i] != ch[i] && !bad++) first = i;
    if (bad)
        printf("  %s: packed element %td: gpu 0x%04X cpu 0x%04X (input 0x%08X)\n", what, (ptrdiff_t)first - od, gh[first],
               ch[first], first >= (size_t)od && first < od + n ? f2u(x[first - od]) : 0u);
    const float *gu = gpu_of(u.g, uf);
    size_t badu = 0;
    for (size_t i = 0; i < uf; i++) badu += f2u(gu[i]) != f2u(u.c[i]);
    CHECK(bad == 0 && badu == 0, "%s: n = %zu, dst +%d, src +%d: pack and unpack bit-exact, nothing else written (%zu packed, %zu unpacked differ)",
          what, n, od, os, bad, badu);
    if (rt) {
        *rt = LOLA_NEW(float, n);
        memcpy(*rt, gu + os, n * sizeof(float));
    }
    pfree(s), pfree(p), pfree(u);
    return bad == 0 && badu == 0;
}

// --print-switches in a child with the environment `sets` ("NAME=value" or "NAME" to unset, NULL
// ended): its output (stdout + stderr) into out; returns the exit status (-1: did not exit).
static int probe_switches(const char *const *sets, char *out, size_t cap) {
    extern char **environ;
    size_t ne = 0, ns = 0;
    while (environ[ne]) ne++;
    while (sets[ns]) ns++;
    char **env = LOLA_NEW(char *, ne + ns + 1);
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        int drop = 0;
        for (size_t j = 0; j < ns; j++) {
            size_t l = strcspn(sets[j], "=");
            if (!strncmp(environ[i], sets[j], l) && environ[i][l] == '=') drop = 1;
        }
        if (!drop) env[k++] = environ[i];
    }
    for (size_t j = 0; j < ns; j++)
        if (strchr(sets[j], '=')) env[k++] = (char *)sets[j];
    env[k] = NULL;
    int fds[2];
    if (pipe(fds) != 0) lola_die("probe_switches: pipe failed");
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) { // only async-signal-safe calls until execve (the parent holds a CUDA context)
        close(fds[0]);
        dup2(fds[1], 1), dup2(fds[1], 2);
        char *argv[] = {(char *)"test_gpu_ops", (char *)"--print-switches", NULL};
        execve("/proc/self/exe", argv, env);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], out + n, cap - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    char sink[256];
    while (read(fds[0], sink, sizeof sink) > 0) {}
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    free(env);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_bf16_switch(void) {
    covered("nn_bf16_activations"), covered("nn_set_bf16_activations");
    // This process: the environment's value (no other section calls the setter).
    const char *ea = getenv("LOLA_ACTIVATIONS");
    int want = ea && ea[0] ? !strcasecmp(ea, "bf16") : 0; // default fp32 in every mode
    int cur = nn_bf16_activations();
    CHECK(cur == want, "nn_bf16_activations() = %d from the environment (LOLA_ACTIVATIONS=%s, precision %s)", cur,
          ea ? ea : "(unset)", nn_cuda_precision_name(env_prec));
    CHECK(cpu_nn_bf16_activations() == (ea && ea[0] ? !strcasecmp(ea, "bf16") : 0),
          "CPU backend: nn_bf16_activations() = %d (default 0 on the CPU)", cpu_nn_bf16_activations());
    nn_set_bf16_activations(!cur);
    int after_set = nn_bf16_activations();
    nn_init(0); // a later nn_init must not undo the setter
    int after_init = nn_bf16_activations();
    int named = strstr(nn_backend_name(), "bf16 activations") != NULL;
    nn_cuda_set_precision(cur ? NN_PREC_FP32 : NN_PREC_BF16); // the precision does not move it either
    int after_prec = nn_bf16_activations();
    nn_cuda_set_precision(NN_PREC_FP32);
    CHECK(after_set == !cur && after_init == !cur && after_prec == !cur && named == !cur,
          "nn_set_bf16_activations(%d): %d, after nn_init %d, after nn_cuda_set_precision %d; backend name %s it",
          !cur, after_set, after_init, after_prec, named ? "names" : "does not name");
    nn_set_bf16_activations(cur);
    CHECK(nn_bf16_activations() == cur && (strstr(nn_backend_name(), "bf16 activations") != NULL) == cur,
          "nn_set_bf16_activations(%d) restores it", cur);

    // Fresh processes: LOLA_ACTIVATIONS and the default of each precision mode (0 in every mode).
    const struct {
        const char *sets[3];
        int want;
    } cases[] = {
        {{"LOLA_PRECISION=bf16", "LOLA_ACTIVATIONS", NULL}, 0},
        {{"LOLA_PRECISION=bf16", "LOLA_ACTIVATIONS=bf16", NULL}, 1},
        {{"LOLA_PRECISION=tf32", "LOLA_ACTIVATIONS", NULL}, 0},
        {{"LOLA_PRECISION=fp32", "LOLA_ACTIVATIONS=BF16", NULL}, 1},
        {{"LOLA_PRECISION=bf16", "LOLA_ACTIVATIONS=fp32", NULL}, 0},
    };
    char out[8192];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int w = cases[c].want;
        int st = probe_switches(cases[c].sets, out, sizeof out);
        const char *v = strstr(out, "bf16_activations=");
        int got = v ? atoi(v + strlen("bf16_activations=")) : -1;
        if (st != 0 || got != w) printf("  child exit %d, output: %s\n", st, out);
        CHECK(st == 0 && got == w, "fresh process with %s, %s: nn_bf16_activations() = %d (expected %d)", cases[c].sets[0],
              cases[c].sets[1], got, w);
    }
    const char *bad[] = {"LOLA_ACTIVATIONS=half", "LOLA_PRECISION", NULL};
    int st = probe_switches(bad, out, sizeof out);
    printf("  message: %.*s\n", (int)strcspn(out, "\n"), out);
    CHECK(st != 0 && strstr(out, "LOLA_ACTIVATIONS='half'") && strstr(out, "expected fp32 or bf16"),
          "LOLA_ACTIVATIONS=half: nn_init dies naming the variable and fp32 / bf16 (exit %d)", st);
}

static void test_bf16_storage(void) {
    covered("nn_pack_bf16"), covered("nn_unpack_bf16");
    // Special values: signed zeros, denormals (ties both ways), smallest normal, ties to even both
    // ways, just below / above half, carries into the exponent, the largest bf16 and the ties past
    // it, FLT_MAX, infinities, NaNs with different payloads (low half only, high half, all bits)
    // and signs, signalling NaNs.
    const uint32_t sp[] = {
        0x00000000u, 0x80000000u, 0x00000001u, 0x80000001u, 0x00008000u, 0x00008001u, 0x00018000u, 0x80018000u,
        0x00010000u, 0x007FFFFFu, 0x807FFFFFu, 0x00800000u, 0x80800000u, 0x00808000u, 0x00818000u, 0x3F800000u,
        0xBF800000u, 0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u, 0x3F807FFFu, 0x3F808001u, 0x3F80FFFFu,
        0x3FFFFFFFu, 0x3FFF7FFFu, 0x3FFF8000u, 0x7F7F0000u, 0x7F7F7FFFu, 0x7F7F8000u, 0x7F7FFFFFu, 0xFF7FFFFFu,
        0x7F7E8000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7F80FFFFu,
        0x7FA00000u, 0xFFA00000u, 0x7FBFFFFFu, 0x7FFFFFFFu, 0xFFFFFFFFu, 0x7FC0DEADu, 0x7F808000u, 0x7FFF8000u,
    };
    size_t nsp = sizeof sp / sizeof sp[0];
    float *x = LOLA_NEW(float, nsp);
    for (size_t i = 0; i < nsp; i++) x[i] = u2f(sp[i]);
    float *rt = NULL;
    bf16_pack_case("bf16 special values", x, nsp, 0, 0, &rt);
    size_t canon = 0, nnan = 0;
    for (size_t i = 0; i < nsp; i++)
        if (isnan(x[i])) nnan++, canon += f2u(rt[i]) == 0x7FFF0000u;
    CHECK(canon == nnan, "bf16: every NaN (%zu with different payloads and signs) packs to 0x7FFF on the GPU (%zu do)", nnan,
          canon);
    // a few results by hand (the rest is the CPU backend's, checked against a float64 reference in
    // tests/test_bf16.c): input -> bf16 << 16
    const uint32_t hand[][2] = {
        {0x7F800000u, 0x7F800000u}, {0xFF800000u, 0xFF800000u}, {0x7F7FFFFFu, 0x7F800000u}, // inf kept, FLT_MAX -> inf
        {0x7F7F8000u, 0x7F800000u}, {0x7F7F7FFFu, 0x7F7F0000u}, {0x80000000u, 0x80000000u}, // tie past max -> inf; -0
        {0x3F808000u, 0x3F800000u}, {0x3F818000u, 0x3F820000u}, {0x00018000u, 0x00020000u}, // ties to even, denormal
        {0x007FFFFFu, 0x00800000u}, {0x3FFFFFFFu, 0x40000000u},                            // carries into the exponent
    };
    size_t hand_ok = 0, nhand = sizeof hand / sizeof hand[0];
    for (size_t h = 0; h < nhand; h++)
        for (size_t i = 0; i < nsp; i++)
            if (sp[i] == hand[h][0]) {
                hand_ok += f2u(rt[i]) == hand[h][1];
                break;
            }
    CHECK(hand_ok == nhand, "bf16 on the GPU: +-inf kept, FLT_MAX and the tie past the largest bf16 -> inf, -0 kept, ties "
          "to even both ways, carries (%zu of %zu hand-computed values)", hand_ok, nhand);
    free(x), free(rt);

    // Random data: normal values over many scales, and random bit patterns (NaN, inf, denormals).
    size_t n = 100003;
    x = LOLA_NEW(float, n);
    for (size_t i = 0; i < n; i++)
        x[i] = i % 5 == 0 ? u2f((uint32_t)rng_next(&R)) : (float)rng_normal(&R) * ldexpf(1.0f, (int)rng_below(&R, 80) - 40);
    bf16_pack_case("bf16 random", x, n, 0, 0, NULL);
    for (int od = 0; od < 4; od++)
        for (int os = 0; os < 4; os++)
            if (od || os) bf16_pack_case("bf16 random, unaligned", x, 10007 - (size_t)(od + 2 * os), od, os, NULL);
    bf16_pack_case("bf16 n = 1", x, 1, 1, 0, NULL);
    bf16_pack_case("bf16 n = 0", x, 0, 1, 3, NULL);
    bf16_pack_case("bf16 n = 0", x, 0, 0, 0, NULL);
    free(x);

    // Large n (vectorised path, aligned; scalar path, dst +1) and the round-trip error bound.
    n = 3000001;
    x = LOLA_NEW(float, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t e = 1 + (uint32_t)rng_below(&R, 253), m = (uint32_t)rng_next(&R) & 0x7FFFFFu; // normal, no overflow
        x[i] = u2f((uint32_t)(rng_next(&R) & 1) << 31 | e << 23 | m);
    }
    bf16_pack_case("bf16 large", x, n, 0, 0, &rt);
    double worst = 0.0;
    size_t beyond = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)x[i] - rt[i]) / fabs((double)x[i]);
        if (!(r <= ldexp(1.0, -8))) beyond++;
        if (r > worst) worst = r;
    }
    // 2^-8 = the unit roundoff of 8 significant bits (half an ulp over the smallest |x| of a binade).
    CHECK(beyond == 0 && worst > ldexp(1.0, -9), "bf16 round trip on the GPU: |x - unpack(pack(x))| <= 2^-8 |x| for %zu normal x (worst %.4f * 2^-8, %zu beyond)",
          n, worst / ldexp(1.0, -8), beyond);
    free(rt);
    bf16_pack_case("bf16 large, unaligned", x, n - 2, 1, 2, NULL);
    free(x);
}

static void test_silu_dropout_randn(void) {
    covered("silu_forward"), covered("silu_backward"), covered("dropout_forward"), covered("dropout_backward");
    covered("nn_randn");
    size_t n = 65537;
    Pair x = prand(n, -12, 12), y = pnew(n), go = prand(n, -1, 1), dx = pnew(n), m = pnew(n);
    cpu_silu_forward(y.c, x.c, n), silu_forward(y.g, x.g, n);
    cmp("silu_forward", y, TA, TR);
    cpu_silu_backward(dx.c, go.c, x.c, n), silu_backward(dx.g, go.g, x.g, n);
    cmp("silu_backward", dx, TA, TR);
    float ps[3] = {0.05f, 0.3f, 0.0f};
    for (int k = 0; k < 3; k++) {
        char name[96];
        uint64_t seed = 1234567 + k;
        cpu_dropout_forward(y.c, m.c, x.c, n, ps[k], seed), dropout_forward(y.g, m.g, x.g, n, ps[k], seed);
        snprintf(name, sizeof name, "dropout_forward mask (p=%.2f)", ps[k]);
        cmp_exact(name, m);
        snprintf(name, sizeof name, "dropout_forward out (p=%.2f)", ps[k]);
        cmp_exact(name, y);
        cpu_dropout_backward(dx.c, go.c, m.c, n), dropout_backward(dx.g, go.g, m.g, n);
        snprintf(name, sizeof name, "dropout_backward (p=%.2f)", ps[k]);
        cmp_exact(name, dx);
    }
    pfree(x), pfree(y), pfree(go), pfree(dx), pfree(m);
    // randn: Box-Muller in double on both sides; the device's log/cos may differ from glibc's in
    // the last double ulp, which changes the float result only in rare rounding-boundary cases.
    size_t nr = (size_t)1 << 20;
    Pair r = pnew(nr);
    cpu_nn_randn(r.c, nr, 99), nn_randn(r.g, nr, 99);
    const float *g = gpu_of(r.g, nr);
    size_t diff = 0;
    double maxd = 0, s = 0, s2 = 0;
    for (size_t i = 0; i < nr; i++) {
        if (memcmp(&g[i], &r.c[i], 4)) diff++;
        double d = fabs((double)g[i] - r.c[i]);
        if (d > maxd) maxd = d;
        s += g[i], s2 += (double)g[i] * g[i];
    }
    double mean = s / nr, var = s2 / nr - mean * mean;
    CHECK(diff <= nr / 100000 && maxd <= 1e-5, "nn_randn equals the CPU stream (%zu of %zu differ, max %.2e)", diff, nr,
          maxd);
    CHECK(fabs(mean) < 0.01 && fabs(var - 1.0) < 0.01, "nn_randn moments: mean %.4f var %.4f", mean, var);
    pfree(r);
}

// ---------------------------------------------------------------------------------------------
// Convolution

static const char *impl_name(int impl, int det) {
    return impl == NN_CONV_IM2COL ? "im2col" : (det ? "cudnn-det" : "cudnn");
}

static void test_conv_one(int B, int Cin, int Cout, int H, int W, int K, int bias, int impl, int det) {
    covered("conv2d_forward"), covered("conv2d_backward");
    nn_cuda_set_conv_impl(impl);
    nn_cuda_set_deterministic(det);
    char tag[160], name[224];
    snprintf(tag, sizeof tag, "B=%d %d->%d %dx%d K=%d%s [%s]", B, Cin, Cout, H, W, K, bias ? "" : " nobias",
             impl_name(impl, det));
    size_t nx = (size_t)B * Cin * H * W, ny = (size_t)B * Cout * H * W, nw = (size_t)Cout * Cin * K * K;
    float bound = 1.0f / sqrtf((float)Cin * K * K);
    Pair x = prand(nx, -1, 1), w = prand(nw, -bound, bound), b = prand(Cout, -bound, bound), y = pnew(ny);
    Pair go = prand(ny, -1, 1), dx = prand(nx, -5, 5), dw = prand(nw, -1, 1), db = prand(Cout, -1, 1);
    cpu_conv2d_forward(y.c, x.c, w.c, bias ? b.c : NULL, B, Cin, Cout, H, W, K);
    conv2d_forward(y.g, x.g, w.g, bias ? b.g : NULL, B, Cin, Cout, H, W, K);
    snprintf(name, sizeof name, "conv2d_forward out %s", tag);
    cmp(name, y, CA, CR);
    cpu_conv2d_backward(dx.c, dw.c, bias ? db.c : NULL, go.c, x.c, w.c, B, Cin, Cout, H, W, K);
    conv2d_backward(dx.g, dw.g, bias ? db.g : NULL, go.g, x.g, w.g, B, Cin, Cout, H, W, K);
    snprintf(name, sizeof name, "conv2d_backward dx %s", tag);
    cmp(name, dx, CA, CR);
    snprintf(name, sizeof name, "conv2d_backward dw (+=) %s", tag);
    cmp(name, dw, CA, CR);
    if (bias) {
        snprintf(name, sizeof name, "conv2d_backward db (+=) %s", tag);
        cmp(name, db, CA, CR);
    }
    // dx = NULL: only the weight gradients accumulate (again)
    cpu_conv2d_backward(NULL, dw.c, NULL, go.c, x.c, w.c, B, Cin, Cout, H, W, K);
    conv2d_backward(NULL, dw.g, NULL, go.g, x.g, w.g, B, Cin, Cout, H, W, K);
    snprintf(name, sizeof name, "conv2d_backward dw only (dx, db NULL) %s", tag);
    cmp(name, dw, CA, CR);
    pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    nn_cuda_set_conv_impl(NN_CONV_CUDNN);
    nn_cuda_set_deterministic(0);
}

// One convolution in precision `prec` (cuDNN), two ways as test_linear_prec: model (fp32 inputs,
// sig from conv(x^2, w^2) and the backward ops on squares; in bf16 the output, rounded to bf16 by
// cuDNN, counts as one more rounded operand: forward conv without bias, dx, the dw increment) and
// exact (pre-rounded inputs; tf32: fp32 tolerance; bf16: plus the bf16 output rounding, at most
// 2^-8 of the value). The bias gradient stays fp32 in every mode. Returns 1 when bf16 ran on cuDNN
// for this shape (no fallback to the fp32 path).
static int test_conv_prec(int B, int Cin, int Cout, int H, int W, int K, int prec) {
    covered("conv2d_forward"), covered("conv2d_backward");
    int on = use_precision(prec);
    nn_cuda_set_conv_impl(NN_CONV_CUDNN);
    nn_cuda_set_deterministic(0);
    long fb0 = nn_cuda_precision_fallback_calls();
    char tag[160], name[256];
    snprintf(tag, sizeof tag, "B=%d %d->%d %dx%d K=%d [%s%s]", B, Cin, Cout, H, W, K, nn_cuda_precision_name(prec),
             prec == NN_PREC_BF16 && nn_cuda_conv_layout() == NN_CONV_NHWC ? " nhwc" : "");
    int bf = prec == NN_PREC_BF16, HW = H * W;
    double eta = prec_eta(prec), rt = 1.0 / 1024.0; // rt: tf32 truncation mean (also a bf16 -> tf32 fallback)
    size_t nx = (size_t)B * Cin * HW, ny = (size_t)B * Cout * HW, nw = (size_t)Cout * Cin * K * K;
    float bound = 1.0f / sqrtf((float)Cin * K * K);
    Pair x = prand(nx, -1, 1), w = prand(nw, -bound, bound), b = prand(Cout, -bound, bound), y = pnew(ny);
    Pair go = prand(ny, -1, 1), dx = pnew(nx), dw = prand(nw, -1, 1), db = prand(Cout, -1, 1);
    float *dw0 = LOLA_NEW(float, nw), *r = LOLA_NEW(float, nx > ny ? (nx > nw ? nx : nw) : (ny > nw ? ny : nw));
    double q = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        const char *kind = pass ? "exact (rounded inputs)" : "model";
        if (pass) {
            round_pair(x, prec), round_pair(w, prec), round_pair(go, prec);
            for (size_t i = 0; i < nw; i++) dw.c[i] = urand(-1, 1);
            psync(dw);
        }
        memcpy(dw0, dw.c, nw * sizeof(float));
        cpu_conv2d_forward(y.c, x.c, w.c, b.c, B, Cin, Cout, H, W, K);
        conv2d_forward(y.g, x.g, w.g, b.g, B, Cin, Cout, H, W, K);
        cpu_conv2d_backward(dx.c, dw.c, db.c, go.c, x.c, w.c, B, Cin, Cout, H, W, K);
        conv2d_backward(dx.g, dw.g, db.g, go.g, x.g, w.g, B, Cin, Cout, H, W, K);
        // the values cuDNN rounds to bf16: forward without bias, dx, the dw increment
        float *sy = LOLA_NEW(float, ny), *sdx = LOLA_NEW(float, nx), *sdw = (float *)calloc(nw, sizeof(float));
        if (!sdw) lola_die("out of host memory");
        if (!pass) {
            float *x2 = squares(x.c, nx), *w2 = squares(w.c, nw), *g2 = squares(go.c, ny);
            cpu_conv2d_forward(sy, x2, w2, NULL, B, Cin, Cout, H, W, K);
            cpu_conv2d_backward(sdx, sdw, NULL, g2, x2, w2, B, Cin, Cout, H, W, K);
            free(x2), free(w2), free(g2);
        } else {
            memset(sy, 0, ny * sizeof(float)), memset(sdx, 0, nx * sizeof(float)); // output rounding only
        }
        for (size_t i = 0; i < ny; i++) r[i] = bf ? y.c[i] - b.c[(i / HW) % Cout] : 0.0f;
        to_sigma(sy, ny, eta, 2, r);
        snprintf(name, sizeof name, "conv2d_forward out %s %s", kind, tag);
        double qy = cmp_model(name, y, sy, pass ? 0.0 : rt, CA, CR);
        if (!pass) q = qy;
        for (size_t i = 0; i < nx; i++) r[i] = bf ? dx.c[i] : 0.0f;
        to_sigma(sdx, nx, eta, 2, r);
        snprintf(name, sizeof name, "conv2d_backward dx %s %s", kind, tag);
        cmp_model(name, dx, sdx, pass ? 0.0 : rt, CA, CR);
        for (size_t i = 0; i < nw; i++) r[i] = bf ? dw.c[i] - dw0[i] : 0.0f;
        to_sigma(sdw, nw, eta, 2, r);
        snprintf(name, sizeof name, "conv2d_backward dw (+=) %s %s", kind, tag);
        cmp_model(name, dw, sdw, pass ? 0.0 : rt, CA, CR);
        snprintf(name, sizeof name, "conv2d_backward db (+=, fp32 in every mode) %s %s", kind, tag);
        cmp(name, db, CA, CR);
        free(sy), free(sdx), free(sdw);
    }
    long fb = nn_cuda_precision_fallback_calls() - fb0;
    snprintf(name, sizeof name, "conv2d_forward model %s", tag);
    if (fb) printf("  # %s: %ld calls fell back to the fp32 path: bf16 engagement not checked\n", tag, fb);
    else check_engaged(name, q, prec, 0, ny);
    free(dw0), free(r);
    pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    nn_cuda_set_precision(NN_PREC_FP32);
    return on && bf && fb == 0;
}

// Conv operands at float offset 1 (4-byte aligned only). The parameters (w, b, dw, db) are like
// that in every real model (params.c packs tensors without padding): with aligned activations
// (act_off 0) no fp32 call may fall back to im2col (conv.cu copies a misaligned weight / weight
// gradient to an aligned slot). act_off 1 misaligns the activations too (x, y, dout, dx; never so
// in the models, whose arena tensors are aligned): results must still be right, on cuDNN or on a
// fallback. Inputs rounded to the precision first; bf16 tolerances cover cuDNN's bf16 output
// rounding (2^-8 of the value).
static void test_conv_offset(int prec, int act_off) {
    covered("conv2d_forward"), covered("conv2d_backward");
    use_precision(prec);
    nn_cuda_set_conv_impl(NN_CONV_CUDNN);
    nn_cuda_set_deterministic(0);
    long cf0 = nn_cuda_conv_fallback_calls(), pf0 = nn_cuda_precision_fallback_calls();
    const int B = 2, Cin = 24, Cout = 40, H = 13, W = 11, K = 3;
    size_t nx = (size_t)B * Cin * H * W, ny = (size_t)B * Cout * H * W, nw = (size_t)Cout * Cin * K * K;
    float bound = 1.0f / sqrtf((float)Cin * K * K);
    Pair x = prand(nx + 1, -1, 1), w = prand(nw + 1, -bound, bound), b = prand((size_t)Cout + 1, -bound, bound);
    Pair y = prand(ny + 1, -1, 1), go = prand(ny + 1, -1, 1), dx = prand(nx + 1, -1, 1), dw = prand(nw + 1, -1, 1);
    Pair db = prand((size_t)Cout + 1, -1, 1);
    round_pair(x, prec), round_pair(w, prec), round_pair(go, prec);
    const int o = act_off; // activations at float offset o, parameters at 1
    cpu_conv2d_forward(y.c + o, x.c + o, w.c + 1, b.c + 1, B, Cin, Cout, H, W, K);
    conv2d_forward(y.g + o, x.g + o, w.g + 1, b.g + 1, B, Cin, Cout, H, W, K);
    cpu_conv2d_backward(dx.c + o, dw.c + 1, db.c + 1, go.c + o, x.c + o, w.c + 1, B, Cin, Cout, H, W, K);
    conv2d_backward(dx.g + o, dw.g + 1, db.g + 1, go.g + o, x.g + o, w.g + 1, B, Cin, Cout, H, W, K);
    double a = prec == NN_PREC_BF16 ? 1e-2 : CA, r = prec == NN_PREC_BF16 ? 1.0 / 128 : CR;
    char tag[128], name[224];
    snprintf(tag, sizeof tag, "B=%d %d->%d %dx%d K=%d, %s at float offset 1 [%s%s]", B, Cin, Cout, H, W, K,
             act_off ? "every pointer" : "w, b, dw, db", nn_cuda_precision_name(prec),
             prec == NN_PREC_BF16 && nn_cuda_conv_layout() == NN_CONV_NHWC ? " nhwc" : "");
    snprintf(name, sizeof name, "conv2d_forward out %s", tag);
    cmp(name, y, a, r);
    snprintf(name, sizeof name, "conv2d_backward dx %s", tag);
    cmp(name, dx, a, r);
    snprintf(name, sizeof name, "conv2d_backward dw (+=) %s", tag);
    cmp(name, dw, a, r);
    snprintf(name, sizeof name, "conv2d_backward db (+=) %s", tag);
    cmp(name, db, CA, CR);
    long cf = nn_cuda_conv_fallback_calls() - cf0, pf = nn_cuda_precision_fallback_calls() - pf0;
    printf("  # %s: %ld calls fell back to im2col, %ld to the fp32 path\n", tag, cf, pf);
    if (prec == NN_PREC_FP32 && !act_off)
        CHECK(cf == 0, "conv with misaligned parameters [fp32]: cuDNN ran every call (%ld im2col fallbacks)", cf);
    pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    nn_cuda_set_precision(NN_PREC_FP32);
}

static void test_conv(int big) {
    for (int act_off = 0; act_off < 2; act_off++) {
        test_conv_offset(NN_PREC_FP32, act_off);
        test_conv_offset(NN_PREC_TF32, act_off);
        test_conv_offset(NN_PREC_BF16, act_off);
    }
    long fb0 = nn_cuda_conv_fallback_calls();
    int shapes[][7] = {
        {2, 3, 5, 9, 7, 3, 1}, {2, 16, 32, 32, 32, 3, 1}, {1, 32, 16, 17, 19, 1, 1}, {2, 8, 8, 8, 8, 3, 0},
        {1, 5, 64, 64, 64, 3, 1}, // AE entry conv (C_pix -> h0)
    };
    int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < ns; s++)
        for (int mode = 0; mode < 3; mode++) {
            int impl = mode == 2 ? NN_CONV_IM2COL : NN_CONV_CUDNN, det = mode == 1;
            int *S = shapes[s];
            test_conv_one(S[0], S[1], S[2], S[3], S[4], S[5], S[6], impl, det);
        }
    if (big) {
        test_conv_one(2, 64, 64, 128, 128, 3, 1, NN_CONV_CUDNN, 0);
        test_conv_one(1, 256, 512, 32, 32, 3, 1, NN_CONV_CUDNN, 1);
        test_conv_one(1, 1024, 1024, 16, 16, 1, 1, NN_CONV_CUDNN, 0);
    }
    long fb = nn_cuda_conv_fallback_calls() - fb0;
    printf("# conv: %ld calls fell back from cuDNN to im2col%s\n", fb, fb ? " (see the warning above)" : "");
    // reduced precision: every small shape in tf32 and bf16, and the AE's 64-channel level
    long pf0 = nn_cuda_precision_fallback_calls();
    int bf16_ran = 0, bf16_cases = 0;
    for (int s = 0; s < ns; s++) {
        int *S = shapes[s];
        test_conv_prec(S[0], S[1], S[2], S[3], S[4], S[5], NN_PREC_TF32);
        bf16_ran += test_conv_prec(S[0], S[1], S[2], S[3], S[4], S[5], NN_PREC_BF16), bf16_cases++;
    }
    bf16_ran += test_conv_prec(2, 64, 64, big ? 128 : 32, big ? 128 : 32, 3, NN_PREC_BF16), bf16_cases++;
    if (big) test_conv_prec(1, 256, 256, 32, 32, 3, NN_PREC_TF32);
    printf("# conv: bf16 ran on cuDNN for %d of %d shapes; %ld calls fell back to the fp32 path\n", bf16_ran,
           bf16_cases, nn_cuda_precision_fallback_calls() - pf0);
    if (!selfcheck)
        CHECK(bf16_ran > 0, "cuDNN ran bf16 convolutions (%d of %d shapes; the rest took the fp32 path)", bf16_ran,
              bf16_cases);
    // The same bf16 convolutions through cuDNN's NHWC layout (LOLA_CONV_LAYOUT=nhwc: transposing
    // casts, KRSC weights), with 1x1 and odd sizes among the shapes, and every pointer misaligned.
    nn_cuda_set_conv_layout(NN_CONV_NHWC);
    long pf1 = nn_cuda_precision_fallback_calls();
    int nhwc_ran = 0, nhwc_cases = 0;
    for (int s = 0; s < ns; s++) {
        int *S = shapes[s];
        nhwc_ran += test_conv_prec(S[0], S[1], S[2], S[3], S[4], S[5], NN_PREC_BF16), nhwc_cases++;
    }
    nhwc_ran += test_conv_prec(2, 64, 64, big ? 128 : 32, big ? 128 : 32, 3, NN_PREC_BF16), nhwc_cases++;
    test_conv_offset(NN_PREC_BF16, 0);
    test_conv_offset(NN_PREC_BF16, 1);
    nn_cuda_set_conv_layout(NN_CONV_NCHW);
    printf("# conv nhwc: bf16 ran on cuDNN for %d of %d shapes; %ld calls fell back to the fp32 path\n", nhwc_ran,
           nhwc_cases, nn_cuda_precision_fallback_calls() - pf1);
    if (!selfcheck)
        CHECK(nhwc_ran > 0, "cuDNN ran NHWC bf16 convolutions (%d of %d shapes)", nhwc_ran, nhwc_cases);
}

// ---------------------------------------------------------------------------------------------
// AE image ops

static void test_image_ops(void) {
    covered("pixel_unshuffle"), covered("pixel_shuffle"), covered("layernorm_channels_forward");
    covered("layernorm_channels_backward"), covered("transpose_bcn"), covered("saturation_forward");
    covered("saturation_backward");
    char name[160];
    int cases[][5] = {{2, 3, 8, 12, 2}, {1, 4, 16, 8, 4}, {2, 5, 6, 6, 1}};
    for (int k = 0; k < 3; k++) {
        int B = cases[k][0], C = cases[k][1], H = cases[k][2], W = cases[k][3], s = cases[k][4];
        size_t n = (size_t)B * C * H * W;
        Pair x = prand(n, -1, 1), y = pnew(n), z = pnew(n);
        cpu_pixel_unshuffle(y.c, x.c, B, C, H, W, s), pixel_unshuffle(y.g, x.g, B, C, H, W, s);
        snprintf(name, sizeof name, "pixel_unshuffle B=%d C=%d %dx%d s=%d", B, C, H, W, s);
        cmp_exact(name, y);
        cpu_pixel_shuffle(z.c, y.c, B, C, H / s, W / s, s), pixel_shuffle(z.g, y.g, B, C, H / s, W / s, s);
        snprintf(name, sizeof name, "pixel_shuffle (inverse) B=%d C=%d %dx%d s=%d", B, C, H / s, W / s, s);
        cmp_exact(name, z);
        const float *g = gpu_of(z.g, n);
        CHECK(!memcmp(g, x.c, n * sizeof(float)), "pixel_shuffle(pixel_unshuffle(x)) == x on the GPU (s=%d)", s);
        pfree(x), pfree(y), pfree(z);
    }
    int lc[][3] = {{2, 24, 77}, {1, 64, 4096}, {3, 2, 10}};
    for (int k = 0; k < 3; k++) {
        int B = lc[k][0], C = lc[k][1], HW = lc[k][2];
        size_t n = (size_t)B * C * HW, nm = (size_t)B * HW;
        Pair x = prand(n, -2, 3), y = pnew(n), mu = pnew(nm), rs = pnew(nm), go = prand(n, -1, 1), dx = prand(n, 0, 1);
        cpu_layernorm_channels_forward(y.c, mu.c, rs.c, x.c, B, C, HW, 1e-5f);
        layernorm_channels_forward(y.g, mu.g, rs.g, x.g, B, C, HW, 1e-5f);
        snprintf(name, sizeof name, "layernorm_channels_forward out B=%d C=%d HW=%d", B, C, HW);
        cmp(name, y, TA, TR);
        snprintf(name, sizeof name, "layernorm_channels_forward mean B=%d C=%d HW=%d", B, C, HW);
        cmp(name, mu, TA, TR);
        snprintf(name, sizeof name, "layernorm_channels_forward rstd B=%d C=%d HW=%d", B, C, HW);
        cmp(name, rs, TA, TR);
        cpu_layernorm_channels_backward(dx.c, go.c, x.c, mu.c, rs.c, B, C, HW);
        layernorm_channels_backward(dx.g, go.g, x.g, mu.g, rs.g, B, C, HW);
        snprintf(name, sizeof name, "layernorm_channels_backward dx B=%d C=%d HW=%d", B, C, HW);
        cmp(name, dx, TA, TR);
        pfree(x), pfree(y), pfree(mu), pfree(rs), pfree(go), pfree(dx);
    }
    {   // spec value (lola-spec.md 2.1): [1, 2, 3, 4] over channels -> [-1.161892, -0.387297, 0.387297, 1.161892]
        float h[4] = {1, 2, 3, 4}, o[4];
        float *x = nn_alloc(4), *y = nn_alloc(4), *m = nn_alloc(1), *r = nn_alloc(1);
        nn_to_backend(x, h, 4);
        layernorm_channels_forward(y, m, r, x, 1, 4, 1, 1e-5f);
        nn_to_host(o, y, 4);
        CHECK(fabsf(o[0] + 1.161892f) < 2e-6f && fabsf(o[3] - 1.161892f) < 2e-6f,
              "layernorm_channels spec value (unbiased): %.6f %.6f %.6f %.6f", o[0], o[1], o[2], o[3]);
        nn_free(x), nn_free(y), nn_free(m), nn_free(r);
    }
    int tc[][3] = {{3, 37, 70}, {2, 64, 1024}, {1, 1, 5}};
    for (int k = 0; k < 3; k++) {
        int B = tc[k][0], C = tc[k][1], N = tc[k][2];
        size_t n = (size_t)B * C * N;
        Pair x = prand(n, -1, 1), y = pnew(n);
        cpu_transpose_bcn(y.c, x.c, B, C, N), transpose_bcn(y.g, x.g, B, C, N);
        snprintf(name, sizeof name, "transpose_bcn B=%d C=%d N=%d", B, C, N);
        cmp_exact(name, y);
        pfree(x), pfree(y);
    }
    const char *sat_names[] = {"none", "softclip2", "softclip", "tanh", "arcsinh", "rmsnorm"};
    for (int kind = SAT_NONE; kind <= SAT_RMSNORM; kind++) {
        int B = 2, C = 8, HW = 50;
        size_t n = (size_t)B * C * HW;
        Pair x = prand(n, -20, 20), y = pnew(n), go = prand(n, -1, 1), dx = pnew(n);
        cpu_saturation_forward(y.c, x.c, B, C, HW, kind), saturation_forward(y.g, x.g, B, C, HW, kind);
        snprintf(name, sizeof name, "saturation_forward %s", sat_names[kind]);
        cmp(name, y, TA, TR);
        cpu_saturation_backward(dx.c, go.c, x.c, B, C, HW, kind), saturation_backward(dx.g, go.g, x.g, B, C, HW, kind);
        snprintf(name, sizeof name, "saturation_backward %s", sat_names[kind]);
        cmp(name, dx, TA, TR);
        pfree(x), pfree(y), pfree(go), pfree(dx);
    }
}

// ---------------------------------------------------------------------------------------------
// Dense / transformer ops

// One linear case in precision `prec` with GEMM engine `impl` (nn_cuda.h), two ways:
//  model: fp32 inputs; GPU vs the CPU in fp32 within the rounding model (sig from the squared
//         operands: forward sum_k x^2 w^2, dx sum_n dout^2 w^2, dw sum_m dout^2 x^2, db sum_m
//         dout^2 with one rounded operand);
//  exact: inputs pre-rounded to the format on the host, so the GPU's own rounding is exact and
//         the result must equal the CPU's to fp32 order (TA, TR): layouts, bias epilogue, bias
//         gradient epilogue and the += of dw, independently of rounding.
// engaged: check that the rounding is visible (check_engaged). Ends in fp32 / auto.
static void test_linear_prec(int M, int K, int N, int bias, int prec, int impl, int engaged) {
    covered("linear_forward"), covered("linear_backward");
    use_precision(prec);
    nn_cuda_set_gemm_impl(impl);
    const char *in = impl == NN_GEMM_LT ? "lt" : impl == NN_GEMM_CUBLAS ? "cublas" : "auto";
    char tag[96], name[224];
    snprintf(tag, sizeof tag, "M=%d K=%d N=%d%s [%s %s]", M, K, N, bias ? "" : " nobias", nn_cuda_precision_name(prec),
             in);
    double eta = prec_eta(prec), rt = prec == NN_PREC_TF32 ? eta : 0.0;
    size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    float bound = 1.0f / sqrtf((float)K);
    Pair x = prand(nx, -1, 1), w = prand(nw, -bound, bound), b = prand(N, -bound, bound), y = pnew(ny);
    Pair go = prand(ny, -1, 1), dx = prand(nx, -1, 1), dw = prand(nw, -1, 1), db = prand(N, -1, 1);
    for (int pass = 0; pass < 2; pass++) { // 0 model, 1 exact
        const char *kind = pass ? "exact (rounded inputs)" : "model";
        if (pass) {
            round_pair(x, prec), round_pair(w, prec), round_pair(go, prec);
            for (size_t i = 0; i < nw; i++) dw.c[i] = urand(-1, 1);
            for (int i = 0; i < N; i++) db.c[i] = urand(-1, 1);
            psync(dw), psync(db);
        }
        cpu_linear_forward(y.c, x.c, w.c, bias ? b.c : NULL, M, K, N);
        linear_forward(y.g, x.g, w.g, bias ? b.g : NULL, M, K, N);
        cpu_linear_backward(dx.c, dw.c, bias ? db.c : NULL, go.c, x.c, w.c, M, K, N);
        linear_backward(dx.g, dw.g, bias ? db.g : NULL, go.g, x.g, w.g, M, K, N);
        float *sy = NULL, *sdx = NULL, *sdw = NULL, *sdb = NULL;
        if (!pass && eta > 0) {
            float *x2 = squares(x.c, nx), *w2 = squares(w.c, nw), *g2 = squares(go.c, ny);
            sy = LOLA_NEW(float, ny), sdx = LOLA_NEW(float, nx);
            sdw = (float *)calloc(nw, sizeof(float)), sdb = (float *)calloc((size_t)N, sizeof(float));
            if (!sdw || !sdb) lola_die("out of host memory");
            cpu_linear_forward(sy, x2, w2, NULL, M, K, N);
            cpu_linear_backward(sdx, sdw, sdb, g2, x2, w2, M, K, N);
            to_sigma(sy, ny, eta, 2, NULL), to_sigma(sdx, nx, eta, 2, NULL), to_sigma(sdw, nw, eta, 2, NULL);
            to_sigma(sdb, (size_t)N, eta, 1, NULL);
            free(x2), free(w2), free(g2);
        }
        snprintf(name, sizeof name, "linear_forward %s %s", kind, tag);
        double q = cmp_model(name, y, sy, rt, TA, TR);
        if (!pass && eta > 0) check_engaged(name, q, prec, engaged, ny);
        snprintf(name, sizeof name, "linear_backward dx %s %s", kind, tag);
        cmp_model(name, dx, sdx, rt, TA, TR);
        snprintf(name, sizeof name, "linear_backward dw (+=) %s %s", kind, tag);
        cmp_model(name, dw, sdw, rt, TA, TR);
        if (bias) {
            snprintf(name, sizeof name, "linear_backward db (+=) %s %s", kind, tag);
            cmp_model(name, db, sdb, rt, TA, TR);
        }
        free(sy), free(sdx), free(sdw), free(sdb);
        if (eta == 0) break; // fp32: the two passes are the same
    }
    pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    nn_cuda_set_precision(NN_PREC_FP32);
    nn_cuda_set_gemm_impl(NN_GEMM_AUTO);
}

// Every operand at float offset 1 (4-byte aligned, not 16), as parameters and activations inside
// larger buffers are: the cuBLASLt plans must use the actual alignments (lt.cu, MIN_ALIGNMENT_*
// preferences in the plan key), the forward bias goes through the aligned copy, dw / db through
// the BGRADB epilogue at odd addresses, and nothing may be written before the offset (element 0
// of every output stays as it was). Inputs pre-rounded to the mode's format: every mode must
// equal the CPU to fp32 order.
static void test_linear_offset(int prec, int impl) {
    covered("linear_forward"), covered("linear_backward");
    use_precision(prec);
    nn_cuda_set_gemm_impl(impl);
    long fb0 = nn_cuda_precision_fallback_calls();
    int M = 67, K = 96, N = 72;
    size_t nx = (size_t)M * K, nw = (size_t)N * K, ny = (size_t)M * N;
    float bound = 1.0f / sqrtf((float)K);
    Pair x = prand(nx + 1, -1, 1), w = prand(nw + 1, -bound, bound), b = prand((size_t)N + 1, -bound, bound);
    Pair y = prand(ny + 1, -1, 1), go = prand(ny + 1, -1, 1), dx = prand(nx + 1, -1, 1), dw = prand(nw + 1, -1, 1);
    Pair db = prand((size_t)N + 1, -1, 1);
    round_pair(x, prec), round_pair(w, prec), round_pair(go, prec);
    cpu_linear_forward(y.c + 1, x.c + 1, w.c + 1, b.c + 1, M, K, N);
    linear_forward(y.g + 1, x.g + 1, w.g + 1, b.g + 1, M, K, N);
    cpu_linear_backward(dx.c + 1, dw.c + 1, db.c + 1, go.c + 1, x.c + 1, w.c + 1, M, K, N);
    linear_backward(dx.g + 1, dw.g + 1, db.g + 1, go.g + 1, x.g + 1, w.g + 1, M, K, N);
    const char *in = impl == NN_GEMM_LT ? "lt" : impl == NN_GEMM_CUBLAS ? "cublas" : "auto";
    char tag[128], name[224];
    snprintf(tag, sizeof tag, "M=%d K=%d N=%d, every pointer at float offset 1 [%s %s]", M, K, N,
             nn_cuda_precision_name(prec), in);
    snprintf(name, sizeof name, "linear_forward %s", tag);
    cmp(name, y, TA, TR);
    snprintf(name, sizeof name, "linear_backward dx %s", tag);
    cmp(name, dx, TA, TR);
    snprintf(name, sizeof name, "linear_backward dw (+=) %s", tag);
    cmp(name, dw, TA, TR);
    snprintf(name, sizeof name, "linear_backward db (+=) %s", tag);
    cmp(name, db, TA, TR);
    long fb = nn_cuda_precision_fallback_calls() - fb0;
    if (fb) printf("  # %s: %ld GEMM calls fell back from cuBLASLt to cuBLAS\n", tag, fb);
    pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    nn_cuda_set_precision(NN_PREC_FP32);
    nn_cuda_set_gemm_impl(NN_GEMM_AUTO);
}

static void test_linear(int big) {
    covered("linear_forward"), covered("linear_backward");
    int cases[][4] = {{37, 65, 129, 1}, {256, 512, 384, 1}, {5, 7, 3, 0}, {1280, 256, 768, 0}, {1024, 1024, 1024, 1}};
    int nc = big ? 5 : 4;
    char name[160];
    for (int k = 0; k < nc; k++) {
        int M = cases[k][0], K = cases[k][1], N = cases[k][2], bias = cases[k][3];
        float bound = 1.0f / sqrtf((float)K);
        Pair x = prand((size_t)M * K, -1, 1), w = prand((size_t)N * K, -bound, bound), b = prand(N, -bound, bound);
        Pair y = pnew((size_t)M * N), go = prand((size_t)M * N, -1, 1), dx = prand((size_t)M * K, -1, 1);
        Pair dw = prand((size_t)N * K, -1, 1), db = prand(N, -1, 1);
        char tag[64];
        snprintf(tag, sizeof tag, "M=%d K=%d N=%d%s", M, K, N, bias ? "" : " nobias");
        cpu_linear_forward(y.c, x.c, w.c, bias ? b.c : NULL, M, K, N);
        linear_forward(y.g, x.g, w.g, bias ? b.g : NULL, M, K, N);
        snprintf(name, sizeof name, "linear_forward %s", tag);
        cmp(name, y, TA, TR);
        cpu_linear_backward(dx.c, dw.c, bias ? db.c : NULL, go.c, x.c, w.c, M, K, N);
        linear_backward(dx.g, dw.g, bias ? db.g : NULL, go.g, x.g, w.g, M, K, N);
        snprintf(name, sizeof name, "linear_backward dx %s", tag);
        cmp(name, dx, TA, TR);
        snprintf(name, sizeof name, "linear_backward dw (+=) %s", tag);
        cmp(name, dw, TA, TR);
        if (bias) {
            snprintf(name, sizeof name, "linear_backward db (+=) %s", tag);
            cmp(name, db, TA, TR);
        }
        cpu_linear_backward(NULL, dw.c, NULL, go.c, x.c, w.c, M, K, N);
        linear_backward(NULL, dw.g, NULL, go.g, x.g, w.g, M, K, N);
        snprintf(name, sizeof name, "linear_backward dw only (dx, db NULL) %s", tag);
        cmp(name, dw, TA, TR);
        if (k == 1) { // the TF32 switch, then back off: exact fp32 again
            nn_cuda_set_tf32(1);
            linear_forward(y.g, x.g, w.g, b.g, M, K, N);
            nn_cuda_set_tf32(0);
            linear_forward(y.g, x.g, w.g, b.g, M, K, N);
            snprintf(name, sizeof name, "linear_forward after TF32 on and off again %s", tag);
            cmp(name, y, TA, TR);
        }
        pfree(x), pfree(w), pfree(b), pfree(y), pfree(go), pfree(dx), pfree(dw), pfree(db);
    }
    // Reduced precision and the cuBLASLt engine (fp32 + LT: the cuBLASLt layouts and epilogues at
    // fp32 tolerance; tf32/bf16 through cuBLASLt (auto) and through the cuBLAS fallback).
    long fb0 = nn_cuda_precision_fallback_calls();
    for (int k = 0; k < 4; k++) {
        int M = cases[k][0], K = cases[k][1], N = cases[k][2], bias = cases[k][3];
        test_linear_prec(M, K, N, bias, NN_PREC_FP32, NN_GEMM_LT, 0);
        test_linear_prec(M, K, N, bias, NN_PREC_TF32, NN_GEMM_AUTO, k == 3);
        test_linear_prec(M, K, N, bias, NN_PREC_BF16, NN_GEMM_AUTO, 1);
        if (k < 2) test_linear_prec(M, K, N, bias, NN_PREC_BF16, NN_GEMM_CUBLAS, 1);
    }
    test_linear_prec(256, 512, 384, 1, NN_PREC_TF32, NN_GEMM_CUBLAS, 0);
    test_linear_prec(37, 65, 129, 1, NN_PREC_BF16, NN_GEMM_LT, 1);
    if (big) test_linear_prec(1024, 1024, 1024, 1, NN_PREC_BF16, NN_GEMM_AUTO, 1);
    test_linear_offset(NN_PREC_FP32, NN_GEMM_LT);
    test_linear_offset(NN_PREC_TF32, NN_GEMM_AUTO);
    test_linear_offset(NN_PREC_BF16, NN_GEMM_AUTO);
    printf("# linear: %ld GEMM calls fell back from cuBLASLt to cuBLAS%s\n", nn_cuda_precision_fallback_calls() - fb0,
           nn_cuda_precision_fallback_calls() > fb0 ? " (see the warning above)" : "");
}

static void test_layernorm(void) {
    covered("layernorm_forward"), covered("layernorm_backward");
    int cases[][2] = {{50, 96}, {300, 1024}, {7, 5}};
    char name[128];
    for (int k = 0; k < 3; k++) {
        int M = cases[k][0], D = cases[k][1];
        size_t n = (size_t)M * D;
        Pair x = prand(n, -2, 3), y = pnew(n), mu = pnew(M), rs = pnew(M), go = prand(n, -1, 1), dx = pnew(n);
        cpu_layernorm_forward(y.c, mu.c, rs.c, x.c, M, D, 1e-5f), layernorm_forward(y.g, mu.g, rs.g, x.g, M, D, 1e-5f);
        snprintf(name, sizeof name, "layernorm_forward out M=%d D=%d", M, D);
        cmp(name, y, TA, TR);
        snprintf(name, sizeof name, "layernorm_forward mean M=%d D=%d", M, D);
        cmp(name, mu, TA, TR);
        snprintf(name, sizeof name, "layernorm_forward rstd M=%d D=%d", M, D);
        cmp(name, rs, TA, TR);
        cpu_layernorm_backward(dx.c, go.c, x.c, mu.c, rs.c, M, D), layernorm_backward(dx.g, go.g, x.g, mu.g, rs.g, M, D);
        snprintf(name, sizeof name, "layernorm_backward dx M=%d D=%d", M, D);
        cmp(name, dx, TA, TR);
        pfree(x), pfree(y), pfree(mu), pfree(rs), pfree(go), pfree(dx);
    }
}

static void test_modulate_gated(void) {
    covered("modulate_forward"), covered("modulate_backward"), covered("gated_residual_forward");
    covered("gated_residual_backward");
    int cases[][3] = {{3, 17, 40}, {2, 1280, 256}, {1, 300, 1024}};
    char name[160];
    for (int k = 0; k < 3; k++) {
        int B = cases[k][0], N = cases[k][1], D = cases[k][2], ld = 4 * D;
        size_t n = (size_t)B * N * D;
        char tag[64];
        snprintf(tag, sizeof tag, "B=%d N=%d D=%d", B, N, D);
        Pair mod = prand((size_t)B * ld, -0.5f, 0.5f), x = prand(n, -2, 2), y = prand(n, -2, 2), o = pnew(n);
        Pair go = prand(n, -1, 1), dx = pnew(n), dy = pnew(n), dmod = prand((size_t)B * ld, -1, 1);
        cpu_modulate_forward(o.c, x.c, mod.c, mod.c + D, B, N, D, ld);
        modulate_forward(o.g, x.g, mod.g, mod.g + D, B, N, D, ld);
        snprintf(name, sizeof name, "modulate_forward %s", tag);
        cmp(name, o, TA, TR);
        cpu_modulate_backward(dx.c, dmod.c, dmod.c + D, go.c, x.c, mod.c, B, N, D, ld);
        modulate_backward(dx.g, dmod.g, dmod.g + D, go.g, x.g, mod.g, B, N, D, ld);
        snprintf(name, sizeof name, "modulate_backward dx %s", tag);
        cmp(name, dx, TA, TR);
        // sums over N tokens in a different order (chunked on the GPU)
        snprintf(name, sizeof name, "modulate_backward da, dc (+=, stride ld; rest untouched) %s", tag);
        cmp(name, dmod, TA, TR);
        cpu_gated_residual_forward(o.c, x.c, y.c, mod.c + 2 * D, B, N, D, ld);
        gated_residual_forward(o.g, x.g, y.g, mod.g + 2 * D, B, N, D, ld);
        snprintf(name, sizeof name, "gated_residual_forward %s", tag);
        cmp(name, o, TA, TR);
        cpu_gated_residual_backward(dx.c, dy.c, dmod.c + 2 * D, go.c, x.c, y.c, mod.c + 2 * D, B, N, D, ld);
        gated_residual_backward(dx.g, dy.g, dmod.g + 2 * D, go.g, x.g, y.g, mod.g + 2 * D, B, N, D, ld);
        snprintf(name, sizeof name, "gated_residual_backward dx %s", tag);
        cmp(name, dx, TA, TR);
        snprintf(name, sizeof name, "gated_residual_backward dy %s", tag);
        cmp(name, dy, TA, TR);
        snprintf(name, sizeof name, "gated_residual_backward dg (+=) %s", tag);
        cmp(name, dmod, TA, TR);
        // aliasing: out = x in forward, dx = dout in backward
        cpu_gated_residual_forward(x.c, x.c, y.c, mod.c + 2 * D, B, N, D, ld);
        gated_residual_forward(x.g, x.g, y.g, mod.g + 2 * D, B, N, D, ld);
        snprintf(name, sizeof name, "gated_residual_forward out aliasing x %s", tag);
        cmp(name, x, TA, TR);
        cpu_gated_residual_backward(go.c, NULL, NULL, go.c, x.c, y.c, mod.c + 2 * D, B, N, D, ld);
        gated_residual_backward(go.g, NULL, NULL, go.g, x.g, y.g, mod.g + 2 * D, B, N, D, ld);
        snprintf(name, sizeof name, "gated_residual_backward dx aliasing dout, dy/dg NULL %s", tag);
        cmp(name, go, TA, TR);
        pfree(mod), pfree(x), pfree(y), pfree(o), pfree(go), pfree(dx), pfree(dy), pfree(dmod);
    }
}

// Fused ops of the ViT block (nn.h): layernorm_modulate_* and silu_dropout_* (the keep decision
// rehashed, no mask) against the CPU backend's.
static void test_fused_block_ops(void) {
    covered("layernorm_modulate_forward"), covered("layernorm_modulate_backward");
    covered("silu_dropout_forward"), covered("silu_dropout_backward");
    int cases[][3] = {{3, 17, 40}, {2, 1280, 256}, {1, 300, 1024}, {5, 3, 700}};
    char name[160];
    for (int k = 0; k < 4; k++) {
        int B = cases[k][0], N = cases[k][1], D = cases[k][2], ld = 4 * D, M = B * N;
        size_t n = (size_t)M * D;
        char tag[64];
        snprintf(tag, sizeof tag, "B=%d N=%d D=%d", B, N, D);
        Pair mod = prand((size_t)B * ld, -0.5f, 0.5f), x = prand(n, -2, 3), o = pnew(n), mu = pnew(M), rs = pnew(M);
        Pair go = prand(n, -1, 1), dx = pnew(n), dmod = prand((size_t)B * ld, -1, 1);
        cpu_layernorm_modulate_forward(o.c, mu.c, rs.c, x.c, mod.c, mod.c + D, B, N, D, ld, 1e-5f);
        layernorm_modulate_forward(o.g, mu.g, rs.g, x.g, mod.g, mod.g + D, B, N, D, ld, 1e-5f);
        snprintf(name, sizeof name, "layernorm_modulate_forward out %s", tag);
        cmp(name, o, TA, TR);
        snprintf(name, sizeof name, "layernorm_modulate_forward mean %s", tag);
        cmp(name, mu, TA, TR);
        snprintf(name, sizeof name, "layernorm_modulate_forward rstd %s", tag);
        cmp(name, rs, TA, TR);
        layernorm_modulate_forward(o.g, NULL, NULL, x.g, mod.g, mod.g + D, B, N, D, ld, 1e-5f);
        snprintf(name, sizeof name, "layernorm_modulate_forward out, mean/rstd NULL %s", tag);
        cmp(name, o, TA, TR);
        cpu_layernorm_modulate_backward(dx.c, dmod.c, dmod.c + D, go.c, x.c, mu.c, rs.c, mod.c, B, N, D, ld);
        layernorm_modulate_backward(dx.g, dmod.g, dmod.g + D, go.g, x.g, mu.g, rs.g, mod.g, B, N, D, ld);
        snprintf(name, sizeof name, "layernorm_modulate_backward dx %s", tag);
        cmp(name, dx, TA, TR);
        snprintf(name, sizeof name, "layernorm_modulate_backward da, dc (+=, stride ld; rest untouched) %s", tag);
        cmp(name, dmod, TA, TR);
        cpu_layernorm_modulate_backward(NULL, NULL, dmod.c + D, go.c, x.c, mu.c, rs.c, mod.c, B, N, D, ld);
        layernorm_modulate_backward(NULL, NULL, dmod.g + D, go.g, x.g, mu.g, rs.g, mod.g, B, N, D, ld);
        snprintf(name, sizeof name, "layernorm_modulate_backward dc alone (dx, da NULL) %s", tag);
        cmp(name, dmod, TA, TR);
        pfree(mod), pfree(x), pfree(o), pfree(mu), pfree(rs), pfree(go), pfree(dx), pfree(dmod);
    }
    size_t n = 65537;
    Pair x = prand(n, -12, 12), y = pnew(n), go = prand(n, -1, 1), dx = pnew(n);
    float ps[3] = {0.05f, 0.3f, 0.0f};
    for (int k = 0; k < 3; k++) {
        uint64_t seed = 7654321 + k;
        cpu_silu_dropout_forward(y.c, x.c, n, ps[k], seed), silu_dropout_forward(y.g, x.g, n, ps[k], seed);
        snprintf(name, sizeof name, "silu_dropout_forward (p=%.2f)", ps[k]);
        cmp(name, y, TA, TR);
        cpu_silu_dropout_backward(dx.c, go.c, x.c, n, ps[k], seed), silu_dropout_backward(dx.g, go.g, x.g, n, ps[k], seed);
        snprintf(name, sizeof name, "silu_dropout_backward (p=%.2f)", ps[k]);
        cmp(name, dx, TA, TR);
    }
    pfree(x), pfree(y), pfree(go), pfree(dx);
}

static void test_qk_norm_rope(int big) {
    covered("qk_norm_rope_forward"), covered("qk_norm_rope_backward");
    int cases[][4] = {{2, 20, 3, 16}, {1, 33, 2, 15}, {2, 256, 8, 128}};
    char name[160];
    for (int k = 0; k < 3; k++)
        for (int qn = 0; qn < 2; qn++)
            for (int rope = 0; rope < 2; rope++) {
                int B = cases[k][0], N = cases[k][1], H = cases[k][2], dh = cases[k][3], D = H * dh;
                if (rope && dh % 2) continue;
                if (k == 2 && !(qn && rope)) continue; // the model's setting only at the big shape
                size_t n = (size_t)B * N * 3 * D, na = (size_t)N * (D / 2);
                Pair qkv = prand(n, -2, 2), o = pnew(n), rs = pnew((size_t)B * N * 2 * H), ang = prand(na, -3, 3);
                Pair go = prand(n, -1, 1), dq = pnew(n), dang = prand(na, -1, 1);
                char tag[96];
                snprintf(tag, sizeof tag, "B=%d N=%d H=%d dh=%d qknorm=%d rope=%d", B, N, H, dh, qn, rope);
                cpu_qk_norm_rope_forward(o.c, rs.c, qkv.c, ang.c, B, N, H, dh, qn, rope);
                qk_norm_rope_forward(o.g, rs.g, qkv.g, ang.g, B, N, H, dh, qn, rope);
                snprintf(name, sizeof name, "qk_norm_rope_forward out %s", tag);
                cmp(name, o, TA, TR);
                snprintf(name, sizeof name, "qk_norm_rope_forward rstd %s", tag);
                cmp(name, rs, TA, TR);
                cpu_qk_norm_rope_backward(dq.c, rope ? dang.c : NULL, go.c, qkv.c, rs.c, ang.c, B, N, H, dh, qn, rope);
                qk_norm_rope_backward(dq.g, rope ? dang.g : NULL, go.g, qkv.g, rs.g, ang.g, B, N, H, dh, qn, rope);
                snprintf(name, sizeof name, "qk_norm_rope_backward dqkv %s", tag);
                cmp(name, dq, TA, TR);
                if (rope) {
                    snprintf(name, sizeof name, "qk_norm_rope_backward dangle (+=) %s", tag);
                    cmp(name, dang, TA, TR);
                }
                pfree(qkv), pfree(o), pfree(rs), pfree(ang), pfree(go), pfree(dq), pfree(dang);
            }
    (void)big;
}

static void test_attention_one(int B, int N, int H, int dh, size_t chunk) {
    covered("attention_save_floats"), covered("attention_forward"), covered("attention_backward");
    nn_cuda_set_attention_chunk(chunk);
    int D = H * dh;
    size_t n = (size_t)B * N * 3 * D, no = (size_t)B * N * D;
    char tag[128], name[192];
    snprintf(tag, sizeof tag, "B=%d N=%d H=%d dh=%d%s", B, N, H, dh, chunk ? " (one head per chunk)" : "");
    Pair qkv = prand(n, -2, 2), o = pnew(no), go = prand(no, -1, 1), dq = prand(n, -9, 9);
    size_t sc = cpu_attention_save_floats(B, N, H), sg = attention_save_floats(B, N, H);
    float *save_c = cpu_nn_alloc(sc), *save_g = nn_alloc(sg);
    cpu_attention_forward(o.c, save_c, qkv.c, B, N, H, dh);
    attention_forward(o.g, save_g, qkv.g, B, N, H, dh);
    snprintf(name, sizeof name, "attention_forward out %s", tag);
    cmp(name, o, TA, TR);
    cpu_attention_backward(dq.c, go.c, qkv.c, o.c, save_c, B, N, H, dh);
    attention_backward(dq.g, go.g, qkv.g, o.g, save_g, B, N, H, dh);
    // dS = P (dP - rowsum(dO O)) cancels: reduction-order differences are amplified a little.
    snprintf(name, sizeof name, "attention_backward dqkv (2e-5*rms + 2e-4) %s", tag);
    cmp(name, dq, 2e-5, 2e-4);
    cpu_nn_free(save_c);
    nn_free(save_g);
    pfree(qkv), pfree(o), pfree(go), pfree(dq);
    nn_cuda_set_attention_chunk(0);
}

// Attention in precision `prec` (tf32, bf16). Inputs (q, k, v and dO) are pre-rounded to the format
// on the host, for both sides: the operand casts are then exact (the linear and conv checks test
// the cast itself), and what remains is the rounding of the two *computed* GEMM operands, P (in
// O = P V and dV = P^T dO) and dS (in dQ = scale dS K, dK = scale dS^T Q). Per element, with the
// CPU's P (its `save`), dP = dO V^T, Di = rowsum(dO * O), dS = P (dP - Di), the model gives
//   sig(O[i,d])  = eta/sqrt(3) sqrt(sum_j P_ij^2 V_jd^2),   sig(dV[j,d]) = eta/sqrt(3) sqrt(sum_i P_ij^2 dO_id^2),
//   sig(dQ[i,d]) = eta/sqrt(3) scale sqrt(sum_j dS_ij^2 K_jd^2),  sig(dK[j,d]) = ... sum_i dS_ij^2 Q_id^2.
// The backward gets the CPU's O on both sides (the GPU's forward output differs by its own
// rounding, which would enter Di). fp32 part as the fp32 attention checks (2e-5 rms, 2e-4 |ref|).
//
// fwd, bwd: the engine of each call (NN_ATTN_GEMM, NN_ATTN_FLASH; nn_cuda.h). The fused kernels
// (cuda/flash_attention.cu) round the same operands (P, dS; the backward recomputes P from the
// saved log-sum-exp exactly as the GEMM path does), with two differences in the forward:
// * they round p = exp(s - m_t), m_t the running row maximum after key tile t, instead of the
//   normalised P; rounding is relative, so each term still carries |e| <= eta: sig unchanged.
// * online softmax: when the maximum grows after tile t, the O accumulator and the sum l are
//   multiplied by alpha = expf(m_t-1 - m_t) in fp32. Each such rescaling perturbs the partial
//   sums of the earlier tiles by the error of alpha (CUDA's expf: at most 2 ulp, relative
//   2^-22) plus the rounding of the product (2^-24), in the numerator and in l alike; a row is
//   rescaled at most R = ceil(N / 64) - 1 times (64 = the key tile). To first order, with
//   E = R (2^-22 + 2^-24), O_i = sum_j P_ij (1 + a_ij) V_j / sum_j P_ij (1 + b_ij), |a|, |b| <= E:
//       |err O[i,d]| <= 2 E sum_j P_ij |V_jd|                                      (deterministic)
//   and the saved lse = m + log l is off by at most E (relative error of l), so the backward's
//   P_ij = exp(s_ij - lse_i) carries one common factor (1 + d_i), |d_i| <= E, per row i, and
//   dS_ij with it:  |err dQ[i,d]| <= E |dQ_id|,  |err dK[j,d]| <= E scale sum_i |dS_ij Q_id|,
//   |err dV[j,d]| <= E sum_i P_ij |dO_id|.
// These bounds are added (extra) when the forward ran the fused kernels. The summation order of
// everything else differs from the GEMM path's only in fp32 (the fp32 part of the tolerance).
#define FLASH_TILE 64 // key tile of the fused forward (FA_TILE in cuda/flash_attention.cu)

static int flash_dh(int dh) { return dh == 16 || dh == 32 || dh == 64 || dh == 128; }
static const char *attn_name(int impl) { return nn_cuda_attention_impl_name(impl); }
static long flash_calls(int bwd) {
    long f = 0, b = 0;
    nn_cuda_flash_attention_stats(&f, &b);
    return bwd ? b : f;
}
// One attention call ran the engine it should: the fused kernels exactly when `impl` is flash and
// they support dh (tf32 / bf16 mode); not checked in the self-check (no fused kernels there).
static int check_engine(const char *what, const char *tag, int impl, int dh, long before, long after) {
    int ran = after > before, want = impl == NN_ATTN_FLASH && flash_dh(dh);
    if (!selfcheck)
        CHECK(ran == want, "%s %s: %s", what, tag,
              want ? "ran the flash kernels" : impl == NN_ATTN_FLASH ? "fell back to the GEMM path (dh not supported)"
                                                                     : "ran the GEMM path");
    return ran;
}

static void test_attention_prec(int B, int N, int H, int dh, size_t chunk, int prec, int fwd, int bwd) {
    covered("attention_save_floats"), covered("attention_forward"), covered("attention_backward");
    use_precision(prec);
    nn_cuda_set_attention_chunk(chunk);
    int D = H * dh, D3 = 3 * D;
    size_t n = (size_t)B * N * D3, no = (size_t)B * N * D;
    double eta = prec_eta(prec), rt = prec == NN_PREC_TF32 ? eta : 0.0, c = eta / sqrt(3.0);
    float scale = 1.0f / sqrtf((float)dh);
    char tag[160], name[256], eng[32];
    if (fwd == bwd) snprintf(eng, sizeof eng, "%s", attn_name(fwd));
    else snprintf(eng, sizeof eng, "fwd %s, bwd %s", attn_name(fwd), attn_name(bwd));
    snprintf(tag, sizeof tag, "B=%d N=%d H=%d dh=%d%s [%s %s, rounded inputs]", B, N, H, dh,
             chunk ? " (one head per chunk)" : "", nn_cuda_precision_name(prec), eng);
    Pair qkv = prand(n, -2, 2), o = pnew(no), go = prand(no, -1, 1), dq = prand(n, -9, 9);
    round_pair(qkv, prec), round_pair(go, prec);
    float *save_c = cpu_nn_alloc(cpu_attention_save_floats(B, N, H)), *save_g = nn_alloc(attention_save_floats(B, N, H));
    cpu_attention_forward(o.c, save_c, qkv.c, B, N, H, dh);
    nn_cuda_set_attention_impl(fwd);
    long f0 = flash_calls(0);
    attention_forward(o.g, save_g, qkv.g, B, N, H, dh);
    int fwd_flash = check_engine("attention_forward", tag, fwd, dh, f0, flash_calls(0));
    double E = fwd_flash ? ((N + FLASH_TILE - 1) / FLASH_TILE - 1) * (ldexp(1.0, -22) + ldexp(1.0, -24)) : 0.0;
    float *so = (float *)calloc(no, sizeof(float)), *sq = (float *)calloc(n, sizeof(float));
    float *xo = (float *)calloc(no, sizeof(float)), *xq = (float *)calloc(n, sizeof(float)); // extra (flash)
    if (!so || !sq || !xo || !xq) lola_die("out of host memory");
    float *dS = LOLA_NEW(float, (size_t)N * N);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) { // rows in parallel (all cores even for one (b, h) pair)
            const float *P = save_c + ((size_t)b * H + h) * N * N;
            const float *Q = qkv.c + (size_t)b * N * D3 + (size_t)h * dh, *Kk = Q + D, *V = Q + 2 * D;
            const float *gO = go.c + (size_t)b * N * D + (size_t)h * dh, *O = o.c + (size_t)b * N * D + (size_t)h * dh;
            float *sO = so + (size_t)b * N * D + (size_t)h * dh, *sQ = sq + (size_t)b * N * D3 + (size_t)h * dh;
            float *sK = sQ + D, *sV = sQ + 2 * D;
            float *xO = xo + (size_t)b * N * D + (size_t)h * dh, *xK = xq + (size_t)b * N * D3 + (size_t)h * dh + D;
            float *xV = xK + D;
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++) {
                double di = 0.0;
                for (int d = 0; d < dh; d++) di += (double)gO[(size_t)i * D + d] * O[(size_t)i * D + d];
                for (int j = 0; j < N; j++) {
                    double dp = 0.0;
                    for (int d = 0; d < dh; d++) dp += (double)gO[(size_t)i * D + d] * V[(size_t)j * D3 + d];
                    dS[(size_t)i * N + j] = (float)(P[(size_t)i * N + j] * (dp - di));
                }
            }
#pragma omp parallel for schedule(static)
            for (int i = 0; i < N; i++)
                for (int d = 0; d < dh; d++) {
                    double a = 0.0, e = 0.0, f = 0.0; // O[i,d], dQ[i,d] as query i; dV[i,d], dK[i,d] as key i
                    double g = 0.0, xa = 0.0, xf = 0.0, xg = 0.0;
                    for (int j = 0; j < N; j++) {
                        double p = P[(size_t)i * N + j], pt = P[(size_t)j * N + i];
                        double s = dS[(size_t)i * N + j], st = dS[(size_t)j * N + i];
                        double v = V[(size_t)j * D3 + d], kk = Kk[(size_t)j * D3 + d];
                        double gg = gO[(size_t)j * D + d], qq = Q[(size_t)j * D3 + d];
                        a += p * p * v * v;
                        e += s * s * kk * kk;
                        f += pt * pt * gg * gg;
                        g += st * st * qq * qq;
                        xa += p * fabs(v), xf += pt * fabs(gg), xg += fabs(st * qq);
                    }
                    sO[(size_t)i * D + d] = (float)(c * sqrt(a));
                    sQ[(size_t)i * D3 + d] = (float)(c * scale * sqrt(e));
                    sV[(size_t)i * D3 + d] = (float)(c * sqrt(f));
                    sK[(size_t)i * D3 + d] = (float)(c * scale * sqrt(g));
                    xO[(size_t)i * D + d] = (float)(2.0 * E * xa);
                    xV[(size_t)i * D3 + d] = (float)(E * xf);
                    xK[(size_t)i * D3 + d] = (float)(E * scale * xg);
                }
        }
    free(dS);
    snprintf(name, sizeof name, "attention_forward out %s", tag);
    double q = cmp_model_x(name, o, so, E > 0 ? xo : NULL, rt, TA, TR);
    check_engaged(name, q, prec, fwd_flash, no); // tf32: the fused kernels surely round P
    psync(o); // the CPU's O on the GPU too
    cpu_attention_backward(dq.c, go.c, qkv.c, o.c, save_c, B, N, H, dh);
    nn_cuda_set_attention_impl(bwd);
    long b0 = flash_calls(1);
    attention_backward(dq.g, go.g, qkv.g, o.g, save_g, B, N, H, dh);
    int bwd_flash = check_engine("attention_backward", tag, bwd, dh, b0, flash_calls(1));
    for (size_t k = 0; k < n; k++) // the dQ part of the rescaling term: E |dQ|
        if (k % D3 < (size_t)D) xq[k] = (float)(E * fabs(dq.c[k]));
    snprintf(name, sizeof name, "attention_backward dqkv %s", tag);
    q = cmp_model_x(name, dq, sq, E > 0 ? xq : NULL, rt, 2e-5, 2e-4);
    check_engaged(name, q, prec, bwd_flash, n);
    free(so), free(sq), free(xo), free(xq);
    cpu_nn_free(save_c);
    nn_free(save_g);
    pfree(qkv), pfree(o), pfree(go), pfree(dq);
    nn_cuda_set_attention_chunk(0);
    nn_cuda_set_attention_impl(NN_ATTN_GEMM);
    nn_cuda_set_precision(NN_PREC_FP32);
}

static void test_attention(int big) {
    test_attention_one(2, 77, 3, 16, 0);
    test_attention_one(1, 300, 2, 64, 0);
    test_attention_one(2, 256, 8, 128, 0);
    test_attention_one(2, 100, 4, 32, 100 * 100); // forces chunks of one head
    test_attention_one(1, 5, 1, 8, 0);
    if (big) test_attention_one(1, 1280, 8, 128, 0);
    int pc[][4] = {{2, 77, 3, 16}, {1, 300, 2, 64}, {2, 256, 8, 128}, {1, 5, 1, 8}};
    for (int k = 0; k < 4; k++) {
        test_attention_prec(pc[k][0], pc[k][1], pc[k][2], pc[k][3], 0, NN_PREC_BF16, NN_ATTN_GEMM, NN_ATTN_GEMM);
        test_attention_prec(pc[k][0], pc[k][1], pc[k][2], pc[k][3], 0, NN_PREC_TF32, NN_ATTN_GEMM, NN_ATTN_GEMM);
    }
    test_attention_prec(2, 100, 4, 32, 100 * 100, NN_PREC_BF16, NN_ATTN_GEMM, NN_ATTN_GEMM); // chunks of one head
}

// The fused kernels (LOLA_ATTENTION=flash; own section, so that a crash in them cannot hide the
// GEMM path's results): against the CPU in tf32 and bf16 with the model above, for N = 1, N not
// a multiple of the 64-row tile (77, 100, 300), one row past a tile (129), an exact multiple
// (256), several B and H, dh 16 / 32 / 64 / 128; dh = 8 must fall back to the GEMM path. Then
// forward and backward on different engines (the saved log-sum-exp means the same), fp32 mode
// unchanged by the switch, and bit-identical repeat runs.
static void test_flash_attention(int big) {
    int fc[][4] = {{1, 1, 2, 64},    {2, 77, 3, 16},    {3, 100, 4, 32}, {1, 300, 2, 64},
                   {2, 256, 8, 128}, {2, 129, 2, 128}, {1, 5, 1, 8}};
    for (int k = 0; k < (int)(sizeof fc / sizeof fc[0]); k++)
        for (int prec = NN_PREC_BF16; prec >= NN_PREC_TF32; prec--)
            test_attention_prec(fc[k][0], fc[k][1], fc[k][2], fc[k][3], 0, prec, NN_ATTN_FLASH, NN_ATTN_FLASH);
    test_attention_prec(1, 300, 2, 64, 0, NN_PREC_BF16, NN_ATTN_FLASH, NN_ATTN_GEMM);
    test_attention_prec(1, 300, 2, 64, 0, NN_PREC_BF16, NN_ATTN_GEMM, NN_ATTN_FLASH);
    test_attention_prec(2, 77, 3, 16, 0, NN_PREC_TF32, NN_ATTN_FLASH, NN_ATTN_GEMM);
    test_attention_prec(2, 77, 3, 16, 0, NN_PREC_TF32, NN_ATTN_GEMM, NN_ATTN_FLASH);
    if (big) {
        test_attention_prec(1, 1280, 4, 128, 0, NN_PREC_BF16, NN_ATTN_FLASH, NN_ATTN_FLASH);
        test_attention_prec(1, 1280, 4, 128, 0, NN_PREC_TF32, NN_ATTN_FLASH, NN_ATTN_FLASH);
    }

    int B = 2, N = 200, H = 4, dh = 64, D = H * dh;
    size_t n = (size_t)B * N * 3 * D, no = (size_t)B * N * D, ns = attention_save_floats(B, N, H);
    size_t tot = no + ns + n;
    Pair qkv = prand(n, -2, 2), gout = prand(no, -1, 1);
    float *o = nn_alloc(no), *save = nn_alloc(ns), *dq = nn_alloc(n);
    float *r1 = LOLA_NEW(float, tot), *r2 = LOLA_NEW(float, tot);
    // fp32: LOLA_ATTENTION=flash changes nothing (the parity reference stays the GEMM path)
    nn_cuda_set_precision(NN_PREC_FP32);
    long f0 = flash_calls(0), b0 = flash_calls(1);
    for (int rep = 0; rep < 2; rep++) {
        float *r = rep ? r2 : r1;
        nn_cuda_set_attention_impl(rep ? NN_ATTN_FLASH : NN_ATTN_GEMM);
        attention_forward(o, save, qkv.g, B, N, H, dh);
        attention_backward(dq, gout.g, qkv.g, o, save, B, N, H, dh);
        nn_to_host(r, o, no), nn_to_host(r + no, save, ns), nn_to_host(r + no + ns, dq, n);
    }
    CHECK(same_bits(r1, r2, tot) && flash_calls(0) == f0 && flash_calls(1) == b0,
          "fp32 attention with LOLA_ATTENTION=flash: the GEMM path, bit-identical to LOLA_ATTENTION=gemm");
    // repeat runs of the fused kernels: bit-identical out, lse and dqkv
    nn_cuda_set_attention_impl(NN_ATTN_FLASH);
    for (int prec = NN_PREC_TF32; prec <= NN_PREC_BF16; prec++) {
        use_precision(prec);
        f0 = flash_calls(0), b0 = flash_calls(1);
        for (int rep = 0; rep < 2; rep++) {
            float *r = rep ? r2 : r1;
            attention_forward(o, save, qkv.g, B, N, H, dh);
            attention_backward(dq, gout.g, qkv.g, o, save, B, N, H, dh);
            nn_to_host(r, o, no), nn_to_host(r + no, save, ns), nn_to_host(r + no + ns, dq, n);
        }
        if (!selfcheck)
            CHECK(flash_calls(0) - f0 == 2 && flash_calls(1) - b0 == 2, "flash attention [%s]: the fused kernels ran",
                  nn_cuda_precision_name(prec));
        CHECK(same_bits(r1, r2, tot), "flash attention forward+backward [%s] B=%d N=%d H=%d dh=%d: two runs bit-identical",
              nn_cuda_precision_name(prec), B, N, H, dh);
    }
    nn_cuda_set_attention_impl(NN_ATTN_GEMM);
    nn_cuda_set_precision(NN_PREC_FP32);
    free(r1), free(r2);
    nn_free(o), nn_free(save), nn_free(dq);
    pfree(qkv), pfree(gout);
}

static void test_sine(void) {
    covered("sine_encoding_forward");
    int n = 33, D = 256;
    Pair x = prand(n, -50, 50), y = pnew((size_t)n * D);
    x.c[0] = 0.0f, x.c[1] = 1.0f;
    psync(x);
    cpu_sine_encoding_forward(y.c, x.c, n, D, 1e3f), sine_encoding_forward(y.g, x.g, n, D, 1e3f);
    cmp("sine_encoding_forward n=33 D=256 omega=1e3", y, TA, TR);
    pfree(x), pfree(y);
}

static void test_rows_where(void) {
    covered("nn_rows_axpby"), covered("nn_where");
    int B = 3;
    size_t n = 1001, t = (size_t)B * n;
    Pair a = prand(B, -2, 2), c = prand(B, -2, 2), x = prand(t, -1, 1), y = prand(t, -1, 1), o = pnew(t);
    cpu_nn_rows_axpby(o.c, a.c, x.c, c.c, y.c, B, n), nn_rows_axpby(o.g, a.g, x.g, c.g, y.g, B, n);
    cmp("nn_rows_axpby a x + c y", o, 1e-6, 1e-6); // FMA contraction on the GPU
    cpu_nn_rows_axpby(o.c, a.c, x.c, NULL, NULL, B, n), nn_rows_axpby(o.g, a.g, x.g, NULL, NULL, B, n);
    cmp_exact("nn_rows_axpby a x (c, y NULL)", o);
    cpu_nn_rows_axpby(x.c, a.c, x.c, c.c, y.c, B, n), nn_rows_axpby(x.g, a.g, x.g, c.g, y.g, B, n);
    cmp("nn_rows_axpby out aliasing x", x, 1e-6, 1e-6);
    psync(x); // the same x on both sides for the exact nn_where checks (rows_axpby differs by an ulp)
    Pair m = pnew(t);
    for (size_t i = 0; i < t; i++) m.c[i] = rng_uniform(&R) < 0.4 ? 1.0f : 0.0f;
    psync(m);
    cpu_nn_where(o.c, m.c, x.c, y.c, t), nn_where(o.g, m.g, x.g, y.g, t);
    cmp_exact("nn_where with y", o);
    cpu_nn_where(o.c, m.c, x.c, NULL, t), nn_where(o.g, m.g, x.g, NULL, t);
    cmp_exact("nn_where y NULL", o);
    cpu_nn_where(y.c, m.c, x.c, y.c, t), nn_where(y.g, m.g, x.g, y.g, t);
    cmp_exact("nn_where out aliasing y", y);
    pfree(a), pfree(c), pfree(x), pfree(y), pfree(o), pfree(m);
}

// ---------------------------------------------------------------------------------------------
// Losses, optimizer

static void test_losses(void) {
    covered("mse_loss"), covered("mae_loss"), covered("vrmse_loss");
    size_t n = 100007;
    Pair p = prand(n, -1, 1), t = prand(n, -1, 1), d = pnew(n);
    t.c[5] = p.c[5]; // an exact zero difference (MAE subgradient 0)
    psync(t);
    double lc = cpu_mse_loss(d.c, p.c, t.c, n, 0.5f), lg = mse_loss(d.g, p.g, t.g, n, 0.5f);
    CHECK_CLOSE(lg, lc, 0.0, 1e-10, "mse_loss value %.12g vs %.12g", lg, lc);
    cmp("mse_loss dpred", d, 1e-6, 1e-6);
    lc = cpu_mae_loss(d.c, p.c, t.c, n, 2.0f), lg = mae_loss(d.g, p.g, t.g, n, 2.0f);
    CHECK_CLOSE(lg, lc, 0.0, 1e-10, "mae_loss value %.12g vs %.12g", lg, lc);
    cmp_exact("mae_loss dpred", d);
    CHECK_CLOSE(mse_loss(NULL, p.g, t.g, n, 1.0f), cpu_mse_loss(NULL, p.c, t.c, n, 1.0f), 0.0, 1e-10,
                "mse_loss without gradient");
    pfree(p), pfree(t), pfree(d);
    int B = 2, C = 3, HW = 500;
    size_t nv = (size_t)B * C * HW;
    p = prand(nv, -1, 1), t = prand(nv, -2, 2), d = pnew(nv);
    for (int i = 0; i < HW; i++) p.c[(size_t)4 * HW + i] = t.c[(size_t)4 * HW + i]; // row 4 exact: r = 0
    psync(p);
    lc = cpu_vrmse_loss(d.c, p.c, t.c, B, C, HW, 0.01f, 0.5f), lg = vrmse_loss(d.g, p.g, t.g, B, C, HW, 0.01f, 0.5f);
    CHECK_CLOSE(lg, lc, 0.0, 1e-9, "vrmse_loss value %.12g vs %.12g", lg, lc);
    cmp("vrmse_loss dpred (a row with zero error included)", d, TA, TR);
    CHECK_CLOSE(vrmse_loss(NULL, p.g, t.g, B, C, HW, 0.01f, 1.0f), lc, 0.0, 1e-9, "vrmse_loss without gradient");
    pfree(p), pfree(t), pfree(d);
}

static void test_adamw(void) {
    covered("adamw_update");
    size_t n = 100001;
    Pair p = prand(n, -1, 1), m = pnew(n), v = pnew(n), g = pnew(n);
    char name[96];
    for (int t = 1; t <= 3; t++) {
        for (size_t i = 0; i < n; i++) g.c[i] = urand(-1, 1) * (i % 7 == 0 ? 1e-3f : 1.0f);
        psync(g);
        cpu_adamw_update(p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        adamw_update(p.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        snprintf(name, sizeof name, "adamw_update p, step %d", t);
        cmp(name, p, 1e-6, 1e-6);
        snprintf(name, sizeof name, "adamw_update m, step %d", t);
        cmp(name, m, 1e-6, 1e-6);
        snprintf(name, sizeof name, "adamw_update v, step %d", t);
        cmp(name, v, 1e-6, 1e-6);
    }
    pfree(p), pfree(m), pfree(v), pfree(g);
}

// ---------------------------------------------------------------------------------------------
// Determinism: the same call twice gives the same bits (deterministic cuDNN algorithms).

static void test_determinism(void) {
    nn_cuda_set_deterministic(1);
    int B = 2, Cin = 32, Cout = 32, H = 64, W = 64, K = 3;
    size_t nx = (size_t)B * Cin * H * W, nw = (size_t)Cout * Cin * K * K;
    Pair x = prand(nx, -1, 1), w = prand(nw, -0.06f, 0.06f), go = prand(nx, -1, 1);
    float *dx = nn_alloc(nx), *dw = nn_alloc(nw), *db = nn_alloc(Cout);
    float *h1 = LOLA_NEW(float, nx), *h2 = LOLA_NEW(float, nx), *w1 = LOLA_NEW(float, nw), *w2 = LOLA_NEW(float, nw);
    for (int rep = 0; rep < 2; rep++) {
        nn_zero(dw, nw), nn_zero(db, Cout);
        conv2d_backward(dx, dw, db, go.g, x.g, w.g, B, Cin, Cout, H, W, K);
        nn_to_host(rep ? h2 : h1, dx, nx);
        nn_to_host(rep ? w2 : w1, dw, nw);
    }
    CHECK(same_bits(h1, h2, nx) && same_bits(w1, w2, nw), "deterministic conv2d_backward: two runs bit-identical");
    nn_cuda_set_deterministic(0);
    int N = 256, Hh = 4, dh = 64, D = Hh * dh;
    size_t n = (size_t)B * N * 3 * D, no = (size_t)B * N * D;
    Pair qkv = prand(n, -2, 2), gout = prand(no, -1, 1);
    float *o = nn_alloc(no), *save = nn_alloc(attention_save_floats(B, N, Hh)), *dq = nn_alloc(n);
    float *a1 = LOLA_NEW(float, n), *a2 = LOLA_NEW(float, n);
    for (int rep = 0; rep < 2; rep++) {
        attention_forward(o, save, qkv.g, B, N, Hh, dh);
        attention_backward(dq, gout.g, qkv.g, o, save, B, N, Hh, dh);
        nn_to_host(rep ? a2 : a1, dq, n);
    }
    CHECK(same_bits(a1, a2, n), "attention forward+backward: two runs bit-identical");
    use_precision(NN_PREC_BF16);
    for (int rep = 0; rep < 2; rep++) {
        attention_forward(o, save, qkv.g, B, N, Hh, dh);
        attention_backward(dq, gout.g, qkv.g, o, save, B, N, Hh, dh);
        nn_to_host(rep ? a2 : a1, dq, n);
    }
    CHECK(same_bits(a1, a2, n), "attention forward+backward [bf16]: two runs bit-identical");
    {   // linear through cuBLASLt with both epilogues, bf16 and tf32
        int M = 640, Kl = 256, Nl = 384;
        Pair lx = prand((size_t)M * Kl, -1, 1), lw = prand((size_t)Nl * Kl, -0.06f, 0.06f), lb = prand(Nl, -0.1f, 0.1f);
        Pair lg = prand((size_t)M * Nl, -1, 1);
        float *ly = nn_alloc((size_t)M * Nl), *ldx = nn_alloc((size_t)M * Kl), *ldw = nn_alloc((size_t)Nl * Kl);
        float *ldb = nn_alloc(Nl);
        size_t tot = (size_t)M * Nl + (size_t)M * Kl + (size_t)Nl * Kl + Nl;
        float *r1 = LOLA_NEW(float, tot), *r2 = LOLA_NEW(float, tot);
        for (int prec = NN_PREC_TF32; prec <= NN_PREC_BF16; prec++) {
            use_precision(prec);
            for (int rep = 0; rep < 2; rep++) {
                float *r = rep ? r2 : r1;
                nn_zero(ldw, (size_t)Nl * Kl), nn_zero(ldb, Nl);
                linear_forward(ly, lx.g, lw.g, lb.g, M, Kl, Nl);
                linear_backward(ldx, ldw, ldb, lg.g, lx.g, lw.g, M, Kl, Nl);
                nn_to_host(r, ly, (size_t)M * Nl), r += (size_t)M * Nl;
                nn_to_host(r, ldx, (size_t)M * Kl), r += (size_t)M * Kl;
                nn_to_host(r, ldw, (size_t)Nl * Kl), r += (size_t)Nl * Kl;
                nn_to_host(r, ldb, Nl);
            }
            CHECK(same_bits(r1, r2, tot), "linear forward+backward [%s]: two runs bit-identical",
                  nn_cuda_precision_name(prec));
        }
        free(r1), free(r2);
        nn_free(ly), nn_free(ldx), nn_free(ldw), nn_free(ldb);
        pfree(lx), pfree(lw), pfree(lb), pfree(lg);
    }
    nn_cuda_set_precision(NN_PREC_FP32);
    double s1 = nn_sum_squares(qkv.g, n), s2 = nn_sum_squares(qkv.g, n);
    CHECK(s1 == s2, "nn_sum_squares: two runs bit-identical");
    free(h1), free(h2), free(w1), free(w2), free(a1), free(a2);
    nn_free(dx), nn_free(dw), nn_free(db), nn_free(o), nn_free(save), nn_free(dq);
    pfree(x), pfree(w), pfree(go), pfree(qkv), pfree(gout);
}

// ---------------------------------------------------------------------------------------------
// bf16 weight cache (precision.cu): a cached bf16 weight must never outlive a write of its
// parameters, and a weight outside the parameters is never cached. Each step changes the weights
// through one writer and checks linear_forward against the CPU with the new values (a stale copy
// is off by O(1), far outside the bf16 model tolerance), and the cache counters.

static void test_bf16_cache(void) {
    covered("adamw_update"), covered("linear_forward");
    int M = 96, K = 80, N = 72;
    size_t nw = (size_t)N * K, np = nw + N + 7; // parameters: 3 floats, w, b, 4 floats (w misaligned)
    use_precision(NN_PREC_BF16);
    Pair par = prand(np, -0.1f, 0.1f), x = prand((size_t)M * K, -1, 1), y = pnew((size_t)M * N);
    Pair g = pnew(np), m = pnew(np), v = pnew(np), other = prand(nw, -0.1f, 0.1f);
    size_t ow = 3, ob = 3 + nw;
    long h0, m0, h1, m1;
    char name[160];
    float *x2 = squares(x.c, (size_t)M * K), *sig = LOLA_NEW(float, (size_t)M * N);
#define CACHE_STEP(label, expect_hit)                                                                                 \
    do {                                                                                                              \
        nn_cuda_bf16_cache_stats(&h0, &m0);                                                                           \
        linear_forward(y.g, x.g, par.g + ow, par.g + ob, M, K, N);                                                    \
        nn_cuda_bf16_cache_stats(&h1, &m1);                                                                           \
        cpu_linear_forward(y.c, x.c, par.c + ow, par.c + ob, M, K, N);                                                \
        float *w2 = squares(par.c + ow, nw);                                                                          \
        cpu_linear_forward(sig, x2, w2, NULL, M, K, N);                                                               \
        to_sigma(sig, (size_t)M * N, prec_eta(NN_PREC_BF16), 2, NULL);                                                \
        free(w2);                                                                                                     \
        snprintf(name, sizeof name, "bf16 weight cache: linear_forward %s", label);                                  \
        cmp_model(name, y, sig, 0.0, TA, TR);                                                                         \
        if (!selfcheck)                                                                                               \
            CHECK(h1 - h0 == (expect_hit) && m1 - m0 == !(expect_hit), "bf16 weight cache: %s: %s (hits +%ld, "       \
                  "casts +%ld)", label, (expect_hit) ? "served from the cache" : "cast again", h1 - h0, m1 - m0);    \
    } while (0)
    CACHE_STEP("before any adamw_update (not a known parameter)", 0);
    CACHE_STEP("again (still not cached)", 0);
    // adamw with zero gradients and no decay leaves p exactly as it is, and registers the range
    adamw_update(par.g, g.g, m.g, v.g, np, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    cpu_adamw_update(par.c, g.c, m.c, v.c, np, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    CACHE_STEP("after adamw registered the parameters (first cast)", 0);
    CACHE_STEP("unchanged parameters", 1);
    for (size_t i = 0; i < nw; i++) par.c[ow + i] = urand(-0.1f, 0.1f);
    nn_to_backend(par.g + ow, par.c + ow, nw);
    CACHE_STEP("after nn_to_backend of new weights", 0);
    CACHE_STEP("unchanged again", 1);
    nn_scale(par.g, -2.0f, np);
    cpu_nn_scale(par.c, -2.0f, np);
    CACHE_STEP("after nn_scale", 0);
    nn_axpy(par.g + ow, 0.5f, other.g, nw);
    cpu_nn_axpy(par.c + ow, 0.5f, other.c, nw);
    CACHE_STEP("after nn_axpy", 0);
    nn_copy(par.g + ow, other.g, nw);
    memcpy(par.c + ow, other.c, nw * sizeof(float));
    CACHE_STEP("after nn_copy", 0);
    nn_fill(par.g + ow + nw / 2, 0.03125f, nw / 4);
    cpu_nn_fill(par.c + ow + nw / 2, 0.03125f, nw / 4);
    CACHE_STEP("after nn_fill of a part", 0);
    nn_zero(par.g + ow + 5, 7);
    memset(par.c + ow + 5, 0, 7 * sizeof(float));
    CACHE_STEP("after nn_zero of a few", 0);
    for (size_t i = 0; i < np; i++) g.c[i] = urand(-1, 1);
    psync(g);
    adamw_update(par.g, g.g, m.g, v.g, np, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
    cpu_adamw_update(par.c, g.c, m.c, v.c, np, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 2);
    CACHE_STEP("after an adamw step", 0);
    CACHE_STEP("unchanged after the step", 1);
    nn_cuda_params_changed();
    CACHE_STEP("after nn_cuda_params_changed", 0);
    // a write elsewhere (an activation) keeps the copy
    nn_fill(y.g, 1.0f, y.n);
    CACHE_STEP("after a write outside the parameters", 1);
#undef CACHE_STEP
    // A weight outside the parameters, rewritten by an op that is not a parameter writer
    // (the ViT's theta^T scratch, rewritten per block by transpose_bcn): never cached.
    Pair src = prand(nw, -0.1f, 0.1f), wt = pnew(nw);
    for (int rep = 0; rep < 2; rep++) {
        if (rep) {
            for (size_t i = 0; i < nw; i++) src.c[i] = urand(-0.1f, 0.1f);
            psync(src);
        }
        cpu_transpose_bcn(wt.c, src.c, 1, K, N), transpose_bcn(wt.g, src.g, 1, K, N);
        cpu_linear_forward(y.c, x.c, wt.c, NULL, M, K, N), linear_forward(y.g, x.g, wt.g, NULL, M, K, N);
        float *w2 = squares(wt.c, nw);
        cpu_linear_forward(sig, x2, w2, NULL, M, K, N);
        to_sigma(sig, (size_t)M * N, prec_eta(NN_PREC_BF16), 2, NULL);
        free(w2);
        snprintf(name, sizeof name, "bf16 weight cache: a weight outside the parameters, rewritten by transpose_bcn (%d)",
                 rep);
        cmp_model(name, y, sig, 0.0, TA, TR);
    }
    // nn_free of the parameters drops their copies; a new buffer at the same address is not cached
    nn_free(par.g);
    par.g = nn_alloc(np);
    psync(par);
    nn_cuda_bf16_cache_stats(&h0, &m0);
    linear_forward(y.g, x.g, par.g + ow, par.g + ob, M, K, N);
    linear_forward(y.g, x.g, par.g + ow, par.g + ob, M, K, N);
    nn_cuda_bf16_cache_stats(&h1, &m1);
    cpu_linear_forward(y.c, x.c, par.c + ow, par.c + ob, M, K, N);
    float *w2 = squares(par.c + ow, nw);
    cpu_linear_forward(sig, x2, w2, NULL, M, K, N);
    to_sigma(sig, (size_t)M * N, prec_eta(NN_PREC_BF16), 2, NULL);
    free(w2);
    cmp_model("bf16 weight cache: after nn_free + nn_alloc of the parameters", y, sig, 0.0, TA, TR);
    if (!selfcheck) CHECK(h1 == h0, "bf16 weight cache: a freed parameter range is forgotten (hits +%ld)", h1 - h0);
    free(x2), free(sig);
    pfree(par), pfree(x), pfree(y), pfree(g), pfree(m), pfree(v), pfree(other), pfree(src), pfree(wt);
    nn_cuda_set_precision(NN_PREC_FP32);
}

// ---------------------------------------------------------------------------------------------
// PSGD-Kron ops (cuda/psgd.cu against src/cpu/psgd_ops.c). Data movement and the elementwise
// steps must match bit for bit (the CUDA kernels use the non-contracting _rn intrinsics in the
// CPU's operation order); GEMM, trsm and the float64 reductions within tolerances. The GEMM,
// trsm, permute, dense-update and lower-bound checks also test the GPU result against an
// independent host computation of nn.h's definition (double precision), so that in the
// self-check they validate the CPU reference as well. Shapes: every row-major transpose flag
// pair with padded leading dimensions, beta != 0 and K = 0; both trsm sides with sizes that are
// multiples of nothing; the (L, n, R) views of a conv weight (64, 32, 3, 3) on each axis, of a
// linear weight, L = 1, n = 1, R = 1, R around the kernels' thresholds, misaligned pointers.

// Pair of n floats, every element v.
static Pair pfill(size_t n, float v) {
    Pair p = pnew(n);
    for (size_t i = 0; i < n; i++) p.c[i] = v;
    psync(p);
    return p;
}

// got vs a double-precision reference: |got - ref| <= atol rms(ref) + rtol |ref|.
static int cmp_ref(const char *what, const float *got, const double *ref, size_t n, double atol, double rtol) {
    float *r = LOLA_NEW(float, n ? n : 1);
    for (size_t i = 0; i < n; i++) r[i] = (float)ref[i];
    int ok = cmp_arrays(what, got, r, n, atol, rtol);
    free(r);
    return ok;
}

// Bit-exact but for at most max_diff elements, each within max_ulps units in the last place of
// the CPU value (device libm vs glibc: see the callers). Prints how many differ.
static int cmp_nearly_exact(const char *what, Pair p, size_t max_diff, double max_ulps) {
    const float *g = gpu_of(p.g, p.n);
    size_t diff = 0, bad = 0, first = 0;
    double worst = 0.0;
    for (size_t i = 0; i < p.n; i++) {
        if (!memcmp(&g[i], &p.c[i], sizeof(float))) continue;
        diff++;
        double ulp = isfinite(p.c[i]) ? fmax(fabs((double)nextafterf(p.c[i], INFINITY) - p.c[i]), 1e-45) : 0.0;
        double u = ulp > 0 ? fabs((double)g[i] - p.c[i]) / ulp : INFINITY;
        if (!(u <= max_ulps)) {
            if (!bad) first = i;
            bad++;
        }
        if (u > worst) worst = u;
    }
    if (bad) printf("  %s: element %zu: gpu %.9g cpu %.9g\n", what, first, g[first], p.c[first]);
    CHECK(bad == 0 && diff <= max_diff, "%s  %zu of %zu elements differ from the CPU's bits (at most %zu allowed), "
          "by up to %.1f ulp (%.0f allowed)", what, diff, p.n, max_diff, worst, max_ulps);
    return bad == 0 && diff <= max_diff;
}

// --- nn_gemm ---

// A, B, C stored as nn.h describes, with leading dimensions padded by `pad`; C starts as random
// values (beta != 0) or NaN (beta = 0: BLAS does not read C), its padding as a sentinel that must
// survive. Checked against the CPU and, when small, against a double-precision triple loop.
static void gemm_case(int ta, int tb, int M, int N, int K, int pad, float alpha, float beta) {
    int ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
    int lda = (ca > 1 ? ca : 1) + pad, ldb = (cb > 1 ? cb : 1) + pad, ldc = (N > 1 ? N : 1) + pad;
    size_t na = (size_t)ra * lda, nb = (size_t)rb * ldb, nc = (size_t)M * ldc;
    Pair A = prand(na ? na : 1, -1, 1), B = prand(nb ? nb : 1, -1, 1), C = pnew(nc ? nc : 1);
    for (size_t i = 0; i < C.n; i++) C.c[i] = (int)(i % (size_t)ldc) >= N ? 12345.0f : beta != 0.0f ? urand(-1, 1) : NAN;
    psync(C);
    double *ref = LOLA_NEW(double, (size_t)M * N + 1);
    int small = (double)M * N * K <= 2e7;
    if (small)
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double s = 0.0;
                for (int k = 0; k < K; k++) {
                    double a = ta ? A.c[(size_t)k * lda + i] : A.c[(size_t)i * lda + k];
                    double b = tb ? B.c[(size_t)j * ldb + k] : B.c[(size_t)k * ldb + j];
                    s += a * b;
                }
                ref[(size_t)i * N + j] = alpha * s + (beta != 0.0f ? (double)beta * C.c[(size_t)i * ldc + j] : 0.0);
            }
    cpu_nn_gemm(ta, tb, M, N, K, alpha, A.c, lda, B.c, ldb, beta, C.c, ldc);
    nn_gemm(ta, tb, M, N, K, alpha, A.g, lda, B.g, ldb, beta, C.g, ldc);
    char name[200];
    snprintf(name, sizeof name, "nn_gemm ta=%d tb=%d M=%d N=%d K=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g%s", ta, tb, M,
             N, K, lda, ldb, ldc, alpha, beta, beta == 0.0f ? " (C was NaN)" : "");
    const float *g = gpu_of(C.g, C.n);
    float *blk = LOLA_NEW(float, (size_t)M * N + 1), *cblk = LOLA_NEW(float, (size_t)M * N + 1);
    size_t pad_bad = 0;
    for (int i = 0; i < M; i++) {
        memcpy(blk + (size_t)i * N, g + (size_t)i * ldc, (size_t)N * sizeof(float));
        memcpy(cblk + (size_t)i * N, C.c + (size_t)i * ldc, (size_t)N * sizeof(float));
        for (int j = N; j < ldc; j++) pad_bad += g[(size_t)i * ldc + j] != 12345.0f;
    }
    cmp_arrays(name, blk, cblk, (size_t)M * N, TA, TR);
    if (ldc > N) CHECK(pad_bad == 0, "%s: the padding of C is not written (%zu changed)", name, pad_bad);
    if (small) {
        snprintf(name, sizeof name, "nn_gemm ta=%d tb=%d M=%d N=%d K=%d beta=%g vs float64 definition", ta, tb, M, N, K,
                 beta);
        cmp_ref(name, blk, ref, (size_t)M * N, TA, TR);
    }
    free(blk), free(cblk);
    free(ref);
    pfree(A), pfree(B), pfree(C);
}

static void test_psgd_gemm(int big) {
    covered("nn_gemm");
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(ta, tb, 37, 29, 53, 3, 0.75f, 0.5f); // padded leading dimensions, beta != 0
            gemm_case(ta, tb, 37, 29, 53, 0, 1.0f, 0.0f);  // minimal leading dimensions, C NaN
            gemm_case(ta, tb, 13, 7, 0, 2, 1.0f, -0.5f);   // K = 0: C = beta C
            gemm_case(ta, tb, 1, 1, 1000, 1, 1.0f, 1.0f);  // a dot product accumulated into C
            gemm_case(ta, tb, 1, 300, 17, 5, 2.0f, 0.0f);  // one row
            gemm_case(ta, tb, 300, 1, 17, 0, 1.0f, 0.25f); // one column
        }
    gemm_case(0, 0, 13, 7, 0, 0, 1.0f, 0.0f); // K = 0, beta = 0: zeros over the NaN
    // PSGD shapes: conv weight (64, 32, 3, 3) on axis 0 is (1, 64, 288): Gram X X^T, mode product
    // Q X; a linear weight (512, 256) on axis 1 (R = 1): X^T X and X Q^T.
    gemm_case(0, 1, 64, 64, 288, 0, 1.0f, 0.0f);
    gemm_case(1, 0, 64, 64, 288, 0, 1.0f, 0.0f);
    gemm_case(0, 0, 64, 288, 64, 0, 1.0f, 0.0f);
    gemm_case(1, 0, 256, 256, 512, 0, 1.0f, 0.0f);
    gemm_case(0, 1, 512, 256, 256, 0, 1.0f, 0.0f);
    gemm_case(0, 0, 512, 512, 512, 0, 1.0f, 0.0f); // the dense factor update at n = 512
    if (big) gemm_case(0, 1, 1024, 1024, 4608, 0, 1.0f, 0.0f);
}

// --- nn_trsm_upper ---

// Q: n x n upper triangle, diagonal in [1, 1.1], off-diagonal uniform within +-0.3/sqrt(n) (the
// strict upper part then has a spectral norm of about 0.35, so ||Q^{-1}|| < 2: well conditioned);
// strict lower triangle NaN (nn.h: not read; reading it would spread NaN into the result).
static Pair tri_q(int n) {
    Pair q = pnew((size_t)n * n);
    float s = 0.3f / sqrtf((float)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            q.c[(size_t)i * n + j] = j < i ? NAN : j == i ? 1.0f + 0.1f * urand(0, 1) : urand(-s, s);
    psync(q);
    return q;
}

static void trsm_case(int n, int m, int left) {
    Pair Q = tri_q(n), X = prand((size_t)n * m, -1, 1);
    float *x0 = LOLA_NEW(float, X.n);
    memcpy(x0, X.c, X.n * sizeof(float));
    cpu_nn_trsm_upper(X.c, Q.c, n, m, left);
    nn_trsm_upper(X.g, Q.g, n, m, left);
    char name[160];
    const char *mode = nn_cuda_precision() == NN_PREC_FP32 ? "" : nn_cuda_precision() == NN_PREC_TF32 ? " [tf32]" : " [bf16]";
    snprintf(name, sizeof name, "nn_trsm_upper %s n=%d m=%d (Q's strict lower triangle NaN)%s",
             left ? "left  X := Q^-T X" : "right X := X Q^-1", n, m, mode);
    cmp(name, X, 2e-5, 2e-4);
    // residual of the GPU result: left Q^T Y = X0 (Y n x m), right Y Q = X0 (Y m x n), in double
    const float *y = gpu_of(X.g, X.n);
    double *res = LOLA_NEW(double, X.n);
    if (left)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < m; c++) {
                double s = 0.0;
                for (int k = 0; k <= i; k++) s += (double)Q.c[(size_t)k * n + i] * y[(size_t)k * m + c];
                res[(size_t)i * m + c] = s;
            }
    else
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++) {
                double s = 0.0;
                for (int k = 0; k <= j; k++) s += (double)y[(size_t)r * n + k] * Q.c[(size_t)k * n + j];
                res[(size_t)r * n + j] = s;
            }
    float *rf = LOLA_NEW(float, X.n);
    for (size_t i = 0; i < X.n; i++) rf[i] = (float)res[i];
    snprintf(name, sizeof name, "nn_trsm_upper %s n=%d m=%d: residual %s = X0%s", left ? "left" : "right", n, m,
             left ? "Q^T Y" : "Y Q", mode);
    cmp_arrays(name, rf, x0, X.n, 2e-5, 2e-4);
    free(rf), free(res), free(x0);
    pfree(Q), pfree(X);
}

static void test_psgd_trsm(int big) {
    covered("nn_trsm_upper");
    int cases[][2] = {{1, 1}, {1, 17}, {7, 1}, {37, 45}, {131, 333}, {64, 288}, {3, 6144}, {509, 100}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int left = 1; left >= 0; left--) trsm_case(cases[c][0], cases[c][1], left);
    if (big) trsm_case(1024, 2048, 1);
}

// --- tensor-axis helpers ---

typedef struct {
    size_t L;
    int n;
    size_t R;
    int off; // pointer offset in floats (1: misaligned, the scalar paths)
} AxisShape;

// The (L, n, R) views of the PSGD-realistic tensors, and shapes around the kernels' thresholds
// (permute: tiled for R <= 64, row copies above, float4 when R % 4 == 0 and aligned; scale and
// sum of squares: row kernels for R >= 32).
static const AxisShape axis_shapes[] = {
    {1, 64, 288, 0},   {64, 32, 9, 0},   {2048, 3, 3, 0}, {6144, 3, 1, 0}, // conv weight (64, 32, 3, 3), axes 0..3
    {1, 512, 256, 0},  {512, 256, 1, 0},                                    // linear weight (512, 256), axes 0, 1
    {20001, 7, 1, 0},  {5, 1, 7, 0},     {1, 9, 5, 0},    {1, 1, 1, 0},    // R = 1 with a long L; n = 1; L = 1
    {50, 9, 64, 0},    {33, 5, 65, 0},   {17, 19, 33, 0}, {31, 7, 31, 0},  // around R = 32 and R = 64
    {6, 5, 100, 1},    {3, 4, 10000, 0}, {3, 4, 10000, 1},                 // row copies: scalar, float4, misaligned
    {100000, 3, 3, 0}, {40, 70, 2, 1},                                     // long L, tiled; misaligned tiles
};
#define N_AXIS_SHAPES ((int)(sizeof axis_shapes / sizeof axis_shapes[0]))

static void test_psgd_axis(int big) {
    (void)big;
    covered("nn_axis_permute"), covered("nn_axis_scale"), covered("nn_axis_sum_squares");
    char name[200];
    for (int s = 0; s < N_AXIS_SHAPES; s++) {
        AxisShape a = axis_shapes[s];
        size_t tot = a.L * (size_t)a.n * a.R, o = (size_t)a.off;
        Pair src = prand(tot + o + 3, -2, 2), dst = pfill(tot + o + 3, -777.0f), back = pfill(tot + o + 3, -555.0f);
        cpu_nn_axis_permute(dst.c + o, src.c + o, a.L, a.n, a.R, 1);
        nn_axis_permute(dst.g + o, src.g + o, a.L, a.n, a.R, 1);
        snprintf(name, sizeof name, "nn_axis_permute to_front (L=%zu, n=%d, R=%zu)%s", a.L, a.n, a.R,
                 a.off ? " misaligned" : "");
        cmp_exact(name, dst); // the guard elements after the tensor included
        const float *g = gpu_of(dst.g, dst.n);
        size_t wrong = 0;
        for (size_t l = 0; l < a.L; l++)
            for (int i = 0; i < a.n; i++)
                for (size_t r = 0; r < a.R; r++)
                    wrong += memcmp(&g[o + ((size_t)i * a.L + l) * a.R + r], &src.c[o + (l * a.n + i) * a.R + r], 4) != 0;
        snprintf(name, sizeof name, "nn_axis_permute to_front (L=%zu, n=%d, R=%zu): dst[i, l, r] = src[l, i, r]", a.L,
                 a.n, a.R);
        CHECK(wrong == 0, "%s (%zu wrong)", name, wrong);
        cpu_nn_axis_permute(back.c + o, dst.c + o, a.L, a.n, a.R, 0);
        nn_axis_permute(back.g + o, dst.g + o, a.L, a.n, a.R, 0);
        snprintf(name, sizeof name, "nn_axis_permute back (L=%zu, n=%d, R=%zu)", a.L, a.n, a.R);
        cmp_exact(name, back);
        g = gpu_of(back.g, back.n);
        CHECK(same_bits(g + o, src.c + o, tot), "nn_axis_permute (L=%zu, n=%d, R=%zu): the round trip gives the source",
              a.L, a.n, a.R);
        // scale: multiply, then divide (d with both signs, away from 0)
        Pair d = pnew((size_t)a.n);
        for (int i = 0; i < a.n; i++) d.c[i] = (i % 2 ? -1.0f : 1.0f) * urand(0.5f, 2.0f);
        psync(d);
        for (int divide = 0; divide < 2; divide++) {
            cpu_nn_axis_scale(src.c + o, d.c, a.L, a.n, a.R, divide);
            nn_axis_scale(src.g + o, d.g, a.L, a.n, a.R, divide);
            snprintf(name, sizeof name, "nn_axis_scale %s (L=%zu, n=%d, R=%zu)%s", divide ? "/= d" : "*= d", a.L, a.n,
                     a.R, a.off ? " misaligned" : "");
            cmp_exact(name, src);
        }
        Pair gq = pfill((size_t)a.n, -1.0f);
        cpu_nn_axis_sum_squares(gq.c, src.c + o, a.L, a.n, a.R);
        nn_axis_sum_squares(gq.g, src.g + o, a.L, a.n, a.R);
        snprintf(name, sizeof name, "nn_axis_sum_squares (L=%zu, n=%d, R=%zu) float64 sums", a.L, a.n, a.R);
        cmp(name, gq, 0.0, 1e-6);
        pfree(src), pfree(dst), pfree(back), pfree(d), pfree(gq);
    }
    // sum of squares with its float64 partials over chunks of L (both kernels), and L = 0
    AxisShape more[] = {{300, 3000, 1, 0}, {4, 3, 100000, 0}, {1, 5000, 1, 0}, {700, 2, 40, 0}};
    for (int s = 0; s < 4; s++) {
        AxisShape a = more[s];
        size_t tot = a.L * (size_t)a.n * a.R;
        Pair x = prand(tot, -3, 3), gq = pfill((size_t)a.n, -1.0f);
        cpu_nn_axis_sum_squares(gq.c, x.c, a.L, a.n, a.R);
        nn_axis_sum_squares(gq.g, x.g, a.L, a.n, a.R);
        snprintf(name, sizeof name, "nn_axis_sum_squares (L=%zu, n=%d, R=%zu) float64 sums", a.L, a.n, a.R);
        cmp(name, gq, 0.0, 1e-6);
        pfree(x), pfree(gq);
    }
    Pair gz = pfill(5, -1.0f), xz = pnew(1);
    cpu_nn_axis_sum_squares(gz.c, xz.c, 0, 5, 3), nn_axis_sum_squares(gz.g, xz.g, 0, 5, 3);
    cmp_exact("nn_axis_sum_squares with L = 0: zeros", gz);
    pfree(gz), pfree(xz);
}

// --- nn_max_abs ---

static void test_psgd_max_abs(void) {
    covered("nn_max_abs");
    size_t n = 100003;
    Pair x = prand(n, -3, 3);
    x.c[77777] = -7.5f;
    psync(x);
    float c = cpu_nn_max_abs(x.c, n), g = nn_max_abs(x.g, n);
    CHECK(c == 7.5f && g == c, "nn_max_abs = |the most negative element| (gpu %.9g, cpu %.9g)", g, c);
    g = nn_max_abs(x.g + 1, n - 1), c = cpu_nn_max_abs(x.c + 1, n - 1);
    CHECK(g == c, "nn_max_abs misaligned start (gpu %.9g, cpu %.9g)", g, c);
    g = nn_max_abs(x.g + 5, 1), c = cpu_nn_max_abs(x.c + 5, 1);
    CHECK(g == c && g == fabsf(x.c[5]), "nn_max_abs n = 1 (gpu %.9g, cpu %.9g)", g, c);
    CHECK(nn_max_abs(x.g, 0) == 0.0f && cpu_nn_max_abs(x.c, 0) == 0.0f, "nn_max_abs n = 0 is 0");
    x.c[n - 1] = -INFINITY;
    psync(x);
    g = nn_max_abs(x.g, n), c = cpu_nn_max_abs(x.c, n);
    CHECK(g == INFINITY && c == INFINITY, "nn_max_abs with -Inf (gpu %g, cpu %g)", g, c);
    x.c[12] = NAN, x.c[n - 1] = 1.0f;
    psync(x);
    g = nn_max_abs(x.g, n), c = cpu_nn_max_abs(x.c, n);
    CHECK(isnan(g) && isnan(c), "nn_max_abs propagates a NaN (gpu %g, cpu %g)", g, c);
    x.c[12] = 0.0f, x.c[n - 2] = NAN; // in the last block, after the maximum
    psync(x);
    g = nn_max_abs(x.g, n);
    CHECK(isnan(g), "nn_max_abs propagates a NaN near the end (gpu %g)", g);
    Pair z = pnew(1000);
    CHECK(nn_max_abs(z.g, 1000) == 0.0f, "nn_max_abs of zeros is 0");
    pfree(x), pfree(z);
}

// --- elementwise steps ---

static void test_psgd_elementwise(void) {
    covered("psgd_momentum"), covered("psgd_noise"), covered("psgd_clip_update"), covered("psgd_precond_terms");
    covered("psgd_diag_update"), covered("psgd_square");
    size_t n = 100003;
    char name[160];
    float ws[] = {0.1f, 0.7f, 0.5f, 0.0f, 1.0f}; // both torch.lerp forms and the ends
    for (int off = 0; off < 2; off++) {
        size_t m = n - off;
        // magnitudes 1 and 1e-3 mixed: g - m is then often inexact, so that the two forms of
        // torch.lerp round differently (w = 0.5 shows which one ran)
        Pair mo = prand(n, -1, 1), g = prand(n, -1, 1);
        for (size_t i = 0; i < n; i++) mo.c[i] *= i % 3 == 0 ? 1e-3f : 1.0f, g.c[i] *= i % 5 == 0 ? 1e-3f : 1.0f;
        psync(mo), psync(g);
        for (int k = 0; k < 5; k++) {
            cpu_psgd_momentum(mo.c + off, g.c + off, m, ws[k]);
            psgd_momentum(mo.g + off, g.g + off, m, ws[k]);
            snprintf(name, sizeof name, "psgd_momentum w=%.2f (offset %d)", ws[k], off);
            cmp_exact(name, mo);
        }
        CHECK(same_bits(gpu_of(mo.g + off, m), g.c + off, m), "psgd_momentum with w = 1 gives g (offset %d)", off);
        Pair t1 = prand(n, -1, 1), t2 = prand(n, 0, 2);
        cpu_psgd_precond_terms(t1.c + off, t2.c + off, m, 0.1f);
        psgd_precond_terms(t1.g + off, t2.g + off, m, 0.1f);
        snprintf(name, sizeof name, "psgd_precond_terms t1 (offset %d)", off);
        cmp_exact(name, t1);
        snprintf(name, sizeof name, "psgd_precond_terms t2 (offset %d)", off);
        cmp_exact(name, t2);
        Pair q = prand(n, 0.5f, 2.0f);
        cpu_psgd_diag_update(q.c + off, t1.c + off, m, 3.7f);
        psgd_diag_update(q.g + off, t1.g + off, m, 3.7f);
        snprintf(name, sizeof name, "psgd_diag_update (offset %d)", off);
        cmp_exact(name, q);
        Pair sq = pnew(n);
        cpu_psgd_square(sq.c + off, q.c + off, m), psgd_square(sq.g + off, q.g + off, m);
        snprintf(name, sizeof name, "psgd_square (offset %d)", off);
        cmp_exact(name, sq);
        cpu_psgd_square(q.c + off, q.c + off, m), psgd_square(q.g + off, q.g + off, m);
        snprintf(name, sizeof name, "psgd_square in place (offset %d)", off);
        cmp_exact(name, q);
        // noise: rng_hash_normal's double log/cos on the device vs glibc can move a float result
        // across a rounding boundary in rare elements (rng.h; as nn_randn's check): <= n/1e5 + 1
        // elements, by at most 2 ulp of the result.
        Pair u = prand(n, -1, 1), a = pnew(n), b = pnew(n);
        uint64_t sa = 0x1234567ull + (uint64_t)off, sb = 0x89abcdefull;
        cpu_psgd_noise(a.c + off, b.c + off, u.c + off, m, 1e-3f, sa, sb);
        psgd_noise(a.g + off, b.g + off, u.g + off, m, 1e-3f, sa, sb);
        snprintf(name, sizeof name, "psgd_noise a = u + eps z1 (offset %d)", off);
        cmp_nearly_exact(name, a, n / 100000 + 1, 2.0);
        snprintf(name, sizeof name, "psgd_noise b = z2 (offset %d)", off);
        cmp_nearly_exact(name, b, n / 100000 + 1, 2.0);
        Pair z = pnew(n);
        cpu_nn_randn(z.c, n, sb);
        CHECK(same_bits(b.c + off, z.c, m), "psgd_noise b is nn_randn's stream of seed_b (CPU)");
        // clip + update: tanhf / log1pf of the device (CUDA: <= 2 ulp) vs glibc: a few ulps
        Pair x = prand(n, -20, 20), p = prand(n, -1, 1);
        x.c[off + 0] = 0.0f, x.c[off + 1] = -0.0f, x.c[off + 2] = 1e-30f, x.c[off + 3] = -1e30f, x.c[off + 4] = 3e38f;
        x.c[off + 5] = 1e-3f, x.c[off + 6] = -2.9f, x.c[off + 7] = 2.5f, x.c[off + 8] = NAN;
        psync(x);
        cpu_psgd_clip_update(p.c + off, x.c + off, m, 1.0f - 1e-4f, 1e-3f);
        psgd_clip_update(p.g + off, x.g + off, m, 1.0f - 1e-4f, 1e-3f);
        snprintf(name, sizeof name, "psgd_clip_update clipped x (offset %d)", off);
        cmp(name, x, 1e-7, 2e-6);
        snprintf(name, sizeof name, "psgd_clip_update p (offset %d)", off);
        cmp(name, p, 1e-7, 1e-6);
        const float *gx = gpu_of(x.g, n);
        size_t diff = 0, out = 0;
        for (size_t i = 0; i < n; i++) {
            diff += memcmp(&gx[i], &x.c[i], 4) != 0;
            out += i >= (size_t)off && !(x.c[i] >= -2.0f && x.c[i] <= 2.0f) && !isnan(x.c[i]);
        }
        printf("  # psgd_clip_update: %zu of %zu clipped values differ from the CPU's bits (offset %d)\n", diff, n, off);
        CHECK(out == 0 && isnan(x.c[off + 8]) && x.c[off + 3] == -2.0f && x.c[off + 4] == 2.0f && x.c[off] == 0.0f,
              "psgd_clip_update: values in [-2, 2], +-huge -> +-2, 0 -> 0, NaN stays NaN (CPU)");
        pfree(mo), pfree(g), pfree(t1), pfree(t2), pfree(q), pfree(sq), pfree(u), pfree(a), pfree(b), pfree(z);
        pfree(x), pfree(p);
    }
}

// --- psgd_clip_update registers parameters for the bf16 weight cache (precision.cu) ---

// 300 adjacent "tensors" of 37 floats in one buffer, each updated by its own psgd_clip_update (as
// PSGD does per parameter tensor); a linear weight spans 26 of them. The ranges merge, so the
// weight is cached (a hit on its second use), and any further update invalidates the copy.
static void test_psgd_bf16_cache(void) {
    covered("psgd_clip_update"), covered("linear_forward");
    int M = 48, K = 40, N = 24, nt = 300, tl = 37;
    size_t np = (size_t)nt * tl, nw = (size_t)N * K, ow = (size_t)tl * 50 + 3;
    use_precision(NN_PREC_BF16);
    Pair par = prand(np, -0.1f, 0.1f), upd = prand(np, -1, 1), x = prand((size_t)M * K, -1, 1), y = pnew((size_t)M * N);
    float *x2 = squares(x.c, (size_t)M * K), *sig = LOLA_NEW(float, (size_t)M * N);
    long h0, m0, h1, m1;
    char name[200];
#define PSGD_CACHE_STEP(label, expect_hit)                                                                            \
    do {                                                                                                              \
        nn_cuda_bf16_cache_stats(&h0, &m0);                                                                           \
        linear_forward(y.g, x.g, par.g + ow, NULL, M, K, N);                                                          \
        nn_cuda_bf16_cache_stats(&h1, &m1);                                                                           \
        cpu_linear_forward(y.c, x.c, par.c + ow, NULL, M, K, N);                                                      \
        float *w2 = squares(par.c + ow, nw);                                                                          \
        cpu_linear_forward(sig, x2, w2, NULL, M, K, N);                                                               \
        to_sigma(sig, (size_t)M * N, prec_eta(NN_PREC_BF16), 2, NULL);                                                \
        free(w2);                                                                                                     \
        snprintf(name, sizeof name, "bf16 weight cache + psgd_clip_update: linear_forward %s", label);               \
        cmp_model(name, y, sig, 0.0, TA, TR);                                                                         \
        if (!selfcheck)                                                                                               \
            CHECK(h1 - h0 == (expect_hit) && m1 - m0 == !(expect_hit), "bf16 weight cache + psgd_clip_update: %s: %s " \
                  "(hits +%ld, casts +%ld)", label, (expect_hit) ? "served from the cache" : "cast again", h1 - h0,  \
                  m1 - m0);                                                                                           \
    } while (0)
    for (int t = 0; t < nt; t++) {
        size_t o = (size_t)t * tl;
        cpu_psgd_clip_update(par.c + o, upd.c + o, (size_t)tl, 1.0f, 1e-2f);
        psgd_clip_update(par.g + o, upd.g + o, (size_t)tl, 1.0f, 1e-2f);
    }
    PSGD_CACHE_STEP("after 300 per-tensor updates (first cast)", 0);
    PSGD_CACHE_STEP("unchanged (one merged parameter range)", 1);
    cpu_psgd_clip_update(par.c + (size_t)(nt - 1) * tl, upd.c, (size_t)tl, 1.0f, 1e-2f);
    psgd_clip_update(par.g + (size_t)(nt - 1) * tl, upd.g, (size_t)tl, 1.0f, 1e-2f);
    PSGD_CACHE_STEP("after an update of another tensor", 0);
    cpu_psgd_clip_update(par.c + ow + 100, upd.c + 7, (size_t)tl, 0.5f, 1e-1f);
    psgd_clip_update(par.g + ow + 100, upd.g + 7, (size_t)tl, 0.5f, 1e-1f);
    PSGD_CACHE_STEP("after an update inside the weight", 0);
    PSGD_CACHE_STEP("unchanged again", 1);
#undef PSGD_CACHE_STEP
    free(x2), free(sig);
    pfree(par), pfree(upd), pfree(x), pfree(y);
    nn_cuda_set_precision(NN_PREC_FP32);
}

// --- psgd_dense_update ---

// --big adds n = 4096, the largest dense factor (precondition_size): against the CPU op only (the
// O(n^3) float64 loop would take minutes there).
static void test_psgd_dense_update(int big) {
    covered("psgd_dense_update");
    int ns[] = {1, 5, 64, 130, 512, 4096};
    char name[160];
    for (int c = 0; c < (big ? 6 : 5); c++) {
        int n = ns[c];
        int with_ref = n <= 1024;
        size_t nn = (size_t)n * n;
        Pair Q = tri_q(n), T1 = prand(nn, -1, 1), W = pnew(nn);
        for (size_t k = 0; k < nn; k++)
            if (isnan(Q.c[k])) Q.c[k] = 0.0f; // a real factor: zero strict lower triangle
        psync(Q);
        float den = 3.7f;
        double *ref = with_ref ? LOLA_NEW(double, nn) : NULL;
        for (int i = 0; with_ref && i < n; i++)
            for (int j = 0; j < n; j++) {
                double s = 0.0;
                for (int k = i; k <= j; k++) s += (double)(T1.c[(size_t)i * n + k] / den) * Q.c[(size_t)k * n + j];
                ref[(size_t)i * n + j] = j < i ? 0.0 : Q.c[(size_t)i * n + j] - s;
            }
        cpu_psgd_dense_update(Q.c, T1.c, W.c, n, den);
        psgd_dense_update(Q.g, T1.g, W.g, n, den);
        snprintf(name, sizeof name, "psgd_dense_update n=%d: T1 = triu(T1 / den)", n);
        cmp_exact(name, T1);
        snprintf(name, sizeof name, "psgd_dense_update n=%d: Q", n);
        cmp(name, Q, TA, TR);
        const float *g = gpu_of(Q.g, nn);
        size_t low = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) low += g[(size_t)i * n + j] != 0.0f;
        CHECK(low == 0, "psgd_dense_update n=%d: the strict lower triangle of Q stays 0 (%zu written)", n, low);
        if (with_ref) {
            snprintf(name, sizeof name, "psgd_dense_update n=%d: Q vs Q - triu(T1/den) Q in float64", n);
            cmp_ref(name, g, ref, nn, TA, TR);
            free(ref);
        }
        pfree(Q), pfree(T1), pfree(W);
    }
}

// --- psgd_norm_lower_bound ---

// A symmetric positive semi-definite (G G^T / n, G n x n uniform): the shape of PSGD's T1 + T2.
static void lower_bound_case(const char *label, Pair A, int n, double expect) {
    float mx = cpu_nn_max_abs(A.c, A.n);
    double fro = 0.0, maxcol = 0.0;
    for (int j = 0; j < n; j++) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += (double)A.c[(size_t)i * n + j] * A.c[(size_t)i * n + j];
        fro += s;
        if (s > maxcol) maxcol = s;
    }
    fro = sqrt(fro), maxcol = sqrt(maxcol);
    Pair w = pfill(3 * (size_t)n, -1.0f);
    float c = cpu_psgd_norm_lower_bound(A.c, w.c, n, mx), g = psgd_norm_lower_bound(A.g, w.g, n, mx);
    char name[200];
    snprintf(name, sizeof name, "psgd_norm_lower_bound %s n=%d: A scaled by 1/max_abs in place", label, n);
    cmp_exact(name, A);
    CHECK_CLOSE(g, c, 0.0, 1e-5, "psgd_norm_lower_bound %s n=%d: %.9g (cpu %.9g)", label, n, g, c);
    // For a symmetric A and c = A e_j: ||A^2 c|| / ||A c|| >= ||A c|| / ||c|| >= ||c|| (Cauchy-Schwarz
    // twice), so max column norm <= result <= ||A||_2 <= ||A||_F.
    CHECK(g >= maxcol * (1 - 1e-5) && g <= fro * (1 + 1e-5),
          "psgd_norm_lower_bound %s n=%d: max column norm %.6g <= %.6g <= Frobenius norm %.6g", label, n, maxcol, g, fro);
    if (expect > 0)
        CHECK_CLOSE(g, expect, 0.0, 1e-5, "psgd_norm_lower_bound %s n=%d: %.9g = %.9g (the first maximal column)", label,
                    n, g, expect);
    pfree(w);
}

static void test_psgd_lower_bound(int big) {
    covered("psgd_norm_lower_bound");
    int ns[] = {1, 3, 64, 257, 512, 4096}; // --big: 4096, the largest dense factor
    for (int c = 0; c < (big ? 6 : 5); c++) {
        int n = ns[c];
        size_t nn = (size_t)n * n;
        Pair G = prand(nn, -1, 1), A = pnew(nn);
        cpu_nn_gemm(0, 1, n, n, n, 1.0f / n, G.c, n, G.c, n, 0.0f, A.c, n);
        psync(A);
        lower_bound_case("G G^T/n", A, n, 0.0);
        pfree(G), pfree(A);
    }
    {   // not symmetric (PSGD only passes symmetric matrices, but nn.h's formula is defined for any
        // A; this tells c^T A from A c and A y from A^T y): only compared with the CPU
        int n = 96;
        Pair A = prand((size_t)n * n, -1, 1), w = pnew(3 * (size_t)n);
        float mx = cpu_nn_max_abs(A.c, A.n);
        float c = cpu_psgd_norm_lower_bound(A.c, w.c, n, mx), g = psgd_norm_lower_bound(A.g, w.g, n, mx);
        CHECK_CLOSE(g, c, 0.0, 1e-5, "psgd_norm_lower_bound not symmetric n=%d: %.9g (cpu %.9g)", n, g, c);
        pfree(A), pfree(w);
    }
    // Ties: two 2 x 2 blocks with equal column norms (exact: integer entries), U = [[2, 2], [2, 2]]
    // (spectral norm 4; starting from either of its columns the result is 4) and
    // V = [[2, 2], [2, -2]] (starting from its first column: x = (2, 2), y = x^T V = (8, 0),
    // A y / 8 = (2, 2): the result is 2 sqrt 2). The block at the smaller index must win: placed
    // in both orders, in one warp of the CUDA argmax block (5 / 20), in different warps (5 / 1060)
    // and in one thread (40 / 1064, 1024 apart).
    int n = 1100, pos[6][2] = {{5, 20}, {20, 5}, {5, 1060}, {1060, 5}, {1064, 40}, {40, 1064}};
    for (int t = 0; t < 6; t++) {
        Pair A = pnew((size_t)n * n);
        int u = pos[t][0], v = pos[t][1];
        float U[4] = {2, 2, 2, 2}, V[4] = {2, 2, 2, -2};
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                A.c[(size_t)(u + i) * n + u + j] = U[i * 2 + j];
                A.c[(size_t)(v + i) * n + v + j] = V[i * 2 + j];
            }
        A.c[(size_t)300 * n + 300] = 1.0f; // smaller columns elsewhere
        A.c[(size_t)700 * n + 701] = A.c[(size_t)701 * n + 700] = -1.5f;
        psync(A);
        char label[64];
        snprintf(label, sizeof label, "ties, U at %d, V at %d", u, v);
        lower_bound_case(label, A, n, u < v ? 4.0 : 2.0 * sqrt(2.0));
        pfree(A);
    }
}

// --- precision modes (nn.h): nn_gemm and psgd_dense_update's product use TF32 products in the
// tf32 and bf16 modes (never bf16); the triangular solve and the lower bound stay fp32 there ---

// nn_gemm in mode `prec` against the TF32 rounding model (see "Reduced precision" above: 2 rounded
// operands per product; truncation allowed for, rt = eta): in bf16 mode too, where bf16 products
// (4x the error) would not fit. Then with inputs pre-rounded to TF32: fp32 order.
static void gemm_prec_case(int ta, int tb, int M, int N, int K, int prec, int engaged) {
    int lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * N;
    double eta = prec_eta(NN_PREC_TF32);
    Pair A = prand(na, -1, 1), B = prand(nb, -1, 1), C = prand(nc, -1, 1);
    float *a2 = squares(A.c, na), *b2 = squares(B.c, nb), *sig = LOLA_NEW(float, nc);
    cpu_nn_gemm(ta, tb, M, N, K, 1.0f, a2, lda, b2, ldb, 0.0f, sig, N);
    to_sigma(sig, nc, eta, 2, NULL);
    char name[200];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) round_pair(A, NN_PREC_TF32), round_pair(B, NN_PREC_TF32);
        cpu_nn_gemm(ta, tb, M, N, K, 1.0f, A.c, lda, B.c, ldb, 0.5f, C.c, N);
        nn_gemm(ta, tb, M, N, K, 1.0f, A.g, lda, B.g, ldb, 0.5f, C.g, N);
        snprintf(name, sizeof name, "nn_gemm [%s: TF32 products] ta=%d tb=%d M=%d N=%d K=%d beta=0.5 %s",
                 nn_cuda_precision_name(prec), ta, tb, M, N, K, pass ? "exact (TF32-rounded inputs)" : "model");
        double q = cmp_model(name, C, pass ? NULL : sig, pass ? 0.0 : eta, TA, TR);
        if (!pass) check_engaged(name, q, NN_PREC_TF32, engaged, nc);
        psync(C); // the same C for both backends in the next pass
    }
    free(a2), free(b2), free(sig);
    pfree(A), pfree(B), pfree(C);
}

static void test_psgd_precision(void) {
    covered("nn_gemm"), covered("nn_trsm_upper"), covered("psgd_dense_update"), covered("psgd_norm_lower_bound");
    int precs[2] = {NN_PREC_TF32, NN_PREC_BF16};
    for (int k = 0; k < 2; k++) {
        if (!use_precision(precs[k]) && !selfcheck) continue;
        gemm_prec_case(0, 1, 64, 64, 288, precs[k], 0);   // Gram of a conv weight's axis 0
        gemm_prec_case(1, 0, 256, 256, 512, precs[k], 0); // X^T X (R = 1)
        gemm_prec_case(0, 0, 512, 512, 512, precs[k], 1); // mode product / Q^T Q at n = 512
        gemm_prec_case(1, 1, 37, 29, 53, precs[k], 0);
        // fp32 tolerances: TF32 here would be ~100x outside them
        trsm_case(131, 333, 1);
        trsm_case(131, 333, 0);
        int n = 257;
        size_t nn = (size_t)n * n;
        Pair Q = tri_q(n), T1 = prand(nn, -1, 1), W = pnew(nn), G = prand(nn, -1, 1), A = pnew(nn), w = pnew(3 * (size_t)n);
        for (size_t i = 0; i < nn; i++)
            if (isnan(Q.c[i])) Q.c[i] = 0.0f;
        psync(Q);
        // the update's product triu(T1 / den) Q runs in TF32 here (nn.h): the TF32 model on
        // |triu(T1 / den)| |Q| (T1.c holds triu(T1 / den) after the CPU op; Q0 the Q before it)
        float *q0 = LOLA_NEW(float, nn);
        memcpy(q0, Q.c, nn * sizeof(float));
        cpu_psgd_dense_update(Q.c, T1.c, W.c, n, 3.7f), psgd_dense_update(Q.g, T1.g, W.g, n, 3.7f);
        float *t2 = squares(T1.c, nn), *q2 = squares(q0, nn), *sig = LOLA_NEW(float, nn);
        cpu_nn_gemm(0, 0, n, n, n, 1.0f, t2, n, q2, n, 0.0f, sig, n);
        to_sigma(sig, nn, prec_eta(NN_PREC_TF32), 2, NULL);
        char name[160];
        snprintf(name, sizeof name, "psgd_dense_update n=%d [%s]: TF32 product (model)", n,
                 nn_cuda_precision_name(precs[k]));
        double q = cmp_model(name, Q, sig, prec_eta(NN_PREC_TF32), TA, TR);
        check_engaged(name, q, NN_PREC_TF32, 1, nn);
        free(q0), free(t2), free(q2), free(sig);
        cpu_nn_gemm(0, 1, n, n, n, 1.0f / n, G.c, n, G.c, n, 0.0f, A.c, n);
        psync(A);
        float mx = cpu_nn_max_abs(A.c, nn);
        float c = cpu_psgd_norm_lower_bound(A.c, w.c, n, mx), g = psgd_norm_lower_bound(A.g, w.g, n, mx);
        CHECK_CLOSE(g, c, 0.0, 1e-5, "psgd_norm_lower_bound n=%d [%s]: fp32 products: %.9g (cpu %.9g)", n,
                    nn_cuda_precision_name(precs[k]), g, c);
        pfree(Q), pfree(T1), pfree(W), pfree(G), pfree(A), pfree(w);
    }
    nn_cuda_set_precision(NN_PREC_FP32);
}

static void test_psgd(int big) {
    test_psgd_gemm(big);
    test_psgd_trsm(big);
    test_psgd_axis(big);
    test_psgd_max_abs();
    test_psgd_elementwise();
    test_psgd_dense_update(big);
    test_psgd_lower_bound(big);
    test_psgd_precision();
    test_psgd_bf16_cache();
}

static void test_coverage(void) {
    int missing = 0;
    for (int i = 0; i < N_NAMES; i++)
        if (!tested[i]) {
            printf("  not exercised: %s\n", all_names[i]);
            missing++;
        }
    CHECK(missing == 0, "coverage: %d of %d nn.h functions exercised against the CPU backend", N_NAMES - missing,
          N_NAMES);
}

// ---------------------------------------------------------------------------------------------
// Timings

#define TIME_IT(iters, result, stmt)                                                                                  \
    do {                                                                                                             \
        stmt;                                                                                                        \
        nn_sync();                                                                                                   \
        double t0_ = lola_time();                                                                                    \
        for (int it_ = 0; it_ < (iters); it_++) {                                                                    \
            stmt;                                                                                                    \
        }                                                                                                            \
        nn_sync();                                                                                                   \
        result = (lola_time() - t0_) / (iters);                                                                      \
    } while (0)

static float *dev_rand(size_t n, uint64_t seed, float scale) {
    float *p = nn_alloc(n);
    nn_randn(p, n, seed);
    nn_scale(p, scale, n);
    return p;
}

// Precisions timed side by side (the same shapes in each): fp32, tf32, bf16 (autocast: the casts
// of the activations are inside the timings, as they are in training).
static const int bench_prec[3] = {NN_PREC_FP32, NN_PREC_TF32, NN_PREC_BF16};

static void bench_conv(int quick) {
    int shapes[][6] = {
        // B, Cin, Cout, H, W, K   (AE Euler 512x512, batch 8, levels 0..5; 128 and 256 channels
        // at the two finest resolutions)
        {8, 64, 64, 512, 512, 3}, {8, 128, 128, 256, 256, 3}, {8, 256, 256, 128, 128, 3},
        {8, 512, 512, 64, 64, 3}, {8, 768, 768, 32, 32, 3},   {8, 1024, 1024, 16, 16, 3},
        {8, 1024, 1024, 16, 16, 1}, {8, 5, 64, 512, 512, 3}, {8, 128, 128, 512, 512, 3},
        {8, 256, 256, 256, 256, 3},
    };
    int ns = quick ? 2 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int mode = 0; mode < 5; mode++) { // fp32, tf32, bf16 (cudnn), fp32 deterministic, fp32 im2col
        if (quick && (mode == 1 || mode >= 3)) continue;
        nn_cuda_set_precision(mode < 3 ? bench_prec[mode] : NN_PREC_FP32);
        nn_cuda_set_deterministic(mode == 3);
        nn_cuda_set_conv_impl(mode == 4 ? NN_CONV_IM2COL : NN_CONV_CUDNN);
        const char *label = mode < 3 ? nn_cuda_precision_name(bench_prec[mode]) : mode == 3 ? "fp32-det" : "fp32-im2col";
        for (int s = 0; s < ns; s++) {
            if (mode >= 3 && s > 1) break; // the big level-0/1 shapes are enough for these modes
            int B = shapes[s][0], Cin = shapes[s][1], Cout = shapes[s][2], H = shapes[s][3], W = shapes[s][4];
            int K = shapes[s][5];
            size_t nx = (size_t)B * Cin * H * W, ny = (size_t)B * Cout * H * W, nw = (size_t)Cout * Cin * K * K;
            float *x = dev_rand(nx, 1, 1.0f), *w = dev_rand(nw, 2, 0.03f), *b = dev_rand(Cout, 3, 0.03f);
            float *y = nn_alloc(ny), *go = dev_rand(ny, 4, 1.0f), *dx = nn_alloc(nx), *dw = nn_alloc(nw);
            float *db = nn_alloc(Cout);
            double flop = 2.0 * B * Cout * Cin * K * K * (double)H * W, tf, tb;
            int it = flop > 5e10 ? 5 : 20;
            TIME_IT(it, tf, conv2d_forward(y, x, w, b, B, Cin, Cout, H, W, K));
            TIME_IT(it, tb, conv2d_backward(dx, dw, db, go, x, w, B, Cin, Cout, H, W, K));
            printf("BENCH conv%dx%d %-11s B=%d %4d->%-4d %3dx%-3d  fwd %8.3f ms %6.1f TFLOP/s   bwd %8.3f ms %6.1f "
                   "TFLOP/s\n",
                   K, K, label, B, Cin, Cout, H, W, tf * 1e3, flop / tf * 1e-12, tb * 1e3, 2 * flop / tb * 1e-12);
            fflush(stdout);
            nn_free(x), nn_free(w), nn_free(b), nn_free(y), nn_free(go), nn_free(dx), nn_free(dw), nn_free(db);
        }
    }
    nn_cuda_set_precision(NN_PREC_FP32);
    nn_cuda_set_deterministic(0);
    nn_cuda_set_conv_impl(NN_CONV_CUDNN);
}

static void bench_linear(int quick) {
    int shapes[][3] = {
        // M = 32 x 1280 tokens (DiT Euler batch 32), K, N: qkv, out proj, FFN up, FFN down
        {40960, 1024, 3072}, {40960, 1024, 1024}, {40960, 1024, 4096}, {40960, 4096, 1024},
    };
    int ns = quick ? 1 : 4;
    for (int mode = 0; mode < 3; mode++) {
        nn_cuda_set_precision(bench_prec[mode]);
        for (int s = 0; s < ns; s++) {
            int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
            float *x = dev_rand((size_t)M * K, 5, 1.0f), *w = dev_rand((size_t)N * K, 6, 0.03f), *b = dev_rand(N, 7, 0.03f);
            float *y = nn_alloc((size_t)M * N), *go = dev_rand((size_t)M * N, 8, 1.0f), *dx = nn_alloc((size_t)M * K);
            float *dw = nn_alloc((size_t)N * K), *db = nn_alloc(N);
            double flop = 2.0 * M * (double)K * N, tf, tb;
            TIME_IT(5, tf, linear_forward(y, x, w, b, M, K, N));
            TIME_IT(5, tb, linear_backward(dx, dw, db, go, x, w, M, K, N));
            printf("BENCH linear %-4s M=%d K=%-4d N=%-4d  fwd %8.3f ms %6.1f TFLOP/s   bwd %8.3f ms %6.1f TFLOP/s\n",
                   nn_cuda_precision_name(bench_prec[mode]), M, K, N, tf * 1e3, flop / tf * 1e-12, tb * 1e3,
                   2 * flop / tb * 1e-12);
            fflush(stdout);
            nn_free(x), nn_free(w), nn_free(b), nn_free(y), nn_free(go), nn_free(dx), nn_free(dw), nn_free(db);
        }
    }
    nn_cuda_set_precision(NN_PREC_FP32);
}

// Attention engines side by side at the model shapes: the GEMM path in fp32 / tf32 / bf16 and the
// fused kernels (LOLA_ATTENTION=flash) in tf32 / bf16, each flash row with its speed-up over the
// GEMM path in the same precision. FLOPs: 4 B N^2 D forward (QK^T, PV), twice that backward (the
// useful work; the fused backward recomputes S and dP once more).
static void bench_attention(int quick) {
    int cases[][4] = {
        // B, N, H, dh: the ViTs (D 1024, 8 heads of 128) on Euler (N 1280 = 5 x 16 x 16 latent
        // tokens) and Rayleigh-Benard (N 320); the same with 16 heads of 64; the DCAE's level-5
        // attention (batch 8, 16 x 16 pixels, 8 heads of 128)
        {32, 1280, 8, 128}, {32, 1280, 16, 64}, {32, 320, 8, 128}, {32, 320, 16, 64}, {8, 256, 8, 128},
    };
    int modes[][2] = {{NN_PREC_FP32, NN_ATTN_GEMM}, {NN_PREC_TF32, NN_ATTN_GEMM}, {NN_PREC_TF32, NN_ATTN_FLASH},
                      {NN_PREC_BF16, NN_ATTN_GEMM}, {NN_PREC_BF16, NN_ATTN_FLASH}};
    int nc = quick ? 1 : (int)(sizeof cases / sizeof cases[0]);
    for (int k = 0; k < nc; k++) {
        int B = cases[k][0], N = cases[k][1], H = cases[k][2], dh = cases[k][3], D = H * dh;
        size_t n = (size_t)B * N * 3 * D, no = (size_t)B * N * D;
        float *qkv = dev_rand(n, 9, 1.0f), *o = nn_alloc(no), *save = nn_alloc(attention_save_floats(B, N, H));
        float *go = dev_rand(no, 10, 1.0f), *dq = nn_alloc(n);
        double flop = 4.0 * B * (double)N * N * D, tf, tb, gf = 0.0, gb = 0.0; // gf, gb: GEMM path, same precision
        for (int m = 0; m < 5; m++) {
            int prec = modes[m][0], impl = modes[m][1];
            nn_cuda_set_precision(prec);
            nn_cuda_set_attention_impl(impl);
            long f0 = flash_calls(0), b0 = flash_calls(1);
            TIME_IT(3, tf, attention_forward(o, save, qkv, B, N, H, dh));
            TIME_IT(3, tb, attention_backward(dq, go, qkv, o, save, B, N, H, dh));
            int ran = flash_calls(0) > f0 && flash_calls(1) > b0;
            char label[24], extra[96] = "";
            snprintf(label, sizeof label, "%s%s", nn_cuda_precision_name(prec), impl == NN_ATTN_FLASH ? "-flash" : "");
            if (impl == NN_ATTN_GEMM) gf = tf, gb = tb;
            else if (!ran) snprintf(extra, sizeof extra, "   (flash unavailable: GEMM path timed)");
            else snprintf(extra, sizeof extra, "   vs gemm: fwd x%.2f bwd x%.2f", gf / tf, gb / tb);
            printf("BENCH attention %-10s B=%d N=%d H=%d dh=%d  fwd %8.3f ms %6.1f TFLOP/s   bwd %8.3f ms %6.1f "
                   "TFLOP/s%s\n",
                   label, B, N, H, dh, tf * 1e3, flop / tf * 1e-12, tb * 1e3, 2 * flop / tb * 1e-12, extra);
            fflush(stdout);
        }
        nn_free(qkv), nn_free(o), nn_free(save), nn_free(go), nn_free(dq);
    }
    nn_cuda_set_precision(NN_PREC_FP32);
    nn_cuda_set_attention_impl(NN_ATTN_GEMM);
}

static void bench_memory_bound(void) {
    double t;
    {   // AdamW over the DiT's 222.8 M parameters: reads p g m v, writes p m v (28 bytes / element)
        size_t n = 222820928;
        float *p = dev_rand(n, 11, 0.02f), *g = dev_rand(n, 12, 1e-3f), *m = nn_alloc(n), *v = nn_alloc(n);
        TIME_IT(5, t, adamw_update(p, g, m, v, n, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1));
        printf("BENCH adamw n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 28.0 * n / t * 1e-9);
        TIME_IT(5, t, nn_sum_squares(g, n));
        printf("BENCH sum_squares n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 4.0 * n / t * 1e-9);
        nn_free(p), nn_free(g), nn_free(m), nn_free(v);
    }
    {   // token LayerNorm (40960, 1024)
        int M = 40960, D = 1024;
        size_t n = (size_t)M * D;
        float *x = dev_rand(n, 13, 1.0f), *y = nn_alloc(n), *mu = nn_alloc(M), *rs = nn_alloc(M), *dx = nn_alloc(n);
        TIME_IT(10, t, layernorm_forward(y, mu, rs, x, M, D, 1e-5f));
        printf("BENCH layernorm_forward M=%d D=%d  %8.3f ms %7.1f GB/s\n", M, D, t * 1e3, 8.0 * n / t * 1e-9);
        TIME_IT(10, t, layernorm_backward(dx, y, x, mu, rs, M, D));
        printf("BENCH layernorm_backward M=%d D=%d  %8.3f ms %7.1f GB/s\n", M, D, t * 1e3, 12.0 * n / t * 1e-9);
        TIME_IT(10, t, modulate_forward(y, x, rs, rs, 32, 1280, D, 0));
        printf("BENCH modulate_forward B=32 N=1280 D=%d  %8.3f ms %7.1f GB/s\n", D, t * 1e3, 8.0 * n / t * 1e-9);
        TIME_IT(10, t, silu_forward(y, x, n));
        printf("BENCH silu_forward n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 8.0 * n / t * 1e-9);
        nn_free(x), nn_free(y), nn_free(mu), nn_free(rs), nn_free(dx);
    }
    {   // channel LayerNorm at AE level 0 (8, 64, 512x512)
        int B = 8, C = 64, HW = 512 * 512;
        size_t n = (size_t)B * C * HW;
        float *x = dev_rand(n, 14, 1.0f), *y = nn_alloc(n), *mu = nn_alloc((size_t)B * HW), *rs = nn_alloc((size_t)B * HW);
        TIME_IT(5, t, layernorm_channels_forward(y, mu, rs, x, B, C, HW, 1e-5f));
        printf("BENCH layernorm_channels_forward B=%d C=%d HW=%d  %8.3f ms %7.1f GB/s\n", B, C, HW, t * 1e3,
               8.0 * n / t * 1e-9);
        TIME_IT(5, t, layernorm_channels_backward(y, x, x, mu, rs, B, C, HW));
        printf("BENCH layernorm_channels_backward B=%d C=%d HW=%d  %8.3f ms %7.1f GB/s\n", B, C, HW, t * 1e3,
               12.0 * n / t * 1e-9);
        nn_free(x), nn_free(y), nn_free(mu), nn_free(rs);
    }
}

// PSGD-Kron ops at the AE's shapes (conv weights up to (512, 512, 3, 3), dense factors up to the
// default precondition_size 4096, the 237 M parameters for the elementwise steps).
static void bench_psgd(int quick) {
    double t;
    {
        int g[][5] = {{0, 1, 512, 512, 4608}, {0, 0, 512, 4608, 512}, {0, 0, 4096, 4096, 4096}};
        for (int k = 0; k < (quick ? 2 : 3); k++) {
            int ta = g[k][0], tb = g[k][1], M = g[k][2], N = g[k][3], K = g[k][4];
            float *A = dev_rand((size_t)M * K, 21, 1.0f), *B = dev_rand((size_t)K * N, 22, 1.0f), *C = nn_alloc((size_t)M * N);
            TIME_IT(5, t, nn_gemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N));
            printf("BENCH psgd nn_gemm ta=%d tb=%d M=%d N=%d K=%d  %8.3f ms %7.2f TFLOP/s\n", ta, tb, M, N, K, t * 1e3,
                   2.0 * M * N * K / t * 1e-12);
            nn_free(A), nn_free(B), nn_free(C);
        }
        int s[][2] = {{512, 4608}, {4096, 4096}};
        for (int k = 0; k < (quick ? 1 : 2); k++) {
            int n = s[k][0], mm = s[k][1];
            float *Q = nn_alloc((size_t)n * n), *X = dev_rand((size_t)n * mm, 23, 1.0f);
            float *hq = LOLA_NEW(float, (size_t)n * n), sc = 0.3f / sqrtf((float)n); // as tri_q: well conditioned
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) hq[(size_t)i * n + j] = j < i ? 0.0f : j == i ? 1.0f : urand(-sc, sc);
            nn_to_backend(Q, hq, (size_t)n * n);
            free(hq);
            TIME_IT(5, t, nn_trsm_upper(X, Q, n, mm, 1));
            printf("BENCH psgd nn_trsm_upper left n=%d m=%d  %8.3f ms %7.2f TFLOP/s\n", n, mm, t * 1e3,
                   (double)n * n * mm / t * 1e-12);
            TIME_IT(5, t, nn_trsm_upper(X, Q, n, mm / 8, 0));
            printf("BENCH psgd nn_trsm_upper right n=%d m=%d  %8.3f ms %7.2f TFLOP/s\n", n, mm / 8, t * 1e3,
                   (double)n * n * (mm / 8) / t * 1e-12);
            nn_free(Q), nn_free(X);
        }
    }
    {   // tensor-axis helpers: (L, n, R) views (bytes: read + write)
        size_t v[][3] = {{512, 512, 9}, {1, 512, 4608}, {262144, 3, 3}, {64, 16, 16384}, {16384, 512, 1}};
        for (int k = 0; k < 5; k++) {
            size_t L = v[k][0], R = v[k][2], tot = L * v[k][1] * R;
            int n = (int)v[k][1];
            float *x = dev_rand(tot, 24, 1.0f), *y = nn_alloc(tot), *d = nn_alloc(n), *g = nn_alloc(n);
            nn_fill(d, 1.0f, n);
            TIME_IT(10, t, nn_axis_permute(y, x, L, n, R, 1));
            printf("BENCH psgd nn_axis_permute to_front (L=%zu, n=%d, R=%zu)  %8.3f ms %7.1f GB/s\n", L, n, R, t * 1e3,
                   8.0 * tot / t * 1e-9);
            TIME_IT(10, t, nn_axis_permute(x, y, L, n, R, 0));
            printf("BENCH psgd nn_axis_permute back (L=%zu, n=%d, R=%zu)  %8.3f ms %7.1f GB/s\n", L, n, R, t * 1e3,
                   8.0 * tot / t * 1e-9);
            TIME_IT(10, t, nn_axis_scale(x, d, L, n, R, 1));
            printf("BENCH psgd nn_axis_scale (L=%zu, n=%d, R=%zu)  %8.3f ms %7.1f GB/s\n", L, n, R, t * 1e3,
                   8.0 * tot / t * 1e-9);
            TIME_IT(10, t, nn_axis_sum_squares(g, x, L, n, R));
            printf("BENCH psgd nn_axis_sum_squares (L=%zu, n=%d, R=%zu)  %8.3f ms %7.1f GB/s\n", L, n, R, t * 1e3,
                   4.0 * tot / t * 1e-9);
            nn_free(x), nn_free(y), nn_free(d), nn_free(g);
        }
    }
    if (!quick) {   // elementwise steps over the AE's 237 M parameters
        size_t n = 237000000;
        float *p = dev_rand(n, 25, 0.02f), *g = dev_rand(n, 26, 1e-3f), *m = nn_alloc(n), *a = nn_alloc(n);
        float *b = nn_alloc(n);
        TIME_IT(5, t, psgd_momentum(m, g, n, 0.1f));
        printf("BENCH psgd psgd_momentum n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 12.0 * n / t * 1e-9);
        TIME_IT(5, t, psgd_noise(a, b, m, n, 1e-6f, 1, 2));
        printf("BENCH psgd psgd_noise n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 12.0 * n / t * 1e-9);
        TIME_IT(5, t, psgd_clip_update(p, a, n, 1.0f, 1e-6f));
        printf("BENCH psgd psgd_clip_update n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 16.0 * n / t * 1e-9);
        TIME_IT(5, t, nn_max_abs(g, n));
        printf("BENCH psgd nn_max_abs n=%zu  %8.3f ms %7.1f GB/s\n", n, t * 1e3, 4.0 * n / t * 1e-9);
        nn_free(p), nn_free(g), nn_free(m), nn_free(a), nn_free(b);
    }
    {   // dense factor steps
        int ns[] = {512, 4096};
        for (int k = 0; k < (quick ? 1 : 2); k++) {
            int n = ns[k];
            size_t nn = (size_t)n * n;
            float *A = dev_rand(nn, 27, 1.0f), *w = nn_alloc(3 * (size_t)n), *Q = dev_rand(nn, 28, 1e-3f);
            float *T = dev_rand(nn, 29, 1.0f), *W = nn_alloc(nn);
            TIME_IT(5, t, psgd_norm_lower_bound(A, w, n, 1.0f));
            printf("BENCH psgd psgd_norm_lower_bound n=%d  %8.3f ms\n", n, t * 1e3);
            TIME_IT(5, t, psgd_dense_update(Q, T, W, n, 1e3f));
            printf("BENCH psgd psgd_dense_update n=%d  %8.3f ms %7.2f TFLOP/s (as a full GEMM)\n", n, t * 1e3,
                   2.0 * n * nn / t * 1e-12);
            nn_free(A), nn_free(w), nn_free(Q), nn_free(T), nn_free(W);
        }
    }
}

// ---------------------------------------------------------------------------------------------

// Test sections, in order; --only runs a subset (tests/gpu/run.sh reruns them one per process
// with CUDA_LAUNCH_BLOCKING=1 when the full run crashed, to isolate the culprit).
typedef struct {
    const char *name;
    void (*fn)(int big);
} Section;
static void sec_memory(int big) { (void)big, test_memory(); }
static void sec_blas1(int big) { (void)big, test_blas1(); }
static void sec_bf16_storage(int big) { (void)big, test_bf16_storage(); }
static void sec_bf16_switch(int big) { (void)big, test_bf16_switch(); }
static void sec_silu(int big) { (void)big, test_silu_dropout_randn(); }
static void sec_image(int big) { (void)big, test_image_ops(); }
static void sec_layernorm(int big) { (void)big, test_layernorm(); }
static void sec_modulate(int big) { (void)big, test_modulate_gated(); }
static void sec_fused(int big) { (void)big, test_fused_block_ops(); }
static void sec_sine(int big) { (void)big, test_sine(); }
static void sec_rows(int big) { (void)big, test_rows_where(); }
static void sec_losses(int big) { (void)big, test_losses(); }
static void sec_adamw(int big) { (void)big, test_adamw(); }
static void sec_determinism(int big) { (void)big, test_determinism(); }
static void sec_bf16_cache(int big) { (void)big, test_bf16_cache(); }
static const Section sections[] = {
    {"memory", sec_memory},       {"blas1", sec_blas1},         {"bf16_storage", sec_bf16_storage},
    {"bf16_switch", sec_bf16_switch}, {"silu_dropout_randn", sec_silu},
    {"conv", test_conv},          {"image", sec_image},         {"linear", test_linear},
    {"layernorm", sec_layernorm}, {"modulate", sec_modulate},   {"fused_block_ops", sec_fused},   {"qk_norm_rope", test_qk_norm_rope},
    {"attention", test_attention}, {"flash_attention", test_flash_attention},
    {"sine", sec_sine},            {"rows_where", sec_rows},
    {"losses", sec_losses},       {"adamw", sec_adamw},         {"determinism", sec_determinism},
    {"bf16_cache", sec_bf16_cache}, {"psgd", test_psgd},
};
#define N_SECTIONS ((int)(sizeof sections / sizeof sections[0]))

static int in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

int main(int argc, char **argv) {
    int run_tests = 1, big = 0, bench = 0, quick = 0, print_switches = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-tests")) run_tests = 0;
        else if (!strcmp(argv[i], "--big")) big = 1;
        else if (!strcmp(argv[i], "--bench")) bench = 1;
        else if (!strcmp(argv[i], "--bench-quick")) bench = 1, quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--print-switches")) print_switches = 1;
        else if (!strcmp(argv[i], "--list")) {
            for (int k = 0; k < N_SECTIONS; k++) printf("%s\n", sections[k].name);
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--no-tests] [--big] [--bench] [--bench-quick] [--only s1,s2] [--list] [--print-switches]\n",
                    argv[0]);
            return 2;
        }
    }
    if (only)
        for (const char *p = only; *p;) { // every name in --only must be a section
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            int found = 0;
            for (int k = 0; k < N_SECTIONS; k++)
                if (strlen(sections[k].name) == len && !strncmp(sections[k].name, p, len)) found = 1;
            if (!found) lola_die("--only: unknown section '%.*s' (see --list)", (int)len, p);
            p = e ? e + 1 : p + len;
        }
    if (print_switches) { // the probe of section bf16_switch: what nn_init made of this environment
        nn_init(0);
        printf("bf16_activations=%d precision=%s backend=%s\n", nn_bf16_activations(),
               nn_cuda_precision_name(nn_cuda_precision()), nn_backend_name());
        return 0;
    }
    R = rng_seed(20261130);
    cpu_nn_init(-1);
    nn_init(0);
    selfcheck = strstr(nn_cuda_device_name(), "self-check") != NULL;
    // LOLA_PRECISION / LOLA_TF32 in the environment do not change the checks: each sets its precision
    env_prec = nn_cuda_precision();
    env_attn = nn_cuda_attention_impl();
    nn_cuda_set_precision(NN_PREC_FP32);
    nn_cuda_set_gemm_impl(NN_GEMM_AUTO);
    nn_cuda_set_attention_impl(NN_ATTN_GEMM);
    if (env_prec != NN_PREC_FP32)
        printf("# the environment asks for %s: checks and timings set their precision themselves\n",
               nn_cuda_precision_name(env_prec));
    if (env_attn != NN_ATTN_GEMM)
        printf("# the environment asks for LOLA_ATTENTION=%s: checks and timings set the engine themselves\n",
               nn_cuda_attention_impl_name(env_attn));
    if (run_tests) {
        double t0 = lola_time();
        for (int k = 0; k < N_SECTIONS; k++) {
            if (only && !in_list(only, sections[k].name)) continue;
            printf("## section %s\n", sections[k].name);
            fflush(stdout);
            sections[k].fn(big);
        }
        if (!only) test_coverage();
        printf("# tests took %.1f s; scratch %.1f MiB; nn_alloc peak %.1f MiB\n", lola_time() - t0,
               nn_cuda_scratch_bytes() / 1048576.0, nn_bytes_peak() / 1048576.0);
    }
    if (bench) {
        double t0 = lola_time();
        printf("# timings on %s\n", nn_backend_name());
        fflush(stdout);
        bench_linear(quick);
        bench_attention(quick);
        bench_conv(quick);
        if (!quick) bench_memory_bound();
        bench_psgd(quick);
        printf("# timings took %.1f s\n", lola_time() - t0);
    }
    return run_tests ? test_summary() : 0;
}
