// nn.h: the op contract. Models (dcae.c, vit.c, diffusion.c) are written once against these
// functions; exactly one backend is linked into a program:
//   src/cpu/*.c  - C11 + OpenMP + BLAS, fp32, the readable reference (BACKEND=cpu)
//   cuda/*.cu    - the same ops on the GPU (BACKEND=cuda), extern "C", same names
// All tensor pointers are *backend memory* (host memory on CPU, device memory on CUDA), obtained
// from nn_alloc. Sizes are element counts (size_t), never bytes.
//
// Layouts: images are NCHW, (B, C, H, W) row-major; token sequences are (B, N, D) row-major;
// linear weights are (out, in) like torch.nn.Linear; conv weights (Cout, Cin, K, K) like Conv2d.
//
// Backward conventions (llm.c): gradients of *parameters* accumulate (+=) so micro-batches and
// weight sharing add up; gradients of *activations* are overwritten (=) unless the comment says
// otherwise. An activation-gradient output pointer may be NULL when the caller does not need it.
// Scalar results (losses, norms) are returned on the host.
// Ops are not reentrant (they share module-level scratch buffers): call them from one host thread
// at a time; each op parallelises internally (OpenMP threads on the CPU).
#ifndef LOLA_NN_H
#define LOLA_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------------------------
// Backend, memory

// Initialise the backend (device selection from the node-local rank on CUDA; OpenMP threads on
// CPU). local_rank < 0 means "no preference". Safe to call more than once.
void nn_init(int local_rank);
// Human-readable backend description for `lola info` ("cpu (OpenBLAS 0.3.21, 2 threads)", ...).
const char *nn_backend_name(void);
// Zero-filled backend buffer of n floats. Dies with the size on failure.
float *nn_alloc(size_t n);
void nn_free(float *p);
void nn_zero(float *x, size_t n);
void nn_copy(float *dst, const float *src, size_t n);           // backend -> backend
void nn_to_backend(float *dst, const float *host_src, size_t n); // host -> backend
void nn_to_host(float *host_dst, const float *src, size_t n);    // backend -> host
void nn_sync(void);                                              // wait for queued work (timing)
// Bytes currently allocated through nn_alloc, and the high-water mark. Both include the
// backend's own grow-only op scratch (CPU: im2col columns, attention dS), so they are the
// backend's real footprint.
size_t nn_bytes_in_use(void);
size_t nn_bytes_peak(void);

// ---------------------------------------------------------------------------------------------
// bf16 activation storage
//
// Models may keep the activations they save for the backward pass as bf16 (half the memory;
// the forward itself still runs in fp32 and reads fp32 copies). The bf16 format is the upper 16
// bits of the IEEE fp32 pattern; element i of a packed buffer sits at byte offset 2i. A packed
// buffer of n values is carved from nn_alloc memory (float *) and takes (n + 1) / 2 floats.

// 1 when models store saved activations in bf16, 0 for fp32. Set by nn_init from
// LOLA_ACTIVATIONS=fp32|bf16 (any other value is an error); unset: 0 on every backend and in every
// precision mode (the pack / unpack passes cost time; bf16 storage is asked for, not implied).
int nn_bf16_activations(void);
// Overrides the switch (tests, tools). Models read it when they lay out their activation arena,
// so change it only between training steps (a model re-plans its arena when it changes).
void nn_set_bf16_activations(int on);
// dst[i] = bf16(src[i]), round to nearest even; every NaN becomes the canonical 0x7FFF (as
// cuda_bf16.hpp's software conversion does; both backends use the same integer formula, so they
// agree bit for bit), +-inf stay inf, values past the largest bf16 round to inf.
// src (n floats), dst (n bf16); they must not overlap.
void nn_pack_bf16(uint16_t *dst, const float *src, size_t n);
// dst[i] = the fp32 value of src[i] (exact). src (n bf16), dst (n floats); no overlap.
void nn_unpack_bf16(float *dst, const uint16_t *src, size_t n);

// ---------------------------------------------------------------------------------------------
// Elementwise and BLAS-1

