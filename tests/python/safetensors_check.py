#!/usr/bin/python3
"""Cross-checks switchyard's safetensors I/O against an independent numpy implementation.

Usage: safetensors_check.py <path to sy_safetensors_xcheck> <work dir>

1. The C++ tool writes a file; we parse it here (header size, JSON, padding, offsets) and compare
   every tensor with the reference values.
2. We write the same tensors (in a different order, so the layout differs from ours) and the C++
   tool reads and checks them.
3. A corrupted file must make the C++ tool fail with a message naming the file.

Uses Debian's python3 and numpy only (the `safetensors` package is not available here).
Exit code 0 iff every check passes.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


def reference():
    """The tensors both sides agree on; the values are exact in binary."""
    i32 = np.iinfo(np.int32)
    i64 = np.iinfo(np.int64)
    return {
        "f32": ("F32", ((np.arange(6, dtype=np.float32) - np.float32(2.5)) * np.float32(0.75)).reshape(2, 3)),
        "f64": ("F64", 1.0 / (np.arange(3, dtype=np.float64) + 1.0)),
        "i32": ("I32", np.array([i32.min, -1, 0, i32.max], dtype=np.int32)),
        "i64": ("I64", np.array([i64.min, -(1 << 40), (1 << 62) + 1, i64.max], dtype=np.int64).reshape(2, 2)),
        "u8": ("U8", np.array([0, 1, 127, 128, 255], dtype=np.uint8)),
        "scalar": ("F32", np.array(3.25, dtype=np.float32)),
        "empty": ("F32", np.zeros((0, 4), dtype=np.float32)),
    }


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert 8 + n <= len(blob), f"header size {n} exceeds the file"
    header_bytes = blob[8 : 8 + n]
    header = json.loads(header_bytes.decode("utf-8"))
    data = blob[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    spans = []
    for name, e in header.items():
        begin, end = e["data_offsets"]
        dt = np.dtype(DTYPES[e["dtype"]])
        shape = tuple(e["shape"])
        assert end - begin == int(np.prod(shape, dtype=np.int64)) * dt.itemsize, name
        tensors[name] = (e["dtype"], np.frombuffer(data[begin:end], dtype=dt).reshape(shape))
        spans.append((begin, end))
    pos = 0
    for begin, end in sorted(spans):
        assert begin == pos, f"gap or overlap at {begin}"
        pos = end
    assert pos == len(data), "trailing bytes after the last tensor"
    return n, header_bytes, header, metadata, tensors


def write_safetensors(path, tensors, metadata):
    """Insertion order, spaces to pad the header to 8 as the reference writer does."""
    header = {"__metadata__": metadata}
    offset = 0
    chunks = []
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[dtype])).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def same(got, want):
    """Bit-exact: same shape and bytes (the file is little-endian, as is this host)."""
    return got.shape == want.shape and got.tobytes() == want.tobytes()


def main():
    tool, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    ref = reference()
    failures = []

    # 1. C++ writes, numpy reads.
    cpp_path = os.path.join(work, "from_cpp.safetensors")
    subprocess.run([tool, "write", cpp_path], check=True)
    n, header_bytes, header, metadata, tensors = read_safetensors(cpp_path)
    if n % 8 != 0 or not header_bytes.rstrip(b" ").endswith(b"}"):
        failures.append(f"header size {n} must be a multiple of 8, padded with spaces")
    if metadata != {"format": "pt", "writer": "switchyard"}:
        failures.append(f"metadata must round-trip, got {metadata}")
    if set(tensors) != set(ref):
        failures.append(f"tensor names must be {sorted(ref)}, got {sorted(tensors)}")
    for name, (dtype, want) in ref.items():
        got_dtype, got = tensors.get(name, (None, None))
        if got_dtype != dtype or got is None or not same(got, want):
            failures.append(f"{cpp_path}: tensor {name} must equal the reference, got {got_dtype} {got}")
    for name, e in header.items():
        size = np.dtype(DTYPES[e["dtype"]]).itemsize
        if e["data_offsets"][0] % size != 0:
            failures.append(f"tensor {name} must start at a multiple of {size}")

    # 2. numpy writes (u8 first, so the wider tensors after it are misaligned), C++ reads.
    py_path = os.path.join(work, "from_numpy.safetensors")
    order = ["u8", "f64", "scalar", "empty", "i32", "f32", "i64"]
    write_safetensors(py_path, {k: ref[k] for k in order}, {"writer": "numpy"})
    r = subprocess.run([tool, "check", py_path], capture_output=True, text=True)
    if r.returncode != 0:
        failures.append(f"C++ must read the numpy-written file, got exit {r.returncode}: {r.stderr}")

    # 3. A truncated file must be rejected, naming the file.
    bad_path = os.path.join(work, "truncated.safetensors")
    with open(py_path, "rb") as f:
        blob = f.read()
    with open(bad_path, "wb") as f:
        f.write(blob[:-1])
    r = subprocess.run([tool, "check", bad_path], capture_output=True, text=True)
    if r.returncode == 0 or bad_path not in r.stderr:
        failures.append(f"C++ must reject a truncated file naming it, got exit {r.returncode}: {r.stderr}")

    for f in failures:
        print("FAIL:", f)
    print(f"safetensors_check: {'FAILED' if failures else 'ok'} ({len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
