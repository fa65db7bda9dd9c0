// emu_cublaslt.cpp: a mock of cuBLASLt (emu_cublaslt.h) for the host emulation, so that lt.cu's
// host code (the row-major -> column-major mapping, layouts, transposes, epilogues, alignment
// preferences, plan cache, workspace, fallback to cuBLAS) runs on a machine without a GPU.
//
// * Attributes: every Set*Attribute checks the attribute's size as cublasLt.h defines it (int32
//   transposes, uint32 epilogue and alignments, uint64 workspace, a pointer for the bias).
// * Heuristic: validates the descriptor and the four layouts (column-major only; A and B fp32 or
//   bf16 alike; C and D fp32 and identical; op(A) m x k, op(B) k x n, D m x n; ld >= rows; compute
//   32F / 32F_PEDANTIC / 32F_FAST_TF32 with fp32 scale, FAST_TF32 only for fp32 operands; bias
//   type fp32) and offers at most two algorithms: a tiled tensor-core one that needs 16-byte
//   aligned A, B, C, D (and bias, whose alignment the heuristic reads from the BIAS_POINTER
//   attribute) and a workspace (within MAX_WORKSPACE_BYTES), offered only when the
//   MIN_ALIGNMENT_*_BYTES preferences (default 256: cuBLASLt assumes aligned pointers unless told)
//   promise it; and a slow one that needs only element alignment and no workspace.
// * Matmul: the algorithm must come from a heuristic for this very configuration; every pointer
//   must be device memory for its layout's extent and aligned as the algorithm needs (a pointer
//   less aligned than the preferences promised is an API misuse); D overlaps neither A nor B
//   (C == D with the same layout is allowed); workspace at least the algorithm's, in device memory.
//   Then D = alpha op(A) op(B) + beta C (beta = 0: C not read), exact products in double (fp32
//   operands rounded to TF32 with COMPUTE_32F_FAST_TF32), plus the epilogue: BIAS adds bias[i] to
//   row i of D (m entries); BGRADB writes bias[j] = sum_k op(B)[k, j] (n entries, the columns of
//   D), BGRADA bias[i] = sum_k op(A)[i, k] (m entries), as cublasLt.h documents them.
// * Failure injection, EMU_LT_FAIL: noalgo (the heuristic returns no algorithm), heuristic (it
//   returns NOT_SUPPORTED), matmul (every matmul returns NOT_SUPPORTED before computing), create
//   (cublasLtCreate fails): lt.cu must fall back to cuBLAS.
#include <set>
#include <string>
#include <vector>

#include "emu_cublaslt.h"

#include "common.h"

bool emu_is_device_range(const void *p, size_t bytes);
void emu_gemm_ref(bool ta, bool tb, int m, int n, int k, double alpha, const void *A, cudaDataType_t at, long long lda,
                  const void *B, cudaDataType_t bt, long long ldb, double beta, const float *Cin, long long ldcin,
                  float *C, long long ldc, int bits);

struct EmuLtHandle {
    int unused;
};
struct EmuLtDesc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N, transc = CUBLAS_OP_N, pointer_mode = 0;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    void *bias = nullptr;
    int32_t bias_type = -1;
};
struct EmuLtLayout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t order = CUBLASLT_ORDER_COL, batch = 1;
    int64_t batch_stride = 0;
};
struct EmuLtPref {
    uint64_t max_ws = 0;
    uint32_t al[4] = {256, 256, 256, 256}; // A, B, C, D
};

namespace {
EmuLtHandle the_handle;
std::set<const void *> &live() {
    static std::set<const void *> &s = *new std::set<const void *>;
    return s;
}
struct Modes {
    bool noalgo = false, heuristic = false, matmul = false, create = false;
};
const Modes &modes() {
    static Modes m = [] {
        Modes r;
        const char *s = getenv("EMU_LT_FAIL");
        std::string t = s ? s : "";
        for (size_t p = 0; p < t.size();) {
            size_t e = t.find(',', p);
            if (e == std::string::npos) e = t.size();
            std::string w = t.substr(p, e - p);
            if (w == "noalgo") r.noalgo = true;
            else if (w == "heuristic") r.heuristic = true;
            else if (w == "matmul") r.matmul = true;
            else if (w == "create") r.create = true;
            else if (!w.empty() && w != "none")
                lola_die("EMU_LT_FAIL: unknown mode '%s' (noalgo, heuristic, matmul, create, none)", w.c_str());
            p = e + 1;
        }
        return r;
    }();
    return m;
}
long n_heur, n_matmul, n_bias, n_bgradb, n_bgrada, n_tf32, n_bf16, n_exact, n_slow_algo;
const uint64_t MAGIC = 0x4c544d4f434b3031ULL; // "LTMOCK01"

bool alive(const void *p, const char *fn, const char *what) {
    if (p && live().count(p)) return true;
    emu_api_error("%s: %s %p was not created (or was destroyed)", fn, what, p);
    return false;
}
size_t tsize(cudaDataType_t t) { return t == CUDA_R_16BF || t == CUDA_R_16F ? 2 : 4; }
size_t extent(const EmuLtLayout &l) { return l.rows && l.cols ? (size_t)(l.cols - 1) * l.ld + l.rows : 0; }
unsigned align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}
bool has_bias(uint32_t e) { return e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_BGRADA || e == CUBLASLT_EPILOGUE_BGRADB; }

