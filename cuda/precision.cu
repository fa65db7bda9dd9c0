// precision.cu: the fp32 <-> bf16 casts of the bf16 (autocast) mode and the bf16 weight cache.
//
// bf16 mode (LOLA_PRECISION=bf16, nn_cuda.h) follows torch.autocast: every GEMM / convolution
// casts its fp32 operands to bf16 right before the call (round to nearest even), multiplies with
// fp32 accumulation, and returns fp32. The casts of activations and gradients go to grow-only
// scratch (LCU_SCR_BF16_*) every call. Weights are cast once and reused while they are current:
//
// Weight cache. A weight w (pointer, length) is cached only when it lies inside a *parameter
// range*, i.e. a range some adamw_update or psgd_clip_update call was given (the optimizer names
// the parameters; scratch like the ViT's per-block theta^T, rewritten by transpose_bcn between
// uses, is never cached). A global `version` counts parameter writes: adamw_update and
// psgd_clip_update bump it, and so does every write into a parameter range by the generic writers
// (nn_to_backend, nn_copy, nn_zero, nn_fill, nn_scale, nn_axpy, nn_add, nn_randn, nn_rows_axpby,
// nn_where and the PSGD ops of psgd.cu: they call lcu_note_write) and
// nn_cuda_params_changed() for writers outside the backend (NCCL). A cached copy is used only if
// the version is unchanged since it was cast; so after any parameter write every weight is cast
// again on its next use. nn_free forgets the ranges and copies inside the freed block (its address
// may come back as an activation). Why this is safe: a parameter can change only through one of
// those writers (the model ops write activations and gradients, never parameters), all on the
// one stream, so a copy cast after the last write equals bf16(w) at every later use until the
// next write. The cache holds at most one bf16 copy of the registered parameters (half their
// bytes). LOLA_BF16_CACHE=0 turns it off (every call casts).
#include <stdlib.h>

#include <unordered_map>
#include <vector>

#include "precision.cuh"

// ---------------------------------------------------------------------------------------------
// Cast kernels (grid-stride; 4 elements per thread step when the pointers allow 128-bit loads)

struct __align__(8) bf16x4 {
    __nv_bfloat162 lo, hi;
};

