#!/usr/bin/env python3
"""compare.py: CPU-vs-GPU comparisons of lola outputs for tests/gpu/models.sh (numpy + h5py only).

usage:
  compare.py ckpt A B --lr LR [--rtol-moment R] [--step-tol S] [--top N]
      two checkpoints (state.h5) after the same training steps from the same seed: every tensor
      under params/ and optim/ (AdamW m, v; PSGD m and preconditioner factors), per tensor.
        optimizer state: max|B - A| <= rtol_moment * max|A| (per tensor; default 1e-4).
          After one step m = (1 - beta1) g, so this is the gradient check.
        parameters: |B - A| <= 1e-6 max|A| + step_tol * lr per element (default step_tol 1e-3:
          the two updates agree to 0.1% of a step), except where the gradient is at noise level:
          elements with |m_A| < 1e-4 max|m_A| of that tensor. There Adam's first update
          lr * g / (|g| + eps) turns a rounding-level difference of g into a difference of up to lr
          (its direction is not defined by the data); they are counted and reported, not judged.
        root attributes step, epoch, samples, optim_t, param_count, optimizer, kind: equal.
  h5 A B [--rtol R] [--top N]
      every dataset of two HDF5 files (latent caches), per dataset max|B - A| <= R * max|A|
      (default 1e-4); integer datasets exactly.
  steps A B [--rtol R]
      the per-step records of two metrics.jsonl files (same steps): loss (a forward check) and
      grad_norm (the global gradient norm, before clipping) within R relative (default 1e-4).
  csv A B [--rtol R] [--atol-frac F] [--top N]
      two eval stats.csv files: the same rows (method, trajectory, field, lead_time, relative);
      every metric but `speed` within |B - A| <= R |A| + F max|column| (defaults 1e-3, 1e-5).
Prints the N worst items and one verdict line "compare: ... PASS|FAIL (...)".
Exit status: 0 pass, 1 values differ beyond the tolerance, 2 unreadable / different layout.
"""
import argparse
import csv
import sys

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover
    print("compare: h5py is not installed")
    sys.exit(2)


def datasets(f, prefix=""):
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = obj

    (f[prefix] if prefix else f).visititems(visit)
    return {(prefix + "/" + k if prefix else k): v for k, v in out.items()}


def same_layout(da, db, what):
    if set(da) != set(db):
        print("compare: %s: different datasets: only in A %s, only in B %s"
              % (what, sorted(set(da) - set(db))[:5], sorted(set(db) - set(da))[:5]))
        return False
    for k in sorted(da):
        if da[k].shape != db[k].shape or da[k].dtype != db[k].dtype:
            print("compare: %s: %s: A %s %s, B %s %s" % (what, k, da[k].shape, da[k].dtype, db[k].shape, db[k].dtype))
            return False
    return True


def arr(d):
    return np.asarray(d[()], dtype=np.float64)


