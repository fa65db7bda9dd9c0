"""PyTorch mirror of LoLa's latent emulators (lola-spec.md 3.2-3.5, 4.1-4.5), for parity fixtures.

Writes tests/fixtures/vit_tiny.bin (LOLAFIX1, tests/fixture.py), read by tests/test_vit.c:
  cfg                      int config vector (see CFG_KEYS)
  dm.param.<name>          every parameter of the diffusion model, PyTorch state_dict names
  dm.x, dm.mask, dm.label, dm.t, dm.sigma, dm.eps   training inputs
  dm.mean, dm.loss         ElucidatedDenoiser mean and DenoiserLoss value
  dm.grad.<name>           d loss / d parameter
  dm.infer.{xt,sigma,mean} MaskedDenoiser inference (y = x * mask, one sigma for the batch)
  ns.param.<name>, ns.x, ns.mask, ns.label, ns.out, ns.loss, ns.grad.<name>   the surrogate

The module tree (and so the state_dict names and order) follows lola/nn/vit.py,
lola/nn/embedding.py, lola/diffusion.py (EmbeddingWrapper inside ElucidatedDenoiser) and
lola/surrogate.py (MaskedSurrogate). The code here is our own. The reference is computed in
float64 from float32 parameters and inputs, so the C side's error budget is its own fp32 error.
Dropout is disabled (identity) so the fixture is deterministic.

Usage: python3 tests/torch_vit.py [out_path]
"""
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import write_fixture  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Modules (names as in LoLa)


