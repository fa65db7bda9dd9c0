// test_bf16.c: the CPU backend's bf16 activation storage (nn.h "bf16 activation storage"):
//  * LOLA_ACTIVATIONS parsing (each case in a child process, before this process initialises the
//    backend: the variable is read once): fp32 / bf16 in any case, unset and empty = 0 on the CPU,
//    anything else dies naming the variable and the accepted values; nn_set_bf16_activations wins
//    over the environment, also across later nn_init calls; nn_backend_name shows the switch.
//  * nn_pack_bf16 against an independent reference written here in float64 arithmetic (frexp,
//    ldexp, rint: round to nearest even at 8 significant bits, subnormal spacing 2^-133, overflow to
//    inf when the rounded magnitude reaches 2^128, every NaN -> 0x7FFF), over every one of the
//    65536 upper halves combined with the low halves that decide the rounding (0, 1, just below /
//    at / just above half, all ones, random), a million random bit patterns, and hand-computed
//    constants (ties to even both ways, denormals, carries into the exponent, FLT_MAX, inf, NaNs).
//    The backend computes with an integer formula on the bit pattern (src/cpu/bf16.c), so the two
//    share no code. The reference also agreed with torch's float32 -> bfloat16 conversion (torch
//    2.15 on this CPU, Tensor.to(torch.bfloat16)) on this grid plus 1 M random patterns, every
//    non-NaN value, when this test was written (a one-off check by hand; no torch value is
//    hard-coded here). torch gives another NaN pattern (0xFFFF there), the contract asks for 0x7FFF.
//  * nn_unpack_bf16: every one of the 65536 patterns gives bits << 16 (NaN payloads and signs
//    kept); unpack(pack(x)) is within 2^-8 |x| of x for normal x (the unit roundoff of 8 significant
//    bits: half an ulp 2^(e-8) over |x| >= 2^e; truncation would reach 2^-7); bf16 values survive
//    the round trip unchanged.
//  * Odd n, unaligned dst / src (+1..+3 elements), n = 0 (nothing written), and n = 3 million (the
//    OpenMP path, chunk boundaries) against the reference element by element.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "nn.h"
#include "rng.h"
#include "test.h"

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}
static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// The reference: bf16(x) from the value of x in float64 arithmetic.
static uint16_t ref_bf16(float x) {
    if (isnan(x)) return 0x7FFF;
    uint16_t sign = (uint16_t)((bits_of(x) >> 16) & 0x8000u);
    if (isinf(x)) return sign | 0x7F80u;
    double a = fabs((double)x);
    if (a == 0.0) return sign;
    int e;
    frexp(a, &e);  // a = m 2^e, m in [0.5, 1): the leading bit has weight 2^(e-1)
    int lead = e - 1;
    if (lead < -126) lead = -126;           // below the normal range bf16 has the fixed spacing 2^-133
    double ulp = ldexp(1.0, lead - 7);      // 8 significant bits
    double r = rint(a / ulp) * ulp;         // a / ulp is exact; rint: nearest, ties to even
    if (r >= ldexp(1.0, 128)) return sign | 0x7F80u; // past the largest bf16: inf
    uint32_t v = bits_of((float)r);         // exact: r has at most 8 significant bits
    if (v & 0xFFFFu) lola_die("ref_bf16: %a rounded to %a, not a bf16 value", (double)x, r);
    return sign | (uint16_t)(v >> 16);
}

// ---------------------------------------------------------------------------------------------
// LOLA_ACTIVATIONS (children; exit status 10 + nn_bf16_activations())

typedef struct {
    const char *env;   // NULL: unset
    int set_before;    // -1: no setter call before nn_init, else nn_set_bf16_activations(value)
    int set_after;     // -1: none, else nn_set_bf16_activations(value) after nn_init, then nn_init again
} EnvCase;

