// bf16.c: bf16 activation storage (nn.h "bf16 activation storage"): nn_pack_bf16 / nn_unpack_bf16.
// The switch nn_bf16_activations / nn_set_bf16_activations lives with the other init state in
// memory.c (LOLA_ACTIVATIONS).
//
// bf16 is the upper half of the IEEE fp32 pattern (1 sign, 8 exponent, 7 mantissa bits). Packing
// rounds to nearest, ties to even, on the bit pattern u of the float:
//     bf16 = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
// i.e. add just under half an ulp of the result, plus one when the kept part is odd, and truncate.
// That is exact round-to-nearest-even for every non-NaN input, finite or not: subnormals round like
// normals (their pattern is a linear fixed-point scale), a carry out of the mantissa bumps the
// exponent (1.9961 -> 2), the largest floats carry into the all-ones exponent with a zero
// mantissa, which is +-inf (overflow to inf, as IEEE round-to-nearest does), and +-inf itself has
// a zero low half so it stays inf. A NaN would round its payload (a NaN whose payload sits only
// in the low 16 bits would even become inf, 0x7F800001 -> 0x7F80), so every NaN, any sign and
// payload, becomes the canonical 0x7FFF instead: what cuda_bf16.hpp's software __float2bfloat16_rn
// returns and what the CUDA backend's kernel (cuda/bf16.cu) computes with this same integer
// formula, so both backends give the same bits for every input. (torch's conversion gives other
// NaN patterns; any NaN stays a NaN either way. Its non-NaN results equal these: tests/test_bf16.c.)
// Unpacking is exact: the float with pattern bf16 << 16 (NaN payloads and signs kept).
// Integer operations only, so the result does not depend on FTZ/DAZ or -ffast-math.
#include <string.h>

#include "cpu.h"
#include "nn.h"

static inline uint16_t bf16_of_bits(uint32_t u) {
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFFu; // NaN (exponent all ones, mantissa != 0)
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

CPU_KERNEL static void pack_kernel(uint16_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        dst[i] = bf16_of_bits(u);
    }
}

CPU_KERNEL static void unpack_kernel(float *restrict dst, const uint16_t *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

void nn_pack_bf16(uint16_t *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK) pack_kernel(dst + i, src + i, cpu_min_size(CPU_CHUNK, n - i));
}

void nn_unpack_bf16(float *dst, const uint16_t *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_PAR_MIN)
    for (size_t i = 0; i < n; i += CPU_CHUNK) unpack_kernel(dst + i, src + i, cpu_min_size(CPU_CHUNK, n - i));
}
