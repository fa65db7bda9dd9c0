"""PyTorch mirror of the DCAE autoencoder (lola-spec.md §2), written for lola-c's parity test.

Our own modules, arranged so that the state_dict names equal those of LoLa's
AutoEncoder(DCEncoder, DCDecoder) (encoder.descent.i.j..., decoder.ascent.k.j..., ResBlock
.norm/.attn.0/.ffn.{0,3}, MultiheadAttention's in_proj_weight/in_proj_bias/out_proj). Math as in
the spec: zero-padded 3x3 convs, channel LayerNorm with the unbiased variance, pixel (un)shuffle
with channel index c*4 + i*2 + j, softclip2 saturation, VRMSE with the unbiased target variance.

Writes tests/fixtures/dcae_tiny.bin (tests/fixture.py format) for tests/test_dcae.c:
  meta                      [pix, lat, B, H, W, levels, heads_last, dropout, seed_lo, seed_hi,
                             first_sample]
  <param name>              every parameter, in named_parameters (= state_dict minus buffers) order
  x, z, y                   input, saturated latent, output (eval mode)
  loss_vrmse, loss_mae      scalars (VRMSE eps 1e-2)
  grad.<param>, grad.x      d loss_vrmse / d (parameter, input)
  train.y, train.loss_vrmse, train.grad.<param>, train.grad.x
                            the same in training mode with dropout p = 0.05, masks drawn exactly
                            as lola-c does, per sample: sample b keeps element i of its own
                            (C, H, W) slice when rng_hash_uniform(rng_hash(rng_hash(seed, block),
                            first_sample + b), i) >= p
The reference is computed in float64 and stored as float32.

Usage: python3 tests/torch_dcae.py [--out PATH] [--lola PATH_TO_LOLA_REPO]
With --lola (needs einops), also builds LoLa's own DCEncoder/DCDecoder from that checkout and checks
that its state_dict keys/shapes equal ours and that it gives the same outputs with our weights.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture import write_fixture  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Counter-based random numbers of src/rng.h (for dropout masks identical to lola-c's).

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z):
    """splitmix64 finaliser on a numpy uint64 array (wrapping arithmetic)."""
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_hash(seed, index):
    """rng_hash(seed, index) of src/rng.h; index is an integer array."""
    s = mix64(np.array([seed ^ GOLDEN], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        return mix64(s + np.asarray(index, dtype=np.uint64) * np.uint64(GOLDEN))


def rng_hash_uniform(seed, n):
    return (rng_hash(seed, np.arange(n, dtype=np.uint64)) >> np.uint64(40)).astype(np.float64) / 16777216.0


# ---------------------------------------------------------------------------------------------
# Modules (names chosen to reproduce LoLa's state_dict)


class ChannelLayerNorm(nn.Module):
    """(x - mean_c) / sqrt(var_c + eps), unbiased variance, no affine. LoLa keeps eps as a buffer."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.register_buffer("eps", torch.as_tensor(eps))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=1, keepdim=True)  # correction = 1 (unbiased)
        return (x - mean) / torch.sqrt(var + self.eps)


class SpatialMHA(nn.Module):
    """Multi-head self-attention over all pixels; parameter names of torch.nn.MultiheadAttention."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x):
        B, C, H, W = x.shape
        t = x.reshape(B, C, H * W).transpose(1, 2)  # (B, N, C), row-major pixels
        qkv = t @ self.in_proj_weight.T + self.in_proj_bias
        dh = C // self.heads
        q, k, v = qkv.reshape(B, H * W, 3, self.heads, dh).permute(2, 0, 3, 1, 4)  # (B, heads, N, dh)
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, H * W, C)
        y = self.out_proj(y)
        return y.transpose(1, 2).reshape(B, C, H, W)


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class HashDropout(nn.Module):
    """Inverted dropout with lola-c's counter-based masks; identity when p = 0 or in eval mode."""

    def __init__(self, p):
        super().__init__()
        self.p = p
        self.seed = None  # block seed, set per forward by the autoencoder
        self.first_sample = 0  # stream position of sample 0, set per forward by the autoencoder

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        n = x[0].numel()
        u = np.concatenate([rng_hash_uniform(int(rng_hash(self.seed, np.array([self.first_sample + b]))[0]), n)
                            for b in range(x.shape[0])])
        keep = torch.from_numpy((u >= self.p).astype(np.float64)).to(x.dtype).reshape(x.shape)
        return x * keep / (1 - self.p)


