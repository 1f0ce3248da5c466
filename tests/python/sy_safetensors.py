"""Minimal safetensors reader/writer on numpy (no dependency on the `safetensors` package).

File layout: 8-byte little-endian u64 header length n, then n bytes of UTF-8 JSON, then the data
buffer. The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} with
offsets relative to the start of the data buffer; an optional "__metadata__" entry maps strings to
strings. We pad the header with spaces so the data buffer starts 8-byte aligned, and store the
tensors in name order, contiguous, little-endian.

    save(path, {"w": np.zeros((2, 3), np.float32)}, metadata={"format": "pt"})
    tensors = load(path)                  # dict name -> numpy array (owned copies)
    tensors, meta = load(path, with_metadata=True)
"""

from __future__ import annotations

import json
import struct
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np

# safetensors dtype string <-> little-endian numpy dtype
_DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"),
}

# Refuse absurd headers (the format itself caps them at 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def _dtype_name(arr: np.ndarray) -> str:
    key = (arr.dtype.kind, arr.dtype.itemsize)
    names = {("f", 4): "F32", ("f", 8): "F64", ("i", 4): "I32", ("i", 8): "I64", ("u", 1): "U8", ("b", 1): "U8"}
    if key not in names:
        raise SafetensorsError(f"unsupported dtype {arr.dtype} (supported: F32 F64 I32 I64 U8)")
    return names[key]


def save(path: str, tensors: Mapping[str, np.ndarray], metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes `tensors` (name -> array-like) to `path` in safetensors format."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise SafetensorsError("'__metadata__' is reserved and cannot name a tensor")
        arr = np.asarray(tensors[name])
        dname = _dtype_name(arr)
        data = np.ascontiguousarray(arr, dtype=_DTYPES[dname]).tobytes(order="C")
        header[name] = {"dtype": dname, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-(8 + len(hjson))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load(path: str, with_metadata: bool = False) -> Union[Dict[str, np.ndarray],
                                                           Tuple[Dict[str, np.ndarray], Dict[str, str]]]:
    """Reads a safetensors file into a dict of numpy arrays (native-endian copies)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SafetensorsError(f"{path}: file too short ({len(raw)} bytes) for a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise SafetensorsError(f"{path}: header length {n} is invalid for a file of {len(raw)} bytes")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    data = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    out: Dict[str, np.ndarray] = {}
    for name, info in header.items():
        try:
            dname, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor '{name}' has a malformed header entry {info!r}") from None
        if dname not in _DTYPES:
            raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {dname}")
        dt = _DTYPES[dname]
        count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * dt.itemsize:
            raise SafetensorsError(
                f"{path}: tensor '{name}' {dname}{list(shape)} has data_offsets [{begin}, {end}] "
                f"inconsistent with its size ({count * dt.itemsize} bytes) or the buffer ({len(data)} bytes)")
        arr = np.frombuffer(data[begin:end], dtype=dt, count=count).reshape(shape)
        out[name] = arr.astype(dt.newbyteorder("="), copy=True)
    if with_metadata:
        return out, dict(metadata)
    return out