static void env_child(void *arg) {
    const EnvCase *c = arg;
    if (c->env) setenv("LOLA_ACTIVATIONS", c->env, 1);
    else unsetenv("LOLA_ACTIVATIONS");
    if (c->set_before >= 0) nn_set_bf16_activations(c->set_before);
    nn_init(-1);
    if (c->set_after >= 0) {
        nn_set_bf16_activations(c->set_after);
        nn_init(-1); // must not re-read the environment
    }
    int on = nn_bf16_activations();
    printf("backend %s\n", nn_backend_name());
    fflush(stdout);
    _exit(10 + on);
}

static void test_env(void) {
    const struct {
        EnvCase c;
        int want;
        const char *what;
    } cases[] = {
        {{NULL, -1, -1}, 0, "unset -> 0 on the CPU"},
        {{"", -1, -1}, 0, "empty -> 0"},
        {{"bf16", -1, -1}, 1, "bf16 -> 1"},
        {{"BF16", -1, -1}, 1, "BF16 -> 1 (case-insensitive)"},
        {{"fp32", -1, -1}, 0, "fp32 -> 0"},
        {{"Fp32", -1, -1}, 0, "Fp32 -> 0 (case-insensitive)"},
        {{"bf16", -1, 0}, 0, "bf16, then nn_set_bf16_activations(0), then nn_init again -> 0 (setter kept)"},
        {{"fp32", -1, 1}, 1, "fp32, then nn_set_bf16_activations(1), then nn_init again -> 1"},
        {{"fp32", 1, -1}, 1, "nn_set_bf16_activations(1) before nn_init with fp32 in the environment -> 1"},
        {{NULL, 7, -1}, 1, "nn_set_bf16_activations(7) -> 1 (any non-zero is on)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char msg[4096];
        int st = test_run_capture(env_child, (void *)&cases[k].c, msg, sizeof msg);
        int want_name = cases[k].want ? strstr(msg, "bf16 activations") != NULL : strstr(msg, "bf16 activations") == NULL;
        if (st != 10 + cases[k].want) printf("  exit status %d, output: %s\n", st, msg);
        CHECK(st == 10 + cases[k].want && want_name, "LOLA_ACTIVATIONS %s (backend name %s the switch)", cases[k].what,
              cases[k].want ? "names" : "does not name");
    }
    const char *bad[] = {"bfloat16", "1", "fp16", " bf16"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        EnvCase c = {bad[k], -1, -1};
        char msg[4096];
        int st = test_run_capture(env_child, &c, msg, sizeof msg);
        int ok = st != 0 && (st < 10 || st > 11) && strstr(msg, "LOLA_ACTIVATIONS") && strstr(msg, "expected fp32 or bf16") &&
                 strstr(msg, bad[k]);
        printf("  message: %.*s\n", (int)strcspn(msg, "\n"), msg);
        CHECK(ok, "LOLA_ACTIVATIONS='%s' dies (exit %d) naming the variable, the value and fp32 / bf16", bad[k], st);
    }
    // A bad value is an error even when a setter came first (the environment is still read once).
    EnvCase c = {"yes", 1, -1};
    char msg[4096];
    int st = test_run_capture(env_child, &c, msg, sizeof msg);
    CHECK(st != 11 && st != 0 && strstr(msg, "LOLA_ACTIVATIONS"), "LOLA_ACTIVATIONS=yes dies after a setter call too (exit %d)", st);
}

// ---------------------------------------------------------------------------------------------
// Rounding

// Hand-computed cases: input bits -> bf16 bits.
static void test_constants(void) {
    const struct {
        uint32_t in;
        uint16_t want;
        const char *what;
    } t[] = {
        {0x00000000u, 0x0000, "+0"},
        {0x80000000u, 0x8000, "-0"},
        {0x3F800000u, 0x3F80, "1"},
        {0xBF800000u, 0xBF80, "-1"},
        {0x3F808000u, 0x3F80, "1 + 2^-8: tie, kept part even -> down"},
        {0x3F818000u, 0x3F82, "1 + 3 2^-8: tie, kept part odd -> up"},
        {0xBF818000u, 0xBF82, "-(1 + 3 2^-8): tie up in magnitude"},
        {0x3F807FFFu, 0x3F80, "just below half -> down"},
        {0x3F808001u, 0x3F81, "just above half -> up"},
        {0x3F80FFFFu, 0x3F81, "low half all ones -> up"},
        {0x3FFFFFFFu, 0x4000, "1.99999988: carry into the exponent -> 2"},
        {0x3FFF7FFFu, 0x3FFF, "just below half under 2 -> 1.9921875"},
        {0x00000001u, 0x0000, "smallest denormal -> +0"},
        {0x80000001u, 0x8000, "-smallest denormal -> -0"},
        {0x00008000u, 0x0000, "denormal tie, even -> down"},
        {0x00008001u, 0x0001, "denormal just above half -> smallest bf16 denormal"},
        {0x00018000u, 0x0002, "denormal tie, odd -> up"},
        {0x80018000u, 0x8002, "negative denormal tie, odd -> up"},
        {0x00010000u, 0x0001, "smallest bf16 denormal, exact"},
        {0x007FFFFFu, 0x0080, "largest denormal -> smallest normal"},
        {0x00800000u, 0x0080, "smallest normal"},
        {0x00808000u, 0x0080, "smallest normal + tie -> even"},
        {0x7F7F7FFFu, 0x7F7F, "just below half under the largest bf16 -> largest bf16"},
        {0x7F7F8000u, 0x7F80, "tie above the largest bf16 (odd) -> +inf"},
        {0x7F7FFFFFu, 0x7F80, "FLT_MAX -> +inf (overflow)"},
        {0xFF7FFFFFu, 0xFF80, "-FLT_MAX -> -inf"},
        {0x7F800000u, 0x7F80, "+inf"},
        {0xFF800000u, 0xFF80, "-inf"},
        {0x7FC00000u, 0x7FFF, "quiet NaN"},
        {0xFFC00000u, 0x7FFF, "negative quiet NaN -> canonical +NaN"},
        {0x7F800001u, 0x7FFF, "NaN with payload in the low half only (not inf)"},
        {0xFF800001u, 0x7FFF, "negative NaN, low payload"},
        {0x7FA00000u, 0x7FFF, "signalling NaN"},
        {0x7FFFFFFFu, 0x7FFF, "NaN, all payload bits (no carry into the sign)"},
        {0xFFFFFFFFu, 0x7FFF, "NaN, all bits set"},
        {0x7F80FFFFu, 0x7FFF, "NaN whose low half would round up"},
    };
    size_t n = sizeof t / sizeof t[0];
    float *src = nn_alloc(n), *dstf = nn_alloc((n + 1) / 2);
    uint16_t *dst = (uint16_t *)dstf;
    for (size_t i = 0; i < n; i++) src[i] = float_of(t[i].in);
    nn_pack_bf16(dst, src, n);
    for (size_t i = 0; i < n; i++) {
        uint16_t r = ref_bf16(src[i]);
        CHECK(dst[i] == t[i].want && r == t[i].want, "pack 0x%08X -> 0x%04X (backend 0x%04X, reference 0x%04X): %s",
              t[i].in, t[i].want, dst[i], r, t[i].what);
    }
    nn_free(src), nn_free(dstf);
}

// Every upper half with the low halves that decide the rounding, and random patterns.
static void test_grid(Rng *rng) {
    const uint32_t lows[] = {0x0000, 0x0001, 0x4000, 0x7FFF, 0x8000, 0x8001, 0xC000, 0xFFFF};
    size_t nl = sizeof lows / sizeof lows[0] + 2, n = 65536 * nl, m = 1 << 20; // m: random patterns
    size_t cap = n > m ? n : m;
    float *src = nn_alloc(cap), *dstf = nn_alloc(cap / 2);
    uint16_t *dst = (uint16_t *)dstf;
    for (uint32_t h = 0; h < 65536; h++)
        for (size_t k = 0; k < nl; k++) {
            uint32_t lo = k < nl - 2 ? lows[k] : (uint32_t)(rng_next(rng) & 0xFFFF);
            src[h * nl + k] = float_of(h << 16 | lo);
        }
    nn_pack_bf16(dst, src, n);
    size_t bad = 0, first = 0, nan_in = 0, inf_out = 0, ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (dst[i] != ref_bf16(src[i]) && !bad++) first = i;
        nan_in += isnan(src[i]);
        inf_out += (dst[i] & 0x7FFF) == 0x7F80;
        ties += (bits_of(src[i]) & 0xFFFF) == 0x8000;
    }
    if (bad)
        printf("  first mismatch: 0x%08X -> 0x%04X, reference 0x%04X\n", bits_of(src[first]), dst[first],
               ref_bf16(src[first]));
    CHECK(bad == 0, "pack = reference on all 65536 upper halves x %zu low halves (%zu values: %zu NaN, %zu -> inf, %zu ties); %zu differ",
          nl, n, nan_in, inf_out, ties, bad);
    // 1 M uniformly random bit patterns
    bad = 0;
    for (size_t i = 0; i < m; i++) src[i] = float_of((uint32_t)rng_next(rng));
    nn_pack_bf16(dst, src, m);
    for (size_t i = 0; i < m; i++) bad += dst[i] != ref_bf16(src[i]);
    CHECK(bad == 0, "pack = reference on %zu random bit patterns (%zu differ)", m, bad);
    nn_free(src), nn_free(dstf);
}

