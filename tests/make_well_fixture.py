#!/usr/bin/env python3
"""Writes small files in The Well's HDF5 schema with h5py, for the reader tests.

Schema and types follow shared/reference/the-well-format.md §1.2-1.3 exactly: variable-length UTF-8
strings (h5py str), bools as h5py's enum {FALSE, TRUE} over int8 (np.bool_), int64 root ints,
float64 root parameters, scalars of shape (), float32 contiguous fields, t0/t1/t2 groups (an empty
list attribute is what h5py writes for []), BC groups with a bool mask True at both ends.

Values are codes that tell where they come from: channel c of file f (its position in the
reader's sorted order), trajectory b, time t, flat spatial point p holds
    code = (((f * NB + b) * NT + t) * NP + p) * NC + c            (NB, NT, NP, NC per layout below)
    value = code + 0.25, negated for odd channels of vector fields (so signs matter)
so a wrong channel order, file order or index shows as a wrong value. `python3 make_well_fixture.py
DIR` writes DIR/good (a dataset root) and DIR/bad_<case> roots; see CASES.
"""
import os
import sys

import h5py
import numpy as np

CODE = dict(NB=4, NT=16, NP=64, NC=8)  # strides of the value code (must bound every layout)


def code_value(f, b, t, p, c, negate=False):
    code = (((f * CODE["NB"] + b) * CODE["NT"] + t) * CODE["NP"] + p) * CODE["NC"] + c
    v = np.float32(code + 0.25)
    return -v if negate else v


def field_values(fid, n_traj, T, shape, channel0, ncomp, order, traj_offset=0):
    """Array (B, T, *shape[, D[, D]]) of codes for the channels channel0 .. channel0+ncomp-1."""
    D = len(shape)
    P = int(np.prod(shape))
    out = np.zeros((n_traj, T, P, ncomp), np.float32)
    for b in range(n_traj):
        for t in range(T):
            for p in range(P):
                for k in range(ncomp):
                    out[b, t, p, k] = code_value(fid, b + traj_offset, t, p, channel0 + k, negate=(order > 0 and k % 2 == 1))
    full = (n_traj, T) + tuple(shape) + (D,) * order
    return out.reshape(full)


def bool_attr(obj, name, v):
    obj.attrs[name] = np.bool_(v) if np.ndim(v) == 0 else np.array(v, dtype=np.bool_)