void nn_fill(float *x, float value, size_t n);
void nn_scale(float *x, float s, size_t n);                       // x *= s
void nn_axpy(float *y, float a, const float *x, size_t n);        // y += a*x
void nn_add(float *out, const float *a, const float *b, size_t n); // out = a + b (out may alias)
// Sum of squares in float64 accumulation (for the global gradient norm).
double nn_sum_squares(const float *x, size_t n);
// 1 if every element is finite.
int nn_all_finite(const float *x, size_t n);

// SiLU: out = x * sigmoid(x). backward: dx = dout * s * (1 + x * (1 - s)), s = sigmoid(x).
void silu_forward(float *out, const float *x, size_t n);
void silu_backward(float *dx, const float *dout, const float *x, size_t n);

// Dropout with probability p (inverted: kept values scaled by 1/(1-p)). The keep decision of
// element i is rng_hash_uniform(seed, i) >= p (rng.h), identical on every backend.
// mask (n floats) receives 0 or 1/(1-p) and is reused by backward: dx = dout * mask.
void dropout_forward(float *out, float *mask, const float *x, size_t n, float p, uint64_t seed);
void dropout_backward(float *dx, const float *dout, const float *mask, size_t n);

// Fused SiLU + dropout without a mask buffer: out = Dropout(SiLU(x)), i.e.
// out[i] = x s (rng_hash_uniform(seed, i) >= p ? 1/(1-p) : 0), s = sigmoid(x[i]), the keep decision
// exactly as dropout_forward; on the CPU bit-identical to silu_forward then dropout_forward.
// backward regenerates the decision from (seed, i): dx (=, may be NULL) = dout m s (1 + x (1 - s)),
// m the kept scale or 0. p = 0 is plain SiLU. x, out, dout, dx (n); out may not alias x.
void silu_dropout_forward(float *out, const float *x, size_t n, float p, uint64_t seed);
void silu_dropout_backward(float *dx, const float *dout, const float *x, size_t n, float p, uint64_t seed);

// Standard normal noise: out[i] = rng_hash_normal(seed, i).
void nn_randn(float *out, size_t n, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// Convolutional autoencoder ops (NCHW)

// 2-D convolution, stride 1, zero padding K/2 (K odd: 1 or 3), with optional bias (b may be NULL).
// x (B, Cin, H, W), w (Cout, Cin, K, K), b (Cout), out (B, Cout, H, W).
void conv2d_forward(float *out, const float *x, const float *w, const float *b,
                    int B, int Cin, int Cout, int H, int W, int K);
// dx (=, may be NULL), dw (+=), db (+=, may be NULL).
void conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int B, int Cin, int Cout, int H, int W, int K);

// Pixel unshuffle by s: x (B, C, H, W) -> out (B, C*s*s, H/s, W/s), out channel c*s*s + i*s + j
// holds x[c, h*s + i, w*s + j] (torch.nn.PixelUnshuffle order). H, W are the *input* sizes.
void pixel_unshuffle(float *out, const float *x, int B, int C, int H, int W, int s);
// Pixel shuffle by s, the exact inverse: x (B, C*s*s, H, W) -> out (B, C, H*s, W*s).
// C is the *output* channel count; H, W are the *input* sizes. The gradient of one is the other.
void pixel_shuffle(float *out, const float *x, int B, int C, int H, int W, int s);

// LayerNorm over channels per pixel, no affine, UNBIASED variance (torch.var_mean, correction 1),
// eps 1e-5 (lola-spec.md 2.1): y = (x - mean_c) / sqrt(var_c + eps).
// x, out (B, C, HW); mean, rstd (B, HW) saved for backward.
void layernorm_channels_forward(float *out, float *mean, float *rstd, const float *x,
                                int B, int C, int HW, float eps);
void layernorm_channels_backward(float *dx, const float *dout, const float *x,
                                 const float *mean, const float *rstd, int B, int C, int HW);

// (B, C, N) -> (B, N, C). Its gradient is transpose_bcn(dx, dout, B, N, C).
void transpose_bcn(float *out, const float *x, int B, int C, int N);

