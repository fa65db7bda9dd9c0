// flash_emu.cpp: the kernels of cuda/flash_attention.cu run on the host (cuda_emu.h) against a
// double-precision reference of attention forward (out, lse) and backward (dqkv), for N = 1, N
// not a multiple of the 64-row tile, one row past a tile, several B and H, dh 16 / 32 / 64 / 128,
// the float4 and the scalar staging paths, in both operand types:
//   EMU_EXACT: tf32 kernels without rounding, i.e. fp32: must match to 2e-5 of the rms (tiling,
//              masking, online softmax, scale, both backward kernels, D_i);
//   default:   tf32 (2e-2) and bf16 (6e-2 of the rms: the operand roundings, worst element).
// Build and run: tests/gpu/flash_emu/run.sh (a few seconds per variant; prints PASS / FAIL lines).
#include "cuda_emu.h"

#include "../../../cuda/flash_attention.cu"

#include <random>

static double rms(const std::vector<double> &a) {
    double s = 0;
    for (double v : a) s += v * v;
    return sqrt(s / a.size());
}
template <typename T> static float rnd_in(float v) {
    if constexpr (std::is_same<T, __nv_bfloat16>::value) return emu_bf2f(__float2bfloat16_rn(v));
    else return nvcuda::wmma::__float_to_tf32(v);
}

// returns 0 on pass
template <typename T, int DH> static int run(int B, int N, int H, int vec_off, double tol) {
    typedef FaLayout<T, DH> L;
    const int D = H * DH, D3 = 3 * D;
    const char *tn = std::is_same<T, float>::value ? "tf32" : "bf16";
    std::mt19937 g(1234 + N + 7 * H + DH);
    std::uniform_real_distribution<float> U(-2, 2), U1(-1, 1);
    // vec_off: offset the buffers by one float to force the scalar staging path
    std::vector<float> qkvb((size_t)B * N * D3 + 1), doutb((size_t)B * N * D + 1);
    float *qkv = qkvb.data() + vec_off, *dout = doutb.data() + vec_off;
    for (size_t i = 0; i < (size_t)B * N * D3; i++) qkv[i] = U(g);
    for (size_t i = 0; i < (size_t)B * N * D; i++) dout[i] = U1(g);
    std::vector<float> out((size_t)B * N * D, NAN), lse((size_t)B * H * N, NAN), Di((size_t)B * H * N, NAN);
    std::vector<float> dqkv((size_t)B * N * D3, NAN);
    const float scale = 1.0f / sqrtf((float)DH);
    const int vec = vec_off == 0;
    emu_dim3 grid{(unsigned)((N + 63) / 64), (unsigned)H, (unsigned)B};
    emu_launch(grid, 128, L::FWD, [&] { flash_fwd_kernel<T, DH>(out.data(), lse.data(), qkv, N, H, scale, vec); });
    // reference (double) with the rounded inputs
    std::vector<double> Oref(out.size()), lref(lse.size()), dref(dqkv.size());
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            auto q = [&](int i, int d) { return (double)rnd_in<T>(qkv[((size_t)b * N + i) * D3 + h * DH + d]); };
            auto k = [&](int i, int d) { return (double)rnd_in<T>(qkv[((size_t)b * N + i) * D3 + D + h * DH + d]); };
            auto v = [&](int i, int d) { return (double)rnd_in<T>(qkv[((size_t)b * N + i) * D3 + 2 * D + h * DH + d]); };
            auto go = [&](int i, int d) { return (double)rnd_in<T>(dout[((size_t)b * N + i) * D + h * DH + d]); };
            std::vector<double> P((size_t)N * N), dS((size_t)N * N);
            for (int i = 0; i < N; i++) {
                double mx = -1e300;
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int d = 0; d < DH; d++) s += q(i, d) * k(j, d);
                    P[(size_t)i * N + j] = s * scale;
                    mx = std::max(mx, s * scale);
                }
                double sum = 0;
                for (int j = 0; j < N; j++) sum += exp(P[(size_t)i * N + j] - mx);
                for (int j = 0; j < N; j++) P[(size_t)i * N + j] = exp(P[(size_t)i * N + j] - mx) / sum;
                lref[((size_t)b * H + h) * N + i] = mx + log(sum);
                for (int d = 0; d < DH; d++) {
                    double o = 0;
                    for (int j = 0; j < N; j++) o += P[(size_t)i * N + j] * v(j, d);
                    Oref[((size_t)b * N + i) * D + h * DH + d] = o;
                }
            }
            // backward with the kernel's O (fp32, as in training) for Di
            for (int i = 0; i < N; i++) {
                double di = 0;
                for (int d = 0; d < DH; d++)
                    di += (double)dout[((size_t)b * N + i) * D + h * DH + d] * out[((size_t)b * N + i) * D + h * DH + d];
                for (int j = 0; j < N; j++) {
                    double dp = 0;
                    for (int d = 0; d < DH; d++) dp += go(i, d) * v(j, d);
                    dS[(size_t)i * N + j] = P[(size_t)i * N + j] * (dp - di);
                }
            }
            for (int i = 0; i < N; i++)
                for (int d = 0; d < DH; d++) {
                    double dq = 0, dk = 0, dv = 0;
                    for (int j = 0; j < N; j++) {
                        dq += dS[(size_t)i * N + j] * k(j, d);
                        dk += dS[(size_t)j * N + i] * q(j, d);
                        dv += P[(size_t)j * N + i] * go(j, d);
                    }
                    size_t row = ((size_t)b * N + i) * D3 + h * DH + d;
                    dref[row] = dq * scale, dref[row + D] = dk * scale, dref[row + 2 * D] = dv;
                }
        }
    size_t rows = (size_t)B * H * N;
    emu_launch(emu_dim3{(unsigned)((rows + 7) / 8), 1, 1}, 256, 0,
               [&] { fa_rowdot_kernel(Di.data(), dout, out.data(), B, N, H, DH); });
    emu_launch(grid, 128, L::KV, [&] {
        flash_bwd_dkdv_kernel<T, DH>(dqkv.data(), qkv, dout, lse.data(), Di.data(), N, H, scale, vec);
    });
    emu_launch(grid, 128, L::DQ, [&] {
        flash_bwd_dq_kernel<T, DH>(dqkv.data(), qkv, dout, lse.data(), Di.data(), N, H, scale, vec);
    });
    auto cmp = [&](const char *what, const std::vector<float> &got, const std::vector<double> &ref) {
        double r = rms(ref), worst = 0;
        size_t wi = 0, nonfinite = 0;
        for (size_t i = 0; i < ref.size(); i++) {
            if (!std::isfinite(got[i])) { nonfinite++; wi = i; continue; }
            double e = fabs(got[i] - ref[i]);
            if (e > worst) worst = e, wi = i;
        }
        int ok = nonfinite == 0 && worst <= tol * r;
        printf("%s %-5s %s B=%d N=%d H=%d dh=%d%s: max|err| %.3e = %.2e rms (tol %.0e), %zu non-finite%s\n",
               ok ? "PASS" : "FAIL", what, tn, B, N, H, DH, vec ? "" : " scalar", worst, worst / r, tol, nonfinite,
               ok ? "" : " <<<");
        if (!ok) printf("   worst at %zu: got %.9g ref %.9g\n", wi, got[wi], ref[wi]);
        return ok ? 0 : 1;
    };
    int bad = cmp("out", out, Oref) + cmp("lse", lse, lref) + cmp("dqkv", dqkv, dref);
    return bad;
}

