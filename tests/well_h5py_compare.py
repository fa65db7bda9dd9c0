#!/usr/bin/env python3
"""Compares our C reader with an independent h5py reading of the same sample, bit for bit.

For each case it runs `test_well dump ROOT PHYS SPLIT L STRIDE IDX OUT [AUGS SEED [clhw]]`, which
writes the sample as raw float32 plus OUT.txt (file, trajectory, start, augmentation steps, label).
Independently of the C code, this script:
  * lists the files like WellDataset + LoLa's ConcatDataset (glob *.h5/*.hdf5, sort, per physics
    directory in order) and maps the global index with searchsorted over offsets of B_f*W_f;
  * reads each field with h5py, slices [traj, t0 : t0 + L*stride : stride], and builds the sample
    the_well way: per-field tensors, augmentations applied one by one with numpy equivalents of the
    torch ops in the_well/data/augmentation.py (flip + sign for odd flips, movedim + index_select
    for permute, roll), then field.unsqueeze(-1).flatten(-order-1) concatenated on channels;
  * builds the label = constant scalars (LogScalars: rayleigh/prandtl/rho0, not T0) ++ BC codes
    from the masks (the_well _padding_bcs, flips swap, permute reorders rows) flattened;
then checks that the C sample (moved to channels-last) is bit-identical and the label equal.
Prints PASS/FAIL lines. Usage: well_h5py_compare.py TEST_WELL_BINARY ROOT WORKDIR [--euler]
(--euler: a round trip on a build/well-euler output root instead of the fixtures.)
"""
import glob
import os
import subprocess
import sys

import h5py
import numpy as np

BC = {"WALL": 0, "OPEN": 1, "PERIODIC": 2}


def list_files(root, physics, split):
    files = []
    for p in physics:
        d = os.path.realpath(os.path.join(root, p, "data", split))
        fs = glob.glob(os.path.join(d, "*.h5")) + glob.glob(os.path.join(d, "*.hdf5"))
        files += sorted(fs)
    return files