def cmd_ckpt(a):
    try:
        fa, fb = h5py.File(a.a, "r"), h5py.File(a.b, "r")
        da, db = datasets(fa), datasets(fb)
    except (OSError, KeyError) as e:
        print("compare: cannot read %s / %s: %s" % (a.a, a.b, e))
        return 2
    if not any(k.startswith("params/") for k in da):
        print("compare: %s has no params/ group: not a lola checkpoint" % a.a)
        return 2
    if not same_layout(da, db, "checkpoint"):
        return 2
    status = 0
    for k in ("kind", "optimizer", "step", "epoch", "samples", "optim_t", "param_count"):
        va, vb = fa.attrs.get(k), fb.attrs.get(k)
        if (va is None) != (vb is None) or (va is not None and not np.array_equal(np.asarray(va), np.asarray(vb))):
            print("compare: attribute @%s: A %r, B %r" % (k, va, vb))
            status = 1
    rows = []  # (ratio to bound, name, max|d|, max|A|, bound, note)
    n_noise = n_vals = 0
    for k in sorted(da):
        if not (k.startswith("params/") or k.startswith("optim/")):
            continue
        x, y = arr(da[k]), arr(db[k])
        n_vals += x.size
        if x.size == 0:
            continue
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            rows.append((float("inf"), k, float("nan"), float("nan"), 0.0, "non-finite values"))
            continue
        d = np.abs(y - x)
        amax = float(np.abs(x).max())
        note = ""
        if k.startswith("params/"):
            tol = 1e-6 * amax + a.step_tol * a.lr
            judged = np.ones(x.shape, bool)
            mk = "optim/m/" + k[len("params/"):]
            if mk in da:
                g = np.abs(arr(da[mk]))
                noise = g < 1e-4 * g.max() if g.max() > 0 else np.ones(x.shape, bool)
                judged = ~noise
                if noise.any():
                    n_noise += int(noise.sum())
                    note = "%d noise-level-gradient element(s) not judged, their max|d| %.3g" % (noise.sum(), d[noise].max())
            dmax = float(d[judged].max()) if judged.any() else 0.0
            # Sanity bound for the unjudged elements: a few steps' worth (no update moves an
            # element by more than ~lr per step), so garbage there is still caught.
            steps = max(1, int(fa.attrs.get("step", 1)))
            if (~judged).any() and float(d[~judged].max()) > 1e-6 * amax + 4 * a.lr * steps:
                dmax = max(dmax, float(d[~judged].max()))
                note += " (beyond 4 lr x %d step(s): counted)" % steps
        else:
            tol = a.rtol_moment * amax
            dmax = float(d.max())
        ratio = dmax / tol if tol > 0 else (0.0 if dmax == 0 else float("inf"))
        rows.append((ratio, k, dmax, amax, tol, note))
    rows.sort(key=lambda r: -r[0])
    bad = [r for r in rows if r[0] > 1]
    n_same = sum(1 for k in da if (k.startswith("params/") or k.startswith("optim/")) and
                 np.asarray(da[k][()]).tobytes() == np.asarray(db[k][()]).tobytes())
    print("  %d of %d tensors bit-identical" % (n_same, len(rows)))
    for r in [r for r in rows if r[2] != 0][: a.top]:
        print("  %-62s max|d| %.3g  max|A| %.3g  bound %.3g  (%.3g of bound)%s"
              % (r[1], r[2], r[3], r[4], r[0], "  " + r[5] if r[5] else ""))
    worst_p = max((r for r in rows if r[1].startswith("params/")), key=lambda r: r[0], default=None)
    worst_o = max((r for r in rows if r[1].startswith("optim/")), key=lambda r: r[0], default=None)
    msg = "compare: %d tensors, %d values; worst param %s (max|d| %.3g, %.3g of bound); worst optimizer state %s (max|d| %.3g = %.3g max|A|); %d noise-level-gradient element(s) not judged" % (
        len(rows), n_vals, worst_p[1] if worst_p else "-", worst_p[2] if worst_p else 0, worst_p[0] if worst_p else 0,
        worst_o[1] if worst_o else "-", worst_o[2] if worst_o else 0, (worst_o[2] / worst_o[3]) if worst_o and worst_o[3] > 0 else 0, n_noise)
    if n_same == len(rows) and not status:
        msg = "compare: %d tensors, %d values: all bit-identical" % (len(rows), n_vals)
    if bad or status:
        print(msg + ": FAIL (%d tensor(s) beyond the bound)" % len(bad))
        return 1
    print(msg + ": PASS")
    return 0


def cmd_h5(a):
    try:
        fa, fb = h5py.File(a.a, "r"), h5py.File(a.b, "r")
        da, db = datasets(fa), datasets(fb)
    except (OSError, KeyError) as e:
        print("compare: cannot read %s / %s: %s" % (a.a, a.b, e))
        return 2
    if not da or not same_layout(da, db, a.a):
        return 2
    rows = []
    for k in sorted(da):
        x, y = arr(da[k]), arr(db[k])
        if x.size == 0:
            continue
        d = float(np.abs(y - x).max()) if np.isfinite(x).all() and np.isfinite(y).all() else float("inf")
        amax = float(np.abs(x).max())
        tol = 0.0 if da[k].dtype.kind in "iu" else a.rtol * amax
        rows.append((d / tol if tol > 0 else (0.0 if d == 0 else float("inf")), k, d, amax, tol))
    rows.sort(key=lambda r: -r[0])
    ok = all(r[0] <= 1 for r in rows)
    w = rows[0] if rows else (0, "-", 0, 0, 0)
    if all(r[2] == 0 for r in rows):
        print("compare: %s: %d datasets, bit-identical: PASS" % (a.b, len(rows)))
        return 0
    print("compare: %s: %d datasets, worst %s max|d| %.3g (max|A| %.3g, bound %.3g): %s"
          % (a.b, len(rows), w[1], w[2], w[3], w[4], "PASS" if ok else "FAIL"))
    return 0 if ok else 1


