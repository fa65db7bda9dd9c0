"""Reference values for tests/test_metrics.c: LoLa's evaluation metrics (lola-spec.md 5.3)
computed with PyTorch on random fields, written as a LOLAFIX1 fixture.
Usage: python3 tests/torch_metrics.py tests/fixtures/metrics.bin"""
import math
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fixture import write_fixture  # noqa: E402


def binning(shape):
    ks = [torch.fft.fftfreq(s) for s in shape]
    k = torch.sqrt(sum(torch.meshgrid(*[x**2 for x in ks], indexing="ij")))
    bins = math.floor(math.sqrt(k.ndim) * min(k.shape) / 2)
    edges = torch.linspace(0, k.max(), bins + 1)
    idx = torch.bucketize(k.flatten(), edges)
    counts = torch.bincount(idx, minlength=bins + 1)
    return edges, counts, idx


def binned(vals, shape):
    edges, counts, idx = binning(shape)
    flat = vals.flatten(start_dim=-len(shape))
    out = torch.zeros((*flat.shape[:-1], edges.numel()), dtype=flat.dtype)
    out = out.scatter_add(-1, idx.expand_as(flat), flat)
    return (out / counts.clip(min=1))[..., 1:], edges[1:]


def metrics(u, v):
    S = v.shape[0]
    dims = tuple(range(-u.ndim, 0))
    m1, m2 = u.mean(), (u**2).mean()
    spread = torch.sqrt((S + 1) / (S - 1) * ((v - v.mean(0)) ** 2).mean()) if S > 1 else torch.tensor(0.0)
    mse = ((u - v.mean(0)) ** 2).mean()
    rmse, nrmse, vrmse = mse.sqrt(), torch.sqrt(mse / (m2 + 1e-6)), torch.sqrt(mse / (u.var() + 1e-6))
    re = 1 - v.mean(0).sum() / u.sum()
    su, sv = torch.fft.fftn(u, dim=dims, norm="ortho"), torch.fft.fftn(v, dim=dims, norm="ortho")
    pu, k = binned(su.abs() ** 2, u.shape)
    pv, _ = binned(sv.abs() ** 2, u.shape)
    pv = pv.mean(0)
    c, _ = binned((su * sv.conj()).abs(), u.shape)
    c = c.mean(0)
    sep = (1 - (pv + 1e-6) / (pu + 1e-6)) ** 2
    sec = (1 - (c + 1e-6) / torch.sqrt(pu * pv + 1e-12)) ** 2
    b = torch.logspace(k[0].log2(), -1.0, steps=4, base=2)
    bands = []
    for i in range(4):
        m = (b[i] <= k) & (k <= b[i + 1]) if i < 3 else b[i] <= k
        bands += [torch.sqrt(sep[m].mean()), torch.sqrt(sec[m].mean())]
    return [m1, m2, spread, rmse, nrmse, vrmse, re] + bands


def main(path):
    g = torch.Generator().manual_seed(7)
    tensors = []
    for name, shape, S in (("a", (16, 12), 4), ("b", (32, 32), 3), ("c", (8, 8, 8), 2)):
        u = torch.rand(shape, generator=g, dtype=torch.float64).float() + 0.5
        ae = u + 0.05 * torch.randn(shape, generator=g).float()
        v = u + 0.2 * torch.randn((S, *shape), generator=g).float()
        tensors += [(name + ".u", u), (name + ".ae", ae), (name + ".v", v)]
        tensors.append((name + ".abs", torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in metrics(u.double(), v.double())])))
        tensors.append((name + ".rel", torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in metrics(ae.double(), v.double())])))
        p, k = binned(torch.fft.fftn(u.double(), norm="ortho").abs() ** 2, shape)
        tensors += [(name + ".power", p), (name + ".k", k)]
    write_fixture(path, tensors)


if __name__ == "__main__":
    main(sys.argv[1])