def write_well_file(path, *, dataset_name, fid, n_traj, T, shape, dims, t0, t1, t2=(), bcs, scalars,
                    params=None, tv_scalars=(), const_fields=(), break_=None, n_traj_attr=None,
                    nonfinite=None):
    """t0/t1/t2: lists of field names (channel order). bcs: list of (group name, dim, bc_type).
    scalars: dict name -> value (shape ()) or array (sample-varying). break_: a bad-input case."""
    D = len(shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["dataset_name"] = dataset_name
        if break_ != "missing_attr_grid":
            f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = D
        f.attrs["n_trajectories"] = n_traj if n_traj_attr is None else n_traj_attr
        params = list(scalars.keys()) if params is None else params
        f.attrs["simulation_parameters"] = params
        for k in params:
            v = scalars[k]
            if np.ndim(v) == 0:
                f.attrs[k] = float(v)
        # dimensions
        dg = f.create_group("dimensions")
        dg.attrs["spatial_dims"] = list(dims)
        tds = dg.create_dataset("time", data=np.linspace(0, 0.015 * (T - 1), T, dtype=np.float32))
        bool_attr(tds, "sample_varying", False)
        bool_attr(tds, "time_varying", True)
        for d, n in zip(dims, shape):
            if d == "y" and dataset_name.startswith("rayleigh"):
                coords = 0.5 * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n))  # Chebyshev-like nodes
            else:
                coords = (np.arange(n) + 0.5) / n
            xd = dg.create_dataset(d, data=coords.astype(np.float32))
            bool_attr(xd, "sample_varying", False)
            bool_attr(xd, "time_varying", False)
        # boundary conditions
        if break_ != "missing_group_bc":
            bg = f.create_group("boundary_conditions")
            for gname, dim, kind in bcs:
                g = bg.create_group(gname)
                g.attrs["associated_dims"] = [dim]
                g.attrs["associated_fields"] = []
                g.attrs["bc_type"] = kind
                bool_attr(g, "sample_varying", False)
                bool_attr(g, "time_varying", False)
                n = shape[dims.index(dim)]
                mask = np.zeros(n, dtype=np.bool_)
                mask[0] = mask[-1] = True
                g.create_dataset("mask", data=mask)
        # scalars
        sg = f.create_group("scalars")
        sg.attrs["field_names"] = list(scalars.keys()) + list(tv_scalars)
        for k, v in scalars.items():
            ds = sg.create_dataset(k, data=np.asarray(v, dtype=np.float64))
            bool_attr(ds, "sample_varying", np.ndim(v) > 0)
            bool_attr(ds, "time_varying", False)
        for k in tv_scalars:
            ds = sg.create_dataset(k, data=np.arange(T, dtype=np.float64))
            bool_attr(ds, "sample_varying", False)
            bool_attr(ds, "time_varying", True)
        # fields; create datasets in reverse order so HDF5's key order differs from field_names
        ch = 0
        for order, names in enumerate((t0, t1, t2)):
            g = f.create_group(f"t{order}_fields")
            g.attrs["field_names"] = list(names) + ([n for n, o in const_fields if o == order])
            ncomp = D ** order
            made = {}
            for name in names:
                data = field_values(fid, n_traj, T, shape, ch, ncomp, order)
                if break_ == "wrong_rank" and order == 0 and name == names[0]:
                    data = data[..., 0]  # drops the last spatial axis
                if break_ == "ntraj_mismatch" and order == 0:
                    pass  # data keeps n_traj, attribute says otherwise (n_traj_attr)
                if nonfinite and nonfinite[0] == name:
                    _, b, t, idx = nonfinite
                    data[(b, t) + tuple(idx)] = np.nan
                made[name] = data
                ch += ncomp
            for name in reversed(names):
                ds = g.create_dataset(name, data=made[name])
                if not (break_ == "missing_attr_tv" and order == 1):
                    bool_attr(ds, "time_varying", True)
                bool_attr(ds, "sample_varying", True)
                bool_attr(ds, "dim_varying", [True] * D)
                if order == 2:
                    bool_attr(ds, "symmetric", False)
                    bool_attr(ds, "antisymmetric", False)
            for name, o in const_fields:
                if o != order:
                    continue
                ds = g.create_dataset(name, data=np.full((n_traj,) + tuple(shape) + (D,) * order, 7.0, np.float32))
                bool_attr(ds, "time_varying", False)
                bool_attr(ds, "sample_varying", True)
                bool_attr(ds, "dim_varying", [True] * D)


EULER_T0 = ["energy", "density", "pressure"]


def euler_file(root, bc, split, gamma, gas, fid, n_traj, T=9, shape=(6, 6), **kw):
    name = f"euler_multi_quadrants_{bc}"
    path = f"{root}/{name}/data/{split}/{name}_gamma_{gamma}_{gas}.hdf5"
    kind = "OPEN" if bc == "openBC" else "PERIODIC"
    tag = "open" if bc == "openBC" else "periodic"
    write_well_file(path, dataset_name=name, fid=fid, n_traj=n_traj, T=T, shape=shape, dims=["x", "y"],
                    t0=EULER_T0, t1=["momentum"], bcs=[(f"x_{tag}", "x", kind), (f"y_{tag}", "y", kind)],
                    scalars={"gamma": float(gamma)}, **kw)
    return path


def rb_file(root, split, ra, pr, fid, n_traj, T=10, shape=(8, 4), **kw):
    path = f"{root}/rayleigh_benard/data/{split}/rayleigh_benard_Rayleigh_{ra}_Prandtl_{pr}.hdf5"
    write_well_file(path, dataset_name="rayleigh_benard", fid=fid, n_traj=n_traj, T=T, shape=shape, dims=["x", "y"],
                    t0=["buoyancy", "pressure"], t1=["velocity"],
                    bcs=[("x_periodic", "x", "PERIODIC"), ("y_wall_dirichlet", "y", "WALL")],
                    scalars={"Rayleigh": float(ra), "Prandtl": float(pr)}, **kw)
    return path