struct Shape {
    int m, n, k;
};
// Validates a descriptor with its four layouts (API misuse -> reported); fills the GEMM shape.
cublasStatus_t check(const char *fn, const EmuLtDesc *d, const EmuLtLayout *a, const EmuLtLayout *b,
                     const EmuLtLayout *c, const EmuLtLayout *dd, Shape *s) {
    if (!alive(d, fn, "matmul descriptor") || !alive(a, fn, "layout A") || !alive(b, fn, "layout B") ||
        !alive(c, fn, "layout C") || !alive(dd, fn, "layout D"))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (a->order != CUBLASLT_ORDER_COL || b->order != CUBLASLT_ORDER_COL || c->order != CUBLASLT_ORDER_COL ||
        dd->order != CUBLASLT_ORDER_COL || a->batch != 1 || b->batch != 1 || c->batch != 1 || dd->batch != 1) {
        emu_api_error("%s: only column-major, unbatched layouts are emulated", fn);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (a->type != b->type || (a->type != CUDA_R_32F && a->type != CUDA_R_16BF) || c->type != CUDA_R_32F ||
        dd->type != CUDA_R_32F) {
        emu_api_error("%s: types A %d B %d C %d D %d (emulated: fp32 or bf16 A = B, fp32 C and D)", fn, a->type,
                      b->type, c->type, dd->type);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if ((d->compute != CUBLAS_COMPUTE_32F && d->compute != CUBLAS_COMPUTE_32F_PEDANTIC &&
         d->compute != CUBLAS_COMPUTE_32F_FAST_TF32) || d->scale != CUDA_R_32F) {
        emu_api_error("%s: compute type %d, scale type %d", fn, d->compute, d->scale);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (d->compute == CUBLAS_COMPUTE_32F_FAST_TF32 && a->type != CUDA_R_32F) {
        emu_api_error("%s: CUBLAS_COMPUTE_32F_FAST_TF32 with bf16 operands", fn);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (d->transc != CUBLAS_OP_N || d->pointer_mode != 0 || (d->transa != CUBLAS_OP_N && d->transa != CUBLAS_OP_T) ||
        (d->transb != CUBLAS_OP_N && d->transb != CUBLAS_OP_T)) {
        emu_api_error("%s: transa %d transb %d transc %d pointer mode %d", fn, d->transa, d->transb, d->transc,
                      d->pointer_mode);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (d->epilogue != CUBLASLT_EPILOGUE_DEFAULT && !has_bias(d->epilogue)) {
        emu_api_error("%s: epilogue %u is not emulated", fn, d->epilogue);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (has_bias(d->epilogue) && d->bias_type != -1 && d->bias_type != CUDA_R_32F) {
        emu_api_error("%s: bias data type %d (the output type, fp32, is emulated)", fn, d->bias_type);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    int m = (int)dd->rows, n = (int)dd->cols;
    int am = (int)(d->transa == CUBLAS_OP_N ? a->rows : a->cols), ak = (int)(d->transa == CUBLAS_OP_N ? a->cols : a->rows);
    int bk = (int)(d->transb == CUBLAS_OP_N ? b->rows : b->cols), bn = (int)(d->transb == CUBLAS_OP_N ? b->cols : b->rows);
    if (am != m || bn != n || ak != bk || c->rows != dd->rows || c->cols != dd->cols || c->ld != dd->ld) {
        emu_api_error("%s: shapes do not agree: op(A) %d x %d, op(B) %d x %d, C %llu x %llu (ld %lld), D %d x %d "
                      "(ld %lld)", fn, am, ak, bk, bn, (unsigned long long)c->rows, (unsigned long long)c->cols,
                      (long long)c->ld, m, n, (long long)dd->ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (a->ld < (int64_t)(a->rows ? a->rows : 1) || b->ld < (int64_t)(b->rows ? b->rows : 1) ||
        dd->ld < (int64_t)(dd->rows ? dd->rows : 1)) {
        emu_api_error("%s: a leading dimension below the rows: A %lld (%llu rows), B %lld (%llu), D %lld (%llu)", fn,
                      (long long)a->ld, (unsigned long long)a->rows, (long long)b->ld, (unsigned long long)b->rows,
                      (long long)dd->ld, (unsigned long long)dd->rows);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    s->m = m, s->n = n, s->k = ak;
    return CUBLAS_STATUS_SUCCESS;
}
uint64_t signature(const EmuLtDesc *d, const EmuLtLayout *l[4]) {
    uint64_t h = emu_hash64((uint64_t)d->compute * 131 + (uint64_t)d->scale);
    h = emu_hash64(h ^ ((uint64_t)d->transa << 8 | (uint64_t)d->transb << 16 | (uint64_t)d->epilogue << 24));
    h = emu_hash64(h ^ (uint64_t)(uint32_t)d->bias_type);
    for (int i = 0; i < 4; i++) {
        h = emu_hash64(h ^ (uint64_t)l[i]->type ^ l[i]->rows << 8);
        h = emu_hash64(h ^ l[i]->cols ^ (uint64_t)l[i]->ld << 20);
    }
    return h;
}
// Element alignment of the slow algorithm.
unsigned elem_align(const EmuLtLayout *a) { return (unsigned)tsize(a->type); }
size_t fast_ws(const Shape &s) { return ((size_t)256 << 10) + (size_t)64 * (s.m + s.n); }
} // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (modes().create) return CUBLAS_STATUS_NOT_INITIALIZED;
    *h = &the_handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t computeType,
                                        cudaDataType_t scaleType) {
    if (!d) return CUBLAS_STATUS_INVALID_VALUE;
    *d = new EmuLtDesc();
    (*d)->compute = computeType, (*d)->scale = scaleType;
    live().insert(*d);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    if (!d) return CUBLAS_STATUS_SUCCESS;
    if (!live().erase(d)) {
        emu_api_error("cublasLtMatmulDescDestroy: %p not created", (void *)d);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    const char *fn = "cublasLtMatmulDescSetAttribute";
    if (!alive(d, fn, "matmul descriptor") || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    size_t want = attr == CUBLASLT_MATMUL_DESC_BIAS_POINTER ? sizeof(void *) : 4;
    if (size != want) {
        emu_api_error("%s: attribute %d given %zu bytes, cublasLt.h defines %zu", fn, attr, size, want);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: memcpy(&d->compute, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: memcpy(&d->scale, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: memcpy(&d->pointer_mode, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_TRANSA: memcpy(&d->transa, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: memcpy(&d->transb, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_TRANSC: memcpy(&d->transc, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: memcpy(&d->epilogue, buf, 4); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: memcpy(&d->bias, buf, sizeof(void *)); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: memcpy(&d->bias_type, buf, 4); break;
    default: emu_api_error("%s: attribute %d is not emulated", fn, attr); return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (!l) return CUBLAS_STATUS_INVALID_VALUE;
    if (ld < 0 || rows > (1u << 31) || cols > (1u << 31)) {
        emu_api_error("cublasLtMatrixLayoutCreate: rows %llu cols %llu ld %lld", (unsigned long long)rows,
                      (unsigned long long)cols, (long long)ld);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    *l = new EmuLtLayout();
    (*l)->type = type, (*l)->rows = rows, (*l)->cols = cols, (*l)->ld = ld;
    live().insert(*l);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    if (!l) return CUBLAS_STATUS_SUCCESS;
    if (!live().erase(l)) {
        emu_api_error("cublasLtMatrixLayoutDestroy: %p not created", (void *)l);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size) {
    const char *fn = "cublasLtMatrixLayoutSetAttribute";
    if (!alive(l, fn, "layout") || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    size_t want = attr == CUBLASLT_MATRIX_LAYOUT_ROWS || attr == CUBLASLT_MATRIX_LAYOUT_COLS ||
                          attr == CUBLASLT_MATRIX_LAYOUT_LD || attr == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET
                      ? 8 : 4;
    if (size != want) {
        emu_api_error("%s: attribute %d given %zu bytes, cublasLt.h defines %zu", fn, attr, size, want);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: memcpy(&l->type, buf, 4); break;
    case CUBLASLT_MATRIX_LAYOUT_ORDER: memcpy(&l->order, buf, 4); break;
    case CUBLASLT_MATRIX_LAYOUT_ROWS: memcpy(&l->rows, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_COLS: memcpy(&l->cols, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_LD: memcpy(&l->ld, buf, 8); break;
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: memcpy(&l->batch, buf, 4); break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: memcpy(&l->batch_stride, buf, 8); break;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    *p = new EmuLtPref();
    live().insert(*p);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    if (!p) return CUBLAS_STATUS_SUCCESS;
    if (!live().erase(p)) {
        emu_api_error("cublasLtMatmulPreferenceDestroy: %p not created", (void *)p);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size) {
    const char *fn = "cublasLtMatmulPreferenceSetAttribute";
    if (!alive(p, fn, "preference") || !buf) return CUBLAS_STATUS_INVALID_VALUE;
    size_t want = attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES ? 8 : 4;
    if (size != want) {
        emu_api_error("%s: attribute %d given %zu bytes, cublasLt.h defines %zu", fn, attr, size, want);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_SEARCH_MODE: break;
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: memcpy(&p->max_ws, buf, 8); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: memcpy(&p->al[0], buf, 4); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: memcpy(&p->al[1], buf, 4); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: memcpy(&p->al[2], buf, 4); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: memcpy(&p->al[3], buf, 4); break;
    default: emu_api_error("%s: attribute %d is not emulated", fn, attr); return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t results[],
                                              int *returned) {
    const char *fn = "cublasLtMatmulAlgoGetHeuristic";
    if (h != &the_handle || !alive(pref, fn, "preference") || requested <= 0 || !results || !returned) {
        emu_api_error("%s: handle %p, preference %p, requested %d, results %p, returned %p", fn, (void *)h,
                      (void *)pref, requested, (void *)results, (void *)returned);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    Shape s;
    cublasStatus_t st = check(fn, d, a, b, c, dd, &s);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    n_heur++;
    *returned = 0;
    if (modes().heuristic) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (modes().noalgo) return CUBLAS_STATUS_SUCCESS;
    const EmuLtLayout *ls[4] = {a, b, c, dd};
    uint64_t sig = signature(d, ls);
    bool bias_al16 = !has_bias(d->epilogue) || !d->bias || align_of(d->bias) >= 16;
    bool fast = pref->al[0] >= 16 && pref->al[1] >= 16 && pref->al[2] >= 16 && pref->al[3] >= 16 && bias_al16 &&
                pref->max_ws >= fast_ws(s);
    int out = 0;
    auto add = [&](unsigned req, size_t ws, float waves) {
        if (out >= requested) return;
        cublasLtMatmulHeuristicResult_t &r = results[out++];
        memset(&r, 0, sizeof r);
        r.algo.data[0] = MAGIC, r.algo.data[1] = req, r.algo.data[2] = sig, r.algo.data[3] = ws;
        r.workspaceSize = ws;
        r.state = CUBLAS_STATUS_SUCCESS;
        r.wavesCount = waves;
    };
    if (fast) add(16, fast_ws(s), 0.8f);
    add(elem_align(a), 0, 2.5f);
    *returned = out;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *ws,
                              size_t wsSize, cudaStream_t) {
    const char *fn = "cublasLtMatmul";
    if (h != &the_handle) {
        emu_api_error("%s: handle %p is not the one cublasLtCreate returned", fn, (void *)h);
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    Shape s;
    cublasStatus_t st = check(fn, d, Adesc, Bdesc, Cdesc, Ddesc, &s);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
    const EmuLtLayout *ls[4] = {Adesc, Bdesc, Cdesc, Ddesc};
    if (!algo || algo->data[0] != MAGIC || algo->data[2] != signature(d, ls)) {
        emu_api_error("%s: the algorithm does not come from a heuristic for this descriptor and these layouts", fn);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!alpha || !beta || emu_is_device_range(alpha, 4) || emu_is_device_range(beta, 4)) {
        emu_api_error("%s: alpha / beta must be host pointers (pointer mode host)", fn);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float a = *(const float *)alpha, b = *(const float *)beta;
    size_t ea = extent(*Adesc) * tsize(Adesc->type), eb = extent(*Bdesc) * tsize(Bdesc->type);
    size_t ec = extent(*Cdesc) * 4, ed = extent(*Ddesc) * 4;
    size_t nbias = d->epilogue == CUBLASLT_EPILOGUE_BGRADB ? (size_t)s.n : (size_t)s.m;
    struct {
        const void *p;
        size_t bytes;
        const char *name;
    } ops[5] = {{A, s.k ? ea : 0, "A"}, {B, s.k ? eb : 0, "B"}, {C, b != 0.0f ? ec : 0, "C"}, {D, ed, "D"},
                {d->bias, has_bias(d->epilogue) ? nbias * 4 : 0, "bias"}};
    unsigned req = (unsigned)algo->data[1];
    for (auto &o : ops) {
        if (!o.bytes) continue;
        if (!o.p || !emu_is_device_range(o.p, o.bytes)) {
            emu_api_error("%s: %s [%p, +%zu bytes) (its layout's extent) is not inside one device buffer", fn, o.name,
                          o.p, o.bytes);
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        if (align_of(o.p) < req) {
            emu_api_error("%s: %s at %p is %u-byte aligned, the algorithm needs %u (the heuristic was promised "
                          "better alignment)", fn, o.name, o.p, align_of(o.p), req);
            return CUBLAS_STATUS_NOT_SUPPORTED;
        }
    }
    if (emu_overlap(D, ed, A, ops[0].bytes) || emu_overlap(D, ed, B, ops[1].bytes) ||
        (C != D && emu_overlap(D, ed, C, ops[2].bytes)) || emu_overlap(d->bias, ops[4].bytes, D, ed) ||
        emu_overlap(d->bias, ops[4].bytes, A, ops[0].bytes) || emu_overlap(d->bias, ops[4].bytes, B, ops[1].bytes)) {
        emu_api_error("%s: D or the bias vector overlaps an input", fn);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    size_t need = (size_t)algo->data[3];
    if (wsSize < need || (need && (!ws || !emu_is_device_range(ws, need)))) {
        emu_api_error("%s: workspace %p of %zu bytes; the algorithm needs %zu in device memory", fn, ws, wsSize, need);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (modes().matmul) return CUBLAS_STATUS_NOT_SUPPORTED;
    n_matmul++;
    n_slow_algo += req < 16;
    int bits = d->compute == CUBLAS_COMPUTE_32F_FAST_TF32 ? 10 : 23;
    if (Adesc->type == CUDA_R_16BF) n_bf16++;
    else if (bits < 23) n_tf32++;
    else n_exact++;
    if (need) memset(ws, 0x5A, need); // the algorithm's scratch
    bool ta = d->transa == CUBLAS_OP_T, tb = d->transb == CUBLAS_OP_T;
    emu_gemm_ref(ta, tb, s.m, s.n, s.k, a, A, Adesc->type, Adesc->ld, B, Bdesc->type, Bdesc->ld, b, (const float *)C,
                 Cdesc->ld, (float *)D, Ddesc->ld, bits);
    float *bias = (float *)d->bias;
    auto opv = [&](const void *p, const EmuLtLayout *l, bool t, int r, int c) { // op(X)[r, c], rounded as the product
        size_t off = t ? c + (size_t)r * l->ld : r + (size_t)c * l->ld;
        float v = l->type == CUDA_R_16BF ? __bfloat162float(((const __nv_bfloat16 *)p)[off]) : ((const float *)p)[off];
        return bits < 23 ? emu_round_mantissa(v, bits) : v;
    };
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        n_bias++;
        for (int j = 0; j < s.n; j++)
            for (int i = 0; i < s.m; i++) ((float *)D)[i + (size_t)j * Ddesc->ld] += bias[i];
    } else if (d->epilogue == CUBLASLT_EPILOGUE_BGRADB) {
        n_bgradb++;
        for (int j = 0; j < s.n; j++) {
            double t = 0.0;
            for (int l = 0; l < s.k; l++) t += opv(B, Bdesc, tb, l, j);
            bias[j] = (float)t;
        }
    } else if (d->epilogue == CUBLASLT_EPILOGUE_BGRADA) {
        n_bgrada++;
        for (int i = 0; i < s.m; i++) {
            double t = 0.0;
            for (int l = 0; l < s.k; l++) t += opv(A, Adesc, ta, i, l);
            bias[i] = (float)t;
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

// For the report (emu_core.cpp).
struct EmuLtStats {
    long heuristics, matmuls, bias, bgradb, bgrada, tf32, bf16, exact, slow;
};
void emu_lt_stats(EmuLtStats *s) {
    s->heuristics = n_heur, s->matmuls = n_matmul, s->bias = n_bias, s->bgradb = n_bgradb, s->bgrada = n_bgrada;
    s->tf32 = n_tf32, s->bf16 = n_bf16, s->exact = n_exact, s->slow = n_slow_algo;
}