__global__ void to_bf16_kernel(lcu_bf16 *dst, const float *src, size_t n) {
    GRID_STRIDE(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void to_bf16_x4_kernel(bf16x4 *dst, const float4 *src, size_t n4) {
    GRID_STRIDE(i, n4) {
        float4 v = src[i];
        bf16x4 o;
        o.lo = __floats2bfloat162_rn(v.x, v.y); // .x = first argument (lower address)
        o.hi = __floats2bfloat162_rn(v.z, v.w);
        dst[i] = o;
    }
}
__global__ void from_bf16_kernel(float *dst, const lcu_bf16 *src, size_t n, int accumulate) {
    GRID_STRIDE(i, n) {
        float v = __bfloat162float(src[i]);
        dst[i] = accumulate ? dst[i] + v : v;
    }
}
__global__ void from_bf16_bias_kernel(float *out, const lcu_bf16 *y, const float *bias, size_t n, int C, int HW) {
    GRID_STRIDE(i, n) {
        float v = __bfloat162float(y[i]);
        out[i] = bias ? v + bias[(i / HW) % C] : v;
    }
}
__global__ void bf16_fill_kernel(lcu_bf16 *x, float v, size_t n) {
    GRID_STRIDE(i, n) x[i] = __float2bfloat16_rn(v);
}

void lcu_to_bf16(lcu_bf16 *dst, const float *src, size_t n) {
    if (!n) return;
    size_t n4 = ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) ? n / 4 : 0;
    if (n4) {
        to_bf16_x4_kernel<<<lcu_grid(n4), LCU_THREADS, 0, lcu_stream()>>>((bf16x4 *)dst, (const float4 *)src, n4);
        CUDA_LAUNCH_CHECK();
    }
    size_t done = n4 * 4;
    if (done < n) {
        to_bf16_kernel<<<lcu_grid(n - done), LCU_THREADS, 0, lcu_stream()>>>(dst + done, src + done, n - done);
        CUDA_LAUNCH_CHECK();
    }
}

lcu_bf16 *lcu_bf16_of(int slot, const float *src, size_t n) {
    lcu_bf16 *dst = (lcu_bf16 *)lcu_scratch(slot, (n ? n : 1) * sizeof(lcu_bf16));
    lcu_to_bf16(dst, src, n);
    return dst;
}

void lcu_from_bf16(float *dst, const lcu_bf16 *src, size_t n, int accumulate) {
    if (!n) return;
    from_bf16_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(dst, src, n, accumulate);
    CUDA_LAUNCH_CHECK();
}

void lcu_from_bf16_bias(float *out, const lcu_bf16 *y, const float *bias, size_t n, int C, int HW) {
    if (!n) return;
    from_bf16_bias_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(out, y, bias, n, C, HW);
    CUDA_LAUNCH_CHECK();
}

static size_t bf16_ones_len = 0;
static const void *bf16_ones_ptr = NULL;
const lcu_bf16 *lcu_bf16_ones(size_t n) {
    lcu_bf16 *p = (lcu_bf16 *)lcu_scratch(LCU_SCR_BF16_ONES, (n ? n : 1) * sizeof(lcu_bf16));
    if (p != bf16_ones_ptr) bf16_ones_len = 0, bf16_ones_ptr = p; // the slot grew (new buffer)
    if (n > bf16_ones_len) {
        bf16_fill_kernel<<<lcu_grid(n), LCU_THREADS, 0, lcu_stream()>>>(p, 1.0f, n);
        CUDA_LAUNCH_CHECK();
        bf16_ones_len = n;
    }
    return p;
}

// ---------------------------------------------------------------------------------------------
// Weight cache

namespace {
struct Range {
    uintptr_t lo, hi; // bytes [lo, hi)
};
struct Entry {
    size_t n;         // floats of the source
    lcu_bf16 *dev;    // its bf16 copy (cudaMalloc)
    uint64_t version; // `version` when it was cast
};
std::vector<Range> ranges;
std::unordered_map<const float *, Entry> *cache;
uint64_t version = 1;
size_t cache_bytes = 0, range_bytes = 0;
long n_hits = 0, n_misses = 0, n_fallbacks = 0;
int enabled = -1; // LOLA_BF16_CACHE, read on first use
} // namespace

static int cache_enabled(void) {
    if (enabled < 0) {
        const char *s = getenv("LOLA_BF16_CACHE");
        enabled = !(s && s[0] == '0');
        if (!cache) cache = new std::unordered_map<const float *, Entry>();
    }
    return enabled;
}

// The parameter ranges are kept sorted, disjoint and merged: a new range absorbs every range it
// overlaps or touches. An optimizer that registers each parameter tensor separately (PSGD:
// psgd_clip_update once per tensor, hundreds of adjacent tensors of one buffer) therefore leaves
// one range per buffer, and the lookups below (every op's lcu_note_write) are binary searches.
// Index of the first range that ends after lo (ranges.size() if none).
static size_t first_ending_after(uintptr_t lo) {
    size_t a = 0, b = ranges.size();
    while (a < b) {
        size_t m = (a + b) / 2;
        if (ranges[m].hi > lo) b = m;
        else a = m + 1;
    }
    return a;
}
static int overlaps_params(uintptr_t lo, uintptr_t hi) {
    size_t k = first_ending_after(lo);
    return k < ranges.size() && ranges[k].lo < hi;
}
static int inside_params(uintptr_t lo, uintptr_t hi) {
    size_t k = first_ending_after(lo);
    return k < ranges.size() && ranges[k].lo <= lo && hi <= ranges[k].hi;
}

void lcu_note_params(const float *p, size_t n) {
    version++;
    uintptr_t lo = (uintptr_t)p, hi = lo + n * sizeof(float);
    if (!n || inside_params(lo, hi)) return;
    // Merge with every range that overlaps or touches [lo, hi): ranges [k, j).
    size_t k = first_ending_after(lo);
    if (k > 0 && ranges[k - 1].hi == lo) k--; // touches on the left
    size_t j = k;
    while (j < ranges.size() && ranges[j].lo <= hi) {
        if (ranges[j].lo < lo) lo = ranges[j].lo;
        if (ranges[j].hi > hi) hi = ranges[j].hi;
        range_bytes -= ranges[j].hi - ranges[j].lo;
        j++;
    }
    ranges.erase(ranges.begin() + (long)k, ranges.begin() + (long)j);
    ranges.insert(ranges.begin() + (long)k, Range{lo, hi});
    range_bytes += hi - lo;
}

void lcu_note_write(const void *p, size_t n_floats) {
    if (ranges.empty() || !n_floats) return;
    uintptr_t lo = (uintptr_t)p;
    if (overlaps_params(lo, lo + n_floats * sizeof(float))) version++;
}

void lcu_note_free(const void *p, size_t bytes) {
    uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    version++;
    // Remove [lo, hi) from the ranges (a merged range may extend into a neighbouring allocation:
    // that part stays registered).
    std::vector<Range> keep;
    for (const Range &r : ranges) {
        if (r.hi <= lo || hi <= r.lo || lo == hi) {
            keep.push_back(r);
            continue;
        }
        range_bytes -= r.hi - r.lo;
        if (r.lo < lo) keep.push_back(Range{r.lo, lo}), range_bytes += lo - r.lo;
        if (hi < r.hi) keep.push_back(Range{hi, r.hi}), range_bytes += r.hi - hi;
    }
    ranges.swap(keep);
    if (!cache) return;
    for (auto it = cache->begin(); it != cache->end();) {
        uintptr_t s = (uintptr_t)it->first;
        if (s >= lo && s < hi) {
            lcu_device_free(it->second.dev, it->second.n * sizeof(lcu_bf16));
            cache_bytes -= it->second.n * sizeof(lcu_bf16);
            it = cache->erase(it);
        } else {
            ++it;
        }
    }
}

extern "C" void nn_cuda_params_changed(void) { version++; }

extern "C" void nn_cuda_bf16_cache_stats(long *hits, long *misses) {
    if (hits) *hits = n_hits;
    if (misses) *misses = n_misses;
}

size_t lcu_bf16_cache_bytes(void) { return cache_bytes; }

void lcu_count_precision_fallback(void) { n_fallbacks++; }
extern "C" long nn_cuda_precision_fallback_calls(void) { return n_fallbacks; }

const lcu_bf16 *lcu_bf16_weight(const float *w, size_t n) {
    uintptr_t lo = (uintptr_t)w, hi = lo + n * sizeof(float);
    if (!cache_enabled() || !n || !inside_params(lo, hi)) {
        n_misses++;
        return lcu_bf16_of(LCU_SCR_BF16_W, w, n);
    }
    auto it = cache->find(w);
    if (it != cache->end() && it->second.n == n) {
        if (it->second.version == version) {
            n_hits++;
            return it->second.dev;
        }
    } else {
        if (it != cache->end()) { // same pointer, another length: drop the old copy
            lcu_device_free(it->second.dev, it->second.n * sizeof(lcu_bf16));
            cache_bytes -= it->second.n * sizeof(lcu_bf16);
            cache->erase(it);
        }
        // At most one bf16 copy of the registered parameters (half their bytes).
        if (cache_bytes + n * sizeof(lcu_bf16) > range_bytes / 2) {
            n_misses++;
            return lcu_bf16_of(LCU_SCR_BF16_W, w, n);
        }
        Entry e = {n, (lcu_bf16 *)lcu_device_malloc(n * sizeof(lcu_bf16), "a cached bf16 weight"), 0};
        cache_bytes += n * sizeof(lcu_bf16);
        it = cache->emplace(w, e).first;
    }
    n_misses++;
    lcu_to_bf16(it->second.dev, w, n);
    it->second.version = version;
    return it->second.dev;
}