def good(root):
    # euler openBC train: creation order differs from the bytewise order 1.13 < 1.365 < 1.4
    euler_file(root, "openBC", "train", "1.4", "Dry_air_20", fid=2, n_traj=2)
    euler_file(root, "openBC", "train", "1.13", "C3H8_16", fid=0, n_traj=3)
    euler_file(root, "openBC", "train", "1.365", "Dry_air_1000", fid=1, n_traj=1, T=7)
    euler_file(root, "periodicBC", "train", "1.4", "Dry_air_20", fid=4, n_traj=2)
    euler_file(root, "periodicBC", "train", "1.22", "C2H6_15", fid=3, n_traj=1)
    for split in ("valid", "test"):
        euler_file(root, "openBC", split, "1.4", "Dry_air_20", fid=0, n_traj=1)
        euler_file(root, "periodicBC", split, "1.4", "Dry_air_20", fid=1, n_traj=1)
    # a non-HDF5 file in a split directory is ignored
    with open(f"{root}/euler_multi_quadrants_openBC/data/train/README.txt", "w") as fh:
        fh.write("not data\n")
    # rayleigh_benard-like: 8x4 (x periodic, y walls), scalars Rayleigh, Prandtl
    rb_file(root, "train", "1e8", "10", fid=1, n_traj=1)
    rb_file(root, "train", "1e6", "1", fid=0, n_traj=2)
    rb_file(root, "valid", "1e6", "1", fid=0, n_traj=1)
    # turbulence_gravity_cooling-like 3-D 4x4x4, scalars rho0, Z, T0 (T0 is not logged by LoLa)
    write_well_file(f"{root}/turbulence_gravity_cooling/data/train/turbulence_gravity_cooling_rho0_0.445_Z_0.1_T0_100.hdf5",
                    dataset_name="turbulence_gravity_cooling", fid=0, n_traj=2, T=5, shape=(4, 4, 4), dims=["x", "y", "z"],
                    t0=["density", "pressure", "temperature"], t1=["velocity"],
                    bcs=[("x_open", "x", "OPEN"), ("y_open", "y", "OPEN"), ("z_open", "z", "OPEN")],
                    scalars={"rho0": 0.445, "Z": 0.1, "T0": 100.0})
    # a schema corner: t2 field, sample-varying scalar, time-varying scalar, a time-constant field
    write_well_file(f"{root}/tensor_demo/data/train/tensor_demo_a.h5", dataset_name="tensor_demo", fid=0, n_traj=2, T=4,
                    shape=(4, 4), dims=["x", "y"], t0=["a"], t1=["v"], t2=["T"],
                    bcs=[("x_periodic", "x", "PERIODIC"), ("y_open", "y", "OPEN")],
                    scalars={"alpha": np.array([0.5, 1.5]), "beta": 3.0}, params=["beta"], tv_scalars=["clock"],
                    const_fields=[("c0", 0)])