def decode(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def read_sample(files, L, stride, idx):
    counts, W = [], []
    for fp in files:
        with h5py.File(fp, "r") as f:
            T = f["dimensions"]["time"].shape[-1]
            counts.append(int(f.attrs["n_trajectories"]))
            W.append(max(0, T - (L - 1) * stride))
    offsets = np.cumsum([0] + [b * w for b, w in zip(counts, W)])
    fi = int(np.searchsorted(offsets, idx, side="right") - 1)
    local = idx - offsets[fi]
    traj, t0 = local // W[fi], local % W[fi]
    with h5py.File(files[fi], "r") as f:
        dims = [decode(d) for d in f["dimensions"].attrs["spatial_dims"]]
        fields = {}
        for order in range(3):
            g = f[f"t{order}_fields"]
            fields[order] = {}
            for name in g.attrs["field_names"]:
                name = decode(name)
                ds = g[name]
                if not ds.attrs["time_varying"]:
                    continue
                data = ds[traj] if ds.attrs["sample_varying"] else ds[()]
                fields[order][name] = np.array(data[t0 : t0 + L * stride : stride])
        scal = []
        for name in f["scalars"].attrs["field_names"]:
            name = decode(name)
            ds = f["scalars"][name]
            if ds.attrs["time_varying"]:
                continue
            v = ds[()]
            if ds.attrs["sample_varying"]:
                v = v[traj]
            scal.append((name, float(v)))
        bc = np.ones((len(dims), 2))
        for gname in sorted(f["boundary_conditions"].keys()):
            g = f["boundary_conditions"][gname]
            kind = decode(g.attrs["bc_type"]).upper()
            assoc = g.attrs["associated_dims"]
            assoc = [decode(assoc)] if isinstance(assoc, (str, bytes)) else [decode(a) for a in assoc]
            mask = g["mask"][()]
            agg = np.min if kind == "WALL" else np.max
            for dim in assoc:
                a = assoc.index(dim)
                first = tuple(0 if i == a else slice(None) for i in range(len(assoc)))
                last = tuple(-1 if i == a else slice(None) for i in range(len(assoc)))
                if agg(mask[first]):
                    bc[dims.index(dim)][0] = BC[kind]
                if agg(mask[last]):
                    bc[dims.index(dim)][1] = BC[kind]
    return files[fi], traj, t0, fields, scal, bc


def augment(fields, bc, scal, steps, D):
    for kind, v in steps:
        if kind == "random_axis_flip":
            mask = np.array(v[:D], dtype=np.int64)
            axes = tuple(int(i) for i in np.nonzero(mask)[0])
            if not axes:
                continue
            for order, fs in fields.items():
                for name, x in fs.items():
                    x = np.flip(x, axis=tuple(a + 1 for a in axes))
                    if order > 0:
                        flips = sum(np.meshgrid(*([mask] * order), indexing="ij"))
                        signs = (1 - 2 * (flips % 2)).astype(np.float32)
                        x = signs * x
                    fs[name] = np.ascontiguousarray(x)
            bc = bc.copy()
            for a in axes:
                bc[a] = bc[a][::-1]
        elif kind == "random_axis_permute":
            perm = list(v[:D])
            if perm == list(range(D)):
                continue
            for order, fs in fields.items():
                for name, x in fs.items():
                    x = np.moveaxis(x, [p + 1 for p in perm], [i + 1 for i in range(D)])
                    for i in range(order):
                        x = np.take(x, perm, axis=x.ndim - i - 1)
                    fs[name] = np.ascontiguousarray(x)
            bc = bc[perm]
        elif kind == "random_axis_roll":
            axes = [a for a in range(D) if v[a] != 0]
            if not axes:
                continue
            for order, fs in fields.items():
                for name, x in fs.items():
                    fs[name] = np.roll(x, shift=[v[a] for a in axes], axis=[a + 1 for a in axes])
        elif kind == "log_scalars":
            scal = [(n, np.log(s) if n.lower() in ("rayleigh", "prandtl", "rho0", "T0") else s) for n, s in scal]
    return fields, bc, scal


def concat(fields):
    parts = []
    for order in range(3):
        for name, x in fields[order].items():
            x = x[..., None]
            parts.append(x.reshape(x.shape[: x.ndim - order - 1] + (-1,)))
    return np.concatenate(parts, axis=-1)  # (L, *spatial, C)


def run_case(binary, root, work, physics, split, L, stride, idx, augs="-", seed=0, layout="lchw"):
    out = os.path.join(work, f"dump_{split}_{L}_{stride}_{idx}_{seed}.raw")
    cmd = [binary, "dump", root, ",".join(physics), split, str(L), str(stride), str(idx), out]
    if augs != "-" or layout != "lchw":
        cmd += [augs, str(seed), layout]
    r = subprocess.run(cmd, capture_output=True, text=True)
    name = f"h5py compare {','.join(p[:12] for p in physics)} {split} L={L} stride={stride} idx={idx} augs={augs} seed={seed} {layout}"
    if r.returncode != 0:
        print(f"FAIL {name}: dump failed: {r.stderr.strip()}")
        return False
    meta = {}
    steps = []
    for line in open(out + ".txt"):
        k, *rest = line.split()
        if k == "step":
            steps.append((rest[0], [int(t) for t in rest[1:]]))
        else:
            meta[k] = rest
    files = list_files(root, physics, split)
    path, traj, t0, fields, scal, bc = read_sample(files, L, stride, idx)
    D = len(bc)
    fields, bc, scal = augment(fields, bc, scal, steps, D)
    ref = concat(fields).astype(np.float32)  # (L, *spatial, C), channels last
    got = np.fromfile(out, dtype=np.float32)
    C = ref.shape[-1]
    spatial = ref.shape[1:-1]
    if layout == "lchw":
        got = got.reshape((L, C) + spatial)
        got = np.moveaxis(got, 1, -1)
    else:
        got = got.reshape((C, L) + spatial)
        got = np.moveaxis(got, 0, -1)
    ok = True
    why = ""
    if os.path.realpath(meta["file"][0]) != os.path.realpath(path) or int(meta["traj"][0]) != traj or int(meta["start"][0]) != t0:
        ok, why = False, f"location C={meta['file'][0]},{meta['traj'][0]},{meta['start'][0]} h5py={path},{traj},{t0}"
    elif got.shape != ref.shape or not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
        bad = np.argwhere(got != ref)
        ok, why = False, f"data differ at {len(bad)} places, first {bad[:1].tolist()}"
    else:
        label = np.array([s for _, s in scal] + list(bc.flatten()), dtype=np.float32)
        lab_c = np.array([float(t) for t in meta["label"]], dtype=np.float32)
        if not np.allclose(label, lab_c, rtol=1e-6, atol=0):
            ok, why = False, f"label C={lab_c.tolist()} h5py={label.tolist()}"
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else ": " + why))
    return ok


