"""Writer for LOLAFIX1 named-tensor fixtures (read by tests/fixture.h)."""
import struct

import numpy as np


def write_fixture(path, tensors):
    """tensors: list of (name, array-like); arrays are stored as float32, C order."""
    with open(path, "wb") as f:
        f.write(b"LOLAFIX1")
        f.write(struct.pack("<I", len(tensors)))
        for name, arr in tensors:
            a = np.ascontiguousarray(np.asarray(arr, dtype=np.float32))
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.astype("<f4").tobytes())