// Latent saturation (lola-spec.md 2.4), bound 5:
//   kind 0 none; 1 softclip2 z/sqrt(1+(z/5)^2); 2 softclip z/(1+|z|/5); 3 tanh 5*tanh(z/5);
//   4 arcsinh asinh(z); 5 rmsnorm over channels z/sqrt(mean_c z^2 + 1e-5).
// x, out (B, C, HW).
enum { SAT_NONE = 0, SAT_SOFTCLIP2, SAT_SOFTCLIP, SAT_TANH, SAT_ARCSINH, SAT_RMSNORM };
void saturation_forward(float *out, const float *x, int B, int C, int HW, int kind);
void saturation_backward(float *dx, const float *dout, const float *x, int B, int C, int HW, int kind);

// ---------------------------------------------------------------------------------------------
// Dense / transformer ops ((B, N, D) tokens)

// out (M, N) = x (M, K) @ w (N, K)^T + b (N); b may be NULL.
void linear_forward(float *out, const float *x, const float *w, const float *b, int M, int K, int N);
// dx (M, K) (=, may be NULL), dw (+=), db (+=, may be NULL).
void linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                     const float *w, int M, int K, int N);

// LayerNorm over the last axis D, no affine, BIASED variance, eps (1e-5 in the ViT).
// x, out (M, D); mean, rstd (M).
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, int M, int D, float eps);
void layernorm_backward(float *dx, const float *dout, const float *x, const float *mean,
                        const float *rstd, int M, int D);

// adaLN modulation: out[b,n,:] = (1 + a[b,:]) * x[b,n,:] + c[b,:]. a and c are rows of a wider
// per-sample buffer with row stride ld (e.g. the (B, 4D) modulation output; a = mod + 0,
// c = mod + D, ld = 4D). x, out (B, N, D).
void modulate_forward(float *out, const float *x, const float *a, const float *c,
                      int B, int N, int D, int ld);
// dx (=) = dout * (1 + a); da (+=) = sum_n dout * x; dc (+=) = sum_n dout. da/dc use stride ld.
void modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x,
                       const float *a, int B, int N, int D, int ld);

// Fused LayerNorm + adaLN modulation: out[b,n,:] = (1 + a[b,:]) * LN(x[b,n,:]) + c[b,:], LN as
// layernorm_forward (over D, biased variance, eps) with mean, rstd (B*N) saved (either may be NULL
// when no backward follows), a, c per-sample rows of stride ld as modulate_forward. On the CPU
// bit-identical to layernorm_forward then modulate_forward; LN(x) is not stored. x, out (B, N, D).
void layernorm_modulate_forward(float *out, float *mean, float *rstd, const float *x, const float *a,
                                const float *c, int B, int N, int D, int ld, float eps);
// Its backward, recomputing LN(x) from x, mean, rstd: dx (=, may be NULL) = layernorm_backward of
// dout (1 + a); da (+=, stride ld, may be NULL) = sum_n dout LN(x); dc (+=, stride ld, may be NULL) = sum_n dout.
// On the CPU bit-identical to modulate_backward then layernorm_backward.
void layernorm_modulate_backward(float *dx, float *da, float *dc, const float *dout, const float *x,
                                 const float *mean, const float *rstd, const float *a, int B, int N, int D,
                                 int ld);

// Gated variance-preserving residual (lola-spec.md 4.2): out = (x + g * y) / sqrt(1 + g^2),
// g[b,:] a per-sample gate with row stride ld. x, y, out (B, N, D); out may alias x.
void gated_residual_forward(float *out, const float *x, const float *y, const float *g,
                            int B, int N, int D, int ld);
// dx (=), dy (=), dg (+=, stride ld). dx may alias dout.
void gated_residual_backward(float *dx, float *dy, float *dg, const float *dout, const float *x,
                             const float *y, const float *g, int B, int N, int D, int ld);