class ResBlock(nn.Module):
    def __init__(self, channels, heads, kernel, ffn_factor, dropout):
        super().__init__()
        self.norm = ChannelLayerNorm()
        if heads:
            self.attn = Residual(SpatialMHA(channels, heads))
            kernel = 1  # LoLa: attention blocks use 1x1 FFN convs
        else:
            self.attn = nn.Identity()
        f = channels * ffn_factor
        self.ffn = nn.Sequential(
            nn.Conv2d(channels, f, kernel, padding=kernel // 2),
            nn.SiLU(),
            HashDropout(dropout),
            nn.Conv2d(f, channels, kernel, padding=kernel // 2),
        )
        self.ffn[-1].weight.data.mul_(1e-2)

    def forward(self, x):
        return x + self.ffn(self.attn(self.norm(x)))


def identity_conv(cin, cout, k, identity):
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    if identity:
        eye = torch.zeros_like(conv.weight)
        for o in range(cout):
            eye[o, o % cin, k // 2, k // 2] = 1
        conv.weight.data.mul_(1e-2).add_(eye)
    return conv


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, n, k = cfg["hid_channels"], cfg["hid_blocks"], cfg["kernel"]
        self.descent = nn.ModuleList()
        for i in range(len(h)):
            blocks = nn.ModuleList()
            if i == 0:
                blocks.append(identity_conv(cfg["pix"], h[0], k, False))
            else:
                blocks.append(nn.Sequential(nn.PixelUnshuffle(2), identity_conv(4 * h[i - 1], h[i], k, cfg["identity"])))
            for _ in range(n[i]):
                blocks.append(ResBlock(h[i], cfg["heads"].get(i, 0), k, 1, cfg["dropout"]))
            if i == len(h) - 1:
                blocks.append(identity_conv(h[i], cfg["lat"], k, cfg["identity"]))
            self.descent.append(blocks)

    def forward(self, x):
        for blocks in self.descent:
            for b in blocks:
                x = b(x)
        return x


class Decoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, n, k = cfg["hid_channels"], cfg["hid_blocks"], cfg["kernel"]
        L = len(h)
        self.ascent = nn.ModuleList()
        for i in reversed(range(L)):
            blocks = nn.ModuleList()
            if i == L - 1:
                blocks.append(identity_conv(cfg["lat"], h[i], k, cfg["identity"]))
            for _ in range(n[i]):
                blocks.append(ResBlock(h[i], cfg["heads"].get(i, 0), k, 1, cfg["dropout"]))
            if i > 0:
                blocks.append(nn.Sequential(identity_conv(h[i], 4 * h[i - 1], k, cfg["identity"]), nn.PixelShuffle(2)))
            else:
                blocks.append(identity_conv(h[0], cfg["pix"], k, False))
            self.ascent.append(blocks)

    def forward(self, x):
        for blocks in self.ascent:
            for b in blocks:
                x = b(x)
        return x


class AutoEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def set_dropout_seed(self, seed, first_sample):
        """Block k (in module order: encoder then decoder) has seed rng_hash(seed, k); sample b of the
        batch then draws with rng_hash(that, first_sample + b)."""
        blocks = [m for m in self.modules() if isinstance(m, ResBlock)]
        for k, blk in enumerate(blocks):
            blk.ffn[2].seed = int(rng_hash(seed, np.array([k]))[0])
            blk.ffn[2].first_sample = first_sample

    def forward(self, x):
        z = self.encoder(x)
        z = z / torch.sqrt(1 + (z / 5) ** 2)  # softclip2
        return self.decoder(z), z


def vrmse(y, x, eps=1e-2):
    B, C = x.shape[:2]
    x, y = x.reshape(B, C, -1), y.reshape(B, C, -1)
    return torch.sqrt((x - y).square().mean(dim=2) / (x.var(dim=2) + eps)).mean()


# ---------------------------------------------------------------------------------------------

TINY = dict(pix=3, lat=4, hid_channels=[8, 16, 32], hid_blocks=[1, 1, 2], heads={2: 2}, kernel=3,
            dropout=0.05, identity=True, B=2, H=16, W=16, seed=0x5EED1234ABCD,
            first_sample=37)


def randomise(model, gen):
    """Replace every parameter by U(-a, a), a = 1/sqrt(fan_in) (ffn.3 and biases included), so that
    each path of the network contributes at O(1) and the parity test is sensitive to all of them."""
    for name, p in model.named_parameters():
        if p.dim() > 1:
            fan = p[0].numel()
        else:
            fan = p.numel()
        a = 1.0 / math.sqrt(fan)
        with torch.no_grad():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1) * a)


def run_case(model, x, train, seed, first_sample):
    model.train(train)
    model.set_dropout_seed(seed, first_sample)
    model.zero_grad()
    x = x.clone().requires_grad_(True)
    y, z = model(x)
    loss = vrmse(y, x.detach())
    mae = (y - x.detach()).abs().mean()
    loss.backward()
    grads = [(n, p.grad.detach().clone()) for n, p in model.named_parameters()]
    return y.detach(), z.detach(), loss.item(), mae.item(), grads, x.grad.detach().clone()


def check_against_lola(lola_dir, model, cfg, x):
    """Builds LoLa's DCEncoder/DCDecoder from a checkout and compares names, shapes and outputs."""
    import importlib.util
    import types

    pkg = types.ModuleType("lolann")
    pkg.__path__ = [os.path.join(lola_dir, "lola", "nn")]
    sys.modules["lolann"] = pkg
    for mod in ("layers", "dcae"):
        spec = importlib.util.spec_from_file_location("lolann." + mod, os.path.join(lola_dir, "lola", "nn", mod + ".py"))
        m = importlib.util.module_from_spec(spec)
        sys.modules["lolann." + mod] = m
        spec.loader.exec_module(m)
    dcae = sys.modules["lolann.dcae"]
    kw = dict(hid_channels=cfg["hid_channels"], hid_blocks=cfg["hid_blocks"], attention_heads=cfg["heads"],
              dropout=cfg["dropout"], identity_init=True)
    ref = nn.Module()
    ref.encoder = dcae.DCEncoder(cfg["pix"], cfg["lat"], **kw)
    ref.decoder = dcae.DCDecoder(cfg["lat"], cfg["pix"], **kw)
    ref = ref.double().eval()
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours.keys()) == list(theirs.keys()), "state_dict keys differ"
    for k in ours:
        assert ours[k].shape == theirs[k].shape, f"shape of {k} differs"
    ref.load_state_dict(ours)
    with torch.no_grad():
        z = ref.encoder(x)
        z = z * torch.rsqrt(1 + torch.square(z / 5))
        y = ref.decoder(z)
        y2, z2 = model.eval()(x)
    dz, dy = (z - z2).abs().max().item(), (y - y2).abs().max().item()
    print(f"lola cross-check: {len(ours)} state_dict entries identical, max |dz| {dz:.3g}, max |dy| {dy:.3g}")
    assert dz < 1e-10 and dy < 1e-10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "dcae_tiny.bin"))
    ap.add_argument("--lola", default=None, help="path to a PolymathicAI/lola checkout (optional cross-check)")
    args = ap.parse_args()
    cfg = TINY
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)
    model = AutoEncoder(cfg).double()
    randomise(model, gen)
    x = torch.randn(cfg["B"], cfg["pix"], cfg["H"], cfg["W"], generator=gen, dtype=torch.float64)
    if args.lola:
        check_against_lola(args.lola, model, cfg, x)

    seed = cfg["seed"]
    y, z, loss, mae, grads, gx = run_case(model, x, False, seed, cfg["first_sample"])
    ty, _, tloss, _, tgrads, tgx = run_case(model, x, True, seed, cfg["first_sample"])
    print(f"eval: vrmse {loss:.6f} mae {mae:.6f}; train (dropout {cfg['dropout']}): vrmse {tloss:.6f}; "
          f"max |y_eval - y_train| {(y - ty).abs().max().item():.3g}")

    heads_last = cfg["heads"].get(len(cfg["hid_channels"]) - 1, 0)
    meta = [cfg["pix"], cfg["lat"], cfg["B"], cfg["H"], cfg["W"], len(cfg["hid_channels"]), heads_last,
            cfg["dropout"], seed & 0xFFFFFF, seed >> 24, cfg["first_sample"]]
    t = [("meta", np.array(meta, dtype=np.float64))]
    t += [(n, p.detach().numpy()) for n, p in model.named_parameters()]
    t += [("x", x.numpy()), ("z", z.numpy()), ("y", y.numpy()), ("loss_vrmse", np.array([loss])),
          ("loss_mae", np.array([mae]))]
    t += [("grad." + n, g.numpy()) for n, g in grads] + [("grad.x", gx.numpy())]
    t += [("train.y", ty.numpy()), ("train.loss_vrmse", np.array([tloss]))]
    t += [("train.grad." + n, g.numpy()) for n, g in tgrads] + [("train.grad.x", tgx.numpy())]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_fixture(args.out, t)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {len(t)} tensors, {nparam} parameters, {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
