#!/usr/bin/env python3
"""h5compare.py: compare the datasets of two HDF5 files (checkpoints, latent caches) with h5py.

usage: h5compare.py A B [--group G ...] [--exact | --rel R --abs E] [--structure] [--attrs]
                        [--ignore-attr NAME ...] [--top N]

Every dataset under the given groups (default: the whole file) must exist in both files with the
same shape and dtype. Then, by mode:
  --exact      every element equal bit for bit (NaN == NaN at the same place); the default.
  --rel/--abs  max|A - B| over all compared datasets <= rel * max|A| + abs (one global bound:
               the form used for "N ranks == 1 rank" checks).
  --structure  only names, shapes and dtypes (no values): "is this a complete file of that layout".
--attrs compares the root attributes too (all but --ignore-attr names), exactly.
Prints one summary line (and the N datasets with the largest differences):
  h5compare: 78 datasets, 22785 values, max|diff| 3.1e-09 (params/decoder.0.weight), max|A| 1.52, bound 1.5e-05: SAME
Exit status: 0 same (within the bound), 1 different, 2 unreadable file or different layout.
"""
import argparse
import sys

import numpy as np

try:
    import h5py
except ImportError:  # pragma: no cover
    print("h5compare: h5py is not installed", file=sys.stderr)
    sys.exit(2)


def datasets(f, groups):
    """{path: dataset} for every dataset under the groups (paths relative to the root)."""
    out = {}
    for g in groups:
        if g not in ("", "/") and g.strip("/") not in f:
            raise KeyError("no group '%s'" % g)
        node = f if g in ("", "/") else f[g.strip("/")]
        if isinstance(node, h5py.Dataset):
            out[node.name.lstrip("/")] = node
            continue

        def visit(name, obj, base=node.name.strip("/")):
            if isinstance(obj, h5py.Dataset):
                out[(base + "/" + name).lstrip("/")] = obj

        node.visititems(visit)
    return out


def attr_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--group", action="append", default=None, help="group or dataset to compare (repeatable)")
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--rel", type=float, default=None)
    ap.add_argument("--abs", type=float, default=0.0)
    ap.add_argument("--structure", action="store_true")
    ap.add_argument("--attrs", action="store_true")
    ap.add_argument("--ignore-attr", action="append", default=[])
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args()
    groups = args.group or ["/"]
    try:
        fa = h5py.File(args.a, "r")
        fb = h5py.File(args.b, "r")
        da, db = datasets(fa, groups), datasets(fb, groups)
    except (OSError, KeyError) as e:
        print("h5compare: cannot read %s / %s: %s" % (args.a, args.b, e))
        return 2
    if not da:
        print("h5compare: %s has no datasets under %s" % (args.a, groups))
        return 2
    if set(da) != set(db):
        only_a = sorted(set(da) - set(db))[:5]
        only_b = sorted(set(db) - set(da))[:5]
        print("h5compare: different datasets: only in A %s, only in B %s" % (only_a, only_b))
        return 2
    for k in sorted(da):
        if da[k].shape != db[k].shape or da[k].dtype != db[k].dtype:
            print("h5compare: %s: A %s %s, B %s %s" % (k, da[k].shape, da[k].dtype, db[k].shape, db[k].dtype))
            return 2
    status = 0
    if args.attrs:
        ka = set(fa.attrs) - set(args.ignore_attr)
        kb = set(fb.attrs) - set(args.ignore_attr)
        if ka != kb:
            print("h5compare: root attributes differ in names: %s" % sorted(ka ^ kb))
            status = 1
        for k in sorted(ka & kb):
            if not attr_equal(fa.attrs[k], fb.attrs[k]):
                print("h5compare: attribute @%s: A %.60r, B %.60r" % (k, fa.attrs[k], fb.attrs[k]))
                status = 1
    if args.structure:
        n = sum(int(np.prod(d.shape)) for d in da.values())
        print("h5compare: %d datasets, %d values: same layout%s" % (len(da), n, "" if status == 0 else " (attributes differ)"))
        return status
    per = []
    max_a = 0.0
    n_vals = 0
    n_neq = 0
    for k in sorted(da):
        a = np.asarray(da[k][()])
        b = np.asarray(db[k][()])
        n_vals += a.size
        if a.size == 0:
            continue
        if a.dtype.kind in "fc":
            af, bf = a.astype(np.float64), b.astype(np.float64)
            same_nan = np.isnan(af) == np.isnan(bf)
            if not same_nan.all():
                per.append((float("inf"), k))
                n_neq += int((~same_nan).sum())
                continue
            ok = ~np.isnan(af)
            d = float(np.max(np.abs(af[ok] - bf[ok]))) if ok.any() else 0.0
            max_a = max(max_a, float(np.max(np.abs(af[ok]))) if ok.any() else 0.0)
            n_neq += int(a.tobytes() != b.tobytes())
        else:
            d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            max_a = max(max_a, float(np.max(np.abs(a.astype(np.float64)))))
            n_neq += int(a.tobytes() != b.tobytes())
        per.append((d, k))
    per.sort(reverse=True)
    dmax, kmax = per[0] if per else (0.0, "-")
    if args.rel is not None and not args.exact:
        bound = args.rel * max_a + args.abs
        same = dmax <= bound
        what = "bound %.3g" % bound
    else:
        same = n_neq == 0
        what = "exact (%d dataset(s) differ in bytes)" % n_neq
    print("h5compare: %d datasets, %d values, max|diff| %.3g (%s), max|A| %.3g, %s: %s"
          % (len(da), n_vals, dmax, kmax, max_a, what, "SAME" if same else "DIFFERENT"))
    for d, k in per[: args.top]:
        if d > 0:
            print("  %-60s max|diff| %.3g" % (k, d))
    if not same:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
