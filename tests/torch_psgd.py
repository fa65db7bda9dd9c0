"""Independent PyTorch reference of PSGD-Kron as LoLa trains its autoencoders (lola-spec.md 6.3:
heavyball 1.4.3 ForeachCachedDelayedPSGDKron, beta 0.9, max_size_triangular 4096, merge_dims False,
update probability max(1/64, 0.999^n), trust-region update clipping), written from the spec for
tests/test_psgd.c.

Usage:
  python3 tests/torch_psgd.py tests/fixtures/psgd_ref.bin            # write the fixture
  python3 tests/torch_psgd.py --heavyball DIR                         # also run heavyball itself

Gaussian draws: the same counter-based streams as src/psgd.c (rng_hash_normal of src/rng.h,
reimplemented here bit for bit; psgd_noise_seed), so the C code and this reference see identical
noise. With --heavyball DIR (a directory holding a heavyball 1.4.3 package, e.g. from
`git show 1c8f942:heavyball/...` of HomebrewML/HeavyBall), every scenario is also run through
heavyball's ForeachCachedDelayedPSGDKron with torch.randn / randn_like patched to return the same
draws (V in heavyball's rotated layout) and the step counter set to the scenario's k, and the
parameters, factors and caches are compared with this reference. That check confirmed, e.g., that
heavyball refreshes the cache of a dense axis from Q as it was BEFORE the step's update (see
src/psgd.h), which this reference reproduces.

Scenarios (tensor names prefixed "<scenario>/"):
  forced  every step updates the preconditioner (probability 1), k = 1..6, weight decay 0
  sched   the real schedule p(k) = max(1/64, 0.999^k), r = random.Random(0x172381 ^ k).random(),
          at steps chosen to include a skipped update and a balancing step; weight decay 0.1
  small   max_size 6 (the 7-wide axis of w2d becomes diagonal), forced, k = 1..3
Table: w2d (5, 7), conv (4, 3, 3, 3), conv1x1 (4, 6, 1, 1), bias (4,).
"""
import argparse
import math
import random
import sys

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fixture import write_fixture  # noqa: E402

M64 = (1 << 64) - 1
NOISE_SEED = 0x50534744
SHAPES = [("w2d", (5, 7)), ("conv", (4, 3, 3, 3)), ("conv1x1", (4, 6, 1, 1)), ("bias", (4,))]
TINY = torch.finfo(torch.bfloat16).tiny


# ---- src/rng.h rng_hash / rng_hash_normal, bit for bit ----------------------------------------
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_hash(seed, index):
    return mix64((mix64(seed ^ 0x9E3779B97F4A7C15) + index * 0x9E3779B97F4A7C15) & M64)


def rng_hash_normal(seed, index):
    r = rng_hash(seed, index)
    u1 = ((r >> 40) + 1.0) * (1.0 / 16777217.0)
    u2 = ((r >> 16) & 0xFFFFFF) * (1.0 / 16777216.0)
    return np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2))


def noise_seed(k, tensor, which):
    return rng_hash(rng_hash(rng_hash(NOISE_SEED, k), tensor), which)


def gaussian(seed, shape):
    n = int(np.prod(shape))
    return torch.from_numpy(np.array([rng_hash_normal(seed, i) for i in range(n)], dtype=np.float32).reshape(shape))


# ---- the optimizer, from lola-spec.md 6.3 -------------------------------------------------------
def schedule(k, force):
    r = random.Random(0x172381 ^ k).random()
    upd = (r < max(1 / 64, 0.999**k)) if force is None else force
    return upd, upd and r < 0.01, r


def mode(x, m, a):
    """x x_a m: axis a of x multiplied from the left by matrix m."""
    return torch.movedim(torch.tensordot(m, x, dims=([1], [a])), 0, a)


def along(x, d, a):
    """x scaled elementwise along axis a by vector d."""
    shape = [1] * x.dim()
    shape[a] = -1
    return x * d.reshape(shape)


def unfold(x, a):
    return torch.movedim(x, a, 0).reshape(x.shape[a], -1)


def norm_lower_bound(t2, mx):
    a = t2 / mx
    i = torch.argmax((a * a).sum(0))
    x = a[:, i]
    y = x @ a
    y = y / y.norm()
    return (a @ y).norm() * mx


def trust_region(u):
    x = u / 1.5
    y = torch.sign(x) * torch.log1p(x.abs()) * 0.1 + torch.tanh(x) * 0.9
    return (y * 1.5).clamp(-2, 2)