def cmd_steps(a):
    import json

    def load(p):
        out = {}
        for line in open(p):
            r = json.loads(line)
            if r.get("event") == "step":
                out[int(r["step"])] = r
        return out

    try:
        ra, rb = load(a.a), load(a.b)
    except (OSError, ValueError, KeyError) as e:
        print("compare: cannot read step records: %s" % e)
        return 2
    if not ra or set(ra) != set(rb):
        print("compare: steps differ: A %s, B %s" % (sorted(ra), sorted(rb)))
        return 2
    worst = (0.0, "-", 0, 0.0, 0.0)
    bad = 0
    parts = []
    for st in sorted(ra):
        for k in ("loss", "grad_norm"):
            if k not in ra[st] or k not in rb[st]:
                continue
            x, y = float(ra[st][k]), float(rb[st][k])
            rel = abs(x - y) / abs(x) if x else abs(y)
            if not (rel <= a.rtol):
                bad += 1
            if rel >= worst[0]:
                worst = (rel, k, st, x, y)
            parts.append("step %d %s %.9g/%.9g" % (st, k, x, y))
    print("  " + "; ".join(parts))
    print("compare: %d step(s): worst %s at step %d: A %.9g B %.9g (rel %.3g, bound %.3g): %s"
          % (len(ra), worst[1], worst[2], worst[3], worst[4], worst[0], a.rtol, "PASS" if bad == 0 else "FAIL"))
    return 0 if bad == 0 else 1


KEY = ("method", "trajectory", "field", "lead_time", "relative")


def cmd_csv(a):
    try:
        ra = list(csv.DictReader(open(a.a)))
        rb = list(csv.DictReader(open(a.b)))
    except OSError as e:
        print("compare: cannot read: %s" % e)
        return 2
    if not ra:
        print("compare: %s has no rows" % a.a)
        return 2
    cols = [c for c in ra[0] if c not in KEY and c != "speed"]
    ka = {tuple(r[k] for k in KEY): r for r in ra}
    kb = {tuple(r[k] for k in KEY): r for r in rb}
    if set(ka) != set(kb) or list(ra[0]) != list(rb[0] if rb else []):
        print("compare: different rows or columns: %d vs %d rows, only in A %s, only in B %s"
              % (len(ka), len(kb), sorted(set(ka) - set(kb))[:3], sorted(set(kb) - set(ka))[:3]))
        return 2

    def num(s):
        try:
            return float(s)
        except ValueError:
            return float("nan")

    colmax = {c: max((abs(num(r[c])) for r in ra if np.isfinite(num(r[c]))), default=0.0) for c in cols}
    cells = []
    for key, r in ka.items():
        s = kb[key]
        for c in cols:
            x, y = num(r[c]), num(s[c])
            if np.isnan(x) and np.isnan(y):
                continue
            d = abs(x - y) if np.isfinite(x) and np.isfinite(y) else float("inf")
            tol = a.rtol * abs(x) + a.atol_frac * colmax[c]
            cells.append((d / tol if tol > 0 else (0.0 if d == 0 else float("inf")), key, c, x, y))
    cells.sort(key=lambda t: -t[0])
    print("  %d of %d values identical" % (sum(1 for t in cells if t[3] == t[4]), len(cells)))
    for t in [t for t in cells if t[3] != t[4]][: a.top]:
        print("  %-48s %-12s A %.6g  B %.6g  (%.3g of bound)" % ("/".join(t[1]), t[2], t[3], t[4], t[0]))
    nbad = sum(1 for t in cells if t[0] > 1)
    w = cells[0] if cells else (0, ("-",), "-", 0, 0)
    if all(t[3] == t[4] or (np.isnan(t[3]) and np.isnan(t[4])) for t in cells):
        print("compare: stats.csv: %d rows x %d metrics, all identical: PASS" % (len(ka), len(cols)))
        return 0
    rel = abs(w[4] - w[3]) / abs(w[3]) if w[3] else 0.0
    print("compare: stats.csv: %d rows x %d metrics; worst %s %s (rel %.3g, %.3g of bound): %s"
          % (len(ka), len(cols), "/".join(w[1]), w[2], rel, w[0], "PASS" if nbad == 0 else "FAIL (%d cell(s) beyond)" % nbad))
    return 0 if nbad == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ckpt")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--rtol-moment", type=float, default=1e-4)
    p.add_argument("--step-tol", type=float, default=1e-3)
    p.add_argument("--top", type=int, default=5)
    p = sub.add_parser("h5")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--top", type=int, default=3)
    p = sub.add_parser("steps")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-4)
    p = sub.add_parser("csv")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--atol-frac", type=float, default=1e-5)
    p.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    return {"ckpt": cmd_ckpt, "h5": cmd_h5, "steps": cmd_steps, "csv": cmd_csv}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
