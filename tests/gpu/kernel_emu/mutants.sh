#!/usr/bin/env bash
# tests/gpu/kernel_emu/mutants.sh [BUILD_DIR] [NAME...]: shows that the emulated checks bite. Each
# mutant plants one realistic bug in a copy of a kernel file (one exact text replacement, which
# must apply once), runs the section that tests that file through run.sh (EMU_REPLACE) and expects
# it to fail; prints which checks caught it (with ASAN=1: also AddressSanitizer / UBSan reports).
# Not part of make test (about 10 s per mutant).
# NAMEs select mutants (default: all). Exit status 0 when every mutant was caught.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${1:-$root/build}
shift $(($# > 0 ? 1 : 0))
T=$(mktemp -d "${TMPDIR:-/tmp}/kemu_mutants.XXXXXX")
trap 'rm -rf "$T"' EXIT

# name | file | section | description | old text | new text (\n: newline)
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
)

caught=0
missed=0
for m in "${mutants[@]}"; do
    IFS='|' read -r name file section desc old new <<<"${m//\\|/$'\x01'}"
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
    EMU_REPLACE="$file=$copy" EMU_ONLY=$section EMU_SELFTEST=0 EMU_COVER= EMU_REQUIRE= \
        bash "$here/run.sh" "$B" >"$T/$name.log" 2>&1
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