class Psgd:
    def __init__(self, shapes, max_size=4096, beta=0.9, precond_lr=0.1):
        self.beta, self.plr = beta, precond_lr
        self.dense = [[len(s) >= 2 and 1 < n <= max_size for n in s] for s in shapes]
        self.q = [[torch.eye(n) if d else torch.ones(n) for n, d in zip(s, ds)] for s, ds in zip(shapes, self.dense)]
        # the cache starts as Q0^T Q0 (heavyball: uninitialised memory, lola-spec.md 6.3 quirk)
        self.p = [[q.clone() for q in qs] for qs in self.q]
        self.m = [torch.zeros(s) for s in shapes]

    def step(self, params, grads, lr, wd, k, force=None):
        upd, bal, _ = schedule(k, force)
        b = np.float32(1 - (1 - self.beta) / (1 - self.beta**k))
        w = float(np.float32(1) - b)
        for t, (p, g) in enumerate(zip(params, grads)):
            self.m[t] = torch.lerp(self.m[t], g, w)  # at k = 1, w = 1 and m = g
            u = self.m[t]
            x = u
            for a, (pa, d) in enumerate(zip(self.p[t], self.dense[t])):
                x = mode(x, pa, a) if d else along(x, pa, a)
            p.mul_(1 - lr * wd).add_(trust_region(x), alpha=-lr)
            if upd:
                self.update(t, u, k, bal)
        return upd, bal

    def update(self, t, u, k, bal):
        qs, ds = self.q[t], self.dense[t]
        # cache of dense axes: from Q before this update (heavyball 1.4.3 behaviour)
        for a, d in enumerate(ds):
            if d:
                self.p[t][a] = qs[a].T @ qs[a]
        eps = math.sqrt(torch.finfo(torch.float32).eps) * u.norm() / u.numel()
        g = u + gaussian(noise_seed(k, t, 0), u.shape) * eps
        v = gaussian(noise_seed(k, t, 1), u.shape)
        A, B = g, v
        for a, (q, d) in enumerate(zip(qs, ds)):
            if d:
                A = mode(A, q, a)
                # B x_a Q^{-T}: solve Q^T X = B_(a) (Q^T is lower triangular)
                Bm = torch.linalg.solve_triangular(q.T, unfold(B, a), upper=False)
                B = torch.movedim(Bm.reshape((q.shape[0],) + tuple(torch.movedim(B, a, 0).shape[1:])), 0, a)
            else:
                A = along(A, q, a)
                B = along(B, 1 / q, a)
        new = []
        for a, (q, d) in enumerate(zip(qs, ds)):
            Au, Bu = unfold(A, a), unfold(B, a)
            if d:
                t1, t2 = Au @ Au.T, Bu @ Bu.T
            else:
                t1, t2 = (Au * Au).sum(1), (Bu * Bu).sum(1)
            t1, t2 = (t1 - t2) * self.plr, t1 + t2
            mx = t2.abs().max()
            if d:
                den = torch.clamp(norm_lower_bound(t2, mx) if mx > 0 else mx, min=TINY)
                new.append(q - torch.triu(t1) / den @ q)
            else:
                new.append(q - t1 * q / torch.clamp(mx, min=TINY))
        if bal and len(qs) > 1:
            norms = torch.stack([q.abs().max() for q in new])
            gm = norms.log().mean().exp()
            new = [q * (gm / n) for q, n in zip(new, norms)]
        self.q[t] = new
        for a, d in enumerate(ds):
            if not d:
                self.p[t][a] = new[a] * new[a]


# ---- scenarios ----------------------------------------------------------------------------------
def pick_sched_steps():
    """1, 2, 3, the first k with a skipped update, the first k with balancing, and k + 1 of each."""
    skip = next(k for k in range(4, 100000) if not schedule(k, None)[0])
    bal = next(k for k in range(4, 100000) if schedule(k, None)[1])
    return [1, 2, 3, skip, skip + 1, bal, bal + 1]


SCENARIOS = {  # name: (force, ks, lr, wd, max_size)
    "forced": (True, list(range(1, 7)), 0.05, 0.0, 4096),
    "sched": (None, pick_sched_steps(), 0.05, 0.1, 4096),
    "small": (True, [1, 2, 3], 0.05, 0.0, 6),
}


def scenario_data(name):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    params = [torch.randn(s, generator=gen) * 0.5 for _, s in SHAPES]
    ks = SCENARIOS[name][1]
    grads = [[torch.randn(s, generator=gen) * (0.1 + 0.05 * j) for _, s in SHAPES] for j in range(len(ks))]
    return params, grads