static void test_unpack(void) {
    size_t n = 65536;
    float *srcf = nn_alloc(n / 2), *dst = nn_alloc(n);
    uint16_t *src = (uint16_t *)srcf;
    for (size_t i = 0; i < n; i++) src[i] = (uint16_t)i;
    nn_unpack_bf16(dst, src, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += bits_of(dst[i]) != (uint32_t)i << 16;
    CHECK(bad == 0, "unpack: all 65536 bf16 patterns give bits << 16, NaN payloads and signs kept (%zu differ)", bad);
    // bf16 values are fixed points of pack(unpack(.)), except the NaNs (canonicalised)
    float *back = nn_alloc(n / 2);
    uint16_t *b = (uint16_t *)back;
    nn_pack_bf16(b, dst, n);
    bad = 0;
    size_t nnan = 0;
    for (size_t i = 0; i < n; i++) {
        int is_nan = (i & 0x7FFF) > 0x7F80;
        nnan += is_nan;
        bad += is_nan ? b[i] != 0x7FFF : b[i] != (uint16_t)i;
    }
    CHECK(bad == 0, "pack(unpack(b)) = b for every non-NaN bf16 pattern, 0x7FFF for the %zu NaN patterns (%zu differ)", nnan,
          bad);
    nn_free(srcf), nn_free(dst), nn_free(back);
}

// |x - unpack(pack(x))| <= 2^-8 |x| (unit roundoff of 8 significant bits) for normal x whose rounding
// stays finite. (2^-9 would be the bound of 9 significant bits: random mantissas reach ~2^-8.)
static void test_round_trip(Rng *rng) {
    size_t n = 1 << 20;
    float *x = nn_alloc(n), *pf = nn_alloc(n / 2), *rt = nn_alloc(n);
    uint16_t *p = (uint16_t *)pf;
    for (size_t i = 0; i < n; i++) {
        // exponents over the whole normal range, random sign and mantissa
        uint32_t e = 1 + (uint32_t)rng_below(rng, 254), m = (uint32_t)rng_next(rng) & 0x7FFFFFu;
        uint32_t s = (uint32_t)(rng_next(rng) & 1) << 31;
        if (e == 254) m &= 0x7F7FFFu; // stay below the tie that rounds to inf
        x[i] = float_of(s | e << 23 | m);
    }
    nn_pack_bf16(p, x, n);
    nn_unpack_bf16(rt, p, n);
    double worst = 0.0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)x[i] - rt[i]) / fabs((double)x[i]);
        if (!(r <= ldexp(1.0, -8))) bad++;
        if (r > worst) worst = r;
    }
    CHECK(bad == 0, "round trip |x - rt| <= 2^-8 |x| for %zu random normal x: worst %.4f * 2^-8 (%zu beyond)", n,
          worst / ldexp(1.0, -8), bad);
    nn_free(x), nn_free(pf), nn_free(rt);
}

