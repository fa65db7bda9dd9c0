#!/usr/bin/env python3
"""check_well_format.py: checks that HDF5 files follow The Well's schema and exact HDF5 types.

Our own checker (not a copy of the_well's scripts/check_thewell_formatting.py). It enforces the rules
that script asserts, plus the stricter ones in /work/shared/reference/the-well-format.md sections
1.2-1.3:
  * root attrs: dataset_name, grid_type (Python str = variable-length string), n_spatial_dims > 0 and
    n_trajectories (integers; int64 with --strict-types), simulation_parameters (list of str, each
    also a root attribute and a /scalars dataset);
  * /dimensions: @spatial_dims (list of str, length n_spatial_dims); time with bool @sample_varying
    and @time_varying (must be True), shape (T,) or (B, T); one coordinate dataset per spatial dim
    with bool @sample_varying and @time_varying;
  * /t0_fields, /t1_fields, /t2_fields all present with @field_names (list of str, may be empty);
    every named field exists with bool @sample_varying, @time_varying and a bool array @dim_varying
    of length n_spatial_dims; shape = [B] + [T] + [N_d where dim_varying] + [D] * order; float32;
  * /scalars: @field_names; each scalar with bool flags and rank = sample_varying + time_varying;
  * /boundary_conditions/<group>: @bc_type in {WALL, OPEN, PERIODIC}, bool @sample_varying and
    @time_varying, @associated_fields, non-empty @associated_dims naming spatial dims, a bool `mask`
    whose shape matches those dims, with its first and last entries True.
With --strict-types (default on) it also checks the exact types h5py writes (section 1.3): strings
variable-length UTF-8, booleans the enum {FALSE 0, TRUE 1} over int8 (a plain int8 fails), ints int64,
float parameters float64, field data float32 CONTIGUOUS without filters.
With --euler (or automatically when dataset_name starts with "euler_multi_quadrants") it checks the
Euler dataset specifics: fields, gamma, BC group names, file name, positive density/pressure/energy.

Usage: check_well_format.py [--no-strict-types] [--euler] FILE...
Prints "PASS check_well_format FILE" or "FAIL check_well_format FILE: reason" per file (every
problem is listed); exit status 1 if any file failed.
"""
import os
import sys

import h5py
import numpy as np

EULER_GASES = {1.13: "C3H8_16", 1.22: "C2H6_15", 1.3: "CO2_20", 1.33: "H2O_20", 1.365: "Dry_air_1000",
               1.4: "Dry_air_20", 1.404: "H2_100_Dry_air_-15", 1.453: "H2_-76", 1.597: "H2_-181",
               1.76: "Ar_-180"}


