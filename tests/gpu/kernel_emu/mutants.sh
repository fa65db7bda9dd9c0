#!/usr/bin/env bash
# tests/gpu/kernel_emu/mutants.sh [BUILD_DIR] [NAME...]: shows that the emulated checks bite. Each
# mutant plants one realistic bug in a copy of a kernel or library-calling file (one exact text
# replacement, which must apply once), runs the section that tests that file through run.sh
# (EMU_REPLACE; the optional 7th field adds environment: a failure-injection mode of the mock
# cuDNN / cuBLASLt, report requirements) and expects it to fail; prints which checks caught it
# (with ASAN=1: also AddressSanitizer / UBSan reports). Not part of make test (10-20 s per mutant).
# NAMEs select mutants (default: all). Exit status 0 when every mutant was caught.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${1:-$root/build}
shift $(($# > 0 ? 1 : 0))
T=$(mktemp -d "${TMPDIR:-/tmp}/kemu_mutants.XXXXXX")
trap 'rm -rf "$T"' EXIT

# name | file | section | description | old text | new text (\n: newline) [| environment]
mutants=(
"fill_tail|elementwise.cu|blas1|off by one in the scalar tail's launch size of nn_fill (one element too many)|x + 4 * n4, value, n - 4 * n4);|x + 4 * n4, value, n - 4 * n4 + 1);"
"vrmse_bound|loss.cu|losses|off by one in a block-stride loop bound of vrmse_kernel (i <= HW: reads the next row)|for (int i = threadIdx.x; i < HW; i += blockDim.x) s += t[i];|for (int i = threadIdx.x; i <= HW; i += blockDim.x) s += t[i];"
"transpose_sync|image.cu|image|missing __syncthreads between the shared-memory tile's writes and reads (transpose_kernel)|    __syncthreads();\n    for (int dy = threadIdx.y; dy < TT; dy += blockDim.y) {\n        int n = n0 + dy|    for (int dy = threadIdx.y; dy < TT; dy += blockDim.y) {\n        int n = n0 + dy"
"transpose_index|image.cu|image|wrong shared-memory index: the tile read untransposed (tile[dy][threadIdx.x])|ob[(size_t)n * C + c] = tile[threadIdx.x][dy];|ob[(size_t)n * C + c] = tile[dy][threadIdx.x];"
"ln_channel_stride|image.cu|image|wrong channel stride in layernorm_channels_forward's mean (xp[c] instead of xp[c * HW])|for (int c = 0; c < C; c++) s += xp[(size_t)c * HW];|for (int c = 0; c < C; c++) s += xp[c];"
"lnmod_swap|transformer.cu|fused_block_ops|swapped reductions in lnmod_bwd_kernel: da accumulates dout, dc accumulates dout * LN(x)|            acc[d] += g * y;\n            acc[D + d] += g;|            acc[d] += g;\n            acc[D + d] += g * y;"
"gated_part_order|transformer.cu|modulate|partials of gated_bwd_kernel written sample-major, read chunk-major by finish_chunks_kernel|part[(size_t)j * B * D + (size_t)b * D + d] = s;|part[((size_t)b * nch + j) * D + d] = s;"
"ln_lane_exit|transformer.cu|layernorm|idle lanes (lane >= D) leave ln_fwd_kernel before the warp shuffles of the row statistics|    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;\n    if (row >= M) return;\n    const float *xr = x + (size_t)row * D;\n    float mu, r;\n    warp_row_stats(|    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5), lane = threadIdx.x & 31;\n    if (row >= M \|\| lane >= D) return;\n    const float *xr = x + (size_t)row * D;\n    float mu, r;\n    warp_row_stats("
"all_finite_or|elementwise.cu|blas1|nn_all_finite without the block-wide OR: only thread 0's elements are looked at|if (__syncthreads_or(b) && threadIdx.x == 0) *bad = 1;|if (b && threadIdx.x == 0) *bad = 1;"
"all_finite_host|elementwise.cu|blas1|nn_all_finite's flag in host memory (a host int passed to the memset and the kernel)|    int *bad = (int *)lcu_scratch(LCU_SCR_RED, RED_MAX_BLOCKS * sizeof(double));|    int hbad = 0, *bad = &hbad;"
"bf16_lane_order|bf16.cu|bf16_storage|the two bf16 halves of the vectorised pack swapped (element 1 in the low half)|o.x = bf16_bits_of(__float_as_uint(v.x)) \| bf16_bits_of(__float_as_uint(v.y)) << 16;|o.x = bf16_bits_of(__float_as_uint(v.y)) \| bf16_bits_of(__float_as_uint(v.x)) << 16;"
"lnmod_smem|transformer.cu|fused_block_ops|dynamic shared memory of lnmod_bwd_kernel sized for D floats instead of 2 D|    size_t shmem = 2 * (size_t)D * sizeof(float);|    size_t shmem = (size_t)D * sizeof(float);"
"ln_rows|transformer.cu|layernorm|64 rows per block in the LayerNorm kernels: 2048 threads per block, over CUDA's limit|#define LN_ROWS_PER_BLOCK 8|#define LN_ROWS_PER_BLOCK 64"
"perm_war|psgd.cu|psgd|missing __syncthreads at the end of permute_tiled_kernel's tile loop (the next tile's loads overwrite the shared tile while other warps still read it)|                if (r >= R) r -= R, a++;\n            }\n        }\n        __syncthreads();\n    }|                if (r >= R) r -= R, a++;\n            }\n        }\n    }"
"argmax_sync|psgd.cu|psgd|missing __syncthreads before the threads read argmax_copy_kernel's shared result|    __syncthreads();\n    int best = sbest;|    int best = sbest;"
"loss_partials|loss.cu|losses|the host sums one partial too few after pointwise_loss_kernel|return lcu_sum_partials(part, (int)g) / (double)n;|return lcu_sum_partials(part, (int)g - 1) / (double)n;"
# The files that call the libraries (mock cuDNN / cuBLAS / cuBLASLt, libs.sh)
"conv_dw_beta0|conv.cu|conv|the fp32 weight gradient written with beta = 0 instead of accumulated (beta = 1) when dw is aligned|direct ? &one : &zero,|&zero,|EMU_REQUIRE=cudnn"
"conv_cand_stuck|conv.cu|conv|run_dir advances the candidate index but keeps calling the first candidate|        const ConvCand *c = &D->c[D->cur];|        const ConvCand *c = &D->c[0];|EMU_CUDNN_FAIL=first EMU_REQUIRE=cudnn"
"conv_cand_no_advance|conv.cu|conv|run_dir retries a refused candidate without moving on (D->cur never advances)|        D->cur++;\n        if (D->cur == D->n) {|        if (D->cur == D->n) {|EMU_CUDNN_FAIL=first EMU_REQUIRE=cudnn"
"conv_ws_first|conv.cu|conv|after a refusal the next candidate gets the first candidate's workspace size|        void *ws = c->ws ? lcu_scratch(LCU_SCR_CONV_WS, c->ws) : NULL;|        void *ws = D->c[0].ws ? lcu_scratch(LCU_SCR_CONV_WS, D->c[0].ws) : NULL;|EMU_CUDNN_FAIL=first EMU_REQUIRE=cudnn"
"conv_math_unset|conv.cu|conv|the candidate's math type is not set on the descriptor before the call (the plan's TENSOR_OP_MATH stays)|cudnnStatus_t s = cudnnSetConvolutionMathType(p->cd, c->math);|cudnnStatus_t s = CUDNN_STATUS_SUCCESS;|EMU_REQUIRE=cudnn"
"conv_no_align|conv.cu|conv|a misaligned weight goes to cuDNN as it is (the aligned scratch copy skipped)|    if (aligned16(w)) return w;|    return w;|EMU_REQUIRE=cudnn"
"conv_fp32_tf32|conv.cu|conv|fp32 plans keep the perf entry's math type (DEFAULT_MATH allows TF32 on the H200) instead of FMA_MATH|c->math = tf32 ? perf[i].mathType : CUDNN_FMA_MATH;|c->math = tf32 ? perf[i].mathType : CUDNN_DEFAULT_MATH;|EMU_REQUIRE=cudnn"
"conv_det_ignored|conv.cu|conv|LOLA_DETERMINISTIC ignored: the determinism flag of the perf entries is not checked|        if (det && perf[i].determinism != CUDNN_DETERMINISTIC) continue;\n||EMU_REQUIRE=cudnn"
"conv_nongemm_tf32|conv.cu|conv|TF32 / bf16 plans accept non-GEMM algorithms (Winograd, FFT: amplified rounding)|        if (tf32 && !gemm_type(perf[i].algo)) continue;\n||EMU_CUDNN_FAIL=first EMU_REQUIRE=cudnn"
"conv_nhwc_store|conv.cu|conv|the NHWC cast+transpose writes NCHW order (wrong stride) while the descriptors say NHWC|d[(size_t)q * C + c] = __float2bfloat16_rn(tile[threadIdx.x][j]);|d[(size_t)c * P + q] = __float2bfloat16_rn(tile[threadIdx.x][j]);|EMU_REQUIRE=cudnn"
"conv_nhwc_filter|conv.cu|conv|the NHWC plan's filter descriptor says KCRS while the weights are transposed to KRSC|cudnnSetFilter4dDescriptor(p->wd, dt, fmt, p->Cout|cudnnSetFilter4dDescriptor(p->wd, dt, CUDNN_TENSOR_NCHW, p->Cout|EMU_REQUIRE=cudnn"
"conv_nhwc_dx_back|conv.cu|conv|the NHWC dx converted back with channels and pixels swapped|from_bf16_out(p, dx, dxb, NULL, p->B, p->Cin, p->H * p->W, 0);|from_bf16_out(p, dx, dxb, NULL, p->B, p->H * p->W, p->Cin, 0);|EMU_REQUIRE=cudnn"
"conv_bf16_dw_assign|conv.cu|conv|the bf16 weight gradient overwrites dw instead of adding to it|from_bf16_out(p, dw, dwb, NULL, p->Cout, p->Cin, p->K * p->K, 1);|from_bf16_out(p, dw, dwb, NULL, p->Cout, p->Cin, p->K * p->K, 0);|EMU_REQUIRE=cudnn"
"conv_im2col_flip|conv.cu|conv|im2col backward data: the flipped weights are not rotated by 180 degrees|wt[((ci * Cout + co) * K + (K - 1 - ky)) * K + (K - 1 - kx)] = w[i];|wt[((ci * Cout + co) * K + ky) * K + kx] = w[i];|EMU_REQUIRE=cudnn"
"lin_swap_trans|linear.cu|linear|lcu_gemm passes the transposes to cuBLAS unswapped (row-major -> column-major mapping)|CUBLAS_CHECK(cublasSgemm(lcu_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,|CUBLAS_CHECK(cublasSgemm(lcu_cublas(), ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,|EMU_REQUIRE=lt,gemm"
"lin_dx_ld|linear.cu|linear|linear_backward's dx GEMM (cuBLAS path) gives w the leading dimension N instead of K|lcu_gemm_dt(0, 0, M, K, N, 1.0f, G, N, W, K, dt, 0.0f, dx, K);|lcu_gemm_dt(0, 0, M, K, N, 1.0f, G, N, W, N, dt, 0.0f, dx, K);|EMU_REQUIRE=lt,gemm"
"lin_gemmex_ld|linear.cu|linear|lcu_gemm_dt (bf16 GemmEx) swaps the leading dimensions of its operands|&alpha, B, dt, ldb, A, dt, lda,|&alpha, B, dt, lda, A, dt, ldb,|EMU_REQUIRE=lt,gemm"
"lin_db_gemv|linear.cu|linear|the fp32 bias gradient GEMV reduces over the wrong dimension (CUBLAS_OP_T)|cublasSgemv(lcu_cublas(), CUBLAS_OP_N, N, M,|cublasSgemv(lcu_cublas(), CUBLAS_OP_T, N, M,|EMU_REQUIRE=lt,gemm"
"att_out_ld|attention.cu|attention|the fp32 forward writes O with leading dimension 3D instead of D|S, N, NN, V, D3, dh, 0.0f, ob + (size_t)h0 * dh, D, dh, hc);|S, N, NN, V, D3, dh, 0.0f, ob + (size_t)h0 * dh, D3, dh, hc);|EMU_REQUIRE=gemm,batched"
"att_dk_trans|attention.cu|attention|the fp32 backward computes dK = scale dS Q instead of dS^T Q|lcu_gemm_batched(1, 0, N, dh, N, scale, S, N, NN, Q, D3, dh, 0.0f, dK, D3, dh, hc);|lcu_gemm_batched(0, 0, N, dh, N, scale, S, N, NN, Q, D3, dh, 0.0f, dK, D3, dh, hc);|EMU_REQUIRE=gemm,batched"
"att_bf16_v_ld|attention.cu|attention|the bf16 forward reads V with leading dimension D instead of 3D|Pb, N, NN, V, D3, dh, CUDA_R_16BF, 0.0f, ob|Pb, N, NN, V, D, dh, CUDA_R_16BF, 0.0f, ob|EMU_REQUIRE=gemm,batched"
"lt_swap_ab|lt.cu|linear|cublasLtMatmul gets our A and B in row-major order (not swapped for column-major)|&alpha, B, p->la, A, p->lb,|&alpha, A, p->la, B, p->lb,|EMU_REQUIRE=lt,gemm"
"lt_layout|lt.cu|linear|the layout of Lt A ignores the transpose (rows and columns swapped)|cublasLtMatrixLayoutCreate(&p->la, dt, k.tb ? k.K : k.N, k.tb ? k.N : k.K, k.ldb)|cublasLtMatrixLayoutCreate(&p->la, dt, k.tb ? k.N : k.K, k.tb ? k.K : k.N, k.ldb)|EMU_REQUIRE=lt,gemm"
"lt_trans|lt.cu|linear|TRANSA / TRANSB from our ta / tb without the operand swap|cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;|cublasOperation_t opa = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;|EMU_REQUIRE=lt,gemm"
"lt_bgrada|lt.cu|linear|the bias gradient epilogue BGRADA (reduces x) instead of BGRADB (reduces dout)|: k.epi == LCU_EPI_BGRAD_A ? CUBLASLT_EPILOGUE_BGRADB|: k.epi == LCU_EPI_BGRAD_A ? CUBLASLT_EPILOGUE_BGRADA|EMU_REQUIRE=lt,gemm"
"lt_align_pref|lt.cu|linear|the heuristic is told 256-byte alignment whatever the pointers (MIN_ALIGNMENT preferences not from the plan key)|uint32_t al_a = k.al_b, al_b = k.al_a, al_c = k.al_c;|uint32_t al_a = 256, al_b = 256, al_c = 256;|EMU_REQUIRE=lt,gemm"
"prec_x4_halves|precision.cu|linear|the vectorised fp32 -> bf16 cast swaps the two bf16 pairs of a float4|        o.lo = __floats2bfloat162_rn(v.x, v.y); // .x = first argument (lower address)\n        o.hi = __floats2bfloat162_rn(v.z, v.w);|        o.lo = __floats2bfloat162_rn(v.z, v.w);\n        o.hi = __floats2bfloat162_rn(v.x, v.y);|EMU_REQUIRE=lt,gemm"
"prec_cache_stale|precision.cu|bf16_cache|the bf16 weight cache serves a copy cast before the last parameter write|        if (it->second.version == version) {|        if (1) {|EMU_REQUIRE=params"
)

caught=0
missed=0
for m in "${mutants[@]}"; do
    IFS='|' read -r name file section desc old new extra <<<"${m//\\|/$'\x01'}"
    old=${old//$'\x01'/|}
    new=${new//$'\x01'/|}
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    copy=$T/$file
    if ! OLD="$old" NEW="$new" python3 - "$root/cuda/$file" "$copy" <<'EOF'; then
import os, sys
src = open(sys.argv[1]).read()
old, new = os.environ["OLD"].replace("\\n", "\n"), os.environ["NEW"].replace("\\n", "\n")
if src.count(old) != 1:
    raise SystemExit("the mutant's text occurs %d times in %s" % (src.count(old), sys.argv[1]))
open(sys.argv[2], "w").write(src.replace(old, new))
EOF
        echo "ERROR $name: does not apply to cuda/$file"
        missed=$((missed + 1))
        continue
    fi
    # shellcheck disable=SC2086
    EMU_REPLACE="$file=$copy" EMU_ONLY=$section EMU_SELFTEST=0 EMU_COVER= EMU_REQUIRE= \
        env ${extra:-} bash "$here/run.sh" "$B" >"$T/$name.log" 2>&1
    rc=$?
    nfail=$(grep -c '^FAIL ' "$T/$name.log")
    nsan=$(grep -cE 'ERROR: AddressSanitizer|runtime error:' "$T/$name.log") # (ASAN=1)
    if [ $rc -ne 0 ] && [ "$nsan" -gt 0 ]; then
        caught=$((caught + 1))
        echo "CAUGHT $name ($file, section $section): $desc"
        grep -E 'ERROR: AddressSanitizer|runtime error:' "$T/$name.log" | head -1 | cut -c1-160 | sed 's/^/      /'
        grep -E '^    #[0-9]+ .* in .*(cuda|kernel)' "$T/$name.log" | head -2 | cut -c1-160 | sed 's/^/      /'
    elif [ $rc -ne 0 ] && [ "$nfail" -gt 0 ]; then
        caught=$((caught + 1))
        echo "CAUGHT $name ($file, section $section): $desc"
        echo "    $nfail FAIL lines, e.g.:"
        grep -E '^FAIL ' "$T/$name.log" | head -3 | cut -c1-200 | sed 's/^/      /'
        grep -E '^  emu: ' "$T/$name.log" | head -1 | cut -c1-200 | sed 's/^/      /'
    else
        missed=$((missed + 1))
        echo "MISSED $name ($file, section $section): $desc (exit $rc, $nfail FAIL lines)"
        tail -3 "$T/$name.log" | sed 's/^/    /'
    fi
done
echo "# mutants: $caught caught, $missed missed"
[ $missed -eq 0 ]