// qk-norm + RoPE on a packed qkv (B, N, 3D) buffer with H heads of size dh = D/H:
// q and k of every head are RMS-normalised over dh (no affine, eps 1e-5), then each adjacent
// pair (2m, 2m+1) of head h is rotated by angle[n, h*dh/2 + m] (angles (N, D/2), shared over B);
// v is copied. rope = 0 skips the rotation, qknorm = 0 skips the normalisation.
// rstd (B, N, 2H) saved for backward (q heads then k heads).
void qk_norm_rope_forward(float *out, float *rstd, const float *qkv, const float *angle,
                          int B, int N, int H, int dh, int qknorm, int rope);
// dqkv (=) from dout (B, N, 3D); dangle (+=) (N, D/2), may be NULL.
void qk_norm_rope_backward(float *dqkv, float *dangle, const float *dout, const float *qkv,
                           const float *rstd, const float *angle, int B, int N, int H, int dh,
                           int qknorm, int rope);

// Multi-head softmax attention, no mask, scale 1/sqrt(dh):
// qkv (B, N, 3D) packed [q | k | v], each D = H*dh wide, head h = contiguous chunk h;
// out (B, N, D) with heads merged in the same order.
// save: attention_save_floats(B, N, H) floats kept for backward (probabilities on CPU,
// log-sum-exp statistics on CUDA).
size_t attention_save_floats(int B, int N, int H);
void attention_forward(float *out, float *save, const float *qkv, int B, int N, int H, int dh);
// dqkv (=) (B, N, 3D).
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *save, int B, int N, int H, int dh);

// SineEncoding (lola-spec.md 3.5): x (n) -> out (n, D), out[i, k] = sin(x_i f_k),
// out[i, D/2 + k] = cos(x_i f_k), f_k = omega^(-k / (D/2 - 1)), k = 0..D/2-1. No gradient.
void sine_encoding_forward(float *out, const float *x, int n, int D, float omega);

// Per-sample coefficient ops of the diffusion wrappers (denoiser.c; CPU: src/cpu/vit_extra.c).
// Per-sample affine combination over B rows of n elements each:
//   out[b, i] = a[b] * x[b, i] + c[b] * y[b, i]
// a and c are backend arrays of B floats; c and y may both be NULL (then out = a * x).
// out may alias x or y.
void nn_rows_axpby(float *out, const float *a, const float *x, const float *c, const float *y, int B,
                   size_t n);
// Select: out[i] = m[i] != 0 ? x[i] : (y ? y[i] : 0). out may alias x or y (m is a 0/1 mask).
void nn_where(float *out, const float *m, const float *x, const float *y, size_t n);

// ---------------------------------------------------------------------------------------------
// Losses. Each returns the loss (host double) and, when dpred != NULL, writes (=)
// dpred = grad_scale * d loss / d pred.

// mean over all n elements of (pred - target)^2.
double mse_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale);
// mean over all n elements of |pred - target| (subgradient 0 at 0).
double mae_loss(float *dpred, const float *pred, const float *target, size_t n, float grad_scale);
// VRMSE (lola-spec.md 2.5): mean over (b, c) of sqrt(mean_pix (p - t)^2 / (var_unbiased_pix(t) + eps)).
// pred, target (B, C, HW).
double vrmse_loss(float *dpred, const float *pred, const float *target, int B, int C, int HW,
                  float eps, float grad_scale);

// ---------------------------------------------------------------------------------------------
// Optimizer

// One AdamW step (torch.optim.AdamW semantics, decoupled weight decay):
// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). t >= 1 is the step count.
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                  float b2, float eps, float wd, int t);

// ---------------------------------------------------------------------------------------------
// PSGD-Kron (src/psgd.c; lola-spec.md 6.3). fp32 storage and arithmetic; the only reduced
// precision is in the matrix products of nn_gemm and psgd_dense_update: TF32 tensor-core products
// when the CUDA backend runs in the tf32 or bf16 mode, as torch.set_float32_matmul_precision("high")
// makes heavyball's einsums and matmuls in LoLa (lola-spec.md 6.1 "Precision": TF32 matmuls); never
// bf16 (the optimizer runs outside autocast); plain fp32 in the fp32 mode and on the CPU. The
// triangular solve and the lower bound's matrix-vector products are always fp32. Matrices are
// row-major. A tensor viewed around one axis is (L, n, R): L = product of the dims before the
// axis, n = its size, R = product of the dims after.