// Odd n and element offsets of dst and src, n = 0, and a large n (OpenMP chunks).
static void test_layout(Rng *rng) {
    size_t cap = 1000;
    float *src = nn_alloc(cap + 8), *pf = nn_alloc(cap / 2 + 8), *u = nn_alloc(cap + 8);
    uint16_t *p = (uint16_t *)pf;
    size_t bad = 0, cases = 0;
    for (int od = 0; od < 4; od++)
        for (int os = 0; os < 4; os++) {
            size_t n = 997 - (size_t)(od + os); // odd and even
            for (size_t i = 0; i < cap + 8; i++) src[i] = (float)rng_normal(rng) * 100.0f;
            for (size_t i = 0; i < cap + 16; i++) p[i] = 0xABCD; // sentinels around the range
            nn_pack_bf16(p + od, src + os, n);
            for (size_t i = 0; i < cap + 16; i++) {
                int inside = i >= (size_t)od && i < od + n;
                bad += inside ? p[i] != ref_bf16(src[os + i - od]) : p[i] != 0xABCD;
            }
            for (size_t i = 0; i < cap + 8; i++) u[i] = -7.0f;
            nn_unpack_bf16(u + os, p + od, n);
            for (size_t i = 0; i < cap + 8; i++) {
                int inside = i >= (size_t)os && i < os + n;
                bad += inside ? bits_of(u[i]) != (uint32_t)p[od + i - os] << 16 : u[i] != -7.0f;
            }
            cases++;
        }
    CHECK(bad == 0, "pack / unpack with dst and src at +0..+3 elements, n = 991..997: exact, nothing outside written (%zu cases, %zu bad)",
          cases, bad);
    for (size_t i = 0; i < 8; i++) p[i] = 0x1234, u[i] = 5.0f;
    nn_pack_bf16(p + 1, src, 0);
    nn_unpack_bf16(u + 1, p, 0);
    int untouched = 1;
    for (size_t i = 0; i < 8; i++) untouched &= p[i] == 0x1234 && u[i] == 5.0f;
    CHECK(untouched, "n = 0 writes nothing");
    nn_free(src), nn_free(pf), nn_free(u);

    // Large n: the OpenMP path, dst and src both unaligned.
    size_t n = 3000017;
    float *x = nn_alloc(n + 3), *qf = nn_alloc((n + 3) / 2 + 1), *y = nn_alloc(n + 2);
    uint16_t *q = (uint16_t *)qf;
    for (size_t i = 0; i < n + 3; i++)
        x[i] = i % 7 == 0 ? float_of((uint32_t)rng_next(rng)) : (float)rng_normal(rng); // some NaN/inf/denormals
    nn_pack_bf16(q + 1, x + 3, n);
    nn_unpack_bf16(y + 2, q + 1, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t r = ref_bf16(x[3 + i]);
        bad += q[1 + i] != r || bits_of(y[2 + i]) != (uint32_t)r << 16;
    }
    CHECK(bad == 0, "n = %zu (parallel chunks), dst +1, src +3: pack = reference, unpack exact (%zu differ)", n, bad);
    nn_free(x), nn_free(qf), nn_free(y);
}

int main(void) {
    test_env(); // first: the children must see a backend that has not read the environment yet
    unsetenv("LOLA_ACTIVATIONS");
    nn_init(-1);
    CHECK(nn_bf16_activations() == 0, "default on the CPU backend: fp32 activations");
    nn_set_bf16_activations(1);
    CHECK(nn_bf16_activations() == 1, "nn_set_bf16_activations(1)");
    nn_init(-1);
    CHECK(nn_bf16_activations() == 1, "a later nn_init keeps the setter's value");
    nn_set_bf16_activations(0);
    CHECK(nn_bf16_activations() == 0, "nn_set_bf16_activations(0)");
    printf("# backend: %s\n", nn_backend_name());
    Rng rng = rng_seed(20260507);
    test_constants();
    test_grid(&rng);
    test_unpack();
    test_round_trip(&rng);
    test_layout(&rng);
    return test_summary();
}