class Checker:
    def __init__(self, path, strict):
        self.path = path
        self.strict = strict
        self.errors = []

    def err(self, msg):
        self.errors.append(msg)

    # ---- exact HDF5 types (low-level h5py API) -------------------------------------------------
    def _attr_type(self, obj, name):
        return obj.attrs.get_id(name).get_type()

    def is_vlen_utf8(self, tid):
        return (isinstance(tid, h5py.h5t.TypeStringID) and tid.is_variable_str()
                and tid.get_cset() == h5py.h5t.CSET_UTF8)

    def is_bool_enum(self, tid):
        if not isinstance(tid, h5py.h5t.TypeEnumID):
            return False
        base = tid.get_super()
        if not (isinstance(base, h5py.h5t.TypeIntegerID) and base.get_size() == 1):
            return False
        members = {tid.get_member_name(i): tid.get_member_value(i) for i in range(tid.get_nmembers())}
        return members == {b"FALSE": 0, b"TRUE": 1}

    # ---- attribute checks ----------------------------------------------------------------------
    def need_attr(self, obj, name, where):
        if name not in obj.attrs:
            self.err(f"{where}: missing attribute '{name}'")
            return False
        return True

    def str_attr(self, obj, name, where):
        if not self.need_attr(obj, name, where):
            return None
        v = obj.attrs[name]
        if not isinstance(v, str):
            self.err(f"{where}@{name}: must read back as a Python str (variable-length string), got {type(v).__name__}")
            return None
        if self.strict and not self.is_vlen_utf8(self._attr_type(obj, name)):
            self.err(f"{where}@{name}: not a variable-length UTF-8 string")
        return v

    def str_list_attr(self, obj, name, where, allow_empty=True):
        if not self.need_attr(obj, name, where):
            return None
        v = obj.attrs[name]
        if not isinstance(v, (list, np.ndarray)):
            self.err(f"{where}@{name}: must be a list, got {type(v).__name__}")
            return None
        v = list(v)
        if len(v) == 0:
            if not allow_empty:
                self.err(f"{where}@{name}: must not be empty")
            return v  # an empty list may have any type (h5py writes float64 (0))
        if not all(isinstance(s, str) for s in v):
            self.err(f"{where}@{name}: must be a list of str, got {[type(s).__name__ for s in v]}")
            return None
        if self.strict and not self.is_vlen_utf8(self._attr_type(obj, name)):
            self.err(f"{where}@{name}: not variable-length UTF-8 strings")
        return v

    def bool_attr(self, obj, name, where, expect=None):
        if not self.need_attr(obj, name, where):
            return None
        v = obj.attrs[name]
        if not isinstance(v, (bool, np.bool_)):
            self.err(f"{where}@{name}: should be a boolean, got {type(v).__name__} ({v!r})")
            return None
        if self.strict and not self.is_bool_enum(self._attr_type(obj, name)):
            self.err(f"{where}@{name}: not the h5py bool enum {{FALSE 0, TRUE 1}} over int8")
        if expect is not None and bool(v) != expect:
            self.err(f"{where}@{name}: must be {expect}, got {bool(v)}")
        return bool(v)

    def int_attr(self, obj, name, where):
        if not self.need_attr(obj, name, where):
            return None
        v = obj.attrs[name]
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            self.err(f"{where}@{name}: must be an integer, got {type(v).__name__}")
            return None
        if self.strict:
            t = self._attr_type(obj, name)
            if not (isinstance(t, h5py.h5t.TypeIntegerID) and t.get_size() == 8 and t.get_sign() == h5py.h5t.SGN_2):
                self.err(f"{where}@{name}: must be int64")
        return int(v)

    # ---- groups ----------------------------------------------------------------------------------
    def run(self, euler):
        with h5py.File(self.path, "r") as f:
            self.check_root(f)
            if "dimensions" not in f:
                self.err("no /dimensions group")
                return
            dims = self.check_dimensions(f)
            if dims is None:
                return
            for order in range(3):
                self.check_fields(f, order, dims)
            self.check_scalars(f)
            self.check_bcs(f, dims)
            name = f.attrs.get("dataset_name", "")
            if euler or (isinstance(name, str) and name.startswith("euler_multi_quadrants")):
                self.check_euler(f, dims)

    def check_root(self, f):
        self.str_attr(f, "dataset_name", "/")
        self.str_attr(f, "grid_type", "/")
        nd = self.int_attr(f, "n_spatial_dims", "/")
        if nd is not None and nd <= 0:
            self.err(f"/@n_spatial_dims = {nd} must be > 0")
        nt = self.int_attr(f, "n_trajectories", "/")
        if nt is not None and nt < 0:
            self.err(f"/@n_trajectories = {nt} must be >= 0")
        params = self.str_list_attr(f, "simulation_parameters", "/")
        for p in params or []:
            if p not in f.attrs:
                self.err(f"/: simulation parameter '{p}' is not a root attribute")
            elif not isinstance(f.attrs[p], (float, np.floating, int, np.integer)):
                self.err(f"/@{p}: simulation parameter must be a number")
            if "scalars" in f and p not in f["scalars"]:
                self.err(f"/scalars: simulation parameter '{p}' has no dataset")

    def check_dimensions(self, f):
        g = f["dimensions"]
        nd = f.attrs.get("n_spatial_dims")
        sd = self.str_list_attr(g, "spatial_dims", "/dimensions", allow_empty=False)
        if sd is None:
            return None
        if nd is not None and len(sd) != nd:
            self.err(f"/dimensions@spatial_dims has {len(sd)} entries, n_spatial_dims = {nd}")
        dims = {"spatial": sd, "sizes": {}, "T": None}
        if "time" not in g:
            self.err("/dimensions: no 'time' dataset")
        else:
            t = g["time"]
            sv = self.bool_attr(t, "sample_varying", "/dimensions/time")
            tv = self.bool_attr(t, "time_varying", "/dimensions/time", expect=True)
            want = 1 + (1 if sv else 0)
            if t.ndim != want:
                self.err(f"/dimensions/time: rank {t.ndim}, expected {want} (sample_varying={sv})")
            dims["T"] = t.shape[-1] if t.ndim else None
            if self.strict and t.dtype != np.float32:
                self.err(f"/dimensions/time: dtype {t.dtype}, expected float32")
            if tv and t.ndim and t.shape[-1] > 1 and not np.all(np.diff(np.asarray(t[...], dtype=np.float64), axis=-1) > 0):
                self.err("/dimensions/time: values must increase")
        for d in sd:
            if d not in g:
                self.err(f"/dimensions: no dataset for spatial dim '{d}'")
                continue
            ds = g[d]
            sv = self.bool_attr(ds, "sample_varying", f"/dimensions/{d}")
            self.bool_attr(ds, "time_varying", f"/dimensions/{d}", expect=False)
            if sv:
                self.err(f"/dimensions/{d}: sample-varying coordinates are not supported by hdf5_to_xarray")
            if ds.ndim != 1:
                self.err(f"/dimensions/{d}: rank {ds.ndim}, expected 1")
            if self.strict and ds.dtype != np.float32:
                self.err(f"/dimensions/{d}: dtype {ds.dtype}, expected float32")
            dims["sizes"][d] = ds.shape[-1]
        return dims

    def check_fields(self, f, order, dims):
        gname = f"t{order}_fields"
        if gname not in f:
            self.err(f"no /{gname} group")
            return
        g = f[gname]
        names = self.str_list_attr(g, "field_names", f"/{gname}")
        B = f.attrs.get("n_trajectories")
        nd = len(dims["spatial"])
        for name in names or []:
            where = f"/{gname}/{name}"
            if name not in g:
                self.err(f"{where}: named in field_names but missing")
                continue
            ds = g[name]
            sv = self.bool_attr(ds, "sample_varying", where)
            tv = self.bool_attr(ds, "time_varying", where)
            if "dim_varying" not in ds.attrs:
                self.err(f"{where}: missing attribute 'dim_varying'")
                continue
            dv = ds.attrs["dim_varying"]
            if not isinstance(dv, np.ndarray) or dv.ndim != 1 or len(dv) != nd:
                self.err(f"{where}@dim_varying: must be a bool array of length {nd}")
                continue
            if dv.dtype != np.bool_:
                self.err(f"{where}@dim_varying: entries should be booleans, got {dv.dtype}")
            elif self.strict and not self.is_bool_enum(self._attr_type(ds, "dim_varying")):
                self.err(f"{where}@dim_varying: not the h5py bool enum over int8")
            if order == 2:
                self.bool_attr(ds, "symmetric", where)
                self.bool_attr(ds, "antisymmetric", where)
            want = []
            if sv:
                want.append(B)
            if tv:
                want.append(dims["T"])
            for i, d in enumerate(dims["spatial"]):
                if bool(dv[i]):
                    want.append(dims["sizes"].get(d))
            want += [nd] * order
            if list(ds.shape) != want:
                self.err(f"{where}: shape {tuple(ds.shape)}, expected {tuple(want)}")
            if ds.dtype != np.float32:
                self.err(f"{where}: dtype {ds.dtype}, expected float32")
            if self.strict:
                plist = ds.id.get_create_plist()
                if plist.get_layout() != h5py.h5d.CONTIGUOUS:
                    self.err(f"{where}: layout is not CONTIGUOUS")
                if plist.get_nfilters() != 0:
                    self.err(f"{where}: has {plist.get_nfilters()} filter(s), expected none")

    def check_scalars(self, f):
        if "scalars" not in f:
            self.err("no /scalars group")
            return
        g = f["scalars"]
        names = self.str_list_attr(g, "field_names", "/scalars")
        for name in names or []:
            where = f"/scalars/{name}"
            if name not in g:
                self.err(f"{where}: named in field_names but missing")
                continue
            ds = g[name]
            sv = self.bool_attr(ds, "sample_varying", where)
            tv = self.bool_attr(ds, "time_varying", where)
            if sv is not None and tv is not None and ds.ndim != int(sv) + int(tv):
                self.err(f"{where}: rank {ds.ndim} (shape {ds.shape}), expected {int(sv) + int(tv)}")

    def check_bcs(self, f, dims):
        if "boundary_conditions" not in f:
            self.err("no /boundary_conditions group")
            return
        for key, bc in f["boundary_conditions"].items():
            where = f"/boundary_conditions/{key}"
            if not isinstance(bc, h5py.Group):
                self.err(f"{where}: must be a group")
                continue
            t = self.str_attr(bc, "bc_type", where)
            if t is not None and t.upper() not in ("WALL", "OPEN", "PERIODIC"):
                self.err(f"{where}@bc_type = {t!r}: not WALL, OPEN or PERIODIC")
            sv = self.bool_attr(bc, "sample_varying", where)
            tv = self.bool_attr(bc, "time_varying", where)
            self.need_attr(bc, "associated_fields", where)
            ad = self.str_list_attr(bc, "associated_dims", where, allow_empty=False)
            if "mask" not in bc:
                self.err(f"{where}: no 'mask' dataset")
                continue
            m = bc["mask"]
            if m.dtype != np.bool_:
                self.err(f"{where}/mask: dtype {m.dtype}, expected bool")
            elif self.strict and not self.is_bool_enum(m.id.get_type()):
                self.err(f"{where}/mask: not the h5py bool enum over int8")
            lead = int(bool(sv)) + int(bool(tv))
            for i, d in enumerate(ad or []):
                if d not in dims["spatial"]:
                    self.err(f"{where}@associated_dims: '{d}' is not a spatial dim")
                elif m.ndim <= lead + i or m.shape[lead + i] != dims["sizes"].get(d):
                    self.err(f"{where}/mask: shape {m.shape} does not match dim '{d}' ({dims['sizes'].get(d)})")
            if m.ndim == 1 and m.shape[0] > 0:
                mv = m[...]
                if not (bool(mv[0]) and bool(mv[-1])):
                    self.err(f"{where}/mask: first and last entries must be True (the loader reads the BC there)")

    # ---- Euler specifics -------------------------------------------------------------------------
    def check_euler(self, f, dims):
        name = f.attrs.get("dataset_name")
        kind = None
        if name == "euler_multi_quadrants_openBC":
            kind = "open"
        elif name == "euler_multi_quadrants_periodicBC":
            kind = "periodic"
        else:
            self.err(f"euler: dataset_name {name!r} is not euler_multi_quadrants_openBC/periodicBC")
        if f.attrs.get("grid_type") != "cartesian":
            self.err("euler: grid_type must be 'cartesian'")
        if f.attrs.get("n_spatial_dims") != 2 or list(dims["spatial"]) != ["x", "y"]:
            self.err("euler: must be 2-D with spatial_dims ['x', 'y']")
        if list(f.attrs.get("simulation_parameters", [])) != ["gamma"]:
            self.err("euler: simulation_parameters must be ['gamma']")
        g = f.attrs.get("gamma")
        if not isinstance(g, (float, np.floating)) or (self.strict and self._attr_type(f, "gamma").get_size() != 8):
            self.err("euler: root @gamma must be a float64")
        gas = None
        for k, v in EULER_GASES.items():
            if g is not None and abs(float(g) - k) < 1e-9:
                gas = (k, v)
        if gas is None:
            self.err(f"euler: gamma {g} is not one of The Well's ten values")
        if "scalars" in f:
            if list(f["scalars"].attrs.get("field_names", [])) != ["gamma"]:
                self.err("euler: /scalars@field_names must be ['gamma']")
            if "gamma" in f["scalars"]:
                sg = f["scalars/gamma"]
                if sg.shape != () or g is None or float(sg[()]) != float(g):
                    self.err("euler: /scalars/gamma must have shape () and equal @gamma")
        if list(f["t0_fields"].attrs.get("field_names", [])) != ["energy", "density", "pressure"]:
            self.err("euler: t0 field_names must be ['energy', 'density', 'pressure']")
        if list(f["t1_fields"].attrs.get("field_names", [])) != ["momentum"]:
            self.err("euler: t1 field_names must be ['momentum']")
        if len(f["t2_fields"].attrs.get("field_names", [])) != 0 or len(f["t2_fields"].keys()) != 0:
            self.err("euler: t2_fields must be empty")
        if kind:
            want = {f"x_{kind}", f"y_{kind}"}
            got = set(f["boundary_conditions"].keys())
            if got != want:
                self.err(f"euler: BC groups {sorted(got)}, expected {sorted(want)}")
            for k in got & want:
                if f["boundary_conditions"][k].attrs.get("bc_type") != kind.upper():
                    self.err(f"euler: {k}@bc_type must be {kind.upper()}")
            if gas:
                fn = f"{name}_gamma_{gas[0]:g}_{gas[1]}.hdf5"
                if os.path.basename(self.path) != fn:
                    self.err(f"euler: file name {os.path.basename(self.path)!r}, expected {fn!r}")
        for fld in ("energy", "density", "pressure"):
            if fld in f["t0_fields"]:
                a = f["t0_fields"][fld][...]
                if a.size and not (np.all(np.isfinite(a)) and a.min() > 0):
                    self.err(f"euler: {fld} must be finite and positive (min {a.min() if a.size else None})")
        if "momentum" in f["t1_fields"]:
            a = f["t1_fields/momentum"][...]
            if a.size and not np.all(np.isfinite(a)):
                self.err("euler: momentum has non-finite values")


def main(argv):
    strict, euler, files = True, False, []
    for a in argv:
        if a == "--no-strict-types":
            strict = False
        elif a == "--euler":
            euler = True
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            files.append(a)
    if not files:
        print(__doc__)
        return 2
    bad = 0
    for p in files:
        c = Checker(p, strict)
        try:
            c.run(euler)
        except Exception as e:  # unreadable file, wrong object kind, ...
            c.err(f"exception: {type(e).__name__}: {e}")
        if c.errors:
            bad += 1
            print(f"FAIL check_well_format {p}: " + "; ".join(c.errors))
        else:
            print(f"PASS check_well_format {p}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
