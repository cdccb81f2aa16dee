"""numpy arrays as small JSON/BSON-ready records (zlib-compressed, base64)."""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np


def encode_array(array: Any) -> dict[str, Any]:
    """A numpy array as a small JSON/BSON-ready record: dtype, shape and the zlib-compressed
    bytes in base64 (mode conductivities and fc3 would be megabytes of JSON numbers)."""
    arr = np.ascontiguousarray(array)
    return {
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "data": base64.b64encode(zlib.compress(arr.tobytes(), 6)).decode("ascii"),
    }


def decode_array(record: dict[str, Any]) -> np.ndarray:
    """The array ``encode_array`` wrote."""
    raw = zlib.decompress(base64.b64decode(record["data"]))
    return np.frombuffer(raw, dtype=np.dtype(record["dtype"])).reshape(record["shape"]).copy()
