// lt.cu: cuBLASLt GEMMs with epilogues (bias add; bias gradient), used by linear_forward /
// linear_backward in tf32 and bf16 mode (and in fp32 mode with LOLA_GEMM=lt, exact fp32 compute).
//
// Row-major <-> cuBLASLt (column-major) mapping, the same as linear.cu's: the row-major product
//   C (M x N) = op(A) (M x K) . op(B) (K x N)
// is the column-major product C^T (N x M) = op(B)^T . op(A)^T. So cuBLASLt gets
//   Lt A := our B (transposed iff tb), Lt B := our A (transposed iff ta), m = N, n = M, k = K,
// with layouts (column-major rows x cols, leading dimension) of the *stored* matrices
//   Lt A: tb ? (K x N) : (N x K), ld ldb;  Lt B: ta ? (M x K) : (K x M), ld lda;  C = D: (N x M), ld ldc.
// Epilogues in our row-major terms:
//   LCU_EPI_BIAS     CUBLASLT_EPILOGUE_BIAS adds a vector along the m rows of D, i.e. along our N
//                    columns: C[i, j] = ... + bias[j] (the Linear bias, broadcast over the M rows).
//   LCU_EPI_BGRAD_A  CUBLASLT_EPILOGUE_BGRADB writes, per column of D (our row i), the sum over k of
//                    op(Lt B) = op(A)^T, i.e. bias[i] = sum_k op(A)[i, k]. linear_backward's weight
//                    gradient dw (N x K) = dout^T (N x M) . x (M x K) has op(A) = dout^T, so this is
//                    db[n] = sum_m dout[m, n]. (BGRADA would reduce op(Lt A) = x: not a bias gradient.)
//                    The vector is overwritten (=), and has the output type (fp32).
//
// Plans: one per (shape, leading dimensions, transposes, operand type, compute type, epilogue,
// pointer alignments), holding the descriptors and the first heuristic algorithm
// (cublasLtMatmulAlgoGetHeuristic) that fits the workspace (LT_WS_BYTES, allocated once). The
// heuristic assumes 256-byte aligned pointers unless told otherwise, and our operands can sit at
// any float offset of a parameter or activation buffer: the actual alignments are passed as
// CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES and are part of the plan key. Any failure (no
// algorithm, an error status) marks the plan failed: lcu_lt_gemm returns 0 for that shape from
// then on and the caller runs cuBLAS instead (one warning per run, counted in
// nn_cuda_precision_fallback_calls).
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "precision.cuh"

#define LT_WS_BYTES ((size_t)32 << 20)

namespace {
struct LtKey {
    int ta, tb, M, N, K, lda, ldb, ldc, epi, dt, ct;
    unsigned al_a, al_b, al_c, al_bias;
};
struct LtPlan {
    LtKey key;
    int failed;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    size_t ws;
};
std::vector<LtPlan *> plans;
cublasLtHandle_t lt_handle = NULL;
int lt_state = 0; // 0 not tried, 1 ready, -1 cublasLtCreate failed
int warned = 0;
} // namespace

// Largest power of two (<= 256) dividing the address.
static unsigned align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && a % al) al >>= 1;
    return al;
}

static const char *epi_name(int epi) {
    return epi == LCU_EPI_BIAS ? "bias" : epi == LCU_EPI_BGRAD_A ? "bias-gradient" : "none";
}

static void plan_fail(LtPlan *p, const char *what, cublasStatus_t s) {
    p->failed = 1;
    if (!warned) {
        log_warn("warning: cuBLASLt %s failed for GEMM M=%d N=%d K=%d (%s operands, epilogue %s): %s; using cuBLAS "
                 "for this shape (further fallbacks are silent)\n",
                 what, p->key.M, p->key.N, p->key.K, p->key.dt == CUDA_R_16BF ? "bf16" : "fp32", epi_name(p->key.epi),
                 lcu_cublas_string(s));
        warned = 1;
    }
}

#define TRY_LT(p, what, call)                                                                        \
    do {                                                                                             \
        cublasStatus_t s_ = (call);                                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                           \
            plan_fail(p, what, s_);                                                                  \
            return;                                                                                  \
        }                                                                                            \
    } while (0)

