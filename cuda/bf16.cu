// bf16.cu: bf16 activation storage (nn.h "bf16 activation storage"): nn_pack_bf16 /
// nn_unpack_bf16 on the device. The switch (nn_bf16_activations, LOLA_ACTIVATIONS) is in memory.cu
// with the other switches.
//
// Bit-identical to the CPU backend (src/cpu/bf16.c) for every input by construction: the same
// integer formula on the fp32 bit pattern, not __float2bfloat16_rn. Round to nearest even:
//     bf16 = (u + 0x7FFF + ((u >> 16) & 1)) >> 16,   every NaN -> 0x7FFF,
// which also rounds subnormals exactly, carries into the exponent, overflows to +-inf and keeps
// +-inf (see src/cpu/bf16.c). The hardware conversion (cvt.rn.bf16.f32, what __float2bfloat16_rn
// compiles to from sm_80) rounds to nearest even too, but its exact bits for NaN inputs could not
// be compared with the CPU's here (no GPU), and identity by construction needs no such check; the
// cost is a few integer instructions in a memory-bound kernel. (0x7FFF is also what cuda_bf16.hpp's
// software path returns for NaN.) tests/gpu/test_gpu_ops.c section bf16_storage checks it bit for
// bit against the CPU backend.
// Unpack: the float whose pattern is bf16 << 16 (exact, NaN payloads kept).
//
// Layout: grid-stride kernels; 4 elements per thread step (16-byte float loads/stores, 8-byte
// bf16 loads/stores) when both pointers are aligned for that, else one element per step (any
// element offset and any n work).
#include "cuda_common.cuh"
#include "precision.cuh" // lcu_note_write (bf16 weight cache bookkeeping)

__device__ __forceinline__ unsigned int bf16_bits_of(unsigned int u) {
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFFu; // NaN
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

__global__ void pack_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] = (uint16_t)bf16_bits_of(__float_as_uint(src[i]));
}
// n4 groups of 4: src 16-byte aligned, dst 8-byte aligned. uint2.x holds elements 0, 1 (little
// endian: element 0 in the low half), .y elements 2, 3.
__global__ void pack_bf16_x4_kernel(uint2 *dst, const float4 *src, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 v = src[i];
        uint2 o;
        o.x = bf16_bits_of(__float_as_uint(v.x)) | bf16_bits_of(__float_as_uint(v.y)) << 16;
        o.y = bf16_bits_of(__float_as_uint(v.z)) | bf16_bits_of(__float_as_uint(v.w)) << 16;
        dst[i] = o;
    }
}

__global__ void unpack_bf16_kernel(float *dst, const uint16_t *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] = __uint_as_float((unsigned int)src[i] << 16);
}
// n4 groups of 4: src 8-byte aligned, dst 16-byte aligned.
__global__ void unpack_bf16_x4_kernel(float4 *dst, const uint2 *src, size_t n4) {
    GRID_STRIDE(i, n4) {
        uint2 v = src[i];
        float4 o;
        o.x = __uint_as_float(v.x << 16);
        o.y = __uint_as_float(v.x & 0xFFFF0000u);
        o.z = __uint_as_float(v.y << 16);
        o.w = __uint_as_float(v.y & 0xFFFF0000u);
        dst[i] = o;
    }
}

extern "C" void nn_pack_bf16(uint16_t *dst, const float *src, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(dst, (n + 1) / 2); // [dst, dst + n) in floats, rounded up
    size_t n4 = ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) ? n / 4 : 0;
    if (n4) {
        pack_bf16_x4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((uint2 *)dst, (const float4 *)src, n4);
        CUDA_LAUNCH_CHECK();
    }
    size_t done = n4 * 4;
    if (done < n) {
        pack_bf16_kernel<<<lcu_grid(n - done), LCU_THREADS, 0, lcu_stream()>>>(dst + done, src + done, n - done);
        CUDA_LAUNCH_CHECK();
    }
}

extern "C" void nn_unpack_bf16(float *dst, const uint16_t *src, size_t n) {
    if (!n) return;
    lcu_ensure_init();
    lcu_note_write(dst, n);
    size_t n4 = ((uintptr_t)src % 8 == 0 && (uintptr_t)dst % 16 == 0) ? n / 4 : 0;
    if (n4) {
        unpack_bf16_x4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((float4 *)dst, (const uint2 *)src, n4);
        CUDA_LAUNCH_CHECK();
    }
    size_t done = n4 * 4;
    if (done < n) {
        unpack_bf16_kernel<<<lcu_grid(n - done), LCU_THREADS, 0, lcu_stream()>>>(dst + done, src + done, n - done);
        CUDA_LAUNCH_CHECK();
    }
}