def run_reference(name):
    force, ks, lr, wd, max_size = SCENARIOS[name]
    params, grads = scenario_data(name)
    out = [(f"{name}/meta", [len(ks), lr, wd, max_size, -1 if force is None else int(force)]), (f"{name}/ks", ks)]
    out += [(f"{name}/init/{n}", p) for (n, _), p in zip(SHAPES, params)]
    opt = Psgd([s for _, s in SHAPES], max_size=max_size)
    params = [p.clone() for p in params]
    flags = []
    for j, k in enumerate(ks):
        upd, bal = opt.step(params, grads[j], lr, wd, k, force)
        flags += [upd, bal]
        out += [(f"{name}/grad{j}/{n}", g) for (n, _), g in zip(SHAPES, grads[j])]
        out += [(f"{name}/step{j}/{n}", p.clone()) for (n, _), p in zip(SHAPES, params)]
    out.append((f"{name}/flags", flags))
    for t, (n, _) in enumerate(SHAPES):
        out.append((f"{name}/mom/{n}", opt.m[t]))
        for a in range(len(opt.q[t])):
            out += [(f"{name}/q/{n}/{a}", opt.q[t][a]), (f"{name}/p/{n}/{a}", opt.p[t][a])]
    return out, opt, params, flags


# ---- optional: heavyball itself ------------------------------------------------------------------
def run_heavyball(name, hb_dir):
    sys.path.insert(0, hb_dir)
    import heavyball
    import heavyball.chainable as C
    import heavyball.utils as U

    U.compile_mode = None
    force, ks, lr, wd, max_size = SCENARIOS[name]
    params0, grads = scenario_data(name)
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    state = {"k": 1}
    queue = []

    def prob(n):
        return 1.0 if force else max(1 / 64, 0.999 ** state["k"])

    opt = heavyball.ForeachCachedDelayedPSGDKron(params, lr=lr, beta=0.9, weight_decay=wd, max_size_triangular=max_size,
                                                 preconditioner_update_probability=prob)
    # heavyball leaves the first cache uninitialised; the spec (and src/psgd.c) start from Q0^T Q0
    guard = C.scale_by_delayed_psgd
    orig_init = guard.init_fn

    def init_with_cache(st, group, update, grad, param, **kw):
        orig_init(st, group, update, grad, param, **kw)
        for c, q in zip(st["Q_cache"], U.line_to_triu(st["Q"])):
            c.copy_(q.T @ q if q.dim() == 2 else q * q)

    guard.init_fn = init_with_cache
    real_randn, real_randn_like = torch.randn, torch.randn_like
    U.torch.randn_like = lambda x, **kw: queue.pop(0)
    U.torch.randn = lambda *shape, **kw: queue.pop(0)
    try:
        for j, k in enumerate(ks):
            state["k"] = k
            upd, _, _ = schedule(k, force)
            for t, p in enumerate(params):
                if upd:
                    queue.append(gaussian(noise_seed(k, t, 0), p.shape))
                    v = gaussian(noise_seed(k, t, 1), p.shape)
                    queue.append(v.permute(*range(1, v.dim()), 0).contiguous() if v.dim() > 1 else v)
                st = opt.state[(p, 0)]  # heavyball keys the state by (parameter, view index)
                if "step" in st:
                    st["step"] = k - 1
                p.grad = grads[j][t].clone()
            if j == 0:  # the first call creates the state with step 0 -> k must be 1 here
                assert k == 1
            opt.step()
            assert not queue, "heavyball drew a different number of Gaussians"
    finally:
        torch.randn, torch.randn_like = real_randn, real_randn_like
        guard.init_fn = orig_init
    qs = []
    for p in params:
        st = opt.state[(p, 0)]
        qs.append((U.line_to_triu(st["Q"]), st["Q_cache"]))
    return [p.detach() for p in params], qs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", nargs="?", help="fixture path (tests/fixtures/psgd_ref.bin)")
    ap.add_argument("--heavyball", help="directory with a heavyball 1.4.3 package: compare against it")
    args = ap.parse_args()
    tensors = []
    worst = 0.0
    for name in SCENARIOS:
        out, opt, params, flags = run_reference(name)
        tensors += out
        print(f"{name}: ks {SCENARIOS[name][1]} update/balance {flags}")
        if args.heavyball:
            hp, hq = run_heavyball(name, args.heavyball)
            for t, (n, _) in enumerate(SHAPES):
                d = ((hp[t] - params[t]).abs().max() / params[t].abs().max()).item()
                dq = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(hq[t][0], opt.q[t]))
                dp = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(hq[t][1], opt.p[t]))
                worst = max(worst, d, dq, dp)
                print(f"  heavyball vs reference {name}/{n}: params {d:.2e}, Q {dq:.2e}, cache {dp:.2e} (max rel)")
    if args.heavyball:
        print(f"heavyball 1.4.3 vs this reference: worst relative difference {worst:.2e}")
        if worst > 1e-4:
            sys.exit("heavyball and the reference disagree")
    # Python's random.Random(0x172381 ^ k).random() (heavyball's per-step draw) at a few k
    ks = list(range(1, 21)) + [100, 1000, 5000, 262144]
    tensors += [("schedule/k", ks), ("schedule/r", [random.Random(0x172381 ^ k).random() for k in ks]),
                ("schedule/p", [max(1 / 64, 0.999**k) for k in ks])]
    if args.out:
        write_fixture(args.out, tensors)
        print(f"wrote {args.out}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