static void plan_build(LtPlan *p, float *bias) {
    const LtKey &k = p->key;
    if (lt_state == 0) {
        lt_state = cublasLtCreate(&lt_handle) == CUBLAS_STATUS_SUCCESS ? 1 : -1;
    }
    if (lt_state < 0) {
        plan_fail(p, "handle creation (cublasLtCreate)", CUBLAS_STATUS_NOT_INITIALIZED);
        return;
    }
    cudaDataType_t dt = (cudaDataType_t)k.dt;
    TRY_LT(p, "descriptor", cublasLtMatmulDescCreate(&p->op, (cublasComputeType_t)k.ct, CUDA_R_32F));
    cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    TRY_LT(p, "descriptor", cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    TRY_LT(p, "descriptor", cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    cublasLtEpilogue_t epi = k.epi == LCU_EPI_BIAS    ? CUBLASLT_EPILOGUE_BIAS
                             : k.epi == LCU_EPI_BGRAD_A ? CUBLASLT_EPILOGUE_BGRADB
                                                        : CUBLASLT_EPILOGUE_DEFAULT;
    TRY_LT(p, "epilogue", cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (k.epi != LCU_EPI_NONE) {
        int32_t bt = CUDA_R_32F;
        TRY_LT(p, "epilogue",
               cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        // The heuristic reads the pointer's alignment from this attribute (set again per call).
        TRY_LT(p, "epilogue",
               cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    TRY_LT(p, "layout", cublasLtMatrixLayoutCreate(&p->la, dt, k.tb ? k.K : k.N, k.tb ? k.N : k.K, k.ldb));
    TRY_LT(p, "layout", cublasLtMatrixLayoutCreate(&p->lb, dt, k.ta ? k.M : k.K, k.ta ? k.K : k.M, k.lda));
    TRY_LT(p, "layout", cublasLtMatrixLayoutCreate(&p->lc, CUDA_R_32F, k.N, k.M, k.ldc));
    cublasLtMatmulPreference_t pref;
    TRY_LT(p, "preference", cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = LT_WS_BYTES;
    uint32_t al_a = k.al_b, al_b = k.al_a, al_c = k.al_c; // Lt A = our B, Lt B = our A
    cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
    cublasLtMatmulHeuristicResult_t res[8];
    int got = 0;
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(lt_handle, p->op, p->la, p->lb, p->lc, p->lc, pref, 8, res, &got);
    cublasLtMatmulPreferenceDestroy(pref);
    if (s != CUBLAS_STATUS_SUCCESS) {
        plan_fail(p, "algorithm heuristics", s);
        return;
    }
    int pick = -1;
    for (int i = 0; i < got && pick < 0; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= LT_WS_BYTES) pick = i;
    if (pick < 0) {
        plan_fail(p, "algorithm heuristics (no algorithm)", CUBLAS_STATUS_NOT_SUPPORTED);
        return;
    }
    p->algo = res[pick].algo;
    p->ws = res[pick].workspaceSize;
    if (lcu_verbose())
        fprintf(stderr,
                "[cuda] cuBLASLt plan M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d %s %s epilogue %s: workspace "
                "%zu B, %.2f waves\n",
                k.M, k.N, k.K, k.ta, k.tb, k.lda, k.ldb, k.ldc, k.dt == CUDA_R_16BF ? "bf16" : "fp32",
                k.ct == CUBLAS_COMPUTE_32F_FAST_TF32 ? "tf32" : "fp32-compute", epi_name(k.epi), p->ws,
                res[pick].wavesCount);
}

static LtPlan *get_plan(const LtKey &key, float *bias) {
    for (LtPlan *p : plans)
        if (!memcmp(&p->key, &key, sizeof key)) return p;
    LtPlan *p = (LtPlan *)calloc(1, sizeof(LtPlan));
    if (!p) lola_die("out of host memory for a cuBLASLt plan");
    p->key = key;
    plan_build(p, bias);
    plans.push_back(p);
    return p;
}

int lcu_lt_gemm(int ta, int tb, int M, int N, int K, float alpha, const void *A, int lda, const void *B, int ldb,
                cudaDataType_t dt, cublasComputeType_t ct, float beta, float *C, int ldc, int epi, float *bias) {
    if (M <= 0 || N <= 0 || K <= 0) lola_die("lcu_lt_gemm: bad shape M=%d N=%d K=%d", M, N, K);
    if ((epi != LCU_EPI_NONE) != (bias != NULL)) lola_die("lcu_lt_gemm: epilogue %s needs a bias pointer", epi_name(epi));
    lcu_ensure_init();
    LtKey key;
    memset(&key, 0, sizeof key); // the key is compared with memcmp: no indeterminate padding
    key.ta = ta, key.tb = tb, key.M = M, key.N = N, key.K = K, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    key.epi = epi, key.dt = (int)dt, key.ct = (int)ct;
    key.al_a = align_of(A), key.al_b = align_of(B), key.al_c = align_of(C), key.al_bias = bias ? align_of(bias) : 0;
    LtPlan *p = get_plan(key, bias);
    if (p->failed) {
        lcu_count_precision_fallback();
        return 0;
    }
    if (epi != LCU_EPI_NONE) {
        cublasStatus_t s = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
        if (s != CUBLAS_STATUS_SUCCESS) {
            plan_fail(p, "epilogue", s);
            lcu_count_precision_fallback();
            return 0;
        }
    }
    void *ws = lcu_scratch(LCU_SCR_LT_WS, LT_WS_BYTES);
    // Lt A = our B, Lt B = our A (see the top of this file); C is read (beta) and written (D).
    cublasStatus_t s = cublasLtMatmul(lt_handle, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc, &p->algo,
                                      ws, LT_WS_BYTES, lcu_stream());
    if (s != CUBLAS_STATUS_SUCCESS) {
        plan_fail(p, "matmul", s);
        lcu_count_precision_fallback();
        return 0;
    }
    return 1;
}
