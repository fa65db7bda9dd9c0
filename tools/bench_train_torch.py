#!/usr/bin/env python3
"""PyTorch (CPU) side of tools/bench-train.c: the same training workloads with the PyTorch mirror
modules of tests/torch_dcae.py and tests/torch_vit.py (LoLa's module trees), same shapes, batch,
options and output line, so tools/bench-train.sh can print the two side by side.

Workloads (one per run, so the process's peak RSS belongs to it):
  ae  AutoEncoder on synthetic (B, pix, S, S) fields, VRMSE loss (eps 1e-2), dropout on
  dm  ElucidatedDenoiser(EmbeddingWrapper(ViT)) on synthetic latents (B, C, L, h, w): per step a
      fresh log-logit sigma per sample (t ~ U(0,1)), fresh eps, DenoiserLoss
      mean((mean - x)^2 / var) with masked positions of x_t = sqrt(1 + s^2) x
  ns  MaskedSurrogate(ViT), loss mean((x - y_hat)^2)
Each step: zero_grad(set_to_none) + forward + loss + backward + clip_grad_norm_(1.0) +
torch.optim.AdamW(lr 1e-4, betas 0.9/0.999, eps 1e-8, wd 0). Synthetic data drawn once;
masks are per-sample random frame masks (LoLa's random context mask: lambda 1, rho 0.66, >= 1).

Differences from the mirrors as written for the parity fixtures (both make the benchmark a fair
one for PyTorch):
  * the DCAE's HashDropout (numpy counter-based masks, for bit-exact parity) is replaced by
    torch.nn.Dropout with the same p; the ViT is built with nn.Dropout(p) in its FFN;
  * --attn sdpa (default) runs both models' attention through F.scaled_dot_product_attention
    (PyTorch's fastest CPU attention; LoLa's own modules use it / nn.MultiheadAttention);
    --attn explicit keeps the mirrors' softmax(q k^T / sqrt(dh)) v.
Optimizer implementation: --adamw default|foreach|fused (default = torch's own choice).

Threads: --threads, else OMP_NUM_THREADS, else torch's default; torch.set_num_threads(N).
Timing: --warmup steps, then --rounds rounds of at least --seconds each (>= 2 steps); the median
samples/s is the result.

Output (last line): RESULT impl=torch workload=... batch=... params=... threads=...
  samples_per_s=MEDIAN rounds=a,b,c cpu_samples_per_s=C maxrss_mib=R
(cpu_samples_per_s: samples per second of process CPU time, all threads, median round)
Usage: python3 tools/bench_train_torch.py --workload ae|dm|ns [options] (see --help)
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import torch_dcae as tdc  # noqa: E402
import torch_vit as tvit  # noqa: E402


def ints(s):
    return [int(v) for v in s.split(",") if v != ""]


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", required=True, choices=["ae", "dm", "ns"])
    ap.add_argument("--batch", type=int, default=0, help="default ae 8, dm/ns 16")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--attn", choices=["sdpa", "explicit"], default="sdpa")
    ap.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default")
    # AE
    ap.add_argument("--pix", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lat", type=int, default=16)
    ap.add_argument("--hid", type=ints, default=[32, 64, 128, 256])
    ap.add_argument("--blocks", type=ints, default=[1, 1, 1, 1])
    ap.add_argument("--heads-last", type=int, default=4)
    # emulators
    ap.add_argument("--chan", type=int, default=16)
    ap.add_argument("--L", type=int, default=5)
    ap.add_argument("--h", type=int, default=8)
    ap.add_argument("--w", type=int, default=8)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--vit-blocks", type=int, default=4)
    ap.add_argument("--vit-heads", type=int, default=4)
    ap.add_argument("--emb", type=int, default=64)
    ap.add_argument("--label", type=int, default=5)
    a = ap.parse_args()
    if len(a.blocks) != len(a.hid):
        ap.error(f"--blocks has {len(a.blocks)} entries but --hid has {len(a.hid)} levels")
    if a.batch <= 0:
        a.batch = 8 if a.workload == "ae" else 16
    a.rounds = max(1, a.rounds)
    return a


# ---------------------------------------------------------------------------------------------
# SDPA attention for the mirror modules (same math as their explicit softmax).


def spatial_mha_sdpa(self, x):
    B, C, H, W = x.shape
    t = x.reshape(B, C, H * W).transpose(1, 2)
    qkv = F.linear(t, self.in_proj_weight, self.in_proj_bias)
    dh = C // self.heads
    q, k, v = qkv.reshape(B, H * W, 3, self.heads, dh).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H * W, C)
    return self.out_proj(y).transpose(1, 2).reshape(B, C, H, W)


def vit_msa_sdpa(self, x, theta):
    B, N, C = x.shape
    H, dh = self.heads, C // self.heads
    q, k, v = self.qkv_proj(x).reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)
    if self.qk_norm:
        q = q * torch.rsqrt(q.square().mean(-1, keepdim=True) + 1e-5)
        k = k * torch.rsqrt(k.square().mean(-1, keepdim=True) + 1e-5)
    if theta is not None:
        th = theta.reshape(N, H, dh // 2).permute(1, 0, 2)
        q, k = tvit.rope(q, th), tvit.rope(k, th)
    y = F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).reshape(B, N, C)
    return self.y_proj(y)


class ZeroEmbedding(nn.Module):
    def forward(self, label):
        return 0.0


def random_frame_masks(B, L, gen, lmbda=1.0, rho=0.66, atleast=1):
    """Per-sample 0/1 frame masks like LoLa's random_context_mask (numpy draws, not lola-c's)."""
    m = np.zeros((B, L), dtype=np.float32)
    for i in range(B):
        c = int(gen.poisson(lmbda)) % (L - atleast) + atleast
        if gen.random() < rho:
            m[i, :c] = 1
        else:
            m[i, L - c:] = 1
    return torch.from_numpy(m)


# ---------------------------------------------------------------------------------------------


def build(a):
    """Returns (model, step_loss) where step_loss() runs forward + loss and returns the loss."""
    torch.manual_seed(a.seed)
    gen = np.random.default_rng(a.seed)
    B = a.batch
    if a.workload == "ae":
        if a.attn == "sdpa":
            tdc.SpatialMHA.forward = spatial_mha_sdpa
        L = len(a.hid)
        cfg = dict(pix=a.pix, lat=a.lat, hid_channels=a.hid, hid_blocks=a.blocks,
                   heads={L - 1: a.heads_last} if a.heads_last else {}, kernel=3, dropout=a.dropout, identity=True)
        model = tdc.AutoEncoder(cfg)
        for m in model.modules():
            if isinstance(m, tdc.ResBlock):
                m.ffn[2] = nn.Dropout(a.dropout)
        x = torch.randn(B, a.pix, a.size, a.size)

        def step_loss():
            y, _ = model(x)
            return tdc.vrmse(y, x)

        return model, step_loss

    if a.attn == "sdpa":
        tvit.MultiheadSelfAttention.forward = vit_msa_sdpa
    C, M = a.chan, a.emb
    mod = M if (a.workload == "dm" or a.label > 0) else 0
    vit = tvit.ViT(C, C, C, mod, a.D, a.vit_blocks, 3, a.vit_heads, dropout=a.dropout)
    lab_emb = tvit.mlp(a.label, M) if a.label > 0 else ZeroEmbedding()
    x = torch.randn(B, C, a.L, a.h, a.w)
    frames = random_frame_masks(B, a.L, gen)
    mask = frames[:, None, :, None, None].expand(B, C, a.L, a.h, a.w).contiguous()
    label = torch.randn(B, max(a.label, 1))
    if a.workload == "dm":
        time_emb = nn.Sequential(tvit.SineEncoding(M), nn.Linear(M, M), nn.SiLU(), nn.Linear(M, M))
        model = tvit.ElucidatedDenoiser(tvit.EmbeddingWrapper(vit, time_emb, lab_emb))
        keep = mask.bool()

        def step_loss():
            sigma = tvit.log_logit_sigma(torch.rand(B))
            s = sigma.reshape(-1, 1, 1, 1, 1)
            eps = torch.randn_like(x)
            x_t = torch.where(keep, torch.sqrt(1 + s ** 2) * x, x + s * eps)
            mean, var = model(x_t, sigma, label, mask)
            return ((mean - x).square() / var).mean()

        return model, step_loss

    # without labels (mod 0) the ViT learns its own modulation and ignores the 0 from ZeroEmbedding
    model = tvit.MaskedSurrogate(vit, lab_emb)

    def step_loss():
        y_hat = model(x, mask, label)
        return (x - y_hat).square().mean()

    return model, step_loss


def main():
    a = parse()
    threads = a.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads()
    torch.set_num_threads(threads)
    model, step_loss = build(a)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    nparams = sum(p.numel() for p in params)
    kw = {}
    if a.adamw == "foreach":
        kw["foreach"] = True
    elif a.adamw == "fused":
        kw["fused"] = True
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **kw)

    last = [float("nan")]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = step_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        last[0] = loss.item()

    print(f"# bench-train torch: workload {a.workload}, torch {torch.__version__} CPU, {threads} threads, "
          f"batch {a.batch}, {nparams} parameters, attention {a.attn}, AdamW {a.adamw}", flush=True)
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        step()
    print(f"# warm-up {a.warmup} steps {time.perf_counter() - t0:.2f} s, loss {last[0]:.5f}", flush=True)
    rates, cpu_rates = [], []
    for r in range(a.rounds):
        steps, start, el, cstart = 0, time.perf_counter(), 0.0, time.process_time()
        while steps < 2 or el < a.seconds:
            step()
            steps += 1
            el = time.perf_counter() - start
        rates.append(steps * a.batch / el)
        cpu_rates.append(steps * a.batch / (time.process_time() - cstart))
        print(f"# round {r}: {steps} steps in {el:.2f} s, {rates[-1]:.2f} samples/s, "
              f"{cpu_rates[-1]:.2f} samples per CPU-second, loss {last[0]:.5f}", flush=True)
    med = statistics.median(rates)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT impl=torch workload={a.workload} batch={a.batch} params={nparams} threads={threads} "
          f"samples_per_s={med:.3f} rounds={','.join(f'{r:.2f}' for r in rates)} "
          f"cpu_samples_per_s={statistics.median(cpu_rates):.3f} maxrss_mib={maxrss:.1f}", flush=True)


if __name__ == "__main__":
    main()