def bad(root, case):
    r = f"{root}/bad_{case}"
    if case == "empty":
        os.makedirs(f"{r}/euler_multi_quadrants_openBC/data/train", exist_ok=True)
        with open(f"{r}/euler_multi_quadrants_openBC/data/train/notes.txt", "w") as fh:
            fh.write("no data here\n")
        return
    if case == "truncated":
        p = euler_file(r, "openBC", "train", "1.4", "Dry_air_20", fid=0, n_traj=2)
        size = os.path.getsize(p)
        with open(p, "r+b") as fh:
            fh.truncate(size // 2)
        return
    if case == "resolution":
        euler_file(r, "openBC", "train", "1.4", "Dry_air_20", fid=0, n_traj=1)
        euler_file(r, "openBC", "train", "1.5", "Other", fid=1, n_traj=1, shape=(8, 8))
        return
    if case == "dataset_name":
        euler_file(r, "openBC", "train", "1.4", "Dry_air_20", fid=0, n_traj=1)
        p = euler_file(r, "openBC", "train", "1.5", "Other", fid=1, n_traj=1)
        with h5py.File(p, "r+") as f:
            f.attrs["dataset_name"] = "something_else"
        return
    if case == "nonfinite":
        # NaN in pressure of trajectory 1, time 3, at x=2, y=5
        euler_file(r, "openBC", "train", "1.4", "Dry_air_20", fid=0, n_traj=2, nonfinite=("pressure", 1, 3, (2, 5)))
        return
    kw = {"missing_group": dict(break_="missing_group_bc"), "missing_attr": dict(break_="missing_attr_tv"),
          "wrong_rank": dict(break_="wrong_rank"), "ntraj": dict(n_traj_attr=4)}[case]
    euler_file(r, "openBC", "train", "1.4", "Dry_air_20", fid=0, n_traj=3, **kw)


CASES = ["empty", "truncated", "resolution", "dataset_name", "nonfinite", "missing_group", "missing_attr", "wrong_rank", "ntraj"]

def bench(root, res, n_traj, frames, n_files):
    """A larger Euler-like set with random values (numpy, fast) for tools/bench-reader."""
    rng = np.random.default_rng(0)
    for bc in ("openBC", "periodicBC"):
        for i in range(n_files):
            name = f"euler_multi_quadrants_{bc}"
            path = f"{root}/{name}/data/train/{name}_gamma_1.{i}_bench.hdf5"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            kind, tag = ("OPEN", "open") if bc == "openBC" else ("PERIODIC", "periodic")
            with h5py.File(path, "w") as f:
                f.attrs["dataset_name"] = name
                f.attrs["grid_type"] = "cartesian"
                f.attrs["n_spatial_dims"] = 2
                f.attrs["n_trajectories"] = n_traj
                f.attrs["simulation_parameters"] = ["gamma"]
                f.attrs["gamma"] = 1.0 + i / 10
                dg = f.create_group("dimensions")
                dg.attrs["spatial_dims"] = ["x", "y"]
                t = dg.create_dataset("time", data=np.arange(frames, dtype=np.float32))
                bool_attr(t, "sample_varying", False)
                bool_attr(t, "time_varying", True)
                for d in "xy":
                    x = dg.create_dataset(d, data=np.arange(res, dtype=np.float32))
                    bool_attr(x, "sample_varying", False)
                    bool_attr(x, "time_varying", False)
                bg = f.create_group("boundary_conditions")
                for d in "xy":
                    g = bg.create_group(f"{d}_{tag}")
                    g.attrs["associated_dims"] = [d]
                    g.attrs["associated_fields"] = []
                    g.attrs["bc_type"] = kind
                    bool_attr(g, "sample_varying", False)
                    bool_attr(g, "time_varying", False)
                    m = np.zeros(res, np.bool_)
                    m[0] = m[-1] = True
                    g.create_dataset("mask", data=m)
                sg = f.create_group("scalars")
                sg.attrs["field_names"] = ["gamma"]
                ds = sg.create_dataset("gamma", data=np.float64(1.0 + i / 10))
                bool_attr(ds, "sample_varying", False)
                bool_attr(ds, "time_varying", False)
                for order, names in enumerate((EULER_T0, ["momentum"], [])):
                    g = f.create_group(f"t{order}_fields")
                    g.attrs["field_names"] = names
                    for nm in names:
                        shape = (n_traj, frames, res, res) + (2,) * order
                        ds = g.create_dataset(nm, shape=shape, dtype=np.float32)
                        for b in range(n_traj):
                            ds[b] = rng.random(shape[1:], dtype=np.float32) + (0.1 if order == 0 else -0.5)
                        bool_attr(ds, "time_varying", True)
                        bool_attr(ds, "sample_varying", True)
                        bool_attr(ds, "dim_varying", [True, True])


if __name__ == "__main__":
    if sys.argv[1] == "--bench":  # --bench ROOT RES TRAJ FRAMES FILES
        bench(sys.argv[2], *[int(a) for a in sys.argv[3:7]])
        sys.exit(0)
    out = sys.argv[1]
    good(f"{out}/good")
    for c in CASES:
        bad(out, c)
    print(f"fixtures written under {out}")