def euler_roundtrip(binary, root, work):
    """Round trip on build/well-euler output: every train sample location class, with and without
    augmentation, bit for bit against h5py; the label's BC codes must be 1 (openBC) / 2 (periodic)."""
    eu = ["euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC"]
    files = list_files(root, eu, "train")
    n = 0
    for fp in files:
        with h5py.File(fp, "r") as f:
            n += int(f.attrs["n_trajectories"]) * (f["dimensions"]["time"].shape[-1])
    ok = True
    aug3 = "random_axis_flip,random_axis_permute,random_axis_roll"
    for i, idx in enumerate([0, n // 3, n // 2, n - 1]):
        ok &= run_case(binary, root, work, eu, "train", 1, 1, idx)
        ok &= run_case(binary, root, work, eu, "train", 1, 1, idx, aug3, 11 + i, "clhw")
    ok &= run_case(binary, root, work, eu, "test", 2, 2, 0)
    # BC codes from the generator's masks
    for idx, want in ((0, 1.0), (n - 1, 2.0)):
        out = os.path.join(work, f"bc_{idx}.raw")
        subprocess.run([binary, "dump", root, ",".join(eu), "train", "1", "1", str(idx), out], check=True, capture_output=True)
        lab = [float(t) for t in [l for l in open(out + ".txt") if l.startswith("label")][0].split()[1:]]
        good = lab[1:] == [want] * 4
        print(("PASS" if good else "FAIL") + f" well-euler output: sample {idx} label BC codes {lab[1:]} (expected all {want})")
        ok &= good
    return ok


def main():
    binary, root, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    if len(sys.argv) > 4 and sys.argv[4] == "--euler":
        sys.exit(0 if euler_roundtrip(binary, root, work) else 1)
    eu = ["euler_multi_quadrants_openBC", "euler_multi_quadrants_periodicBC"]
    aug3 = "random_axis_flip,random_axis_permute,random_axis_roll"
    cases = [
        (eu, "train", 1, 1, 0),
        (eu, "train", 1, 1, 40),
        (eu, "train", 3, 2, 17),  # the 7-step file
        (eu, "train", 3, 2, 42),  # last sample
        (eu, "valid", 2, 4, 0),
        (["rayleigh_benard"], "train", 5, 2, 5),
        (["turbulence_gravity_cooling"], "train", 2, 1, 7),
        (["tensor_demo"], "train", 2, 1, 5),
    ]
    ok = True
    for physics, split, L, stride, idx in cases:
        ok &= run_case(binary, root, work, physics, split, L, stride, idx)
    # with augmentations (several seeds so flips/permutes/rolls all occur), both layouts
    for seed in range(6):
        ok &= run_case(binary, root, work, eu, "train", 3, 2, 30 + seed, aug3, seed, "lchw" if seed % 2 else "clhw")
        ok &= run_case(binary, root, work, ["rayleigh_benard"], "train", 1, 1, 3 * seed, "log_scalars,random_axis_flip,random_axis_roll", seed)
        ok &= run_case(binary, root, work, ["turbulence_gravity_cooling"], "train", 2, 2, seed % 6,
                       "log_scalars,random_axis_flip,random_axis_permute", seed)
        ok &= run_case(binary, root, work, ["tensor_demo"], "train", 1, 1, seed, "random_axis_flip,random_axis_permute,random_axis_roll", seed)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