class SineEncoding(nn.Module):
    """[sin(x f_k), cos(x f_k)], f_k = omega^(-k/(D/2-1)); a buffer, not a parameter."""

    def __init__(self, features, omega=1e3):
        super().__init__()
        k = torch.linspace(0, 1, features // 2, dtype=torch.float64)
        self.register_buffer("freqs", (omega ** (-k)).to(torch.float32))

    def forward(self, x):
        x = x.unsqueeze(-1)
        f = self.freqs.to(x.dtype)
        return torch.cat((torch.sin(x * f), torch.cos(x * f)), dim=-1)


class Flatten2(nn.Module):
    """(..., S, D) -> (..., S*D) (LoLa: einops Rearrange, no parameters)."""

    def forward(self, x):
        return x.flatten(-2)


class Chunk4(nn.Module):
    """(B, 4D) -> (4, B, 1, D): the a, b, c, d modulations."""

    def forward(self, x):
        D = x.shape[-1] // 4
        return x.unflatten(-1, (4, D)).movedim(-2, 0).unsqueeze(-2)


class MultiheadSelfAttention(nn.Module):
    def __init__(self, channels, attention_heads=1, qk_norm=True):
        super().__init__()
        self.qkv_proj = nn.Linear(channels, 3 * channels, bias=False)
        self.y_proj = nn.Linear(channels, channels)
        self.heads = attention_heads
        self.qk_norm = qk_norm

    def forward(self, x, theta):
        B, N, C = x.shape
        H, dh = self.heads, C // self.heads
        q, k, v = self.qkv_proj(x).reshape(B, N, 3, H, dh).permute(2, 0, 3, 1, 4)  # (B, H, N, dh)
        if self.qk_norm:
            q = q * torch.rsqrt(q.square().mean(-1, keepdim=True) + 1e-5)
            k = k * torch.rsqrt(k.square().mean(-1, keepdim=True) + 1e-5)
        if theta is not None:
            th = theta.reshape(N, H, dh // 2).permute(1, 0, 2)  # (H, N, dh/2)
            q, k = rope(q, th), rope(k, th)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        y = (att @ v).permute(0, 2, 1, 3).reshape(B, N, C)
        return self.y_proj(y)


def rope(x, th):
    x = x.unflatten(-1, (-1, 2))
    x0, x1 = x[..., 0], x[..., 1]
    c, s = torch.cos(th), torch.sin(th)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class ViTBlock(nn.Module):
    def __init__(self, channels, mod_features, spatial, heads, ffn_factor=4, dropout=None):
        super().__init__()
        self.norm = nn.LayerNorm(channels, elementwise_affine=False)
        if mod_features > 0:
            self.ada_zero = nn.Sequential(
                nn.Linear(mod_features, mod_features),
                nn.SiLU(),
                nn.Linear(mod_features, 4 * channels),
                Chunk4(),
            )
            self.ada_zero[-2].weight.data.mul_(1e-2)
        else:
            self.ada_zero = nn.Parameter(torch.randn(4, channels) * 1e-2)
        self.msa = MultiheadSelfAttention(channels, heads)
        amplitude = 1e2 ** -torch.rand(channels // 2)
        direction = torch.nn.functional.normalize(torch.randn(spatial, channels // 2), dim=0)
        self.theta = nn.Parameter(amplitude * direction)
        self.ffn = nn.Sequential(
            nn.Linear(channels, ffn_factor * channels),
            nn.SiLU(),
            nn.Identity() if dropout is None else nn.Dropout(dropout),
            nn.Linear(ffn_factor * channels, channels),
        )

    def forward(self, x, mod, coo, skip):
        theta = coo @ self.theta.to(x.dtype)
        if isinstance(self.ada_zero, nn.Parameter):
            a, b, c, d = self.ada_zero
        else:
            a, b, c, d = self.ada_zero(mod)
        y = (a + 1) * self.norm(x) + b
        y = y + self.msa(y, theta)
        y = self.ffn(y)
        y = (x + c * y) * torch.rsqrt(1 + c * c)
        return (y + d * skip) * torch.rsqrt(1 + d * d)


class ViT(nn.Module):
    def __init__(self, in_channels, out_channels, cond_channels, mod_features, hid_channels, hid_blocks,
                 spatial, heads, dropout=None):
        super().__init__()
        self.in_proj = nn.Linear(in_channels + cond_channels, hid_channels)
        self.out_proj = nn.Linear(hid_channels, out_channels)
        self.positional_embedding = nn.Sequential(
            SineEncoding(hid_channels), Flatten2(), nn.Linear(spatial * hid_channels, hid_channels))
        self.blocks = nn.ModuleList([
            ViTBlock(hid_channels, mod_features, spatial, heads, dropout=dropout) for _ in range(hid_blocks)])
        self.spatial = spatial

    def forward(self, x, mod, cond):
        x = torch.cat((x, cond), dim=1)
        B, C = x.shape[:2]
        shape = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)  # patch 1, channels last: (B, N, C)
        x = skip = self.in_proj(x)
        coo = torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, self.spatial).to(x.dtype)
        x = x + self.positional_embedding(coo)
        for blk in self.blocks:
            x = blk(x, mod, coo, skip)
        x = self.out_proj(x)
        return x.transpose(1, 2).unflatten(2, shape)


class EmbeddingWrapper(nn.Module):
    def __init__(self, backbone, time_embedding, label_embedding):
        super().__init__()
        self.backbone = backbone
        self.time_embedding = time_embedding
        self.label_embedding = label_embedding

    def forward(self, x_t, c_noise, label, cond):
        emb = self.time_embedding(c_noise) + self.label_embedding(label)
        return self.backbone(x_t, emb, cond=cond)


class ElucidatedDenoiser(nn.Module):
    """EDM preconditioning with alpha = 1; returns (mean, var)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x_t, sigma, label, cond):
        s = sigma.reshape(-1, *([1] * (x_t.ndim - 1)))
        c_in = torch.rsqrt(1 + s ** 2)
        c_out = s * torch.rsqrt(1 + s ** 2)
        c_skip = 1 / (1 + s ** 2)
        c_noise = 10 * torch.log(sigma)
        mean = c_skip * x_t + c_out * self.backbone(c_in * x_t, c_noise, label, cond)
        return mean, s ** 2 / (1 + s ** 2)


class MaskedSurrogate(nn.Module):
    def __init__(self, backbone, label_embedding):
        super().__init__()
        self.backbone = backbone
        self.label_embedding = label_embedding

    def forward(self, x, mask, label):
        return self.backbone(x * mask, self.label_embedding(label), cond=mask)


def mlp(i, m):
    return nn.Sequential(nn.Linear(i, m), nn.SiLU(), nn.Linear(m, m))


def make_dm(C, M, D, blocks, spatial, heads, label):
    vit = ViT(C, C, C, M, D, blocks, spatial, heads)
    time = nn.Sequential(SineEncoding(M), nn.Linear(M, M), nn.SiLU(), nn.Linear(M, M))
    return ElucidatedDenoiser(EmbeddingWrapper(vit, time, mlp(label, M)))


def make_ns(C, M, D, blocks, spatial, heads, label):
    return MaskedSurrogate(ViT(C, C, C, M, D, blocks, spatial, heads), mlp(label, M))


def log_logit_sigma(t, smin=1e-3, smax=1e3):
    tmin, tmax = smin / (1 + smin), smax / (1 + smax)
    return torch.exp(torch.logit(t * (tmax - tmin) + tmin))


# ---------------------------------------------------------------------------------------------
# Fixture

CFG_KEYS = ["B", "C", "L", "h", "w", "D", "blocks", "heads", "M", "label", "dm_params", "ns_params"]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "vit_tiny.bin")
    torch.manual_seed(1234)
    B, C, L, h, w, D, blocks, heads, M, label = 3, 3, 5, 4, 4, 32, 2, 4, 16, 5
    spatial = 3
    dm = make_dm(C, M, D, blocks, spatial, heads, label)
    ns = make_ns(C, M, D, blocks, spatial, heads, label)
    # Non-trivial modulation (the 0.01 init makes a..d tiny): widen the ada_zero.2 weights so the
    # gated residuals and the modulation gradients are exercised at O(1).
    with torch.no_grad():
        for model in (dm, ns):
            for name, p in model.named_parameters():
                if name.endswith("ada_zero.2.weight"):
                    p.mul_(30.0)
    tensors = []
    nparams = [sum(p.numel() for p in m.parameters()) for m in (dm, ns)]
    tensors.append(("cfg", torch.tensor([B, C, L, h, w, D, blocks, heads, M, label] + nparams, dtype=torch.float64)))

    # ---- DM
    x = torch.randn(B, C, L, h, w)
    frames = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.float32)
    mask = frames[:, None, :, None, None].expand(B, C, L, h, w).contiguous()
    lab = torch.randn(B, label)
    t = torch.tensor([0.25, 0.5, 0.8])
    sigma = log_logit_sigma(t.double()).float()
    eps = torch.randn(B, C, L, h, w)
    for name, p in dm.named_parameters():
        tensors.append(("dm.param." + name, p.detach()))
    tensors += [("dm.x", x), ("dm.mask", mask), ("dm.label", lab), ("dm.t", t), ("dm.sigma", sigma), ("dm.eps", eps)]

    dm64 = dm.double()
    xd, md, ld, sd, ed = x.double(), mask.double(), lab.double(), sigma.double(), eps.double()
    s = sd.reshape(-1, 1, 1, 1, 1)
    x_t = xd + s * ed
    x_t = torch.where(md.bool(), torch.sqrt(1 + s ** 2) * xd, x_t)  # DenoiserLoss masking
    mean, var = dm64(x_t, sd, ld, md)
    loss = ((mean - xd).square() / var).mean()
    loss.backward()
    tensors += [("dm.mean", mean.detach()), ("dm.loss", loss.detach().reshape(1))]
    for name, p in dm64.named_parameters():
        tensors.append(("dm.grad." + name, p.grad))

    # MaskedDenoiser at one shared sigma: x_t replaced by sqrt(1+s^2) y, mean by y on the mask.
    with torch.no_grad():
        y = xd * md
        xt_inf = 2.0 * torch.randn(B, C, L, h, w).double()
        s_inf = torch.full((B,), 2.5, dtype=torch.float64)
        xin = torch.where(md.bool(), math.sqrt(1 + 2.5 ** 2) * y, xt_inf)
        m_inf, _ = dm64(xin, s_inf, ld, md)
        m_inf = torch.where(md.bool(), y, m_inf)
    tensors += [("dm.infer.xt", xt_inf), ("dm.infer.sigma", s_inf), ("dm.infer.mean", m_inf)]

    # ---- NS
    xs = torch.randn(B, C, L, h, w)
    frames = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    ms = frames[:, None, :, None, None].expand(B, C, L, h, w).contiguous()
    ls = torch.randn(B, label)
    for name, p in ns.named_parameters():
        tensors.append(("ns.param." + name, p.detach()))
    tensors += [("ns.x", xs), ("ns.mask", ms), ("ns.label", ls)]
    ns64 = ns.double()
    yhat = ns64(xs.double(), ms.double(), ls.double())
    nloss = (xs.double() - yhat).square().mean()
    nloss.backward()
    tensors += [("ns.out", yhat.detach()), ("ns.loss", nloss.detach().reshape(1))]
    for name, p in ns64.named_parameters():
        tensors.append(("ns.grad." + name, p.grad))

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_fixture(out, [(n, t.detach().cpu().numpy()) for n, t in tensors])
    print("wrote %s: %d tensors, %d bytes; params dm %d ns %d; dm loss %.6f ns loss %.6f"
          % (out, len(tensors), os.path.getsize(out), nparams[0], nparams[1], loss.item(), nloss.item()))
    print("state_dict order (dm):", [k for k in dm.state_dict().keys()][:12], "...")


if __name__ == "__main__":
    main()
