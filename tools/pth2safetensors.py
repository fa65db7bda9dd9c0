#!/usr/bin/env python3
"""Convert a PyTorch .pth state dict (LoLa's state.pth) to a safetensors file for `lola import`.

    python3 tools/pth2safetensors.py state.pth state.safetensors [--stage ae|dm|ns]
        [--strip-prefix PREFIX ...] [--keep-dtype] [--meta KEY=VALUE ...]

The .pth may hold the state dict itself (what LoLa's experiments save: `torch.save(
model.state_dict(), "state.pth")`) or a dict with the state dict under "state" (or
"state_dict"). Names are kept as they are (PyTorch state_dict names, which lola-c's parameter
tables use), except that a prefix shared by every name and listed with --strip-prefix is removed;
"module." (DistributedDataParallel) and "_orig_mod." (torch.compile) are removed automatically
when every name carries them.

The file is written the way lola-c's own writer (src/safetensors.c) writes: tensors in state_dict
order, contiguous data, a compact JSON header with "__metadata__" first, padded with spaces to a
multiple of 8 bytes, written to <out>.tmp and renamed. Floating-point tensors are stored as F32
unless --keep-dtype (lola import converts F64/F16/BF16 itself, and says so); other dtypes are kept.
--stage adds the metadata key "stage", which `lola import` checks.

torch is needed only to read the .pth (torch.load(weights_only=True)); the writer and the reader
below (write_safetensors / read_safetensors) are plain Python + numpy, our own code. Exit status:
0 ok, 1 error (message on stderr), 2 usage.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

# numpy dtype (little-endian) <-> safetensors dtype code
_NP_TO_ST = {
    np.dtype("bool"): "BOOL", np.dtype("uint8"): "U8", np.dtype("int8"): "I8", np.dtype("<i2"): "I16",
    np.dtype("<u2"): "U16", np.dtype("<f2"): "F16", np.dtype("<i4"): "I32", np.dtype("<u4"): "U32",
    np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("<i8"): "I64", np.dtype("<u8"): "U64",
}
_ST_TO_NP = {v: k for k, v in _NP_TO_ST.items()}
MAX_HEADER = 100_000_000


def _to_numpy(t):
    """(safetensors dtype code, little-endian numpy array) of a torch tensor or numpy array."""
    try:
        import torch
    except ImportError:  # numpy input only
        torch = None
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", t.view(torch.int16).numpy().astype("<i2")
        a = t.numpy()
    else:
        a = np.ascontiguousarray(np.asarray(t))
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    code = _NP_TO_ST.get(a.dtype)
    if code is None:
        raise ValueError(f"dtype {a.dtype} has no safetensors code in this tool")
    return code, a


def write_safetensors(path, tensors, metadata=None):
    """Writes tensors (a dict or a list of (name, tensor), in order) and metadata (dict str->str)."""
    items = list(tensors.items()) if hasattr(tensors, "items") else list(tensors)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names")
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in items:
        if not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        code, a = _to_numpy(t)
        b = a.tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return 8 + len(text) + off


def read_safetensors(path, as_torch=True):
    """(dict name -> tensor in header order, metadata dict). Checks the layout rules."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} is absurd or runs past the end ({len(raw)} bytes)")
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = hdr.pop("__metadata__", {}) or {}
    data = memoryview(raw)[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in hdr.items())
    pos = 0
    for b, e, k in spans:
        if b != pos:
            raise ValueError(f"{path}: tensor {k} starts at {b}, expected {pos} (gap or overlap)")
        pos = e
    if pos != len(data):
        raise ValueError(f"{path}: tensors use {pos} data bytes, the file has {len(data)}")
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        code = v["dtype"]
        if code == "BF16":
            a = np.frombuffer(data[b:e], dtype="<i2").reshape(v["shape"])
        elif code in _ST_TO_NP:
            a = np.frombuffer(data[b:e], dtype=_ST_TO_NP[code]).reshape(v["shape"])
        else:
            raise ValueError(f"{path}: tensor {k} has unsupported dtype {code}")
        if a.nbytes != e - b:
            raise ValueError(f"{path}: tensor {k}: shape {v['shape']} does not match {e - b} bytes")
        if as_torch:
            import torch

            t = torch.from_numpy(a.copy())
            out[k] = t.view(torch.bfloat16) if code == "BF16" else t
        else:
            out[k] = a.copy()
    return out, meta


def _state_dict_of(obj, path):
    import torch

    def is_sd(d):
        return isinstance(d, dict) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())

    if is_sd(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state", "state_dict"):
            if key in obj and is_sd(obj[key]):
                return obj[key]
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise ValueError(f"{path}: not a state dict and no 'state' / 'state_dict' entry holding one (top-level keys: {keys})")
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict")


def convert(src, dst, stage=None, strip=(), keep_dtype=False, meta=()):
    import torch

    obj = torch.load(src, map_location="cpu", weights_only=True)
    sd = _state_dict_of(obj, src)
    names = list(sd)
    prefixes = list(strip)
    for auto in ("module.", "_orig_mod."):
        if auto not in prefixes and all(n.startswith(auto) for n in names):
            prefixes.append(auto)
    for p in prefixes:
        if not all(n.startswith(p) for n in names):
            raise ValueError(f"{src}: --strip-prefix {p!r}: not every name starts with it (e.g. {next(n for n in names if not n.startswith(p))!r})")
        names = [n[len(p):] for n in names]
        print(f"pth2safetensors: stripped the prefix {p!r} from every name")
    tensors, converted = [], {}
    for new, t in zip(names, sd.values()):
        if t.is_floating_point() and t.dtype != torch.float32 and not keep_dtype:
            converted[str(t.dtype)] = converted.get(str(t.dtype), 0) + 1
            t = t.float()
        tensors.append((new, t))
    md = {"format": "pt", "producer": "pth2safetensors"}
    if stage:
        md["stage"] = stage
    for kv in meta:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"--meta {kv!r}: expected KEY=VALUE")
        md[k] = v
    size = write_safetensors(dst, tensors, md)
    for d, c in converted.items():
        print(f"pth2safetensors: converted {c} tensor(s) from {d} to float32")
    print(f"pth2safetensors: {src} -> {dst}: {len(tensors)} tensors, {size} bytes")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="input .pth (state dict, or dict with 'state')")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--stage", choices=("ae", "dm", "ns"), help="record the stage in the metadata")
    ap.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX")
    ap.add_argument("--keep-dtype", action="store_true", help="keep float64/float16/bfloat16 tensors as they are")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("pth2safetensors: PyTorch is needed to read .pth files (pip install torch)", file=sys.stderr)
        return 1
    try:
        convert(a.src, a.dst, a.stage, a.strip_prefix, a.keep_dtype, a.meta)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"pth2safetensors: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