// C (M x N, ld ldc) = alpha op(A) op(B) + beta C; op(X) = X^T when tX != 0; op(A) is M x K (A
// stored (ta ? K x M : M x K) with ld lda), op(B) is K x N (stored (tb ? N x K : K x N), ld ldb).
// K = 0 gives C = beta C. beta = 0: C is not read (NaN in C does not survive). C must not overlap
// A or B.
void nn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
             int ldb, float beta, float *C, int ldc);
// In-place triangular solve with Q (n x n, upper triangular, non-unit diagonal; the strict lower
// triangle is not read): left != 0: X (n x m) := Q^{-T} X; left == 0: X (m x n) := X Q^{-1}.
// (Both are "X x_a Q^{-T}" along the fibres of length n.)
void nn_trsm_upper(float *X, const float *Q, int n, int m, int left);
// to_front != 0: dst (n, L, R) = src (L, n, R) with the middle axis moved to the front;
// to_front == 0: the inverse, dst (L, n, R) = src (n, L, R). dst must not overlap src.
void nn_axis_permute(float *dst, const float *src, size_t L, int n, size_t R, int to_front);
// X (L, n, R): X[l, i, r] *= d[i] (divide == 0) or /= d[i] (divide != 0); d (n).
void nn_axis_scale(float *X, const float *d, size_t L, int n, size_t R, int divide);
// g (n): g[i] = sum over l, r of X[l, i, r]^2 with float64 accumulation; X (L, n, R).
void nn_axis_sum_squares(float *g, const float *X, size_t L, int n, size_t R);
// max_i |x_i| (host float); a NaN when any element is NaN; 0 for n = 0.
float nn_max_abs(const float *x, size_t n);
// PSGD momentum: m <- torch.lerp(m, g, w) = w < 0.5 ? m + w (g - m) : g - (g - m)(1 - w).
void psgd_momentum(float *m, const float *g, size_t n, float w);
// Preconditioner probes: a = u + eps * z1, b = z2, with z1[i] = rng_hash_normal(seed_a, i) and
// z2[i] = rng_hash_normal(seed_b, i) (src/rng.h: the same draws on every backend, up to the last
// ulp of the device's double log/cos). a, b, u (n).
void psgd_noise(float *a, float *b, const float *u, size_t n, float eps, uint64_t seed_a, uint64_t seed_b);
// heavyball trust_region_clip_ then update_param_: x <- clamp(1.5 (0.1 sign(v) log1p|v| + 0.9 tanh v),
// -2, 2) with v = x / 1.5 (x is overwritten with the clipped update); p <- p decay - lr x.
// (tanhf/log1pf are each backend's libm: results may differ in the last ulps between backends.)
void psgd_clip_update(float *p, float *x, size_t n, float decay, float lr);
// (t1, t2) <- (plr (t1 - t2), t1 + t2), n elements.
void psgd_precond_terms(float *t1, float *t2, size_t n, float plr);
// Dense factor step: Q <- Q - triu(T1 / den) Q, Q and T1 n x n (Q upper triangular with a zero
// strict lower triangle: the product reads all of Q; T1 is overwritten with triu(T1 / den)), work
// n x n scratch. Only the upper triangle of Q is written.
void psgd_dense_update(float *Q, float *T1, float *work, int n, float den);
// Diagonal factor step: q_i <- q_i - t1_i (q_i / den), n elements.
void psgd_diag_update(float *q, const float *t1, size_t n, float den);
// out_i = x_i^2 (out may alias x).
void psgd_square(float *out, const float *x, size_t n);
// heavyball psgd_lb: spectral-norm lower bound of a symmetric n x n matrix A, given
// max_abs = max |A_ij| > 0 (host). A is scaled in place by 1 / max_abs; work: 3 n floats.
// Returns (host) ||A x'|| max_abs where x' = normalised (c^T A), c the column of A (scaled) with
// the largest norm (the first one on ties; unspecified when a column norm is NaN).
float psgd_norm_lower_bound(float *A, float *work, int n, float max_abs);

#ifdef __cplusplus
}
#endif
#endif