int main() {
    int bad = 0;
#ifdef EMU_EXACT
    const double tt = 2e-5; // tf32 path without rounding: plain fp32
#else
    const double tt = 2e-2;
#endif
    const double tb = 6e-2;
    bad += run<float, 64>(1, 1, 2, 0, tt);
    bad += run<float, 16>(2, 77, 3, 0, tt);
    bad += run<float, 32>(1, 100, 2, 1, tt);
    bad += run<float, 64>(1, 150, 2, 0, tt);
    bad += run<float, 128>(1, 129, 1, 0, tt);
    bad += run<float, 64>(1, 128, 1, 1, tt);
    bad += run<float, 64>(2, 300, 2, 0, tt);
    bad += run<__nv_bfloat16, 64>(1, 1, 2, 0, tb);
    bad += run<__nv_bfloat16, 16>(2, 77, 3, 0, tb);
    bad += run<__nv_bfloat16, 32>(1, 100, 2, 1, tb);
    bad += run<__nv_bfloat16, 128>(1, 129, 1, 0, tb);
    bad += run<__nv_bfloat16, 64>(1, 300, 2, 0, tb);
#ifdef EMU_EXACT
    // bf16 rounds its operands even here: the checks above only bound it loosely
#endif
    printf("%d failures\n", bad);
    return bad != 0;
}
